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

#[test]
fn a_stack_deeper_than_the_kernels_keeps_its_root_and_counts_what_it_left_out() {
    // 300 deep: the kernel's walk keeps the innermost 64 frames; the outermost are the
    // goroutine's own (the spawned closure, then runtime.goexit), and the frames left
    // out between them are counted, so that every call's frames add up to its depth.
    let spawned = line_of("kinds", "go func() { done <- Recurse(n) }()");
    const DEPTH: u64 = 300;
    for tc in toolchains() {
        for variant in [Variant::Plain, Variant::Pie] {
            let what = format!("{} {variant:?}", tc.label);
            let mut fx = FixtureProc::start(&fixture("kinds", &tc, variant));
            let (got, _) = stacks(&mut fx, &["main.Recurse"], &format!("recurse {DEPTH}"));
            assert_eq!(got.len() as u64, 4 * (DEPTH + 1), "{what}");
            let (mut elided_calls, mut collided) = (0u64, 0u64);
            for c in &got {
                let n = c["args"]["n"].as_u64().unwrap();
                // The kernel's table is a hash: among 300 distinct stacks a few find
                // their slot taken, and say so (README).
                if c["stack"]["not_captured"] == "stack table slot taken by another stack" {
                    collided += 1;
                    continue;
                }
                let st = c["stack"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: {c}"));
                let marks: Vec<&Value> = st.iter().filter(|f| f.get("elided").is_some()).collect();
                assert!(marks.len() <= 1, "{what}: {c}");
                let left_out: u64 = marks.iter().map(|m| m["elided"].as_u64().unwrap()).sum();
                assert!(
                    marks.iter().all(|m| m.get("at_least").is_none()),
                    "{what}: {c}"
                );
                let recursing = st.iter().filter(|f| f["func"] == "main.Recurse").count() as u64;
                assert_eq!(recursing + left_out, DEPTH - n, "{what}: call at {n}: {c}");
                // The root, whatever the depth.
                let (func, line) = frame(&st[st.len() - 2]);
                assert!(func.starts_with("main.recurse.func"), "{what}: {c}");
                assert_eq!(line, spawned, "{what}: {c}");
                assert_eq!(st[st.len() - 1]["func"], "runtime.goexit", "{what}: {c}");
                // Elided only where the kernel's walk was full.
                if left_out > 0 {
                    elided_calls += 1;
                    assert!(DEPTH - n > 60, "{what}: {c}");
                }
            }
            // Deep calls are most of them: each of the four goroutines' calls more
            // than 80 deep (but those whose stack collided).
            assert!(
                collided <= got.len() as u64 / 20,
                "{what}: {collided} collided"
            );
            assert!(
                elided_calls + collided >= 4 * (DEPTH - 80),
                "{what}: {elided_calls}"
            );
        }
    }
}

#[test]
fn a_stack_too_deep_to_walk_says_at_least_how_many_frames_it_left_out() {
    // Past the walk's 2,048 frames, the root cannot be found within a bounded time:
    // the frames are cut with "at least", never ended with a frame from the middle.
    let tc = toolchains().pop().unwrap();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let (got, _) = stacks(&mut fx, &["main.Recurse if n < 3"], "recurse 2500");
    assert_eq!(got.len(), 4 * 3);
    for c in &got {
        let n = c["args"]["n"].as_u64().unwrap();
        let st = c["stack"].as_array().unwrap();
        let last = st.last().unwrap();
        assert_eq!(last["at_least"], true, "{c}");
        let recursing = st.iter().filter(|f| f["func"] == "main.Recurse").count() as u64;
        let left_out = last["elided"].as_u64().unwrap();
        assert!(recursing + left_out < 2500 - n, "{c}");
        assert!(recursing + left_out >= 2000, "{c}");
    }
}
