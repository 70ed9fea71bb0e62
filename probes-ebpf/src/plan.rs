//! Turns "capture the arguments/results of this function, when this condition holds"
//! into the probe's plan (`psc_probe`): which words and bytes the kernel reads.
use std::collections::HashMap;

use symbols::{Catalog, Function, Kind, Loc, TypeId};

use crate::condition::CompiledCondition;
use crate::error::PlanError;
use crate::wire::*;
use crate::word::{Src, Word};

/// What the user asked for on one function.
#[derive(Debug, Clone)]
pub struct Capture {
    pub args: bool,
    pub ret: bool,
    pub latency: bool,
    pub sample_every: u32,
    pub max_string: u16,
    pub max_elems: u16,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            args: true,
            ret: true,
            latency: true,
            sample_every: 1,
            max_string: 64,
            max_elems: 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpKey {
    pub section: u16,
    pub ptr: Word,
    pub len: Option<Word>,
    pub size: u16,
}

/// A probe ready to load: the wire plan plus the op table the decoder needs.
#[derive(Clone)]
pub struct Plan {
    pub wire: psc_probe,
    pub ops: HashMap<OpKey, u16>,
    pub capture: Capture,
    pub entry_stack_off: u32,
    pub ret_stack_off: u32,
}

pub fn build(
    cat: &Catalog,
    f: &Function,
    capture: &Capture,
    cond: Option<&CompiledCondition>,
) -> Result<Plan, PlanError> {
    if f.inlined_only {
        return Err(PlanError::Inlined {
            func: f.name.clone(),
        });
    }
    if f.probes.is_none() {
        return Err(PlanError::NoCode {
            func: f.name.clone(),
        });
    }
    let needs_ret = capture.ret || capture.latency || cond.is_some_and(|c| c.reads_results);
    if needs_ret && f.probes.as_ref().is_some_and(|p| p.returns.is_empty()) {
        return Err(PlanError::NoReturn {
            func: f.name.clone(),
        });
    }
    let g = cat.g_offsets.ok_or(PlanError::NoRuntimeG)?;
    let mut p = Planner {
        cat,
        capture,
        ops: Vec::new(),
        keys: HashMap::new(),
    };
    let params = f.params.as_deref().unwrap_or(&[]);
    let results = f.results.as_deref().unwrap_or(&[]);
    if capture.args {
        for v in params.iter().filter(|v| !v.is_internal()) {
            p.value(
                v.ty,
                &Src::Direct(v.location.clone()),
                0,
                0,
                PSC_SEC_ENTRY as u16,
            );
        }
    }
    if capture.ret {
        for v in results {
            p.value(
                v.ty,
                &Src::Direct(v.location.clone()),
                0,
                0,
                PSC_SEC_RET as u16,
            );
        }
    }
    let (entry_stack_off, entry_stack_len) = stack_window(params.iter().map(|v| &v.location));
    let (ret_stack_off, ret_stack_len) = stack_window(results.iter().map(|v| &v.location));
    let mut wire = psc_probe {
        sample_every: capture.sample_every.max(1),
        goid_off: g.goid as u32,
        stack_hi_off: g.stack_hi as u32,
        entry_stack_off: entry_stack_off as u16,
        entry_stack_len: if capture.args {
            entry_stack_len as u16
        } else {
            0
        },
        ret_stack_off: ret_stack_off as u16,
        ret_stack_len: if capture.ret { ret_stack_len as u16 } else { 0 },
        ..Default::default()
    };
    if p.ops.len() > PSC_MAX_OPS as usize {
        // Keep what fits; the decoder shows the rest as not captured.
        p.ops.truncate(PSC_MAX_OPS as usize);
        p.keys.retain(|_, i| (*i as u32) < PSC_MAX_OPS);
    }
    wire.nops = p.ops.len() as u16;
    for (i, op) in p.ops.iter().enumerate() {
        wire.ops[i] = *op;
    }
    let mut flags = PSC_F_ACTIVE;
    if capture.args || capture.ret {
        flags |= PSC_F_EVENTS;
    }
    if capture.ret || capture.latency {
        flags |= PSC_F_PAIRED;
    }
    if capture.latency {
        flags |= PSC_F_LATENCY;
    }
    wire.prog = [PSC_PROG_END as u8; PSC_MAX_PROG as usize];
    if let Some(c) = cond {
        flags |= PSC_F_COND;
        if c.reads_results {
            flags |= PSC_F_COND_RET | PSC_F_PAIRED;
        }
        wire.natoms = c.atoms.len() as u16;
        for (i, a) in c.atoms.iter().enumerate() {
            wire.atoms[i] = *a;
        }
        wire.prog[..c.prog.len()].copy_from_slice(&c.prog);
    }
    wire.flags = flags;
    Ok(Plan {
        wire,
        ops: p.keys,
        capture: capture.clone(),
        entry_stack_off,
        ret_stack_off,
    })
}

/// Bytes read of a slice's backing array: the first elements, or for byte slices
/// (text, mostly) as much as a string.
/// Elements of a `[]string` whose bytes are read (each costs a byte range of the
/// probe's budget); the decoder shows the slice cut after them.
pub const STRING_ELEMS: u64 = 4;

pub fn slice_read_size(elem_size: u64, capture: &Capture) -> u16 {
    let want = if elem_size == 1 {
        u64::from(capture.max_string)
    } else {
        elem_size * u64::from(capture.max_elems)
    };
    want.min(u64::from(PSC_MAX_READ)) as u16
}

/// The smallest stack window covering every stack-held piece.
fn stack_window<'a>(locs: impl Iterator<Item = &'a symbols::Location>) -> (u32, u32) {
    let (mut lo, mut hi) = (u32::MAX, 0);
    for l in locs {
        for p in &l.pieces {
            if let Loc::Stack(off) = p.loc {
                lo = lo.min(off);
                hi = hi.max(off + p.size);
            }
        }
    }
    if lo == u32::MAX {
        return (8, 0);
    }
    (lo, (hi - lo).min(PSC_MAX_STACK))
}

struct Planner<'a> {
    cat: &'a Catalog,
    capture: &'a Capture,
    ops: Vec<psc_op>,
    keys: HashMap<OpKey, u16>,
}

impl Planner<'_> {
    fn op(&mut self, section: u16, ptr: Word, len: Option<Word>, size: u16, elem: u16) {
        let key = OpKey {
            section,
            ptr: ptr.clone(),
            len: len.clone(),
            size,
        };
        if self.keys.contains_key(&key) {
            return;
        }
        let op = psc_op {
            ptr: ptr.to_wire(),
            len: len.as_ref().map(|l| l.to_wire()).unwrap_or_default(),
            kind: if len.is_some() {
                PSC_OP_COUNTED
            } else {
                PSC_OP_FIXED
            } as u16,
            size,
            elem: elem.max(1),
            section,
        };
        self.keys.insert(key, self.ops.len() as u16);
        self.ops.push(op);
    }

    /// Plans the reads a value of type `ty` at `offset` of `src` needs. `depth` counts
    /// pointers followed (one level by default).
    fn value(&mut self, ty: TypeId, src: &Src, offset: u64, depth: u32, sec: u16) {
        let types = &self.cat.types;
        let t = types.get(ty).clone();
        match t.kind {
            Kind::String => {
                if let (Some(ptr), Some(len)) = (src.word(offset, 8), src.word(offset + 8, 8)) {
                    self.op(sec, ptr, Some(len), self.capture.max_string, 1);
                }
            }
            Kind::Slice(elem) => {
                let es = types.get(elem).size.max(1);
                let n = u64::from(self.capture.max_elems);
                let size = slice_read_size(es, self.capture);
                if let (Some(ptr), Some(len)) = (src.word(offset, 8), src.word(offset + 8, 8)) {
                    self.op(sec, ptr.clone(), Some(len), size, es as u16);
                    if depth <= 1 && matches!(types.get(elem).kind, Kind::String) {
                        for i in 0..n.min(STRING_ELEMS) {
                            self.value(elem, &Src::Mem(ptr.clone()), i * es, depth + 1, sec);
                        }
                    }
                }
            }
            Kind::Struct(fields) => {
                for fl in fields {
                    self.value(fl.ty, src, offset + fl.offset, depth, sec);
                }
            }
            Kind::Array { elem, len } => {
                let es = types.get(elem).size;
                for i in 0..len.min(u64::from(self.capture.max_elems)) {
                    self.value(elem, src, offset + i * es, depth, sec);
                }
            }
            Kind::Pointer(Some(target)) if depth == 0 => {
                let tsize = types.get(target).size;
                if let Some(ptr) = src.word(offset, 8)
                    && tsize > 0
                {
                    self.op(
                        sec,
                        ptr.clone(),
                        None,
                        tsize.min(u64::from(PSC_MAX_READ)) as u16,
                        1,
                    );
                    self.value(target, &Src::Mem(ptr), 0, depth + 1, sec);
                }
            }
            Kind::Map => {
                // hmap.count (Go < 1.24) and the swiss table's `used` both lead the header.
                if let Some(ptr) = src.word(offset, 8) {
                    self.op(sec, ptr, None, 8, 1);
                }
            }
            Kind::Interface { empty } => {
                let (Some(tab), Some(data)) = (src.word(offset, 8), src.word(offset + 8, 8)) else {
                    return;
                };
                if !empty {
                    self.op(sec, tab, None, 16, 1); // itab: inter, _type
                }
                self.op(sec, data.clone(), None, 16, 1);
                // A string header at *data: the value of a `string`, and the message of
                // *errors.errorString and *fmt.wrapError, whose first field is a string.
                if let (Some(p), Some(l)) = (data.deref(0, 8), data.deref(8, 8)) {
                    self.op(sec, p, Some(l), self.capture.max_string, 1);
                }
            }
            _ => {}
        }
    }
}
