//! `periscope trace --pid PID [options] PROBE...`: headless tracing, human lines or JSON.
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::TrySendError;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use probes_ebpf::Stats;
use serde_json::json;

use super::writer::{Behind, Out, Writer};
use crate::format::{describe_cost, fmt_ns};
use crate::session::{DRAIN_BATCH, ProbeCost, ProbeSpec, Row, Session};

/// Probes whose placement `trace` says one line each; the rest are counted.
const PLACES_SAID: usize = 10;

pub struct Options {
    /// The process, processes or executable to trace.
    pub scope: crate::session::Scope,
    pub duration: Option<Duration>,
    pub json: bool,
    /// Share of the target's CPU time the probes may take, in % (None: no limit).
    pub budget: Option<f64>,
    /// What every probe captures; a probe's own condition comes from its `if`.
    pub spec: ProbeSpec,
    /// Longest string captured, in bytes.
    pub max_string: u16,
    /// `--metrics ADDR`: serve Prometheus metrics there.
    pub metrics: Option<String>,
    /// `--log TEMPLATE`: a message per call (session::template).
    pub log: Option<String>,
    pub probes: Vec<String>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// `main.Login if attempts > 3` → ("main.Login", Some("attempts > 3")); `main.Login if`
/// → ("main.Login", Some("")), an empty condition the caller refuses.
pub fn split_probe(spec: &str) -> (&str, Option<&str>) {
    let spec = spec.trim();
    let words: Vec<(usize, &str)> = spec
        .split_whitespace()
        .map(|w| (w.as_ptr() as usize - spec.as_ptr() as usize, w))
        .collect();
    match words.iter().find(|(_, w)| *w == "if") {
        Some(&(at, _)) => (spec[..at].trim(), Some(spec[at + 2..].trim())),
        None => (spec, None),
    }
}

impl Options {
    fn by_expr(&self) -> Option<&str> {
        self.spec.by.as_deref()
    }
}

pub fn run(opts: Options) -> Result<()> {
    // Listening first: an address in use fails before anything is attached.
    let metrics = crate::metrics::start(opts.metrics.as_deref())?;
    if let Some(m) = &metrics {
        crate::say!("periscope: metrics at http://{}/metrics", m.addr());
    }
    let template = opts
        .log
        .as_deref()
        .map(crate::template::Template::parse)
        .transpose()
        .map_err(|e| anyhow!("--log `{}`, {e}", opts.log.as_deref().unwrap_or_default()))?;
    let mut session = Session::open_scope(&opts.scope)?;
    session.max_string = opts.max_string;
    session.set_budget(opts.budget);
    let cat = Arc::clone(&session.cat);
    let mut order = Vec::new();
    // Probes whose placement was not said one by one: (all, with single-stepped points).
    let mut unsaid = (0usize, 0usize);
    let mut followed = std::collections::HashSet::new();
    // Before anything attaches: the same probe twice (a generic's `f[...]`, listed once
    // per shape, pasted from `list`) is one probe; two conditions on one function
    // cannot be.
    let mut given: std::collections::HashMap<usize, &String> = Default::default();
    for spec in &opts.probes {
        let (name, _) = split_probe(spec);
        let Ok(funcs) = crate::session::find_functions(&cat, name) else {
            continue; // said below, in order
        };
        if let Some(earlier) = given.insert(funcs[0], spec)
            && earlier != spec
        {
            bail!("{name} is given twice: combine its conditions with || in one probe");
        }
    }
    for spec in &opts.probes {
        let (name, cond) = split_probe(spec);
        if cond == Some("") {
            bail!("`{spec}`: the condition after `if` is empty (e.g. '{name} if x > 0')");
        }
        let funcs = crate::session::find_functions(&cat, name)?;
        let func = funcs[0];
        if order.contains(&func) {
            // The same probe again (checked identical above).
            continue;
        }
        // One `--capture` list serves every probe: each takes the paths that name its
        // own values (`r.URL.Path` for a handler, not for a function whose `r` is an
        // io.Reader); a path no probe can follow is refused below.
        let f = &cat.functions[func];
        let paths: Vec<String> = opts
            .spec
            .paths
            .iter()
            .filter(|p| probes_ebpf::condition::capture_path(&cat, f, p).is_ok())
            .cloned()
            .collect();
        followed.extend(paths.iter().cloned());
        let mut settings = ProbeSpec {
            condition: cond.map(String::from),
            paths,
            ..opts.spec.clone()
        };
        // A log template decides what else is captured: what it names, read first.
        if let Some(t) = &template {
            let needs = t
                .check(&cat, f)
                .map_err(|e| anyhow!("--log `{}`, {e}", t.text))?;
            needs.apply(&mut settings);
        }
        let set = session
            .set_group(&funcs, &settings)
            .map_err(|e| match (e.column(), cond) {
                (Some(col), Some(c)) => anyhow!(
                    "condition `{}`, column {col}: {}",
                    probes_ebpf::error::shorten(c),
                    e
                ),
                _ => anyhow!("probing {}: {}", cat.functions[func].name, e),
            })?;
        if let Some(note) = set.note {
            crate::say!("periscope: {note}");
        }
        if let Some(points) = session.describe_points(func) {
            // Where each probe sits, for the first few; past them, counted in one line
            // (300 probes made 300 lines before the first call).
            if order.len() < PLACES_SAID {
                crate::say!("periscope: {}: {points}", session.label(func));
            } else {
                unsaid.0 += 1;
                unsaid.1 += usize::from(points.contains("single-stepped"));
            }
        }
        order.push(func);
    }
    if unsaid.0 > 0 {
        crate::say!(
            "periscope: and {} more probe(s), {} of them with single-stepped points (where each sits: `periscope list {} REGEX`)",
            unsaid.0,
            unsaid.1,
            session.exe.display()
        );
    }
    for path in opts.spec.paths.iter().filter(|p| !followed.contains(*p)) {
        let root = probes_ebpf::plan::path_root(path);
        // Say why with the first probe that has the path's first name.
        let Some(f) = order
            .iter()
            .map(|&f| &cat.functions[f])
            .find(|f| f.value(root).is_some())
        else {
            bail!("--capture {path}: no probed function has a parameter or result `{root}`")
        };
        // Ok: followed by a probe of the same name (a generic's other shapes).
        if let Err(e) = probes_ebpf::condition::capture_path(&cat, f, path) {
            bail!(
                "--capture `{}`, column {}: {} (in {})",
                probes_ebpf::error::shorten(&e.text),
                e.column,
                e.msg,
                f.name
            );
        }
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_signal as *const () as libc::sighandler_t);
    }
    if !cat.has_dwarf {
        crate::say!("periscope: {}", symbols::stripped::NOTE);
    }
    crate::say!(
        "periscope: attached {} probe(s) to {} ({}); budget {}{}; Ctrl-C to stop",
        order.len(),
        session.target_label(),
        cat.go_version,
        crate::budget::describe(opts.budget),
        match &session.hit_cost {
            Ok(hc) => format!(
                "; a probe hit costs ~{} here, ~{} on an instruction the kernel single-steps",
                fmt_ns(hc.emulated_ns.round() as u64),
                fmt_ns(hc.stepped_ns.round() as u64)
            ),
            Err(e) => format!("; probe costs unknown ({e})"),
        }
    );
    if let Some(w) = session.keeper_warning() {
        crate::say!("periscope: warning: {w}");
    }
    if let Some(w) = cat.release_warning() {
        crate::say!("periscope: warning: {w}");
    }
    if let Some(n) = session.batching_note() {
        crate::say!("periscope: note: {n}");
    }
    let writer = Writer::start(
        Arc::clone(&cat),
        opts.json,
        session.is_many(),
        crate::format::clock_offset_ns(),
        template.map(Arc::new),
    );
    let mut rows_read = 0u64;
    let start = Instant::now();
    let mut last_alive_check = Instant::now();
    let mut target_gone = None;
    let mut pending: Option<Vec<Row>> = None;
    // How long the writer's queue was full (the kernel drops calls meanwhile).
    let mut behind = Duration::ZERO;
    let mut behind_since: Option<Instant> = None;
    let mut digest = crate::digest::Digest::new();
    loop {
        let mut drained = 0;
        if pending.is_none() {
            let mut rows = Vec::new();
            drained = session.drain(&mut rows, DRAIN_BATCH);
            rows_read += drained as u64;
            // Calls arrive when they return: within what is read at once, print them in
            // entry order (a call that encloses others after them otherwise).
            rows.sort_by_key(|r| r.call.ts_ns);
            pending = (!rows.is_empty()).then_some(rows);
        } else {
            // Not draining while the writer is behind: the budget's clock and the
            // learning of call sites go on all the same (a blocked stdout must not
            // leave probes at full cost).
            session.tick();
        }
        if let Some(m) = &metrics {
            m.publish_every(&session, rows_read);
        }
        for w in session.take_keeper_notes() {
            crate::say!("periscope: warning: {w}");
        }
        for line in session.take_said() {
            crate::say!("periscope: {line}");
        }
        for note in session.take_process_notes() {
            if opts.json {
                let mut line = json!({"type":"process","pid":note.pid,"event":note.event_name(),
                    "running":note.running});
                if let Some(p) = session.place(note.pid) {
                    if let Some(ns) = p.nspid {
                        line["nspid"] = json!(ns);
                    }
                    if let Some(c) = &p.container {
                        line["container"] = json!(c);
                    }
                }
                let _ = writer.send_until(
                    Out::Text(format!("{line}\n").into_bytes()),
                    Instant::now() + Duration::from_secs(1),
                );
            }
            crate::say!("periscope: {}", note.describe());
        }
        for d in session.take_deploy_notes() {
            if opts.json {
                let line = json!({"type":"program","event":d.event_name(),"exe":d.exe,
                    "inode":d.id.1,"go_version":d.go_version,"probed":d.probed,
                    "probes":d.probes,"lines":d.lines,"refused":d.refused});
                let _ = writer.send_until(
                    Out::Text(format!("{line}\n").into_bytes()),
                    Instant::now() + Duration::from_secs(1),
                );
            }
            crate::say!("periscope: {}", d.describe());
            for line in &d.lines {
                crate::say!("periscope: {line}");
            }
        }
        let notes = session.take_budget_notes();
        if opts.json {
            for note in &notes {
                let line = json!({"type":"budget","func":note.func,"mode":mode_name(note.mode),
                    "watch_pct":round2(note.watch_pct),"full_cost_pct":note.full_pct.map(round2),
                    "budget_pct":note.budget_pct});
                // Beside the calls, in order; a full queue waits like the calls do.
                let _ = writer.send_until(
                    Out::Text(format!("{line}\n").into_bytes()),
                    Instant::now() + Duration::from_secs(1),
                );
            }
        }
        // People get one line for all the probes, when it changes (digest.rs).
        for line in digest.push(notes, Instant::now()) {
            crate::say!("periscope: {line}");
        }
        if let Some(rows) = pending.take() {
            match writer.tx.try_send(Out::Rows(rows)) {
                Ok(()) => {
                    if let Some(t) = behind_since.take() {
                        behind += t.elapsed();
                    }
                }
                // The reader of stdout is slower than the program: stop draining until
                // it catches up; the ring buffer fills and the kernel counts the loss.
                Err(TrySendError::Full(Out::Rows(rows))) => {
                    behind_since.get_or_insert_with(Instant::now);
                    pending = Some(rows);
                }
                Err(_) => break, // stdout is closed (`| head`): stop as on Ctrl-C
            }
        }
        if STOP.load(Ordering::SeqCst) || opts.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        if last_alive_check.elapsed() > Duration::from_millis(100) {
            last_alive_check = Instant::now();
            let t = session.target();
            if t != crate::session::Target::Running {
                target_gone = Some(t);
                break;
            }
        }
        if drained < DRAIN_BATCH {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Detach first; then what is still buffered goes out, for at most a second more.
    // The counters are read once every uprobe is gone, so that they count exactly the
    // calls read (until then, points not yet removed still fire).
    // A probe's name in summaries (a generic's shapes together), while it is attached.
    let labels: std::collections::HashMap<usize, String> =
        order.iter().map(|&f| (f, session.label(f))).collect();
    session.stop_all();
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut unwritten = 0;
    let mut progress = crate::session::detach_progress();
    let mut finals = None;
    loop {
        let rows = match pending.take() {
            Some(rows) => rows,
            None => {
                let mut rows = Vec::new();
                if session.drain(&mut rows, DRAIN_BATCH) == 0 {
                    let left = session.detaching();
                    progress(left);
                    if left > 0 {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    if finals.is_none() {
                        // Every call counted is in the ring buffer now: read it all.
                        finals = Some(session.finals());
                        continue;
                    }
                    break;
                }
                rows
            }
        };
        if let Err(n) = writer.send_until(Out::Rows(rows), deadline) {
            unwritten += n;
        }
    }
    let mut finals = finals.unwrap_or_default();
    finals.sort_by_key(|f| order.iter().position(|&o| o == f.0));
    let costs: Vec<Option<ProbeCost>> = finals
        .iter()
        .map(|(func, st, _)| session.cost(*func, st))
        .collect();
    let mut summary = Vec::new();
    let split: Vec<_> = finals
        .iter()
        .map(|f| session.histograms_by(f.0).unwrap_or_default())
        .collect();
    summarize(
        &mut summary,
        &labels,
        &finals,
        &costs,
        &split,
        opts.by_expr(),
        opts.json,
    )?;
    if session.is_many() {
        let mut all = session.per_process_all();
        let each: Vec<(&str, _)> = finals
            .iter()
            .map(|f| (labels[&f.0].as_str(), all.remove(&f.0).unwrap_or_default()))
            .collect();
        super::processes::summarize(&mut summary, &each, &session.process_costs(), opts.json)?;
    }
    if let Some(t) = behind_since.take() {
        behind += t.elapsed();
    }
    // The summary is always written: when the writer has not taken it within a second,
    // the calls still queued are skipped (and counted), unless stdout itself is blocked.
    let cause = writer.behind();
    let second = |s| Instant::now() + Duration::from_secs(s);
    let summary_queued = match writer.offer(Out::Text(summary), second(1)) {
        Ok(()) => true,
        Err(again) => {
            writer.hurry();
            writer.offer(again, second(5)).is_ok()
        }
    };
    let (finished, skipped) = writer.finish(Duration::from_secs(1), Duration::from_secs(5));
    let lost: u64 = finals.iter().map(|f| f.1.lost).sum();
    let unwritten = unwritten + skipped;
    if lost > 0 || unwritten > 0 || !summary_queued || !finished {
        crate::say!(
            "periscope: {}: {lost} call(s) lost in the kernel's ring buffer while the writer was behind ({:.1} s in all), {unwritten} read but not written at the end{}",
            match cause {
                // The writer kept up: reading and decoding did not.
                _ if behind.is_zero() =>
                    "periscope could not read and decode calls as fast as they came",
                Behind::Stdout => "stdout was read more slowly than calls came",
                Behind::Formatting =>
                    "periscope could not format and write calls as fast as they came",
            },
            behind.as_secs_f64(),
            if summary_queued && finished {
                ""
            } else {
                "; the summary may not have been written (stdout is blocked)"
            }
        );
    }
    if let Some(t) = target_gone {
        crate::say!("periscope: {}; detached", session.describe_target(&t));
    }
    Ok(())
}

fn round2(p: f64) -> f64 {
    (p * 100.0).round() / 100.0
}

fn mode_name(m: crate::budget::Mode) -> &'static str {
    match m {
        crate::budget::Mode::Full => "full",
        crate::budget::Mode::Windowed => "windowed",
        crate::budget::Mode::Off => "off",
        crate::budget::Mode::Capped => "capped",
        crate::budget::Mode::Pricing => "pricing",
        crate::budget::Mode::Rows => "rows",
    }
}

/// One latency line: JSON `{"type":"latency",…}` (with `"by"` for a split), or text.
fn latency_line(
    out: &mut impl Write,
    name: &str,
    by: Option<(&str, &str)>,
    buckets: &[u64],
    as_json: bool,
) -> Result<()> {
    let h = probes_ebpf::hist::to_hdr(buckets);
    // Calls below the probe's floor (the kernel's bucket 0) are known only to be below
    // it: histogram.rs says so for them.
    use crate::histogram::{fmt_latency, latency_ns};
    let below = buckets.first().copied().unwrap_or(0);
    let at = |v: u64| latency_ns(v, buckets);
    let q = |x: f64| at(h.value_at_quantile(x));
    if as_json {
        let mut j = json!({"type":"latency","func":name,"count":h.len(),"below_floor":below,"min_ns":at(h.min()),"p50_ns":q(0.5),"p90_ns":q(0.9),"p99_ns":q(0.99),"max_ns":at(h.max())});
        if let Some((expr, value)) = by {
            j["by_expr"] = json!(expr);
            j["by"] = json!(value);
        }
        writeln!(out, "{j}")?;
        return Ok(());
    }
    let label = match by {
        Some((expr, value)) => format!("{name} [{expr} = {value}]"),
        None => name.to_string(),
    };
    if h.is_empty() {
        writeln!(out, "{label}: no completed calls")?;
    } else {
        let t = |v: u64| fmt_latency(v, buckets);
        let under = if below > 0 {
            format!(" ({below} below the probe's floor)")
        } else {
            String::new()
        };
        writeln!(
            out,
            "{label}: {} calls{under}  min {}  p50 {}  p90 {}  p99 {}  max {}",
            h.len(),
            t(at(h.min())),
            t(q(0.5)),
            t(q(0.9)),
            t(q(0.99)),
            t(at(h.max()))
        )?;
    }
    Ok(())
}

fn summarize(
    out: &mut impl Write,
    labels: &std::collections::HashMap<usize, String>,
    finals: &[(usize, Stats, Option<Vec<u64>>)],
    costs: &[Option<ProbeCost>],
    split: &[Vec<(String, Vec<u64>)>],
    by_expr: Option<&str>,
    as_json: bool,
) -> Result<()> {
    for (((func, st, buckets), cost), split) in finals.iter().zip(costs).zip(split) {
        let name = &labels[func];
        if let Some(b) = buckets {
            latency_line(out, name, None, b, as_json)?;
        }
        for (value, b) in split {
            latency_line(out, name, by_expr.map(|e| (e, value.as_str())), b, as_json)?;
        }
        if as_json {
            writeln!(
                out,
                "{}",
                json!({"type":"stats","func":name,"hits":st.hits,"emitted":st.emitted,"filtered":st.filtered,"sampled_out":st.sampled_out,"lost":st.lost,"in_flight":st.in_flight(),"morestack":st.morestack,"unpaired":st.unpaired,
                    "cost_ns":cost.map(|c| c.per_call_ns.round() as u64),
                    "overhead_pct":cost.and_then(|c| c.overhead_pct).map(round2),
                    "observed_pct":cost.and_then(|c| c.watch).map(|w| round2(w.observed_pct)),
                    "unseen_est":cost.and_then(|c| c.watch).map(|w| w.unseen_est),
                    "unseen_at_least":cost.and_then(|c| c.watch).map(|w| w.unseen_at_least),
                    "detached_pct":cost.and_then(|c| c.watch).map(|w| round2(w.detached_pct)),
                    "unwatched":st.unwatched,"unrecorded":st.unrecorded,
                    "return_hits":st.ret_hits,"stepped_hits":st.stepped_hits})
            )?;
        } else {
            writeln!(
                out,
                "{name}: {} hits, {} recorded, {} filtered, {} sampled out, {} lost,{} {} in flight{}",
                st.hits,
                st.emitted,
                st.filtered,
                st.sampled_out,
                st.lost,
                if st.unrecorded > 0 {
                    format!(" {} unrecorded (budget),", st.unrecorded)
                } else {
                    String::new()
                },
                st.in_flight(),
                cost.map(|c| format!("; {}", describe_cost(&c)))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::latency_line;
    use probes_ebpf::hist::bucket_of;

    fn buckets(values: &[(u64, u64)]) -> Vec<u64> {
        let mut b = vec![0; probes_ebpf::wire::PSC_HIST_BUCKETS as usize];
        for &(v, n) in values {
            b[bucket_of(v)] += n;
        }
        b
    }

    #[test]
    fn calls_below_the_floor_are_said_so_never_1ns() {
        // Six calls faster than the probe's floor (the kernel's bucket 0), four at 900 ns.
        let b = buckets(&[(0, 6), (900, 4)]);
        let mut out = Vec::new();
        latency_line(&mut out, "main.F", None, &b, true).unwrap();
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(j["count"], 10);
        assert_eq!(j["below_floor"], 6);
        assert_eq!(j["min_ns"], 0);
        assert_eq!(j["p50_ns"], 0);
        assert!(j["max_ns"].as_u64().unwrap() >= 880, "{j}");
        let mut out = Vec::new();
        latency_line(&mut out, "main.F", None, &b, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "main.F: 10 calls (6 below the probe's floor)  min below floor  p50 below floor"
            ),
            "{text}"
        );
        assert!(!text.contains(" 1ns"), "{text}");
    }
}
