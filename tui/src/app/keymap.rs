//! Every key of the TUI in one table: `update` dispatches through it and the help
//! screen is drawn from it, so the two cannot drift apart.
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::state::Pane;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    In(Pane),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Quit,
    Help,
    NextPane,
    PrevPane,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Search,
    ClearSearch,
    ToggleStd,
    ToggleArgs,
    ToggleRet,
    ToggleLatency,
    EditCondition,
    EditCapture,
    EditLog,
    ToggleStack,
    SplitBy,
    Save,
    WriteProbes,
    Callers,
    SetSample,
    RemoveProbe,
    Pause,
    Detail,
    FilterFunction,
    PrevProbe,
    NextProbe,
    SetBudget,
}

pub struct Binding {
    pub scope: Scope,
    pub keys: &'static [KeyCode],
    pub label: &'static str,
    pub cmd: Cmd,
    pub help: &'static str,
}

use KeyCode::*;
use Pane::*;

const fn b(
    scope: Scope,
    keys: &'static [KeyCode],
    label: &'static str,
    cmd: Cmd,
    help: &'static str,
) -> Binding {
    Binding {
        scope,
        keys,
        label,
        cmd,
        help,
    }
}

#[rustfmt::skip]
pub const KEYS: &[Binding] = &[
    b(Scope::Global, &[Char('q')], "q", Cmd::Quit, "quit (detaches every probe)"),
    b(Scope::Global, &[Char('?')], "?", Cmd::Help, "this help"),
    b(Scope::Global, &[KeyCode::Tab], "Tab", Cmd::NextPane, "next pane"),
    b(Scope::Global, &[BackTab], "S-Tab", Cmd::PrevPane, "previous pane"),
    b(Scope::Global, &[KeyCode::Up, Char('k')], "↑ k", Cmd::Up, "move up"),
    b(Scope::Global, &[KeyCode::Down, Char('j')], "↓ j", Cmd::Down, "move down"),
    b(Scope::Global, &[KeyCode::PageUp], "PgUp", Cmd::PageUp, "page up"),
    b(Scope::Global, &[KeyCode::PageDown], "PgDn", Cmd::PageDown, "page down"),
    b(Scope::Global, &[Home, Char('g')], "Home g", Cmd::Top, "first"),
    b(Scope::Global, &[End, Char('G')], "End G", Cmd::Bottom, "last (events: follow the newest)"),
    b(Scope::Global, &[Char('b')], "b", Cmd::SetBudget, "budget: the CPU share probes may take"),
    b(Scope::Global, &[Char('w')], "w", Cmd::Save, "write the table's calls to a JSON-lines file"),
    b(Scope::Global, &[Char('W')], "W", Cmd::WriteProbes, "write the probes as a probe file (periscope agent)"),
    b(Scope::In(Functions), &[Char('/')], "/", Cmd::Search, "fuzzy search functions"),
    b(Scope::In(Functions), &[Esc], "Esc", Cmd::ClearSearch, "clear the search"),
    b(Scope::In(Functions), &[Char('s')], "s", Cmd::ToggleStd, "show or hide runtime and standard library"),
    b(Scope::In(Functions), &[Char('a')], "a", Cmd::ToggleArgs, "capture arguments on/off"),
    b(Scope::In(Functions), &[Char('r')], "r", Cmd::ToggleRet, "capture results on/off"),
    b(Scope::In(Functions), &[Char('l')], "l", Cmd::ToggleLatency, "record latency on/off"),
    b(Scope::In(Functions), &[Char('c')], "c", Cmd::EditCondition, "edit the probe's condition (Tab completes)"),
    b(Scope::In(Functions), &[Char('C')], "C", Cmd::EditCapture, "values to capture first (r.URL.Path, r.Host)"),
    b(Scope::In(Functions), &[Char('L')], "L", Cmd::EditLog, "log: each call as a message from a template"),
    b(Scope::In(Functions), &[Char('t')], "t", Cmd::ToggleStack, "record each call's callers (stack) on/off"),
    b(Scope::In(Functions), &[Char('T')], "T", Cmd::Callers, "callers: top call paths, by calls and by latency"),
    b(Scope::In(Functions), &[Char('n')], "n", Cmd::SetSample, "keep one call in N"),
    b(Scope::In(Functions), &[Char('x')], "x", Cmd::RemoveProbe, "remove the probe"),
    b(Scope::In(Events), &[Char(' ')], "Space", Cmd::Pause, "pause or resume the table"),
    b(Scope::In(Events), &[Enter], "Enter", Cmd::Detail, "the call's full values"),
    b(Scope::In(Events), &[Char('f')], "f", Cmd::FilterFunction, "show one function's calls (cycles)"),
    b(Scope::In(Latency), &[Left, Char('[')], "← [", Cmd::PrevProbe, "previous probe"),
    b(Scope::In(Latency), &[Right, Char(']')], "→ ]", Cmd::NextProbe, "next probe"),
    b(Scope::In(Latency), &[Char('v')], "v", Cmd::SplitBy, "split the histogram by a value (r1, err != nil)"),
];

/// The command a key means in a pane; pane bindings win over global ones.
pub fn lookup(pane: Pane, key: &KeyEvent) -> Option<Cmd> {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            Char('c') => Some(Cmd::Quit),
            Char('d') => Some(Cmd::PageDown),
            Char('u') => Some(Cmd::PageUp),
            _ => None,
        };
    }
    let find = |scope: Scope| {
        KEYS.iter()
            .find(|b| b.scope == scope && b.keys.contains(&key.code))
            .map(|b| b.cmd)
    };
    find(Scope::In(pane)).or_else(|| find(Scope::Global))
}
