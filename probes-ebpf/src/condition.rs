//! Conditions, evaluated in the kernel before anything is copied out:
//!
//! ```text
//! cond    := or
//! or      := and ("||" and)*
//! and     := unary ("&&" unary)*
//! unary   := "!" unary | "(" cond ")" | compare
//! compare := path [("==" | "!=" | "<" | "<=" | ">" | ">=") literal]
//!          | "startsWith" "(" path "," string ")"
//! path    := name ("." field)*        name: a parameter, a named result, or r0, r1…
//! literal := integer | "string" | true | false | nil
//! ```
//! A path alone must be a bool. Fields are followed through pointers.
use symbols::{Catalog, Function, Kind, TypeId};

use crate::error::ConditionError;
use crate::wire::*;
use crate::word::{Src, Word};

#[derive(Debug, Clone)]
pub struct CompiledCondition {
    pub text: String,
    pub atoms: Vec<psc_atom>,
    pub prog: Vec<u8>,
    pub reads_results: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i128),
    Str(String),
    Op(&'static str),
    End,
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ConditionError> {
    let err = |column: usize, msg: String| ConditionError {
        text: text.into(),
        column,
        msg,
    };
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let s = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(b[s..i].iter().collect()), col));
        } else if c.is_ascii_digit()
            || (c == '-' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let s = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric()) {
                i += 1;
            }
            let lit: String = b[s..i].iter().collect();
            let (neg, digits) = match lit.strip_prefix('-') {
                Some(d) => (true, d.to_string()),
                None => (false, lit.clone()),
            };
            let v = match digits.strip_prefix("0x") {
                Some(h) => i128::from_str_radix(h, 16),
                None => digits.parse::<i128>(),
            }
            .map_err(|_| err(col, format!("`{lit}` is not a number")))?;
            out.push((Tok::Int(if neg { -v } else { v }), col));
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(err(col, "unterminated string".into())),
                    Some('"') => break,
                    Some('\\') => {
                        i += 1;
                        match b.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(&c) => s.push(c),
                            None => return Err(err(col, "unterminated string".into())),
                        }
                    }
                    Some(&c) => s.push(c),
                }
                i += 1;
            }
            i += 1;
            out.push((Tok::Str(s), col));
        } else {
            let two: String = b[i..(i + 2).min(b.len())].iter().collect();
            let op = ["==", "!=", "<=", ">=", "&&", "||"]
                .into_iter()
                .find(|o| *o == two);
            if let Some(op) = op {
                out.push((Tok::Op(op), col));
                i += 2;
            } else if let Some(op) = ["<", ">", "!", "(", ")", ".", ","]
                .into_iter()
                .find(|o| o.starts_with(c))
            {
                out.push((Tok::Op(op), col));
                i += 1;
            } else if c == '=' {
                return Err(err(col, "`=` is assignment; compare with `==`".into()));
            } else {
                return Err(err(col, format!("unexpected character `{c}`")));
            }
        }
    }
    out.push((Tok::End, b.len() + 1));
    Ok(out)
}

#[derive(Debug)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp {
        path: Vec<(String, usize)>,
        op: Option<(&'static str, usize)>,
        lit: Option<(Tok, usize)>,
    },
    StartsWith {
        path: Vec<(String, usize)>,
        prefix: String,
    },
}

/// How deep `(` and `!` may nest, and how many comparisons a condition may hold. The
/// parser and the tree it builds are recursive: without a bound, a condition nested
/// thousands deep overflows periscope's stack (a BPF probe holds PSC_MAX_ATOMS
/// comparisons anyway).
const MAX_NESTING: usize = 64;
const MAX_TERMS: usize = 64;

struct Parser<'a> {
    text: &'a str,
    toks: Vec<(Tok, usize)>,
    i: usize,
    depth: usize,
    terms: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn col(&self) -> usize {
        self.toks[self.i].1
    }
    fn err(&self, column: usize, msg: impl Into<String>) -> ConditionError {
        ConditionError {
            text: self.text.into(),
            column,
            msg: msg.into(),
        }
    }
    fn eat(&mut self, op: &str) -> bool {
        if *self.peek()
            == Tok::Op(match op {
                "||" => "||",
                "&&" => "&&",
                "!" => "!",
                "(" => "(",
                ")" => ")",
                "." => ".",
                "," => ",",
                _ => return false,
            })
        {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, op: &str) -> Result<(), ConditionError> {
        if self.eat(op) {
            Ok(())
        } else {
            Err(self.err(self.col(), format!("expected `{op}`")))
        }
    }
    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut e = self.and()?;
        while self.eat("||") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut e = self.unary()?;
        while self.eat("&&") {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }
    fn unary(&mut self) -> Result<Expr, ConditionError> {
        if matches!(self.peek(), Tok::Op("!" | "(")) {
            self.depth += 1;
            if self.depth > MAX_NESTING {
                return Err(self.err(
                    self.col(),
                    format!("nested too deep (more than {MAX_NESTING} levels of `(` and `!`)"),
                ));
            }
            let e = if self.eat("!") {
                Expr::Not(Box::new(self.unary()?))
            } else {
                self.eat("(");
                let e = self.or()?;
                self.expect(")")?;
                e
            };
            self.depth -= 1;
            return Ok(e);
        }
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.err(
                self.col(),
                format!("too many comparisons (more than {MAX_TERMS})"),
            ));
        }
        if *self.peek() == Tok::Ident("startsWith".into()) {
            self.i += 1;
            self.expect("(")?;
            let path = self.path()?;
            self.expect(",")?;
            let Tok::Str(prefix) = self.peek().clone() else {
                return Err(self.err(self.col(), "startsWith needs a string literal"));
            };
            self.i += 1;
            self.expect(")")?;
            return Ok(Expr::StartsWith { path, prefix });
        }
        let path = self.path()?;
        let op = match self.peek() {
            Tok::Op(o @ ("==" | "!=" | "<" | "<=" | ">" | ">=")) => Some((*o, self.col())),
            _ => None,
        };
        let lit = if op.is_some() {
            self.i += 1;
            let t = self.peek().clone();
            match t {
                Tok::Int(_) | Tok::Str(_) | Tok::Ident(_) => {
                    let c = self.col();
                    self.i += 1;
                    Some((t, c))
                }
                _ => {
                    return Err(self.err(
                        self.col(),
                        "expected a value: a number, a \"string\", true, false or nil",
                    ));
                }
            }
        } else {
            None
        };
        Ok(Expr::Cmp { path, op, lit })
    }
    fn path(&mut self) -> Result<Vec<(String, usize)>, ConditionError> {
        let mut path = Vec::new();
        loop {
            match self.peek().clone() {
                Tok::Ident(s) => {
                    path.push((s, self.col()));
                    self.i += 1;
                }
                _ => return Err(self.err(self.col(), "expected a parameter or result name")),
            }
            if !self.eat(".") {
                return Ok(path);
            }
        }
    }
}

pub fn compile(
    cat: &Catalog,
    f: &Function,
    text: &str,
) -> Result<CompiledCondition, ConditionError> {
    let toks = lex(text)?;
    let mut p = Parser {
        text,
        toks,
        i: 0,
        depth: 0,
        terms: 0,
    };
    let e = p.or()?;
    if *p.peek() != Tok::End {
        return Err(p.err(p.col(), "expected `&&`, `||` or the end of the condition"));
    }
    let mut c = Compiler {
        cat,
        f,
        text,
        atoms: Vec::new(),
        prog: Vec::new(),
        reads_results: false,
    };
    c.expr(&e)?;
    if c.prog.len() > PSC_MAX_PROG as usize {
        return Err(c.err(
            1,
            format!("too complex: at most {} operations", PSC_MAX_PROG),
        ));
    }
    Ok(CompiledCondition {
        text: text.into(),
        atoms: c.atoms,
        prog: c.prog,
        reads_results: c.reads_results,
    })
}

/// Checks a `--capture` path (`r.URL.Path`: the condition syntax's paths) against the
/// function, and returns its names.
pub fn capture_path(
    cat: &Catalog,
    f: &Function,
    text: &str,
) -> Result<Vec<String>, ConditionError> {
    let toks = lex(text)?;
    let mut p = Parser {
        text,
        toks,
        i: 0,
        depth: 0,
        terms: 0,
    };
    let path = p.path()?;
    if *p.peek() != Tok::End {
        return Err(p.err(p.col(), "expected `.field` or the end of the path"));
    }
    let mut c = Compiler {
        cat,
        f,
        text,
        atoms: Vec::new(),
        prog: Vec::new(),
        reads_results: false,
    };
    c.resolve(&path)?;
    Ok(path.into_iter().map(|(name, _)| name).collect())
}

struct Compiler<'a> {
    cat: &'a Catalog,
    f: &'a Function,
    text: &'a str,
    atoms: Vec<psc_atom>,
    prog: Vec<u8>,
    reads_results: bool,
}

/// A resolved path: where the value is, its type, and the section it is read in.
struct Place {
    src: Src,
    offset: u64,
    ty: TypeId,
    section: u8,
}

impl Compiler<'_> {
    fn err(&self, column: usize, msg: impl Into<String>) -> ConditionError {
        ConditionError {
            text: self.text.into(),
            column,
            msg: msg.into(),
        }
    }

    fn expr(&mut self, e: &Expr) -> Result<(), ConditionError> {
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
            Expr::Cmp { path, op, lit } => self.compare(path, *op, lit.as_ref())?,
        }
        Ok(())
    }

    fn resolve(&mut self, path: &[(String, usize)]) -> Result<Place, ConditionError> {
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

    fn compare(
        &mut self,
        path: &[(String, usize)],
        op: Option<(&'static str, usize)>,
        lit: Option<&(Tok, usize)>,
    ) -> Result<(), ConditionError> {
        let place = self.resolve(path)?;
        let col = path[0].1;
        let t = self.cat.types.get(place.ty).clone();
        let name = join(path);
        let cmp = |o: &str| match o {
            "==" => PSC_EQ,
            "!=" => PSC_NE,
            "<" => PSC_LT,
            "<=" => PSC_LE,
            ">" => PSC_GT,
            _ => PSC_GE,
        };
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
        match (&t.kind, lit) {
            (Kind::Int { signed }, Tok::Int(v)) => {
                let w = self.word(&place, t.size as u8, col)?;
                let (lo, hi) = int_range(t.size, *signed);
                if *v < lo || *v > hi {
                    return Err(self.err(
                        *lcol,
                        format!("{v} is out of range for {} ({lo}…{hi})", t.name),
                    ));
                }
                self.push_atom(int_atom(&w, cmp(o), *v as i64, *signed, place.section), col)
            }
            (Kind::Bool, Tok::Ident(b)) if b == "true" || b == "false" => {
                if !matches!(o, "==" | "!=") {
                    return Err(self.err(ocol, "bools compare only with == or !="));
                }
                let w = self.word(&place, 1, col)?;
                self.push_atom(
                    int_atom(&w, cmp(o), i64::from(b == "true"), false, place.section),
                    col,
                )
            }
            (Kind::String, Tok::Str(s)) => {
                if !matches!(o, "==" | "!=") {
                    return Err(self.err(
                        ocol,
                        "strings compare with == or !=, or startsWith(path, \"prefix\")",
                    ));
                }
                self.string_atom(&place, s, PSC_ATOM_STR_EQ, cmp(o), col)
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
                if !matches!(o, "==" | "!=") {
                    return Err(self.err(ocol, "nil compares only with == or !="));
                }
                // An interface is nil when its type word is; a slice when its data is.
                let w = self.word(&place, 8, col)?;
                self.push_atom(int_atom(&w, cmp(o), 0, false, place.section), col)
            }
            (Kind::Float | Kind::Complex, _) => Err(self.err(
                col,
                format!("{name} is a float: floats are not supported in conditions"),
            )),
            (_, Tok::Str(_)) => Err(mismatch(self, "and this is a string")),
            (_, Tok::Int(_)) => Err(mismatch(self, "and this is a number")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_with_columns() {
        let t = lex(r#"u.Name == "alice" && !ok"#).unwrap();
        assert_eq!(t[0], (Tok::Ident("u".into()), 1));
        assert_eq!(t[3], (Tok::Op("=="), 8));
        assert_eq!(t[4], (Tok::Str("alice".into()), 11));
        assert_eq!(t[6], (Tok::Op("!"), 22));
    }

    #[test]
    fn points_at_the_bad_column() {
        let e = lex("a = 3").unwrap_err();
        assert_eq!(e.column, 3);
        let toks = lex("a == ").unwrap();
        let mut p = Parser {
            text: "a == ",
            toks,
            i: 0,
            depth: 0,
            terms: 0,
        };
        let e = p.or().unwrap_err();
        assert_eq!(e.column, 6);
        assert!(e.to_string().contains("column 6"));
    }

    fn parse(text: &str) -> Result<Expr, ConditionError> {
        let mut p = Parser {
            text,
            toks: lex(text)?,
            i: 0,
            depth: 0,
            terms: 0,
        };
        p.or()
    }

    #[test]
    fn deep_or_long_conditions_are_refused_not_a_stack_overflow() {
        for text in [
            format!("{}a{}", "(".repeat(8000), ")".repeat(8000)),
            "(".repeat(20_000),
            format!("{}a", "!".repeat(20_000)),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.msg.contains("nested too deep"), "{}", e.msg);
            assert_eq!(e.column, MAX_NESTING + 1);
        }
        let long = vec!["a == 1"; 20_000].join(" && ");
        let e = parse(&long).unwrap_err();
        assert!(e.msg.contains("too many comparisons"), "{}", e.msg);
        // Right at the bounds, it parses.
        let ok = format!("{}a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(parse(&ok).is_ok());
    }
}
