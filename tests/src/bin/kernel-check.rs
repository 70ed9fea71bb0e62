//! The checks that run inside a VM on another kernel (tests/tests/kernels.rs boots it):
//! the parts of periscope that exercise the kernel, each against the fixture's own
//! record, on every fixture given. One line per check: `check LABEL NAME: ok` or
//! `check LABEL NAME: FAILED …`, then `checks done`.
//!
//! kernel-check LABEL=FIXTURE… [stripped=FIXTURE]   (periscope: $PERISCOPE_BIN)
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use periscope_tests::truth::{by_func, compare};
use periscope_tests::{FixtureProc, eventually, periscope, spawn_trace, text_differences};
use serde_json::Value;

type Check = fn(&Path) -> Result<String, String>;

fn main() {
    let mut fixtures: Vec<(String, PathBuf)> = Vec::new();
    let mut stripped = None;
    for a in std::env::args().skip(1) {
        let (label, path) = a.split_once('=').expect("LABEL=PATH");
        if label == "stripped" {
            stripped = Some(PathBuf::from(path));
        } else {
            fixtures.push((label.to_string(), PathBuf::from(path)));
        }
    }
    let checks: [(&str, Check); 8] = [
        ("values", values),
        ("conditions", conditions),
        ("latency", latency),
        ("by", by),
        ("stack", stack),
        ("budget", budget),
        ("shell", shell),
        ("exit", exit),
    ];
    for (label, fx) in &fixtures {
        for (name, check) in checks {
            run(label, name, || check(fx));
        }
    }
    if let Some(fx) = stripped {
        run("stripped", "latency", || stripped_latency(&fx));
    }
    println!("checks done");
}

/// Runs one check; a panic in it (an assertion in a helper) is its failure.
fn run(label: &str, name: &str, check: impl FnOnce() -> Result<String, String>) {
    let t = Instant::now();
    let said = match catch_unwind(AssertUnwindSafe(check)) {
        Ok(Ok(note)) => format!("ok ({:.1} s){note}", t.elapsed().as_secs_f64()),
        Ok(Err(e)) => format!("FAILED {e}"),
        Err(p) => format!(
            "FAILED (panic) {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        ),
    };
    println!("check {label} {name}: {}", said.replace('\n', " "));
    let _ = std::io::stdout().flush();
}

/// `periscope trace --json ARGS` over the fixture's command `cmd`: periscope's lines
/// (calls, summaries), and the fixture's record. The target's text must then be its
/// file again.
fn traced(
    fx: &mut FixtureProc,
    args: &[&str],
    cmd: &str,
) -> Result<(Vec<Value>, Vec<Value>), String> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (child, _err) = spawn_trace(fx.pid, &all);
    let record = fx.run(cmd);
    std::thread::sleep(Duration::from_millis(300));
    let out = stop(child)?;
    untouched(fx.pid)?;
    Ok((lines(&out), record))
}

/// SIGTERM, as Ctrl-C; returns what it printed.
fn stop(child: std::process::Child) -> Result<String, String> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "periscope exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn of_type<'a>(v: &'a [Value], t: &str) -> Vec<&'a Value> {
    v.iter().filter(|l| l["type"] == t).collect()
}

/// Nothing of periscope is left in the target's text (within a few seconds: the
/// kernel removes uprobes after the links close).
fn untouched(pid: u32) -> Result<(), String> {
    if eventually(10, || text_differences(pid).is_empty()) {
        Ok(())
    } else {
        let d = text_differences(pid);
        Err(format!(
            "the target's text differs from its file at {} bytes: {:?}",
            d.len(),
            &d[..3.min(d.len())]
        ))
    }
}

fn values(fx: &Path) -> Result<String, String> {
    let mut fx = FixtureProc::start(fx);
    let funcs = periscope_tests::truth::fixture_funcs();
    let (got, truth) = traced(&mut fx, &funcs, "run 6")?;
    compare(&truth, &got)?;
    if fx.run("run 1").len() != 19 {
        return Err("the target does not run on after detach".into());
    }
    Ok(format!(", {} calls", truth.len()))
}

fn conditions(fx: &Path) -> Result<String, String> {
    let mut fx = FixtureProc::start(fx);
    let (got, truth) = traced(
        &mut fx,
        &[
            r#"main.SetInfo if u.Name == "alice" && u.Age >= 18"#,
            "main.Login if r1 != nil",
        ],
        "run 24",
    )?;
    let (want, have) = (by_func(&truth), by_func(&got));
    let set: Vec<_> = want["main.SetInfo"]
        .iter()
        .filter(|(a, _)| a["u"]["Name"] == "alice" && a["u"]["Age"].as_i64().unwrap_or(0) >= 18)
        .cloned()
        .collect();
    let login: Vec<_> = want["main.Login"]
        .iter()
        .filter(|(_, r)| !r["r1"].is_null())
        .cloned()
        .collect();
    if set.is_empty() || login.is_empty() {
        return Err("the record has no matching call".into());
    }
    if have.get("main.SetInfo") != Some(&set) || have.get("main.Login") != Some(&login) {
        return Err(format!(
            "traced {have:?}, want SetInfo {set:?} and Login {login:?}"
        ));
    }
    Ok(String::new())
}

/// Sleeps the fixture timed itself, each on a goroutine of its own: every latency lies
/// between the sleep asked for and what the fixture measured around the call (a busy
/// emulator wakes timers late, so percentiles of the two are not compared), and the
/// histogram counts them all.
fn latency(fx: &Path) -> Result<String, String> {
    let mut fx = FixtureProc::start(fx);
    let (got, truth) = traced(&mut fx, &["--args", "--latency", "main.Sleep"], "sleep")?;
    let lat = of_type(&got, "latency");
    let lat = lat.first().ok_or("no latency summary")?;
    if lat["count"] != 40 {
        return Err(format!("{} latencies for 40 sleeps: {lat}", lat["count"]));
    }
    let own: BTreeMap<u64, (u64, u64)> = truth
        .iter()
        .filter_map(|c| {
            Some((
                c["goid"].as_u64()?,
                (c["args"]["d"].as_u64()?, c["elapsed_ns"].as_u64()?),
            ))
        })
        .collect();
    let calls = of_type(&got, "call");
    if calls.len() != 40 {
        return Err(format!("{} rows for 40 sleeps", calls.len()));
    }
    for c in calls {
        let goid = c["goid"].as_u64().ok_or("no goid")?;
        let &(asked, took) = own
            .get(&goid)
            .ok_or_else(|| format!("goroutine {goid}: {c}"))?;
        let l = c["latency_ns"]
            .as_u64()
            .ok_or_else(|| format!("no latency: {c}"))?;
        // (The probe's own time is subtracted with its calibrated floor: a few µs of
        // slack either way.)
        if l + 50_000 < asked || l > took + 50_000 {
            return Err(format!(
                "Sleep({asked} ns) on goroutine {goid}: latency {l} ns, the fixture measured {took} ns"
            ));
        }
    }
    Ok(format!(", p50 {} ns", lat["p50_ns"]))
}

fn by(fx: &Path) -> Result<String, String> {
    let mut fx = FixtureProc::start(fx);
    let (got, truth) = traced(&mut fx, &["--by", "username", "main.Login"], "run 12")?;
    let mut printed: BTreeMap<String, u64> = BTreeMap::new();
    for c in of_type(&got, "call") {
        *printed
            .entry(c["args"]["username"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let split: BTreeMap<String, u64> = of_type(&got, "latency")
        .iter()
        .filter_map(|c| Some((c.get("by")?.as_str()?.to_string(), c["count"].as_u64()?)))
        .collect();
    let calls = truth.iter().filter(|c| c["func"] == "main.Login").count() as u64;
    if split != printed || split.values().sum::<u64>() != calls || split.len() < 2 {
        return Err(format!(
            "split {split:?}, printed {printed:?}, {calls} calls"
        ));
    }
    Ok(String::new())
}

/// Recurse(5) on four goroutines: each call's stack has main.Recurse once per level
/// above it, then the goroutine's function and runtime.goexit.
fn stack(fx: &Path) -> Result<String, String> {
    let mut fx = FixtureProc::start(fx);
    let (got, _) = traced(&mut fx, &["--args", "--stack", "main.Recurse"], "recurse 5")?;
    let calls = of_type(&got, "call");
    if calls.len() != 24 {
        return Err(format!("{} calls of Recurse, 24 made", calls.len()));
    }
    for c in calls {
        let n = c["args"]["n"].as_u64().ok_or("no n")? as usize;
        let frames = c["stack"]
            .as_array()
            .ok_or_else(|| format!("no stack: {c}"))?;
        let depth = 5 - n;
        let func = |i: usize| frames.get(i).and_then(|f| f["func"].as_str()).unwrap_or("");
        if (0..depth).any(|i| func(i) != "main.Recurse")
            || !func(depth).starts_with("main.recurse.func")
            || func(depth + 1) != "runtime.goexit"
        {
            return Err(format!("stack of Recurse({n}): {c}"));
        }
    }
    Ok(String::new())
}

/// A hot loop under a small budget: the probe goes in windows and says so, and what
/// it reports adds up.
fn budget(fx: &Path) -> Result<String, String> {
    let mut fx = FixtureProc::start(fx);
    fx.run("busy");
    let (child, _err) = spawn_trace(
        fx.pid,
        &[
            "--json",
            "--budget",
            "1%",
            "--args",
            "--latency",
            "main.Hot",
        ],
    );
    std::thread::sleep(Duration::from_secs(4));
    let got = lines(&stop(child)?);
    fx.run("run 0");
    untouched(fx.pid)?;
    let st = *of_type(&got, "stats").first().ok_or("no stats")?;
    let windowed = of_type(&got, "budget")
        .iter()
        .any(|b| b["func"] == "main.Hot" && b["mode"] != "full");
    let n = |k: &str| st[k].as_u64().unwrap_or(0);
    if !windowed || n("hits") == 0 {
        return Err(format!("no window said, or no call seen: {st}"));
    }
    let all = n("hits") + n("unseen_est");
    let ended = ["emitted", "filtered", "sampled_out", "lost", "unrecorded"]
        .iter()
        .map(|k| n(k))
        .sum::<u64>();
    let in_flight = n("hits").saturating_sub(ended);
    let whole = n("hits").saturating_sub(n("unwatched") + in_flight);
    let said = st["observed_pct"].as_f64().unwrap_or(-1.0);
    let really = 100.0 * whole as f64 / all as f64;
    if (said - really).abs() > 0.01 {
        return Err(format!(
            "observed_pct {said} but the counts say {really:.2}: {st}"
        ));
    }
    Ok(format!(", observed {said}%, ~{} not seen", n("unseen_est")))
}

/// The shell traces a call and stops cleanly.
fn shell(fx: &Path) -> Result<String, String> {
    let mut fx = FixtureProc::start(fx);
    fx.run("steady");
    let mut child = Command::new(periscope())
        .args(["shell", &fx.pid.to_string()])
        .env("PERISCOPE_HISTORY", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().unwrap();
    for cmd in [
        "budget off",
        "trace main.Login",
        "wait 2s",
        "events --last 3",
        "probes",
        "quit",
    ] {
        writeln!(stdin, "{cmd}").map_err(|e| e.to_string())?;
    }
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    fx.run("stop");
    untouched(fx.pid)?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.lines().any(|l| l.contains("main.Login(username=")) {
        return Err(format!("{}: {text}", out.status));
    }
    Ok(String::new())
}

/// Latency probes on the fixture's functions with the most return points, then
/// SIGTERM: the time periscope takes to leave (the uprobes one link each where the
/// kernel has no uprobe_multi).
fn exit(fx: &Path) -> Result<String, String> {
    let fx = FixtureProc::start(fx);
    let out = Command::new(periscope())
        .args(["list", "--json", &fx.pid.to_string(), r"^main\."])
        .output()
        .map_err(|e| e.to_string())?;
    let funcs: Vec<String> = lines(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .filter(|f| f["probe_entry"].is_string() && f["inlined_only"] == false)
        .filter_map(|f| f["name"].as_str().map(String::from))
        .filter(|n| !n.contains('['))
        .take(40)
        .collect();
    let mut args: Vec<&str> = vec!["--budget", "off", "--latency"];
    args.extend(funcs.iter().map(String::as_str));
    let (mut child, err) = spawn_trace(fx.pid, &args);
    let uprobes = count_uprobes(fx.pid);
    let t = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().map_err(|e| e.to_string())?;
    let took = t.elapsed();
    let said: Vec<String> = err.lines().map_while(Result::ok).collect();
    if !status.success() {
        return Err(format!("{status}: {said:?}"));
    }
    untouched(fx.pid)?;
    Ok(format!(
        ", {} functions, {uprobes} uprobes, exit in {:.2} s",
        funcs.len(),
        took.as_secs_f64()
    ))
}

/// Uprobes in the target, by the breakpoints in its text.
fn count_uprobes(pid: u32) -> usize {
    text_differences(pid).len()
}

fn stripped_latency(fx: &Path) -> Result<String, String> {
    let mut fx = FixtureProc::start(fx);
    let (got, _) = traced(&mut fx, &["--latency", "main.Sleep"], "sleep")?;
    let lat = of_type(&got, "latency");
    match lat.first() {
        Some(l) if l["count"] == 40 => Ok(String::new()),
        other => Err(format!("latency of a stripped binary: {other:?}")),
    }
}
