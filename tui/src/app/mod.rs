//! The full-screen debugger (`periscope PID`): State → update → view, driven by runtime.
pub mod action;
pub mod complete;
mod editor;
pub mod keymap;
mod keys;
pub mod runtime;
pub mod search;
pub mod state;
pub mod update;
pub mod view;
