//! The `periscope` binary's library: the CLI commands, the TUI and the shell, over one
//! `Session` (a target process and its probes). Split from main.rs so that tests can
//! drive the TUI's `update` and render its `view` directly.
pub mod app;
pub mod budget;
pub mod cli;
pub mod command;
pub mod format;
pub mod governor;
pub mod histogram;
pub mod session;
pub mod shell;
pub mod shell_complete;
pub mod signals;
pub mod target;
