//! `update(&mut State, Action) -> Vec<Effect>`: all of the TUI's behaviour, pure, so
//! that tests drive it directly. The runtime performs the effects. Keys are handled in
//! `keys.rs`.
use super::action::{Action, Effect, ProbeSample};
use super::state::{CallPath, EventRow, MAX_ROWS, Mode, RATE_HISTORY, State};

/// Distinct call paths kept per probe (the kernel keeps at most 16384 stacks).
const MAX_PATHS: usize = 4096;
use crate::session::{ProbeSpec, Row, SetError, SetOk};

pub fn update(s: &mut State, action: Action) -> Vec<Effect> {
    match action {
        Action::Key(k) => super::keys::key(s, k),
        Action::Events(rows) => {
            events(s, rows);
            vec![]
        }
        Action::Sample(samples) => {
            sample(s, samples);
            vec![]
        }
        Action::Applied {
            func,
            settings,
            result,
        } => {
            applied(s, func, settings, result);
            vec![]
        }
        Action::TargetExited(what) => {
            s.target_exited = true;
            s.error(format!(
                "{what}: probes detached; what was captured stays until you quit (q)"
            ));
            s.target_gone = Some(what);
            vec![Effect::DetachAll]
        }
        Action::BudgetSet(b) => {
            s.budget = b;
            s.info(match b {
                Some(_) => format!(
                    "budget {}: past it, return points are attached part of the time",
                    crate::budget::describe(b)
                ),
                None => "budget off: every point stays attached, whatever it costs".into(),
            });
            vec![]
        }
        Action::BudgetNote(text) => {
            s.info(text);
            vec![]
        }
        Action::Warning(text) => {
            s.error(text);
            vec![]
        }
        Action::Quit => quit(s),
    }
}

pub(super) fn quit(s: &mut State) -> Vec<Effect> {
    s.quit = true;
    vec![Effect::DetachAll, Effect::Quit]
}

/// Adds calls to the table in entry order. A call arrives when it returns, so one that
/// encloses others arrives after them: it goes in at its entry time, and the rows after
/// it move down one (`seq` stays a row's place: first.seq + index). A paused table
/// shows no new row, so none goes in before the pause point.
fn events(s: &mut State, mut rows: Vec<Row>) {
    s.rows_this_second += rows.len() as u64;
    rows.sort_by_key(|r| r.call.ts_ns);
    for row in rows {
        let first = s.rows.front().map_or(s.next_seq, |r| r.seq);
        let floor = s
            .paused_at
            .map_or(0, |p| p.saturating_sub(first) as usize)
            .min(s.rows.len());
        let mut at = s.rows.len();
        while at > floor && s.rows[at - 1].row.call.ts_ns > row.call.ts_ns {
            at -= 1;
        }
        let seq = first + at as u64;
        for r in s.rows.range_mut(at..) {
            r.seq += 1;
        }
        if let Some(sel) = s.ev_sel.as_mut()
            && *sel >= seq
        {
            *sel += 1;
        }
        if let Mode::Detail { seq: shown, .. } = &mut s.mode
            && *shown >= seq
        {
            *shown += 1;
        }
        if let Some(crate::session::Callers::Frames(frames)) = &row.stack {
            let paths = s.paths.entry(row.func).or_default();
            let lat = row.call.latency_ns.unwrap_or(0);
            let key = std::sync::Arc::as_ptr(frames) as usize;
            let room = paths.len() < MAX_PATHS;
            match paths.get_mut(&key) {
                Some(p) => {
                    p.calls += 1;
                    p.total_ns += lat;
                }
                None if room => {
                    paths.insert(
                        key,
                        CallPath {
                            frames: std::sync::Arc::clone(frames),
                            calls: 1,
                            total_ns: lat,
                        },
                    );
                }
                None => {}
            }
        }
        s.rows.insert(at, EventRow { seq, row });
        s.next_seq += 1;
    }
    while s.rows.len() > MAX_ROWS {
        s.rows.pop_front();
        s.dropped_rows += 1;
    }
    // A selection that scrolled out of the window moves to the oldest row kept.
    if let (Some(sel), Some(first)) = (s.ev_sel, s.rows.front())
        && sel < first.seq
    {
        s.ev_sel = Some(first.seq);
    }
}

fn sample(s: &mut State, samples: Vec<ProbeSample>) {
    s.events_per_sec = std::mem::take(&mut s.rows_this_second);
    for p in samples {
        let v = s.views.entry(p.func).or_default();
        let rate = p.stats.hits.saturating_sub(v.stats.hits);
        v.rates.push_back(rate);
        while v.rates.len() > RATE_HISTORY {
            v.rates.pop_front();
        }
        v.stats = p.stats;
        v.cost = p.cost;
        v.points = p.points;
        v.split = p.split;
        v.processes = p.processes;
        if let Some(b) = p.buckets {
            v.buckets = b;
        }
    }
}

fn applied(s: &mut State, func: usize, asked: ProbeSpec, result: Result<SetOk, SetError>) {
    let name = s.fn_name(func).to_string();
    let (settings, note, per_call, points) = match &result {
        Ok(ok) => (
            ok.settings.clone(),
            ok.note.clone(),
            ok.per_call_ns,
            ok.points.clone(),
        ),
        Err(_) => (asked, None, None, None),
    };
    match result.map(|_| ()) {
        Ok(()) if settings.is_empty() => {
            s.probes.remove(&func);
            s.views.remove(&func);
            if s.ev_filter == Some(func) {
                s.ev_filter = None;
            }
            match s.kept.get(&func).and_then(|k| k.condition.clone()) {
                Some(c) => s.info(format!(
                    "removed the probe on {name}; its condition `{c}` is kept for a, r or l"
                )),
                None => s.info(format!("removed the probe on {name}")),
            }
        }
        Ok(()) => {
            // The cost of a probe is the user's to weigh during an incident: say it, as
            // measured on this machine, with where the probe sits.
            let cost = match (&per_call, &points) {
                (Some(ns), Some(p)) => {
                    format!(" (~{} a call here; {p})", crate::format::fmt_ns(*ns as u64))
                }
                (None, Some(p)) => format!(" ({p})"),
                _ => String::new(),
            };
            // A replaced probe starts counting again: said where a histogram is lost.
            let restart = if s.probes.get(&func).is_some_and(|p| p.latency) && settings.latency {
                "; its latency histogram starts again"
            } else {
                ""
            };
            match note {
                Some(n) => s.error(format!("{n}{restart}")),
                None => s.info(format!(
                    "probing {name}: {}{cost}{restart}",
                    settings.describe()
                )),
            }
            s.views.remove(&func);
            s.probes.insert(func, settings.clone());
            if settings.latency && s.lat_sel.is_none_or(|f| !s.probes[&f].latency) {
                s.lat_sel = Some(func);
            }
            if matches!(s.mode, Mode::Condition { func: f, .. } | Mode::Sample { func: f, .. } if f == func)
            {
                s.mode = Mode::Normal;
            }
        }
        Err(e) => {
            // A condition's own error shows in the editor, at its column; any other
            // (an attach that failed) goes to the message line, the editor stays open.
            if let Mode::Condition { func: f, error, .. } = &mut s.mode
                && *f == func
                && let Some(col) = e.column()
            {
                *error = Some((col, e.to_string()));
                return;
            }
            s.error(format!("{name}: {e}"));
        }
    }
    if s.lat_sel
        .is_some_and(|f| !s.probes.get(&f).is_some_and(|p| p.latency))
    {
        s.lat_sel = s.latency_probes().first().copied();
    }
}
