//! The addresses periscope moves between, as types of their own: a PIE runs at its
//! link-time addresses plus a load bias, uprobes attach at file offsets, and a pointer
//! read from the target is a runtime address. Mixing them up is silent and only wrong
//! for PIE; the types make the conversions explicit.

/// An address as the linker placed it (DWARF, symbols, `.gopclntab`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkAddr(pub u64);

/// An address in the running process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuntimeAddr(pub u64);

/// An offset in the executable file (what a uprobe attaches at).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileOffset(pub u64);

/// Runtime address − link-time address of the main executable: zero unless it is a PIE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadBias(pub u64);

impl LoadBias {
    pub fn to_runtime(self, a: LinkAddr) -> RuntimeAddr {
        RuntimeAddr(a.0.wrapping_add(self.0))
    }

    pub fn to_link(self, a: RuntimeAddr) -> LinkAddr {
        LinkAddr(a.0.wrapping_sub(self.0))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bias_converts_both_ways() {
        let b = LoadBias(0x5555_5555_4000);
        let link = LinkAddr(0x4a1b20);
        assert_eq!(b.to_runtime(link), RuntimeAddr(0x5555_559f_5b20));
        assert_eq!(b.to_link(b.to_runtime(link)), link);
        assert!(LoadBias::default().is_zero());
    }
}
