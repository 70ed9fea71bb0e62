pub mod agent;
mod agent_run;
pub mod list;
mod processes;
pub mod trace;
mod writer;
