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

/// Calls of Spin the fixture made for `spin FROM TO [more]`: each direct call's
/// argument, and its call through the value to Spin(k-1) for k%7 == 0.
fn spin_calls(from: u64, to: u64, more: bool) -> Vec<u64> {
    let mut calls = Vec::new();
    for k in from..to {
        if k % 3 == 2 && !more {
            continue;
        }
        calls.push(k);
        if k > 0 && k % 7 == 0 {
            calls.push(k - 1);
        }
    }
    calls
}

#[test]
fn returns_learnt_from_the_call_sites_in_use_are_seen_whole_and_the_rets_go() {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};
    for tc in toolchains() {
        for variant in [Variant::Plain, Variant::Pie] {
            let what = format!("{} {variant:?}", tc.label);
            let mut fx = FixtureProc::start(&fixture("kinds", &tc, variant));
            // A budget (the RETs go only under one) that never windows these probes;
            // stdout in a file, read at the end.
            let out = std::env::temp_dir().join(format!(
                "periscope-returns-{}-{}.jsonl",
                tc.label,
                std::process::id()
            ));
            let mut child = std::process::Command::new(periscope())
                .args(["trace", "--budget", "100%", "--json", "--args", "--latency"])
                .args([
                    "--pid",
                    &fx.pid.to_string(),
                    "main.Spin",
                    "main.(*square).Area",
                ])
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
            let (attached, placed) = periscope_tests::read_until_attached(&mut err);
            assert!(attached, "{what}: {placed}");
            assert!(
                placed.contains("learning its call sites"),
                "{what}: {placed}"
            );
            let said = Arc::new(Mutex::new(String::new()));
            {
                let said = Arc::clone(&said);
                std::thread::spawn(move || {
                    for l in err.lines().map_while(Result::ok) {
                        said.lock().unwrap().push_str(&(l + "\n"));
                    }
                });
            }
            // Two sites (and Spin's own call of itself) learnt while the RETs are on.
            let first = fx.run("spin 1 3000");
            let mut waits = Vec::new();
            let start = std::time::Instant::now();
            while !(said
                .lock()
                .unwrap()
                .contains("main.Spin: returns now seen after")
                && said
                    .lock()
                    .unwrap()
                    .contains("main.(*square).Area: returns now seen after"))
            {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(15),
                    "{what}: the RETs never went: {}",
                    said.lock().unwrap()
                );
                // Calls keep coming from the same sites: nothing new to learn.
                waits.push(fx.run("spin 1 30"));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            // A third site, first used now.
            let second = fx.run("spin 3000 6000 more");
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            assert!(child.wait().unwrap().success());
            let text = std::fs::read_to_string(&out).unwrap();
            let _ = std::fs::remove_file(&out);
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let mut own: BTreeMap<u64, u64> = BTreeMap::new();
            // The longest the fixture timed each argument (the waits repeat 1..30).
            for r in [&first, &second].into_iter().chain(&waits) {
                for (k, v) in r[0]["ns"].as_object().unwrap() {
                    let e = own.entry(k.parse().unwrap()).or_default();
                    *e = (*e).max(v.as_u64().unwrap());
                }
            }
            let calls_of = |func: &str| -> Vec<&Value> {
                of_type(&lines, "call")
                    .into_iter()
                    .filter(|c| c["func"] == func)
                    .collect()
            };
            // Spin: every call once (by argument, as a multiset), one call's latency.
            let mut want = spin_calls(1, 3000, false);
            want.extend(spin_calls(3000, 6000, true));
            let rows = calls_of("main.Spin");
            let mut got: Vec<u64> = rows
                .iter()
                .map(|c| c["args"]["k"].as_u64().unwrap())
                .collect();
            let st = |func: &str| {
                of_type(&lines, "stats")
                    .into_iter()
                    .find(|s| s["func"] == func)
                    .unwrap()
                    .clone()
            };
            let spin_st = st("main.Spin");
            // (The calls of `spin 1 30` while waiting are in the counts too.)
            assert!(got.len() >= want.len(), "{what}: {spin_st}");
            let extra = got.len() - want.len();
            got.sort_unstable();
            let mut want_all = want.clone();
            for _ in 0..extra / spin_calls(1, 30, false).len() {
                want_all.extend(spin_calls(1, 30, false));
            }
            want_all.sort_unstable();
            assert!(
                got == want_all,
                "{what}: the calls traced are not the calls made: {spin_st}"
            );
            let mut unwatched = 0;
            for c in &rows {
                let k = c["args"]["k"].as_u64().unwrap();
                match c["latency_ns"].as_u64() {
                    Some(l) => {
                        // A direct call's own timing, or its caller's (k+1 calls k).
                        let bound = own.get(&k).max(own.get(&(k + 1))).copied().unwrap_or(0);
                        assert!(
                            l <= bound,
                            "{what}: Spin({k}) timed {l} ns, the fixture {bound}: {c}"
                        );
                    }
                    None => {
                        // The budget's first look at the probes (the first run), or,
                        // after the RETs went, the third site before its return point
                        // was there.
                        assert_eq!(c["unwatched"], true, "{what}: {c}");
                        if k >= 3000 {
                            assert!(k % 3 == 2, "{what}: {c}");
                            unwatched += usize::from((k + 1) % 7 != 0);
                        }
                    }
                }
            }
            // The third site's calls: seen at their entry only until its return point
            // was attached (a few ms of a tight loop), then every one whole.
            let mut third: Vec<(u64, bool)> = rows
                .iter()
                .map(|c| (c["args"]["k"].as_u64().unwrap(), c["latency_ns"].is_u64()))
                // (Spin(k+1) calls Spin(k) from its own site for (k+1)%7 == 0.)
                .filter(|&(k, _)| k >= 3000 && k % 3 == 2 && (k + 1) % 7 != 0)
                .collect();
            third.sort_unstable();
            let first_whole = third
                .iter()
                .position(|&(_, whole)| whole)
                .unwrap_or(third.len());
            assert!(
                first_whole < third.len(),
                "{what}: the third site never covered"
            );
            assert!(
                third[first_whole..].iter().all(|&(_, whole)| whole),
                "{what}: a call from the third site unwatched after it was covered"
            );
            assert_eq!(unwatched, first_whole, "{what}: {spin_st}");
            assert_eq!(spin_st["hits"], got.len() as u64, "{what}: {spin_st}");
            assert_eq!(spin_st["emitted"], got.len() as u64, "{what}: {spin_st}");
            assert_eq!(spin_st["in_flight"], 0, "{what}: {spin_st}");
            // (A RET may fire once with no entry: the call it ends began while the budget
            // held the RETs back, at its first look.)
            assert!(
                spin_st["unpaired"].as_u64().unwrap() <= 2,
                "{what}: {spin_st}"
            );
            // Area, through its itab: the same.
            let area_st = st("main.(*square).Area");
            let area_rows = calls_of("main.(*square).Area");
            let areas = first[0]["areas"].as_array().unwrap().len()
                + second[0]["areas"].as_array().unwrap().len();
            assert!(area_rows.len() >= areas, "{what}: {area_st}");
            assert_eq!(area_st["hits"], area_rows.len() as u64, "{what}: {area_st}");
            // After the RETs went, only the third site's first calls are unwatched.
            let mut late: Vec<(u64, bool)> = area_rows
                .iter()
                .map(|c| (c["args"]["k"].as_u64().unwrap(), c["latency_ns"].is_u64()))
                .filter(|&(k, _)| k >= 3000)
                .collect();
            late.sort_unstable();
            let covered = late
                .iter()
                .position(|&(k, whole)| k % 3 == 2 && whole)
                .unwrap_or_else(|| panic!("{what}: Area's third site never covered: {area_st}"));
            assert!(
                late.iter()
                    .all(|&(k, whole)| whole || (k % 3 == 2 && late[covered].0 > k)),
                "{what}: Area unwatched where it was covered: {area_st}"
            );
            assert_eq!(area_st["in_flight"], 0, "{what}: {area_st}");
        }
    }
}
