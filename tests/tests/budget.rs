//! The CPU budget: a probe that would cost the target more than allowed has its costly
//! points attached part of the time, says so, and marks every call it saw only in part.
//! Each call shown is checked against the fixture's own record: a call is either whole
//! and right, or seen at its entry with its results marked "not captured".
use std::collections::HashSet;
use std::process::Command;

use periscope_tests::{FixtureProc, Variant, fixture, newest, periscope};
use serde_json::Value;

fn trace_json(pid: u32, args: &[&str]) -> Vec<Value> {
    let out = Command::new(periscope())
        .args(["trace", "--json", "--pid", &pid.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of_type<'a>(lines: &'a [Value], t: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == t).collect()
}

const NOT_WATCHED: &str = "return not watched (cpu budget)";

#[test]
fn a_costly_probe_is_held_to_its_budget_and_marks_what_it_did_not_see() {
    let mut fx = FixtureProc::start(&fixture("kinds", &newest(), Variant::Plain));
    // Login about a thousand times a second with changing arguments.
    fx.run("steady");
    let lines = trace_json(
        fx.pid,
        // Login costs it a few ms of CPU a second: more than 0.1% of the 20% of a core
        // the budget counts a light target as.
        &["--budget", "0.1%", "--duration", "3s", "main.Login"],
    );
    let record = fx.run("stop");
    let steady = record.iter().find(|r| r["type"] == "steady").unwrap();
    let truth: HashSet<(String, u64, bool)> = steady["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["username"].as_str().unwrap().into(),
                c["attempts"].as_u64().unwrap(),
                c["r0"].as_bool().unwrap(),
            )
        })
        .collect();
    let args_of = |c: &Value| {
        (
            c["args"]["username"].as_str().unwrap().to_string(),
            c["args"]["attempts"].as_u64().unwrap(),
        )
    };

    // The budget acted, and said so.
    let notes = of_type(&lines, "budget");
    assert!(
        notes.iter().any(|n| n["mode"] != "full"),
        "no budget line: {notes:?}"
    );
    let calls = of_type(&lines, "call");
    let (mut whole, mut partial) = (0u64, 0u64);
    for c in &calls {
        let (name, attempts) = args_of(c);
        if c["unwatched"] == true {
            // Seen at its entry only: right arguments, results plainly not captured,
            // no latency.
            partial += 1;
            assert!(truth.iter().any(|t| t.0 == name && t.1 == attempts), "{c}");
            assert_eq!(c["ret"]["r0"]["not_captured"], NOT_WATCHED, "{c}");
            assert_eq!(c["ret"]["r1"]["not_captured"], NOT_WATCHED, "{c}");
            assert!(c["latency_ns"].is_null(), "{c}");
        } else {
            whole += 1;
            let ok = c["ret"]["r0"].as_bool().unwrap();
            assert!(truth.contains(&(name, attempts, ok)), "{c}");
            assert!(c["latency_ns"].as_u64().is_some(), "{c}");
        }
    }
    assert!(whole > 0, "no whole call in 3 s");
    // The counters agree with what was printed, and say what share was seen whole.
    let st = of_type(&lines, "stats")[0];
    assert_eq!(st["lost"], 0, "{st}");
    assert_eq!(st["emitted"].as_u64().unwrap(), whole + partial, "{st}");
    // On a busy machine periscope may make rows of some calls only (its own work
    // competes with the target): those sampled out are counted, some of them unwatched.
    let (unwatched, sampled_out) = (
        st["unwatched"].as_u64().unwrap(),
        st["sampled_out"].as_u64().unwrap(),
    );
    assert!(
        (partial..=partial + sampled_out).contains(&unwatched),
        "{partial} unwatched rows: {st}"
    );
    assert!(st["observed_pct"].as_f64().unwrap() < 100.0, "{st}");
    // Far fewer calls were seen whole than made while the probe was attached (most of
    // the fixture's run): the rest were seen at their entry only, or (when even the
    // entries do not fit) not at all between windows.
    let made = steady["calls"].as_u64().unwrap();
    assert!(
        2 * whole < made,
        "{st}: {whole} of the {made} calls seen whole"
    );
}

#[test]
fn without_a_budget_every_call_is_seen_whole() {
    let mut fx = FixtureProc::start(&fixture("kinds", &newest(), Variant::Plain));
    fx.run("steady");
    let lines = trace_json(
        fx.pid,
        &["--budget", "off", "--duration", "1s", "main.Login"],
    );
    fx.run("stop");
    assert!(of_type(&lines, "budget").is_empty());
    for c in of_type(&lines, "call") {
        assert!(
            c["unwatched"].is_null() && c["ret"]["r0"].is_boolean(),
            "{c}"
        );
    }
    let st = of_type(&lines, "stats")[0];
    assert_eq!(st["observed_pct"], 100.0, "{st}");
    assert_eq!(st["unwatched"], 0, "{st}");
}

#[test]
fn a_hot_leaf_is_watched_whole_in_windows() {
    // main.Hot has no stack check: its entry is single-stepped too, so the whole probe
    // goes in windows, and the calls inside them are whole: r0 == x ^ y.
    let mut fx = FixtureProc::start(&fixture("kinds", &newest(), Variant::Plain));
    fx.run("busy");
    let lines = trace_json(
        fx.pid,
        &[
            "--budget",
            "10%",
            "--sample",
            "50",
            "--duration",
            "3s",
            "main.Hot",
        ],
    );
    fx.run("run 1");
    let notes = of_type(&lines, "budget");
    assert!(
        notes.iter().any(|n| n["mode"] == "windowed"),
        "no budget line: {notes:?}"
    );
    let mut whole = 0;
    for c in of_type(&lines, "call") {
        let (x, y) = (
            c["args"]["x"].as_i64().unwrap(),
            c["args"]["y"].as_i64().unwrap(),
        );
        if c["unwatched"] == true {
            assert_eq!(c["ret"]["r0"]["not_captured"], NOT_WATCHED, "{c}");
        } else {
            assert_eq!(c["ret"]["r0"].as_i64().unwrap(), x ^ y, "{c}");
            whole += 1;
        }
    }
    assert!(whole > 0);
    let st = of_type(&lines, "stats")[0];
    assert!(st["observed_pct"].as_f64().unwrap() < 50.0, "{st}");
}

/// The target's user and system CPU time so far, in clock ticks.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    (f[11].parse().unwrap(), f[12].parse().unwrap())
}

#[test]
fn a_2pct_budget_costs_a_hot_loop_less_than_twice_that() {
    // main.Work in a tight loop on one core: a latency probe on every call would cost it
    // most of its time (a single-stepped RET a call). With --budget 2% the probe may
    // take at most 4% of the loop's CPU time, while the histogram still fills.
    //
    // The slowdown is measured as the share of the target's CPU time spent in the
    // kernel, which is where uprobe hits are handled (the bare loop spends none there):
    // timing the loop itself moves by ±10% from run to run on this VM.
    let mut fx = FixtureProc::start(&fixture("kinds", &newest(), Variant::Plain));
    fx.run("work 100000000");
    let (child, _err) = periscope_tests::spawn_trace(
        fx.pid,
        &["--json", "--budget", "2%", "--latency", "main.Work"],
    );
    let (u0, s0) = cpu_ticks(fx.pid);
    fx.run("work 1200000000");
    let (u1, s1) = cpu_ticks(fx.pid);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let kernel_share = (s1 - s0) as f64 / ((u1 - u0) + (s1 - s0)) as f64;
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lat = of_type(&lines, "latency")[0];
    let st = of_type(&lines, "stats")[0];
    assert!(
        kernel_share < 0.04,
        "the probe took {:.1}% of the loop's CPU time: {st}",
        kernel_share * 100.0
    );
    assert!(st["overhead_pct"].as_f64().unwrap() < 4.0, "{st}");
    assert!(lat["count"].as_u64().unwrap() > 1000, "{lat}");
    assert!(st["observed_pct"].as_f64().unwrap() < 100.0, "{st}");
}
