//! The capture recipe: for each argument and result, where each piece of it comes from
//! (registers and stack slots at the probe point, or a byte range the kernel reads
//! through a pointer) and its children. The planner builds it once per probe and the
//! decoder walks the same tree, so the rules for sizes, elements and depth live here
//! and nowhere else.
//!
//! The kernel runs a probe's reads in order and stops when the event is full, and a
//! probe has at most `PSC_MAX_OPS` of them: reads are ranked so that the budget goes
//! where it matters. Paths the user named (`--capture r.URL.Path`) come first, then
//! the arguments' own strings, then the structs they point to, the strings inside
//! those, what lies further along a named path, slice elements, what the elements of
//! slices and arrays point to; a receiver's contents come last.
use std::collections::HashMap;

use symbols::{Catalog, Kind, Location, TypeId};

use crate::plan::Capture;
use crate::value::{Missing, Name};
use crate::wire::*;
use crate::word::{Src, Word};

/// A byte range the kernel reads (the op's index in the probe), or why it is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Op(u16),
    Not(Missing),
}

/// One value: its offset within the bytes it is decoded from (its parent's image) and
/// how to decode it.
#[derive(Debug, Clone)]
pub struct Node {
    pub off: u64,
    pub ty: TypeId,
    pub how: How,
}

#[derive(Debug, Clone)]
pub enum How {
    Bool,
    Int {
        signed: bool,
        size: u8,
    },
    /// A stripped binary's argument word: its size is known, not its type.
    Word {
        size: u8,
    },
    /// A float (4 or 8 bytes) or a complex number (8 or 16: two floats). Read from
    /// memory or the stack like any value; in an XMM register (where the register ABI
    /// passes them) it cannot be read by a uprobe.
    Float {
        size: u8,
        complex: bool,
    },
    /// A type DWARF does not describe.
    Opaque,
    /// Known to be missing before anything is read.
    Missing(Missing),
    /// Shown as its address: channels, funcs, unsafe pointers, pointers not followed.
    Addr,
    Str {
        bytes: Read,
    },
    /// A slice's backing bytes and the elements inside them (at `i * elem_size`).
    Slice {
        elem_size: u64,
        /// `[]byte`: shown as text when it is valid UTF-8.
        bytes_as_text: bool,
        bytes: Read,
        elems: Vec<Node>,
    },
    Array {
        len: u64,
        items: Vec<Node>,
    },
    Struct(Vec<(Name, Node)>),
    /// A pointer followed: `target` holds the pointed-to bytes, decoded as `inner`.
    Ptr {
        target: Read,
        inner: Box<Node>,
    },
    /// A map's element count (the first word of its header, in every Go version).
    Map {
        count: Read,
    },
    /// An interface: its itab (non-empty interfaces), the first 16 bytes its data word
    /// points at (small values), and a string behind that (strings, error messages).
    Iface {
        empty: bool,
        itab: Read,
        data: Read,
        text: Read,
    },
}

/// An argument or result: where it lives at the probe point, and how it is decoded.
#[derive(Debug, Clone)]
pub struct Top {
    pub name: Name,
    pub loc: Location,
    pub node: Node,
}

#[derive(Debug, Clone, Default)]
pub struct Recipe {
    pub args: Vec<Top>,
    pub results: Vec<Top>,
}

/// One read of the kernel's, before the budget decides which ones run.
struct Request {
    op: psc_op,
    rank: u8,
}

/// Ranks: lower reads first.
const RANK_NAMED: u8 = 0;
const RANK_OWN: u8 = 1;
const RANK_POINTED: u8 = 2;
const RANK_INNER: u8 = 3;
/// Inside a struct reached through two pointers (only along a `--capture` path).
const RANK_DEEP: u8 = 4;
const RANK_ELEMS: u8 = 5;
const RANK_IN_ELEMS: u8 = 6;
const RANK_RECEIVER: u8 = 8;

/// Where in the value tree the planner is.
#[derive(Clone)]
struct At {
    sec: u16,
    /// Pointers followed so far.
    depth: u32,
    /// Names from the argument down (`r`, `URL`, `Path`): matched against `--capture`.
    path: Vec<String>,
    receiver: bool,
    in_elems: bool,
}

pub struct Builder<'a> {
    cat: &'a Catalog,
    capture: &'a Capture,
    /// `--capture` paths, each a list of names.
    named: &'a [Vec<String>],
    reqs: Vec<Request>,
    keys: HashMap<(u16, Word, Option<Word>, u16), usize>,
}

impl<'a> Builder<'a> {
    pub fn new(cat: &'a Catalog, capture: &'a Capture, named: &'a [Vec<String>]) -> Self {
        Builder {
            cat,
            capture,
            named,
            reqs: Vec::new(),
            keys: HashMap::new(),
        }
    }

    /// Plans one argument (`sec` = entry) or result (`sec` = return).
    pub fn top(&mut self, v: &symbols::Value, sec: u32, receiver: bool) -> Top {
        let at = At {
            sec: sec as u16,
            depth: 0,
            path: vec![v.name.clone()],
            receiver,
            in_elems: false,
        };
        Top {
            name: v.name.as_str().into(),
            loc: v.location.clone(),
            node: self.node(v.ty, &Src::Direct(v.location.clone()), 0, &at),
        }
    }

    /// Chooses the reads that run (by rank, then in order, at most `PSC_MAX_OPS`), fixes
    /// the recipe's op numbers, and returns the ops in the order the kernel runs them.
    pub fn finish(self, recipe: &mut Recipe) -> Vec<psc_op> {
        let mut order: Vec<usize> = (0..self.reqs.len()).collect();
        order.sort_by_key(|&i| (self.reqs[i].rank, i));
        let mut slot = vec![Read::Not(Missing::Budget); self.reqs.len()];
        let mut ops = Vec::new();
        for i in order.into_iter().take(PSC_MAX_OPS as usize) {
            slot[i] = Read::Op(ops.len() as u16);
            ops.push(self.reqs[i].op);
        }
        for t in recipe.args.iter_mut().chain(recipe.results.iter_mut()) {
            renumber(&mut t.node, &slot);
        }
        ops
    }

    fn rank(&self, at: &At, base: u8) -> u8 {
        if self.named_here(&at.path) {
            return RANK_NAMED;
        }
        let base = if at.in_elems {
            RANK_IN_ELEMS
        } else if at.depth >= 2 {
            base.max(RANK_DEEP)
        } else {
            base
        };
        if at.receiver {
            base + RANK_RECEIVER
        } else {
            base
        }
    }

    /// On or under a path the user named.
    fn named_here(&self, path: &[String]) -> bool {
        self.named
            .iter()
            .any(|n| n.starts_with(path) || path.starts_with(n))
    }

    fn read(
        &mut self,
        at: &At,
        ptr: Option<Word>,
        len: Option<Word>,
        size: u16,
        elem: u16,
        rank: u8,
    ) -> Read {
        let Some(ptr) = ptr else {
            // The pointer itself sits behind more loads than the kernel follows.
            return Read::Not(Missing::Depth);
        };
        let rank = self.rank(at, rank);
        let key = (at.sec, ptr.clone(), len.clone(), size);
        if let Some(&i) = self.keys.get(&key) {
            self.reqs[i].rank = self.reqs[i].rank.min(rank);
            return Read::Op(i as u16);
        }
        let op = psc_op {
            ptr: ptr.to_wire(),
            len: len.as_ref().map(Word::to_wire).unwrap_or_default(),
            kind: if len.is_some() {
                PSC_OP_COUNTED
            } else {
                PSC_OP_FIXED
            } as u16,
            size,
            elem: elem.max(1),
            section: at.sec,
        };
        self.keys.insert(key, self.reqs.len());
        self.reqs.push(Request { op, rank });
        Read::Op((self.reqs.len() - 1) as u16)
    }

    fn node(&mut self, ty: TypeId, src: &Src, off: u64, at: &At) -> Node {
        let t = self.cat.types.get(ty).clone();
        let max_string = self.capture.max_string;
        let how = match t.kind {
            Kind::Bool => How::Bool,
            Kind::Int { signed } => How::Int {
                signed,
                size: t.size.clamp(1, 8) as u8,
            },
            Kind::Word => match src {
                Src::Direct(l) if l.pieces.is_empty() => How::Missing(Missing::Unplaced),
                _ => How::Word {
                    size: t.size.clamp(1, 8) as u8,
                },
            },
            Kind::Float => How::Float {
                size: t.size.clamp(1, 8) as u8,
                complex: false,
            },
            Kind::Complex => How::Float {
                size: t.size.clamp(2, 16) as u8,
                complex: true,
            },
            Kind::Opaque => How::Opaque,
            Kind::Chan | Kind::Func | Kind::UnsafePointer | Kind::Pointer(None) => How::Addr,
            Kind::String => {
                let (p, l) = (src.word(off, 8), src.word(off + 8, 8));
                let rank = if at.depth == 0 { RANK_OWN } else { RANK_INNER };
                How::Str {
                    bytes: self.read(at, p, l, max_string, 1, rank),
                }
            }
            Kind::Slice(elem) => self.slice(elem, src, off, at),
            Kind::Struct(fields) => How::Struct(
                fields
                    .iter()
                    .map(|fl| {
                        let mut inner = at.clone();
                        inner.path.push(fl.name.clone());
                        (
                            fl.name.as_str().into(),
                            self.node(fl.ty, src, off + fl.offset, &inner),
                        )
                    })
                    .collect(),
            ),
            Kind::Array { elem, len } => {
                let es = self.cat.types.get(elem).size;
                let n = len.min(u64::from(self.capture.max_elems));
                // What its elements point to is read after the struct's own fields, as
                // a slice's elements are: a list must not crowd out a name.
                let inner = At {
                    in_elems: true,
                    ..at.clone()
                };
                How::Array {
                    len,
                    items: (0..n)
                        .map(|i| self.node(elem, src, off + i * es, &inner))
                        .collect(),
                }
            }
            Kind::Pointer(Some(target)) => {
                // One level by default; further along a path the user named.
                let named_beyond = self
                    .named
                    .iter()
                    .any(|n| n.len() >= at.path.len() && n.starts_with(&at.path));
                let tsize = self.cat.types.get(target).size;
                if (at.depth > 0 && !named_beyond) || tsize == 0 {
                    How::Addr
                } else {
                    match src.word(off, 8) {
                        None => How::Addr,
                        Some(p) => {
                            let size = tsize.min(u64::from(PSC_MAX_READ)) as u16;
                            let target_read =
                                self.read(at, Some(p.clone()), None, size, 1, RANK_POINTED);
                            let inner_at = At {
                                depth: at.depth + 1,
                                ..at.clone()
                            };
                            How::Ptr {
                                target: target_read,
                                inner: Box::new(self.node(target, &Src::Mem(p), 0, &inner_at)),
                            }
                        }
                    }
                }
            }
            Kind::Map => {
                let rank = if at.depth == 0 { RANK_OWN } else { RANK_INNER };
                How::Map {
                    count: self.read(at, src.word(off, 8), None, 8, 1, rank),
                }
            }
            Kind::Interface { empty } => {
                let rank = if at.depth == 0 { RANK_OWN } else { RANK_INNER };
                let (tab, data) = (src.word(off, 8), src.word(off + 8, 8));
                let itab = if empty {
                    Read::Not(Missing::Budget) // unused: an eface holds its type directly
                } else {
                    self.read(at, tab, None, 16, 1, rank)
                };
                let data_read = self.read(at, data.clone(), None, 16, 1, rank);
                let (sp, sl) = match &data {
                    Some(d) => (d.deref(0, 8), d.deref(8, 8)),
                    None => (None, None),
                };
                let text = self.read(at, sp, sl, max_string, 1, rank);
                How::Iface {
                    empty,
                    itab,
                    data: data_read,
                    text,
                }
            }
        };
        Node { off, ty, how }
    }

    fn slice(&mut self, elem: TypeId, src: &Src, off: u64, at: &At) -> How {
        let et = self.cat.types.get(elem);
        let es = et.size.max(1);
        let bytes_as_text = et.size == 1 && matches!(et.kind, Kind::Int { signed: false });
        let size = slice_read_size(es, self.capture);
        let (p, l) = (src.word(off, 8), src.word(off + 8, 8));
        let bytes = self.read(at, p.clone(), l, size, es as u16, RANK_ELEMS);
        let mut elems = Vec::new();
        if let (Some(p), false) = (p, bytes_as_text) {
            let inner = At {
                depth: at.depth + 1,
                in_elems: true,
                ..at.clone()
            };
            let esrc = Src::Mem(p);
            for i in 0..u64::from(size) / es {
                elems.push(self.node(elem, &esrc, i * es, &inner));
            }
        }
        How::Slice {
            elem_size: es,
            bytes_as_text,
            bytes,
            elems,
        }
    }
}

/// Bytes read of a slice's backing array: the first `max_elems` elements, or for byte
/// slices (text, mostly) as much as a string.
pub fn slice_read_size(elem_size: u64, capture: &Capture) -> u16 {
    let want = if elem_size == 1 {
        u64::from(capture.max_string)
    } else {
        elem_size * u64::from(capture.max_elems)
    };
    want.min(u64::from(PSC_MAX_READ)) as u16
}

fn renumber(n: &mut Node, slot: &[Read]) {
    let fix = |r: &mut Read| {
        if let Read::Op(i) = *r {
            *r = slot[i as usize];
        }
    };
    match &mut n.how {
        How::Str { bytes } => fix(bytes),
        How::Slice { bytes, elems, .. } => {
            fix(bytes);
            elems.iter_mut().for_each(|e| renumber(e, slot));
        }
        How::Array { items, .. } => items.iter_mut().for_each(|e| renumber(e, slot)),
        How::Struct(fields) => fields.iter_mut().for_each(|(_, e)| renumber(e, slot)),
        How::Ptr { target, inner } => {
            fix(target);
            renumber(inner, slot);
        }
        How::Map { count } => fix(count),
        How::Iface {
            itab, data, text, ..
        } => {
            fix(itab);
            fix(data);
            fix(text);
        }
        How::Bool
        | How::Int { .. }
        | How::Word { .. }
        | How::Missing(_)
        | How::Float { .. }
        | How::Opaque
        | How::Addr => {}
    }
}
