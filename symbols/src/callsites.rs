//! Probes at the call sites of a function instead of inside it.
//!
//! A `call rel32` is an instruction the kernel emulates, and under Go's register ABI
//! the arguments are already in place there: a cheap entry point for any callee, leaf
//! or not. After the call, the first emulated instruction on the straight path (often
//! the `jcc` of an error check) is a cheap return point, where a RET is always
//! single-stepped (~10x the cost here). Both are sound only if every call of the
//! function is one of those call sites: a function whose address is taken can be called
//! through a register, which no call site shows. So this module indexes, once per
//! binary, every direct call, and every way an address can be taken: a RIP-relative
//! reference from code (`lea` of a funcval or the function itself), an 8-byte value in
//! data (funcvals, itabs, jump tables; relocation addends in a PIE), a text offset in
//! the runtime's method tables, and a `jmp` from another function (a tail call).
use std::collections::{HashMap, HashSet};

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic,
    OpKind, Register,
};
use object::{Object, ObjectSection, SectionKind};

use crate::catalog::{Catalog, Function};
use crate::goabi::Loc;

/// More call sites than this and the callee's own points are used: each site is a
/// uprobe (and a multi link's offsets are registered one by one).
pub const MAX_SITES: usize = 64;

/// Instructions looked at after a call for a cheap return point.
const LOOKAHEAD: usize = 24;

/// Where the runtime resumes a goroutine that recovered a panic (`runtime.recovery`,
/// on every Go release since 1.17): a probe there lets shared return points (see
/// `AfterCall::shared`) tell an entry whose frame a panic unwound. None without it.
pub fn recovery_entry(cat: &Catalog) -> Option<u64> {
    cat.function("runtime.recovery")?
        .probes
        .as_ref()
        .map(|p| p.entry)
}

/// Why a function's address may be taken (so it may be called through a register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Code loads its address (`lea` of the function or of a funcval).
    CodeRef(u64),
    /// Its address is an 8-byte value in data (a funcval, an itab, a table).
    Data,
    /// Its text offset is in the runtime's type data (a method table).
    MethodTable,
    /// Another function jumps to it (a tail call).
    TailJump(u64),
}

impl Taken {
    pub fn describe(self) -> String {
        match self {
            Taken::CodeRef(at) => format!("its address is loaded at {at:#x}"),
            Taken::Data => "its address is stored in data (a func value or an itab)".into(),
            Taken::MethodTable => "it is in a method table (interface or reflect calls)".into(),
            Taken::TailJump(at) => format!("it is jumped to from {at:#x}"),
        }
    }
}

/// Every direct call and every taken address of one binary's Go code.
#[derive(Debug, Default)]
pub struct CallGraph {
    /// Callee entry → addresses of the `call` instructions that call it.
    calls: HashMap<u64, Vec<u64>>,
    /// Function entries whose address is taken, with one reason.
    taken: HashMap<u64, Taken>,
    /// Code addresses stored in data (jump tables, funcvals): something may branch
    /// there. (Branches inside a function are found when its call sites are looked at.)
    data_targets: HashSet<u64>,
}

/// A return point after one call site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterCall {
    pub site: u64,
    pub addr: u64,
    /// The instruction there is one the kernel emulates; else it is the return
    /// address itself, single-stepped.
    pub emulated: bool,
    /// Something else branches to it (or between the call and it): a hit there is a
    /// return only when an entry of the same frame is in flight, which the BPF program
    /// checks (a rotated loop's condition after the call in its body, say).
    pub shared: bool,
}

/// Where a function's calls can be seen from its callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePlan {
    /// The `call` instructions (entry points, all emulated).
    pub entries: Vec<u64>,
    /// A return point after each of them, or why there is none.
    pub returns: Result<Vec<AfterCall>, String>,
}

/// Why the callee's own points are used instead.
pub type NoSites = String;

impl CallGraph {
    /// Decodes every function of `cat` and scans its data.
    pub fn build(cat: &Catalog) -> CallGraph {
        let mut g = CallGraph::default();
        let entries: HashSet<u64> = cat.functions.iter().map(|f| f.entry).collect();
        let mut ins = Instruction::default();
        for f in cat.functions.iter().filter(|f| f.end > f.entry) {
            let Some(code) = cat.elf.bytes_at(f.entry, (f.end - f.entry) as usize) else {
                continue;
            };
            let mut dec = Decoder::with_ip(64, code, f.entry, DecoderOptions::NONE);
            while dec.can_decode() {
                dec.decode_out(&mut ins);
                if ins.is_invalid() {
                    break;
                }
                let inside = |a: u64| a >= f.entry && a < f.end;
                if matches!(ins.op0_kind(), OpKind::NearBranch64) {
                    let t = ins.near_branch_target();
                    match ins.flow_control() {
                        FlowControl::Call => g.calls.entry(t).or_default().push(ins.ip()),
                        FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
                            if !inside(t) && entries.contains(&t) =>
                        {
                            g.taken.entry(t).or_insert(Taken::TailJump(ins.ip()));
                        }
                        _ => {}
                    }
                }
                if ins.is_ip_rel_memory_operand() {
                    let a = ins.ip_rel_memory_address();
                    if entries.contains(&a) {
                        g.taken.entry(a).or_insert(Taken::CodeRef(ins.ip()));
                    }
                }
            }
        }
        g.scan_data(cat, &entries);
        g
    }

    /// 8-byte code addresses in data (and in a PIE's relocation addends), and 4-byte
    /// text offsets of function entries in the runtime's type data.
    fn scan_data(&mut self, cat: &Catalog, entries: &HashSet<u64>) {
        let text = crate::pclntab::text_start(&cat.elf);
        let text_end = cat.functions.iter().map(|f| f.end).max().unwrap_or(text);
        let code = |a: u64| a >= text && a < text_end;
        let offsets: HashSet<u32> = entries
            .iter()
            .filter(|&&e| e >= text)
            .map(|&e| (e - text) as u32)
            .collect();
        let obj = cat.elf.object();
        for s in obj.sections() {
            let name = s.name().unwrap_or("");
            let data_like = matches!(
                s.kind(),
                SectionKind::Data | SectionKind::ReadOnlyData | SectionKind::ReadOnlyDataWithRel
            );
            // The function table holds every function's offset: not a reference.
            if !data_like || name == ".gopclntab" || name.starts_with(".debug") {
                continue;
            }
            let Ok(bytes) = s.data() else { continue };
            for w in bytes.chunks_exact(8) {
                let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
                if code(v) {
                    self.note_data(v, entries);
                }
            }
            // Method tables (runtime.method: name, mtyp, ifn, tfn, int32 each) live in
            // the type data: a text offset there may be an interface or reflect call.
            if name.contains("rodata") || name == ".typelink" || name.contains("data.rel.ro") {
                for w in bytes.chunks_exact(4) {
                    let v = u32::from_le_bytes(w.try_into().expect("4 bytes"));
                    if v != 0 && offsets.contains(&v) {
                        self.taken
                            .entry(text + u64::from(v))
                            .or_insert(Taken::MethodTable);
                    }
                }
            }
        }
        // A PIE's data holds code addresses as relocations (R_X86_64_RELATIVE addends).
        if let Some(relocs) = obj.dynamic_relocations() {
            for (_, r) in relocs {
                let a = r.addend() as u64;
                if code(a) {
                    self.note_data(a, entries);
                }
            }
        }
    }

    fn note_data(&mut self, v: u64, entries: &HashSet<u64>) {
        self.data_targets.insert(v);
        if entries.contains(&v) {
            self.taken.entry(v).or_insert(Taken::Data);
        }
    }

    /// Where the calls of `f` can be seen from its callers: every call site, and after
    /// each a return point (results are read there when `results` is set, so nothing
    /// in between may write a register that holds one). `shared`: return points that
    /// other paths reach too may be used (the caller pairs their hits). Err says why not.
    pub fn plan(
        &self,
        cat: &Catalog,
        f: &Function,
        results: bool,
        shared: bool,
    ) -> Result<SitePlan, NoSites> {
        if f.abi0 {
            return Err("ABI0: its arguments are on the stack of a wrapper".into());
        }
        if let Some(t) = self.taken.get(&f.entry) {
            return Err(format!("address taken: {}", t.describe()));
        }
        let sites = self.calls.get(&f.entry).cloned().unwrap_or_default();
        if sites.is_empty() {
            return Err("no direct calls".into());
        }
        if sites.len() > MAX_SITES {
            return Err(format!(
                "{} call sites (more than {MAX_SITES})",
                sites.len()
            ));
        }
        let result_regs = result_registers(f);
        let mut returns = Ok(Vec::with_capacity(sites.len()));
        for &site in &sites {
            match self.after_call(cat, site, results.then_some(&result_regs), shared) {
                Ok(a) => {
                    if let Ok(r) = &mut returns {
                        r.push(a);
                    }
                }
                Err(why) => {
                    returns = Err(why);
                    break;
                }
            }
        }
        Ok(SitePlan {
            entries: sites,
            returns,
        })
    }

    /// The return point after the call (direct or through a register) that returns to
    /// `ret`, a return address a call of `f` pushed (learnt at run time: a func value,
    /// an interface method). Its hits other than this call's are told apart by pairing,
    /// so it is always `shared`. Err when `ret` follows no call.
    pub fn after_return(
        &self,
        cat: &Catalog,
        f: &Function,
        ret: u64,
        results: bool,
    ) -> Result<AfterCall, String> {
        let caller = cat
            .functions
            .iter()
            .find(|c| c.entry < ret && ret <= c.end)
            .ok_or_else(|| format!("the return address {ret:#x} is outside Go's functions"))?;
        let code = cat
            .elf
            .bytes_at(caller.entry, (caller.end - caller.entry) as usize)
            .ok_or_else(|| format!("no code at {:#x}", caller.entry))?;
        let mut dec = Decoder::with_ip(64, code, caller.entry, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        let mut site = None;
        while dec.can_decode() && dec.ip() < ret {
            dec.decode_out(&mut ins);
            if ins.next_ip() == ret
                && matches!(
                    ins.flow_control(),
                    FlowControl::Call | FlowControl::IndirectCall
                )
            {
                site = Some(ins.ip());
            }
        }
        let site = site.ok_or_else(|| format!("no call returns to {ret:#x}"))?;
        let regs = result_registers(f);
        let mut a = self.after_call(cat, site, results.then_some(&regs), true)?;
        a.shared = true;
        Ok(a)
    }

    /// The return point after the call at `site`.
    fn after_call(
        &self,
        cat: &Catalog,
        site: u64,
        results: Option<&HashSet<Register>>,
        shared_ok: bool,
    ) -> Result<AfterCall, String> {
        let caller = cat
            .functions
            .iter()
            .find(|c| c.entry <= site && site < c.end)
            .ok_or_else(|| format!("the call at {site:#x} is outside Go's functions"))?;
        let code = cat
            .elf
            .bytes_at(site, (caller.end - site) as usize)
            .ok_or_else(|| format!("no code at {site:#x}"))?;
        let targets = self.branch_targets(cat, caller);
        let mut dec = Decoder::with_ip(64, code, site, DecoderOptions::NONE);
        let call = dec.decode();
        let ret_addr = call.next_ip();
        if ret_addr >= caller.end {
            return Err(format!("the call at {site:#x} ends its function"));
        }
        if !shared_ok && targets.contains(&ret_addr) {
            return Err(format!(
                "the return address {ret_addr:#x} is also a branch target"
            ));
        }
        let mut info = InstructionInfoFactory::new();
        // Other paths may join the straight one from the call (the loop's condition
        // after a call in its body): the point stays sound because a return is a hit
        // that pairs with an entry in flight for the same goroutine and frame, which
        // another path never has (the BPF program checks; see `shared`).
        let mut shared = targets.contains(&ret_addr);
        let single = AfterCall {
            site,
            addr: ret_addr,
            emulated: false,
            shared,
        };
        for _ in 0..LOOKAHEAD {
            if !dec.can_decode() {
                break;
            }
            let ins = dec.decode();
            if ins.is_invalid() || ins.ip() >= caller.end {
                break;
            }
            // Anything that branches here reaches the point without the call.
            if targets.contains(&ins.ip()) {
                if !shared_ok {
                    break;
                }
                shared = true;
            }
            if emulated(&ins) {
                // A loop between the call and here (an inlined copy's `dec; jne` back
                // to its start) would hit the point once a round: the return address
                // costs less.
                let loops_back = shared
                    && matches!(ins.op0_kind(), OpKind::NearBranch64)
                    && (ret_addr..=ins.ip()).contains(&ins.near_branch_target());
                if loops_back {
                    break;
                }
                return Ok(AfterCall {
                    site,
                    addr: ins.ip(),
                    emulated: true,
                    shared,
                });
            }
            // Past this instruction the state is no longer the call's: stop at it.
            let written = info.info(&ins);
            let moves_sp = written
                .used_registers()
                .iter()
                .any(|r| r.register().full_register() == Register::RSP && is_write(r.access()));
            let writes_result = results.is_some_and(|regs| {
                written
                    .used_registers()
                    .iter()
                    .any(|r| is_write(r.access()) && regs.contains(&r.register().full_register()))
            });
            if moves_sp || writes_result || ins.flow_control() != FlowControl::Next {
                break;
            }
        }
        Ok(single)
    }
}

impl CallGraph {
    /// For a function whose first instruction the kernel single-steps: the first
    /// instruction on the straight path from its entry that the kernel emulates (a
    /// `jcc` of an early check, say), reached once per call (nothing branches to it or
    /// before it) with the arguments still in place (nothing before it writes an
    /// argument register or the stack pointer). None when there is no such point.
    pub fn straight_entry(&self, cat: &Catalog, f: &Function) -> Option<u64> {
        let code = cat.elf.bytes_at(f.entry, (f.end - f.entry) as usize)?;
        let targets = self.branch_targets(cat, f);
        let args = registers_of(f.params.iter().flatten());
        let mut info = InstructionInfoFactory::new();
        let mut dec = Decoder::with_ip(64, code, f.entry, DecoderOptions::NONE);
        for _ in 0..LOOKAHEAD {
            if !dec.can_decode() {
                return None;
            }
            let ins = dec.decode();
            // (The entry itself is where every call arrives.)
            if ins.is_invalid() || (ins.ip() != f.entry && targets.contains(&ins.ip())) {
                return None;
            }
            if emulated(&ins) {
                return (ins.ip() != f.entry).then_some(ins.ip());
            }
            let used = info.info(&ins);
            let clobbers = used.used_registers().iter().any(|r| {
                let reg = r.register().full_register();
                is_write(r.access()) && (reg == Register::RSP || args.contains(&reg))
            });
            if clobbers || ins.flow_control() != FlowControl::Next {
                return None;
            }
        }
        None
    }

    /// Every address `caller` may branch to: its own jumps' targets, and code
    /// addresses in data that fall inside it (a switch's jump table).
    fn branch_targets(&self, cat: &Catalog, caller: &Function) -> HashSet<u64> {
        let mut t: HashSet<u64> = self
            .data_targets
            .iter()
            .copied()
            .filter(|&a| a >= caller.entry && a < caller.end)
            .collect();
        let Some(code) = cat
            .elf
            .bytes_at(caller.entry, (caller.end - caller.entry) as usize)
        else {
            return t;
        };
        let mut dec = Decoder::with_ip(64, code, caller.entry, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        while dec.can_decode() {
            dec.decode_out(&mut ins);
            if ins.is_invalid() {
                break;
            }
            if matches!(
                ins.flow_control(),
                FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
            ) && matches!(ins.op0_kind(), OpKind::NearBranch64)
            {
                t.insert(ins.near_branch_target());
            }
        }
        t
    }
}

fn is_write(a: iced_x86::OpAccess) -> bool {
    use iced_x86::OpAccess::*;
    matches!(a, Write | CondWrite | ReadWrite | ReadCondWrite)
}

/// Instructions the kernel emulates at a uprobe (arch/x86/kernel/uprobes.c): relative
/// jumps and calls, conditional jumps, `push reg`, and nops.
pub fn emulated(ins: &Instruction) -> bool {
    match ins.mnemonic() {
        Mnemonic::Jmp | Mnemonic::Call => matches!(ins.op0_kind(), OpKind::NearBranch64),
        Mnemonic::Push => ins.op0_kind() == OpKind::Register,
        // 0x90 (with an operand-size prefix or not): multi-byte nops are emulated only
        // when byte-identical to the kernel's own, which is not checked here.
        Mnemonic::Nop => matches!(ins.code(), Code::Nopd | Code::Nopw | Code::Nopq),
        _ => ins.is_jcc_short_or_near(),
    }
}

/// The registers that hold `f`'s results when it returns (Go's register ABI).
fn result_registers(f: &Function) -> HashSet<Register> {
    registers_of(f.results.iter().flatten())
}

/// The integer registers that hold `values` (Go's register ABI order).
fn registers_of<'a>(values: impl Iterator<Item = &'a crate::catalog::Value>) -> HashSet<Register> {
    const REGS: [Register; 9] = [
        Register::RAX,
        Register::RBX,
        Register::RCX,
        Register::RDI,
        Register::RSI,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
    ];
    values
        .flat_map(|v| v.location.pieces.iter())
        .filter_map(|p| match p.loc {
            Loc::Reg(r) => REGS.get(r as usize).copied(),
            _ => None,
        })
        .collect()
}
