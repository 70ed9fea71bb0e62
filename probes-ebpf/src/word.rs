//! Words: how to compute a scalar at a probe point (a register or stack slot, then a
//! chain of loads). The planner and the decoder derive the same words from a value's
//! type and location, which is how captured items find their meaning again.
use symbols::{Loc, Location};

use crate::wire::{PSC_BASE_REG, PSC_BASE_STACK, PSC_MAX_PATH, psc_word};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Base {
    Reg(u8),
    Stack(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Word {
    pub base: Base,
    pub path: Vec<i32>,
    pub width: u8,
}

impl Word {
    /// The word loaded from `self + off` (self holds an address).
    pub fn deref(&self, off: u64, width: u8) -> Option<Word> {
        if self.path.len() >= PSC_MAX_PATH as usize {
            return None;
        }
        let mut path = self.path.clone();
        path.push(i32::try_from(off).ok()?);
        Some(Word {
            base: self.base.clone(),
            path,
            width,
        })
    }

    pub fn to_wire(&self) -> psc_word {
        let mut w = psc_word {
            width: self.width,
            nderef: self.path.len() as u8,
            ..Default::default()
        };
        match self.base {
            Base::Reg(r) => {
                w.base = PSC_BASE_REG as u8;
                w.reg = r;
            }
            Base::Stack(off) => {
                w.base = PSC_BASE_STACK as u8;
                w.stack_off = off;
            }
        }
        for (i, p) in self.path.iter().enumerate() {
            w.path[i] = *p;
        }
        w
    }
}

/// Where a value's bytes come from.
#[derive(Debug, Clone)]
pub enum Src {
    /// Held directly at the probe point, in registers and stack slots.
    Direct(Location),
    /// In memory at the address held by this word.
    Mem(Word),
}

impl Src {
    /// The word for the scalar at `offset` within the value.
    pub fn word(&self, offset: u64, width: u8) -> Option<Word> {
        match self {
            Src::Direct(loc) => loc.pieces.iter().find_map(|p| {
                let (o, s) = (u64::from(p.offset), u64::from(p.size));
                match p.loc {
                    Loc::Reg(r) if o == offset => Some(Word {
                        base: Base::Reg(r),
                        path: vec![],
                        width: width.min(s as u8),
                    }),
                    Loc::Stack(base) if offset >= o && offset + u64::from(width) <= o + s => {
                        Some(Word {
                            base: Base::Stack(base + (offset - o) as u32),
                            path: vec![],
                            width,
                        })
                    }
                    _ => None,
                }
            }),
            Src::Mem(addr) => addr.deref(offset, width),
        }
    }
}
