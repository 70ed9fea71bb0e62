//! Stopping never harms the target: after every way periscope can stop, the target's
//! code in memory equals its file byte for byte (a uprobe the kernel failed to remove
//! stays there as an int3), the kernel logged no "leaking uprobe", and no BPF link or
//! keeper process is left. Each case probes hot functions with return probes on a busy
//! private copy of the fixture, which is when removal used to fail.
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use periscope_tests::{
    FixtureProc, eventually, fixture, keepers, kernel_uprobe_leaks, periscope, periscope_links,
    private_copy, text_differences,
};

const PROBES: [&str; 3] = ["main.Work", "main.Hot", "main.Login"];

struct Target {
    fx: FixtureProc,
    leaks_before: usize,
}

impl Target {
    fn start(tag: &str) -> Target {
        let tc = periscope_tests::newest();
        let bin = private_copy(&fixture("kinds", &tc, periscope_tests::Variant::Plain), tag);
        let mut fx = FixtureProc::start(&bin);
        fx.run("busy");
        Target {
            fx,
            leaks_before: kernel_uprobe_leaks(),
        }
    }

    /// Everything is gone and the target is exactly its file again.
    fn check(&mut self, how: &str) {
        assert!(
            eventually(30, || periscope_links().is_empty() && keepers().is_empty()),
            "{how}: links {:?}, keepers {:?} remain",
            periscope_links(),
            keepers()
        );
        assert_eq!(
            kernel_uprobe_leaks(),
            self.leaks_before,
            "{how}: the kernel logged a leaked uprobe"
        );
        if self.fx.is_running() {
            let diffs = text_differences(self.fx.pid);
            assert!(
                diffs.is_empty(),
                "{how}: the target's code differs from its file: {diffs:?}"
            );
            // And it still works: the busy loop is stopped by the next command.
            assert_eq!(self.fx.run("run 1").len(), 19, "{how}");
        }
    }
}

fn trace(pid: u32, extra: &[&str]) -> (Child, BufReader<std::process::ChildStderr>) {
    let mut args = extra.to_vec();
    args.extend(PROBES);
    periscope_tests::spawn_trace(pid, &args)
}

/// `periscope trace` on PROBES with `options`, uprobe_multi links `multi` ("on" or
/// "off"), its stdout not read (discarded: an unread pipe would stall it), until it
/// says it attached; its stderr goes on.
fn quiet_trace(
    pid: u32,
    multi: &str,
    options: &[&str],
) -> (Child, BufReader<std::process::ChildStderr>) {
    let mut cmd = Command::new(periscope());
    cmd.env("PERISCOPE_UPROBE_MULTI", multi)
        .arg("trace")
        .args(options)
        .args(["--pid", &pid.to_string()])
        .args(PROBES)
        .stdout(Stdio::null());
    periscope_tests::wait_attached(cmd)
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, sig) };
}

#[test]
fn trace_stopped_any_way_leaves_the_target_untouched() {
    // The end of --duration.
    let mut t = Target::start("duration");
    let out = Command::new(periscope())
        .args([
            "trace",
            "--duration",
            "300ms",
            "--pid",
            &t.fx.pid.to_string(),
        ])
        .args(PROBES)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.check("--duration");

    for (sig, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let mut t = Target::start(name);
        let (child, _err) = trace(t.fx.pid, &[]);
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}: {:?}", out.status);
        t.check(name);
    }

    // SIGKILL cannot be caught: the keeper process removes the uprobes.
    let mut t = Target::start("sigkill");
    let (mut child, _err) = trace(t.fx.pid, &[]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(keepers().len(), 1, "one keeper while tracing");
    child.kill().unwrap();
    child.wait().unwrap();
    t.check("SIGKILL");

    // The target exits: periscope notices, detaches and exits 0.
    let mut t = Target::start("target-exit");
    let (child, _err) = trace(t.fx.pid, &[]);
    std::thread::sleep(Duration::from_millis(300));
    t.fx.send("quit");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    t.check("target exit");
}

fn shell(
    pid: u32,
) -> (
    Child,
    std::process::ChildStdin,
    BufReader<std::process::ChildStdout>,
) {
    let mut child = periscope_tests::shell_command(&[&pid.to_string()])
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for (k, p) in PROBES.iter().enumerate() {
        writeln!(stdin, "trace {p}").unwrap();
        let mut line = String::new();
        while !line.starts_with(&format!("probe {}:", k + 1)) {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "shell ended early");
        }
    }
    (child, stdin, out)
}

#[test]
fn shell_stopped_any_way_leaves_the_target_untouched() {
    for how in [
        "quit",
        "end of input",
        "untrace all, quit",
        "SIGTERM",
        "SIGHUP",
    ] {
        let mut t = Target::start(&how.replace([' ', ','], ""));
        let (child, mut stdin, _out) = shell(t.fx.pid);
        std::thread::sleep(Duration::from_millis(300));
        match how {
            "quit" => writeln!(stdin, "quit").unwrap(),
            "end of input" => {}
            "untrace all, quit" => writeln!(stdin, "untrace all\nquit").unwrap(),
            "SIGTERM" => signal(&child, libc::SIGTERM),
            "SIGHUP" => signal(&child, libc::SIGHUP),
            _ => unreachable!(),
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{how}: {:?}", out.status);
        t.check(how);
    }
}

#[test]
fn ctrl_c_interrupts_the_shells_wait_and_the_shell_goes_on() {
    let mut t = Target::start("ctrl-c-wait");
    let (child, mut stdin, mut out) = shell(t.fx.pid);
    writeln!(stdin, "wait 20s").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    signal(&child, libc::SIGINT);
    let mut line = String::new();
    while !line.contains("interrupted") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the shell ended");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // Still there, probes and all.
    writeln!(stdin, "probes").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("main.Work"), "{line}");
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let st = child.wait_with_output().unwrap();
    assert!(st.status.success());
    t.check("Ctrl-C during wait, then quit");
}

/// The types of the BPF links of periscope's programs ("uprobe_multi", "perf_event").
fn link_types() -> Vec<String> {
    let ids = periscope_links();
    let out = Command::new("bpftool")
        .args(["link", "show", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .map(|l| match &l["type"] {
            // bpftool older than the kernel prints the number: 12 is uprobe_multi.
            serde_json::Value::Number(n) if n.as_u64() == Some(12) => "uprobe_multi".into(),
            t => t.as_str().unwrap_or("?").to_string(),
        })
        .collect()
}

#[test]
fn batched_and_single_uprobes_both_attach_and_leave_nothing() {
    // Batched (this kernel has uprobe_multi): a link or two per probe. Forced off, as on
    // kernels before 6.6: one perf-event link per uprobe. Both stop cleanly on SIGTERM
    // and on SIGKILL (the keeper).
    for (mode, want) in [("on", "uprobe_multi"), ("off", "perf_event")] {
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            let how = format!("PERISCOPE_UPROBE_MULTI={mode}, signal {sig}");
            let mut t = Target::start(&format!("multi-{mode}-{sig}"));
            // Every point stays attached, to be counted (the budget would window them
            // on this busy target).
            let (mut child, _err) = quiet_trace(t.fx.pid, mode, &["--budget", "off", "--latency"]);
            // (The calibration's own link may still be on its way out at first.)
            let ok = |types: &[String]| {
                types.iter().all(|t| t == want)
                    && match mode {
                        // A link per group of points (cheap, costly) of each probe.
                        "on" => (PROBES.len()..=2 * PROBES.len()).contains(&types.len()),
                        _ => types.len() >= 2 * PROBES.len(),
                    }
            };
            assert!(
                eventually(10, || ok(&link_types())),
                "{how}: links {:?}",
                link_types()
            );
            signal(&child, sig);
            child.wait().unwrap();
            t.check(&how);
        }
    }
}

/// Probeable functions of the target outside the runtime, as `list --json` names them.
fn many_functions(pid: u32, n: usize) -> Vec<String> {
    let out = Command::new(periscope())
        .args(["list", "--json", &pid.to_string()])
        .output()
        .unwrap();
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|f| f["probe_entry"].is_string() && f["inlined_only"] == false)
        .filter_map(|f| f["name"].as_str().map(str::to_string))
        .filter(|name| !name.starts_with("runtime.") && !name.starts_with("internal/"))
        .take(n)
        .collect();
    assert_eq!(names.len(), n, "not enough probeable functions");
    names
}

#[test]
fn kill_9_at_any_point_of_a_big_attach_leaks_no_uprobe() {
    // A SIGKILL between making a link and handing it over would leave the dying
    // periscope holding the only reference, and the kernel would leak that uprobe. The
    // keeper makes every link, so there is no such moment: periscope is killed at 20
    // points from its start to well after its attach of 300 functions (the budget
    // windows them meanwhile), and each time nothing is left. Then the same, fewer,
    // with a perf-event link per uprobe (kernels before 6.6), whose removal is slow.
    for (mode, functions, kills, step_ms) in [("on", 300, 20, 60), ("off", 25, 5, 150)] {
        let mut t = Target::start(&format!("kill9-{mode}"));
        let names = many_functions(t.fx.pid, functions);
        for i in 0..kills {
            let how = format!(
                "PERISCOPE_UPROBE_MULTI={mode}, killed {} ms in",
                i * step_ms
            );
            let mut child = Command::new(periscope())
                .env("PERISCOPE_UPROBE_MULTI", mode)
                .args(["trace", "--budget", "5%", "--latency", "--pid"])
                .arg(t.fx.pid.to_string())
                .args(&names)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(i * step_ms));
            signal(&child, libc::SIGKILL);
            child.wait().unwrap();
            t.check(&how);
            t.fx.run("busy");
        }
    }
}

#[test]
fn a_killed_keeper_is_replaced_and_said() {
    // periscope holds a copy of every link, so the keeper's death removes nothing; a
    // new keeper takes copies, and a kill -9 of periscope afterwards still leaves the
    // target clean.
    let mut t = Target::start("keeper-killed");
    // Every point stays attached (no windows), so the links are the same throughout.
    // (stdout unread would fill its pipe and stall the trace: not read here.)
    // (--duration: a periscope that never says it ends anyway, and the test fails.)
    let (mut child, mut err) =
        quiet_trace(t.fx.pid, "on", &["--budget", "off", "--duration", "30s"]);
    let before = periscope_links();
    let old = keepers();
    assert_eq!(old.len(), 1, "one keeper while tracing");
    // SAFETY: kill(2) of the keeper, a process of ours.
    unsafe { libc::kill(old[0] as i32, libc::SIGKILL) };
    let mut line = String::new();
    while err.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("keeper process") {
        line.clear();
    }
    assert!(
        line.contains(&format!(
            "the keeper process (pid {}) died; a new one",
            old[0]
        )),
        "{line}"
    );
    assert!(eventually(5, || keepers().len() == 1 && keepers() != old));
    // Nothing was removed meanwhile: the same links (less the calibration's, which may
    // have been on its way out), and the target still traps on them (its text differs
    // from the file at the probes).
    let after = periscope_links();
    assert!(
        after.is_subset(&before) && after.len() >= PROBES.len(),
        "{before:?} then {after:?}"
    );
    assert!(!text_differences(t.fx.pid).is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    t.check("kill -9 of periscope after its keeper was replaced");
}
