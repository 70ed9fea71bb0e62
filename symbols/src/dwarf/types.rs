//! Go types from DWARF (with Go's own attributes for kinds and element types), and
//! the offsets in runtime.g that probes need.

use gimli::{AttributeValue, UnitOffset};

use super::{DW_AT_GO_ELEM, DW_AT_GO_KIND, GOffsets, Walker};
use crate::types::{Field, GoType, Kind, TypeId};

impl<'d> Walker<'_, 'd> {
    pub(super) fn g_offsets(&mut self, g_off: usize) -> Option<GOffsets> {
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
    pub(super) fn resolve(&mut self, off: usize) -> TypeId {
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

    pub(super) fn read_type(&mut self, off: usize) -> gimli::Result<GoType> {
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

    pub(super) fn fields(&mut self, ui: usize, off: usize) -> gimli::Result<Vec<Field>> {
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

    pub(super) fn array_len(&self, ui: usize, off: usize) -> gimli::Result<u64> {
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
