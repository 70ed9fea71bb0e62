//! Conditions, evaluated in the kernel before anything is copied out:
//!
//! ```text
//! cond    := or
//! or      := and ("||" and)*
//! and     := unary ("&&" unary)*
//! unary   := "!" unary | "(" cond ")" | compare
//! compare := value [("==" | "!=" | "<" | "<=" | ">" | ">=") literal]
//!          | "startsWith" "(" path "," string ")"
//! value   := path | "len" "(" path ")" | "latency"
//! path    := name ("." field)*        name: a parameter, a named result, or r0, r1…
//! literal := integer | duration | "string" | true | false | nil
//! duration:= number ("ns" | "us" | "µs" | "ms" | "s" | "m" | "h")     e.g. 50ms, 1.5s
//! ```
//! A path alone must be a bool. Fields are followed through pointers. Strings order
//! byte-wise, as Go's do. `latency` (unless a parameter has that name) is the call's,
//! decided at the return like a condition on results.
mod compile;
mod lex;
mod parse;

use symbols::{Catalog, Function};

use crate::error::ConditionError;
use crate::wire::*;
use compile::Compiler;
use lex::{Tok, lex};
use parse::Parser;

#[derive(Debug, Clone)]
pub struct CompiledCondition {
    pub text: String,
    pub atoms: Vec<psc_atom>,
    pub prog: Vec<u8>,
    pub reads_results: bool,
}

pub fn compile(
    cat: &Catalog,
    f: &Function,
    text: &str,
) -> Result<CompiledCondition, ConditionError> {
    let mut p = Parser::new(text, lex(text)?);
    let e = p.or()?;
    if *p.peek() != Tok::End {
        return Err(p.err(p.col(), "expected `&&`, `||` or the end of the condition"));
    }
    let mut c = Compiler::new(cat, f, text);
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
    let mut p = Parser::new(text, lex(text)?);
    let path = p.path()?;
    if *p.peek() != Tok::End {
        return Err(p.err(p.col(), "expected `.field` or the end of the path"));
    }
    let mut c = Compiler::new(cat, f, text);
    c.resolve(&path)?;
    Ok(path.into_iter().map(|(name, _)| name).collect())
}

/// `--by EXPR` compiled: the BPF program's `psc_by`, and atoms to append to the
/// condition's (a boolean expression's comparisons).
#[derive(Debug, Clone)]
pub struct CompiledBy {
    pub text: String,
    pub by: psc_by,
    pub atoms: Vec<psc_atom>,
    /// A string's values are named by their first bytes; a bool's are true and false.
    pub kind: u32,
    pub signed: bool,
}

/// Compiles `--by EXPR`: a path to an integer or a string splits by its value; any
/// other expression (a bool, `err != nil`, `latency > 1ms`) splits by true and false.
/// `first_atom`: how many atoms the probe's condition uses already.
pub fn compile_by(
    cat: &Catalog,
    f: &Function,
    text: &str,
    first_atom: usize,
) -> Result<CompiledBy, ConditionError> {
    let mut p = Parser::new(text, lex(text)?);
    let e = p.or()?;
    if *p.peek() != Tok::End {
        return Err(p.err(p.col(), "expected `&&`, `||` or the end of the expression"));
    }
    let mut by = psc_by::default();
    // The process, unless the function has a value of that name (which then wins).
    if text.trim() == "pid" && f.value("pid").is_none() {
        by.kind = PSC_BY_PID as u8;
        return Ok(CompiledBy {
            text: text.into(),
            by,
            atoms: Vec::new(),
            kind: PSC_BY_PID,
            signed: false,
        });
    }
    let mut c = Compiler::new(cat, f, text);
    if let parse::Expr::Cmp {
        path,
        len: false,
        op: None,
        lit: None,
    } = &e
        && let Some(v) = c.value_by(path)?
    {
        return Ok(CompiledBy {
            text: text.into(),
            by: v.0,
            atoms: Vec::new(),
            kind: u32::from(v.0.kind),
            signed: v.1,
        });
    }
    c.expr(&e)?;
    if first_atom + c.atoms.len() > PSC_MAX_ATOMS as usize {
        return Err(c.err(
            1,
            format!(
                "the condition and --by together compare more than {} values",
                PSC_MAX_ATOMS
            ),
        ));
    }
    by.kind = PSC_BY_BOOL as u8;
    by.prog = [PSC_PROG_END as u8; PSC_MAX_PROG as usize];
    for (i, ins) in c.prog.iter().enumerate() {
        // Atom references move past the condition's atoms.
        by.prog[i] = if *ins < 0x80 {
            ins + first_atom as u8
        } else {
            *ins
        };
    }
    Ok(CompiledBy {
        text: text.into(),
        by,
        atoms: c.atoms,
        kind: PSC_BY_BOOL,
        signed: false,
    })
}
