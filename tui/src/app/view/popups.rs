//! Popups over the panes: help (drawn from the keymap), one call in full, the condition
//! editor and the sampling prompt.
use probes_ebpf::GoValue;
use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use super::{centered, clock, dim, line_of};
use crate::app::keymap::{KEYS, Scope};
use crate::app::state::{Editing, Mode, Pane, State};
use crate::format::fmt_ns;
use crate::session::Callers;

pub fn draw(f: &mut Frame, s: &State) {
    match &s.mode {
        Mode::Help { scroll } => help(f, *scroll),
        Mode::Detail { seq, scroll } => detail(f, s, *seq, *scroll),
        Mode::Condition {
            func,
            what,
            input,
            error,
            completions,
        } => condition(
            f,
            s,
            *func,
            *what,
            &input.text,
            input.cursor,
            error.as_ref(),
            completions,
        ),
        Mode::Sample { func, input } => {
            let area = popup(f, 60, 5, " Sampling ");
            let lines = vec![
                Line::raw(format!("keep one call in N of {}", s.fn_name(*func))),
                Line::raw(format!("N: {}", input.text)),
                Line::styled("Enter sets it · Esc cancels", dim()),
            ];
            f.render_widget(Paragraph::new(lines), area);
            f.set_cursor_position(Position::new(area.x + 3 + input.cursor as u16, area.y + 1));
        }
        Mode::Budget { input } => {
            let area = popup(f, 66, 5, " Budget ");
            let lines = vec![
                Line::raw("share of the target's CPU the probes may take (5%, 0.5%, off)"),
                Line::raw(format!("budget: {}", input.text)),
                Line::styled("Enter sets it · Esc cancels", dim()),
            ];
            f.render_widget(Paragraph::new(lines), area);
            f.set_cursor_position(Position::new(area.x + 8 + input.cursor as u16, area.y + 1));
        }
        Mode::Callers { func } => callers(f, s, *func),
        Mode::Normal | Mode::Search(_) => {}
    }
}

/// Clears a centered box with a border and returns its inside.
fn popup(f: &mut Frame, width: u16, height: u16, title: &str) -> Rect {
    let area = centered(f.area(), width, height + 2);
    f.render_widget(Clear, area);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(Color::Cyan))
        .title(Span::styled(
            title.to_string(),
            Style::new().add_modifier(Modifier::BOLD),
        ));
    let inner = block.inner(area);
    f.render_widget(block, area);
    inner
}

fn help(f: &mut Frame, scroll: u16) {
    let mut lines = Vec::new();
    for (scope, title) in [
        (Scope::Global, "Everywhere"),
        (Scope::In(Pane::Functions), "Functions"),
        (Scope::In(Pane::Events), "Events"),
        (Scope::In(Pane::Latency), "Latency"),
    ] {
        lines.push(Line::styled(
            title,
            Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan),
        ));
        for b in KEYS.iter().filter(|b| b.scope == scope) {
            lines.push(line_of(vec![
                (format!("  {:<8}", b.label), Style::new().fg(Color::Yellow)),
                (b.help.to_string(), Style::new()),
            ]));
        }
    }
    lines.push(Line::styled(
        "Ctrl-C quits from anywhere · any other key closes",
        dim(),
    ));
    scrolling(f, lines, scroll, 64, "Keys", "");
}

fn detail(f: &mut Frame, s: &State, seq: u64, scroll: u16) {
    let Some(r) = s.row(seq) else {
        return;
    };
    let c = &r.row.call;
    let mut lines = vec![
        Line::styled(
            s.fn_name(r.row.at).to_string(),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Line::styled(
            format!(
                "{}  goroutine {}  pid {}{} tid {}{}",
                clock(c.ts_ns, s.clock_offset_ns),
                c.goid,
                c.pid,
                crate::session::Place::describe(r.row.place.as_deref()),
                c.tid,
                c.latency_ns
                    .map(|l| format!("  latency {}", fmt_ns(l)))
                    .unwrap_or_default()
            ),
            dim(),
        ),
    ];
    for (title, vs) in [("arguments", &c.args), ("results", &c.ret)] {
        let Some(vs) = vs else { continue };
        lines.push(Line::styled(title, Style::new().fg(Color::Cyan)));
        for (k, v) in vs {
            pretty(&mut lines, 1, k, v);
        }
    }
    match &r.row.stack {
        Some(Callers::Frames(frames)) => {
            lines.push(Line::styled("callers", Style::new().fg(Color::Cyan)));
            for p in frames.parts() {
                match (p, frames.elided) {
                    (Some(p), _) => lines.push(Line::raw(format!("  {}", position(p)))),
                    (None, Some(e)) => lines.push(Line::styled(
                        format!("  {}", crate::stack::Stack::elided_text(&e)),
                        dim(),
                    )),
                    (None, None) => {}
                }
            }
        }
        Some(Callers::NotCaptured(why)) => {
            lines.push(Line::styled(
                format!("callers ‹not captured: {why}›"),
                dim(),
            ));
        }
        None => {}
    }
    if c.truncated {
        lines.push(Line::styled(
            "(the event was cut: some values are missing)",
            Style::new().fg(Color::Yellow),
        ));
    }
    scrolling(f, lines, scroll, 100, "Call", " · y copies JSON");
}

/// A popup of `lines` that scrolls when the terminal is too short for them: from
/// `scroll` (clamped to the last page), its title saying which lines it shows.
fn scrolling(
    f: &mut Frame,
    lines: Vec<Line<'static>>,
    scroll: u16,
    width: u16,
    name: &str,
    keys: &str,
) {
    let total = lines.len() as u16;
    let h = total.min(f.area().height.saturating_sub(4));
    let scroll = scroll.min(total.saturating_sub(h));
    let title = if total > h {
        format!(
            " {name} · lines {}–{} of {total} · j k PgUp PgDn g G{keys} ",
            scroll + 1,
            scroll + h
        )
    } else {
        format!(" {name}{keys} ")
    };
    let area = popup(f, width, h, &title);
    f.render_widget(Paragraph::new(lines).scroll((scroll, 0)), area);
}

/// `main.handler (server.go:42)`.
fn position(p: &symbols::pclntab::Position) -> String {
    let file = p.file.rsplit('/').next().unwrap_or(&p.file);
    format!("{} ({file}:{})", p.func, p.line)
}

/// A probe's call paths: the ten with the most calls, and the ten with the most time.
fn callers(f: &mut Frame, s: &State, func: usize) {
    let mut paths: Vec<&crate::app::state::CallPath> = s
        .paths
        .get(&func)
        .map(|m| m.values().collect())
        .unwrap_or_default();
    let total: u64 = paths.iter().map(|p| p.calls).sum();
    let mut lines = vec![Line::styled(
        format!(
            "{}: {} call paths, {total} calls",
            s.fn_name(func),
            paths.len()
        ),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let frame = |f: &symbols::pclntab::Position| {
        let file = f.file.rsplit('/').next().unwrap_or(&f.file);
        format!(
            "{}:{file}:{}",
            symbols::catalog::short_name(&f.func),
            f.line
        )
    };
    // The innermost four; a deep stack's then ends with its goroutine's first
    // function (what the recursion was called from), the frames between counted.
    let path_line = |p: &crate::app::state::CallPath| {
        let mut parts: Vec<String> = p.frames.iter().take(4).map(frame).collect();
        if let Some(e) = p.frames.elided {
            let root = p.frames.frames[e.at..]
                .iter()
                .rev()
                .find(|f| f.func != "runtime.goexit");
            let shown = 4.min(e.at);
            let between = e.count + (e.at - shown) as u64;
            let between = if e.at_least {
                format!("… ≥{between} frames")
            } else {
                format!("… {between} frames")
            };
            parts.push(between);
            parts.extend(root.map(frame));
        }
        parts.join(" ← ")
    };
    let mut section = |title: &str, paths: &[&crate::app::state::CallPath]| {
        lines.push(Line::styled(
            title.to_string(),
            Style::new().fg(Color::Cyan),
        ));
        for p in paths.iter().take(10) {
            lines.push(Line::raw(format!(
                "{:>7} {:>5.1}%  {:>9}  {}",
                p.calls,
                100.0 * p.calls as f64 / total.max(1) as f64,
                fmt_ns(p.total_ns),
                path_line(p)
            )));
        }
    };
    paths.sort_by_key(|p| std::cmp::Reverse(p.calls));
    section(
        "by calls      calls  share  latency   callers (innermost first)",
        &paths,
    );
    paths.sort_by_key(|p| std::cmp::Reverse(p.total_ns));
    section("by total latency", &paths);
    lines.push(Line::styled("any key closes", dim()));
    let h = (lines.len() as u16).min(f.area().height.saturating_sub(4));
    let area = popup(f, 140, h, " Callers ");
    f.render_widget(Paragraph::new(lines), area);
}

/// Why `v` was not captured, when nothing of it was: a missing value, or a struct all
/// of whose fields are missing for one reason.
fn uncaptured(v: &GoValue) -> Option<probes_ebpf::value::Missing> {
    match v {
        GoValue::NotCaptured(m) => Some(*m),
        GoValue::Struct(fields) if !fields.is_empty() => {
            let first = uncaptured(&fields[0].1)?;
            fields[1..]
                .iter()
                .all(|(_, f)| uncaptured(f) == Some(first))
                .then_some(first)
        }
        _ => None,
    }
}

/// One value per line, struct fields and list elements indented under their parent.
fn pretty(lines: &mut Vec<Line<'static>>, depth: usize, name: &str, v: &GoValue) {
    let pad = "  ".repeat(depth);
    let key = Style::new().fg(Color::Cyan);
    match v {
        // A struct none of whose fields were read is one line, not one per field.
        GoValue::Struct(fields) if uncaptured(v).is_some() => lines.push(line_of(vec![
            (format!("{pad}{name} = "), key),
            (
                GoValue::NotCaptured(uncaptured(v).unwrap()).render(),
                Style::new().fg(Color::DarkGray),
            ),
            (format!(" ({} fields)", fields.len()), dim()),
        ])),
        GoValue::Struct(fields) if !fields.is_empty() => {
            lines.push(line_of(vec![(format!("{pad}{name}:"), key)]));
            for (k, fv) in fields {
                pretty(lines, depth + 1, k, fv);
            }
        }
        GoValue::List { items, len } if items.iter().any(|i| matches!(i, GoValue::Struct(_))) => {
            lines.push(line_of(vec![
                (format!("{pad}{name}: "), key),
                (format!("{len} elements"), dim()),
            ]));
            for (i, item) in items.iter().enumerate() {
                pretty(lines, depth + 1, &format!("[{i}]"), item);
            }
        }
        _ => lines.push(line_of(vec![
            (format!("{pad}{name} = "), key),
            (v.render(), Style::new()),
        ])),
    }
}

#[allow(clippy::too_many_arguments)]
fn condition(
    f: &mut Frame,
    s: &State,
    func: usize,
    what: Editing,
    text: &str,
    cursor: usize,
    error: Option<&(usize, String)>,
    completions: &[String],
) {
    let fun = &s.cat.functions[func];
    let mut lines = vec![
        Line::styled(fun.signature(), Style::new().add_modifier(Modifier::BOLD)),
        Line::raw(match what {
            Editing::Condition => format!("if {text}"),
            Editing::Capture | Editing::By | Editing::Log => format!("   {text}"),
        }),
    ];
    match error {
        Some((col, msg)) => {
            lines.push(Line::styled(
                format!("{}^", " ".repeat(3 + col.saturating_sub(1))),
                Style::new().fg(Color::Red),
            ));
            lines.push(Line::styled(
                format!("column {col}: {msg}"),
                Style::new().fg(Color::Red),
            ));
        }
        None if text.trim().is_empty() => {
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                match what {
                    Editing::Condition => "no condition: every call",
                    Editing::Capture => "nothing named: arguments first, receivers last",
                    Editing::By => "no split: one histogram",
                    Editing::Log => "no template: each call as a row of values",
                },
                dim(),
            ));
        }
        None => {
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                match what {
                    Editing::Condition => "ok: evaluated in the kernel",
                    Editing::Capture => "ok: read before anything else, pointers followed",
                    Editing::By => "ok: one histogram per value, kept in the kernel",
                    Editing::Log => "ok: each call as its message; what it names is captured",
                },
                Style::new().fg(Color::Green),
            ));
        }
    }
    lines.push(Line::styled(
        if completions.is_empty() {
            String::new()
        } else {
            completions.join("  ")
        },
        Style::new().fg(Color::Yellow),
    ));
    let (hint, title) = match what {
        Editing::Condition => (
            "Tab completes · Enter applies · Esc cancels · e.g. u.Name == \"alice\" && attempts > 2",
            " Condition ",
        ),
        Editing::Capture => (
            "Tab completes · Enter applies · Esc cancels · e.g. r.URL.Path, r.Host",
            " Capture first ",
        ),
        Editing::By => (
            "Tab completes · Enter applies · Esc cancels · e.g. r1, err != nil, r.Method",
            " Split latency by ",
        ),
        Editing::Log => (
            "Enter applies · Esc cancels · e.g. login {username}: {r1} in {latency}",
            " Log message ",
        ),
    };
    lines.push(Line::styled(hint, dim()));
    // As high as its lines take once wrapped (a long error, a narrow terminal).
    let inner = f.area().width.min(96).saturating_sub(2).max(1) as usize;
    // (Wrapped at words, a line may take one row more than its width says.)
    let height: usize = lines
        .iter()
        .map(|l| match l.width() {
            w if w > inner => w.div_ceil(inner) + 1,
            _ => 1,
        })
        .sum();
    let area = popup(f, 96, height as u16, title);
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
    f.set_cursor_position(Position::new(area.x + 3 + cursor as u16, area.y + 1));
}
