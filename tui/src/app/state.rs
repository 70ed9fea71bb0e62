//! Everything the TUI shows, as plain data. `update` changes it; `view` only reads it.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use probes_ebpf::Stats;
use symbols::Catalog;

use crate::session::{ProbeSpec, Row};

/// Rows kept for the events table; older ones are dropped (and counted).
pub const MAX_ROWS: usize = 20_000;
/// Seconds of calls-per-second history behind each sparkline.
pub const RATE_HISTORY: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Functions,
    Events,
    Latency,
}

impl Pane {
    pub fn next(self) -> Pane {
        match self {
            Pane::Functions => Pane::Events,
            Pane::Events => Pane::Latency,
            Pane::Latency => Pane::Functions,
        }
    }
}

/// A line being edited, with the cursor as a char index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    pub text: String,
    pub cursor: usize,
}

impl Input {
    pub fn new(text: &str) -> Input {
        Input {
            text: text.into(),
            cursor: text.chars().count(),
        }
    }

    fn byte(&self, char_idx: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_idx)
            .map_or(self.text.len(), |(b, _)| b)
    }

    pub fn insert(&mut self, c: char) {
        let at = self.byte(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    pub fn insert_str(&mut self, s: &str) {
        let at = self.byte(self.cursor);
        self.text.insert_str(at, s);
        self.cursor += s.chars().count();
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte(self.cursor);
            self.text.remove(at);
        }
    }

    pub fn delete(&mut self) {
        if self.cursor < self.text.chars().count() {
            let at = self.byte(self.cursor);
            self.text.remove(at);
        }
    }

    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Ctrl-U: the text before the cursor goes.
    pub fn kill_head(&mut self) {
        let at = self.byte(self.cursor);
        self.text.replace_range(..at, "");
        self.cursor = 0;
    }

    /// Ctrl-K: the text from the cursor on goes.
    pub fn kill_tail(&mut self) {
        let at = self.byte(self.cursor);
        self.text.truncate(at);
    }

    /// Ctrl-W: the word before the cursor goes (and the spaces after it).
    pub fn kill_word(&mut self) {
        let chars: Vec<char> = self.text.chars().collect();
        let mut start = self.cursor;
        while start > 0 && chars[start - 1] == ' ' {
            start -= 1;
        }
        while start > 0 && chars[start - 1] != ' ' {
            start -= 1;
        }
        let (a, b) = (self.byte(start), self.byte(self.cursor));
        self.text.replace_range(a..b, "");
        self.cursor = start;
    }

    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.chars().count());
    }

    /// The text before the cursor.
    pub fn head(&self) -> &str {
        &self.text[..self.byte(self.cursor)]
    }
}

/// What the editor edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Editing {
    /// `if …`: evaluated in the kernel.
    Condition,
    /// `--capture`: paths read before anything else, comma-separated.
    Capture,
    /// `--by`: an expression to split the latency histogram by.
    By,
    /// `--log`: a message template, each call shown as its message.
    Log,
}

/// A modal line or popup on top of the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// `/`: the fuzzy filter of the function list.
    Search(Input),
    /// `c`: the condition of the probe on `func`, checked as it is typed.
    /// `c` / `C`: the editor of a probe's condition, or of the paths it captures first.
    Condition {
        func: usize,
        what: Editing,
        input: Input,
        /// (1-based column in the condition, message).
        error: Option<(usize, String)>,
        completions: Vec<String>,
    },
    /// `n`: keep one call in N.
    Sample {
        func: usize,
        input: Input,
    },
    /// `b`: the budget.
    Budget {
        input: Input,
    },
    Help {
        scroll: u16,
    },
    /// Enter on the events table: one call in full.
    Detail {
        seq: u64,
        /// Lines scrolled down (j/k, PgUp/PgDn, g/G).
        scroll: u16,
    },
    /// `T`: a probe's top call paths, by calls and by total latency.
    Callers {
        func: usize,
    },
}

/// A row of the events table.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: u64,
    pub row: Row,
}

/// Latency and counters of one probe, refreshed every second.
#[derive(Debug, Clone, Default)]
pub struct ProbeView {
    pub stats: Stats,
    pub cost: Option<crate::session::ProbeCost>,
    pub buckets: Vec<u64>,
    /// Calls per second (hits), oldest first.
    pub rates: VecDeque<u64>,
    /// Where the probe sits, and why there.
    pub points: Option<String>,
    /// `--by`: each value's latency buckets, the busiest first.
    pub split: Vec<(String, Vec<u64>)>,
    /// The probe in each process, for a program of several.
    pub processes: Vec<crate::per_process::InProcess>,
}

pub struct State {
    pub cat: Arc<Catalog>,
    pub pid: u32,
    pub binary: String,
    /// The executable's path, for a probe file (`W`).
    pub exe_path: String,
    /// The target of a program of several processes (`3 process(es) of /usr/bin/shop`):
    /// the status bar says it, and the events table has a PID column.
    pub program: Option<String>,
    pub focus: Pane,
    pub mode: Mode,
    /// The function list: indices into `cat.functions`, filtered and ordered.
    pub visible: Vec<usize>,
    pub filter: String,
    pub show_std: bool,
    /// The search found nothing in the program's own code and lists every function.
    pub widened: bool,
    /// Index into `visible`.
    pub fn_sel: usize,
    /// Active probes by function.
    pub probes: BTreeMap<usize, ProbeSpec>,
    pub views: HashMap<usize, ProbeView>,
    pub rows: VecDeque<EventRow>,
    pub next_seq: u64,
    pub dropped_rows: u64,
    /// `Some(seq)`: the table is paused and shows only rows before `seq`.
    pub paused_at: Option<u64>,
    /// `Some(seq)`: the user scrolled to this row; `None`: follow the newest.
    pub ev_sel: Option<u64>,
    /// Show only this function's calls.
    pub ev_filter: Option<usize>,
    /// The probe the latency pane shows.
    pub lat_sel: Option<usize>,
    pub events_per_sec: u64,
    pub rows_this_second: u64,
    pub message: Option<(String, bool)>,
    pub target_exited: bool,
    /// What a probe hit costs on this machine (measured at start-up), when known.
    /// The share of the target's CPU the probes may take, in % (None: no limit).
    pub budget: Option<f64>,
    pub hit_cost: Option<probes_ebpf::HitCost>,
    /// What became of the target ("pid N exited"), once it is gone.
    pub target_gone: Option<String>,
    pub quit: bool,
    /// Wall-clock time minus the kernel's monotonic clock, to show event times.
    pub clock_offset_ns: i64,
    /// What removed probes were asked beyond what they captured (a condition, paths),
    /// to start from when the function is probed again.
    pub kept: HashMap<usize, ProbeSpec>,
    /// Log probes' templates, by function: their rows show the message.
    pub logs: HashMap<usize, crate::template::Template>,
    /// OSC 52 text for the terminal's clipboard, written before the next frame.
    pub clipboard: Option<String>,
    /// Where `w` writes (the directory periscope was started in).
    pub save_dir: std::path::PathBuf,
    /// Each stack-recording probe's call paths seen so far (see `CallPath`), by the
    /// address of their shared frames (the session symbolizes each stack once).
    pub paths: HashMap<usize, HashMap<usize, CallPath>>,
}

/// A call path of a probe (its callers, innermost first) and what went through it.
#[derive(Debug, Clone)]
pub struct CallPath {
    pub frames: Arc<crate::stack::Stack>,
    pub calls: u64,
    /// Latency of the calls that had one, summed.
    pub total_ns: u64,
}

impl State {
    pub fn new(cat: Arc<Catalog>, pid: u32, binary: String) -> State {
        let mut s = State {
            cat,
            pid,
            binary,
            program: None,
            focus: Pane::Functions,
            mode: Mode::Normal,
            visible: Vec::new(),
            filter: String::new(),
            show_std: false,
            widened: false,
            fn_sel: 0,
            probes: BTreeMap::new(),
            views: HashMap::new(),
            rows: VecDeque::new(),
            next_seq: 0,
            dropped_rows: 0,
            paused_at: None,
            ev_sel: None,
            ev_filter: None,
            lat_sel: None,
            events_per_sec: 0,
            rows_this_second: 0,
            message: None,
            target_exited: false,
            hit_cost: None,
            budget: Some(crate::budget::DEFAULT_PCT),
            target_gone: None,
            quit: false,
            clock_offset_ns: 0,
            kept: HashMap::new(),
            logs: HashMap::new(),
            clipboard: None,
            save_dir: std::path::PathBuf::from("."),
            exe_path: String::new(),
            paths: HashMap::new(),
        };
        s.refilter();
        s
    }

    /// The catalog index of the selected function.
    pub fn selected_fn(&self) -> Option<usize> {
        self.visible.get(self.fn_sel).copied()
    }

    /// Recomputes the function list from the filter and the std toggle, keeping the
    /// selected function selected when it is still listed.
    pub fn refilter(&mut self) {
        let keep = self.selected_fn();
        self.visible = crate::app::search::filter(&self.cat, &self.filter, self.show_std);
        // A name the user typed that is not in their own code (a standard library
        // function, a vendored package) is still what they are looking for.
        self.widened = false;
        if self.visible.is_empty() && !self.show_std && !self.filter.trim().is_empty() {
            self.visible = crate::app::search::filter(&self.cat, &self.filter, true);
            self.widened = true;
        }
        self.fn_sel = keep
            .and_then(|k| self.visible.iter().position(|&i| i == k))
            .unwrap_or(0);
    }

    /// Rows the table can show now: paused and filtered. Newest last.
    pub fn shown_rows(&self) -> impl DoubleEndedIterator<Item = &EventRow> {
        self.rows.iter().filter(move |r| {
            self.paused_at.is_none_or(|p| r.seq < p)
                && self.ev_filter.is_none_or(|f| r.row.func == f)
        })
    }

    pub fn row(&self, seq: u64) -> Option<&EventRow> {
        let first = self.rows.front()?.seq;
        self.rows
            .get(seq.checked_sub(first)? as usize)
            .filter(|r| r.seq == seq)
    }

    /// Probes that record latency, in function order.
    pub fn latency_probes(&self) -> Vec<usize> {
        self.probes
            .iter()
            .filter(|(_, s)| s.latency)
            .map(|(&f, _)| f)
            .collect()
    }

    pub fn fn_name(&self, func: usize) -> &str {
        &self.cat.functions[func].name
    }

    pub fn info(&mut self, msg: impl Into<String>) {
        self.message = Some((msg.into(), false));
    }

    pub fn error(&mut self, msg: impl Into<String>) {
        self.message = Some((msg.into(), true));
    }
}
