//! Raw events → calls with decoded Go values, using the plan that produced them.

use symbols::{Catalog, Function, Kind, Loc, Location, TypeId};

use crate::plan::{OpKey, Plan};
use crate::value::{GoValue, Missing};
use crate::wire::*;
use crate::word::Src;

#[derive(Debug, Clone)]
pub struct Call {
    pub probe: u32,
    pub pid: u32,
    pub tid: u32,
    pub goid: u64,
    pub ts_ns: u64,
    pub latency_ns: Option<u64>,
    pub args: Option<Vec<(String, GoValue)>>,
    pub ret: Option<Vec<(String, GoValue)>>,
    pub truncated: bool,
    /// Seen at its entry only: the CPU budget had the return points detached.
    pub unwatched: bool,
}

/// One side (entry or return) of an event, borrowed from the ring-buffer record: the
/// reader decodes a million of these a second, so nothing is copied.
struct Section<'a> {
    regs: [u64; PSC_NREGS as usize],
    stack: &'a [u8],
    stack_off: u32,
    /// (op, flags, bytes): at most PSC_MAX_OPS, so a scan beats a map.
    items: Vec<(u16, u16, &'a [u8])>,
}

fn parse_section(b: &[u8], stack_off: u32) -> Option<Section<'_>> {
    let hdr: psc_section = crate::wire::read(b, 0)?;
    let mut pos = std::mem::size_of::<psc_section>();
    let slen = hdr.stack_len as usize;
    let stack = b.get(pos..pos + slen)?;
    pos += slen.div_ceil(8) * 8;
    let mut items = Vec::with_capacity(hdr.nitems as usize);
    for _ in 0..hdr.nitems {
        let it: psc_item = crate::wire::read(b, pos)?;
        pos += std::mem::size_of::<psc_item>();
        let n = it.len as usize;
        items.push((it.op, it.flags, b.get(pos..pos + n)?));
        pos += n.div_ceil(8) * 8;
    }
    Some(Section {
        regs: hdr.regs,
        stack,
        stack_off,
        items,
    })
}

/// Decodes one ring-buffer record. `bias` is the target's load bias (PIE).
pub fn decode(raw: &[u8], cat: &Catalog, f: &Function, plan: &Plan, bias: u64) -> Option<Call> {
    let ev: psc_event = crate::wire::read(raw, 0)?;
    if u32::from(ev.kind) != PSC_EV_CALL || u32::from(ev.version) != PSC_VERSION {
        return None;
    }
    let base = std::mem::size_of::<psc_event>();
    let elen = ev.entry_len as usize;
    let d = Decoder { cat, plan, bias };
    let args = if plan.capture.args && ev.flags & PSC_EVF_ENTRY != 0 {
        let sec = parse_section(raw.get(base..base + elen)?, plan.entry_stack_off)?;
        let params = f.params.iter().flatten().filter(|v| !v.is_internal());
        Some(d.named(&sec, params, PSC_SEC_ENTRY as u16))
    } else {
        None
    };
    let unwatched = ev.flags & PSC_EVF_UNWATCHED != 0;
    let ret = if plan.capture.ret && ev.flags & PSC_EVF_RET != 0 {
        let rb = raw.get(base + elen..base + elen + ev.ret_len as usize)?;
        let sec = parse_section(rb, plan.ret_stack_off)?;
        Some(d.named(&sec, f.results.iter().flatten(), PSC_SEC_RET as u16))
    } else if plan.capture.ret && unwatched {
        // Asked for, never seen: each result says why.
        let why = GoValue::NotCaptured(Missing::ReturnUnwatched);
        Some(
            f.results
                .iter()
                .flatten()
                .map(|v| (v.name.clone(), why.clone()))
                .collect(),
        )
    } else {
        None
    };
    Some(Call {
        probe: ev.probe,
        pid: ev.pid,
        tid: ev.tid,
        goid: ev.goid,
        ts_ns: ev.ts_ns,
        latency_ns: (ev.flags & PSC_EVF_RET != 0).then_some(ev.latency_ns),
        args,
        ret,
        truncated: ev.flags & PSC_EVF_TRUNCATED != 0,
        unwatched,
    })
}

/// A value's bytes, and which of them could be read.
struct Image {
    bytes: Vec<u8>,
    avail: Vec<bool>,
}

impl Image {
    fn u64_at(&self, off: u64, size: u64) -> Option<u64> {
        let (o, s) = (off as usize, size as usize);
        if o + s > self.bytes.len() || !self.avail[o..o + s].iter().all(|&a| a) {
            return None;
        }
        let mut b = [0u8; 8];
        b[..s].copy_from_slice(&self.bytes[o..o + s]);
        Some(u64::from_le_bytes(b))
    }
}

struct Decoder<'a> {
    cat: &'a Catalog,
    plan: &'a Plan,
    bias: u64,
}

impl Decoder<'_> {
    /// Each value of one side of a call (the arguments or the results), by name.
    fn named<'v>(
        &self,
        sec: &Section,
        vs: impl Iterator<Item = &'v symbols::Value>,
        s: u16,
    ) -> Vec<(String, GoValue)> {
        vs.map(|v| (v.name.clone(), self.top(sec, v.ty, &v.location, s)))
            .collect()
    }

    fn top(&self, sec: &Section, ty: TypeId, loc: &Location, s: u16) -> GoValue {
        let size = self.cat.types.get(ty).size as usize;
        let mut img = Image {
            bytes: vec![0; size],
            avail: vec![false; size],
        };
        for p in &loc.pieces {
            let (o, n) = (p.offset as usize, p.size as usize);
            if o + n > size {
                continue;
            }
            let reg;
            let src: Option<&[u8]> = match p.loc {
                Loc::Reg(r) => {
                    reg = sec.regs[r as usize].to_le_bytes();
                    Some(&reg[..n.min(8)])
                }
                Loc::Stack(off) => {
                    let at = off.checked_sub(sec.stack_off).map(|a| a as usize);
                    at.and_then(|a| sec.stack.get(a..a + n))
                }
                Loc::Xmm(_) => None,
            };
            if let Some(b) = src {
                img.bytes[o..o + b.len()].copy_from_slice(b);
                img.avail[o..o + b.len()].iter_mut().for_each(|a| *a = true);
            }
        }
        self.value(sec, ty, &img, 0, &Src::Direct(loc.clone()), 0, s)
    }

    fn item<'s>(&self, sec: &Section<'s>, key: &OpKey) -> Option<(u16, &'s [u8])> {
        let op = *self.plan.ops.get(key)?;
        sec.items
            .iter()
            .find(|it| it.0 == op)
            .map(|&(_, flags, bytes)| (flags, bytes))
    }

    #[allow(clippy::too_many_arguments)]
    fn value(
        &self,
        sec: &Section,
        ty: TypeId,
        img: &Image,
        off: u64,
        src: &Src,
        depth: u32,
        s: u16,
    ) -> GoValue {
        let types = &self.cat.types;
        let t = types.get(ty);
        let cap = &self.plan.capture;
        match &t.kind {
            Kind::Bool => img
                .u64_at(off, 1)
                .map_or(GoValue::NotCaptured(Missing::Budget), |v| {
                    GoValue::Bool(v != 0)
                }),
            Kind::Int { signed } => match img.u64_at(off, t.size) {
                Some(v) if *signed => {
                    let sh = 64 - 8 * t.size as u32;
                    GoValue::Int(((v << sh) as i64) >> sh)
                }
                Some(v) => GoValue::Uint(v),
                None => GoValue::NotCaptured(Missing::Budget),
            },
            Kind::Float | Kind::Complex => GoValue::NotCaptured(Missing::FloatRegister),
            Kind::String => {
                let (Some(p), Some(l)) = (src.word(off, 8), src.word(off + 8, 8)) else {
                    return GoValue::NotCaptured(Missing::Budget);
                };
                // A header that was not captured is not an empty string.
                let (Some(len), Some(ptr)) = (img.u64_at(off + 8, 8), img.u64_at(off, 8)) else {
                    return GoValue::NotCaptured(Missing::Budget);
                };
                let key = OpKey {
                    section: s,
                    ptr: p,
                    len: Some(l),
                    size: cap.max_string,
                };
                match self.item(sec, &key) {
                    _ if len == 0 => GoValue::Str {
                        s: String::new(),
                        truncated: false,
                    },
                    Some((0, b)) => GoValue::Str {
                        s: String::from_utf8_lossy(b).into_owned(),
                        truncated: (b.len() as u64) < len,
                    },
                    Some(_) => GoValue::Fault(ptr),
                    None => GoValue::NotCaptured(Missing::Budget),
                }
            }
            Kind::Slice(elem) => {
                let es = types.get(*elem).size.max(1);
                let (Some(p), Some(l)) = (src.word(off, 8), src.word(off + 8, 8)) else {
                    return GoValue::NotCaptured(Missing::Budget);
                };
                // A header that was not captured is not a nil slice.
                let (Some(len), Some(ptr)) = (img.u64_at(off + 8, 8), img.u64_at(off, 8)) else {
                    return GoValue::NotCaptured(Missing::Budget);
                };
                if ptr == 0 && len == 0 {
                    return GoValue::Nil;
                }
                let size = crate::plan::slice_read_size(es, cap);
                let key = OpKey {
                    section: s,
                    ptr: p.clone(),
                    len: Some(l),
                    size,
                };
                match self.item(sec, &key) {
                    Some((0, b)) => {
                        let mut n = (b.len() as u64 / es).min(len);
                        if matches!(types.get(*elem).kind, Kind::String) {
                            // Only these elements' bytes were planned: the rest are
                            // shown as cut, not as values that were not captured.
                            n = n.min(crate::plan::STRING_ELEMS);
                        }
                        let inner = Image {
                            bytes: b.to_vec(),
                            avail: vec![true; b.len()],
                        };
                        let esrc = Src::Mem(p);
                        let items: Vec<GoValue> = (0..n)
                            .map(|i| self.value(sec, *elem, &inner, i * es, &esrc, depth + 1, s))
                            .collect();
                        // []byte that is text reads best as text.
                        if types.get(*elem).size == 1
                            && matches!(types.get(*elem).kind, Kind::Int { signed: false })
                            && let Ok(text) = std::str::from_utf8(&b[..n as usize])
                        {
                            return GoValue::Str {
                                s: text.to_string(),
                                truncated: n < len,
                            };
                        }
                        GoValue::List { items, len }
                    }
                    Some(_) => GoValue::Fault(ptr),
                    None => GoValue::NotCaptured(Missing::Budget),
                }
            }
            Kind::Struct(fields) => GoValue::Struct(
                fields
                    .iter()
                    .map(|fl| {
                        (
                            fl.name.clone(),
                            self.value(sec, fl.ty, img, off + fl.offset, src, depth, s),
                        )
                    })
                    .collect(),
            ),
            Kind::Array { elem, len } => {
                let es = types.get(*elem).size;
                let n = (*len).min(u64::from(cap.max_elems));
                GoValue::List {
                    items: (0..n)
                        .map(|i| self.value(sec, *elem, img, off + i * es, src, depth, s))
                        .collect(),
                    len: *len,
                }
            }
            Kind::Pointer(target) => {
                let Some(addr) = img.u64_at(off, 8) else {
                    return GoValue::NotCaptured(Missing::Budget);
                };
                if addr == 0 {
                    return GoValue::Nil;
                }
                let (Some(t), Some(p), 0) = (target, src.word(off, 8), depth) else {
                    return GoValue::Ptr(addr);
                };
                let size = types.get(*t).size.min(u64::from(PSC_MAX_READ)) as u16;
                match self.item(
                    sec,
                    &OpKey {
                        section: s,
                        ptr: p.clone(),
                        len: None,
                        size,
                    },
                ) {
                    Some((0, b)) => {
                        let inner = Image {
                            bytes: b.to_vec(),
                            avail: vec![true; b.len()],
                        };
                        self.value(sec, *t, &inner, 0, &Src::Mem(p), depth + 1, s)
                    }
                    Some(_) => GoValue::Fault(addr),
                    None => GoValue::Ptr(addr),
                }
            }
            Kind::Map => {
                let Some(addr) = img.u64_at(off, 8) else {
                    return GoValue::NotCaptured(Missing::Budget);
                };
                if addr == 0 {
                    return GoValue::Nil;
                }
                let len = src
                    .word(off, 8)
                    .and_then(|p| {
                        self.item(
                            sec,
                            &OpKey {
                                section: s,
                                ptr: p,
                                len: None,
                                size: 8,
                            },
                        )
                    })
                    .and_then(|(f, b)| (f == 0).then(|| crate::wire::read::<u64>(b, 0)).flatten());
                GoValue::Map { len }
            }
            Kind::Interface { empty } => self.interface(sec, img, off, src, *empty, s),
            Kind::Chan | Kind::Func | Kind::UnsafePointer => match img.u64_at(off, 8) {
                Some(0) => GoValue::Nil,
                Some(a) => GoValue::Ptr(a),
                None => GoValue::NotCaptured(Missing::Budget),
            },
            Kind::Opaque => GoValue::NotCaptured(Missing::UnknownType),
        }
    }

    fn interface(
        &self,
        sec: &Section,
        img: &Image,
        off: u64,
        src: &Src,
        empty: bool,
        s: u16,
    ) -> GoValue {
        let Some(tab) = img.u64_at(off, 8) else {
            return GoValue::NotCaptured(Missing::Budget);
        };
        if tab == 0 {
            return GoValue::Nil;
        }
        let (Some(tw), Some(dw)) = (src.word(off, 8), src.word(off + 8, 8)) else {
            return GoValue::NotCaptured(Missing::Budget);
        };
        let type_addr = if empty {
            Some(tab)
        } else {
            self.item(
                sec,
                &OpKey {
                    section: s,
                    ptr: tw,
                    len: None,
                    size: 16,
                },
            )
            .and_then(|(f, b)| (f == 0).then(|| crate::wire::read::<u64>(b, 8)).flatten())
        };
        let Some(type_addr) = type_addr else {
            return GoValue::Iface {
                ty: "?".into(),
                value: None,
            };
        };
        let link = type_addr.wrapping_sub(self.bias);
        let ty = self
            .cat
            .runtime_type_name(link)
            .unwrap_or_else(|| format!("type@{link:#x}"));
        let data = self.item(
            sec,
            &OpKey {
                section: s,
                ptr: dw.clone(),
                len: None,
                size: 16,
            },
        );
        let string = || {
            let (p, l) = (dw.deref(0, 8)?, dw.deref(8, 8)?);
            let (f, b) = self.item(
                sec,
                &OpKey {
                    section: s,
                    ptr: p,
                    len: Some(l),
                    size: self.plan.capture.max_string,
                },
            )?;
            let len = data
                .and_then(|(_, d)| crate::wire::read::<u64>(d, 8))
                .unwrap_or(0);
            (f == 0).then(|| GoValue::Str {
                s: String::from_utf8_lossy(b).into_owned(),
                truncated: (b.len() as u64) < len,
            })
        };
        let dynamic = self.cat.runtime_type(link).map(|t| self.cat.types.get(t));
        let value = match dynamic.map(|t| (&t.kind, t.size)) {
            _ if is_message_error(&ty) => string(),
            Some((Kind::String, _)) => string(),
            Some((Kind::Int { .. } | Kind::Bool, size)) if size <= 8 => {
                data.and_then(|(f, b)| (f == 0).then_some(b)).map(|b| {
                    let inner = Image {
                        bytes: b.to_vec(),
                        avail: vec![true; b.len()],
                    };
                    let tid = self.cat.runtime_type(link).unwrap();
                    self.value(sec, tid, &inner, 0, &Src::Mem(dw.clone()), 1, s)
                })
            }
            // No DWARF link: the descriptor's reflect.Kind still says how to read it.
            None => match self.cat.runtime_type_kind(link) {
                Some(24) => string(),
                Some(k @ 1..=12) => data.and_then(|(f, b)| (f == 0).then_some(b)).and_then(|b| {
                    let size = match k {
                        1 | 3 | 8 => 1,
                        4 | 9 => 2,
                        5 | 10 => 4,
                        _ => 8,
                    };
                    let v = crate::wire::read::<u64>(b, 0)? & (u64::MAX >> (64 - 8 * size));
                    Some(match k {
                        1 => GoValue::Bool(v != 0),
                        2..=6 => GoValue::Int(((v << (64 - 8 * size)) as i64) >> (64 - 8 * size)),
                        _ => GoValue::Uint(v),
                    })
                }),
                _ => None,
            },
            _ => None,
        };
        GoValue::Iface {
            ty,
            value: value.map(Box::new),
        }
    }
}

/// Standard-library error types whose first field is their message.
fn is_message_error(ty: &str) -> bool {
    matches!(
        ty,
        "*errors.errorString" | "*fmt.wrapError" | "*fmt.wrapErrors"
    )
}
