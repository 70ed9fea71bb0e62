//! Joins what two walkers found in two halves of the DWARF units. Each walker interns
//! the types it meets under its own ids; the second half's are mapped onto the
//! first's by DWARF offset (the same type met by both becomes one), and every id
//! inside its types, parameters and runtime-type table is renumbered.
// FxHash: the keys are DWARF offsets, addresses and names from the binary itself;
// SipHash's DoS resistance buys nothing here and cost ~4% of a large catalog.
use rustc_hash::FxHashMap as HashMap;
use std::collections::hash_map::Entry;

use crate::dwarf::{Abstract, DwarfFunction, GOffsets};
use crate::types::{GoType, Kind, TypeId, Types};

pub struct Partial {
    pub functions: Vec<DwarfFunction>,
    /// Abstract (inlined) functions by DWARF offset, and whether a concrete copy exists.
    pub abstract_fns: HashMap<usize, Abstract>,
    pub g_offsets: Option<GOffsets>,
    pub types: Types,
    /// DWARF offset → interned id: every type a walker pushed is in here.
    pub type_cache: HashMap<usize, TypeId>,
    pub runtime_types: HashMap<u64, TypeId>,
    /// Abstract function (DWARF offset) → source file (see dwarf.rs).
    pub inline_files: HashMap<usize, String>,
}

pub fn merge(mut a: Partial, b: Partial) -> Partial {
    let mut map = vec![TypeId(0); b.types.len()];
    let mut fresh = Vec::new();
    for (&off, &id_b) in &b.type_cache {
        map[id_b.0 as usize] = match a.type_cache.get(&off) {
            Some(&id_a) => id_a,
            None => {
                let id_a = a.types.push(GoType {
                    name: String::new(),
                    size: 0,
                    kind: Kind::Opaque,
                });
                a.type_cache.insert(off, id_a);
                fresh.push(id_b);
                id_a
            }
        };
    }
    let re = |id: TypeId| map[id.0 as usize];
    for id_b in fresh {
        let mut t = b.types.get(id_b).clone();
        t.kind = match t.kind {
            Kind::Pointer(p) => Kind::Pointer(p.map(re)),
            Kind::Slice(e) => Kind::Slice(re(e)),
            Kind::Array { elem, len } => Kind::Array {
                elem: re(elem),
                len,
            },
            Kind::Struct(mut fields) => {
                for f in &mut fields {
                    f.ty = re(f.ty);
                }
                Kind::Struct(fields)
            }
            other => other,
        };
        a.types.set(re(id_b), t);
    }
    let renumber = |mut f: DwarfFunction| {
        for p in &mut f.params {
            p.ty = re(p.ty);
        }
        f
    };
    a.functions.extend(b.functions.into_iter().map(renumber));
    for (off, ab) in b.abstract_fns {
        match a.abstract_fns.entry(off) {
            Entry::Occupied(mut e) => e.get_mut().has_concrete |= ab.has_concrete,
            Entry::Vacant(e) => {
                e.insert(Abstract {
                    f: renumber(ab.f),
                    has_concrete: ab.has_concrete,
                });
            }
        }
    }
    for (off, file) in b.inline_files {
        a.inline_files.entry(off).or_insert(file);
    }
    for (addr, id_b) in b.runtime_types {
        a.runtime_types.entry(addr).or_insert(re(id_b));
    }
    a.g_offsets = a.g_offsets.or(b.g_offsets);
    a
}
