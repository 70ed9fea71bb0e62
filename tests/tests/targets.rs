//! Targets that are not what they seem: cgo programs (ABI0 wrappers on older Go, C code
//! first in the text of an externally linked binary) and a process that execs another
//! program. Every value shown is checked against the fixture's own record.
use std::io::{BufRead, Read};
use std::time::{Duration, Instant};

use periscope_tests::{
    FixtureProc, Variant, eventually, fixture, keepers, periscope_links, toolchains,
};
use serde_json::Value;

fn stop(child: std::process::Child) -> Vec<Value> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn cgo_programs_show_the_values_they_passed() {
    for tc in toolchains() {
        let mut fx = FixtureProc::start(&fixture("cgo", &tc, Variant::Plain));
        let (child, _err) =
            periscope_tests::spawn_trace(fx.pid, &["--json", "main.Add", "main._Cfunc_cadd"]);
        let record = fx.run("run 5");
        std::thread::sleep(Duration::from_millis(200));
        let got = stop(child);
        let calls = |f: &str| -> Vec<&Value> {
            got.iter()
                .filter(|v| v["type"] == "call" && v["func"] == f)
                .collect()
        };
        let (add, cadd) = (calls("main.Add"), calls("main._Cfunc_cadd"));
        assert_eq!(add.len(), record.len(), "{}: {got:?}", tc.label);
        assert_eq!(cadd.len(), record.len(), "{}: {got:?}", tc.label);
        for ((r, a), c) in record.iter().zip(&add).zip(&cadd) {
            let (x, sum) = (&r["args"]["a"], &r["ret"]["r0"]);
            assert_eq!(&a["args"]["a"], x, "{}: {a}", tc.label);
            assert_eq!(&a["ret"]["r0"], sum, "{}: {a}", tc.label);
            // The C wrapper: (p0, p1) → the C result, whatever its ABI.
            assert_eq!(&c["args"]["p0"], x, "{}: {c}", tc.label);
            assert_eq!(c["args"]["p1"], 66, "{}: {c}", tc.label);
            let ret = c["ret"].as_object().unwrap();
            assert_eq!(ret.values().next(), Some(sum), "{}: {c}", tc.label);
        }
    }
}

#[test]
fn a_target_that_execs_another_program_ends_the_trace() {
    let tc = periscope_tests::newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let (child, mut err) =
        periscope_tests::spawn_trace(fx.pid, &["--json", "main.Login", "main.Work"]);
    let started = Instant::now();
    fx.run("exec /bin/sleep 30");
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(out.status.success(), "{rest}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        rest.lines()
            .any(|l| l.contains("replaced its program with /usr/bin/sleep")
                || l.contains("replaced its program with /bin/sleep")),
        "{rest}"
    );
    assert!(eventually(10, || periscope_links().is_empty() && keepers().is_empty()));
    let _ = err.fill_buf();
}
