//! The latency pane: a log-scaled histogram of one probe's latencies, its percentiles,
//! and calls per second over the last minute.
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::pane_block;
use crate::app::state::{Pane, ProbeView, State};
use crate::app::view::events::short;
use crate::format::fmt_ns;

pub fn pane(f: &mut Frame, area: Rect, s: &State) {
    let probes = s.latency_probes();
    let mut title = vec![Span::raw(" Latency ")];
    for &p in &probes {
        let style = if Some(p) == s.lat_sel {
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        } else {
            Style::new().fg(Color::DarkGray)
        };
        // The histogram counts only the calls its condition keeps: say which.
        let cond = s
            .probes
            .get(&p)
            .and_then(|p| p.condition.as_deref())
            .filter(|_| Some(p) == s.lat_sel)
            .map(|c| format!("if {c} "))
            .unwrap_or_default();
        title.push(Span::styled(
            format!(" {} {cond}", short(s.fn_name(p))),
            style,
        ));
        title.push(Span::raw(" "));
    }
    let block = pane_block("", s.focus == Pane::Latency).title(Line::from(title));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(func) = s.lat_sel else {
        let hint = "no latency probe: select a function and press l";
        f.render_widget(Line::styled(hint, Style::new().fg(Color::DarkGray)), inner);
        return;
    };
    let empty = ProbeView::default();
    let v = s.views.get(&func).unwrap_or(&empty);
    let by = s.probes.get(&func).and_then(|p| p.by.as_deref());
    // Narrow (80 columns): columns of a dozen characters cut every label and bar
    // ("tmpl =tmpl = tmpl =count 229"); a table of every value, the whole pane wide,
    // under a row for all the calls, reads better.
    if !v.split.is_empty() && (inner.width as usize) < 30 * v.split.len().min(4) + 30 {
        split_table(f, inner, &v.buckets, &v.split, by);
        return;
    }
    let [bars, side] =
        Layout::horizontal([Constraint::Fill(3), Constraint::Length(30)]).areas(inner);
    if v.split.is_empty() {
        f.render_widget(Paragraph::new(histogram_lines(&v.buckets, bars)), bars);
    } else {
        split(f, bars, &v.split, by);
    }
    let [stats, spark_title, spark] = Layout::vertical([
        Constraint::Length(8),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(side);
    let mut lines = stats_lines(&v.buckets);
    if let Some(hc) = s.hit_cost {
        // The probe's own time inside each latency, already subtracted (calibrated).
        let stepped = s.cat.functions[func]
            .probes
            .as_ref()
            .is_some_and(|p| p.entry_kind.is_expensive());
        let floor = if stepped {
            hc.latency_floor_stepped_ns
        } else {
            hc.latency_floor_ns
        };
        lines.push(Line::styled(
            format!("floor ~{} (subtracted)", fmt_ns(floor as u64)),
            Style::new().fg(Color::DarkGray),
        ));
    }
    f.render_widget(Paragraph::new(lines), stats);
    let now = v.rates.back().copied().unwrap_or(0);
    f.render_widget(
        Line::styled(
            format!("calls/s {now} (last 60 s)"),
            Style::new().fg(Color::DarkGray),
        ),
        spark_title,
    );
    let data: Vec<u64> = v.rates.iter().copied().collect();
    f.render_widget(
        Sparkline::default()
            .data(&data)
            .style(Style::new().fg(Color::Cyan)),
        spark,
    );
}

/// Histograms side by side, one per value of `--by` (the four busiest), each under
/// its value, count and percentiles.
fn split(f: &mut Frame, area: Rect, split: &[(String, Vec<u64>)], expr: Option<&str>) {
    let shown = &split[..split.len().min(4)];
    let cols = Layout::horizontal(vec![Constraint::Fill(1); shown.len()]).split(area);
    for ((value, buckets), col) in shown.iter().zip(cols.iter()) {
        let h = probes_ebpf::hist::to_hdr(buckets);
        let q = |x: f64| crate::histogram::fmt_latency(h.value_at_quantile(x), buckets);
        let mut lines = vec![
            Line::styled(
                format!("{} = {value}", expr.unwrap_or("by")),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Line::styled(
                format!("{} calls p50 {} p99 {}", h.len(), q(0.5), q(0.99)),
                Style::new().fg(Color::DarkGray),
            ),
        ];
        let inner = Rect {
            y: col.y + 2,
            height: col.height.saturating_sub(2),
            ..*col
        };
        lines.extend(histogram_lines(buckets, inner));
        f.render_widget(Paragraph::new(lines), *col);
    }
}

/// `split` as a table: a row for all the calls (`all`), then one per value (the
/// busiest first), with calls and percentiles.
fn split_table(
    f: &mut Frame,
    area: Rect,
    all: &[u64],
    split: &[(String, Vec<u64>)],
    expr: Option<&str>,
) {
    let figures = 8 + 2 * 10;
    let name_w = (area.width as usize).saturating_sub(figures).clamp(6, 40);
    let cut = |s: &str| {
        if s.chars().count() <= name_w {
            format!("{s:<name_w$}")
        } else {
            let mut c: String = s.chars().take(name_w - 1).collect();
            c.push('…');
            c
        }
    };
    let mut lines = vec![Line::styled(
        format!(
            "{}{:>8}{:>10}{:>10}",
            cut(expr.unwrap_or("by")),
            "calls",
            "p50",
            "p99"
        ),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let rows =
        std::iter::once(("all", all)).chain(split.iter().map(|(v, b)| (v.as_str(), b.as_slice())));
    for (value, buckets) in rows.take(area.height.saturating_sub(1) as usize) {
        let h = probes_ebpf::hist::to_hdr(buckets);
        let q = |x: f64| crate::histogram::fmt_latency(h.value_at_quantile(x), buckets);
        let name = if value == "all" {
            Span::styled(cut("all"), Style::new().fg(Color::DarkGray))
        } else {
            Span::raw(cut(value))
        };
        lines.push(Line::from(vec![
            name,
            Span::styled(
                format!("{:>8}{:>10}{:>10}", h.len(), q(0.5), q(0.99)),
                Style::new().fg(Color::DarkGray),
            ),
        ]));
    }
    f.render_widget(Paragraph::new(lines), area);
}

fn stats_lines(buckets: &[u64]) -> Vec<Line<'static>> {
    let h = probes_ebpf::hist::to_hdr(buckets);
    if h.is_empty() {
        return vec![Line::styled(
            "no completed calls yet",
            Style::new().fg(Color::DarkGray),
        )];
    }
    let row = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<6}"), Style::new().fg(Color::DarkGray)),
            Span::styled(v, Style::new().add_modifier(Modifier::BOLD)),
        ])
    };
    let q = |x: f64| crate::histogram::fmt_latency(h.value_at_quantile(x), buckets);
    vec![
        row("count", h.len().to_string()),
        row("p50", q(0.5)),
        row("p90", q(0.9)),
        row("p99", q(0.99)),
        row("p99.9", q(0.999)),
        row("max", crate::histogram::fmt_latency(h.max(), buckets)),
    ]
}

/// One bar per row of `histogram::rows`, as long as the pane allows.
fn histogram_lines(buckets: &[u64], area: Rect) -> Vec<Line<'static>> {
    let rows = crate::histogram::rows(buckets, (area.height as usize).max(1));
    let max = rows.iter().map(|r| r.count).max().unwrap_or(1).max(1);
    let bar_w = (area.width as usize).saturating_sub(28).max(1);
    rows.into_iter()
        .map(|r| {
            let len = ((r.count as f64 / max as f64) * bar_w as f64).ceil() as usize;
            Line::from(vec![
                Span::styled(
                    if r.below_floor() {
                        format!("{:>17} ", "below floor")
                    } else {
                        format!("{:>8}–{:<8} ", fmt_ns(r.lo), fmt_ns(r.hi))
                    },
                    Style::new().fg(Color::DarkGray),
                ),
                Span::styled("█".repeat(len.min(bar_w)), Style::new().fg(Color::Magenta)),
                Span::raw(format!(" {}", r.count)),
            ])
        })
        .collect()
}
