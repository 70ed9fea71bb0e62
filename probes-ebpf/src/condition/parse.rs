//! The condition language's grammar (see mod.rs): tokens → an expression tree, with
//! bounds on nesting so that no input can overflow periscope's stack.
use super::lex::Tok;
use crate::error::ConditionError;

#[derive(Debug)]
pub(super) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp {
        path: Vec<(String, usize)>,
        /// `len(path)`: the length of a string, slice or map.
        len: bool,
        op: Option<(CmpOp, usize)>,
        lit: Option<(Tok, usize)>,
    },
    StartsWith {
        path: Vec<(String, usize)>,
        prefix: String,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn from_token(t: &str) -> Option<CmpOp> {
        Some(match t {
            "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            _ => return None,
        })
    }

    /// The BPF program's code for it (psc_cmp).
    pub(super) fn wire(self) -> u32 {
        use crate::wire::*;
        match self {
            CmpOp::Eq => PSC_EQ,
            CmpOp::Ne => PSC_NE,
            CmpOp::Lt => PSC_LT,
            CmpOp::Le => PSC_LE,
            CmpOp::Gt => PSC_GT,
            CmpOp::Ge => PSC_GE,
        }
    }

    pub(super) fn is_equality(self) -> bool {
        matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// How deep `(` and `!` may nest, and how many comparisons a condition may hold. The
/// parser and the tree it builds are recursive: without a bound, a condition nested
/// thousands deep overflows periscope's stack (a BPF probe holds PSC_MAX_ATOMS
/// comparisons anyway).
const MAX_NESTING: usize = 64;
const MAX_TERMS: usize = 64;

pub(super) struct Parser<'a> {
    pub(super) text: &'a str,
    pub(super) toks: Vec<(Tok, usize)>,
    pub(super) i: usize,
    pub(super) depth: usize,
    pub(super) terms: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str, toks: Vec<(Tok, usize)>) -> Self {
        Parser {
            text,
            toks,
            i: 0,
            depth: 0,
            terms: 0,
        }
    }

    pub(super) fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    pub(super) fn col(&self) -> usize {
        self.toks[self.i].1
    }
    pub(super) fn err(&self, column: usize, msg: impl Into<String>) -> ConditionError {
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
    pub(super) fn or(&mut self) -> Result<Expr, ConditionError> {
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
        let len = *self.peek() == Tok::Ident("len".into())
            && self.toks.get(self.i + 1).map(|t| &t.0) == Some(&Tok::Op("("));
        let path = if len {
            self.i += 2;
            let p = self.path()?;
            self.expect(")")?;
            p
        } else {
            self.path()?
        };
        let op = match self.peek() {
            Tok::Op(o) => CmpOp::from_token(o).map(|o| (o, self.col())),
            _ => None,
        };
        let lit = if op.is_some() {
            self.i += 1;
            let t = self.peek().clone();
            match t {
                Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) | Tok::Str(_) | Tok::Ident(_) => {
                    let c = self.col();
                    self.i += 1;
                    Some((t, c))
                }
                _ => {
                    return Err(self.err(
                        self.col(),
                        "expected a value: a number, a duration (50ms), a \"string\", true, false or nil",
                    ));
                }
            }
        } else {
            None
        };
        Ok(Expr::Cmp { path, len, op, lit })
    }
    pub(super) fn path(&mut self) -> Result<Vec<(String, usize)>, ConditionError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::lex::lex;

    #[test]
    fn points_at_the_bad_column() {
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
