pub mod list;
pub mod trace;
