//! Where to attach: an entry point the kernel emulates instead of single-stepping, and
//! every RET (return probes go on RETs because uretprobes corrupt Go programs, whose
//! runtime copies stacks and walks return addresses: iovisor/bcc#1320).
//!
//! Measured on this kind of machine (shared/notes/ebpf-on-this-machine.md): a uprobe on
//! `push rbp` or on a `jbe` costs ~0.5 µs a hit; on most other instructions, such as the
//! function's first `cmp rsp,[r14+0x10]`, ~14.5 µs, because those are single-stepped.
use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// `push rbp` right after the stack-bound check (Go ≥ 1.21 prologues). Emulated,
    /// and reached once per call.
    PushAfterCheck,
    /// The check's `jbe` (Go 1.19/1.20 prologues continue with a single-stepped
    /// `sub rsp,N`). Emulated; the program drops hits whose flags say the branch to
    /// morestack is taken, because the call comes back through the check.
    StackCheckBranch,
    /// No stack check (small leaf functions): the first instruction, emulated only when
    /// it is a push.
    FirstInstruction { emulated: bool },
}

impl EntryKind {
    pub fn is_expensive(self) -> bool {
        matches!(self, EntryKind::FirstInstruction { emulated: false })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbePoints {
    pub entry: u64,
    pub entry_kind: EntryKind,
    pub returns: Vec<u64>,
    /// Direct `jmp`s that leave the function (tail calls, mostly in assembly and
    /// wrappers): a call that leaves that way never reaches one of `returns`.
    pub tail_jumps: usize,
}

/// Instructions enough to see the stack check and the one after its branch.
const PROLOGUE: usize = 6;

/// Disassembles `code` (the function's bytes, loaded at `addr`).
pub fn find(code: &[u8], addr: u64) -> Option<ProbePoints> {
    let mut dec = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    // Only the prologue is kept (a catalog decodes millions of instructions: storing
    // them all cost more than decoding them); RETs are noted on the way.
    let mut insns = Vec::with_capacity(PROLOGUE);
    let mut returns = Vec::new();
    let mut tail_jumps = 0;
    let end = addr + code.len() as u64;
    let mut ins = Instruction::default();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        if ins.is_invalid() {
            break;
        }
        match ins.mnemonic() {
            Mnemonic::Ret => returns.push(ins.ip()),
            Mnemonic::Jmp if matches!(ins.op0_kind(), OpKind::NearBranch64) => {
                let target = ins.near_branch_target();
                if target < addr || target >= end {
                    tail_jumps += 1;
                }
            }
            _ => {}
        }
        if insns.len() < PROLOGUE {
            insns.push(ins);
        }
    }
    let first = insns.first()?;
    let (entry, entry_kind) = match stack_check_branch(&insns) {
        Some(i) => match insns.get(i + 1) {
            Some(next) if next.code() == Code::Push_r64 && next.op0_register() == Register::RBP => {
                (next.ip(), EntryKind::PushAfterCheck)
            }
            _ => (insns[i].ip(), EntryKind::StackCheckBranch),
        },
        None => (
            first.ip(),
            EntryKind::FirstInstruction {
                emulated: first.mnemonic() == Mnemonic::Push,
            },
        ),
    };
    Some(ProbePoints {
        entry,
        entry_kind,
        returns,
        tail_jumps,
    })
}

/// Index of the `jbe`/`jb` that branches to morestack, if the prologue has the check:
/// `cmp rsp,[r14+0x10]`, or for big frames `lea r12,[rsp-N]; cmp r12,[r14+0x10]`.
fn stack_check_branch(insns: &[Instruction]) -> Option<usize> {
    for (i, ins) in insns.iter().take(4).enumerate() {
        if ins.mnemonic() == Mnemonic::Cmp
            && ins.op_count() == 2
            && matches!(ins.op0_register(), Register::RSP | Register::R12)
            && ins.op1_kind() == OpKind::Memory
            && ins.memory_base() == Register::R14
            && ins.memory_displacement64() == 0x10
        {
            let next = insns.get(i + 1)?;
            return matches!(next.mnemonic(), Mnemonic::Jbe | Mnemonic::Jb).then_some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go121_prologue_gets_the_push() {
        // cmp rsp,[r14+0x10]; jbe +0x20; push rbp; mov rbp,rsp; ret
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55, 0x48, 0x89, 0xe5, 0xc3,
        ];
        let p = find(&code, 0x1000).unwrap();
        assert_eq!(p.entry, 0x1006);
        assert_eq!(p.entry_kind, EntryKind::PushAfterCheck);
        assert_eq!(p.returns, vec![0x100a]);
    }

    #[test]
    fn go119_prologue_gets_the_branch() {
        // cmp rsp,[r14+0x10]; jbe +0x20; sub rsp,0x18; ret
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x48, 0x83, 0xec, 0x18, 0xc3,
        ];
        let p = find(&code, 0x1000).unwrap();
        assert_eq!(p.entry, 0x1004);
        assert_eq!(p.entry_kind, EntryKind::StackCheckBranch);
    }

    #[test]
    fn jumps_out_of_the_function_are_tail_jumps() {
        // jmp +0 (to the next instruction, inside); jmp -0x100 (outside); no RET
        let code = [0xeb, 0x00, 0xe9, 0xf7, 0xfe, 0xff, 0xff];
        let p = find(&code, 0x1000).unwrap();
        assert_eq!(p.tail_jumps, 1);
        assert!(p.returns.is_empty());
    }

    #[test]
    fn leaf_without_check_is_marked_expensive() {
        // mov rax,rbx; ret
        let p = find(&[0x48, 0x89, 0xd8, 0xc3], 0x1000).unwrap();
        assert_eq!(p.entry, 0x1000);
        assert!(p.entry_kind.is_expensive());
    }
}
