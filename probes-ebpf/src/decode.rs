//! Raw events → calls with decoded Go values, using the plan that produced them.

use symbols::{Catalog, Kind, LoadBias, Loc, RuntimeAddr};

use crate::plan::Plan;
use crate::recipe::{How, Node, Read, Top};
use crate::value::{GoValue, Missing, Name};
use crate::wire::*;

#[derive(Debug, Clone)]
pub struct Call {
    pub probe: u32,
    pub pid: u32,
    pub tid: u32,
    pub goid: u64,
    pub ts_ns: u64,
    pub latency_ns: Option<u64>,
    pub args: Option<Vec<(Name, GoValue)>>,
    pub ret: Option<Vec<(Name, GoValue)>>,
    pub truncated: bool,
    /// Seen at its entry only: the CPU budget had the return points detached.
    pub unwatched: bool,
    /// Where the BPF program recorded the callers' stack (`--stack`).
    pub stack: Option<StackRef>,
}

/// A stack as the event carries it: an id in the kernel's stack table (or why there is
/// none) and the return address at the entry (None at a call site, whose pc is the
/// caller's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackRef {
    pub id: Result<u32, i64>,
    pub caller: Option<u64>,
    /// A stack deeper than the kernel's table holds: its outer part (`Engine::outer`).
    pub outer: Option<u64>,
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

/// The process a ring-buffer record came from (its load bias decodes it).
pub fn pid_of(raw: &[u8]) -> Option<u32> {
    crate::wire::read::<psc_event>(raw, 0).map(|ev| ev.pid)
}

/// Decodes one ring-buffer record. `bias` is its process's load bias (PIE).
pub fn decode(raw: &[u8], cat: &Catalog, plan: &Plan, bias: LoadBias) -> Option<Call> {
    let ev: psc_event = crate::wire::read(raw, 0)?;
    if u32::from(ev.kind) != PSC_EV_CALL || u32::from(ev.version) != PSC_VERSION {
        return None;
    }
    let base = std::mem::size_of::<psc_event>();
    let elen = ev.entry_len as usize;
    let d = Decoder { cat, bias };
    let args = if plan.capture.args && ev.flags & PSC_EVF_ENTRY != 0 {
        let sec = parse_section(raw.get(base..base + elen)?, plan.entry_stack_off)?;
        Some(d.named(&sec, &plan.recipe.args))
    } else {
        None
    };
    let unwatched = ev.flags & PSC_EVF_UNWATCHED != 0;
    let ret = if plan.capture.ret && ev.flags & PSC_EVF_RET != 0 {
        let rb = raw.get(base + elen..base + elen + ev.ret_len as usize)?;
        let sec = parse_section(rb, plan.ret_stack_off)?;
        Some(d.named(&sec, &plan.recipe.results))
    } else if plan.capture.ret && unwatched {
        // Asked for, never seen: each result says why.
        let why = GoValue::NotCaptured(Missing::ReturnUnwatched);
        Some(
            plan.recipe
                .results
                .iter()
                .map(|t| (t.name.clone(), why.clone()))
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
        stack: (ev.flags & PSC_EVF_STACK != 0).then_some(StackRef {
            id: u32::try_from(ev.stack_id).map_err(|_| ev.stack_id),
            caller: (ev.caller != 0).then_some(ev.caller),
            outer: (ev.outer != 0).then_some(ev.outer),
        }),
    })
}

/// A value's bytes, which of them could be read, and why the others could not.
struct Image<'b> {
    bytes: std::borrow::Cow<'b, [u8]>,
    avail: Option<Vec<bool>>,
    why: Missing,
}

impl<'b> Image<'b> {
    /// Bytes read whole from memory; a value past their end was too long to read.
    fn read(bytes: &'b [u8]) -> Self {
        Image {
            bytes: std::borrow::Cow::Borrowed(bytes),
            avail: None,
            why: Missing::TooLong,
        }
    }

    fn u64_at(&self, off: u64, size: u64) -> Result<u64, Missing> {
        let (o, s) = (off as usize, size as usize);
        let end = o
            .checked_add(s)
            .filter(|&e| e <= self.bytes.len() && s <= 8);
        let Some(end) = end else {
            return Err(self.why);
        };
        if let Some(avail) = &self.avail
            && !avail[o..end].iter().all(|&a| a)
        {
            return Err(self.why);
        }
        let mut b = [0u8; 8];
        b[..s].copy_from_slice(&self.bytes[o..end]);
        Ok(u64::from_le_bytes(b))
    }
}

struct Decoder<'a> {
    cat: &'a Catalog,
    bias: LoadBias,
}

/// What a read brought: its bytes, a fault, or why it was not made.
enum Got<'s> {
    Bytes(&'s [u8]),
    Fault,
    Not(Missing),
}

fn got<'s>(sec: &Section<'s>, r: Read) -> Got<'s> {
    match r {
        Read::Not(why) => Got::Not(why),
        Read::Op(op) => match sec.items.iter().find(|it| it.0 == op) {
            Some(&(_, 0, b)) => Got::Bytes(b),
            Some(_) => Got::Fault,
            // Planned, but the event was full before the kernel reached it.
            None => Got::Not(Missing::Budget),
        },
    }
}

/// Which bytes of a value its location's pieces filled: a bit mask up to 64 bytes,
/// else a flag per byte.
enum Covered {
    Mask { size: usize, bits: u64 },
    Bytes(Vec<bool>),
}

impl Covered {
    fn new(size: usize) -> Covered {
        if size <= 64 {
            Covered::Mask { size, bits: 0 }
        } else {
            Covered::Bytes(vec![false; size])
        }
    }

    fn add(&mut self, off: usize, len: usize) {
        match self {
            Covered::Mask { bits, .. } if len > 0 => *bits |= low_bits(len) << off,
            Covered::Mask { .. } => {}
            Covered::Bytes(v) => v[off..off + len].iter_mut().for_each(|a| *a = true),
        }
    }

    /// None when every byte was filled (the common case), else a flag per byte.
    fn into_avail(self) -> Option<Vec<bool>> {
        match self {
            Covered::Mask { size, bits } if bits == low_bits(size) => None,
            Covered::Mask { size, bits } => Some((0..size).map(|i| bits >> i & 1 == 1).collect()),
            Covered::Bytes(v) if v.iter().all(|&a| a) => None,
            Covered::Bytes(v) => Some(v),
        }
    }
}

/// A mask of the low `n` bits, n <= 64.
fn low_bits(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

impl Decoder<'_> {
    /// Each value of one side of a call (the arguments or the results), by name.
    fn named(&self, sec: &Section, tops: &[Top]) -> Vec<(Name, GoValue)> {
        tops.iter()
            .map(|t| (t.name.clone(), self.top(sec, t)))
            .collect()
    }

    fn top(&self, sec: &Section, t: &Top) -> GoValue {
        let size = self.cat.types.get(t.node.ty).size as usize;
        // Most values (integers, pointers, strings, slices, interfaces) are a few
        // words: their image is built on the stack, and which bytes the pieces covered
        // is a bit mask, so a call costs the reader no allocation per value.
        let mut small = [0u8; 64];
        let mut large = Vec::new();
        let bytes: &mut [u8] = if size <= small.len() {
            &mut small[..size]
        } else {
            large.resize(size, 0);
            &mut large
        };
        let mut covered = Covered::new(size);
        for p in &t.loc.pieces {
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
                bytes[o..o + b.len()].copy_from_slice(b);
                covered.add(o, b.len());
            }
        }
        // What a location leaves out: a float register, which no uprobe can read, or
        // a value held at the probe point but outside the stack window it reads.
        let in_xmm = t.loc.pieces.iter().any(|p| matches!(p.loc, Loc::Xmm(_)));
        let img = Image {
            bytes: std::borrow::Cow::Borrowed(bytes),
            avail: covered.into_avail(),
            why: if in_xmm {
                Missing::FloatRegister
            } else {
                Missing::Budget
            },
        };
        self.value(sec, &t.node, &img)
    }

    fn value(&self, sec: &Section, n: &Node, img: &Image) -> GoValue {
        let word = |off: u64| img.u64_at(off, 8);
        let res = match &n.how {
            How::Bool => img.u64_at(n.off, 1).map(|v| GoValue::Bool(v != 0)),
            How::Int { signed, size } => {
                let size = u64::from(*size);
                img.u64_at(n.off, size).map(|v| int(v, size, *signed))
            }
            How::Word { size } => img.u64_at(n.off, u64::from(*size)).map(GoValue::Word),
            How::Float { size, complex } => float(img, n.off, *size, *complex),
            How::Opaque => Err(Missing::UnknownType),
            How::Missing(m) => Err(*m),
            How::Addr => word(n.off).map(|a| {
                if a == 0 {
                    GoValue::Nil
                } else {
                    GoValue::Ptr(a)
                }
            }),
            How::Str { bytes } => (|| {
                // A header that was not captured is not an empty string.
                let (ptr, len) = (word(n.off)?, word(n.off + 8)?);
                Ok(match got(sec, *bytes) {
                    _ if len == 0 => text(b"", 0),
                    Got::Bytes(b) => text(b, len),
                    Got::Fault => GoValue::Fault(ptr),
                    Got::Not(why) => GoValue::NotCaptured(why),
                })
            })(),
            How::Slice {
                elem_size,
                bytes_as_text,
                bytes,
                elems,
            } => (|| {
                // A header that was not captured is not a nil slice.
                let (ptr, len) = (word(n.off)?, word(n.off + 8)?);
                if ptr == 0 && len == 0 {
                    return Ok(GoValue::Nil);
                }
                Ok(match got(sec, *bytes) {
                    Got::Bytes(b) => {
                        let shown = (b.len() as u64 / elem_size).min(len) as usize;
                        if *bytes_as_text && let Ok(s) = std::str::from_utf8(&b[..shown]) {
                            return Ok(GoValue::Str {
                                s: s.to_string(),
                                truncated: (shown as u64) < len,
                            });
                        }
                        let inner = Image::read(b);
                        let items = if *bytes_as_text {
                            b[..shown]
                                .iter()
                                .map(|&x| GoValue::Uint(x.into()))
                                .collect()
                        } else {
                            elems
                                .iter()
                                .take(shown)
                                .map(|e| self.value(sec, e, &inner))
                                .collect()
                        };
                        GoValue::List { items, len }
                    }
                    Got::Fault => GoValue::Fault(ptr),
                    Got::Not(why) => GoValue::NotCaptured(why),
                })
            })(),
            How::Array { len, items } => Ok(GoValue::List {
                items: items.iter().map(|e| self.value(sec, e, img)).collect(),
                len: *len,
            }),
            How::Struct(fields) => Ok(GoValue::Struct(
                fields
                    .iter()
                    .map(|(k, e)| (k.clone(), self.value(sec, e, img)))
                    .collect(),
            )),
            How::Ptr { target, inner } => word(n.off).map(|addr| {
                if addr == 0 {
                    return GoValue::Nil;
                }
                match got(sec, *target) {
                    Got::Bytes(b) => self.value(sec, inner, &Image::read(b)),
                    Got::Fault => GoValue::Fault(addr),
                    // The address is the program's own value; its target was not read.
                    Got::Not(_) => GoValue::Ptr(addr),
                }
            }),
            How::Map { count } => word(n.off).map(|addr| {
                if addr == 0 {
                    return GoValue::Nil;
                }
                // A length that was not read is not captured, with its reason: never an
                // unknown length beside a known map.
                match got(sec, *count) {
                    Got::Bytes(b) => GoValue::Map {
                        len: crate::wire::read::<u64>(b, 0),
                    },
                    Got::Fault => GoValue::Fault(addr),
                    Got::Not(why) => GoValue::NotCaptured(why),
                }
            }),
            How::Iface {
                empty,
                itab,
                data,
                text,
            } => self.interface(sec, img, n.off, *empty, *itab, *data, *text),
        };
        res.unwrap_or_else(GoValue::NotCaptured)
    }

    #[allow(clippy::too_many_arguments)]
    fn interface(
        &self,
        sec: &Section,
        img: &Image,
        off: u64,
        empty: bool,
        itab: Read,
        data: Read,
        text_read: Read,
    ) -> Result<GoValue, Missing> {
        let tab = img.u64_at(off, 8)?;
        if tab == 0 {
            return Ok(GoValue::Nil);
        }
        let type_addr = if empty {
            Ok(tab)
        } else {
            match got(sec, itab) {
                Got::Bytes(b) => crate::wire::read::<u64>(b, 8).ok_or(Missing::Budget),
                Got::Fault => return Ok(GoValue::Fault(tab)),
                Got::Not(why) => Err(why),
            }
        };
        // The dynamic type is the point of an interface: without it, say why.
        let type_addr = type_addr?;
        // The descriptor's runtime address, as the catalog knows it (link time).
        let link = self.bias.to_link(RuntimeAddr(type_addr));
        let ty = self
            .cat
            .runtime_type_name(link)
            .unwrap_or_else(|| format!("type@{:#x}", link.0));
        let data = match got(sec, data) {
            Got::Bytes(b) => Some(b),
            _ => None,
        };
        let string = || {
            let len = data.and_then(|d| crate::wire::read::<u64>(d, 8))?;
            match got(sec, text_read) {
                Got::Bytes(b) => Some(text(b, len)),
                _ if len == 0 => Some(text(b"", 0)),
                _ => None,
            }
        };
        let dynamic = self.cat.runtime_type(link).map(|t| self.cat.types.get(t));
        let value = match dynamic.map(|t| (&t.kind, t.size)) {
            _ if is_message_error(&ty) => string(),
            Some((Kind::String, _)) => string(),
            Some((Kind::Int { signed }, size)) if size <= 8 => data.and_then(|b| {
                let v = Image::read(b).u64_at(0, size).ok()?;
                Some(int(v, size, *signed))
            }),
            Some((Kind::Bool, _)) => data.map(|b| GoValue::Bool(b.first() != Some(&0))),
            Some((Kind::Float, size @ (4 | 8))) => {
                data.and_then(|b| float(&Image::read(b), 0, size as u8, false).ok())
            }
            // No DWARF link: the descriptor's reflect.Kind still says how to read it.
            None => match self.cat.runtime_type_kind(link) {
                Some(24) => string(),
                // reflect.Float32, reflect.Float64.
                Some(k @ (13 | 14)) => data.and_then(|b| {
                    float(&Image::read(b), 0, if k == 13 { 4 } else { 8 }, false).ok()
                }),
                Some(k @ 1..=12) => data.and_then(|b| {
                    let size = match k {
                        1 | 3 | 8 => 1,
                        4 | 9 => 2,
                        5 | 10 => 4,
                        _ => 8,
                    };
                    let v = Image::read(b).u64_at(0, size).ok()?;
                    Some(match k {
                        1 => GoValue::Bool(v != 0),
                        2..=6 => int(v, size, true),
                        _ => GoValue::Uint(v),
                    })
                }),
                _ => None,
            },
            _ => None,
        };
        Ok(GoValue::Iface {
            ty,
            value: value.map(Box::new),
        })
    }
}

/// A float or complex number from its bytes (IEEE 754, little-endian).
fn float(img: &Image, off: u64, size: u8, complex: bool) -> Result<GoValue, Missing> {
    let one = |at: u64, size: u64| -> Result<f64, Missing> {
        let bits = img.u64_at(at, size)?;
        Ok(if size == 4 {
            f64::from(f32::from_bits(bits as u32))
        } else {
            f64::from_bits(bits)
        })
    };
    let size = u64::from(size);
    if complex {
        let half = size / 2;
        Ok(GoValue::Complex {
            re: one(off, half)?,
            im: one(off + half, half)?,
            single: half == 4,
        })
    } else {
        Ok(GoValue::Float {
            v: one(off, size)?,
            single: size == 4,
        })
    }
}

/// A string's captured bytes; cut when fewer than its length.
fn text(b: &[u8], len: u64) -> GoValue {
    GoValue::Str {
        s: String::from_utf8_lossy(b).into_owned(),
        truncated: (b.len() as u64) < len,
    }
}

fn int(v: u64, size: u64, signed: bool) -> GoValue {
    if signed {
        let sh = 64 - 8 * size as u32;
        GoValue::Int(((v << sh) as i64) >> sh)
    } else {
        GoValue::Uint(v)
    }
}

/// Standard-library error types whose first field is their message.
fn is_message_error(ty: &str) -> bool {
    matches!(
        ty,
        "*errors.errorString" | "*fmt.wrapError" | "*fmt.wrapErrors"
    )
}
