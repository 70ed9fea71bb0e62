//! Each probe's counters per process, for a program of several processes (PSC_F_PROCS,
//! psc_procs): what a probe costs each process and how many of its calls there were
//! seen whole, so that the budget holds for each process on its own and the numbers
//! are reported per process as well as for the program.
use std::collections::HashMap;

use aya::maps::{MapData, PerCpuHashMap};

use crate::wire::*;

pub(crate) type ProcMap = PerCpuHashMap<MapData, psc_proc_key, psc_proc>;

/// One probe's counters in one process, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcStats {
    /// Calls (entry hits that counted as one), as `Stats::hits`.
    pub hits: u64,
    /// Calls entered while the return points were detached, as `Stats::unwatched`.
    pub unwatched: u64,
    /// Hits of every point (entries, returns, morestack): each a cost.
    pub points: u64,
    /// Those of points the kernel single-steps.
    pub stepped: u64,
}

impl ProcStats {
    pub fn plus(&self, o: &ProcStats) -> ProcStats {
        ProcStats {
            hits: self.hits + o.hits,
            unwatched: self.unwatched + o.unwatched,
            points: self.points + o.points,
            stepped: self.stepped + o.stepped,
        }
    }
}

/// Every (probe, process) pair's counters; `harvested`: calls of each pair found
/// unwatched by user space (harvest.rs), added to the kernel's count.
pub(crate) fn read(
    map: &ProcMap,
    harvested: &HashMap<(u32, u32), u64>,
) -> Vec<(u32, u32, ProcStats)> {
    let mut out: Vec<(u32, u32, ProcStats)> = map
        .iter()
        .filter_map(Result::ok)
        .map(|(k, per_cpu)| {
            let mut s = per_cpu.iter().fold(ProcStats::default(), |a, v| {
                a.plus(&ProcStats {
                    hits: v.hits,
                    unwatched: v.unwatched,
                    points: v.points,
                    stepped: v.stepped,
                })
            });
            s.unwatched += harvested.get(&(k.probe, k.pid)).copied().unwrap_or(0);
            (k.probe, k.pid, s)
        })
        .collect();
    out.sort_unstable_by_key(|&(probe, pid, _)| (probe, pid));
    out
}

/// Forgets the counters of probes whose ids are handed out again.
pub(crate) fn forget(map: &mut ProcMap, harvested: &mut HashMap<(u32, u32), u64>, ids: &[u32]) {
    let keys: Vec<psc_proc_key> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| ids.contains(&k.probe))
        .collect();
    for k in keys {
        let _ = map.remove(&k);
    }
    harvested.retain(|(probe, _), _| !ids.contains(probe));
}
