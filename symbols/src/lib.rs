//! Reads a Go binary: its functions, their parameters and results with full Go types,
//! where each value lives under the register ABI, and where to attach cheap probes.
//! No BPF and no terminal here: data flows symbols → probes → tui.
pub mod addr;
pub mod buildinfo;
pub mod callsites;
pub mod catalog;
pub mod dwarf;
mod dwarf_merge;
pub mod elf;
pub mod error;
pub mod goabi;
pub mod pclntab;
pub mod probe_points;
pub mod process;
pub mod resolve;
pub mod stripped;
pub mod types;

pub use addr::{FileOffset, LinkAddr, LoadBias, RuntimeAddr};
pub use catalog::{Catalog, Function, Value};
pub use error::{Error, Result};
pub use goabi::{Loc, Location, Piece};
pub use types::{Field, GoType, Kind, TypeId, Types};
