//! Functions, parameters and types from Go's DWARF, in one linear pass over the units
//! (two halves on two threads, merged by `dwarf_merge`): loading here; the walk of
//! functions, their locations, source lines and types each in a file of its own.
//! Go-specific attributes (cmd/internal/dwarf): DW_AT_go_kind 0x2900, DW_AT_go_elem
//! 0x2902, DW_AT_go_runtime_type 0x2904.
use std::borrow::Cow;
// FxHash: the keys are DWARF offsets, addresses and names from the binary itself;
// SipHash's DoS resistance buys nothing here and cost ~4% of a large catalog.
use rustc_hash::FxHashMap as HashMap;

use gimli::{AttributeValue, DwAt, EndianSlice, LittleEndian};

use crate::elf::Elf;
use crate::error::{Error, Result};
use crate::types::{TypeId, Types};

mod functions;
mod lines;
mod locations;
mod types;

pub(super) const DW_AT_GO_KIND: DwAt = DwAt(0x2900);
pub(super) const DW_AT_GO_ELEM: DwAt = DwAt(0x2902);
pub(super) const DW_AT_GO_RUNTIME_TYPE: DwAt = DwAt(0x2904);

pub(super) type R<'a> = EndianSlice<'a, LittleEndian>;

#[derive(Debug, Clone)]
pub struct DwarfParam {
    pub name: String,
    pub ty: TypeId,
    pub is_result: bool,
    /// The DWARF location at the function's entry address, as (DWARF register or None
    /// for memory, size) pieces, when Go emitted one. Used to check our ABI placement.
    pub entry_pieces: Option<Vec<(Option<u16>, u64)>>,
}

#[derive(Debug, Clone)]
pub struct DwarfFunction {
    pub name: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub low_pc: u64,
    pub high_pc: u64,
    pub params: Vec<DwarfParam>,
    /// Exists only inlined into its callers: nothing to attach to.
    pub inlined_only: bool,
}

/// Field offsets in `runtime.g` that probes need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GOffsets {
    pub goid: u64,
    pub stack_hi: u64,
}

/// An abstract (inlined) function, and whether a concrete copy of it exists.
#[derive(Debug, Clone)]
pub struct Abstract {
    pub f: DwarfFunction,
    pub has_concrete: bool,
}

pub struct DwarfInfo {
    pub functions: Vec<DwarfFunction>,
    pub types: Types,
    pub g_offsets: Option<GOffsets>,
    /// Runtime type descriptor address (link-time) → type, to name an interface's
    /// dynamic type.
    pub runtime_types: HashMap<u64, TypeId>,
}

const SECTIONS: &[(gimli::SectionId, &str)] = &[
    (gimli::SectionId::DebugAbbrev, ".debug_abbrev"),
    (gimli::SectionId::DebugInfo, ".debug_info"),
    (gimli::SectionId::DebugLine, ".debug_line"),
    (gimli::SectionId::DebugLoc, ".debug_loc"),
    (gimli::SectionId::DebugLocLists, ".debug_loclists"),
    (gimli::SectionId::DebugRanges, ".debug_ranges"),
    (gimli::SectionId::DebugRngLists, ".debug_rnglists"),
    (gimli::SectionId::DebugStr, ".debug_str"),
    (gimli::SectionId::DebugLineStr, ".debug_line_str"),
    (gimli::SectionId::DebugAddr, ".debug_addr"),
    (gimli::SectionId::DebugStrOffsets, ".debug_str_offsets"),
];

/// Whether the binary has DWARF, without inflating it.
pub fn has_dwarf(elf: &Elf) -> bool {
    elf.section_size(".debug_info").is_some_and(|n| n > 0)
}

pub fn load(elf: &Elf) -> Result<DwarfInfo> {
    // Go compresses its DWARF (SHF_COMPRESSED). Inflating is the largest single cost of
    // a big binary's catalog, and each section is its own zlib stream: one thread each.
    // A section that is there but does not inflate is an error naming it (read as
    // empty, it would make a binary without functions).
    let mut owned: HashMap<gimli::SectionId, Cow<'_, [u8]>> = HashMap::default();
    std::thread::scope(|s| -> Result<()> {
        let jobs: Vec<_> = SECTIONS
            .iter()
            .map(|&(id, name)| (id, name, s.spawn(move || elf.section_checked(name))))
            .collect();
        for (id, name, job) in jobs {
            match job.join() {
                Ok(Ok(Some(data))) => {
                    owned.insert(id, data);
                }
                Ok(Ok(None)) => {}
                Ok(Err(what)) => {
                    return Err(Error::DamagedDwarf {
                        path: elf.path().to_path_buf(),
                        section: name,
                        what,
                    });
                }
                Err(_) => {
                    return Err(Error::DamagedDwarf {
                        path: elf.path().to_path_buf(),
                        section: name,
                        what: "reading it failed".into(),
                    });
                }
            }
        }
        Ok(())
    })?;
    let dwarf = gimli::Dwarf::load(|id| -> std::result::Result<R<'_>, gimli::Error> {
        Ok(EndianSlice::new(
            owned.get(&id).map(|c| &**c).unwrap_or(&[]),
            LittleEndian,
        ))
    })
    .map_err(|e| dwarf_err(elf, e))?;
    let mut units = Vec::new();
    let mut headers = dwarf.units();
    while let Some(h) = headers.next().map_err(|e| dwarf_err(elf, e))? {
        let start = h.offset().0;
        units.push((start, dwarf.unit(h).map_err(|e| dwarf_err(elf, e))?));
    }
    // The walk is the longest part of a big catalog: split the units in two halves
    // by size, walk them on two threads, and merge (types are interned per walker,
    // so the second half's are renumbered into the first's).
    let total = units.last().map_or(0, |u| u.0);
    let mid = units
        .iter()
        .position(|(start, _)| *start >= total / 2)
        .unwrap_or(units.len());
    let (first, second) = std::thread::scope(|s| {
        let second = s.spawn(|| walk_units(&dwarf, &units, mid..units.len()));
        (walk_units(&dwarf, &units, 0..mid), second.join())
    });
    // A panic in the other walker is a bug: let it surface as one.
    let second = second.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let part = crate::dwarf_merge::merge(
        first.map_err(|e| dwarf_err(elf, e))?,
        second.map_err(|e| dwarf_err(elf, e))?,
    );
    let mut functions = part.functions;
    let files = part.inline_files;
    let mut inlined: Vec<DwarfFunction> = part
        .abstract_fns
        .into_iter()
        .filter(|(_, a)| !a.has_concrete)
        .map(|(off, Abstract { mut f, .. })| {
            if f.file.is_none() {
                f.file = files.get(&off).cloned();
            }
            f
        })
        .collect();
    inlined.sort_by(|a, b| a.name.cmp(&b.name));
    functions.extend(inlined);
    Ok(DwarfInfo {
        functions,
        types: part.types,
        g_offsets: part.g_offsets,
        runtime_types: part.runtime_types,
    })
}

/// Walks the units in `range` with a walker of its own.
fn walk_units<'d>(
    dwarf: &gimli::Dwarf<R<'d>>,
    units: &[(usize, gimli::Unit<R<'d>>)],
    range: std::ops::Range<usize>,
) -> gimli::Result<crate::dwarf_merge::Partial> {
    let mut walker = Walker {
        dwarf,
        units,
        types: Types::default(),
        type_cache: HashMap::default(),
        runtime_types: HashMap::default(),
        file_names: HashMap::default(),
        inline_files: HashMap::default(),
    };
    let mut functions = Vec::new();
    let mut g_offsets = None;
    let mut abstract_fns: HashMap<usize, Abstract> = HashMap::default();
    for ui in range {
        let first = functions.len();
        walker.walk_unit(ui, &mut functions, &mut abstract_fns, &mut g_offsets)?;
        // Go < 1.20 gives no function a decl_line, and later versions none to
        // autogenerated wrappers, whose `<autogenerated>` file the ABI needs.
        // Concrete copies of inlined functions take name and line from their abstract
        // origin, which has no file.
        if functions[first..]
            .iter()
            .any(|f| f.line.is_none() || f.file.is_none())
        {
            walker.lines_from_table(ui, &mut functions[first..]);
        }
    }
    Ok(crate::dwarf_merge::Partial {
        functions,
        abstract_fns,
        g_offsets,
        types: walker.types,
        type_cache: walker.type_cache,
        runtime_types: walker.runtime_types,
        inline_files: walker.inline_files,
    })
}

fn dwarf_err(elf: &Elf, source: gimli::Error) -> Error {
    Error::Dwarf {
        path: elf.path().to_path_buf(),
        source,
    }
}

pub(super) struct Walker<'a, 'd> {
    pub(super) dwarf: &'a gimli::Dwarf<R<'d>>,
    pub(super) units: &'a [(usize, gimli::Unit<R<'d>>)],
    pub(super) types: Types,
    pub(super) type_cache: HashMap<usize, TypeId>,
    pub(super) runtime_types: HashMap<u64, TypeId>,
    pub(super) file_names: HashMap<usize, Vec<String>>,
    /// Abstract function (DWARF offset) → its source file. Go gives abstract
    /// functions a decl_line but no decl_file: the file is the line table's at the
    /// start of one of its inlined copies.
    pub(super) inline_files: HashMap<usize, String>,
}

pub(super) type Die<'d> = gimli::DebuggingInformationEntry<R<'d>>;

impl<'d> Walker<'_, 'd> {
    pub(super) fn str_attr(
        &self,
        unit: &gimli::Unit<R<'d>>,
        die: &Die<'d>,
        at: DwAt,
    ) -> Option<String> {
        let v = die.attr_value(at)?;
        let s = self.dwarf.attr_string(unit, v).ok()?;
        Some(s.to_string_lossy().into_owned())
    }

    pub(super) fn global_ref(&self, ui: usize, v: AttributeValue<R<'d>>) -> Option<usize> {
        match v {
            AttributeValue::UnitRef(o) => Some(self.units[ui].0 + o.0),
            AttributeValue::DebugInfoRef(o) => Some(o.0),
            _ => None,
        }
    }

    pub(super) fn unit_index(&self, off: usize) -> usize {
        self.units
            .partition_point(|(start, _)| *start <= off)
            .saturating_sub(1)
    }
}
