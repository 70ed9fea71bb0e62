//! The live table of calls: newest at the bottom, following the stream until the user
//! scrolls; only the rows on screen are formatted.
use probes_ebpf::{GoValue, Name};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};

use super::{ViewCache, pane_block, window};
use crate::app::state::{EventRow, Pane, State};
use crate::format::fmt_ns;

pub fn table(f: &mut Frame, area: Rect, s: &State, cache: &mut ViewCache) {
    let mut title = " Events ".to_string();
    if let Some(func) = s.ev_filter {
        title += &format!("· only {} (f) ", short(s.fn_name(func)));
    }
    if s.dropped_rows > 0 {
        title += &format!("· last {} kept ", s.rows.len());
    }
    if s.paused_at.is_some() {
        title += "· PAUSED (space) ";
    } else if s.ev_sel.is_some() {
        title += "· scrolled (G follows) ";
    }
    let block = pane_block(&title, s.focus == Pane::Events);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let shown: Vec<&EventRow> = s.shown_rows().collect();
    let height = inner.height.saturating_sub(1) as usize;
    let sel = match s.ev_sel {
        Some(seq) => shown.partition_point(|r| r.seq < seq),
        None => shown.len().saturating_sub(1),
    };
    if s.ev_sel.is_none() {
        cache.ev_offset = shown.len().saturating_sub(height);
    }
    let (start, end) = window(&mut cache.ev_offset, sel, shown.len(), height);
    // Widths follow the terminal and what is shown: whole goroutine ids, names up to
    // a third of the width, and no results column when no row has results.
    let visible = &shown[start..end];
    let g_width = visible
        .iter()
        .map(|r| 1 + r.row.call.goid.max(1).ilog10() as u16 + 1)
        .max()
        .unwrap_or(3);
    let name_width = visible
        .iter()
        .map(|r| short(s.fn_name(r.row.at)).chars().count() as u16)
        .max()
        .unwrap_or(8)
        .clamp(8, (inner.width / 3).max(8));
    // Narrow (80 columns): the values are what matter, so the time (in the call's
    // popup) goes, and the function's name when every row shown is of one function.
    let narrow = inner.width < 70;
    let time_width = if narrow { 0 } else { 12 };
    let one_function = visible.windows(2).all(|w| w[0].row.at == w[1].row.at);
    let name_width = if narrow && one_function {
        0
    } else {
        name_width
    };
    // Calls of several processes: which one made each (a column only then).
    let pid_width = s.program.as_ref().map(|_| {
        visible
            .iter()
            .map(|r| 1 + r.row.call.pid.max(1).ilog10() as u16)
            .max()
            .unwrap_or(3)
            .max(3)
    });
    let dim = Style::new().fg(Color::DarkGray);
    let rows: Vec<Row> = shown[start..end]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let c = &r.row.call;
            let mut cells = vec![
                Cell::from(Span::styled(clock(c.ts_ns, s.clock_offset_ns), dim)),
                Cell::from(format!("g{}", c.goid)),
                Cell::from(fit_left(short(s.fn_name(r.row.at)), name_width as usize)),
                Cell::from(if let Some(t) = s.logs.get(&r.row.func) {
                    // A log probe's call is its message.
                    Line::from(Span::raw(t.render(c)))
                } else {
                    let mut line = named_first(s, r.row.func, c.args.as_deref());
                    line.spans.extend(
                        values_line(
                            c.args
                                .as_deref()
                                .map(|a| &a[receivers(s, r.row.at).min(a.len())..]),
                            false,
                        )
                        .spans,
                    );
                    line
                }),
                Cell::from(if s.logs.contains_key(&r.row.func) {
                    Line::default()
                } else {
                    values_line(c.ret.as_deref(), true)
                }),
                Cell::from(c.latency_ns.map(fmt_ns).unwrap_or_default()),
            ];
            if pid_width.is_some() {
                cells.insert(1, Cell::from(c.pid.to_string()));
            }
            let mut row = Row::new(cells);
            if s.ev_sel.is_some() && start + i == sel {
                row = row.style(Style::new().add_modifier(Modifier::REVERSED));
            }
            row
        })
        .collect();
    let all_logs = !visible.is_empty() && visible.iter().all(|r| s.logs.contains_key(&r.row.func));
    let values = if all_logs { "MESSAGE" } else { "ARGUMENTS" };
    let mut names = vec!["TIME", "G", "FUNCTION", values, "RESULTS", "LATENCY"];
    if pid_width.is_some() {
        names.insert(1, "PID");
    }
    let header = Row::new(names).style(Style::new().add_modifier(Modifier::BOLD));
    // (A log probe's results are in its message.)
    let any_results = visible
        .iter()
        .any(|r| r.row.call.ret.is_some() && !s.logs.contains_key(&r.row.func));
    let mut widths = vec![
        Constraint::Length(time_width),
        Constraint::Length(g_width),
        Constraint::Length(name_width),
        Constraint::Fill(3),
        Constraint::Fill(if any_results { 2 } else { 0 }),
        Constraint::Length(9),
    ];
    if let Some(w) = pid_width {
        widths.insert(1, Constraint::Length(w));
    }
    let table = Table::new(rows, widths).header(header).column_spacing(1);
    f.render_widget(table, inner);
    if shown.is_empty() {
        // A probe of latency alone makes no rows: its calls fill the latency pane.
        let rows_made = s.probes.values().any(|p| p.args || p.ret || p.stack);
        let hint = if s.probes.is_empty() {
            "no probes yet: select a function and press a (arguments), r (results) or l (latency)"
        } else if !rows_made {
            "latency only: calls are counted in the latency pane, not listed here (a adds rows with arguments, r with results)"
        } else {
            "waiting for calls…"
        };
        let area = Rect {
            y: inner.y + 1,
            height: 1,
            ..inner
        };
        f.render_widget(Line::styled(hint, dim), area);
    }
}

/// 1 when the function is a method whose first argument is its receiver: the table
/// leaves it out (the row names the type; Enter shows it), so the arguments that
/// change from call to call fit.
fn receivers(s: &State, func: usize) -> usize {
    let f = &s.cat.functions[func];
    let pkg = symbols::catalog::package_of(&f.name);
    let Some(rest) = f.name.get(pkg.len() + 1..) else {
        return 0;
    };
    let Some((ty, _method)) = rest.rsplit_once('.') else {
        return 0;
    };
    let ty = ty.trim_start_matches("(*").trim_end_matches(')');
    let first = f.params.as_deref().and_then(|p| p.first());
    usize::from(first.is_some_and(|p| {
        p.type_name.trim_start_matches('*') == format!("{pkg}.{ty}") && !p.is_internal()
    }))
}

/// `name` in `width` columns: cut from the left when longer, so that the method or
/// function (the part that tells rows apart) stays: `…(*webInterface).render`.
pub fn fit_left(name: &str, width: usize) -> String {
    let n = name.chars().count();
    if n <= width || width == 0 {
        return name.to_string();
    }
    let tail: String = name.chars().skip(n - (width - 1)).collect();
    format!("…{tail}")
}

/// A name shortened from the left, keeping the last element of its package path:
/// `cmd/vendor/github.com/google/pprof/internal/driver.(*webInterface).render` →
/// `driver.(*webInterface).render`, and `main.(*Store).Login` → `(*Store).Login`
/// (the package of most rows). Full names are in the details pane and the popup.
pub fn short(name: &str) -> &str {
    match name.strip_prefix("main.") {
        Some(rest) if symbols::catalog::package_of(name) == "main" => rest,
        _ => symbols::catalog::short_name(name),
    }
}

/// The values the probe's capture paths name (`C`: `req.RequestURI`), first in the
/// row: they are what the user asked to see, and the arguments that hold them can be
/// wider than the column.
fn named_first(s: &State, func: usize, args: Option<&[(Name, GoValue)]>) -> Line<'static> {
    let (Some(spec), Some(args)) = (s.probes.get(&func), args) else {
        return Line::default();
    };
    let mut spans = Vec::new();
    for path in &spec.paths {
        let mut parts = path.split('.').map(str::trim);
        let root = parts.next().unwrap_or("");
        let mut v = args.iter().find(|(n, _)| &**n == root).map(|(_, v)| v);
        for field in parts {
            v = match v {
                Some(GoValue::Struct(fs)) => fs.iter().find(|(n, _)| &**n == field).map(|(_, v)| v),
                _ => None,
            };
        }
        if let Some(v) = v {
            spans.push(Span::styled(
                format!("{path}="),
                Style::new().fg(Color::Cyan),
            ));
            spans.push(Span::styled(
                v.render_depth(1),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ));
            spans.push(Span::raw(" "));
        }
    }
    Line::from(spans)
}

fn values_line(vs: Option<&[(Name, GoValue)]>, results: bool) -> Line<'static> {
    let Some(vs) = vs else {
        return Line::default();
    };
    let mut spans = Vec::new();
    for (i, (k, v)) in vs.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(format!("{k}="), Style::new().fg(Color::Cyan)));
        let style = match v {
            // A non-nil interface among results is almost always an error.
            GoValue::Iface { .. } if results => Style::new().fg(Color::Red),
            GoValue::Str { .. } => Style::new().fg(Color::Yellow),
            GoValue::NotCaptured(_) | GoValue::Fault(_) => Style::new().fg(Color::DarkGray),
            _ => Style::new(),
        };
        spans.push(Span::styled(v.render_depth(1), style));
    }
    Line::from(spans)
}

/// `HH:MM:SS.mmm` (UTC) of a kernel monotonic timestamp.
pub fn clock(ts_ns: u64, offset_ns: i64) -> String {
    crate::format::wall_clock(ts_ns, offset_ns, 3)
}
