//! `--stack`: each call's callers, innermost first, exact against the fixtures' source
//! for every kind of entry point (`push rbp` after the stack check on Go ≥ 1.21, the
//! check's `jbe` on Go 1.19, a call site for a leaf), plain and PIE.
use periscope_tests::{FixtureProc, Variant, fixture, repo_root, toolchains};
use serde_json::Value;

/// The 1-based line of the first line of `fixture`'s main.go that contains `text`.
fn line_of(fixture: &str, text: &str) -> u64 {
    let src =
        std::fs::read_to_string(repo_root().join(format!("tests/fixtures/{fixture}/main.go")))
            .unwrap();
    1 + src.lines().position(|l| l.contains(text)).unwrap() as u64
}

/// Traces `probes` with `--stack` through `cmd`: the calls periscope printed, and the
/// fixture's own record of its calls.
fn stacks(fx: &mut FixtureProc, probes: &[&str], cmd: &str) -> (Vec<Value>, Vec<Value>) {
    let mut args = vec!["--json", "--args", "--stack"];
    args.extend_from_slice(probes);
    periscope_tests::trace_calls(fx, &args, cmd)
}

fn frame(f: &Value) -> (String, u64) {
    let file = f["file"].as_str().unwrap();
    assert!(file.ends_with("main.go"), "{f}");
    (
        f["func"].as_str().unwrap().to_string(),
        f["line"].as_u64().unwrap(),
    )
}

#[test]
fn a_recursive_call_at_depth_k_has_k_frames_of_itself_above_it() {
    let recursive = line_of("kinds", "return Recurse(n-1)");
    let spawned = line_of("kinds", "go func() { done <- Recurse(n) }()");
    for tc in toolchains() {
        for variant in [Variant::Plain, Variant::Pie] {
            let what = format!("{} {variant:?}", tc.label);
            let mut fx = FixtureProc::start(&fixture("kinds", &tc, variant));
            let (got, _) = stacks(&mut fx, &["main.Recurse"], "recurse 5");
            // Four goroutines, each Recurse(5) down to Recurse(0).
            assert_eq!(got.len(), 24, "{what}");
            for c in &got {
                let n = c["args"]["n"].as_u64().unwrap();
                let frames = c["stack"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: {c}"));
                let depth = (5 - n) as usize;
                for f in &frames[..depth] {
                    assert_eq!(frame(f), ("main.Recurse".into(), recursive), "{what}: {c}");
                }
                let (func, line) = frame(&frames[depth]);
                assert!(func.starts_with("main.recurse.func"), "{what}: {c}");
                assert_eq!(line, spawned, "{what}: {c}");
                assert_eq!(frames[depth + 1]["func"], "runtime.goexit", "{what}: {c}");
            }
        }
    }
}

#[test]
fn a_leaf_probed_at_its_call_sites_has_each_callers_line() {
    let sites: Vec<u64> = ["a := Leaf3(i)", "b := Leaf3(i + 1)", "c := Leaf3(i + 2)"]
        .iter()
        .map(|t| line_of("sites", t))
        .collect();
    let round = line_of("sites", "round(i)");
    for tc in toolchains() {
        for variant in [Variant::Plain, Variant::Pie] {
            let what = format!("{} {variant:?}", tc.label);
            let mut fx = FixtureProc::start(&fixture("sites", &tc, variant));
            let (got, record) = stacks(&mut fx, &["main.Leaf3"], "run 4");
            let calls = record.iter().filter(|c| c["func"] == "main.Leaf3").count();
            assert_eq!(got.len(), calls, "{what}");
            let mut seen = std::collections::BTreeSet::new();
            for c in &got {
                let frames = c["stack"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: {c}"));
                let (func, line) = frame(&frames[0]);
                assert_eq!(func, "main.round", "{what}: {c}");
                assert!(sites.contains(&line), "{what}: {c}");
                seen.insert(line);
                assert_eq!(
                    frame(&frames[1]),
                    ("main.main".into(), round),
                    "{what}: {c}"
                );
            }
            assert_eq!(seen.len(), 3, "{what}: every call site seen");
        }
    }
}
