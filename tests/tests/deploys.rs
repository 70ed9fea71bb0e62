//! Deploys: the file at the traced path is replaced by the program's next build (a new
//! inode) while a process of the old one runs. The new build is probed by name before
//! its first process starts (so that one is seen from its first call), a function that
//! changed its signature is said and decoded as it is now, one that is gone is said,
//! and the old process keeps its probes. Each process's calls are matched against its
//! own record.
use std::collections::BTreeMap;
use std::path::Path;

use periscope_tests::truth::compare;
use periscope_tests::{
    FixtureProc, Toolchain, Variant, eventually, fixture, private_copy, toolchains,
};
use serde_json::Value;

/// Puts `from`'s bytes at `path` as a new file (a new inode), the way installers do:
/// a copy beside it, renamed over it.
fn install(from: &Path, path: &Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The record without the calls a condition filters out (`main.Release if n >= 2`).
fn filtered(record: &[Value]) -> Vec<Value> {
    record
        .iter()
        .filter(|c| c["func"] != "main.Release" || c["args"]["n"].as_i64().unwrap() >= 2)
        .cloned()
        .collect()
}

fn calls_of(lines: &[Value], pid: u32) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["type"] == "call" && l["pid"] == pid)
        .cloned()
        .collect()
}

fn program_lines(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "program")
        .collect()
}

fn deploy(tc: &Toolchain) {
    let what = &tc.label;
    let path = private_copy(&fixture("deploy", tc, Variant::Plain), "deploy");
    let next = fixture("deploy", tc, Variant::Rebuilt);
    let mut old = FixtureProc::start(&path);
    let (child, out, said) = periscope_tests::trace_to_file(
        &[
            "--budget",
            "off",
            "--exe",
            path.to_str().unwrap(),
            "main.Greet",
            "main.Release if n >= 2",
            "main.Retired",
        ],
        &format!("deploy-{what}"),
    );
    // A failure before the end stops the trace too (no probes left behind for the
    // next tests).
    let mut child = Some(child);
    let mut give_up = |why: String| -> ! {
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        panic!("{why}")
    };
    let before = old.run("run 4");
    install(&next, &path);
    // Found at the path before any process runs it: its probes are on it first.
    if !eventually(30, || !program_lines(&out).is_empty()) {
        give_up(format!("{what}: the new file was not noticed"));
    }
    let mut new = FixtureProc::start(&path);
    let rebuilt = new.run("run 4");
    let after = old.run("run 2");
    // A file that is not a Go program put there: refused in one note, nothing else.
    let not_go = std::env::temp_dir().join(format!("periscope-deploy-true-{}", std::process::id()));
    std::fs::copy("/bin/true", &not_go).unwrap();
    install(&not_go, &path);
    if !eventually(30, || program_lines(&out).len() >= 2) {
        give_up(format!("{what}: the file that is not Go was not noticed"));
    }
    let lines = periscope_tests::stop_trace(child.take().expect("running"), &out);
    let said = said.join().unwrap();
    let programs: Vec<&Value> = lines.iter().filter(|l| l["type"] == "program").collect();
    assert_eq!(programs.len(), 2, "{what}: {programs:?}");
    let d = programs[0];
    assert_eq!(d["event"], "deployed", "{what}: {d}");
    assert_eq!(
        (d["probed"].as_u64(), d["probes"].as_u64()),
        (Some(2), Some(3)),
        "{what}: {d}"
    );
    let notes: Vec<&str> = d["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|l| l.starts_with("main.Release: its signature changed")
                && l.contains("main.Release(n int) int")
                && l.contains("main.Release(n int, label string) string")),
        "{what}: {notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|l| l.starts_with("main.Retired: not in the new build")),
        "{what}: {notes:?}"
    );
    assert_eq!(notes.len(), 2, "{what}: {notes:?}");
    assert_eq!(programs[1]["event"], "refused", "{what}: {}", programs[1]);
    assert!(
        said.iter()
            .any(|l| l.contains("a new build of") && l.contains("2 of 3 probe(s)")),
        "{what}: {said:?}"
    );
    // Each process's calls, as its own build made them: the old one's before and after
    // the deploy (Retired included), the new one's from its first call (Release with
    // its label), the condition applied in both.
    let mut old_record = filtered(&before);
    old_record.extend(filtered(&after));
    compare(&old_record, &calls_of(&lines, old.pid))
        .unwrap_or_else(|e| panic!("{what}: old process: {e}"));
    let new_calls = calls_of(&lines, new.pid);
    compare(&filtered(&rebuilt), &new_calls).unwrap_or_else(|e| panic!("{what}: new process: {e}"));
    let mut per_func: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &new_calls {
        *per_func.entry(c["func"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(per_func.get("main.Retired"), None, "{what}");
    assert_eq!(per_func.get("main.Greet"), Some(&4), "{what}");
    assert_eq!(per_func.get("main.Release"), Some(&2), "{what}");
    let started: Vec<u64> = lines
        .iter()
        .filter(|l| l["type"] == "process" && l["event"] == "started")
        .map(|l| l["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(started, vec![u64::from(new.pid)], "{what}");
    // The counters are the program's: both builds' calls.
    let greet = lines
        .iter()
        .find(|l| l["type"] == "stats" && l["func"] == "main.Greet")
        .unwrap();
    assert_eq!(greet["emitted"], 10, "{what}: {greet}");
    let _ = std::fs::remove_file(&not_go);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_new_build_at_the_path_is_probed_by_name_and_its_changes_said() {
    for tc in toolchains() {
        deploy(&tc);
    }
}
