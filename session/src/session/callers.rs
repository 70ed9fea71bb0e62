//! A call's callers, from the stack the kernel recorded at its entry.
use std::sync::Arc;

use super::{Callers, Session};

impl Session {
    /// Whether every entry point of the probe on `func` of file `b` is a `push rbp`.
    fn entry_is_push(&self, b: usize, func: usize) -> bool {
        let Some(m) = self
            .active
            .values()
            .flat_map(|a| &a.members)
            .find(|m| m.build == b && m.func == func)
        else {
            return false;
        };
        !m.points.entries.is_empty()
            && m.points.entries.iter().all(|p| {
                p.kind == probes_ebpf::wire::PSC_POINT_ENTRY
                    && self.builds[b].cat.elf.bytes_at(p.addr, 1) == Some(&[0x55][..])
            })
    }

    /// The callers of a call of `func` from the stack the kernel recorded: the walk
    /// starts at the probe's pc (in `func` itself at an entry: dropped; the call
    /// instruction at a call site: the caller, exact) and follows frame pointers;
    /// at an entry before `push rbp` it misses the immediate caller, whose return
    /// address at [rsp] the event carries.
    pub(super) fn callers(
        &mut self,
        b: usize,
        func: usize,
        pid: u32,
        s: probes_ebpf::decode::StackRef,
    ) -> Callers {
        let id = match s.id {
            Ok(id) => id,
            Err(e) => {
                return Callers::NotCaptured(match i32::try_from(-e).unwrap_or(0) {
                    // The kernel's table is a hash of stacks: a stack whose slot holds
                    // another one is not kept (rare, but a few of hundreds of distinct
                    // stacks collide).
                    libc::EEXIST => "stack table slot taken by another stack".into(),
                    libc::ENOMEM => "stack table full".into(),
                    libc::EFAULT => "unreadable stack".into(),
                    code => format!("stack error {code}"),
                });
            }
        };
        // The kernel's stack ids are of addresses: the same id in two processes of a
        // PIE (two load biases) is two stacks.
        let bias = self.program.bias(pid);
        if let Some(c) = self.stacks.get(&(id, s.caller, s.outer, bias.0, b)) {
            return Callers::Frames(Arc::clone(c));
        }
        let Some(ips) = self.engine.stack(id) else {
            return Callers::NotCaptured("stack gone from the kernel's table".into());
        };
        let cat = Arc::clone(&self.builds[b].cat);
        let f = &cat.functions[func];
        let link = |ip: u64| bias.to_link(symbols::RuntimeAddr(ip)).0;
        let inside = |ip: u64| (f.entry..f.end).contains(&link(ip));
        // (runtime pc, whether it is the call instruction itself rather than a
        // return address after it).
        let mut pcs: Vec<(u64, bool)> = Vec::new();
        // Only the first pc can be the probed function's own (recursion puts it further
        // up as a caller too).
        let skip = usize::from(ips.first().is_some_and(|&ip| inside(ip)));
        let mut rest = ips.iter().copied().skip(skip);
        // The kernel's walk: the pc, then the frame-pointer chain's return addresses
        // (after the caller, where the kernel adds it).
        let mut chain = ips.len().saturating_sub(1);
        match s.caller {
            // Linux ≥ 6.12 (and some stable kernels before it) adds [rsp] itself when the
            // probed instruction is `push rbp`
            // (the entry after Go's stack check); at a `jbe` or another first
            // instruction the walk lacks it. Addresses cannot tell (in recursion the
            // caller's return address repeats), the instruction can.
            Some(c) if !(self.kernel_adds_caller && self.entry_is_push(b, func)) => {
                pcs.push((c, false));
            }
            Some(_) => chain = chain.saturating_sub(1),
            None => {
                if let Some(ip) = rest.next() {
                    pcs.push((ip, true));
                }
            }
        }
        pcs.extend(rest.map(|ip| (ip, false)));
        // A deep stack's outer part (the kernel's walk stopped at its table's depth).
        let outer = s.outer.and_then(|k| self.engine.outer(k));
        let mut elided = None;
        match outer {
            Some(o) => {
                let (ips, e) = crate::stack::outer_part(chain, &o);
                elided = e.map(|e| crate::stack::Elided { at: pcs.len(), ..e });
                pcs.extend(ips.into_iter().map(|ip| (ip, false)));
            }
            None => {
                pcs.truncate(probes_ebpf::wire::PSC_STACK_DEPTH as usize);
                // Deeper, but its outer part is gone from the kernel's table (evicted):
                // at least one frame is left out, and said.
                if s.outer.is_some() {
                    elided = Some(crate::stack::Elided {
                        at: pcs.len(),
                        count: 1,
                        at_least: true,
                    });
                }
            }
        }
        let frames: Vec<_> = pcs
            .into_iter()
            .map(|(ip, exact)| {
                let pc = link(ip) - u64::from(!exact);
                cat.position(symbols::LinkAddr(pc))
                    .unwrap_or_else(|| symbols::pclntab::Position {
                        func: format!("{ip:#x}"),
                        file: String::new(),
                        line: 0,
                    })
            })
            .collect();
        let frames = Arc::new(crate::stack::Stack { frames, elided });
        self.stacks
            .insert((id, s.caller, s.outer, bias.0, b), Arc::clone(&frames));
        Callers::Frames(frames)
    }
}
