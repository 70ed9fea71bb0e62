//! Keys, by mode: the panes' commands (through the keymap), the search line and the
//! sampling and budget prompts; the editor of conditions and capture paths is editor.rs.
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::Effect;
use super::editor::{self, current, edit};
use super::keymap::{self, Cmd};
use super::state::{Editing, Input, Mode, Pane, State};
use super::update::quit;
use crate::session::ProbeSpec;

/// Rows a page key moves.
const PAGE: usize = 20;

/// A scrolling popup's keys: the new first line, or None for a key that closes it.
/// (The view clamps it to the last page.)
fn scrolled(code: KeyCode, scroll: u16) -> Option<u16> {
    match code {
        KeyCode::Char('j') | KeyCode::Down => Some(scroll.saturating_add(1)),
        KeyCode::Char('k') | KeyCode::Up => Some(scroll.saturating_sub(1)),
        KeyCode::PageDown | KeyCode::Char(' ') => Some(scroll.saturating_add(PAGE as u16)),
        KeyCode::PageUp => Some(scroll.saturating_sub(PAGE as u16)),
        KeyCode::Char('g') | KeyCode::Home => Some(0),
        KeyCode::Char('G') | KeyCode::End => Some(u16::MAX),
        _ => None,
    }
}

pub(super) fn key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
        return quit(s);
    }
    match s.mode.clone() {
        Mode::Normal => normal(s, k),
        Mode::Detail { seq, scroll } => {
            let to = match k.code {
                KeyCode::Char('y') => {
                    copy_call(s, seq);
                    Some(scroll)
                }
                code => scrolled(code, scroll),
            };
            s.mode = match to {
                Some(scroll) => Mode::Detail { seq, scroll },
                None => Mode::Normal,
            };
            vec![]
        }
        Mode::Help { scroll } => {
            // Scrolls where the terminal is too short for every key; any other closes.
            s.mode = match scrolled(k.code, scroll) {
                Some(scroll) => Mode::Help { scroll },
                None => Mode::Normal,
            };
            vec![]
        }
        Mode::Callers { .. } => {
            // Any key closes a popup.
            s.mode = Mode::Normal;
            vec![]
        }
        Mode::Search(mut input) => {
            match k.code {
                KeyCode::Enter => s.mode = Mode::Normal,
                KeyCode::Esc => {
                    s.mode = Mode::Normal;
                    s.filter.clear();
                    s.refilter();
                }
                KeyCode::Up => move_fn(s, -1),
                KeyCode::Down => move_fn(s, 1),
                _ => {
                    if edit(&mut input, &k) {
                        s.filter = input.text.clone();
                        // A new query selects its best match: `a r l` right after a
                        // search must never toggle a probe on the previous function.
                        s.refilter();
                        s.fn_sel = 0;
                    }
                    s.mode = Mode::Search(input);
                }
            }
            vec![]
        }
        Mode::Condition {
            func,
            what,
            mut input,
            error,
            completions,
        } => editor::key(s, func, what, &mut input, error, completions, k),
        Mode::Budget { mut input } => match k.code {
            KeyCode::Esc => {
                s.mode = Mode::Normal;
                vec![]
            }
            KeyCode::Enter => match crate::budget::parse(&input.text) {
                Ok(b) => {
                    s.mode = Mode::Normal;
                    vec![Effect::SetBudget(b)]
                }
                Err(e) => {
                    s.error(e);
                    vec![]
                }
            },
            _ => {
                edit(&mut input, &k);
                s.mode = Mode::Budget { input };
                vec![]
            }
        },
        Mode::Sample { func, mut input } => match k.code {
            KeyCode::Esc => {
                s.mode = Mode::Normal;
                vec![]
            }
            KeyCode::Enter => match input.text.trim().parse::<u32>() {
                Ok(n) if n >= 1 => {
                    let mut settings = current(s, func);
                    settings.sample = n;
                    vec![Effect::Set { func, settings }]
                }
                _ => {
                    s.error("the sampling rate is a whole number ≥ 1 (1 keeps every call)");
                    vec![]
                }
            },
            _ => {
                if matches!(k.code, KeyCode::Char(c) if !c.is_ascii_digit()) {
                    return vec![];
                }
                edit(&mut input, &k);
                s.mode = Mode::Sample { func, input };
                vec![]
            }
        },
    }
}

fn normal(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    let Some(cmd) = keymap::lookup(s.focus, &k) else {
        return vec![];
    };
    match cmd {
        Cmd::Quit => return quit(s),
        Cmd::Help => s.mode = Mode::Help { scroll: 0 },
        Cmd::NextPane => s.focus = s.focus.next(),
        Cmd::PrevPane => s.focus = s.focus.next().next(),
        Cmd::Up => step(s, -1),
        Cmd::Down => step(s, 1),
        Cmd::PageUp => step(s, -(PAGE as isize)),
        Cmd::PageDown => step(s, PAGE as isize),
        Cmd::Top => step(s, isize::MIN / 2),
        Cmd::Bottom => match s.focus {
            Pane::Events => s.ev_sel = None,
            _ => step(s, isize::MAX / 2),
        },
        Cmd::Search => {
            // A new search starts empty, as in less or vim; Esc brings back everything.
            s.filter.clear();
            s.refilter();
            s.mode = Mode::Search(Input::default());
        }
        Cmd::ClearSearch => {
            s.filter.clear();
            s.refilter();
        }
        Cmd::ToggleStd => {
            s.show_std = !s.show_std;
            s.refilter();
            s.info(if s.show_std {
                "showing the runtime and the standard library"
            } else {
                "showing the program's own functions (s shows all)"
            });
        }
        Cmd::ToggleArgs | Cmd::ToggleRet | Cmd::ToggleLatency => return toggle(s, cmd),
        Cmd::EditCondition => {
            if let Some(func) = probeable_selection(s) {
                editor::open(s, func, Editing::Condition);
            }
        }
        Cmd::ToggleStack => return toggle(s, cmd),
        Cmd::SplitBy => {
            if let Some(func) = s.lat_sel {
                editor::open(s, func, Editing::By);
            }
        }
        Cmd::Callers => {
            if let Some(func) = s.selected_fn() {
                if s.probes.get(&func).is_some_and(|p| p.stack) {
                    s.mode = Mode::Callers { func };
                } else {
                    s.info("no stacks recorded for this function: t records them");
                }
            }
        }
        Cmd::EditCapture => {
            if let Some(func) = probeable_selection(s) {
                editor::open(s, func, Editing::Capture);
            }
        }
        Cmd::EditLog => {
            if let Some(func) = probeable_selection(s) {
                editor::open(s, func, Editing::Log);
            }
        }
        Cmd::SetSample => {
            if let Some(func) = probeable_selection(s) {
                let n = s.probes.get(&func).map_or(1, |p| p.sample);
                s.mode = Mode::Sample {
                    func,
                    input: Input::new(&n.to_string()),
                };
            }
        }
        Cmd::SetBudget => {
            s.mode = Mode::Budget {
                input: Input::new(&crate::budget::describe(s.budget)),
            };
        }
        Cmd::RemoveProbe => {
            if let Some(func) = s.selected_fn().filter(|f| s.probes.contains_key(f)) {
                keep_condition(s, func);
                return vec![Effect::Set {
                    func,
                    settings: ProbeSpec::default(),
                }];
            }
        }
        Cmd::Save => save_rows(s),
        Cmd::WriteProbes => write_probes(s),
        Cmd::Pause => {
            s.paused_at = match s.paused_at {
                Some(_) => None,
                None => Some(s.next_seq),
            };
        }
        Cmd::Detail => {
            let seq = s
                .ev_sel
                .or_else(|| s.shown_rows().next_back().map(|r| r.seq));
            if let Some(seq) = seq {
                s.mode = Mode::Detail { seq, scroll: 0 };
            }
        }
        Cmd::FilterFunction => {
            let probed: Vec<usize> = s.probes.keys().copied().collect();
            s.ev_filter = match s
                .ev_filter
                .and_then(|f| probed.iter().position(|&p| p == f))
            {
                None => probed.first().copied(),
                Some(i) => probed.get(i + 1).copied(),
            };
            s.ev_sel = None;
        }
        Cmd::PrevProbe => cycle_latency(s, -1),
        Cmd::NextProbe => cycle_latency(s, 1),
    }
    vec![]
}

fn probeable_selection(s: &mut State) -> Option<usize> {
    let func = s.selected_fn()?;
    let f = &s.cat.functions[func];
    if f.probeable() {
        return Some(func);
    }
    let why = if f.inlined_only {
        "is inlined at every call site: probe its callers"
    } else {
        "has no machine code to probe"
    };
    let msg = format!("{} {why}", f.name);
    s.error(msg);
    None
}

/// Remembers what a probe being removed was asked beyond what it captures (its
/// condition, paths, split, stacks), to start from when it comes back.
fn keep_condition(s: &mut State, func: usize) {
    let Some(p) = s.probes.get(&func) else { return };
    let kept = ProbeSpec {
        args: false,
        ret: false,
        latency: false,
        ..p.clone()
    };
    if kept != ProbeSpec::default() {
        if let Some(c) = &kept.condition {
            s.info(format!(
                "probe removed; its condition `{c}` is kept for a, r or l"
            ));
        }
        s.kept.insert(func, kept);
    }
}

/// `w`: the table's calls (or the filtered function's) as JSON lines in a file of the
/// user's only (periscope_files::create).
/// `W`: the probes set, as a probe file for `periscope agent` (probe_file::render): what
/// answered an incident, to be deployed as it is.
fn write_probes(s: &mut State) {
    if s.probes.is_empty() {
        s.error("no probes to write: set one first (a, r, l on a function)");
        return;
    }
    let exe = if s.exe_path.is_empty() {
        s.binary.clone()
    } else {
        s.exe_path.clone()
    };
    let mut probes: Vec<(usize, &crate::session::ProbeSpec)> =
        s.probes.iter().map(|(&f, p)| (f, p)).collect();
    probes.sort_by_key(|(f, _)| s.cat.functions[*f].name.clone());
    let list: Vec<crate::probe_file::ToWrite> = probes
        .iter()
        .map(|&(f, spec)| crate::probe_file::ToWrite {
            func: &s.cat.functions[f].name,
            spec,
            log: s.logs.get(&f).map(|t| t.text.as_str()),
        })
        .collect();
    let text = crate::probe_file::render(s.budget, &exe, &list);
    let n = list.len();
    let stem = format!("periscope-probes-{}", s.pid);
    let written = periscope_files::create(&s.save_dir, &stem, "toml")
        .or_else(|e| {
            periscope_files::state_dir()
                .and_then(|dir| periscope_files::create(&dir, &stem, "toml"))
                .map_err(|_| e)
        })
        .and_then(|(path, mut f)| {
            std::io::Write::write_all(&mut f, text.as_bytes()).map(|()| path)
        });
    match written {
        Ok(path) => {
            let shown = std::fs::canonicalize(&path).unwrap_or(path);
            s.info(format!(
                "wrote {n} probe(s) to {}: periscope agent --check it, then --config it",
                shown.display()
            ));
        }
        Err(e) => s.error(format!(
            "cannot write the probe file in {}: {e}",
            s.save_dir.display()
        )),
    }
}

fn save_rows(s: &mut State) {
    let stem = format!(
        "periscope-{}-{}",
        s.pid,
        crate::format::unix_ns(
            s.rows.back().map_or(0, |r| r.row.call.ts_ns),
            s.clock_offset_ns
        ) / 1_000_000_000
    );
    let mut out = String::new();
    let mut n = 0;
    for r in s.shown_rows() {
        out += &crate::format::call_json(
            &r.row.call,
            s.fn_name(r.row.at),
            r.row.stack.as_ref(),
            s.clock_offset_ns,
        );
        out.push('\n');
        n += 1;
    }
    // Where periscope was started, else (a directory others may write, say /tmp) the
    // user's own state directory.
    let written = periscope_files::create(&s.save_dir, &stem, "jsonl")
        .or_else(|e| {
            periscope_files::state_dir()
                .and_then(|dir| periscope_files::create(&dir, &stem, "jsonl"))
                .map_err(|_| e)
        })
        .and_then(|(path, mut f)| std::io::Write::write_all(&mut f, out.as_bytes()).map(|()| path));
    match written {
        Ok(path) => {
            let shown = std::fs::canonicalize(&path).unwrap_or(path);
            s.info(format!(
                "wrote {n} calls to {} (readable by you only)",
                shown.display()
            ));
        }
        Err(e) => s.error(format!(
            "cannot write the calls in {}: {e}",
            s.save_dir.display()
        )),
    }
}

/// `y` on a call: its JSON to the terminal's clipboard (OSC 52), as `trace --json`
/// prints it.
fn copy_call(s: &mut State, seq: u64) {
    use base64::Engine as _;
    let Some(r) = s.row(seq) else { return };
    let text = crate::format::call_json(
        &r.row.call,
        s.fn_name(r.row.at),
        r.row.stack.as_ref(),
        s.clock_offset_ns,
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    s.clipboard = Some(format!("\x1b]52;c;{b64}\x07"));
    s.info(format!("copied the call as JSON ({} bytes)", text.len()));
}

fn toggle(s: &mut State, cmd: Cmd) -> Vec<Effect> {
    let Some(func) = probeable_selection(s) else {
        return vec![];
    };
    let mut settings = s
        .probes
        .get(&func)
        .or_else(|| s.kept.get(&func))
        .cloned()
        .unwrap_or_default();
    match cmd {
        Cmd::ToggleArgs => settings.args = !settings.args,
        Cmd::ToggleRet => settings.ret = !settings.ret,
        Cmd::ToggleStack => {
            settings.stack = !settings.stack;
            // Stacks come with calls: a probe that captured nothing yet takes arguments.
            if settings.stack && settings.is_empty() {
                settings.args = true;
            }
        }
        _ => settings.latency = !settings.latency,
    }
    if settings.is_empty() {
        // Nothing left to capture: the probe goes, its condition stays with the
        // function for the next a, r or l.
        keep_condition(s, func);
        settings = ProbeSpec::default();
    }
    vec![Effect::Set { func, settings }]
}

fn step(s: &mut State, by: isize) {
    match s.focus {
        Pane::Functions => move_fn(s, by),
        Pane::Events => move_event(s, by),
        Pane::Latency => cycle_latency(s, by.signum()),
    }
}

fn move_fn(s: &mut State, by: isize) {
    if s.visible.is_empty() {
        return;
    }
    let max = s.visible.len() as isize - 1;
    s.fn_sel = (s.fn_sel as isize).saturating_add(by).clamp(0, max) as usize;
}

fn move_event(s: &mut State, by: isize) {
    let seqs: Vec<u64> = s.shown_rows().map(|r| r.seq).collect();
    if seqs.is_empty() {
        return;
    }
    let last = seqs.len() as isize - 1;
    let at = match s.ev_sel {
        Some(sel) => seqs.partition_point(|&q| q < sel) as isize,
        None => last + 1,
    };
    let to = at.saturating_add(by).clamp(0, last + 1);
    // Moving past the newest row returns to following the stream.
    s.ev_sel = (to <= last).then(|| seqs[to as usize]);
}

fn cycle_latency(s: &mut State, by: isize) {
    let probes = s.latency_probes();
    if probes.is_empty() {
        return;
    }
    let at = s
        .lat_sel
        .and_then(|f| probes.iter().position(|&p| p == f))
        .unwrap_or(0) as isize;
    let n = probes.len() as isize;
    s.lat_sel = Some(probes[(at + by).rem_euclid(n) as usize]);
}
