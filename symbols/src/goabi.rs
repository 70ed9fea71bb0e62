//! Where each argument and result lives under Go's internal register ABI on amd64
//! (Go ≥ 1.17; src/cmd/compile/abi-internal.md, "Function call argument and result
//! passing"). The algorithm is the spec's: each value is register-assigned as a whole
//! or not at all, structs and arrays recursively; what does not fit goes to the stack.
use serde::Serialize;

use crate::types::{Kind, TypeId, Types};

/// The nine integer argument registers, in assignment order.
pub const INT_REGS: [&str; 9] = ["RAX", "RBX", "RCX", "RDI", "RSI", "R8", "R9", "R10", "R11"];
const NUM_FLOAT_REGS: u8 = 15; // X0–X14

/// Where one scalar piece of a value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Loc {
    /// Index into [`INT_REGS`].
    Reg(u8),
    /// X0–X14: not readable from a uprobe (pt_regs has no vector registers).
    Xmm(u8),
    /// Byte offset from the stack pointer at the probe point (entry or RET), where the
    /// return address sits at offset 0, so the first stack argument is at 8.
    Stack(u32),
}

/// A piece of a value: `size` bytes at `offset` within the value's memory image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Piece {
    pub offset: u32,
    pub size: u32,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Location {
    pub pieces: Vec<Piece>,
}

impl Location {
    /// True when any part of the value sits in a vector register.
    pub fn has_xmm(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p.loc, Loc::Xmm(_)))
    }

    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .pieces
            .iter()
            .map(|p| match p.loc {
                Loc::Reg(r) => INT_REGS[r as usize].to_string(),
                Loc::Xmm(x) => format!("X{x}"),
                Loc::Stack(off) => format!("[SP+{off}]"),
            })
            .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(",")
        }
    }
}

/// Locations of every parameter at entry and every result at return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub params: Vec<Location>,
    pub results: Vec<Location>,
}

pub fn assign(types: &Types, params: &[TypeId], results: &[TypeId]) -> Assignment {
    let mut st = State {
        types,
        stack: 0,
        int: 0,
        float: 0,
    };
    let params = params.iter().map(|&t| st.assign(t)).collect();
    st.stack = align_up(st.stack, 8);
    st.int = 0;
    st.float = 0;
    let results = results.iter().map(|&t| st.assign(t)).collect();
    Assignment { params, results }
}

/// Locations under ABI0, the stack-based convention of assembly functions and of the cgo
/// wrappers (`main._Cfunc_x.abi0`) of older Go: every value on the stack in order, each
/// aligned to its type, results after the arguments from a pointer-aligned offset
/// (src/cmd/compile/abi-internal.md, "ABI0"). Same walk as `assign`, no registers.
pub fn assign_abi0(types: &Types, params: &[TypeId], results: &[TypeId]) -> Assignment {
    let mut st = State {
        types,
        stack: 0,
        int: INT_REGS.len() as u8,
        float: NUM_FLOAT_REGS,
    };
    let params = params.iter().map(|&t| st.assign(t)).collect();
    st.stack = align_up(st.stack, 8);
    let results = results.iter().map(|&t| st.assign(t)).collect();
    Assignment { params, results }
}

struct State<'a> {
    types: &'a Types,
    stack: u64,
    int: u8,
    float: u8,
}

impl State<'_> {
    fn assign(&mut self, ty: TypeId) -> Location {
        let (int, float) = (self.int, self.float);
        let mut pieces = Vec::new();
        if self.regs(ty, 0, &mut pieces) {
            return Location { pieces };
        }
        self.int = int;
        self.float = float;
        let t = self.types.get(ty);
        if t.size == 0 {
            return Location::default();
        }
        self.stack = align_up(self.stack, self.types.align(ty));
        let off = self.stack;
        self.stack += t.size;
        Location {
            pieces: vec![Piece {
                offset: 0,
                size: t.size as u32,
                // +8: at the probe point the return address is at SP.
                loc: Loc::Stack(off as u32 + 8),
            }],
        }
    }

    fn int_reg(&mut self, offset: u64, size: u64, out: &mut Vec<Piece>) -> bool {
        if self.int as usize >= INT_REGS.len() {
            return false;
        }
        out.push(Piece {
            offset: offset as u32,
            size: size as u32,
            loc: Loc::Reg(self.int),
        });
        self.int += 1;
        true
    }

    fn float_reg(&mut self, offset: u64, size: u64, out: &mut Vec<Piece>) -> bool {
        if self.float >= NUM_FLOAT_REGS {
            return false;
        }
        out.push(Piece {
            offset: offset as u32,
            size: size as u32,
            loc: Loc::Xmm(self.float),
        });
        self.float += 1;
        true
    }

    /// Register-assigns the value of type `ty` at `offset`; false means "fail" in the
    /// spec's sense, and the caller rewinds.
    fn regs(&mut self, ty: TypeId, offset: u64, out: &mut Vec<Piece>) -> bool {
        let t = self.types.get(ty);
        match &t.kind {
            Kind::Bool | Kind::Int { .. } | Kind::Word if t.size <= 8 => {
                self.int_reg(offset, t.size, out)
            }
            Kind::Float => self.float_reg(offset, t.size, out),
            Kind::Complex => {
                let half = t.size / 2;
                self.float_reg(offset, half, out) && self.float_reg(offset + half, half, out)
            }
            Kind::UnsafePointer | Kind::Pointer(_) | Kind::Map | Kind::Chan | Kind::Func => {
                self.int_reg(offset, 8, out)
            }
            Kind::String | Kind::Interface { .. } => {
                self.int_reg(offset, 8, out) && self.int_reg(offset + 8, 8, out)
            }
            Kind::Slice(_) => (0..3).all(|i| self.int_reg(offset + 8 * i, 8, out)),
            Kind::Struct(fields) => fields
                .clone()
                .iter()
                .all(|f| self.regs(f.ty, offset + f.offset, out)),
            Kind::Array { len: 0, .. } => true,
            Kind::Array { elem, len: 1 } => self.regs(*elem, offset, out),
            Kind::Array { .. } => false,
            Kind::Bool | Kind::Int { .. } | Kind::Word | Kind::Opaque => t.size == 0,
        }
    }
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a.max(1)) * a.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Field, GoType};

    fn basic(types: &mut Types, name: &str, size: u64, kind: Kind) -> TypeId {
        types.push(GoType {
            name: name.into(),
            size,
            kind,
        })
    }

    #[test]
    fn spills_the_tenth_int_to_the_stack_and_results_restart_at_rax() {
        let mut t = Types::default();
        let int = basic(&mut t, "int", 8, Kind::Int { signed: true });
        let a = assign(&t, &[int; 11], &[int, int]);
        assert_eq!(a.params[8].pieces[0].loc, Loc::Reg(8));
        assert_eq!(a.params[9].pieces[0].loc, Loc::Stack(8));
        assert_eq!(a.params[10].pieces[0].loc, Loc::Stack(16));
        assert_eq!(a.results[0].pieces[0].loc, Loc::Reg(0));
        assert_eq!(a.results[1].pieces[0].loc, Loc::Reg(1));
    }

    #[test]
    fn a_struct_that_does_not_fit_goes_whole_to_the_stack_and_frees_its_registers() {
        let mut t = Types::default();
        let int = basic(&mut t, "int", 8, Kind::Int { signed: true });
        let fields = (0..10)
            .map(|i| Field {
                name: format!("F{i}"),
                offset: 8 * i,
                ty: int,
            })
            .collect();
        let big = basic(&mut t, "main.Big", 80, Kind::Struct(fields));
        let a = assign(&t, &[int, big, int], &[]);
        assert_eq!(a.params[0].pieces[0].loc, Loc::Reg(0));
        assert_eq!(
            a.params[1].pieces,
            vec![Piece {
                offset: 0,
                size: 80,
                loc: Loc::Stack(8)
            }]
        );
        // The registers the failed struct tried are handed back to the next argument.
        assert_eq!(a.params[2].pieces[0].loc, Loc::Reg(1));
    }

    #[test]
    fn floats_use_their_own_registers_and_mixed_structs_split() {
        let mut t = Types::default();
        let f64t = basic(&mut t, "float64", 8, Kind::Float);
        let i16t = basic(&mut t, "int16", 2, Kind::Int { signed: true });
        let s = basic(
            &mut t,
            "main.S",
            16,
            Kind::Struct(vec![
                Field {
                    name: "A".into(),
                    offset: 0,
                    ty: i16t,
                },
                Field {
                    name: "B".into(),
                    offset: 8,
                    ty: f64t,
                },
            ]),
        );
        let a = assign(&t, &[f64t, s], &[]);
        assert_eq!(a.params[0].pieces[0].loc, Loc::Xmm(0));
        assert_eq!(
            a.params[1].pieces[0],
            Piece {
                offset: 0,
                size: 2,
                loc: Loc::Reg(0)
            }
        );
        assert_eq!(a.params[1].pieces[1].loc, Loc::Xmm(1));
    }
}
