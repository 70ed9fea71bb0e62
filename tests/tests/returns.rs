//! Return points that other paths reach too (issue 24, part 1): after a call in a loop
//! whose condition comes after it and is entered by a jump from above, the first
//! emulated instruction is where that jump arrives as well. periscope puts the return
//! there (one emulated hit instead of a single-stepped RET) and a hit counts as a return
//! only when it pairs with an entry of the same goroutine and frame. Checked against
//! the fixture's own record: every call counted once, none invented from the jump's
//! hits, and no entry whose frame a panic or Goexit unwound ever paired.
use std::collections::BTreeMap;
use std::io::Read;

use periscope_tests::{FixtureProc, Variant, fixture, periscope, toolchains};
use serde_json::Value;

fn stop(mut child: std::process::Child) -> Vec<Value> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of_type<'a>(lines: &'a [Value], t: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == t).collect()
}

/// Starts the trace (no budget: every call is compared) and returns it with what it
/// said about where the probe sits.
fn trace(pid: u32, probe: &str) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(periscope())
        .args(["trace", "--budget", "off", "--json", "--args", "--latency"])
        .args(["--pid", &pid.to_string(), probe])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let (attached, said) = periscope_tests::read_until_attached(&mut err);
    assert!(attached, "periscope did not attach: {said}");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, said)
}

#[test]
fn a_return_point_a_jump_reaches_too_counts_only_returns() {
    for tc in toolchains() {
        for variant in [Variant::Plain, Variant::Pie] {
            let what = format!("{} {variant:?}", tc.label);
            let mut fx = FixtureProc::start(&fixture("kinds", &tc, variant));
            let (child, placed) = trace(fx.pid, "main.Step");
            // (Go 1.19's PIE has a 4-byte value in its type data equal to Step's text
            // offset, which the call graph takes for a method table's entry: its
            // RETs then, and the counts below hold all the same.)
            assert!(
                placed.contains("also reached by a branch (paired)")
                    || (variant == Variant::Pie && placed.contains("method table")),
                "{what}: the return is not at the shared point: {placed}"
            );
            let n = 3000u64;
            let rec = fx.run(&format!("steps {n}"));
            let lines = stop(child);
            let calls = rec[0]["calls"].as_u64().unwrap();
            let st = of_type(&lines, "stats")[0];
            assert_eq!(st["hits"], calls, "{what}: {st}");
            assert_eq!(st["emitted"], calls, "{what}: {st}");
            assert_eq!(
                st["unpaired"], 0,
                "{what}: the jump's hits are not returns: {st}"
            );
            assert_eq!(st["in_flight"], 0, "{what}: {st}");
            // Each call once, with its argument: k%4 calls of Step(k) for every k.
            let mut got: BTreeMap<u64, u64> = BTreeMap::new();
            for c in of_type(&lines, "call") {
                assert!(c["latency_ns"].is_u64(), "{what}: {c}");
                *got.entry(c["args"]["k"].as_u64().unwrap()).or_default() += 1;
            }
            let want: BTreeMap<u64, u64> =
                (0..n).filter(|k| k % 4 > 0).map(|k| (k, k % 4)).collect();
            assert_eq!(got, want, "{what}");
            assert_eq!(of_type(&lines, "latency")[0]["count"], calls, "{what}");
        }
    }
}

#[test]
fn an_entry_whose_frame_was_unwound_never_pairs_with_a_jumps_hit() {
    for tc in toolchains() {
        for mode in ["same", "goroutine", "goexit"] {
            let what = format!("{} {mode}", tc.label);
            let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
            let (child, placed) = trace(fx.pid, "main.Risky");
            assert!(placed.contains("(paired)"), "{what}: {placed}");
            let rec = fx.run(&format!("risky 400 {mode}"));
            let lines = stop(child);
            let returned: Vec<u64> = rec[0]["returned"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let st = of_type(&lines, "stats")[0];
            assert_eq!(st["hits"], rec[0]["calls"], "{what}: {st}");
            // A row only for a call that returned, once: a panicked call's entry,
            // paired with the next frame's jump, would be a row with its argument.
            let mut rows: Vec<u64> = of_type(&lines, "call")
                .iter()
                .filter(|c| c["latency_ns"].is_u64())
                .map(|c| c["args"]["k"].as_u64().unwrap())
                .collect();
            for k in &rows {
                assert!(
                    (k % 5) != 4,
                    "{what}: a row for Risky({k}), which never returned"
                );
            }
            rows.sort_unstable();
            let mut want = returned.clone();
            want.sort_unstable();
            assert_eq!(rows, want, "{what}: {st}");
            assert_eq!(st["emitted"], returned.len() as u64, "{what}: {st}");
        }
    }
}
