//! `periscope shell PID`: a line-oriented debugger console (rustyline) for people who
//! prefer a prompt and for terminals where the full-screen UI does not fit. A
//! background thread drains the ring buffer while the prompt waits for input.
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use symbols::Catalog;

use crate::app::search;
use crate::command::{COMMANDS, Command};
use crate::format::{call_line_of, fmt_ns};
use crate::session::{Row, Session};

/// Calls kept for `events`.
const KEEP: usize = 10_000;

struct Shared {
    session: Session,
    rows: VecDeque<Row>,
    exited: bool,
    /// What became of the target, once it is gone.
    gone: String,
    /// Changes in what the budget does, not printed yet.
    notes: Vec<String>,
    /// The budget's notes, as lines for people (digest.rs).
    digest: crate::digest::Digest,
    /// Log probes' templates, by function: `events` prints their messages.
    logs: std::collections::HashMap<usize, crate::template::Template>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn run(scope: crate::session::Scope, budget: Option<f64>, metrics: Option<&str>) -> Result<()> {
    // Before any thread starts: SIGINT, SIGTERM and SIGHUP go to one waiting thread.
    crate::signals::block();
    let metrics = crate::metrics::start(metrics)?;
    let mut session = Session::open_scope(&scope)?;
    session.set_budget(budget);
    let cat = session.cat.clone();
    let shared = Arc::new(Mutex::new(Shared {
        session,
        rows: VecDeque::new(),
        exited: false,
        gone: String::new(),
        notes: Vec::new(),
        digest: crate::digest::Digest::new(),
        logs: Default::default(),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let interrupt = Arc::new(AtomicBool::new(false));
    // A command is running: Ctrl-C then interrupts it rather than ending the shell.
    let running = Arc::new(AtomicBool::new(false));
    {
        let (shared, stop, interrupt) = (shared.clone(), stop.clone(), interrupt.clone());
        let running = running.clone();
        let terminal = crate::signals::SavedTerminal::save();
        crate::signals::spawn_waiter(move |sig| {
            if sig == crate::signals::INTERRUPT && running.load(Ordering::SeqCst) {
                // Ctrl-C while a command runs (at the prompt, the line editor reads it
                // as a key).
                interrupt.store(true, Ordering::SeqCst);
                return;
            }
            stop.store(true, Ordering::SeqCst);
            lock(&shared).session.close();
            terminal.restore();
            crate::say!("periscope: stopped by signal {sig}; every probe is detached");
            std::process::exit(0);
        });
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let metrics_addr = metrics.as_ref().map(|m| m.addr());
    let drainer = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || drain_loop(&shared, &stop, metrics))
    };
    // Tab lists the candidates, as bash does, rather than cycling through them.
    let config = rustyline::Config::builder()
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut rl: Editor<ShellHelper, rustyline::history::DefaultHistory> =
        Editor::with_config(config)?;
    rl.set_helper(Some(ShellHelper {
        cat: cat.clone(),
        shared: shared.clone(),
    }));
    let history = history_path();
    let _ = rl.load_history(&history);
    let target = lock(&shared).session.target_label();
    println!(
        "periscope shell on {target} ({}, {} functions); `help` lists the commands",
        cat.go_version,
        cat.functions.len()
    );
    if !cat.has_dwarf {
        println!("note: {}", symbols::stripped::NOTE);
    }
    if let Some(a) = metrics_addr {
        println!("metrics at http://{a}/metrics");
    }
    if let Some(w) = lock(&shared).session.keeper_warning() {
        println!("warning: {w}");
    }
    if let Some(w) = cat.release_warning() {
        println!("warning: {w}");
    }
    if let Some(n) = lock(&shared).session.batching_note() {
        println!("note: {n}");
    }
    let mut reported_exit = false;
    loop {
        let line = match rl.readline("periscope> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        if interactive {
            // Commands piped in by a script are not the user's history.
            let _ = rl.add_history_entry(line.as_str());
        }
        interrupt.store(false, Ordering::SeqCst);
        if lock(&shared).exited && !reported_exit {
            reported_exit = true;
            println!(
                "{}: its probes are detached; what was captured stays",
                lock(&shared).gone
            );
        }
        match crate::command::parse(&line) {
            Ok(None) => {}
            Ok(Some(Command::Quit)) => break,
            Ok(Some(cmd)) => {
                running.store(true, Ordering::SeqCst);
                let result = execute(&shared, &cat, cmd, &interrupt);
                running.store(false, Ordering::SeqCst);
                print_notes(&shared);
                if let Err(e) = result {
                    println!("error: {e:#}");
                }
            }
            Err(e) => println!("error: {e:#}"),
        }
        let _ = std::io::stdout().flush();
    }
    if interactive {
        save_history(&mut rl, &history);
    }
    stop.store(true, Ordering::SeqCst);
    let _ = drainer.join();
    lock(&shared).session.close();
    Ok(())
}

/// In the shell the catalog is listed with `funcs`, not `periscope list`.
fn shell_hint(e: anyhow::Error) -> anyhow::Error {
    anyhow!(
        "{}",
        e.to_string().replace(
            "`periscope list PID REGEX` lists them all",
            "`funcs REGEX` lists them"
        )
    )
}

/// What the budget did since the last look (collected by the drain thread).
fn print_notes(shared: &Mutex<Shared>) {
    let notes = std::mem::take(&mut lock(shared).notes);
    for n in notes {
        println!("note: {n}");
    }
}

/// The shell's history: commands hold conditions, and conditions can hold secrets
/// (`if token == "…"`), so it lives in periscope's own state directory (mode 0700,
/// never a link another user planted) and is kept readable by its owner only.
fn history_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PERISCOPE_HISTORY") {
        return p.into();
    }
    match periscope_files::state_dir() {
        Ok(dir) => dir.join("history"),
        // Nowhere of the user's own: the history is not kept.
        Err(_) => PathBuf::from("/dev/null"),
    }
}

/// Saves the history, then makes it its owner's only (rustyline creates it with the
/// umask's mode).
fn save_history<H: rustyline::Helper>(
    rl: &mut Editor<H, rustyline::history::DefaultHistory>,
    path: &std::path::Path,
) {
    if path == std::path::Path::new("/dev/null") {
        return;
    }
    if rl.save_history(path).is_ok() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

fn drain_loop(
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
    metrics: Option<periscope_exporters::MetricsServer>,
) {
    let mut buf = Vec::new();
    let mut last_check = Instant::now();
    let mut rows_read = 0u64;
    while !stop.load(Ordering::SeqCst) {
        {
            let mut sh = lock(shared);
            rows_read += sh.session.drain(&mut buf, KEEP) as u64;
            if let Some(m) = &metrics {
                m.publish_every(&sh.session, rows_read);
            }
            crate::session::insert_by_entry(&mut sh.rows, std::mem::take(&mut buf));
            let notes = sh.session.take_budget_notes();
            let lines = sh.digest.push(notes, Instant::now());
            sh.notes.extend(lines);
            let warnings = sh.session.take_keeper_notes();
            sh.notes
                .extend(warnings.into_iter().map(|w| format!("warning: {w}")));
            let said = sh.session.take_said();
            sh.notes.extend(said);
            let procs = sh.session.take_process_notes();
            sh.notes.extend(procs.iter().map(|n| n.describe()));
            for d in sh.session.take_deploy_notes() {
                sh.notes.push(d.describe());
                sh.notes.extend(d.lines);
            }
            let excess = sh.rows.len().saturating_sub(KEEP);
            sh.rows.drain(..excess);
            if !sh.exited && last_check.elapsed() > Duration::from_secs(1) {
                last_check = Instant::now();
                let t = sh.session.target();
                if t != crate::session::Target::Running {
                    sh.exited = true;
                    sh.gone = sh.session.describe_target(&t);
                    sh.session.remove_all();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn execute(
    shared: &Mutex<Shared>,
    cat: &Catalog,
    cmd: Command,
    interrupt: &AtomicBool,
) -> Result<()> {
    match cmd {
        Command::Funcs { regex } => {
            let re = regex
                .as_deref()
                .map(regex::Regex::new)
                .transpose()
                .map_err(|e| anyhow!("bad regex: {e}"))?;
            let mut n = 0;
            let mut names: Vec<&symbols::Function> = cat
                .functions
                .iter()
                .filter(|f| match &re {
                    Some(re) => re.is_match(&f.name),
                    None => search::is_user(cat, f),
                })
                .collect();
            names.sort_by(|a, b| a.name.cmp(&b.name));
            for f in names {
                n += 1;
                let mark = if f.probeable() {
                    ""
                } else {
                    "  (not probeable)"
                };
                println!("{}  {}{mark}", f.signature(), f.location());
            }
            println!("{n} function(s)");
        }
        Command::Trace {
            func,
            mut settings,
            log,
        } => {
            let funcs = crate::session::find_functions(cat, &func).map_err(shell_hint)?;
            let idx = funcs[0];
            // A log template is checked against the function, and decides what else is
            // captured (as in `periscope trace --log`).
            let template = match &log {
                Some(text) => {
                    let t = crate::template::Template::parse(text)
                        .map_err(|e| anyhow!("--log `{text}`, {e}"))?;
                    let needs = t
                        .check(cat, &cat.functions[idx])
                        .map_err(|e| anyhow!("--log `{text}`, {e}"))?;
                    needs.apply(&mut settings);
                    Some(t)
                }
                None => None,
            };
            let mut sh = lock(shared);
            if sh.exited {
                return Err(anyhow!("{}: nothing to probe", sh.gone));
            }
            let set = match sh.session.set_group(&funcs, &settings) {
                Ok(set) => set,
                Err(e) => {
                    return Err(match (e.column(), &settings.condition) {
                        (Some(col), Some(c)) => anyhow!(
                            "{}\n       if {}\n          {}^ column {col}",
                            e,
                            probes_ebpf::error::shorten(c),
                            " ".repeat(col.saturating_sub(1))
                        ),
                        _ => anyhow!("{e}"),
                    });
                }
            };
            if let Some(note) = &set.note {
                println!("note: {note}");
            }
            match template {
                Some(t) => sh.logs.insert(idx, t),
                None => sh.logs.remove(&idx),
            };
            let settings = set.settings;
            let no = set.number.unwrap_or_default();
            // What it will add to each call, from the calibration and its points.
            let est = set
                .per_call_ns
                .map(|ns| format!("; ~{} a call here", crate::format::fmt_ns(ns as u64)))
                .unwrap_or_default();
            println!(
                "probe {no}: {} ({}{est})",
                cat.functions[idx].name,
                settings.describe()
            );
            if let Some(p) = sh.session.describe_points(idx) {
                println!("  points: {p}");
            }
        }
        Command::Probes => {
            let sh = lock(shared);
            let probes = sh.session.probes();
            if probes.is_empty() {
                println!("no probes (trace FUNC adds one)");
            }
            for (no, f, s) in &probes {
                let st = sh.session.stats(*f).unwrap_or_default();
                let cost = sh
                    .session
                    .cost(*f, &st)
                    .map(|c| format!("  {}", crate::format::describe_cost(&c)))
                    .unwrap_or_default();
                let log = sh
                    .logs
                    .get(f)
                    .map(|t| format!(" log '{}'", t.text))
                    .unwrap_or_default();
                println!(
                    "{no:>3}  {}  {}{log}  hits {} recorded {} filtered {} sampled-out {} lost {} in-flight {}{cost}",
                    cat.functions[*f].name,
                    s.describe(),
                    st.hits,
                    st.emitted,
                    st.filtered,
                    st.sampled_out,
                    st.lost,
                    st.in_flight()
                );
                for p in sh.session.per_process(*f) {
                    println!("       {}", crate::format::describe_in_process(&p));
                }
            }
        }
        Command::Untrace(which) => {
            let mut sh = lock(shared);
            let nos: Vec<u32> = match which {
                Some(n) => match sh.session.probe_by_number(n as u32) {
                    Some(_) => vec![n as u32],
                    None => return Err(anyhow!("no probe {n} (see `probes`)")),
                },
                None => sh.session.probes().iter().map(|p| p.0).collect(),
            };
            for no in nos {
                if let Some(f) = sh.session.probe_by_number(no) {
                    sh.session.remove(f);
                    sh.logs.remove(&f);
                    println!("removed probe {no}: {}", cat.functions[f].name);
                }
            }
        }
        Command::Events { probe, last } => {
            let offset = crate::format::clock_offset_ns();
            let sh = lock(shared);
            let only = match probe.as_deref() {
                None => None,
                Some(p) => Some(match p.parse::<u32>() {
                    Ok(no) => sh
                        .session
                        .probe_by_number(no)
                        .ok_or_else(|| anyhow!("no probe {no} (see `probes`)"))?,
                    Err(_) => crate::session::find_function(cat, p).map_err(shell_hint)?,
                }),
            };
            let rows: Vec<_> = sh
                .rows
                .iter()
                .filter(|r| only.is_none_or(|f| r.func == f))
                .collect();
            let many = sh.session.is_many();
            for r in &rows[rows.len().saturating_sub(last)..] {
                let name = &cat.functions[r.at].name;
                if let Some(t) = sh.logs.get(&r.func) {
                    let when = crate::format::wall_clock(r.call.ts_ns, offset, 6);
                    let pid = if many {
                        format!(" pid {}", r.call.pid)
                    } else {
                        String::new()
                    };
                    println!("{when}{pid} {name}: {}", t.render(&r.call));
                    continue;
                }
                println!("{}", call_line_of(&r.call, name, offset, many));
                if let Some(s) = &r.stack {
                    print!("{}", crate::format::stack_lines(s));
                }
            }
            if rows.is_empty() {
                println!("no calls captured yet");
            }
        }
        Command::Hist(which) => {
            let sh = lock(shared);
            let func = match which.parse::<u32>() {
                Ok(no) => sh
                    .session
                    .probe_by_number(no)
                    .ok_or_else(|| anyhow!("no probe {no} (see `probes`)"))?,
                Err(_) => crate::session::find_function(cat, &which).map_err(shell_hint)?,
            };
            let buckets = sh.session.histogram(func).ok_or_else(|| {
                anyhow!(
                    "{} has no latency probe: `trace {} --latency`",
                    cat.functions[func].name,
                    cat.functions[func].name
                )
            })?;
            print_hist(&buckets);
            // --by: each value's count and percentiles.
            for (value, b) in sh.session.histograms_by(func).unwrap_or_default() {
                let h = probes_ebpf::hist::to_hdr(&b);
                let q = |x: f64| crate::histogram::fmt_latency(h.value_at_quantile(x), &b);
                println!(
                    "  = {value}: {} calls  p50 {}  p90 {}  p99 {}  max {}",
                    h.len(),
                    q(0.5),
                    q(0.9),
                    q(0.99),
                    crate::histogram::fmt_latency(h.max(), &b)
                );
            }
        }
        Command::Wait(d) => {
            let until = Instant::now() + d;
            while Instant::now() < until {
                if interrupt.load(Ordering::SeqCst) {
                    println!("interrupted");
                    break;
                }
                print_notes(shared);
                std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
            }
        }
        Command::Budget(set) => {
            let mut sh = lock(shared);
            if let Some(b) = set {
                sh.session.set_budget(b);
            }
            let b = sh.session.budget();
            println!(
                "budget {}{}",
                crate::budget::describe(b),
                match b {
                    Some(_) => ": past it, return points are attached part of the time",
                    None => ": every point stays attached, whatever it costs",
                }
            );
        }
        Command::Help => {
            for (_, usage) in COMMANDS {
                println!("  {usage}");
            }
            println!(
                "  conditions: u.Name == \"alice\" && attempts > 2, err != nil, startsWith(s, \"x\")"
            );
        }
        Command::Quit => {}
    }
    Ok(())
}

fn print_hist(buckets: &[u64]) {
    let h = probes_ebpf::hist::to_hdr(buckets);
    if h.is_empty() {
        println!("no completed calls yet");
        return;
    }
    let rows = crate::histogram::rows(buckets, 16);
    let max = rows.iter().map(|r| r.count).max().unwrap_or(1).max(1);
    for r in rows {
        let bar = "#".repeat(((r.count as f64 / max as f64) * 40.0).ceil() as usize);
        let range = if r.below_floor() {
            format!("{:>21}", "below the floor")
        } else {
            format!("{:>9} – {:<9}", fmt_ns(r.lo), fmt_ns(r.hi))
        };
        println!("{range} {bar:<40} {}", r.count);
    }
    let q = |x: f64| crate::histogram::fmt_latency(h.value_at_quantile(x), buckets);
    println!(
        "count {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        h.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        crate::histogram::fmt_latency(h.max(), buckets)
    );
}

/// Tab completion for rustyline; the logic is `shell_complete::complete`.
struct ShellHelper {
    cat: Arc<Catalog>,
    shared: Arc<Mutex<Shared>>,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let probes: Vec<usize> = lock(&self.shared)
            .session
            .probes()
            .iter()
            .map(|p| p.0 as usize)
            .collect();
        let (start, cands) = crate::shell_complete::complete(&self.cat, &probes, &line[..pos]);
        let pairs = cands
            .into_iter()
            .map(|s| Pair {
                display: s.clone(),
                replacement: s,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}
