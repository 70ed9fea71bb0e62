//! The probe engine: turns symbols' function descriptions into plans for one generic
//! BPF program, attaches them as uprobes, and decodes what they capture.
pub mod calibrate;
pub mod condition;
pub mod cost;
pub mod decode;
pub mod engine;
pub mod error;
mod harvest;
pub mod hist;
pub mod keeper;
pub mod multi;
pub mod plan;
pub mod points;
pub mod procs;
pub mod recipe;
pub mod uprobe;
pub mod value;
pub mod wire;
pub mod word;

pub use calibrate::HitCost;
pub use condition::CompiledCondition;
pub use decode::Call;
pub use engine::{EVERY_PROCESS, Engine, Group, Stats};
pub use error::{ConditionError, EngineError, PlanError};
pub use plan::{Capture, Plan};
pub use procs::ProcStats;
pub use value::{GoValue, Name};
