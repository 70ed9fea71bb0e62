//! What can happen to the TUI (`Action`) and what it asks the outside world to do
//! (`Effect`). Keys, probe events and timer samples all arrive as actions.
use crossterm::event::KeyEvent;
use probes_ebpf::Stats;

use crate::session::{ProbeCost, ProbeSpec, Row, SetError, SetOk};

// `Applied` is the large one (a probe's spec and its outcome) and comes once a
// keypress; boxing it would only add an allocation to the rare case.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Action {
    Key(KeyEvent),
    /// Calls decoded from the ring buffer since the last batch.
    Events(Vec<Row>),
    /// Once a second: each active probe's counters and latency buckets.
    Sample(Vec<ProbeSample>),
    /// The answer to `Effect::Set`.
    Applied {
        func: usize,
        settings: ProbeSpec,
        result: Result<SetOk, SetError>,
    },
    /// The target exited or exec'd another program: what became of it.
    TargetExited(String),
    /// The budget now in force (the answer to `Effect::SetBudget`).
    BudgetSet(Option<f64>),
    /// A change in what the budget does with a probe, in words.
    BudgetNote(String),
    /// Something periscope must warn of (its keeper process died and was replaced).
    Warning(String),
    Quit,
}

#[derive(Debug, Clone)]
pub struct ProbeSample {
    pub func: usize,
    pub stats: Stats,
    pub buckets: Option<Vec<u64>>,
    /// What the probe has cost the target since it was attached, when known.
    pub cost: Option<ProbeCost>,
    /// Where it sits (`entry: 3 call site(s); return: after 3 call site(s)`).
    pub points: Option<String>,
    /// `--by`: each value's latency buckets.
    pub split: Vec<(String, Vec<u64>)>,
    /// The probe in each process, for a program of several.
    pub processes: Vec<crate::per_process::InProcess>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Attach, replace or (with empty settings) remove the probe on a function.
    Set {
        func: usize,
        settings: ProbeSpec,
    },
    DetachAll,
    /// Change the budget (a share of the target's CPU in %, None: off).
    SetBudget(Option<f64>),
    Quit,
}
