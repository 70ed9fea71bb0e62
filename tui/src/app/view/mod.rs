//! Drawing: reads `State`, never changes it. Scroll offsets, which only the view needs,
//! live in `ViewCache`.
pub mod events;
mod functions;
mod latency;
mod popups;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};

use super::state::{Mode, State};

pub use events::{clock, short};

#[derive(Debug, Default)]
pub struct ViewCache {
    pub fn_offset: usize,
    pub ev_offset: usize,
}

pub fn draw(f: &mut Frame, s: &State, cache: &mut ViewCache) {
    let [main, status, message] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(36), Constraint::Fill(1)]).areas(main);
    // (Taller by the lines of a program's processes, the list keeping most of it.)
    let details_height = 11 + functions::process_lines(s).min(left.height / 4);
    let [list, details] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(details_height)]).areas(left);
    let [table, lat] =
        Layout::vertical([Constraint::Percentage(58), Constraint::Fill(1)]).areas(right);
    functions::list(f, list, s, cache);
    functions::details(f, details, s);
    events::table(f, table, s, cache);
    latency::pane(f, lat, s);
    status_bar(f, status, s);
    message_line(f, message, s);
    popups::draw(f, s);
}

pub(crate) fn pane_block(title: &str, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::Gray)
    };
    Block::new()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(style)
        .title(Span::styled(title.to_string(), style))
}

/// The slice `[start, end)` of `len` rows to show in `height` lines so that `sel` is
/// visible, moving the remembered offset as little as possible.
pub(crate) fn window(offset: &mut usize, sel: usize, len: usize, height: usize) -> (usize, usize) {
    if height == 0 || len == 0 {
        return (0, 0);
    }
    if sel < *offset {
        *offset = sel;
    } else if sel >= *offset + height {
        *offset = sel + 1 - height;
    }
    *offset = (*offset).min(len.saturating_sub(height));
    (*offset, (*offset + height).min(len))
}

fn status_bar(f: &mut Frame, area: Rect, s: &State) {
    let (mut lost, mut filtered, mut overhead) = (0, 0, None::<f64>);
    // The smallest share observed, and whether it is an upper bound (over a lower bound
    // of the calls not seen).
    let mut observed = None::<(f64, bool)>;
    for v in s.views.values() {
        lost += v.stats.lost;
        filtered += v.stats.filtered;
        // The last second's cost where the budget measured it, else since attach.
        let watch = v.cost.and_then(|c| c.watch);
        if let Some(p) = watch
            .and_then(|w| w.recent_pct)
            .or(v.cost.and_then(|c| c.overhead_pct))
        {
            *overhead.get_or_insert(0.0) += p;
        }
        if let Some(w) = watch.filter(|w| w.observed_pct < 99.95)
            && observed.is_none_or(|(o, _)| w.observed_pct < o)
        {
            observed = Some((w.observed_pct, w.unseen_at_least));
        }
    }
    let key = Style::new().fg(Color::Black).bg(Color::Cyan);
    let item = Style::new().fg(Color::White).bg(Color::DarkGray);
    // (priority, item): where the bar is too narrow (80 columns), the items of lowest
    // priority go first, so that what says whether to trust the numbers (the target's
    // state, the cost against the budget, the share observed, losses) always shows.
    let mut spans: Vec<(u8, Span)> = vec![
        (
            9,
            Span::styled(" periscope ", key.add_modifier(Modifier::BOLD)),
        ),
        (
            4,
            Span::styled(
                match &s.program {
                    Some(p) => format!(" {p} "),
                    None => format!(" pid {} ", s.pid),
                },
                item,
            ),
        ),
        (2, Span::styled(format!(" {} ", s.binary), item)),
        (1, Span::styled(format!(" {} ", s.cat.go_version), item)),
    ];
    if !s.cat.has_dwarf {
        spans.push((
            7,
            Span::styled(
                " no DWARF: raw argument words ",
                Style::new().fg(Color::Black).bg(Color::Yellow),
            ),
        ));
    }
    spans.extend([
        (
            5,
            Span::styled(format!(" {} probes ", s.probes.len()), item),
        ),
        (
            3,
            Span::styled(format!(" {} ev/s ", s.events_per_sec), item),
        ),
        if lost > 0 {
            (
                8,
                Span::styled(
                    format!(" lost {lost} "),
                    Style::new().fg(Color::White).bg(Color::Red),
                ),
            )
        } else {
            (3, Span::styled(format!(" lost {lost} "), item))
        },
        (2, Span::styled(format!(" filtered {filtered} "), item)),
    ]);
    if let Some(p) = overhead {
        // The probes' share of the target's CPU, all together, against the budget.
        let limit = s.budget.unwrap_or(5.0);
        spans.push((
            8,
            Span::styled(
                format!(
                    " cost {p:.1}% CPU / budget {} ",
                    crate::budget::describe(s.budget)
                ),
                if p > limit {
                    Style::new().fg(Color::White).bg(Color::Red)
                } else {
                    item
                },
            ),
        ));
    }
    if let Some((o, at_most)) = observed {
        // The budget has some probe's points in windows: not every call is seen whole.
        spans.push((
            8,
            Span::styled(
                format!(
                    " observed {}{} ",
                    if at_most { "≤" } else { "" },
                    crate::format::pct1(o)
                ),
                Style::new().fg(Color::Black).bg(Color::Yellow),
            ),
        ));
    }
    if s.target_exited {
        spans.push((
            9,
            Span::styled(
                " TARGET EXITED ",
                Style::new().fg(Color::White).bg(Color::Red),
            ),
        ));
    }
    spans.push((1, Span::styled(" ? keys ", item)));
    let width = |spans: &[(u8, Span)]| spans.iter().map(|(_, s)| s.width()).sum::<usize>();
    while width(&spans) > area.width as usize {
        let Some(lowest) = spans
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| *p < 9)
            .min_by_key(|(i, (p, _))| (*p, std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
        else {
            break;
        };
        spans.remove(lowest);
    }
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
    f.render_widget(Line::from(spans).style(item), area);
}

fn message_line(f: &mut Frame, area: Rect, s: &State) {
    if let Some((text, cursor)) = functions::search_line(s) {
        f.render_widget(Line::raw(text), area);
        f.set_cursor_position(Position::new(area.x + cursor as u16, area.y));
        return;
    }
    if let Some((msg, is_err)) = &s.message {
        let style = if *is_err {
            Style::new().fg(Color::Red)
        } else {
            Style::new().fg(Color::Green)
        };
        f.render_widget(Line::styled(msg.clone(), style), area);
    } else if matches!(s.mode, Mode::Normal) {
        let hint =
            "Tab pane · / search · a args · r results · l latency · c condition · ? keys · q quit";
        f.render_widget(Line::styled(hint, Style::new().fg(Color::DarkGray)), area);
    }
}

pub(crate) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

pub(crate) fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

pub(crate) fn line_of(parts: Vec<(String, Style)>) -> Line<'static> {
    Line::from(
        parts
            .into_iter()
            .map(|(t, st)| Span::styled(t, st))
            .collect::<Vec<_>>(),
    )
}
