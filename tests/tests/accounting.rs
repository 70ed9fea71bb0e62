//! Every call is accounted for once (hits = recorded + filtered + sampled out + lost +
//! in flight), and a flood of events read slowly keeps periscope's memory bounded and
//! its `--duration` on time, with the loss counted.
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use periscope_tests::{FixtureProc, Variant, fixture, periscope, toolchains};
use serde_json::Value;

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn stop(child: std::process::Child) -> Vec<Value> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    lines(&out.stdout)
}

#[test]
fn every_call_is_counted_once_under_conditions_sampling_and_latency() {
    for tc in toolchains() {
        let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
        // `work 1000` calls main.Work(k, s) for k = 0..999: the condition keeps 500.
        let cases: [&[&str]; 4] = [&[], &["--args"], &["--latency"], &["--sample", "3"]];
        for extra in cases {
            let mut args = vec!["--json"];
            args.extend_from_slice(extra);
            args.push("main.Work if x >= 500");
            let (child, _err) = periscope_tests::spawn_trace(fx.pid, &args);
            fx.run("work 1000");
            std::thread::sleep(Duration::from_millis(200));
            let out = stop(child);
            let what = format!("{} {extra:?}", tc.label);
            let st = out.iter().find(|v| v["type"] == "stats").unwrap();
            let n = |k: &str| st[k].as_u64().unwrap_or_else(|| panic!("{what}: no {k}"));
            assert_eq!(n("hits"), 1000, "{what}: {st}");
            assert_eq!(n("filtered"), 500, "{what}: {st}");
            assert_eq!(n("lost"), 0, "{what}: {st}");
            assert_eq!(n("in_flight"), 0, "{what}: {st}");
            assert_eq!(
                n("unpaired"),
                0,
                "{what}: filtered calls are not unpaired: {st}"
            );
            assert_eq!(
                n("emitted") + n("sampled_out"),
                500,
                "{what}: every kept call recorded or sampled out: {st}"
            );
            let calls: Vec<&Value> = out.iter().filter(|v| v["type"] == "call").collect();
            if extra == ["--latency"] {
                assert!(calls.is_empty(), "{what}");
                let lat = out.iter().find(|v| v["type"] == "latency").unwrap();
                assert_eq!(lat["count"], n("emitted"), "{what}");
            } else {
                assert_eq!(calls.len() as u64, n("emitted"), "{what}");
                assert!(
                    calls.iter().all(|c| c["args"]["x"].as_i64() >= Some(500)),
                    "{what}"
                );
            }
            if extra == ["--sample", "3"] {
                assert!((160..=180).contains(&n("emitted")), "{what}: {st}");
            } else {
                assert_eq!(n("sampled_out"), 0, "{what}");
            }
        }
    }
}

#[test]
fn a_function_without_a_ret_gets_its_arguments_and_says_why_not_more() {
    let tc = periscope_tests::newest();
    let bin = fixture("kinds", &tc, Variant::Plain);
    let out = Command::new(periscope())
        .args(["list", bin.to_str().unwrap(), "^runtime\\.", "--json"])
        .output()
        .unwrap();
    let no_ret = lines(&out.stdout)
        .into_iter()
        .find(|f| {
            f["returns"].as_array().is_some_and(|r| r.is_empty())
                && f["probe_entry"].is_string()
                && !f["name"].as_str().unwrap().contains(".abi0")
        })
        .expect("the Go runtime has functions that never RET (morestack, gogo, …)");
    let name = no_ret["name"].as_str().unwrap();
    let fx = FixtureProc::start(&bin);
    let pid = fx.pid.to_string();
    let run = |extra: &[&str]| {
        Command::new(periscope())
            .args(["trace", "--pid", &pid, "--duration", "200ms"])
            .args(extra)
            .arg(name)
            .output()
            .unwrap()
    };
    let all = run(&[]);
    let err = String::from_utf8_lossy(&all.stderr);
    assert!(all.status.success(), "{name}: {err}");
    assert!(err.contains("never returns through a RET"), "{name}: {err}");
    let lat = run(&["--latency"]);
    let err = String::from_utf8_lossy(&lat.stderr);
    assert_eq!(lat.status.code(), Some(2), "{name}: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("results and latency cannot be seen"), "{err}");
}

/// Peak resident memory of a running process, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[test]
fn a_flood_read_slowly_keeps_memory_bounded_and_duration_on_time() {
    let tc = periscope_tests::newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    fx.run("busy"); // main.Hot in a tight loop: hundreds of thousands of calls a second
    let started = Instant::now();
    let mut child = Command::new(periscope())
        .args([
            "trace",
            "--json",
            "--budget",
            "off",
            "--duration",
            "4s",
            "--pid",
            &fx.pid.to_string(),
        ])
        .arg("main.Hot")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    // The reader is asleep for the first 3 seconds, then reads as fast as it can.
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        let mut all = Vec::new();
        stdout.read_to_end(&mut all).unwrap();
        all
    });
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_rss(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    let said = {
        let mut e = String::new();
        child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
        e
    };
    let out = lines(&reader.join().unwrap());
    assert!(peak < 256 << 20, "peak resident memory {} MB", peak >> 20);
    // 4 s, plus at most a second to write what is buffered, plus detaching; generous
    // for a noisy machine, and far from the 29 s it once took.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let st = out
        .iter()
        .find(|v| v["type"] == "stats")
        .expect("stats line");
    let calls = out.iter().filter(|v| v["type"] == "call").count() as u64;
    assert!(
        st["lost"].as_u64().unwrap() > 0,
        "a slow reader loses events: {st}"
    );
    // Every recorded call reaches the output, or is said not to have.
    let (lost, unwritten) = loss_line(&said);
    assert_eq!(lost, st["lost"].as_u64().unwrap(), "{said}");
    assert_eq!(
        calls + unwritten,
        st["emitted"].as_u64().unwrap(),
        "{st}: {said}"
    );
    assert!(
        said.contains("stdout was read more slowly than calls came"),
        "{said}"
    );
    assert!(fx.is_running());
}

/// The numbers of trace's loss line: (lost in the ring buffer, read but not written).
fn loss_line(said: &str) -> (u64, u64) {
    let line = said
        .lines()
        .find(|l| l.contains("lost in the kernel's ring buffer"))
        .unwrap_or_else(|| panic!("no loss line: {said}"));
    let num_before = |what: &str| -> u64 {
        let head = &line[..line.find(what).unwrap()];
        head.trim_end()
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        num_before(" call(s) lost"),
        num_before(" read but not written"),
    )
}

#[test]
fn a_json_flood_into_a_file_ends_with_its_summary_and_says_where_calls_went() {
    // Hot in a tight loop, every call a row, written to a file as fast as periscope
    // can: the summary lines are there, and every call is written, lost (counted by the
    // kernel) or said not written.
    let tc = periscope_tests::newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    fx.run("busy");
    let path = std::env::temp_dir().join(format!("periscope-flood-{}.jsonl", std::process::id()));
    let out = Command::new(periscope())
        .args([
            "trace",
            "--json",
            "--budget",
            "off",
            "--args",
            "--duration",
            "3s",
        ])
        .args(["--pid", &fx.pid.to_string(), "main.Hot"])
        .stdout(std::fs::File::create(&path).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    fx.run("run 0");
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    let text = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let got = lines(&text);
    let st = got
        .iter()
        .find(|v| v["type"] == "stats")
        .unwrap_or_else(|| panic!("no stats line in {} lines: {said}", got.len()));
    let calls = got.iter().filter(|v| v["type"] == "call").count() as u64;
    let n = |k: &str| st[k].as_u64().unwrap();
    assert!(calls > 10_000, "{st}");
    assert_eq!(n("hits"), n("emitted") + n("lost") + n("in_flight"), "{st}");
    if n("lost") > 0 || calls < n("emitted") {
        let (lost, unwritten) = loss_line(&said);
        assert_eq!(lost, n("lost"), "{said}");
        assert_eq!(calls + unwritten, n("emitted"), "{said}");
        // A file is never the slow part.
        assert!(!said.contains("stdout was read more slowly"), "{said}");
    } else {
        assert_eq!(calls, n("emitted"), "{st}");
    }
}
