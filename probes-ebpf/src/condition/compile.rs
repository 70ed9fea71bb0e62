//! Checks an expression against the function's parameters and types, and encodes it as
//! the atoms and postfix program the BPF program evaluates.
use symbols::{Catalog, Function, Kind, TypeId};

use super::lex::Tok;
use super::parse::{CmpOp, Expr};
use crate::error::ConditionError;
use crate::wire::*;
use crate::word::{Src, Word};

pub(super) struct Compiler<'a> {
    pub(super) cat: &'a Catalog,
    pub(super) f: &'a Function,
    pub(super) text: &'a str,
    pub(super) atoms: Vec<psc_atom>,
    pub(super) prog: Vec<u8>,
    pub(super) reads_results: bool,
}

/// A resolved path: where the value is, its type, and the section it is read in.
pub(super) struct Place {
    src: Src,
    offset: u64,
    ty: TypeId,
    section: u8,
}

impl<'a> Compiler<'a> {
    pub(super) fn new(cat: &'a Catalog, f: &'a Function, text: &'a str) -> Self {
        Compiler {
            cat,
            f,
            text,
            atoms: Vec::new(),
            prog: Vec::new(),
            reads_results: false,
        }
    }

    pub(super) fn err(&self, column: usize, msg: impl Into<String>) -> ConditionError {
        ConditionError {
            text: self.text.into(),
            column,
            msg: msg.into(),
        }
    }

    pub(super) fn expr(&mut self, e: &Expr) -> Result<(), ConditionError> {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.expr(a)?;
                self.expr(b)?;
                self.prog.push(if matches!(e, Expr::And(..)) {
                    PSC_PROG_AND
                } else {
                    PSC_PROG_OR
                } as u8);
            }
            Expr::Not(a) => {
                self.expr(a)?;
                self.prog.push(PSC_PROG_NOT as u8);
            }
            Expr::StartsWith { path, prefix } => {
                let place = self.resolve(path)?;
                let col = path[0].1;
                if !matches!(self.cat.types.get(place.ty).kind, Kind::String) {
                    return Err(self.err(
                        col,
                        format!(
                            "startsWith needs a string, {} is {}",
                            join(path),
                            self.cat.types.name(place.ty)
                        ),
                    ));
                }
                self.string_atom(&place, prefix, PSC_ATOM_STR_PREFIX, PSC_EQ, col)?;
            }
            Expr::Cmp {
                path,
                len: false,
                op,
                lit,
            } if path.len() == 1 && path[0].0 == "latency" && self.f.value("latency").is_none() => {
                self.latency(path[0].1, *op, lit.as_ref())?
            }
            Expr::Cmp {
                path,
                len: true,
                op,
                lit,
            } => self.length(path, *op, lit.as_ref())?,
            Expr::Cmp { path, op, lit, .. } => self.compare(path, *op, lit.as_ref())?,
        }
        Ok(())
    }

    pub(super) fn resolve(&mut self, path: &[(String, usize)]) -> Result<Place, ConditionError> {
        let (name, col) = &path[0];
        let Some((v, is_result)) = self.f.value(name) else {
            let mut names: Vec<&str> = self
                .f
                .params
                .iter()
                .flatten()
                .filter(|v| !v.is_internal())
                .map(|v| v.name.as_str())
                .collect();
            names.extend(self.f.results.iter().flatten().map(|v| v.name.as_str()));
            return Err(self.err(
                *col,
                format!(
                    "{} has no parameter or result `{name}` (it has: {})",
                    self.f.name,
                    names.join(", ")
                ),
            ));
        };
        if v.location.has_xmm() && path.len() == 1 {
            return Err(self.err(
                *col,
                format!("`{name}` is a float, held in an XMM register that a uprobe cannot read"),
            ));
        }
        if is_result {
            self.reads_results = true;
        }
        let mut place = Place {
            src: Src::Direct(v.location.clone()),
            offset: 0,
            ty: v.ty,
            section: if is_result {
                PSC_SEC_RET
            } else {
                PSC_SEC_ENTRY
            } as u8,
        };
        for (field, fcol) in &path[1..] {
            let types = &self.cat.types;
            // Follow pointers to the struct that has the field.
            if let Kind::Pointer(Some(t)) = types.get(place.ty).kind {
                let word = place.src.word(place.offset, 8).ok_or_else(|| {
                    self.err(
                        *fcol,
                        "the pointer chain is too long to follow in the kernel (at most 4 loads)",
                    )
                })?;
                place = Place {
                    src: Src::Mem(word),
                    offset: 0,
                    ty: t,
                    section: place.section,
                };
            }
            let t = types.get(place.ty);
            let Kind::Struct(fields) = &t.kind else {
                return Err(self.err(
                    *fcol,
                    format!("{} is not a struct: it has no field `{field}`", t.name),
                ));
            };
            let Some(fl) = fields.iter().find(|f| &f.name == field) else {
                let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                return Err(self.err(
                    *fcol,
                    format!(
                        "{} has no field `{field}` (fields: {})",
                        t.name,
                        names.join(", ")
                    ),
                ));
            };
            place.offset += fl.offset;
            place.ty = fl.ty;
        }
        Ok(place)
    }

    fn push_atom(&mut self, a: psc_atom, col: usize) -> Result<(), ConditionError> {
        if self.atoms.len() >= PSC_MAX_ATOMS as usize {
            return Err(self.err(
                col,
                format!("too many comparisons: at most {}", PSC_MAX_ATOMS),
            ));
        }
        self.prog.push(self.atoms.len() as u8);
        self.atoms.push(a);
        Ok(())
    }

    fn word(&self, place: &Place, width: u8, col: usize) -> Result<Word, ConditionError> {
        place.src.word(place.offset, width).ok_or_else(|| {
            self.err(
                col,
                "this value cannot be read at the probe point (float register, or too many loads)",
            )
        })
    }

    fn string_atom(
        &mut self,
        place: &Place,
        s: &str,
        kind: u32,
        cmp: u32,
        col: usize,
    ) -> Result<(), ConditionError> {
        if s.len() > PSC_MAX_STR as usize {
            return Err(self.err(
                col,
                format!("string constants are limited to {} bytes", PSC_MAX_STR),
            ));
        }
        let ptr = self.word(place, 8, col)?;
        let len = place
            .src
            .word(place.offset + 8, 8)
            .ok_or_else(|| self.err(col, "cannot read the string's length"))?;
        let mut a = psc_atom {
            a: ptr.to_wire(),
            b: len.to_wire(),
            kind: kind as u8,
            cmp: cmp as u8,
            section: place.section,
            str_len: s.len() as u32,
            ..Default::default()
        };
        a.str_[..s.len()].copy_from_slice(s.as_bytes());
        self.push_atom(a, col)
    }

    /// `latency > 50ms`: decided in the kernel at the return, against the call's
    /// latency less the probe's own time (as the histogram records it).
    fn latency(
        &mut self,
        col: usize,
        op: Option<(CmpOp, usize)>,
        lit: Option<&(Tok, usize)>,
    ) -> Result<(), ConditionError> {
        let (Some((o, _)), Some((lit, lcol))) = (op, lit) else {
            return Err(self.err(col, "compare latency with a duration: latency > 50ms"));
        };
        let ns = match lit {
            Tok::Duration(ns) => *ns,
            Tok::Int(0) => 0,
            _ => {
                return Err(self.err(
                    *lcol,
                    "latency compares with a duration: 50ms, 1.5s, 200us, 300ns",
                ));
            }
        };
        self.reads_results = true;
        let a = psc_atom {
            kind: PSC_ATOM_LATENCY as u8,
            cmp: o.wire() as u8,
            section: PSC_SEC_RET as u8,
            value: i64::try_from(ns).unwrap_or(i64::MAX),
            ..Default::default()
        };
        self.push_atom(a, col)
    }

    /// `len(x) > 3` for a string, a slice (their length word) or a map (the count that
    /// leads its header; a nil map has length 0).
    fn length(
        &mut self,
        path: &[(String, usize)],
        op: Option<(CmpOp, usize)>,
        lit: Option<&(Tok, usize)>,
    ) -> Result<(), ConditionError> {
        let place = self.resolve(path)?;
        let col = path[0].1;
        let t = self.cat.types.get(place.ty).clone();
        let name = join(path);
        let (Some((o, _)), Some((Tok::Int(v), lcol))) = (op, lit) else {
            return Err(self.err(col, format!("compare len({name}) with a number")));
        };
        let (word, nil_is_zero) = match t.kind {
            Kind::String | Kind::Slice(_) => (self.word_at(&place, 8, col)?, false),
            Kind::Map => {
                let ptr = self.word(&place, 8, col)?;
                let count = ptr
                    .deref(0, 8)
                    .ok_or_else(|| self.err(col, "the map is behind too many loads"))?;
                (count, true)
            }
            _ => {
                return Err(self.err(
                    col,
                    format!("len needs a string, slice or map: {name} is {}", t.name),
                ));
            }
        };
        if *v < 0 || *v > i128::from(i64::MAX) {
            return Err(self.err(*lcol, format!("{v} is not a length")));
        }
        let mut a = int_atom(&word, o.wire(), *v as i64, false, place.section);
        if nil_is_zero {
            a.is_signed |= PSC_ATOM_NIL_IS_ZERO as u8;
        }
        self.push_atom(a, col)
    }

    /// `--by PATH` for an integer or string: how to read it, and whether it is signed.
    /// None for a bool (split by the expression's truth instead).
    pub(super) fn value_by(
        &mut self,
        path: &[(String, usize)],
    ) -> Result<Option<(psc_by, bool)>, ConditionError> {
        let place = self.resolve(path)?;
        let col = path[0].1;
        let t = self.cat.types.get(place.ty).clone();
        let mut by = psc_by {
            section: place.section,
            ..Default::default()
        };
        match word_as_uint(t.kind) {
            Kind::Int { signed } => {
                by.kind = PSC_BY_INT as u8;
                by.a = self.word(&place, t.size as u8, col)?.to_wire();
                by.is_signed = u8::from(signed);
                Ok(Some((by, signed)))
            }
            Kind::String => {
                by.kind = PSC_BY_STR as u8;
                by.a = self.word(&place, 8, col)?.to_wire();
                by.b = self.word_at(&place, 8, col)?.to_wire();
                Ok(Some((by, false)))
            }
            Kind::Bool => Ok(None),
            _ => Err(self.err(
                col,
                format!(
                    "--by splits by a bool, an integer, a string or a comparison: {} is {}",
                    join(path),
                    t.name
                ),
            )),
        }
    }

    /// The word `off` bytes into the value at `place`.
    fn word_at(&self, place: &Place, off: u64, col: usize) -> Result<Word, ConditionError> {
        place
            .src
            .word(place.offset + off, 8)
            .ok_or_else(|| self.err(col, "this value cannot be read at the probe point"))
    }

    fn compare(
        &mut self,
        path: &[(String, usize)],
        op: Option<(CmpOp, usize)>,
        lit: Option<&(Tok, usize)>,
    ) -> Result<(), ConditionError> {
        let place = self.resolve(path)?;
        let col = path[0].1;
        let t = self.cat.types.get(place.ty).clone();
        let name = join(path);
        let (Some((o, ocol)), Some((lit, lcol))) = (op, lit) else {
            // A path alone: a bool.
            if !matches!(t.kind, Kind::Bool) {
                return Err(self.err(
                    col,
                    format!(
                        "{name} is {}, not a bool: compare it with ==, !=, <, >…",
                        t.name
                    ),
                ));
            }
            let w = self.word(&place, 1, col)?;
            return self.push_atom(int_atom(&w, PSC_NE, 0, false, place.section), col);
        };
        let mismatch = |me: &Self, what: &str| {
            me.err(
                *lcol,
                format!("type mismatch: {name} is {}, {what}", t.name),
            )
        };
        match (&word_as_uint(t.kind.clone()), lit) {
            (Kind::Int { signed }, Tok::Int(v)) => {
                let w = self.word(&place, t.size as u8, col)?;
                let (lo, hi) = int_range(t.size, *signed);
                if *v < lo || *v > hi {
                    return Err(self.err(
                        *lcol,
                        format!("{v} is out of range for {} ({lo}…{hi})", t.name),
                    ));
                }
                self.push_atom(
                    int_atom(&w, o.wire(), *v as i64, *signed, place.section),
                    col,
                )
            }
            (Kind::Bool, Tok::Ident(b)) if b == "true" || b == "false" => {
                if !o.is_equality() {
                    return Err(self.err(ocol, "bools compare only with == or !="));
                }
                let w = self.word(&place, 1, col)?;
                self.push_atom(
                    int_atom(&w, o.wire(), i64::from(b == "true"), false, place.section),
                    col,
                )
            }
            (Kind::String, Tok::Str(s)) if o.is_equality() => {
                self.string_atom(&place, s, PSC_ATOM_STR_EQ, o.wire(), col)
            }
            // Byte-wise, as Go orders strings.
            (Kind::String, Tok::Str(s)) => {
                self.string_atom(&place, s, PSC_ATOM_STR_ORDER, o.wire(), col)
            }
            (
                Kind::Pointer(_)
                | Kind::Map
                | Kind::Chan
                | Kind::Func
                | Kind::UnsafePointer
                | Kind::Interface { .. }
                | Kind::Slice(_),
                Tok::Ident(n),
            ) if n == "nil" => {
                if !o.is_equality() {
                    return Err(self.err(ocol, "nil compares only with == or !="));
                }
                // An interface is nil when its type word is; a slice when its data is.
                let w = self.word(&place, 8, col)?;
                self.push_atom(int_atom(&w, o.wire(), 0, false, place.section), col)
            }
            // A float in memory or on the stack (one in an XMM register cannot be read:
            // `word` says so). Go converts the constant to the field's type.
            (Kind::Float, _) => {
                let c = match lit {
                    Tok::Int(v) => *v as f64,
                    Tok::Float(v) => *v,
                    _ => return Err(mismatch(self, "and compares with a number (1.5, 30)")),
                };
                let w = self.word(&place, t.size.clamp(4, 8) as u8, col)?;
                let a = psc_atom {
                    a: w.to_wire(),
                    kind: PSC_ATOM_FLOAT as u8,
                    cmp: o.wire() as u8,
                    section: place.section,
                    value: float_key(c, t.size.clamp(4, 8) as u8) as i64,
                    ..Default::default()
                };
                self.push_atom(a, col)
            }
            (Kind::Complex, _) => Err(self.err(
                col,
                format!("{name} is a complex number: they are not supported in conditions"),
            )),
            (_, Tok::Float(_)) => Err(mismatch(self, "and this is a float")),
            (_, Tok::Str(_)) => Err(mismatch(self, "and this is a string")),
            (_, Tok::Int(_)) => Err(mismatch(self, "and this is a number")),
            (_, Tok::Duration(_)) => Err(mismatch(
                self,
                "and a duration compares only with latency (latency > 50ms)",
            )),
            (_, Tok::Ident(n)) if n == "nil" => Err(mismatch(self, "which cannot be nil")),
            (_, Tok::Ident(n)) if n == "true" || n == "false" => {
                Err(mismatch(self, "and this is a bool"))
            }
            (_, Tok::Ident(n)) => Err(self.err(
                *lcol,
                format!("`{n}` is not a value: use a number, a \"string\", true, false or nil"),
            )),
            _ => Err(mismatch(self, "which cannot be compared")),
        }
    }
}

fn int_atom(w: &Word, cmp: u32, value: i64, signed: bool, section: u8) -> psc_atom {
    psc_atom {
        a: w.to_wire(),
        kind: PSC_ATOM_INT as u8,
        cmp: cmp as u8,
        is_signed: u8::from(signed),
        section,
        value,
        ..Default::default()
    }
}

/// A float's bits mapped so that unsigned order is the floats' order (negatives
/// reversed below the positives; -0 is 0), in the float's own width: what the BPF
/// program's float_key computes from the value it reads.
pub(crate) fn float_key(v: f64, width: u8) -> u64 {
    if width == 4 {
        let mut b = (v as f32).to_bits();
        if b & 0x7fff_ffff == 0 {
            b = 0;
        }
        u64::from(if b >> 31 == 1 { !b } else { b | 0x8000_0000 })
    } else {
        let mut b = v.to_bits();
        if b << 1 == 0 {
            b = 0;
        }
        if b >> 63 == 1 { !b } else { b | 1 << 63 }
    }
}

fn int_range(size: u64, signed: bool) -> (i128, i128) {
    let bits = (size.clamp(1, 8) * 8) as u32;
    if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    }
}

fn join(path: &[(String, usize)]) -> String {
    path.iter()
        .map(|(s, _)| s.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

/// A stripped binary's argument word compares as an unsigned integer of its size.
fn word_as_uint(k: Kind) -> Kind {
    match k {
        Kind::Word => Kind::Int { signed: false },
        k => k,
    }
}

#[cfg(test)]
mod tests {
    use super::float_key;

    #[test]
    fn float_keys_order_as_the_floats_do() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1.0,
            -5e-324,
            0.0,
            5e-324,
            0.1,
            1.0,
            2.25,
            1e300,
            f64::INFINITY,
        ];
        for width in [4u8, 8] {
            let keys: Vec<u64> = xs.iter().map(|&x| float_key(x, width)).collect();
            // float32 rounds the tiny ones to ±0, which compare equal.
            assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{width}: {keys:x?}");
            assert_eq!(float_key(-0.0, width), float_key(0.0, width));
        }
        let keys: Vec<u64> = xs.iter().map(|&x| float_key(x, 8)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:x?}");
        // A float32 field compared with 0.1 compares with float32(0.1), as Go does.
        assert_eq!(float_key(0.1, 4), float_key(f64::from(0.1f32), 4));
    }
}
