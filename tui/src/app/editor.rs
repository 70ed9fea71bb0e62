//! The editor of a probe's condition (`c`) and of the paths it captures first (`C`):
//! checked as it is typed, with Tab completion of parameters and fields.
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::Effect;
use super::complete;
use super::state::{Editing, Input, Mode, State};
use crate::session::ProbeSpec;

/// Line editing keys, with readline's control keys; true when the text changed.
pub(super) fn edit(input: &mut Input, k: &KeyEvent) -> bool {
    if k.modifiers.contains(KeyModifiers::CONTROL)
        && let KeyCode::Char(c) = k.code
    {
        // A control key is never typed as its letter.
        let before = input.text.clone();
        match c {
            'u' => input.kill_head(),
            'k' => input.kill_tail(),
            'w' => input.kill_word(),
            'h' => input.backspace(),
            'a' => input.cursor = 0,
            'e' => input.cursor = input.text.chars().count(),
            'b' => input.left(),
            'f' => input.right(),
            _ => {}
        }
        return input.text != before;
    }
    match k.code {
        KeyCode::Char(c) => {
            input.insert(c);
            true
        }
        KeyCode::Backspace => {
            input.backspace();
            true
        }
        KeyCode::Delete => {
            input.delete();
            true
        }
        KeyCode::Left => {
            input.left();
            false
        }
        KeyCode::Right => {
            input.right();
            false
        }
        KeyCode::Home => {
            input.cursor = 0;
            false
        }
        KeyCode::End => {
            input.cursor = input.text.chars().count();
            false
        }
        _ => false,
    }
}

/// The probe's settings, or arguments-only for a function without one (a condition
/// or a sampling rate needs something to capture).
pub(super) fn current(s: &State, func: usize) -> ProbeSpec {
    s.probes.get(&func).cloned().unwrap_or_else(|| ProbeSpec {
        args: true,
        ..s.kept.get(&func).cloned().unwrap_or_default()
    })
}

/// Opens the editor on `func`'s condition or capture paths, checked as it opens.
pub(super) fn open(s: &mut State, func: usize, what: Editing) {
    let p = s.probes.get(&func).or_else(|| s.kept.get(&func));
    let text = match what {
        Editing::Condition => p.and_then(|p| p.condition.clone()).unwrap_or_default(),
        Editing::Capture => p.map(|p| p.paths.join(", ")).unwrap_or_default(),
        Editing::By => p.and_then(|p| p.by.clone()).unwrap_or_default(),
        Editing::Log => s
            .logs
            .get(&func)
            .map(|t| t.text.clone())
            .unwrap_or_default(),
    };
    let error = check(s, func, what, &text);
    s.mode = Mode::Condition {
        func,
        what,
        input: Input::new(&text),
        error,
        completions: vec![],
    };
}

#[allow(clippy::too_many_arguments)]
pub(super) fn key(
    s: &mut State,
    func: usize,
    what: Editing,
    input: &mut Input,
    mut error: Option<(usize, String)>,
    mut completions: Vec<String>,
    k: KeyEvent,
) -> Vec<Effect> {
    match k.code {
        KeyCode::Esc => {
            s.mode = Mode::Normal;
            return vec![];
        }
        KeyCode::Enter => {
            if let Some((col, msg)) = &error {
                s.error(format!("column {col}: {msg}"));
                s.mode = Mode::Condition {
                    func,
                    what,
                    input: input.clone(),
                    error,
                    completions,
                };
                return vec![];
            }
            let mut settings = current(s, func);
            let text = input.text.trim();
            match what {
                Editing::Condition => {
                    settings.condition = (!text.is_empty()).then(|| text.to_string())
                }
                Editing::Capture => settings.paths = paths(text).map(|(_, p)| p.into()).collect(),
                Editing::By => {
                    settings.by = (!text.is_empty()).then(|| text.to_string());
                    settings.latency |= settings.by.is_some();
                }
                Editing::Log => {
                    if text.is_empty() {
                        s.logs.remove(&func);
                    } else if let Ok(t) = crate::template::Template::parse(text) {
                        // What the template names is captured too (read first), as
                        // with `trace --log`.
                        if let Ok(needs) = t.check(&s.cat, &s.cat.functions[func]) {
                            needs.apply(&mut settings);
                        }
                        s.logs.insert(func, t);
                    }
                }
            }
            // The mode stays open until the probe is applied: an attach error shows here.
            s.mode = Mode::Condition {
                func,
                what,
                input: input.clone(),
                error,
                completions,
            };
            return vec![Effect::Set { func, settings }];
        }
        KeyCode::Tab => {
            let cat = s.cat.clone();
            let f = &cat.functions[func];
            let head = input.head().to_string();
            let (start, word) = complete::current_word(&head);
            let cands = complete::candidates(&cat, f, word);
            let fill = match cands.len() {
                0 => String::new(),
                1 => cands[0].clone(),
                _ => complete::common_prefix(&cands),
            };
            if fill.len() > word.len() {
                input.insert_str(&fill[head.len() - start..]);
            }
            completions = if cands.len() > 1 { cands } else { vec![] };
        }
        _ => {
            if edit(input, &k) {
                completions.clear();
            }
        }
    }
    error = check(s, func, what, &input.text);
    s.mode = Mode::Condition {
        func,
        what,
        input: input.clone(),
        error,
        completions,
    };
    vec![]
}

/// Checks the text as it is typed, so that its error shows in place: a condition is
/// compiled, each capture path resolved (its column is the path's within the line).
fn check(s: &State, func: usize, what: Editing, text: &str) -> Option<(usize, String)> {
    if text.trim().is_empty() {
        return None;
    }
    let f = &s.cat.functions[func];
    match what {
        Editing::Condition => probes_ebpf::condition::compile(&s.cat, f, text)
            .err()
            .map(|e| (e.column, e.msg)),
        Editing::By => probes_ebpf::condition::compile_by(&s.cat, f, text, 0)
            .err()
            .map(|e| (e.column, e.msg)),
        Editing::Log => crate::template::Template::parse(text)
            .and_then(|t| t.check(&s.cat, f).map(|_| ()))
            .err()
            .map(|e| (e.column, e.msg)),
        Editing::Capture => paths(text).find_map(|(at, p)| {
            probes_ebpf::condition::capture_path(&s.cat, f, p)
                .err()
                .map(|e| (at + e.column, e.msg))
        }),
    }
}

/// The comma-separated paths of a capture line, each with its offset in the line.
fn paths(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut at = 0;
    text.split(',').filter_map(move |p| {
        let start = at;
        at += p.len() + 1;
        let lead = p.len() - p.trim_start().len();
        let p = p.trim();
        (!p.is_empty()).then_some((start + lead, p))
    })
}
