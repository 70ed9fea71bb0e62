//! The function list and the selected function's details.
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use symbols::probe_points::EntryKind;

use super::{ViewCache, pane_block, window};
use crate::app::state::{Mode, Pane, State};

pub fn list(f: &mut Frame, area: Rect, s: &State, cache: &mut ViewCache) {
    let mut title = format!(" Functions {} ", s.visible.len());
    if !s.filter.is_empty() {
        title += &format!("/{} ", s.filter);
    }
    if s.widened {
        title += "(none in own code: all) ";
    } else if !s.show_std {
        title += "(own code; s: all) ";
    }
    let block = pane_block(&title, s.focus == Pane::Functions);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let height = inner.height as usize;
    let (start, end) = window(&mut cache.fn_offset, s.fn_sel, s.visible.len(), height);
    // The cost column once there is a probe to cost: at 80 columns its five characters
    // are a third of the names' room.
    let costs = !s.probes.is_empty();
    let room = (inner.width as usize).saturating_sub(if costs { 10 } else { 5 });
    let lines: Vec<Line> = (start..end)
        .map(|i| {
            let func = s.visible[i];
            let fun = &s.cat.functions[func];
            let marker = match s.probes.get(&func) {
                Some(p) => {
                    let cond = if p.condition.is_some() { "?" } else { " " };
                    Span::styled(
                        format!("{}{cond}", p.marker()),
                        Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
                    )
                }
                None if !fun.probeable() => Span::styled("  ~ ", Style::new().fg(Color::DarkGray)),
                None => Span::raw("    "),
            };
            // What each probe costs the target now (the last second where the budget
            // measured it), red past the budget.
            let cost = match s.views.get(&func).and_then(|v| v.cost) {
                Some(c) => {
                    let pct = c.watch.and_then(|w| w.recent_pct).or(c.overhead_pct);
                    let over = pct.is_some_and(|p| p > s.budget.unwrap_or(f64::INFINITY));
                    Span::styled(
                        pct.map_or("     ".into(), |p| format!("{:>5}", crate::format::pct1(p))),
                        if over {
                            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
                        } else {
                            Style::new().fg(Color::DarkGray)
                        },
                    )
                }
                None if costs => Span::raw("     "),
                None => Span::raw(""),
            };
            let mut style = Style::new();
            if !fun.probeable() {
                style = style.fg(Color::DarkGray);
            }
            if i == s.fn_sel {
                style = style.add_modifier(Modifier::REVERSED);
            }
            Line::from(vec![
                marker,
                cost,
                Span::raw(" "),
                Span::styled(
                    fit(&compact(&fun.signature()), &compact(&fun.name), room),
                    style,
                ),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

/// A row's signature in `room` characters: whole when it fits; else its name whole and
/// the parameters cut (`…`); else the package and the name's end, which tells
/// functions apart (`main.…Store).Login` and `main.…tore).Logout`, where a cut on the right
/// showed `main.(*Store).Log` twice).
pub fn fit(sig: &str, name: &str, room: usize) -> String {
    let len = sig.chars().count();
    if len <= room {
        return sig.to_string();
    }
    let name_len = name.chars().count();
    if name_len < room {
        let mut out: String = sig.chars().take(room.saturating_sub(1)).collect();
        out.push('…');
        return out;
    }
    // The package, then the end: `term.…).ReadLine.deferwrap1`.
    let pkg: String = name.chars().take_while(|&c| c != '.').collect();
    let pkg_len = pkg.chars().count() + 1;
    if pkg_len < name_len && pkg_len + 1 + 12 <= room {
        let mut out = format!("{pkg}.…");
        out.extend(name.chars().skip(name_len + pkg_len + 1 - room));
        return out;
    }
    let mut out = String::from("…");
    out.extend(name.chars().skip(name_len + 1 - room.max(1)));
    out
}

/// A signature with every package path cut to its last element, so that a list of
/// vendored functions does not show the same 40-column prefix on every line:
/// `driver.(*webInterface).render(ui *driver.webInterface, w http.ResponseWriter, …)`.
/// The details pane has the full name.
pub fn compact(sig: &str) -> String {
    let mut out = String::with_capacity(sig.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(word.rsplit_once('/').map_or(word.as_str(), |(_, w)| w));
        word.clear();
    };
    for c in sig.chars() {
        if c.is_alphanumeric() || matches!(c, '_' | '.' | '/' | '-') {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Processes listed in the details pane, the busiest first.
const PROCESS_LINES: usize = 4;

/// The details pane's lines for the selected probe's processes (a program of several).
pub fn process_lines(s: &State) -> u16 {
    let n = s
        .selected_fn()
        .and_then(|f| s.views.get(&f))
        .map_or(0, |v| v.processes.len());
    (n.min(PROCESS_LINES) + usize::from(n > PROCESS_LINES)) as u16
}

pub fn details(f: &mut Frame, area: Rect, s: &State) {
    let Some(func) = s.selected_fn() else {
        let p = Paragraph::new("no function matches").block(Block::new().borders(Borders::ALL));
        f.render_widget(p, area);
        return;
    };
    let fun = &s.cat.functions[func];
    let dim = Style::new().fg(Color::DarkGray);
    let bold = Style::new().add_modifier(Modifier::BOLD);
    // The full name: the list and the tables show it shortened. In the title when it
    // fits, else wrapped on the first lines.
    let fits = fun.name.chars().count() + 4 <= area.width as usize;
    let mut lines = Vec::new();
    if !fits {
        lines.push(Line::styled(fun.name.clone(), bold));
    }
    lines.push(Line::from(vec![
        Span::styled(fun.location(), dim),
        Span::styled(format!("  {:#x}", fun.entry), dim),
    ]));
    match &fun.probes {
        Some(p) if fun.probeable() => {
            let entry = match p.entry_kind {
                EntryKind::PushAfterCheck => "push after the stack check",
                EntryKind::StackCheckBranch => "the stack check's jbe",
                EntryKind::FirstInstruction { emulated: true } => "first instruction",
                EntryKind::FirstInstruction { emulated: false } => {
                    "first instruction (expensive: single-stepped)"
                }
            };
            // With a probe, its points line below says where it sits (call sites,
            // perhaps): one description, not two that disagree.
            if !s.probes.contains_key(&func) {
                let kind = format!(
                    "own points: entry on {entry}; {} RET(s) (a probe may sit at its call sites instead)",
                    p.returns.len()
                );
                lines.push(Line::styled(kind, dim));
            }
        }
        _ if fun.inlined_only => lines.push(Line::styled(
            "inlined at every call site: probe its callers",
            Style::new().fg(Color::Yellow),
        )),
        _ => lines.push(Line::styled(
            "no code to probe",
            Style::new().fg(Color::Yellow),
        )),
    }
    let values = |label: &str, vs: &Option<Vec<symbols::Value>>, lines: &mut Vec<Line>| {
        for v in vs.iter().flatten().filter(|v| !v.is_internal()) {
            lines.push(Line::from(vec![
                Span::styled(format!("{label} "), dim),
                Span::styled(v.name.clone(), bold),
                Span::raw(format!(" {}", v.type_name)),
                Span::styled(format!("  {}", v.location.describe()), dim),
            ]));
        }
    };
    values("param ", &fun.params, &mut lines);
    values("result", &fun.results, &mut lines);
    match s.probes.get(&func) {
        Some(p) => {
            // What it costs the target, measured here (calibration + the program's own
            // time), beside what it captures: red past the 5% the founding promise allows.
            let mut probe_line = vec![Span::styled(
                format!("probe: {}", p.describe()),
                Style::new().fg(Color::Green),
            )];
            if let Some(c) = s.views.get(&func).and_then(|v| v.cost) {
                let now = c.watch.and_then(|w| w.recent_pct).or(c.overhead_pct);
                let heavy = now.is_some_and(|p| p > s.budget.unwrap_or(5.0));
                let mut pct = now.map(|p| format!(", {p:.1}% CPU")).unwrap_or_default();
                if let Some(w) = c.watch.filter(|w| w.observed_pct < 99.95) {
                    pct.push_str(&format!(
                        "; budget: observed {}{} of calls",
                        if w.unseen_at_least { "at most " } else { "" },
                        crate::format::pct1(w.observed_pct)
                    ));
                    if let Some(u) = crate::format::describe_unseen(&w) {
                        pct.push_str(&format!("; {u}"));
                    }
                }
                probe_line.push(Span::styled(
                    format!(
                        "  ~{}/call{pct}",
                        crate::format::fmt_ns(c.per_call_ns.round() as u64)
                    ),
                    if heavy {
                        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
                    } else {
                        dim
                    },
                ));
            }
            lines.push(Line::from(probe_line));
            if let Some(t) = s.logs.get(&func) {
                lines.push(Line::styled(
                    format!("log: '{}' (L edits it)", t.text),
                    Style::new().fg(Color::Green),
                ));
            }
            if let Some(p) = s.views.get(&func).and_then(|v| v.points.as_deref()) {
                lines.push(Line::styled(format!("points: {p}"), dim));
            }
            // Its counters, so that nothing is dropped silently.
            if let Some(v) = s.views.get(&func) {
                let st = &v.stats;
                let lost = if st.lost > 0 {
                    Style::new().fg(Color::Red)
                } else {
                    dim
                };
                lines.push(Line::from(vec![
                    Span::styled(
                        format!(
                            "hits {}  emitted {}  filtered {}  sampled out {}  ",
                            st.hits, st.emitted, st.filtered, st.sampled_out
                        ),
                        dim,
                    ),
                    Span::styled(format!("lost {}", st.lost), lost),
                ]));
                // A program of several: the probe in each process, the busiest first
                // (the budget holds for each on its own).
                let mut procs: Vec<_> = v.processes.iter().collect();
                procs.sort_by_key(|p| std::cmp::Reverse(p.hits));
                for p in procs.iter().take(PROCESS_LINES) {
                    lines.push(Line::styled(crate::format::describe_in_process(p), dim));
                }
                if procs.len() > PROCESS_LINES {
                    lines.push(Line::styled(
                        format!("… {} more process(es)", procs.len() - PROCESS_LINES),
                        dim,
                    ));
                }
            }
        }
        None if fun.probeable() => lines.push(Line::styled(
            "no probe: a args · r results · l latency · c condition",
            dim,
        )),
        None => {}
    }
    let title = if fits {
        Span::styled(format!(" {} ", fun.name), bold)
    } else {
        Span::raw(" Function ")
    };
    let block = Block::new().borders(Borders::ALL).title(title);
    f.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// Marks the search line's cursor.
pub fn search_line(s: &State) -> Option<(String, usize)> {
    match &s.mode {
        Mode::Search(input) => Some((format!("/{}", input.text), input.cursor + 1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{compact, fit};

    #[test]
    fn a_row_keeps_what_tells_functions_apart() {
        let sig = "main.(*Store).Login(username string, attempts int)";
        assert_eq!(fit(sig, "main.(*Store).Login", 60), sig);
        assert_eq!(
            fit(sig, "main.(*Store).Login", 24),
            "main.(*Store).Login(use…"
        );
        assert_eq!(fit(sig, "main.(*Store).Login", 18), "main.…Store).Login");
        assert_eq!(
            fit("main.(*Store).Logout()", "main.(*Store).Logout", 18),
            "main.…tore).Logout"
        );
        // No room for the package: the end alone.
        assert_eq!(fit(sig, "main.(*Store).Login", 12), "…tore).Login");
    }

    #[test]
    fn compact_cuts_every_package_path_to_its_last_element() {
        assert_eq!(
            compact(
                "cmd/vendor/github.com/google/pprof/internal/driver.(*webInterface).render(ui *cmd/vendor/github.com/google/pprof/internal/driver.webInterface, w net/http.ResponseWriter, h map[string]net/http.Header)"
            ),
            "driver.(*webInterface).render(ui *driver.webInterface, w http.ResponseWriter, h map[string]http.Header)"
        );
        assert_eq!(
            compact("main.Max[go.shape.int](a int, b int) int"),
            "main.Max[go.shape.int](a int, b int) int"
        );
    }
}
