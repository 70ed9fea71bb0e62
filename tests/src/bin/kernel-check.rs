//! The checks that run inside a VM on another kernel (tests/tests/kernels.rs boots it):
//! the parts of periscope that exercise the kernel, each against the fixture's own
//! record, on every fixture given. One line per check: `check LABEL NAME: ok` or
//! `check LABEL NAME: FAILED …`, then `checks done`.
//!
//! kernel-check LABEL=FIXTURE… [stripped=FIXTURE]   (periscope: $PERISCOPE_BIN)
//! kernel-check --bench FIXTURE   (`make bench` on this kernel: `bench …` lines)
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
    if std::env::args().nth(1).as_deref() == Some("--bench") {
        let fx = std::env::args().nth(2).expect("--bench FIXTURE");
        bench(Path::new(&fx));
        println!("checks done");
        return;
    }
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
    let checks: [(&str, Check); 9] = [
        ("values", values),
        ("conditions", conditions),
        ("latency", latency),
        ("by", by),
        ("stack", stack),
        ("budget", budget),
        ("shell", shell),
        ("tui", tui),
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

/// The TUI in a terminal of its own (a pty read by a terminal emulator): search for
/// Login, capture its arguments and results, show its latency, quit.
fn tui(fx: &Path) -> Result<String, String> {
    let mut fx = FixtureProc::start(fx);
    fx.run("steady");
    let term = Pty::spawn(&[
        periscope().to_str().unwrap(),
        "--budget",
        "off",
        &fx.pid.to_string(),
    ])?;
    term.wait_for("the function list", |s| s.contains("main.Login("))?;
    term.write("/main.Login\r")?;
    term.wait_for("Login selected", |s| s.contains("┌ main.Login "))?;
    term.write("ar")?;
    term.wait_for("decoded Login calls", |s| {
        s.matches("username=\"").count() >= 3
    })?;
    term.write("l")?;
    term.wait_for("a latency histogram", |s| {
        s.contains("count") && s.contains("p99")
    })?;
    term.write("q")?;
    let status = term.wait()?;
    fx.run("stop");
    untouched(fx.pid)?;
    if !status.success() {
        return Err(format!("the TUI exited {status}"));
    }
    Ok(String::new())
}

/// A program in a pseudo-terminal of 160x45, its screen kept by a terminal emulator.
struct Pty {
    child: std::process::Child,
    master: std::fs::File,
    screen: std::sync::Arc<std::sync::Mutex<vt100::Parser>>,
}

impl Pty {
    fn spawn(argv: &[&str]) -> Result<Pty, String> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        use std::os::unix::process::CommandExt;
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 45,
            ws_col: 160,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors; the name and termios may be null.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        if r != 0 {
            return Err(format!("openpty: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just opened and are owned here.
        let slave = unsafe { std::fs::File::from_raw_fd(slave) };
        let master = unsafe { std::fs::File::from_raw_fd(master) };
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .env("TERM", "xterm-256color")
            .stdin(slave.try_clone().map_err(|e| e.to_string())?)
            .stdout(slave.try_clone().map_err(|e| e.to_string())?)
            .stderr(slave);
        // SAFETY: between fork and exec: a new session with the pty as its terminal.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| e.to_string())?;
        let screen = std::sync::Arc::new(std::sync::Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(45).unwrap(),
            std::num::NonZeroU16::new(160).unwrap(),
            0,
        )));
        let (reader, parser) = (
            master.try_clone().map_err(|e| e.to_string())?,
            screen.clone(),
        );
        std::thread::spawn(move || {
            use std::io::Read;
            let mut reader = reader;
            let mut buf = [0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                parser.lock().unwrap().process(&buf[..n]);
            }
            let _ = reader.into_raw_fd();
        });
        Ok(Pty {
            child,
            master,
            screen,
        })
    }

    fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn write(&self, keys: &str) -> Result<(), String> {
        (&self.master)
            .write_all(keys.as_bytes())
            .map_err(|e| e.to_string())
    }

    /// Polls the screen (for a minute: an emulated machine is slow) until `pred`.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if pred(&self.text()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("no {what} on the screen:\n{}", self.text()))
    }

    fn wait(mut self) -> Result<std::process::ExitStatus, String> {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        Err(format!("the TUI did not quit:\n{}", self.text()))
    }
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

/// `make bench` on this kernel, as ratios against a plain tracefs uprobe measured in the
/// same VM (an emulated machine's times mean nothing beside the host's): per call of
/// main.Work, an arguments probe and a latency probe; then the time to exit with about
/// 300 uprobes attached.
fn bench(bin: &Path) {
    use periscope_tests::bench::{TracefsProbe, ns_per_call_of};
    let mut fx = FixtureProc::start(bin);
    let base = ns_per_call_of(&mut fx, "work", 200_000);
    let tracefs = {
        let _probe = TracefsProbe::first_instruction(bin, "main.Work");
        ns_per_call_of(&mut fx, "work", 20_000) - base
    };
    println!(
        "bench tracefs uprobe on main.Work's first instruction: {tracefs:.0} ns a call (bare call {base:.1} ns)"
    );
    for (what, args) in [
        (
            "periscope entry probe, 2 arguments",
            ["--args", "main.Work"],
        ),
        (
            "periscope entry+return, latency",
            ["--latency", "main.Work"],
        ),
    ] {
        let (child, _err) = spawn_trace(fx.pid, &["--budget", "off", "--json", args[0], args[1]]);
        let ns = ns_per_call_of(&mut fx, "work", 20_000) - base;
        let _ = stop(child);
        println!(
            "bench {what}: {ns:.0} ns a call, {:.2}x the tracefs uprobe",
            ns / tracefs
        );
    }
    // Latency probes on the functions with the most return points, to about 300 uprobes.
    let out = Command::new(periscope())
        .args(["list", "--json", &fx.pid.to_string(), "."])
        .output()
        .expect("periscope list");
    let mut funcs: Vec<(String, usize)> = lines(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .filter(|f| f["probe_entry"].is_string() && f["inlined_only"] == false)
        .filter_map(|f| {
            let name = f["name"].as_str()?;
            (!name.contains('[')).then(|| {
                (
                    name.to_string(),
                    f["returns"].as_array().map_or(0, Vec::len) + 1,
                )
            })
        })
        .collect();
    funcs.sort_by_key(|f| std::cmp::Reverse(f.1));
    let (mut names, mut uprobes) = (Vec::new(), 0);
    for (name, n) in funcs {
        if uprobes >= 300 {
            break;
        }
        names.push(name);
        uprobes += n;
    }
    let mut args: Vec<&str> = vec!["--budget", "off", "--latency"];
    args.extend(names.iter().map(String::as_str));
    let t = Instant::now();
    let (mut child, _err) = spawn_trace(fx.pid, &args);
    let attach = t.elapsed();
    let t = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let exit = t.elapsed();
    let clean = untouched(fx.pid).is_ok();
    println!(
        "bench {} latency probes, {uprobes} uprobes: attached in {:.1} s, exit in {:.1} s{}",
        names.len(),
        attach.as_secs_f64(),
        exit.as_secs_f64(),
        if clean {
            ""
        } else {
            " (the target's text was NOT its file again)"
        }
    );
}
