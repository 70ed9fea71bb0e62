//! Why a probe could not be set: one enum, its sources kept.
use probes_ebpf::{ConditionError, EngineError, PlanError};

/// Why a process could not be opened for probing.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Target(#[from] symbols::Error),
    #[error(
        "pid {pid} runs a binary without DWARF (stripped) built by {version}, whose goroutine layout periscope does not know (it knows Go {known}): rebuild without -ldflags='-s -w' to trace it"
    )]
    Stripped {
        pid: u32,
        version: String,
        known: String,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The processes or the file named cannot be probed as one program (program.rs).
    #[error("{0}")]
    Program(String),
    /// The memory cgroup leaves less than periscope needs (memory.rs).
    #[error("{0}")]
    Memory(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// The condition does not compile; `column()` points into it.
    #[error("{}", .0.msg)]
    Condition(#[source] ConditionError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Attach(#[from] EngineError),
    #[error("{0}: nothing to probe")]
    TargetGone(String),
    #[error("{0}: no code to probe")]
    NoCode(String),
    #[error("pid {0} exited while probes were attached; nothing is left in it")]
    ExitedDuringAttach(u32),
    #[error(
        "{0}: results need DWARF and the binary is stripped: trace its latency (--latency) or argument words (--args)"
    )]
    NoResults(String),
}

impl SetError {
    /// The 1-based column of the condition at fault, for a caret under it.
    pub fn column(&self) -> Option<usize> {
        match self {
            SetError::Condition(e) => Some(e.column),
            _ => None,
        }
    }
}
