//! Subprograms and their parameters: concrete functions, abstract (inlined) ones and
//! the concrete copies that refer to them.

use rustc_hash::FxHashMap as HashMap;

use gimli::{AttributeValue, UnitOffset};

use super::{Abstract, DW_AT_GO_RUNTIME_TYPE, Die, DwarfFunction, DwarfParam, GOffsets, Walker};

impl<'d> Walker<'_, 'd> {
    pub(super) fn walk_unit(
        &mut self,
        ui: usize,
        out: &mut Vec<DwarfFunction>,
        abstract_fns: &mut HashMap<usize, Abstract>,
        g_offsets: &mut Option<GOffsets>,
    ) -> gimli::Result<()> {
        let (ustart, unit) = &self.units[ui];
        let mut cursor = unit.entries();
        // The function whose direct children are being read.
        let mut cur: Option<Open> = None;
        // Inlined copies of functions whose file is not known yet: origin → address.
        let mut inline_sites: HashMap<usize, u64> = HashMap::default();
        while let Some(die) = cursor.next_dfs()? {
            let depth = die.depth();
            if let Some(open) = cur.take_if(|o| depth <= o.depth) {
                finish(open, out, abstract_fns);
            }
            match die.tag {
                gimli::DW_TAG_subprogram => {
                    cur = self
                        .subprogram(ui, die, abstract_fns)?
                        .map(|(f, abstract_off)| Open {
                            f,
                            depth,
                            abstract_off,
                        });
                }
                gimli::DW_TAG_formal_parameter => {
                    if let Some(open) = &mut cur
                        && depth == open.depth + 1
                    {
                        let low = open.f.low_pc;
                        if let Some(p) = self.param(ui, die, low)? {
                            open.f.params.push(p);
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
        if let Some(open) = cur.take() {
            finish(open, out, abstract_fns);
        }
        if !inline_sites.is_empty() {
            self.inline_files_from_table(ui, inline_sites);
        }
        Ok(())
    }

    pub(super) fn subprogram(
        &mut self,
        ui: usize,
        die: &Die<'d>,
        abstract_fns: &mut HashMap<usize, Abstract>,
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
            let a = match abstract_fns.get_mut(&o) {
                Some(a) => a,
                None => {
                    let f = self.read_abstract(o)?;
                    abstract_fns.entry(o).or_insert(Abstract {
                        f,
                        has_concrete: false,
                    })
                }
            };
            a.has_concrete = true;
            let mut f = a.f.clone();
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
    pub(super) fn read_abstract(&mut self, off: usize) -> gimli::Result<DwarfFunction> {
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

    pub(super) fn param(
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
}

/// A subprogram whose children (its parameters) are being read.
struct Open {
    f: DwarfFunction,
    depth: isize,
    /// Set for an abstract instance: its DWARF offset.
    abstract_off: Option<usize>,
}

fn finish(open: Open, out: &mut Vec<DwarfFunction>, abstract_fns: &mut HashMap<usize, Abstract>) {
    match open.abstract_off {
        Some(off) => {
            abstract_fns.entry(off).or_insert(Abstract {
                f: open.f,
                has_concrete: false,
            });
        }
        None => out.push(open.f),
    }
}
