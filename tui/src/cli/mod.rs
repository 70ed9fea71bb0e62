pub mod agent;
pub mod list;
mod processes;
pub mod trace;
mod writer;
