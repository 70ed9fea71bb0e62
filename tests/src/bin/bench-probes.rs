//! `make bench`, part 2: what a probe costs the traced program, measured in one run
//! against a baseline, and what the reader sustains.
//!
//! 1. Per call of `main.Work(x, y int)` (the kinds fixture calls it in a tight loop and
//!    times itself): a plain tracefs uprobe on the function's first instruction (what
//!    tools that attach at the symbol pay), then periscope's entry probe capturing both
//!    arguments, an entry+return probe recording latency, and a condition that is false.
//! 2. The highest event rate: the entry probe with `--json` output on the same loop,
//!    events delivered per second and events lost.
//! 3. The demo HTTP service under wrk on loopback: requests per second without probes
//!    and with an arguments probe and a latency probe on two functions of its request
//!    path, alternated, and the throughput drop.
//! 5. (`bench-probes kernels` alone) Parts 1 and 4 on the older kernels, in VMs.
//! 4. Exit with about 300 uprobes attached (latency probes on the demo's net/http
//!    functions with the most RETs): the time from SIGTERM to exit with uprobe_multi
//!    links, against one perf event per uprobe (`PERISCOPE_UPROBE_MULTI=off`).
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use periscope_tests::bench::{TracefsProbe, ns_per_call_of};
use periscope_tests::{FixtureProc, Variant, fixture, newest};

const WORK: &str = "main.Work";

fn main() {
    let bin = fixture("kinds", &newest(), Variant::Plain);
    // `bench-probes kernels`: part 5 alone.
    if std::env::args().nth(1).as_deref() == Some("kernels") {
        other_kernels(&bin);
        return;
    }
    // `bench-probes shared`: the probe at a point a jump reaches too, alone.
    if std::env::args().nth(1).as_deref() == Some("shared") {
        let mut fx = FixtureProc::start(&bin);
        let base = ns_per_call(&mut fx, 3_000_000);
        let tracefs = {
            let _probe = TracefsProbe::first_instruction(&bin, WORK);
            ns_per_call(&mut fx, 200_000) - base
        };
        println!("baseline: tracefs uprobe on {WORK}'s first instruction: {tracefs:.0} ns");
        shared_point(&mut fx, tracefs);
        return;
    }
    // `bench-probes returns`: where returns are seen in cmd/go, alone.
    if std::env::args().nth(1).as_deref() == Some("returns") {
        callgraph_cost();
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("scrape") {
        scrape_size();
        return;
    }
    // `bench-probes many PID`: attach and detach of many functions alone, on a running
    // demo.
    if std::env::args().nth(1).as_deref() == Some("many") {
        let pid = std::env::args().nth(2).and_then(|p| p.parse().ok());
        many_functions(pid.expect("bench-probes many PID"));
        return;
    }
    callgraph_cost();
    scrape_size();
    let mut fx = FixtureProc::start(&bin);
    let base = ns_per_call(&mut fx, 3_000_000);
    println!("probe cost per call of {WORK} (fixture loop, best of 3; bare call {base:.1} ns):");

    let tracefs = {
        let _probe = TracefsProbe::first_instruction(&bin, WORK);
        ns_per_call(&mut fx, 200_000) - base
    };
    let row = |what: &str, ns: f64| {
        println!(
            "  {what:<58} {:>9.0} ns  {:>5.2}x the baseline",
            ns,
            ns / tracefs
        )
    };
    row("baseline: tracefs uprobe on the first instruction", tracefs);
    // The floor under any BPF probe here: a hit on an instruction the kernel emulates,
    // with periscope's program returning at once (its start-up calibration). An entry
    // probe cannot cost less than one, an entry+return probe less than two.
    if let Ok(hc) = probes_ebpf::Engine::new().and_then(|mut e| e.calibrate()) {
        row(
            "floor: one BPF-attached hit, emulated, program returns at once",
            hc.emulated_ns,
        );
        row("floor: two of them (entry + return)", 2.0 * hc.emulated_ns);
        // Below both: the kernel's cheapest uprobe, on a 5-byte NOP (6.18 enters the
        // kernel there by a system call, not a trap). Go code has few such NOPs.
        row(
            "fastest uprobe: one hit on a 5-byte nop (call + syscall)",
            hc.nop5_ns,
        );
    }
    let mut results = Vec::new();
    for (what, args, n) in [
        (
            "periscope entry probe, 2 arguments",
            vec!["--json", "--args", WORK],
            1_000_000,
        ),
        (
            "periscope entry+return, latency (target <= 0.15x)",
            vec!["--json", "--latency", WORK],
            1_000_000,
        ),
        (
            "periscope entry probe, condition false (x < 0)",
            vec!["--json", "--args", "main.Work if x < 0"],
            1_000_000,
        ),
        (
            "periscope args probe on a leaf, no stack check (target <= 0.1x)",
            vec!["--json", "--args", "main.Hot"],
            1_000_000,
        ),
        (
            "periscope args+results+latency on that leaf (target <= 0.2x)",
            vec!["--json", "main.Hot"],
            1_000_000,
        ),
    ] {
        let tracer = Tracer::start(fx.pid, &args);
        let ns = ns_per_call(&mut fx, n) - base;
        let (_, stats) = tracer.stop();
        row(what, ns);
        reported(&stats, ns);
        results.push(ns);
    }
    shared_point(&mut fx, tracefs);
    // Call-site probes where they apply: main.Hot2, a leaf whose one call site checks
    // its result at once, so both ends of a call are seen at emulated instructions.
    let base2 = ns_per_call_of(&mut fx, "checked", 3_000_000);
    println!(
        "call-site probes on main.Hot2 (a leaf; its call site compares the result and branches; bare call {base2:.1} ns), against the same baseline:"
    );
    for (what, args) in [
        (
            "(a) args probe on the leaf, entry at the call site (target <= 0.1x)",
            vec!["--json", "--args", "main.Hot2"],
        ),
        (
            "(b) latency probe, return after the call site (target <= 0.15x)",
            vec!["--json", "--latency", "main.Hot2"],
        ),
        (
            "(c) args + results + latency (target <= 0.2x)",
            vec!["--json", "main.Hot2"],
        ),
    ] {
        let tracer = Tracer::start(fx.pid, &args);
        let ns = ns_per_call_of(&mut fx, "checked", 1_000_000) - base2;
        let (_, stats) = tracer.stop();
        row(what, ns);
        reported(&stats, ns);
    }
    println!(
        "  target: entry probe < 0.25x the baseline (goal 0.1x): {}",
        if results[0] < 0.25 * tracefs {
            "met"
        } else {
            "NOT met"
        }
    );

    // The reader: every call of the loop becomes a JSON line.
    let tracer = Tracer::start(fx.pid, &["--args", "--json", WORK]);
    let calls = 3_000_000u64;
    let rec = fx.run(&format!("work {calls}"));
    let secs = rec[0]["ns"].as_f64().unwrap() / 1e9;
    let cpu_before = children_cpu_secs();
    let (lines, stats) = tracer.stop();
    // Only the tracer is waited for in between: its CPU time.
    let cpu = children_cpu_secs() - cpu_before;
    let lost = stats["lost"].as_u64().unwrap_or(0);
    let emitted = stats["emitted"].as_u64().unwrap_or(0);
    println!(
        "event rate: {calls} calls in {secs:.2} s = {:.0} events/s offered (the loop's fastest with the probe on); {lines} JSON lines printed, {lost} lost",
        calls as f64 / secs
    );
    println!(
        "reader: {emitted} events drained, decoded and printed as JSON in {cpu:.2} CPU-seconds = {:.0} events per CPU-second (target: >= 1,000,000/s)",
        emitted as f64 / cpu.max(1e-9)
    );
    drop(fx);

    demo_throughput();
    other_kernels(&bin);
}

/// A latency probe on main.Step, called in a loop whose condition comes after the call
/// and is entered by a jump from above: its return is seen at the point the jump
/// reaches too (paired), one emulated hit where a RET would be single-stepped. Per
/// call of Step, against the tracefs baseline and two emulated hits (entry and
/// return; the loop's own jump adds one hit per loop, two calls of three here).
fn shared_point(fx: &mut FixtureProc, tracefs: f64) {
    let per_call = |fx: &mut FixtureProc| {
        (0..3)
            .map(|_| {
                let rec = fx.run("steps 2000000");
                rec[0]["ns"].as_f64().unwrap() / rec[0]["calls"].as_f64().unwrap()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let bare = per_call(fx);
    let tracer = Tracer::start(fx.pid, &["--json", "--latency", "main.Step"]);
    let ns = per_call(fx) - bare;
    let (_, stats) = tracer.stop();
    let two = probes_ebpf::Engine::new()
        .and_then(|mut e| e.calibrate())
        .map(|hc| 2.0 * hc.emulated_ns)
        .unwrap_or(f64::NAN);
    println!(
        "latency probe on main.Step, return at a point a jump reaches too (bare call {bare:.1} ns): {ns:.0} ns a call, {:.2}x the baseline, {:.2}x two emulated hits (target <= 1.3x); stepped hits {}",
        ns / tracefs,
        ns / two,
        stats["stepped_hits"]
    );
}

/// Part 5: the same costs on the older kernels of tests/tests/kernels.rs, each in its VM
/// (emulated: ratios against a tracefs uprobe in that VM only), and the exit with about
/// 300 uprobes, where 6.1 has one perf event per uprobe.
fn other_kernels(bin: &std::path::Path) {
    let check = std::env::current_exe()
        .unwrap()
        .with_file_name("kernel-check");
    if !check.exists() {
        println!("other kernels: {} not built", check.display());
        return;
    }
    let image = periscope_tests::vm::checks_image(
        &check,
        &[("kinds".to_string(), bin.to_path_buf())],
        "--bench /fx/kinds",
    );
    for kernel in periscope_tests::vm::kernels() {
        let console = periscope_tests::vm::boot(&kernel, &image, Duration::from_secs(900));
        let out = periscope_tests::vm::guest_output(&console).unwrap_or("(the VM never ran)");
        println!(
            "Linux {} under qemu (TCG, no acceleration):",
            kernel.version
        );
        for line in out.lines() {
            if let Some(l) = line.strip_prefix("bench ") {
                println!("  {l}");
            } else if line.contains("panicked") || line.contains("error") {
                println!("  {line}");
            }
        }
    }
}

/// What periscope itself reported for the calls just timed (calibration + the BPF
/// program's time), against the slowdown `ns` measured here.
fn reported(stats: &serde_json::Value, ns: f64) {
    if let Some(r) = stats["cost_ns"].as_f64() {
        println!(
            "  {:<58} {r:>9.0} ns  {:>5.2}x the measured slowdown (target 0.67-1.5x)",
            "  cost periscope reported for it",
            r / ns.max(1.0)
        );
    }
}

/// User + system CPU seconds of every child waited for so far.
fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Runs the fixture's loop; best of three, in ns per call.
fn ns_per_call(fx: &mut FixtureProc, calls: u64) -> f64 {
    ns_per_call_of(fx, "work", calls)
}

/// `periscope trace` in the background, attached when it says so.
struct Tracer {
    child: Child,
    lines: mpsc::Receiver<Printed>,
}

/// What a tracer printed: how many lines, every stats object, the last latency object.
struct Printed {
    lines: u64,
    stats: Vec<serde_json::Value>,
    latency: Vec<serde_json::Value>,
}

impl Tracer {
    fn start(pid: u32, args: &[&str]) -> Tracer {
        let (mut child, mut err) = periscope_tests::spawn_trace(pid, args);
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
        });
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        // Read everything as it comes so the pipe never slows periscope down; keep the
        // count of lines and the last stats object.
        std::thread::spawn(move || {
            let mut p = Printed {
                lines: 0,
                stats: Vec::new(),
                latency: Vec::new(),
            };
            for l in out.lines().map_while(Result::ok) {
                p.lines += 1;
                if l.contains("\"type\":\"stats\"") {
                    p.stats.push(serde_json::from_str(&l).unwrap_or_default());
                } else if l.contains("\"type\":\"latency\"") {
                    p.latency.push(serde_json::from_str(&l).unwrap_or_default());
                }
            }
            let _ = tx.send(p);
        });
        Tracer { child, lines: rx }
    }

    /// SIGINT, then (lines printed, the stats object).
    fn stop(self) -> (u64, serde_json::Value) {
        let p = self.stop_all();
        (p.lines, p.stats.last().cloned().unwrap_or_default())
    }

    /// SIGINT, then the latency object.
    fn stop_latency(self) -> serde_json::Value {
        self.stop_all().latency.pop().unwrap_or_default()
    }

    fn stop_all(mut self) -> Printed {
        // SAFETY: kill(2) on a child we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().unwrap();
        self.lines.recv_timeout(Duration::from_secs(30)).unwrap()
    }
}

fn demo_throughput() {
    let bin = fixture("demo", &newest(), Variant::Plain);
    let mut demo = Command::new(&bin)
        .args(["--rps", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(demo.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .last()
        .expect("shop: serving on URL")
        .to_string();
    let target = format!("{url}/login?user=alice&attempts=0&address=1+Main+St");
    let pid = demo.id();
    let rps = || wrk(&target, "4s");
    rps(); // warm-up
    let (mut plain, mut probed) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(rps());
        let a = Tracer::start(pid, &["--args", "--json", "main.(*Store).Login"]);
        let l = Tracer::start(pid, &["--latency", "--json", "main.(*Store).SetInfo"]);
        probed.push(rps());
        a.stop();
        l.stop();
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (p, q) = (mean(&plain), mean(&probed));
    println!(
        "demo service under wrk (/login, 16 connections, 3 alternating rounds of 4 s): {p:.0} req/s without probes, {q:.0} req/s with an args probe on Login and a latency probe on SetInfo: {:.1}% drop (target < 5%)",
        (1.0 - q / p) * 100.0
    );

    // The budget: latency probes on the allocator (called many times a request) and on
    // two request handlers. Every RET is a single-stepped hit.
    let probes = [
        "--latency",
        "runtime.mallocgc",
        "main.(*Store).Login",
        "main.(*Store).SetInfo",
    ];
    let (mut base, mut off, mut on) = (Vec::new(), Vec::new(), Vec::new());
    let mut stats = Vec::new();
    for _ in 0..3 {
        base.push(rps());
        let t = Tracer::start(pid, &[&["--json", "--budget", "off"], &probes[..]].concat());
        off.push(rps());
        t.stop();
        let t = Tracer::start(pid, &[&["--json", "--budget", "5%"], &probes[..]].concat());
        on.push(rps());
        stats = t.stop_all().stats;
    }
    let overhead: f64 = stats
        .iter()
        .filter_map(|s| s["overhead_pct"].as_f64())
        .sum();
    let observed: Vec<String> = stats
        .iter()
        .map(|s| {
            format!(
                "{} {}%",
                s["func"].as_str().unwrap_or("?"),
                s["observed_pct"]
            )
        })
        .collect();
    let (b, x, y) = (mean(&base), mean(&off), mean(&on));
    println!(
        "budget (demo under wrk, 3 alternating rounds of 4 s; latency probes on runtime.mallocgc, Login and SetInfo): {b:.0} req/s without probes; every point attached (--budget off): {x:.0} req/s, {:.1}% drop; default budget 5%: {y:.0} req/s, {:.1}% drop (target < 5%); periscope reported {overhead:.1}% of the target's CPU in all (last round) and observed {}",
        (1.0 - x / b) * 100.0,
        (1.0 - y / b) * 100.0,
        observed.join(", ")
    );

    trust(pid, &rps);

    // Honest latency: what a probe reports for a function that takes nanoseconds.
    let t = Tracer::start(pid, &["--json", "--latency", "main.PriceOf"]);
    wrk(
        &format!("{url}/order?user=alice&item=apple&item=pear"),
        "2s",
    );
    let lat = t.stop_latency();
    println!(
        "latency of main.PriceOf (a few ns of work; the probe's own time, the calibrated floor, subtracted): p50 {} ns, p99 {} ns (target < 2 µs)",
        lat["p50_ns"], lat["p99_ns"]
    );

    exit_time(pid);
    many_functions(pid);
    let _ = demo.kill();
    let _ = demo.wait();
}

/// What periscope reports under the default budget is true: the demo saturating the
/// machine under wrk, argument and latency probes on four hot functions of its request
/// path. Throughput against bare (alternated), the calls seen, and for each probe the
/// share of calls it says it observed whole against the share it really did (calls in
/// its latency histogram, over hits and the calls it estimates it did not see).
fn trust(pid: u32, rps: &dyn Fn() -> f64) {
    let probes = [
        "--args",
        "--latency",
        "runtime.mallocgc",
        "net/url.unescape",
        "strconv.Atoi",
        "bufio.(*Reader).ReadSlice",
    ];
    let (mut base, mut on) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..3 {
        base.push(rps());
        let t = Tracer::start(pid, &[&["--json", "--budget", "5%"], &probes[..]].concat());
        on.push(rps());
        last = Some(t.stop_all());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (b, y) = (mean(&base), mean(&on));
    println!(
        "trust (demo saturating the machine under wrk, 3 alternating rounds of 4 s; --args --latency on runtime.mallocgc, net/url.unescape, strconv.Atoi, bufio.(*Reader).ReadSlice, default budget 5%): {b:.0} req/s without probes, {y:.0} req/s with them: {:.1}% fewer (target < 5%)",
        (1.0 - y / b) * 100.0
    );
    let Some(p) = last else { return };
    let mut worst: f64 = 0.0;
    for st in &p.stats {
        let func = st["func"].as_str().unwrap_or("?");
        let n = |k: &str| st[k].as_u64().unwrap_or(0);
        let whole = p
            .latency
            .iter()
            .find(|l| l["func"] == func && l.get("by").is_none())
            .and_then(|l| l["count"].as_u64())
            .unwrap_or(0);
        let all = n("hits") + n("unseen_est");
        let really = if all > 0 {
            100.0 * whole as f64 / all as f64
        } else {
            100.0
        };
        let said = st["observed_pct"].as_f64().unwrap_or(f64::NAN);
        worst = worst.max((said - really).abs());
        println!(
            "  {func}: {} hits, ~{} not seen{}, {whole} seen whole; observed {said:.2}% said, {really:.2}% really; {} rows, {} sampled out, {} lost; {:.2}% of the target's CPU",
            n("hits"),
            n("unseen_est"),
            if st["unseen_at_least"] == true {
                " (at least)"
            } else {
                ""
            },
            n("emitted"),
            n("sampled_out"),
            n("lost"),
            st["overhead_pct"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "  observed share said against really seen: largest difference {worst:.3} points (target <= 0.1)"
    );
}

/// Requests per second that wrk gets from `target` in `secs`.
fn wrk(target: &str, secs: &str) -> f64 {
    let out = Command::new("wrk")
        .args(["-t1", "-c16", &format!("-d{secs}"), target])
        .output()
        .expect("wrk (run `make setup`)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk said: {text}"))
}

/// The probeable functions of `pid` whose names match `regex`, as `list --json` gives
/// them.
fn probeable(pid: u32, regex: &str) -> Vec<serde_json::Value> {
    let out = Command::new(periscope_tests::periscope())
        .args(["list", "--json", &pid.to_string(), regex])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|f| f["probe_entry"].is_string() && f["inlined_only"] == false)
        .collect()
}

/// Runs a `periscope trace` command (stdout discarded) for a second after it attached,
/// then stops it with SIGTERM: seconds from the start to "attached", seconds from
/// SIGTERM to exit, and what it said on stderr after "attached".
fn timed_trace(mut cmd: Command) -> (f64, f64, String) {
    let t0 = std::time::Instant::now();
    cmd.stdout(Stdio::null());
    let (mut child, mut err) = periscope_tests::wait_attached(cmd);
    let attach = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let t1 = std::time::Instant::now();
    // SAFETY: kill(2) on a child we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let exit = t1.elapsed().as_secs_f64();
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    (attach, exit, rest)
}

/// Latency probes on the `net/http` functions of `pid` with the most RETs, until about
/// 300 uprobes; then SIGTERM, timed to exit, batched and not.
fn exit_time(pid: u32) {
    let mut funcs: Vec<(String, usize)> = probeable(pid, r"^net/http\.")
        .into_iter()
        .map(|f| {
            let rets = f["returns"].as_array().map_or(0, Vec::len);
            (f["name"].as_str().unwrap_or("").to_string(), rets + 1)
        })
        .collect();
    funcs.sort_by_key(|f| std::cmp::Reverse(f.1));
    let (mut names, mut uprobes) = (vec!["--latency".to_string()], 0);
    for (name, n) in funcs {
        if uprobes >= 300 {
            break;
        }
        names.push(name);
        uprobes += n;
    }
    let probes = names.len() - 1;
    let time_exit = |multi: &str| -> f64 {
        let mut cmd = Command::new(periscope_tests::periscope());
        cmd.env("PERISCOPE_UPROBE_MULTI", multi)
            .args(["trace", "--pid", &pid.to_string()])
            .args(&names);
        timed_trace(cmd).1
    };
    let batched = time_exit("on");
    let single = time_exit("off");
    println!(
        "exit with {uprobes} uprobes attached ({probes} latency probes on net/http functions): {batched:.1} s with uprobe_multi links, {single:.1} s with one perf event per uprobe: {:.0}x faster (target < 5 s)",
        single / batched.max(1e-3)
    );
}

/// Attach and detach of latency probes on 10, 100 and 300 functions of the standard
/// library in `pid` (each function's entry and returns: several uprobes a function),
/// with uprobe_multi links: from the command to "attached", and from SIGTERM to exit.
fn many_functions(pid: u32) {
    let funcs: Vec<String> = probeable(
        pid,
        r"^(net/http|net|bufio|strings|strconv|fmt|encoding/json|sync|time|os|io)\.",
    )
    .into_iter()
    .filter_map(|f| f["name"].as_str().map(str::to_string))
    .collect();
    for n in [10, 100, 300] {
        let mut cmd = Command::new(periscope_tests::periscope());
        cmd.args([
            "trace",
            "--pid",
            &pid.to_string(),
            "--budget",
            "off",
            "--latency",
        ])
        .args(&funcs[..n.min(funcs.len())]);
        let (attach, exit, rest) = timed_trace(cmd);
        // "periscope: detaching N uprobes…" says how many there were.
        let uprobes = rest
            .lines()
            .find_map(|l| l.strip_prefix("periscope: detaching "))
            .and_then(|r| r.split(' ').next())
            .unwrap_or("?")
            .to_string();
        println!(
            "{n} functions, latency ({uprobes} uprobes): attach {attach:.2} s (catalog and call graph included), exit {exit:.2} s (target: detach < 1 s for 300)"
        );
    }
}

/// A Prometheus scrape of 100 latency probes each split 33 ways (32 values and
/// `other`), every bucket of every series holding calls: how long rendering takes
/// (best of 5) and how large it is.
fn scrape_size() {
    use periscope_exporters::snapshot::{ProbeMetrics, Snapshot};
    let n = probes_ebpf::wire::PSC_HIST_BUCKETS as usize;
    let spread: Vec<u64> = (0..n).map(|i| (i as u64 % 7) + 1).collect();
    let probes = (0..100)
        .map(|i| ProbeMetrics {
            func: format!("github.com/acme/shop/internal/store.(*Store).Handler{i:03}"),
            stats: probes_ebpf::Stats {
                hits: 1_000_000,
                emitted: 900_000,
                ..Default::default()
            },
            latency: Some(spread.clone()),
            by_expr: Some("r.Method".into()),
            by: (0..33)
                .map(|j| {
                    let v = if j == 32 {
                        "other".into()
                    } else {
                        format!("value-{j:02}")
                    };
                    (v, spread.clone())
                })
                .collect(),
            ..ProbeMetrics::default()
        })
        .collect();
    let snap = Snapshot {
        probes,
        ..Snapshot::default()
    };
    let mut best = f64::INFINITY;
    let mut size = 0;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let text = periscope_exporters::prometheus::render(&snap);
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        size = text.len();
    }
    println!(
        "scrape of 100 latency probes split 33 ways: rendered in {best:.1} ms (target < 20 ms), {:.1} MB (target < 2 MB)",
        size as f64 / 1e6
    );
}

/// What indexing every call and taken address of cmd/go costs (once per session, on
/// the first probe): the price of call-site probes.
fn callgraph_cost() {
    let bin = periscope_tests::repo_root().join("tests/.build/bench-cmd-go");
    let Ok(cat) = symbols::Catalog::open(&bin) else {
        println!(
            "call graph: {} missing (part 1 of make bench builds it)",
            bin.display()
        );
        return;
    };
    let best = (0..3)
        .map(|_| {
            let t = std::time::Instant::now();
            std::hint::black_box(symbols::callsites::CallGraph::build(&cat));
            t.elapsed()
        })
        .min()
        .unwrap();
    println!(
        "call graph of cmd/go ({} functions: every direct call and taken address, built on the first probe), best of 3: {} ms",
        cat.functions.len(),
        best.as_millis()
    );
    return_points(&cat);
}

/// Where a latency probe (and one with results) would see the returns of every
/// probeable function of cmd/go: at emulated points only (call sites, points a jump
/// reaches too), at call sites learnt as calls come (emulated once learnt, under a
/// budget), or at single-stepped RETs or return addresses.
fn return_points(cat: &symbols::Catalog) {
    let graph = symbols::callsites::CallGraph::build(cat);
    let shared = symbols::callsites::recovery_entry(cat).is_some();
    for results in [false, true] {
        let (mut all, mut emulated, mut paired, mut learnt) = (0, 0, 0, 0);
        for f in cat.functions.iter().filter(|f| f.probeable()) {
            let sites = graph.plan(cat, f, results, shared);
            let straight = graph.straight_entry(cat, f);
            let Some(p) = probes_ebpf::points::Points::choose(f, true, Some(&sites), straight)
            else {
                continue;
            };
            if p.returns.is_empty() {
                continue;
            }
            all += 1;
            if p.returns.iter().all(|r| !r.stepped) {
                emulated += 1;
                paired += usize::from(p.returns.iter().any(|r| r.shared));
            } else if p.sites {
                learnt += 1;
            }
        }
        let pct = |n: usize| 100.0 * n as f64 / all.max(1) as f64;
        println!(
            "  returns of a {} probe, {all} functions: every one emulated {:.1}% ({:.1}% with a point a jump reaches too), learnt from the calls {:.1}% (emulated once learnt, for the sites whose point is); target: >= 60% emulated",
            if results {
                "results+latency"
            } else {
                "latency"
            },
            pct(emulated),
            pct(paired),
            pct(learnt)
        );
    }
}
