//! The cost of a probe is measured where it runs and reported: the calibration tells an
//! emulated hit from a single-stepped one, and every stats line carries `cost_ns` (added
//! to each call) and `overhead_pct` (share of the target's CPU). How close the figures
//! are to the measured slowdown is `make bench`'s to say (timings do not belong in tests).
use std::io::Read;
use std::time::Duration;

use periscope_tests::{FixtureProc, Variant, fixture, toolchains};
use serde_json::Value;

/// (emulated ns, single-stepped ns) from the "attached" line.
fn calibration(line: &str) -> (f64, f64) {
    let num = |after: &str| -> f64 {
        let at = line
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} in {line}"))
            + after.len();
        let s: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let v: f64 = s.parse().unwrap();
        if line[at + s.len()..].starts_with("µs") {
            v * 1000.0
        } else {
            v
        }
    };
    (num("a probe hit costs ~"), num("here, ~"))
}

/// The stats line of a trace of main.Work (capturing `what`) over `work 20000`.
fn stats_of(fx: &mut FixtureProc, what: &str) -> Value {
    let (child, _err) = periscope_tests::spawn_trace(fx.pid, &["--json", what, "main.Work"]);
    fx.run("work 20000");
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["type"] == "stats")
        .unwrap()
}

#[test]
fn the_cost_of_each_probe_is_measured_and_reported() {
    for tc in toolchains() {
        let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
        let args = stats_of(&mut fx, "--args");
        let lat = stats_of(&mut fx, "--latency");
        let what = &tc.label;
        assert_eq!(args["hits"], 20000, "{what}: {args}");
        let (ca, cl) = (
            args["cost_ns"].as_f64().unwrap(),
            lat["cost_ns"].as_f64().unwrap(),
        );
        assert!(ca > 0.0, "{what}: {args}");
        // The same calls with a RET probe too: a single-stepped hit more per call.
        assert!(cl > ca, "{what}: args {ca} ns, latency {cl} ns");
        assert!(
            args["overhead_pct"].as_f64().unwrap() > 0.0,
            "{what}: {args}"
        );
    }
}

#[test]
fn the_calibration_tells_emulated_from_single_stepped_hits() {
    let tc = periscope_tests::newest();
    let fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let mut child = std::process::Command::new(periscope_tests::periscope())
        .args([
            "trace",
            "--pid",
            &fx.pid.to_string(),
            "--duration",
            "100ms",
            "main.Work",
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    let line = err.lines().find(|l| l.contains("attached")).unwrap();
    let (emulated, stepped) = calibration(line);
    assert!(emulated > 0.0 && stepped > 0.0, "{line}");
    // Single-stepping takes an extra trap: ~3x on bare metal, ~10-30x in a VM.
    assert!(stepped > 1.5 * emulated, "{line}");
}
