//! One live target and the probes on it, shared by the TUI, the shell and `trace`:
//! what a user asks of a probe (`ProbeSpec`), the `Session` that owns the catalog, the
//! BPF engine and every probe from its specification to its decoded calls, the budget
//! that bounds what probes cost, and the formatting all three front-ends print with.
//! Data flows one way: symbols → probes-ebpf → session → tui.
pub mod budget;
mod build;
pub mod deploy;
pub mod digest;
pub mod error;
pub mod format;
pub mod governor;
pub mod histogram;
pub mod memory;
pub mod per_process;
mod pricing;
pub mod probe_file;
pub mod program;
mod rows;
pub mod session;
pub mod sites;
pub mod spec;
pub mod stack;
pub mod template;
mod unseen;

pub use error::{OpenError, SetError};
pub use program::Scope;
pub use session::{ErrorCount, Row, Session};
pub use spec::ProbeSpec;

/// A line on stderr, for messages after periscope has started: a reader that went away
/// (a closed pipe) must not turn a message into a panic, least of all while detaching.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
