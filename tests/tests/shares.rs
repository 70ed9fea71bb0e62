//! The budget holds for each process of a program on its own: a replica that makes
//! every call of a costly probe, beside four that make none but keep the cores busy,
//! pays no more than the budget of its own CPU time (the program's share would let it
//! pay about five times that). Each probe's calls and cost are reported per process, and add up
//! to the program's.
use periscope_tests::{FixtureProc, Variant, fixture, newest, private_copy};
use serde_json::Value;

fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    (f[11].parse().unwrap(), f[12].parse().unwrap())
}

#[test]
fn the_budget_holds_for_the_one_process_that_pays_for_a_probe() {
    let bin = private_copy(&fixture("kinds", &newest(), Variant::Plain), "shares");
    let mut a = FixtureProc::start(&bin);
    // The others spin on main.Hot, which the probe is not on.
    let busy: Vec<FixtureProc> = (0..4)
        .map(|_| {
            let mut b = FixtureProc::start(&bin);
            b.run("busy");
            b
        })
        .collect();
    let (child, out, _said) = periscope_tests::trace_to_file(
        &[
            "--budget",
            "2%",
            "--latency",
            "--exe",
            bin.to_str().unwrap(),
            "main.Work",
        ],
        "shares",
    );
    // The probe's uprobe hits are handled in the kernel, where the bare loop spends
    // nothing: A's kernel time is what the probe cost it (see budget.rs).
    let (u0, s0) = cpu_ticks(a.pid);
    // (Long enough that the budget's first look, with every point attached, is a
    // small part of it.)
    a.run("work 1500000000");
    let (u1, s1) = cpu_ticks(a.pid);
    let lines = periscope_tests::stop_trace(child, &out);
    drop(busy);
    let kernel_share = (s1 - s0) as f64 / ((u1 - u0) + (s1 - s0)) as f64;
    eprintln!(
        "kernel share of the paying process: {:.2}%",
        kernel_share * 100.0
    );
    let of = |t: &str| -> Vec<&Value> { lines.iter().filter(|l| l["type"] == t).collect() };
    let program = of("stats")[0];
    let mine: Vec<&Value> = of("process_stats")
        .into_iter()
        .filter(|l| l["pid"] == a.pid)
        .collect();
    assert_eq!(mine.len(), 1, "{lines:?}");
    let mine = mine[0];
    assert!(
        kernel_share < 0.04,
        "the probe took {:.1}% of the CPU time of the process that calls it, at a 2% budget: {mine} (program: {program})",
        kernel_share * 100.0
    );
    assert!(mine["overhead_pct"].as_f64().unwrap() < 4.0, "{mine}");
    // Its calls are every call of the probe, and were seen in windows.
    let per: u64 = of("process_stats")
        .iter()
        .map(|l| l["hits"].as_u64().unwrap())
        .sum();
    assert_eq!(per, program["hits"].as_u64().unwrap(), "{program}");
    assert_eq!(mine["hits"], program["hits"], "{mine}");
    assert!(mine["hits"].as_u64().unwrap() > 1000, "{mine}");
    assert!(mine["observed_pct"].as_f64().unwrap() < 100.0, "{mine}");
    // The program's share is diluted by the busy processes' CPU time: the one that pays
    // is the one the budget is for.
    let costs = of("process_cost");
    assert!(costs.iter().any(|l| l["pid"] == a.pid), "{costs:?}");
    let _ = std::fs::remove_file(&bin);
}
