//! The `periscope` binary's library: the CLI commands, the TUI and the shell, over one
//! `Session` (periscope-session: a target process and its probes). Split from main.rs so that tests can
//! drive the TUI's `update` and render its `view` directly.
pub mod app;
pub mod cli;
pub mod command;
pub mod metrics;
pub mod shell;
pub mod shell_complete;
pub mod signals;
pub mod target;

// The session layer below the front-ends, under the paths they use.
pub use periscope_session::{
    budget, digest, format, governor, histogram, per_process, probe_file, say, session, stack,
    template,
};
