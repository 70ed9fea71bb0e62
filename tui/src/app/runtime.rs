//! The TUI's event loop: one `tokio::select!` over keys, a 20 Hz frame tick that drains
//! the ring buffer, a 1 Hz sample of counters and histograms, and termination signals.
//! It performs the effects that `update` asks for.
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};

use super::action::{Action, Effect, ProbeSample};
use super::state::State;
use super::update::update;
use super::view::{ViewCache, draw};
use crate::session::Session;

/// Frames per second of the table and the input echo (the issue asks for ≥ 20).
const FRAME: Duration = Duration::from_millis(50);
/// Calls decoded per frame: 400,000 a second at most, more than the table can show;
/// beyond that the ring buffer fills and the kernel counts the rest as lost.
const DRAIN_PER_FRAME: usize = 20_000;

pub fn run(scope: crate::session::Scope, budget: Option<f64>, metrics: Option<&str>) -> Result<()> {
    // Everything that can fail for a bad target fails here, before the screen changes.
    let metrics = crate::metrics::start(metrics)?;
    let mut session = Session::open_scope(&scope)?;
    session.set_budget(budget);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.block_on(event_loop(session, metrics))
}

async fn event_loop(
    mut session: Session,
    metrics: Option<periscope_exporters::MetricsServer>,
) -> Result<()> {
    let binary = std::fs::read_link(&session.exe)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "?".into());
    let mut state = State::new(session.cat.clone(), session.pid, binary);
    state.exe_path = session.program_path();
    state.program = session.is_many().then(|| session.target_label());
    state.clock_offset_ns = crate::format::clock_offset_ns();
    state.hit_cost = session.hit_cost.as_ref().ok().copied();
    state.budget = session.budget();
    if let Some(n) = session.batching_note() {
        state.info(n);
    }
    if let Some(m) = &metrics {
        state.info(format!("metrics at http://{}/metrics", m.addr()));
    }
    let mut rows_read = 0u64;
    if let Some(w) = session.keeper_warning() {
        state.error(w);
    }
    if let Some(w) = session.cat.release_warning() {
        state.error(w);
    }
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    // ratatui::init enters raw mode and the alternate screen, and installs a panic hook
    // that restores the terminal before the panic message prints.
    let mut term = ratatui::init();
    let mut cache = ViewCache::default();
    let mut digest = crate::digest::Digest::new();
    let mut keys = EventStream::new();
    let mut frame = tokio::time::interval(FRAME);
    let mut second = tokio::time::interval(Duration::from_secs(1));
    let mut buf = Vec::new();
    let result = loop {
        let action = tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(Event::Key(k))) if k.kind != KeyEventKind::Release => Some(Action::Key(k)),
                Some(Ok(_)) => None,
                Some(Err(e)) => break Err(e).context("reading the terminal"),
                None => Some(Action::Quit),
            },
            _ = frame.tick() => {
                rows_read += session.drain(&mut buf, DRAIN_PER_FRAME) as u64;
                if let Some(m) = &metrics {
                    m.publish_every(&session, rows_read);
                }
                (!buf.is_empty()).then(|| Action::Events(std::mem::take(&mut buf)))
            }
            _ = second.tick() => Some(match session.target() {
                t if !state.target_exited && t != crate::session::Target::Running => {
                    Action::TargetExited(session.describe_target(&t))
                }
                _ => Action::Sample(samples(&session)),
            }),
            _ = sigterm.recv() => Some(Action::Quit),
            _ = sigint.recv() => Some(Action::Quit),
            _ = sighup.recv() => Some(Action::Quit),
        };
        let mut effects = action.map(|a| update(&mut state, a)).unwrap_or_default();
        for line in digest.push(session.take_budget_notes(), Instant::now()) {
            effects.extend(update(&mut state, Action::BudgetNote(line)));
        }
        for line in session.take_keeper_notes() {
            effects.extend(update(&mut state, Action::Warning(line)));
        }
        for line in session.take_said() {
            state.info(line);
        }
        for d in session.take_deploy_notes() {
            state.info(d.describe());
            for line in d.lines {
                state.info(line);
            }
        }
        let procs = session.take_process_notes();
        if !procs.is_empty() {
            state.program = Some(session.target_label());
            for n in procs {
                state.info(n.describe());
            }
        }
        while !effects.is_empty() {
            let mut next = Vec::new();
            for e in effects {
                // Attaching takes a moment (the first probe also indexes every call of
                // the binary): say what is going on before the wait, not after it.
                // Keys pressed meanwhile wait in the terminal and are handled next.
                if let Effect::Set { func, settings } = &e
                    && !settings.is_empty()
                {
                    let n = session.uprobes_for(*func, settings);
                    state.info(format!(
                        "attaching {n} uprobe{} to {}…",
                        if n == 1 { "" } else { "s" },
                        state.fn_name(*func)
                    ));
                    let _ = term.draw(|f| draw(f, &state, &mut cache));
                }
                next.extend(perform(&mut session, &mut state, e));
            }
            effects = next;
        }
        if state.quit {
            break Ok(());
        }
        if let Some(osc) = state.clipboard.take() {
            // The terminal puts it on the clipboard (OSC 52); nothing is drawn.
            use std::io::Write as _;
            let mut out = std::io::stdout();
            let _ = out.write_all(osc.as_bytes()).and_then(|()| out.flush());
        }
        if let Err(e) = term.draw(|f| draw(f, &state, &mut cache)) {
            break Err(e).context("drawing");
        }
    };
    ratatui::restore();
    // Prints "detaching N uprobes…" on stderr when that takes a while.
    session.close();
    result
}

fn perform(session: &mut Session, state: &mut State, e: Effect) -> Vec<Effect> {
    match e {
        Effect::Set { func, settings } => {
            let result = match &state.target_gone {
                // Say what happened, not what attaching to a gone process fails with.
                Some(gone) if !settings.is_empty() => {
                    Err(crate::session::SetError::TargetGone(gone.clone()))
                }
                _ => session.set(func, &settings),
            };
            update(
                state,
                Action::Applied {
                    func,
                    settings,
                    result,
                },
            )
        }
        Effect::DetachAll => {
            session.remove_all();
            vec![]
        }
        Effect::SetBudget(b) => {
            session.set_budget(b);
            update(state, Action::BudgetSet(b))
        }
        Effect::Quit => vec![],
    }
}

fn samples(session: &Session) -> Vec<ProbeSample> {
    // (One read of the kernel's counters per process for every probe.)
    let mut processes = if session.is_many() {
        session.per_process_all()
    } else {
        Default::default()
    };
    session
        .probed()
        .map(|func| {
            let stats = session.stats(func).unwrap_or_default();
            ProbeSample {
                func,
                cost: session.cost(func, &stats),
                stats,
                buckets: session.histogram(func),
                points: session.describe_points(func),
                split: session.histograms_by(func).unwrap_or_default(),
                processes: processes.remove(&func).unwrap_or_default(),
            }
        })
        .collect()
}
