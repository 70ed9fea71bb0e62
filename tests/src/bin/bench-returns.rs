//! `make bench`, part 5: where a real workload's returns are seen (issue 24's measure):
//! Go's `cmd/pprof` serving its web UI for a request loop, with latency probes on its
//! 20 busiest functions of the UI's packages. First every candidate is counted (entry
//! probes, budget off), then the 20 busiest get latency probes, once with the budget
//! off and once at the default budget: the share of their return hits the kernel
//! emulated (the rest single-stepped), and of their calls seen whole.
use std::process::Command;

use periscope_tests::periscope;
use periscope_tests::pprof_server::{Pprof, get};
use serde_json::Value;

/// The UI's own packages: where a user of pprof's web UI would look.
const CANDIDATES: &str = r"internal/(driver|graph|report|measurement)\.";
const BUSIEST: usize = 20;
const ROUNDS: usize = 6;
const VIEWS: [&str; 6] = [
    "/ui/",
    "/ui/top",
    "/ui/flamegraph",
    "/ui/peek",
    "/ui/source?f=main",
    "/ui/disasm?f=main",
];

fn requests(port: u16) {
    for _ in 0..ROUNDS {
        for v in VIEWS {
            get(port, v);
        }
    }
}

/// `trace --json ARGS PROBES` on `pid` while the request loop runs: its stats lines.
fn traced(pid: u32, args: &[&str], probes: &[String]) -> Vec<Value> {
    let out = std::env::temp_dir().join(format!("periscope-bench-returns-{}", std::process::id()));
    let mut cmd = Command::new(periscope());
    cmd.args(["trace", "--json", "--pid", &pid.to_string()])
        .args(args)
        .args(probes)
        .stdout(std::fs::File::create(&out).unwrap());
    let (child, _err) = periscope_tests::wait_attached(cmd);
    let port = PORT.with(|p| p.get());
    requests(port);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait_with_output().unwrap();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "stats")
        .collect()
}

thread_local! {
    static PORT: std::cell::Cell<u16> = const { std::cell::Cell::new(0) };
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn main() {
    let pprof = Pprof::start();
    PORT.with(|p| p.set(pprof.port));
    let pid = pprof.child.id();
    // The candidates: probeable functions of the UI's packages, each with its points.
    let list = Command::new(periscope())
        .args(["list", "--json"])
        .arg(periscope_tests::pprof())
        .arg(CANDIDATES)
        .output()
        .unwrap();
    let funcs: Vec<Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|f| f["inlined_only"] == false && f["probe_entry"].is_string())
        .collect();
    let names: Vec<String> = funcs
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .filter(|n| !n.contains("[...]") && !n.contains(".func"))
        .take(400)
        .collect();
    // Pass 1: calls of each (entries only).
    let counted = traced(
        pid,
        &["--budget", "off", "--args", "--max-string", "1"],
        &names,
    );
    let mut busiest: Vec<(u64, String)> = counted
        .iter()
        .map(|s| (n(s, "hits"), s["func"].as_str().unwrap().to_string()))
        .filter(|(h, _)| *h > 0)
        .collect();
    busiest.sort_by(|a, b| b.cmp(a));
    busiest.truncate(BUSIEST);
    let top: Vec<String> = busiest.iter().map(|(_, f)| f.clone()).collect();
    let entry_stepped = |name: &str| {
        funcs.iter().any(|f| {
            f["name"] == name
                && f["points"].as_str().is_some_and(|p| {
                    p.split(';')
                        .next()
                        .is_some_and(|e| e.contains("single-stepped"))
                })
        })
    };
    for (budget, label) in [("off", "budget off"), ("5%", "default budget (5%)")] {
        let stats = traced(pid, &["--budget", budget, "--latency"], &top);
        let (mut ret, mut stepped_ret, mut hits, mut whole) = (0u64, 0u64, 0u64, 0u64);
        for s in &stats {
            let f = s["func"].as_str().unwrap_or("");
            let entry = if entry_stepped(f) {
                n(s, "hits") + n(s, "morestack")
            } else {
                0
            };
            ret += n(s, "return_hits");
            stepped_ret += n(s, "stepped_hits")
                .saturating_sub(entry)
                .min(n(s, "return_hits"));
            hits += n(s, "hits");
            whole += n(s, "emitted");
        }
        println!(
            "pprof web UI, {} requests, latency probes on its {} busiest UI functions, {label}: {:.1}% of {ret} return hits emulated ({stepped_ret} single-stepped); {whole} of {hits} calls timed whole (target: >= 90% emulated)",
            ROUNDS * VIEWS.len(),
            top.len(),
            100.0 * (ret - stepped_ret) as f64 / ret.max(1) as f64,
        );
    }
    println!(
        "  the {} functions: {}",
        top.len(),
        busiest
            .iter()
            .map(|(h, f)| format!("{} ({h})", f.rsplit('/').next().unwrap_or(f)))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
