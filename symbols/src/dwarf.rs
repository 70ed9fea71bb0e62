//! Functions, parameters and types from Go's DWARF, in one linear pass over the units
//! (two halves on two threads, merged by `dwarf_merge`).
//! Go-specific attributes (cmd/internal/dwarf): DW_AT_go_kind 0x2900, DW_AT_go_elem
//! 0x2902, DW_AT_go_runtime_type 0x2904.
use std::borrow::Cow;
// FxHash: the keys are DWARF offsets, addresses and names from the binary itself;
// SipHash's DoS resistance buys nothing here and cost ~4% of a large catalog.
use rustc_hash::FxHashMap as HashMap;

use gimli::{AttributeValue, DwAt, EndianSlice, LittleEndian, Reader, UnitOffset};

use crate::elf::Elf;
use crate::error::{Error, Result};
use crate::types::{Field, GoType, Kind, TypeId, Types};

const DW_AT_GO_KIND: DwAt = DwAt(0x2900);
const DW_AT_GO_ELEM: DwAt = DwAt(0x2902);
const DW_AT_GO_RUNTIME_TYPE: DwAt = DwAt(0x2904);

type R<'a> = EndianSlice<'a, LittleEndian>;

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
    let owned: HashMap<gimli::SectionId, Cow<'_, [u8]>> = std::thread::scope(|s| {
        let jobs: Vec<_> = SECTIONS
            .iter()
            .map(|&(id, name)| (id, s.spawn(move || elf.section(name))))
            .collect();
        jobs.into_iter()
            .filter_map(|(id, j)| Some((id, j.join().ok()??)))
            .collect()
    });
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
        .filter(|(_, (_, has_concrete))| !has_concrete)
        .map(|(off, (mut f, _))| {
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
    let mut abstract_fns: HashMap<usize, (DwarfFunction, bool)> = HashMap::default();
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

struct Walker<'a, 'd> {
    dwarf: &'a gimli::Dwarf<R<'d>>,
    units: &'a [(usize, gimli::Unit<R<'d>>)],
    types: Types,
    type_cache: HashMap<usize, TypeId>,
    runtime_types: HashMap<u64, TypeId>,
    file_names: HashMap<usize, Vec<String>>,
    /// Abstract function (DWARF offset) → its source file. Go gives abstract
    /// functions a decl_line but no decl_file: the file is the line table's at the
    /// start of one of its inlined copies.
    inline_files: HashMap<usize, String>,
}

type Die<'d> = gimli::DebuggingInformationEntry<R<'d>>;

impl<'d> Walker<'_, 'd> {
    fn walk_unit(
        &mut self,
        ui: usize,
        out: &mut Vec<DwarfFunction>,
        abstract_fns: &mut HashMap<usize, (DwarfFunction, bool)>,
        g_offsets: &mut Option<GOffsets>,
    ) -> gimli::Result<()> {
        let (ustart, unit) = &self.units[ui];
        let mut cursor = unit.entries();
        // The function whose direct children are being read, and its depth.
        let mut cur: Option<(DwarfFunction, isize, Option<usize>)> = None;
        // Inlined copies of functions whose file is not known yet: origin → address.
        let mut inline_sites: HashMap<usize, u64> = HashMap::default();
        while let Some(die) = cursor.next_dfs()? {
            let depth = die.depth();
            if let Some((_, fdepth, _)) = &cur
                && depth <= *fdepth
            {
                let (f, _, abs) = cur.take().unwrap();
                finish(f, abs, out, abstract_fns);
            }
            match die.tag {
                gimli::DW_TAG_subprogram => {
                    cur = self
                        .subprogram(ui, die, abstract_fns)?
                        .map(|(f, a)| (f, depth, a));
                }
                gimli::DW_TAG_formal_parameter => {
                    if let Some((f, fdepth, _)) = &mut cur
                        && depth == *fdepth + 1
                    {
                        let low = f.low_pc;
                        if let Some(p) = self.param(ui, die, low)? {
                            f.params.push(p);
                        }
                    }
                }
                gimli::DW_TAG_inlined_subroutine => {
                    if let Some(o) = die
                        .attr_value(gimli::DW_AT_abstract_origin)
                        .and_then(|v| self.global_ref(ui, v))
                        && !self.inline_files.contains_key(&o)
                        && !inline_sites.contains_key(&o)
                        && let Ok(mut ranges) = self.dwarf.die_ranges(unit, die)
                        && let Ok(Some(r)) = ranges.next()
                    {
                        inline_sites.insert(o, r.begin);
                    }
                }
                gimli::DW_TAG_structure_type
                    if g_offsets.is_none()
                        && self.str_attr(unit, die, gimli::DW_AT_name).as_deref()
                            == Some("runtime.g") =>
                {
                    let off = ustart + die.offset().0;
                    *g_offsets = self.g_offsets(off);
                }
                _ => {}
            }
            if die.tag != gimli::DW_TAG_subprogram
                && let Some(v) = die.attr_value(DW_AT_GO_RUNTIME_TYPE)
                && let Ok(Some(addr)) = self.dwarf.attr_address(unit, v)
            {
                let off = ustart + die.offset().0;
                let id = self.resolve(off);
                self.runtime_types.insert(addr, id);
            }
        }
        if let Some((f, _, abs)) = cur.take() {
            finish(f, abs, out, abstract_fns);
        }
        if !inline_sites.is_empty() {
            self.inline_files_from_table(ui, inline_sites);
        }
        Ok(())
    }

    /// The file of the line-table row at each inlined copy's first address.
    fn inline_files_from_table(&mut self, ui: usize, sites: HashMap<usize, u64>) {
        let Some(lp) = self.units[ui].1.line_program.clone() else {
            return;
        };
        let mut by_pc: HashMap<u64, Vec<usize>> = HashMap::default();
        for (o, pc) in sites {
            by_pc.entry(pc).or_default().push(o);
        }
        let mut rows = lp.rows();
        while let Ok(Some((_, row))) = rows.next_row() {
            if by_pc.is_empty() {
                break;
            }
            if let Some(origins) = by_pc.remove(&row.address())
                && let Some(file) = self.file_name(ui, row.file_index() as usize)
            {
                for o in origins {
                    self.inline_files.insert(o, file.clone());
                }
            }
        }
    }

    fn subprogram(
        &mut self,
        ui: usize,
        die: &Die<'d>,
        abstract_fns: &mut HashMap<usize, (DwarfFunction, bool)>,
    ) -> gimli::Result<Option<(DwarfFunction, Option<usize>)>> {
        let (ustart, unit) = &self.units[ui];
        // DWARF 5 (Go ≥ 1.25) gives addresses as indexes into .debug_addr.
        let low = die
            .attr_value(gimli::DW_AT_low_pc)
            .and_then(|v| self.dwarf.attr_address(unit, v).ok().flatten());
        let high = match (low, die.attr_value(gimli::DW_AT_high_pc)) {
            (Some(l), Some(v)) => match v.udata_value() {
                Some(n) => l + n,
                None => self.dwarf.attr_address(unit, v).ok().flatten().unwrap_or(0),
            },
            _ => 0,
        };
        // A concrete copy of a function that was also inlined: name and declaration
        // live on the abstract origin.
        let origin = match die.attr_value(gimli::DW_AT_abstract_origin) {
            Some(v) => self.global_ref(ui, v),
            None => None,
        };
        if let Some(o) = origin {
            let (f, seen) = match abstract_fns.get_mut(&o) {
                Some(e) => e,
                None => {
                    let f = self.read_abstract(o)?;
                    abstract_fns.entry(o).or_insert((f, false))
                }
            };
            *seen = true;
            let mut f = f.clone();
            f.params.clear();
            f.low_pc = low.unwrap_or(0);
            f.high_pc = high;
            f.inlined_only = false;
            return Ok(Some((f, None)));
        }
        let name = self
            .str_attr(unit, die, gimli::DW_AT_name)
            .unwrap_or_default();
        let (file, line) = self.decl(ui, die);
        let f = DwarfFunction {
            name,
            file,
            line,
            low_pc: low.unwrap_or(0),
            high_pc: high,
            params: Vec::new(),
            inlined_only: low.is_none(),
        };
        if low.is_none() {
            // Abstract instance (DW_AT_inline): its children are the parameter names.
            return Ok(Some((f, Some(ustart + die.offset().0))));
        }
        Ok(Some((f, None)))
    }

    /// Reads an abstract subprogram (and its parameters) found through an origin
    /// reference before the walk reached it.
    fn read_abstract(&mut self, off: usize) -> gimli::Result<DwarfFunction> {
        let ui = self.unit_index(off);
        let (ustart, unit) = &self.units[ui];
        let uoff = UnitOffset(off - ustart);
        let die = unit.entry(uoff)?;
        let name = self
            .str_attr(unit, &die, gimli::DW_AT_name)
            .unwrap_or_default();
        let (file, line) = self.decl(ui, &die);
        let mut params = Vec::new();
        let mut tree = unit.entries_tree(Some(uoff))?;
        let root = tree.root()?;
        let mut children = root.children();
        while let Some(child) = children.next()? {
            let e = child.entry().clone();
            if e.tag == gimli::DW_TAG_formal_parameter
                && let Some(p) = self.param(ui, &e, 0)?
            {
                params.push(p);
            }
        }
        Ok(DwarfFunction {
            name,
            file,
            line,
            low_pc: 0,
            high_pc: 0,
            params,
            inlined_only: true,
        })
    }

    fn param(
        &mut self,
        ui: usize,
        die: &Die<'d>,
        low_pc: u64,
    ) -> gimli::Result<Option<DwarfParam>> {
        let unit = &self.units[ui].1;
        let (mut name, mut ty, mut is_result) = (
            self.str_attr(unit, die, gimli::DW_AT_name),
            die.attr_value(gimli::DW_AT_type)
                .and_then(|v| self.global_ref(ui, v)),
            matches!(
                die.attr_value(gimli::DW_AT_variable_parameter),
                Some(AttributeValue::Flag(true))
            ),
        );
        if let Some(o) = die
            .attr_value(gimli::DW_AT_abstract_origin)
            .and_then(|v| self.global_ref(ui, v))
        {
            let oui = self.unit_index(o);
            let (ostart, ounit) = &self.units[oui];
            let odie = ounit.entry(UnitOffset(o - ostart))?;
            name = name.or_else(|| self.str_attr(ounit, &odie, gimli::DW_AT_name));
            ty = ty.or_else(|| {
                odie.attr_value(gimli::DW_AT_type)
                    .and_then(|v| self.global_ref(oui, v))
            });
            is_result |= matches!(
                odie.attr_value(gimli::DW_AT_variable_parameter),
                Some(AttributeValue::Flag(true))
            );
        }
        let Some(ty) = ty else { return Ok(None) };
        let ty = self.resolve(ty);
        let entry_pieces = match die.attr_value(gimli::DW_AT_location) {
            Some(v) if low_pc != 0 => self.entry_pieces(ui, v, low_pc),
            _ => None,
        };
        Ok(Some(DwarfParam {
            name: name.unwrap_or_default(),
            ty,
            is_result,
            entry_pieces,
        }))
    }

    /// The location description in force at `pc`, as pieces.
    fn entry_pieces(
        &self,
        ui: usize,
        v: AttributeValue<R<'d>>,
        pc: u64,
    ) -> Option<Vec<(Option<u16>, u64)>> {
        let unit = &self.units[ui].1;
        let expr = match v {
            AttributeValue::Exprloc(e) => e,
            other => {
                let mut iter = self.dwarf.attr_locations(unit, other).ok()??;
                let mut found = None;
                while let Ok(Some(entry)) = iter.next() {
                    if entry.range.begin <= pc && pc < entry.range.end {
                        found = Some(entry.data);
                        break;
                    }
                }
                found?
            }
        };
        let mut ops = expr.0;
        let mut pieces = Vec::new();
        let mut reg: Option<u16> = None;
        let mut any = false;
        while !ops.is_empty() {
            let op = gimli::Operation::parse(&mut ops, unit.encoding()).ok()?;
            match op {
                gimli::Operation::Register { register } => {
                    reg = Some(register.0);
                    any = true;
                }
                gimli::Operation::Piece { size_in_bits, .. } => {
                    pieces.push((reg.take(), size_in_bits / 8));
                    any = false;
                }
                _ => {
                    reg = None;
                    any = true;
                }
            }
        }
        if any {
            pieces.push((reg, 0));
        }
        Some(pieces)
    }

    fn decl(&mut self, ui: usize, die: &Die<'d>) -> (Option<String>, Option<u32>) {
        let line = match die.attr_value(gimli::DW_AT_decl_line) {
            Some(AttributeValue::Udata(l)) => Some(l as u32),
            Some(AttributeValue::Data1(l)) => Some(u32::from(l)),
            Some(AttributeValue::Data2(l)) => Some(u32::from(l)),
            Some(AttributeValue::Data4(l)) => Some(l),
            _ => None,
        };
        let file = match die.attr_value(gimli::DW_AT_decl_file) {
            Some(AttributeValue::FileIndex(i)) | Some(AttributeValue::Udata(i)) => {
                self.file_name(ui, i as usize)
            }
            Some(AttributeValue::Data1(i)) => self.file_name(ui, usize::from(i)),
            Some(AttributeValue::Data2(i)) => self.file_name(ui, usize::from(i)),
            Some(AttributeValue::Data4(i)) => self.file_name(ui, i as usize),
            _ => None,
        };
        (file, line)
    }

    fn file_name(&mut self, ui: usize, index: usize) -> Option<String> {
        let names = self.file_names.entry(ui).or_insert_with(|| {
            let unit = &self.units[ui].1;
            let Some(lp) = &unit.line_program else {
                return Vec::new();
            };
            let header = lp.header();
            // DWARF < 5 file indexes are 1-based; entry 0 is the unit's primary file.
            let mut v = vec![String::new()];
            if header.version() >= 5 {
                v.clear();
            }
            let string = |a| {
                self.dwarf
                    .attr_string(unit, a)
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            for f in header.file_names() {
                let mut name = string(f.path_name());
                if !name.starts_with('/')
                    && !name.starts_with('<')
                    && let Some(dir) = f.directory(header).map(string)
                    && !dir.is_empty()
                {
                    name = format!("{dir}/{name}");
                }
                v.push(name);
            }
            v
        });
        names.get(index).filter(|s| !s.is_empty()).cloned()
    }

    /// Go before 1.20 emits no DW_AT_decl_line on functions: take the line of the
    /// line-table row at each function's entry instead.
    fn lines_from_table(&mut self, ui: usize, fns: &mut [DwarfFunction]) {
        let unit = &self.units[ui].1;
        let Some(lp) = unit.line_program.clone() else {
            return;
        };
        let mut want: HashMap<u64, usize> = fns
            .iter()
            .enumerate()
            .filter(|(_, f)| (f.line.is_none() || f.file.is_none()) && f.low_pc != 0)
            .map(|(i, f)| (f.low_pc, i))
            .collect();
        let mut rows = lp.rows();
        while let Ok(Some((_, row))) = rows.next_row() {
            if want.is_empty() {
                break;
            }
            if let Some(i) = want.remove(&row.address()) {
                if fns[i].line.is_none() {
                    fns[i].line = row.line().map(|l| l.get() as u32);
                }
                if fns[i].file.is_none() {
                    fns[i].file = self.file_name(ui, row.file_index() as usize);
                }
            }
        }
    }

    fn str_attr(&self, unit: &gimli::Unit<R<'d>>, die: &Die<'d>, at: DwAt) -> Option<String> {
        let v = die.attr_value(at)?;
        let s = self.dwarf.attr_string(unit, v).ok()?;
        Some(s.to_string_lossy().into_owned())
    }

    fn global_ref(&self, ui: usize, v: AttributeValue<R<'d>>) -> Option<usize> {
        match v {
            AttributeValue::UnitRef(o) => Some(self.units[ui].0 + o.0),
            AttributeValue::DebugInfoRef(o) => Some(o.0),
            _ => None,
        }
    }

    fn unit_index(&self, off: usize) -> usize {
        self.units
            .partition_point(|(start, _)| *start <= off)
            .saturating_sub(1)
    }

    fn g_offsets(&mut self, g_off: usize) -> Option<GOffsets> {
        let g = self.resolve(g_off);
        let goid = self.types.field(g, "goid")?.offset;
        let stack = self.types.field(g, "stack")?.clone();
        let hi = self.types.field(stack.ty, "hi")?.offset;
        Some(GOffsets {
            goid,
            stack_hi: stack.offset + hi,
        })
    }

    /// The interned type at a global .debug_info offset.
    fn resolve(&mut self, off: usize) -> TypeId {
        if let Some(&id) = self.type_cache.get(&off) {
            return id;
        }
        let id = self.types.push(GoType {
            name: String::new(),
            size: 0,
            kind: Kind::Opaque,
        });
        self.type_cache.insert(off, id);
        let t = self.read_type(off).unwrap_or(GoType {
            name: "?".into(),
            size: 0,
            kind: Kind::Opaque,
        });
        self.types.set(id, t);
        id
    }

    fn read_type(&mut self, off: usize) -> gimli::Result<GoType> {
        let ui = self.unit_index(off);
        let (ustart, unit) = &self.units[ui];
        let die = unit.entry(UnitOffset(off - ustart))?;
        let name = self
            .str_attr(unit, &die, gimli::DW_AT_name)
            .unwrap_or_default();
        let size = match die.attr_value(gimli::DW_AT_byte_size) {
            Some(v) => v.udata_value().unwrap_or(0),
            None => 0,
        };
        let go_kind = die
            .attr_value(DW_AT_GO_KIND)
            .and_then(|v| v.udata_value())
            .unwrap_or(0);
        let target = die
            .attr_value(gimli::DW_AT_type)
            .and_then(|v| self.global_ref(ui, v));
        let kind = match die.tag {
            gimli::DW_TAG_base_type => {
                let enc = match die.attr_value(gimli::DW_AT_encoding) {
                    Some(AttributeValue::Encoding(e)) => e,
                    _ => gimli::DwAte(0),
                };
                match enc {
                    gimli::DW_ATE_boolean => Kind::Bool,
                    gimli::DW_ATE_float => Kind::Float,
                    gimli::DW_ATE_complex_float => Kind::Complex,
                    gimli::DW_ATE_signed | gimli::DW_ATE_signed_char => Kind::Int { signed: true },
                    gimli::DW_ATE_unsigned | gimli::DW_ATE_unsigned_char => {
                        Kind::Int { signed: false }
                    }
                    _ => Kind::Opaque,
                }
            }
            gimli::DW_TAG_pointer_type => match target {
                Some(t) => Kind::Pointer(Some(self.resolve(t))),
                None if name == "unsafe.Pointer" => Kind::UnsafePointer,
                None => Kind::Pointer(None),
            },
            gimli::DW_TAG_typedef => {
                let under = target.map(|t| self.resolve(t));
                let ut = under.map(|u| self.types.get(u).clone());
                let size = ut.as_ref().map(|t| t.size).unwrap_or(size);
                let kind = match go_kind {
                    18 => Kind::Chan,
                    19 => Kind::Func,
                    20 => Kind::Interface {
                        empty: ut.as_ref().is_some_and(|t| t.name == "runtime.eface"),
                    },
                    21 => Kind::Map,
                    _ => ut.map(|t| t.kind).unwrap_or(Kind::Opaque),
                };
                // Generic code names its type parameters `.param0`…; the shape is the
                // useful name (`go.shape.int`).
                let name = match (name.starts_with('.'), under) {
                    (true, Some(u)) => self.types.name(u).to_string(),
                    _ => name,
                };
                return Ok(GoType {
                    name,
                    size: if size == 0 { 8 } else { size },
                    kind,
                });
            }
            gimli::DW_TAG_structure_type => match go_kind {
                24 => Kind::String,
                23 => {
                    let elem = die
                        .attr_value(DW_AT_GO_ELEM)
                        .and_then(|v| self.global_ref(ui, v))
                        .map(|e| self.resolve(e));
                    match elem {
                        Some(e) => Kind::Slice(e),
                        None => Kind::Opaque,
                    }
                }
                _ => Kind::Struct(self.fields(ui, off)?),
            },
            gimli::DW_TAG_array_type => {
                let elem = target.map(|t| self.resolve(t));
                let len = self.array_len(ui, off)?;
                match elem {
                    Some(elem) => Kind::Array { elem, len },
                    None => Kind::Opaque,
                }
            }
            gimli::DW_TAG_subroutine_type => Kind::Func,
            _ => Kind::Opaque,
        };
        // Go omits DW_AT_byte_size on pointer-shaped types.
        let size = match kind {
            Kind::Pointer(_) | Kind::UnsafePointer | Kind::Func | Kind::Map | Kind::Chan
                if size == 0 =>
            {
                8
            }
            _ => size,
        };
        Ok(GoType { name, size, kind })
    }

    fn fields(&mut self, ui: usize, off: usize) -> gimli::Result<Vec<Field>> {
        let (ustart, unit) = &self.units[ui];
        let mut tree = unit.entries_tree(Some(UnitOffset(off - ustart)))?;
        let root = tree.root()?;
        let mut children = root.children();
        let mut raw = Vec::new();
        while let Some(child) = children.next()? {
            let e = child.entry();
            if e.tag != gimli::DW_TAG_member {
                continue;
            }
            let name = self
                .str_attr(unit, e, gimli::DW_AT_name)
                .unwrap_or_default();
            let offset = e
                .attr_value(gimli::DW_AT_data_member_location)
                .and_then(|v| v.udata_value())
                .unwrap_or(0);
            let ty = e
                .attr_value(gimli::DW_AT_type)
                .and_then(|v| self.global_ref(ui, v));
            raw.push((name, offset, ty));
        }
        Ok(raw
            .into_iter()
            .filter_map(|(name, offset, ty)| {
                Some(Field {
                    name,
                    offset,
                    ty: self.resolve(ty?),
                })
            })
            .collect())
    }

    fn array_len(&self, ui: usize, off: usize) -> gimli::Result<u64> {
        let (ustart, unit) = &self.units[ui];
        let mut tree = unit.entries_tree(Some(UnitOffset(off - ustart)))?;
        let root = tree.root()?;
        let mut children = root.children();
        while let Some(child) = children.next()? {
            let e = child.entry();
            if e.tag == gimli::DW_TAG_subrange_type {
                if let Some(c) = e
                    .attr_value(gimli::DW_AT_count)
                    .and_then(|v| v.udata_value())
                {
                    return Ok(c);
                }
                if let Some(u) = e
                    .attr_value(gimli::DW_AT_upper_bound)
                    .and_then(|v| v.udata_value())
                {
                    return Ok(u + 1);
                }
            }
        }
        Ok(0)
    }
}

fn finish(
    f: DwarfFunction,
    abstract_off: Option<usize>,
    out: &mut Vec<DwarfFunction>,
    abstract_fns: &mut HashMap<usize, (DwarfFunction, bool)>,
) {
    match abstract_off {
        Some(off) => {
            abstract_fns.entry(off).or_insert((f, false));
        }
        None => out.push(f),
    }
}
