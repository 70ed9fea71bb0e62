//! What periscope knows of a function in a binary without DWARF (`-ldflags='-s -w'`,
//! most container images):
//! - the offsets in `runtime.g` that calls are paired by, from a table per Go version
//!   (measured from the DWARF of each toolchain; `tests/tests/stripped.rs` checks the
//!   installed ones), never guessed for a version not in it;
//! - each argument's machine words, from the layout Go keeps to print arguments in
//!   panic tracebacks (`FUNCDATA_ArgInfo`), placed in the registers that the
//!   function's own stack-growth path spills them from. That path (the target of the
//!   stack check's `jbe`) saves every register argument to its slot before calling
//!   `runtime.morestack` — integers with `mov`, floats with `movsd`/`movss` — so it
//!   says which word is in which register, floats included. A word in a slot below
//!   the saved ones is a stack argument; one it does not save otherwise (an argument
//!   the function never uses) is shown as not located. A function without a stack
//!   check has no such path, and its words are not shown: the ABI's order alone
//!   cannot tell a float from an integer.
use iced_x86::{Code, Decoder, DecoderOptions, Instruction, OpKind, Register};

use crate::dwarf::GOffsets;
use crate::goabi::{INT_REGS, Loc, Location, Piece};

/// What periscope reads of a Go release's runtime without DWARF, by minor version,
/// measured from each release's DWARF and symbols (1.19.8, 1.21.13, 1.22.10, 1.23.9,
/// 1.24.11, 1.25.5, 1.26.6, 1.27.3); `tests/tests/stripped.rs` checks the installed
/// ones. A version not here is refused, never guessed.
struct Layout {
    minor: u32,
    /// `goid` in `runtime.g` (1.23 and 1.24 have `syscallbp` before it). `stack.hi` is
    /// at 8 in all: `g.stack` is the first field.
    goid: u64,
    /// `gofunc` in `runtime.moduledata`, which FUNCDATA offsets are relative to.
    gofunc: u64,
    /// Size of a `_func` before its pcdata offsets (1.20 added `startLine`).
    func_header: usize,
}

const LAYOUTS: &[Layout] = &[
    Layout {
        minor: 19,
        goid: 152,
        gofunc: 304,
        func_header: 40,
    },
    Layout {
        minor: 21,
        goid: 152,
        gofunc: 320,
        func_header: 44,
    },
    Layout {
        minor: 22,
        goid: 152,
        gofunc: 320,
        func_header: 44,
    },
    Layout {
        minor: 23,
        goid: 160,
        gofunc: 320,
        func_header: 44,
    },
    Layout {
        minor: 24,
        goid: 160,
        gofunc: 320,
        func_header: 44,
    },
    Layout {
        minor: 25,
        goid: 152,
        gofunc: 320,
        func_header: 44,
    },
    Layout {
        minor: 26,
        goid: 152,
        gofunc: 320,
        func_header: 44,
    },
    Layout {
        minor: 27,
        goid: 152,
        gofunc: 344,
        func_header: 44,
    },
];

fn layout(version: &str) -> Option<&'static Layout> {
    let (1, minor) = crate::buildinfo::parse_version(version)? else {
        return None;
    };
    LAYOUTS.iter().find(|l| l.minor == minor)
}

/// The `runtime.g` offsets for a Go version (`go1.21.13`), when it is in the table.
pub fn g_offsets(version: &str) -> Option<GOffsets> {
    layout(version).map(|l| GOffsets {
        goid: l.goid,
        stack_hi: 8,
    })
}

/// The Go minor versions whose `runtime.g` layout is known, for error messages.
pub fn known_versions() -> String {
    let v: Vec<String> = LAYOUTS.iter().map(|l| format!("1.{}", l.minor)).collect();
    v.join(", ")
}

/// What a stripped target offers, said once by each front-end.
pub const NOTE: &str = "no DWARF: raw argument words (a0, a1, …) where the binary shows their registers; latency, goroutines and stacks as usual; results need DWARF";

/// FUNCDATA_ArgInfo's index (cmd/internal/objabi/funcdata.go, Go ≥ 1.17).
pub const FUNCDATA_ARG_INFO: u8 = 5;

/// One argument word of the traceback layout: `size` bytes at `offset` of the
/// argument area (a register argument's offset is its spill slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word {
    pub offset: u32,
    pub size: u8,
}

/// The words of an ArgInfo record (runtime/traceback.go printArgs), in parameter
/// order: (offset, size) pairs, with markers for aggregates, which are flattened
/// here. A word whose offset is past 250 is recorded without it (None). `complete` is
/// false when Go cut the list (`...`: it keeps ten components).
pub fn arg_words(info: &[u8]) -> Option<(Vec<Option<Word>>, bool)> {
    const END_SEQ: u8 = 0xff;
    const START_AGG: u8 = 0xfe;
    const END_AGG: u8 = 0xfd;
    const DOTDOTDOT: u8 = 0xfc;
    const OFFSET_TOO_LARGE: u8 = 0xfb;
    let mut words = Vec::new();
    let mut complete = true;
    let mut i = 0;
    loop {
        match *info.get(i)? {
            END_SEQ => return Some((words, complete)),
            START_AGG | END_AGG => i += 1,
            DOTDOTDOT => {
                complete = false;
                i += 1;
            }
            OFFSET_TOO_LARGE => {
                words.push(None);
                i += 1;
            }
            offset => {
                let size = *info.get(i + 1)?;
                words.push(Some(Word {
                    offset: u32::from(offset),
                    size,
                }));
                i += 2;
            }
        }
    }
}

/// Where the stack-growth path saves each register argument: (offset from the stack
/// pointer at the function's entry, register, bytes). None when the function has no
/// stack check or the path does not look as expected.
pub fn spills(code: &[u8], entry: u64) -> Option<Vec<(u32, Loc, u8)>> {
    let mut d = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    // `cmp rsp, [r14+16]` or, for large frames, `lea r12, [rsp-N]; cmp r12, [r14+16]`,
    // then `jbe` to the path.
    let mut target = None;
    for _ in 0..3 {
        let ins = d.decode();
        if ins.is_invalid() {
            return None;
        }
        if matches!(ins.code(), Code::Jbe_rel8_64 | Code::Jbe_rel32_64) {
            target = Some(ins.near_branch_target());
            break;
        }
    }
    let target = target?;
    let at = usize::try_from(target.checked_sub(entry)?).ok()?;
    let mut d = Decoder::with_ip(64, code.get(at..)?, target, DecoderOptions::NONE);
    let mut out = Vec::new();
    let mut ins = Instruction::default();
    for _ in 0..64 {
        d.decode_out(&mut ins);
        if ins.is_invalid() {
            return None;
        }
        if ins.is_call_near() {
            return Some(out);
        }
        // Only stores of a register into [rsp+disp]; anything else on the way (a
        // `nop`, PCDATA-only instructions) is skipped.
        if ins.op_count() != 2
            || ins.op0_kind() != OpKind::Memory
            || ins.memory_base() != Register::RSP
            || ins.memory_index() != Register::None
            || ins.op1_kind() != OpKind::Register
        {
            continue;
        }
        let disp = u32::try_from(ins.memory_displacement64()).ok()?;
        let reg = ins.op1_register();
        let loc = if reg.is_xmm() {
            Loc::Xmm((reg.number() - Register::XMM0.number()) as u8)
        } else {
            let full = reg.full_register();
            let name = format!("{full:?}").to_uppercase();
            Loc::Reg(INT_REGS.iter().position(|r| *r == name)? as u8)
        };
        let size = u8::try_from(ins.memory_size().size()).ok()?;
        out.push((disp, loc, size));
    }
    None
}

/// Each word's location at the entry: the register the stack-growth path saves to
/// its slot; else, below the first saved slot (the stack-argument area precedes the
/// register arguments' slots), its stack slot (the return address is at 0, the
/// arguments start at 8); else nowhere known (no pieces): a register argument the
/// function never uses and so never saves, or a word whose offset Go did not record.
pub fn place(words: &[Option<Word>], spills: &[(u32, Loc, u8)]) -> Vec<Location> {
    let first_spill = spills.iter().map(|s| s.0).min();
    words
        .iter()
        .map(|w| {
            let loc = w.and_then(|w| {
                let slot = 8 + w.offset;
                match spills.iter().find(|(d, ..)| *d == slot) {
                    Some(&(_, l, _)) => Some(l),
                    None if first_spill.is_some_and(|f| slot < f) => Some(Loc::Stack(slot)),
                    None => None,
                }
            });
            let size = w.map_or(8, |w| u32::from(w.size));
            Location {
                pieces: loc
                    .map(|loc| Piece {
                        offset: 0,
                        size,
                        loc,
                    })
                    .into_iter()
                    .collect(),
            }
        })
        .collect()
}

/// Reads argument layouts out of a stripped binary's function table.
pub struct RawArgs<'a> {
    lines: &'a crate::pclntab::Lines,
    /// `moduledata.gofunc`: FUNCDATA offsets are relative to it.
    gofunc: u64,
    /// Size of a `_func` before its pcdata offsets.
    header: usize,
}

impl<'a> RawArgs<'a> {
    /// None when the Go version or the moduledata cannot be read (a PIE's moduledata
    /// is filled by relocations at load time).
    pub fn new(
        elf: &crate::elf::Elf,
        lines: &'a crate::pclntab::Lines,
        version: &str,
    ) -> Option<RawArgs<'a>> {
        let l = layout(version)?;
        let md = crate::pclntab::moduledata(elf)?;
        let gofunc = crate::pclntab::moduledata_word(elf, md, l.gofunc).filter(|&g| g != 0)?;
        Some(RawArgs {
            lines,
            gofunc,
            header: l.func_header,
        })
    }

    /// The argument words of the function at `entry` with their locations, and
    /// whether the list is complete. None when it has no layout or no stack check.
    pub fn words(
        &self,
        elf: &crate::elf::Elf,
        entry: u64,
        end: u64,
    ) -> Option<(Vec<(u8, Location)>, bool)> {
        let off = self.lines.funcdata(entry, FUNCDATA_ARG_INFO, self.header)?;
        let at = self.gofunc + u64::from(off);
        // A record is at most ~100 bytes (10 components); near the end of the section
        // fewer remain.
        let info = [256usize, 64, 16]
            .iter()
            .find_map(|&n| elf.bytes_at(at, n))?;
        let (mut words, complete) = arg_words(info)?;
        let code = elf.bytes_at(entry, usize::try_from(end - entry).ok()?)?;
        let mut spilled = spills(code, entry)?;
        spilled.sort_by_key(|s| s.0);
        // Register arguments' slots follow the stack arguments, so in a big frame
        // their offsets pass 250 and the layout records only that a word is there.
        // Saved registers are in parameter order too: when as many are saved past 250
        // as there are such words, they are those words, in order.
        let large: Vec<&(u32, Loc, u8)> = spilled.iter().filter(|s| s.0 - 8 > 250).collect();
        if words.iter().filter(|w| w.is_none()).count() == large.len() {
            let mut it = large.iter();
            for w in words.iter_mut().filter(|w| w.is_none()) {
                *w = it.next().map(|s| Word {
                    offset: s.0 - 8,
                    size: s.2,
                });
            }
        }
        // The layout can leave an argument out (the compiler's own `type:.eq.*`
        // functions list only their second): a saved register whose slot no word
        // covers is an argument word too, placed before the next saved one. In a
        // list Go cut short, one with no saved word after it may belong past the cut
        // or to a word recorded without its offset: its place is unknown, so it is
        // not shown.
        let spill_start = spilled.first().map_or(u32::MAX, |s| s.0 - 8);
        for &(slot, _, size) in &spilled {
            let offset = slot - 8;
            let covers = |w: &Word| w.offset <= offset && offset < w.offset + u32::from(w.size);
            if words.iter().flatten().any(covers) {
                continue;
            }
            let next = words
                .iter()
                .position(|w| w.is_some_and(|w| w.offset >= spill_start && w.offset > offset));
            match next {
                Some(at) => words.insert(at, Some(Word { offset, size })),
                None if complete && !words.iter().any(Option::is_none) => {
                    words.push(Some(Word { offset, size }))
                }
                None => {}
            }
        }
        let locs = place(&words, &spilled);
        let sizes = words.iter().map(|w| w.map_or(8, |w| w.size));
        Some((sizes.zip(locs).collect(), complete))
    }
}

/// A stripped binary's argument words as values `a0`, `a1`, …: words of their size,
/// floats where the stack-growth path saves an XMM register.
pub(crate) fn values(
    types: &mut crate::types::Types,
    words: Vec<(u8, Location)>,
) -> Vec<crate::catalog::Value> {
    words
        .into_iter()
        .enumerate()
        .map(|(i, (size, location))| {
            let float = location.has_xmm();
            let bits = 8 * u64::from(size);
            let (name, kind) = if float {
                (format!("float{bits}"), crate::types::Kind::Float)
            } else {
                (format!("word{bits}"), crate::types::Kind::Word)
            };
            let ty = types.intern(crate::types::GoType {
                name: name.clone(),
                size: u64::from(size),
                kind,
            });
            crate::catalog::Value {
                name: format!("a{i}"),
                ty,
                type_name: name,
                location,
                dwarf_entry: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_info_flattens_aggregates_and_notes_a_cut_list() {
        // f(s string, n int): {0x0:8, 0x8:8}, 0x10:8
        let info = [0xfe, 0, 8, 8, 8, 0xfd, 16, 8, 0xff];
        let (w, complete) = arg_words(&info).unwrap();
        assert!(complete);
        assert_eq!(
            w,
            [
                Some(Word { offset: 0, size: 8 }),
                Some(Word { offset: 8, size: 8 }),
                Some(Word {
                    offset: 16,
                    size: 8
                })
            ]
        );
        let (w, complete) = arg_words(&[0xfb, 0, 8, 0xfc, 0xff]).unwrap();
        assert!(!complete);
        assert_eq!(w, [None, Some(Word { offset: 0, size: 8 })]);
        assert!(arg_words(&[0, 8]).is_none(), "no end marker");
    }

    #[test]
    fn versions_outside_the_table_are_unknown() {
        assert_eq!(g_offsets("go1.23.9").unwrap().goid, 160);
        assert_eq!(g_offsets("go1.27.3").unwrap().goid, 152);
        assert!(g_offsets("go1.20.14").is_none());
        assert!(g_offsets("go1.31.0").is_none());
    }
}
