pub mod list;
pub mod trace;
mod writer;
