//! Calls whose return was missed because their return points were detached (the
//! budget's windows) while they ran. The BPF program stores each paired call's entry
//! under the probe's return-point generation (`psc_probe.generation`) and pairs a return only
//! with an entry of the current one; user space adds one to the generation each time it
//! detaches the return points. Entries of an older generation can never complete: this
//! takes them out of the kernel's table and turns each into what it is, a call seen at
//! its entry only (a row with its arguments, results "not watched"), never a latency
//! and never "in flight".
use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, MapData};

use crate::engine::Stats;
use crate::wire::*;

pub(crate) type PendingMap = BpfHashMap<MapData, psc_pending_key, psc_pending>;

/// What one harvest found for a probe, added to its kernel counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Harvested {
    pub stats: Stats,
    /// Kept calls counted for 1-in-N sampling (see `take`).
    pub sampled_seq: u64,
}

/// Removes every stored entry that can no longer pair: of a live probe, one of an older
/// generation than its plan's; of a probe that is gone, any. Each stale entry of a live
/// probe is counted as unwatched and, when the probe records calls, handed to `emit` as
/// an entry-only event (the bytes a BPF entry event would have).
pub(crate) fn take(
    pending: &mut PendingMap,
    plans: &HashMap<u32, psc_probe>,
    extra: &mut HashMap<u32, Harvested>,
    per_process: &mut HashMap<(u32, u32), u64>,
    mut emit: impl FnMut(u32, &[u8]),
) {
    let keys: Vec<psc_pending_key> = pending.keys().filter_map(Result::ok).collect();
    let mut buf = Vec::new();
    for key in keys {
        let plan = plans.get(&key.probe);
        if plan.is_some_and(|p| p.generation == key.generation) {
            continue;
        }
        let Ok(pd) = pending.get(&key, 0) else {
            continue;
        };
        // Only the remover counts it: the LRU may have evicted it meanwhile.
        if pending.remove(&key).is_err() {
            continue;
        }
        let Some(plan) = plan else {
            continue;
        };
        let h = extra.entry(key.probe).or_default();
        h.stats.unwatched += 1;
        if plan.flags & PSC_F_PROCS != 0 {
            *per_process.entry((key.probe, key.pid)).or_default() += 1;
        }
        let events = plan.flags & PSC_F_EVENTS != 0;
        if !events || plan.flags & PSC_F_COND_RET != 0 {
            // Nothing to show without the return: a latency, or a condition on results.
            h.stats.unrecorded += 1;
            continue;
        }
        // With latency asked for, the BPF program leaves 1-in-N sampling to the return.
        if plan.flags & PSC_F_LATENCY != 0 && plan.sample_every > 1 {
            let seq = h.sampled_seq;
            h.sampled_seq += 1;
            if !seq.is_multiple_of(u64::from(plan.sample_every)) {
                h.stats.sampled_out += 1;
                continue;
            }
        }
        h.stats.emitted += 1;
        entry_event(&key, &pd, plan, &mut buf);
        emit(key.probe, &buf);
    }
}

/// The event the BPF program writes for a call seen at its entry only.
fn entry_event(key: &psc_pending_key, pd: &psc_pending, plan: &psc_probe, buf: &mut Vec<u8>) {
    let len = (pd.len as usize).min(PSC_ENTRY_MAX as usize);
    let truncated = pd.bits >> 31 != 0;
    let stack = plan.flags & PSC_F_STACK != 0;
    let ev = psc_event {
        version: PSC_VERSION as u16,
        kind: PSC_EV_CALL as u16,
        probe: key.probe,
        pid: key.pid,
        tid: pd.tid,
        goid: pd.goid,
        ts_ns: pd.ts_ns,
        latency_ns: 0,
        flags: PSC_EVF_ENTRY
            | PSC_EVF_UNWATCHED
            | if truncated { PSC_EVF_TRUNCATED } else { 0 }
            | if stack { PSC_EVF_STACK } else { 0 },
        entry_len: len as u16,
        ret_len: 0,
        stack_id: pd.stack_id,
        caller: pd.caller,
        outer: pd.outer,
    };
    buf.clear();
    // SAFETY: psc_event is a plain C struct of integers without implicit padding
    // (periscope.h asserts its size is a multiple of 8 and lists every field).
    buf.extend_from_slice(unsafe {
        std::slice::from_raw_parts(
            (&ev as *const psc_event).cast::<u8>(),
            std::mem::size_of::<psc_event>(),
        )
    });
    buf.extend_from_slice(&pd.data[..len]);
}
