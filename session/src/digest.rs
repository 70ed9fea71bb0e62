//! What the budget does, in lines a person can follow: the governor notes every change
//! of every probe (the JSON stream and the TUI's details pane keep them all), which on a
//! busy target is several lines a second. People get one line for the state of all the
//! probes together, when it changed, and at most one every QUIET; notes about the budget
//! as a whole (the hard cap, the prices) pass as they come (the governor spaces them).
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::budget::Mode;
use crate::governor::Note;

/// The shortest time between two summary lines.
pub const QUIET: Duration = Duration::from_secs(5);
/// Probes named in a summary line; the rest are counted.
const NAMED: usize = 4;

#[derive(Default)]
pub struct Digest {
    /// Each probe's latest note, by function.
    probes: BTreeMap<String, Note>,
    /// The latest note on rows (periscope's own work).
    rows: Option<Note>,
    budget: Option<f64>,
    changed: bool,
    last_said: Option<Instant>,
    /// The last summary said (the same state is not said twice).
    said: String,
}

impl Digest {
    pub fn new() -> Digest {
        Digest::default()
    }

    /// Takes the governor's notes; returns the lines to show now.
    pub fn push(&mut self, notes: Vec<Note>, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for n in notes {
            self.budget = n.budget_pct;
            match (&n.func, n.mode) {
                (Some(f), _) => {
                    self.probes.insert(f.clone(), n);
                    self.changed = true;
                }
                (None, Mode::Rows) => {
                    self.rows = Some(n);
                    self.changed = true;
                }
                (None, _) => out.push(n.text),
            }
        }
        out.extend(self.poll(now));
        out
    }

    /// The summary, when the state changed and the last one is QUIET old.
    pub fn poll(&mut self, now: Instant) -> Option<String> {
        if !self.changed
            || self
                .last_said
                .is_some_and(|t| now.duration_since(t) < QUIET)
        {
            return None;
        }
        self.changed = false;
        let line = self.summary();
        if line == self.said {
            return None;
        }
        self.last_said = Some(now);
        self.said = line.clone();
        Some(line)
    }

    fn summary(&self) -> String {
        let b = crate::budget::describe(self.budget);
        // One probe: its own note says it best.
        if let ([(_, n)], None) = (&self.probes.iter().collect::<Vec<_>>()[..], &self.rows) {
            return n.text.clone();
        }
        let mut windowed = Vec::new();
        let mut off = Vec::new();
        for (f, n) in &self.probes {
            match n.mode {
                Mode::Windowed => windowed.push((f, n.watch_pct)),
                Mode::Off => off.push(f),
                _ => {}
            }
        }
        windowed.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut parts = Vec::new();
        if !windowed.is_empty() {
            let named: Vec<String> = windowed
                .iter()
                .take(NAMED)
                .map(|(f, w)| format!("{f} {}", crate::format::pct1(*w)))
                .collect();
            parts.push(format!(
                "watched part of the time: {}{}",
                named.join(", "),
                more(windowed.len())
            ));
        }
        if !off.is_empty() {
            let named: Vec<&str> = off.iter().take(NAMED).map(|f| f.as_str()).collect();
            parts.push(format!(
                "detached (a short window every 20 s): {}{}",
                named.join(", "),
                more(off.len())
            ));
        }
        let rows = self
            .rows
            .as_ref()
            .filter(|r| r.watch_pct > 0.0 && r.watch_pct < 100.0)
            .map(|r| format!("rows: 1 call in {:.0}", 100.0 / r.watch_pct));
        if parts.is_empty() {
            let all = format!("budget {b}: every probe has every point attached");
            return match rows {
                Some(r) => format!("{all}; {r}"),
                None => all,
            };
        }
        parts.extend(rows);
        format!(
            "budget {b}: {}; calls in between are seen at their entry only, or estimated (per probe: --json, the TUI's details pane)",
            parts.join("; ")
        )
    }
}

fn more(n: usize) -> String {
    if n > NAMED {
        format!(" and {} more", n - NAMED)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(func: &str, mode: Mode, watch: f64) -> Note {
        Note {
            func: Some(func.into()),
            mode,
            watch_pct: watch,
            full_pct: Some(40.0),
            budget_pct: Some(5.0),
            text: format!("budget 5%: {func}: …"),
        }
    }

    #[test]
    fn many_notes_make_one_line_and_then_quiet() {
        let mut d = Digest::new();
        let t0 = Instant::now();
        let lines = d.push(
            vec![
                note("main.A", Mode::Windowed, 2.0),
                note("main.B", Mode::Off, 0.0),
                note("main.C", Mode::Full, 100.0),
            ],
            t0,
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("main.A 2.0%")
                && lines[0].contains("detached (a short window every 20 s): main.B"),
            "{}",
            lines[0]
        );
        assert!(!lines[0].contains("main.C"));
        // Changes within QUIET wait, and come out once after it.
        assert!(
            d.push(
                vec![note("main.A", Mode::Windowed, 9.0)],
                t0 + Duration::from_secs(1)
            )
            .is_empty()
        );
        assert!(
            d.push(
                vec![note("main.A", Mode::Windowed, 3.0)],
                t0 + Duration::from_secs(2)
            )
            .is_empty()
        );
        let later = d
            .poll(t0 + QUIET)
            .expect("the change, after the quiet time");
        assert!(later.contains("main.A 3.0%"), "{later}");
        assert_eq!(d.poll(t0 + QUIET * 3), None);
    }

    #[test]
    fn notes_on_the_whole_budget_pass_at_once_and_the_same_state_is_not_said_twice() {
        let mut d = Digest::new();
        let t0 = Instant::now();
        let cap = Note {
            func: None,
            mode: Mode::Capped,
            watch_pct: 0.0,
            full_pct: None,
            budget_pct: Some(5.0),
            text: "budget 5%: the probes spent this second's budget".into(),
        };
        assert_eq!(d.push(vec![cap.clone()], t0), vec![cap.text.clone()]);
        assert_eq!(d.push(vec![note("main.A", Mode::Full, 100.0)], t0).len(), 1);
        assert!(
            d.push(vec![note("main.A", Mode::Full, 100.0)], t0 + QUIET * 2)
                .is_empty()
        );
    }

    #[test]
    fn one_probe_is_said_in_its_own_words() {
        let mut d = Digest::new();
        let n = note("main.A", Mode::Windowed, 2.0);
        assert_eq!(d.push(vec![n.clone()], Instant::now()), vec![n.text]);
    }

    #[test]
    fn rows_sampling_is_part_of_the_line() {
        let mut d = Digest::new();
        let rows = Note {
            func: None,
            mode: Mode::Rows,
            full_pct: None,
            budget_pct: Some(5.0),
            watch_pct: 100.0 / 8.0,
            text: "budget 5%: periscope's own work on rows took 27% …".into(),
        };
        let lines = d.push(
            vec![rows, note("main.A", Mode::Windowed, 2.0)],
            Instant::now(),
        );
        assert!(lines[0].contains("rows: 1 call in 8"), "{lines:?}");
    }
}
