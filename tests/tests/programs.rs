//! A program, not a pid: `--exe` traces every process that runs an executable (one
//! started mid-trace from its first call, one that exits leaving the rest), `--pid`
//! given again a chosen set, and a process in a container through its own view of its
//! file. Every call is matched against its own process's record.
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use periscope_tests::truth::{compare, fixture_funcs};
use periscope_tests::{FixtureProc, Variant, fixture, newest, periscope, private_copy, toolchains};
use serde_json::Value;

/// `periscope trace --json --budget off ARGS`, attached (see `trace_to_file`).
fn start(args: &[&str], tag: &str) -> (Child, PathBuf, std::thread::JoinHandle<Vec<String>>) {
    let mut all = vec!["--budget", "off"];
    all.extend(args);
    periscope_tests::trace_to_file(&all, &format!("programs-{tag}"))
}

fn stop(child: Child, out: &Path) -> Vec<Value> {
    periscope_tests::stop_trace(child, out)
}

/// The call rows of each process, by pid.
fn calls_by_pid(lines: &[Value]) -> BTreeMap<u64, Vec<Value>> {
    let mut by: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for l in lines.iter().filter(|l| l["type"] == "call") {
        by.entry(l["pid"].as_u64().unwrap())
            .or_default()
            .push(l.clone());
    }
    by
}

fn of_func<'a>(calls: &'a [Value], func: &str) -> Vec<&'a Value> {
    calls.iter().filter(|c| c["func"] == func).collect()
}

const PACE: &str = "pace 4 300";
const PACE_CALLS: u64 = 300;
const PACE_GOROUTINES: u64 = 4;

/// A process's Pace calls against its own record of them: each call once, its latency
/// one call's (no longer than the fixture timed it; a slow call at least its spin).
fn check_pace(what: &str, record: &[Value], calls: &[&Value]) {
    let own: Vec<u64> = record[0]["ns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mut seen = HashSet::new();
    for c in calls {
        let n = c["args"]["n"].as_u64().unwrap();
        assert!(seen.insert(n), "{what}: Pace({n}) twice");
        assert_eq!(c["ret"]["r0"].as_u64(), Some(n), "{what}: {c}");
        let l = c["latency_ns"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: no latency: {c}"));
        assert!(
            l <= own[n as usize],
            "{what}: Pace({n}) timed {l} ns, the fixture {} ns (paired with another process's call?)",
            own[n as usize]
        );
        if (n / PACE_GOROUTINES) % 2 == 1 {
            assert!(l + 20_000 >= 300_000, "{what}: slow Pace({n}) timed {l} ns");
        }
    }
    assert_eq!(seen.len() as u64, PACE_CALLS, "{what}: Pace calls seen");
}

/// The probes of these tests: every function `run` records, and Pace.
fn probes() -> Vec<&'static str> {
    let mut p = fixture_funcs();
    p.push("main.Pace");
    p
}

fn every_process(tc: &periscope_tests::Toolchain, variant: Variant) {
    let what = format!("{} {variant:?}", tc.label);
    // A copy of its own: other tests' processes run the shared build.
    let bin = private_copy(&fixture("kinds", tc, variant), "programs");
    let mut a = FixtureProc::start(&bin);
    let mut b = FixtureProc::start(&bin);
    let mut c = FixtureProc::start(&bin);
    let exe = bin.to_str().unwrap();
    let mut args = vec!["--exe", exe, "--by", "pid"];
    args.extend(probes());
    let (child, out, said) = start(&args, &format!("every-{}", tc.label));
    // Three replicas in Pace at once: the same goroutine ids (and, outside a PIE, the
    // same goroutine addresses) in flight in three processes.
    for p in [&mut a, &mut b, &mut c] {
        p.send(PACE);
    }
    let paced: Vec<Vec<Value>> = [&mut a, &mut b, &mut c]
        .into_iter()
        .map(|p| p.wait_done())
        .collect();
    // One started mid-trace, seen from its first call; one that exits.
    let mut d = FixtureProc::start(&bin);
    let d_run = d.run("run 1");
    let d_paced = d.run(PACE);
    let c_run = c.run("run 1");
    let c_pid = c.pid;
    c.send("quit");
    c.child.wait().unwrap();
    let a_run = a.run("run 2");
    // The exit is noticed within a look (0.2 s).
    std::thread::sleep(Duration::from_millis(600));
    let lines = stop(child, &out);
    let said = said.join().unwrap();
    let by = calls_by_pid(&lines);
    let pids: Vec<u64> = [a.pid, b.pid, c_pid, d.pid].map(u64::from).to_vec();
    assert_eq!(
        by.keys().copied().collect::<Vec<_>>(),
        {
            let mut p = pids.clone();
            p.sort();
            p
        },
        "{what}: rows from other processes"
    );
    for ((pid, record), name) in pids
        .iter()
        .zip(paced.iter().chain([&d_paced]))
        .zip("abcd".chars())
    {
        check_pace(
            &format!("{what} process {name}"),
            record,
            &of_func(&by[pid], "main.Pace"),
        );
    }
    let others = |pid: u32| -> Vec<Value> {
        by[&u64::from(pid)]
            .iter()
            .filter(|c| c["func"] != "main.Pace")
            .cloned()
            .collect()
    };
    for (name, pid, record) in [
        ("a", a.pid, &a_run),
        ("c", c_pid, &c_run),
        ("d", d.pid, &d_run),
    ] {
        if let Err(e) = compare(record, &others(pid)) {
            panic!("{what}: process {name} (pid {pid}): {e}");
        }
    }
    assert!(others(b.pid).is_empty(), "{what}: calls b never made");
    let events: Vec<(u64, &str)> = lines
        .iter()
        .filter(|l| l["type"] == "process")
        .map(|l| (l["pid"].as_u64().unwrap(), l["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        vec![(u64::from(d.pid), "started"), (u64::from(c_pid), "exited")],
        "{what}: {lines:?}"
    );
    assert!(
        said.iter()
            .any(|l| l.contains(&format!("pid {c_pid} exited"))),
        "{what}: {said:?}"
    );
    // Latency per process (`--by pid`), the program's in all.
    for pid in &pids {
        let split = lines
            .iter()
            .find(|l| {
                l["type"] == "latency"
                    && l["func"] == "main.Pace"
                    && l["by"].as_str() == Some(pid.to_string().as_str())
            })
            .unwrap_or_else(|| panic!("{what}: no latency of pid {pid}: {lines:?}"));
        assert_eq!(split["count"], PACE_CALLS, "{what}: {split}");
    }
    // The counters are the program's: every process's calls.
    let pace_stats = lines
        .iter()
        .find(|l| l["type"] == "stats" && l["func"] == "main.Pace")
        .unwrap();
    assert_eq!(pace_stats["hits"], 4 * PACE_CALLS, "{what}: {pace_stats}");
    assert_eq!(
        pace_stats["emitted"],
        4 * PACE_CALLS,
        "{what}: {pace_stats}"
    );
    let _ = std::fs::remove_file(&bin);
}

#[test]
fn every_process_of_a_program_is_traced_each_with_its_own_calls() {
    for tc in toolchains() {
        for variant in [Variant::Plain, Variant::Pie] {
            every_process(&tc, variant);
        }
    }
}

#[test]
fn a_path_no_process_runs_yet_is_waited_on_and_its_first_process_seen_whole() {
    let tc = newest();
    let bin = private_copy(&fixture("kinds", &tc, Variant::Pie), "waits");
    let mut args = vec!["--exe", bin.to_str().unwrap()];
    args.extend(fixture_funcs());
    let (child, out, said) = start(&args, "waits");
    let mut fx = FixtureProc::start(&bin);
    let record = fx.run("run 2");
    std::thread::sleep(Duration::from_millis(300));
    let lines = stop(child, &out);
    let said = said.join().unwrap();
    let by = calls_by_pid(&lines);
    assert_eq!(by.len(), 1, "{said:?}");
    compare(&record, &by[&u64::from(fx.pid)]).unwrap();
    assert!(
        said.iter()
            .any(|l| l.contains(&format!("pid {} started", fx.pid))),
        "{said:?}"
    );
    let _ = std::fs::remove_file(&bin);
}

#[test]
fn chosen_pids_are_traced_and_no_other_process_of_their_program() {
    let tc = newest();
    let bin = private_copy(&fixture("kinds", &tc, Variant::Plain), "chosen");
    let mut a = FixtureProc::start(&bin);
    let mut b = FixtureProc::start(&bin);
    let mut c = FixtureProc::start(&bin);
    let (pa, pb) = (a.pid.to_string(), b.pid.to_string());
    let mut args = vec!["--pid", &pa, "--pid", &pb];
    args.extend(fixture_funcs());
    let (child, out, _) = start(&args, "chosen");
    let ra = a.run("run 1");
    let rb = b.run("run 2");
    c.run("run 1");
    let lines = stop(child, &out);
    let by = calls_by_pid(&lines);
    assert!(!by.contains_key(&u64::from(c.pid)), "a process not chosen");
    compare(&ra, &by[&u64::from(a.pid)]).unwrap();
    compare(&rb, &by[&u64::from(b.pid)]).unwrap();
    // Text rows say which process.
    let mut cmd = Command::new(periscope());
    cmd.args(["trace", "--budget", "off", "--duration", "3s"])
        .args(["--pid", &pa, "--pid", &pb, "main.Login"])
        .stdout(Stdio::piped());
    // (Attached first: on a busy machine that takes a while.)
    let (text, _err) = periscope_tests::wait_attached(cmd);
    a.run("run 1");
    let o = text.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(&format!("pid {pa}")) && l.contains("main.Login(")),
        "{stdout}"
    );
    let _ = std::fs::remove_file(&bin);
}

/// One line, exit status 2, nothing attached.
fn refused(args: &[&str]) -> String {
    let o = Command::new(periscope())
        .arg("trace")
        .args(args)
        .arg("main.Login")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    err
}

#[test]
fn processes_that_are_not_one_program_get_one_line() {
    let tc = newest();
    let bin = private_copy(&fixture("kinds", &tc, Variant::Plain), "named");
    let other = fixture("kinds", &toolchains()[0], Variant::Plain);
    let a = FixtureProc::start(&bin);
    let b = FixtureProc::start(&other);
    let err = refused(&["--pid", &a.pid.to_string(), "--pid", &b.pid.to_string()]);
    assert!(err.contains("one program at a time"), "{err}");
    // The same file name, two programs.
    let dir = std::env::temp_dir().join(format!("periscope-named-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let twin = dir.join(bin.file_name().unwrap());
    std::fs::copy(&other, &twin).unwrap();
    let c = FixtureProc::start(&twin);
    let name = bin.file_name().unwrap().to_str().unwrap();
    let err = refused(&["--exe", name]);
    assert!(
        err.contains("names 2 programs")
            && err.contains(&a.pid.to_string())
            && err.contains(&c.pid.to_string()),
        "{err}"
    );
    let err = refused(&["--exe", "no-such-program-here"]);
    assert!(err.contains("no running process runs"), "{err}");
    let err = refused(&["--exe", "/no/such/file"]);
    assert!(err.contains("/no/such/file"), "{err}");
    drop((a, b, c));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&bin);
}

/// The fixture in its own pid and mount namespaces, its executable bind-mounted at a
/// path the host does not have; returns it and its host pid.
fn in_a_container(bin: &Path) -> (FixtureProc, u32) {
    let inside = "/mnt/app/server";
    let script = format!(
        "mount -t tmpfs none /mnt && mkdir /mnt/app && touch {inside} && mount --bind {} {inside} && exec {inside}",
        bin.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--mount",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        &script,
    ]);
    let fx = FixtureProc::start_cmd(cmd);
    // Its pid is unshare's; the fixture is its child, pid 1 inside.
    let host = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, r)| r.split(' ').nth(1) == Some(&fx.pid.to_string()))
            })
        })
        .expect("the fixture under unshare");
    assert!(!Path::new(inside).exists(), "the host has {inside}");
    // In a cgroup named as containerd names a container's.
    let _ = std::fs::create_dir(container_cgroup());
    std::fs::write(container_cgroup().join("cgroup.procs"), host.to_string()).unwrap();
    (fx, host)
}

/// The cgroup of `in_a_container` (cgroup v1's pids hierarchy, else v2's root).
fn container_cgroup() -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup/pids");
    let root = if v1.exists() {
        v1
    } else {
        Path::new("/sys/fs/cgroup")
    };
    root.join(format!("cri-containerd-{CONTAINER}.scope"))
}

/// The container id of `in_a_container`.
const CONTAINER: &str = "5f0c2d1e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d";

#[test]
fn a_process_in_a_container_is_found_through_its_own_view_and_says_its_pids() {
    let tc = newest();
    let bin = private_copy(&fixture("kinds", &tc, Variant::Plain), "container");
    let (mut fx, host) = in_a_container(&bin);
    // By the path inside the container, seen from the host.
    let root_path = format!("/proc/{host}/root/mnt/app/server");
    let mut args = vec!["--exe", root_path.as_str()];
    args.extend(fixture_funcs());
    let (child, out, _) = start(&args, "container");
    let record = fx.run("run 1");
    let lines = stop(child, &out);
    let by = calls_by_pid(&lines);
    assert_eq!(
        by.keys().copied().collect::<Vec<_>>(),
        vec![u64::from(host)]
    );
    let calls = &by[&u64::from(host)];
    compare(&record, calls).unwrap();
    for c in calls {
        assert_eq!(c["nspid"], 1, "the pid the container knows: {c}");
        assert_eq!(c["container"], CONTAINER, "{c}");
    }
    // And by the host's path of the same file.
    let mut args = vec!["--exe", bin.to_str().unwrap()];
    args.extend(fixture_funcs());
    let (child, out, _) = start(&args, "container-host");
    let record = fx.run("run 1");
    let lines = stop(child, &out);
    compare(&record, &calls_by_pid(&lines)[&u64::from(host)]).unwrap();
    drop(fx);
    // The cgroup goes once its process has.
    for _ in 0..50 {
        if std::fs::remove_dir(container_cgroup()).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&bin);
}

#[test]
fn the_shell_on_three_replicas_says_each_calls_process_and_splits_latency_by_it() {
    use std::io::Write;
    let tc = newest();
    let bin = private_copy(&fixture("kinds", &tc, Variant::Plain), "shell");
    let mut fxs: Vec<FixtureProc> = (0..3).map(|_| FixtureProc::start(&bin)).collect();
    for fx in &mut fxs {
        // Login about every millisecond until the next command.
        fx.send("steady");
    }
    let mut shell =
        periscope_tests::shell_command(&["--budget", "off", "--exe", bin.to_str().unwrap()])
            .spawn()
            .unwrap();
    {
        let mut stdin = shell.stdin.take().unwrap();
        for line in [
            "trace main.Login --latency --by pid --args",
            "wait 1s",
            "events --last 300",
            "hist main.Login",
            "probes",
            "quit",
        ] {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = shell.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("3 process(es) of {}", bin.display())),
        "{text}"
    );
    for fx in &fxs {
        let pid = fx.pid;
        assert!(
            text.lines()
                .any(|l| l.contains(&format!(" pid {pid} ")) && l.contains("main.Login(")),
            "no row of pid {pid}: {text}"
        );
        assert!(
            text.contains(&format!("  = {pid}: ")),
            "no latency of pid {pid}: {text}"
        );
        // `probes`: the probe in each process, what it cost there.
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("pid {pid}: "))
                    && l.contains(" hits")
                    && l.contains("% of its CPU")),
            "no counters of pid {pid}: {text}"
        );
    }
    drop(fxs);
    let _ = std::fs::remove_file(&bin);
}
