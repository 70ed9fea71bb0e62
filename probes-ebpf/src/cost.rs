//! What a probe costs the traced program: its hits, priced by how the kernel runs each
//! instruction (measured by calibrate.rs), plus the BPF program's own time (measured
//! in the program, per probe). Pure arithmetic, tested without a kernel.
use crate::calibrate::HitCost;
use crate::engine::Stats;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Cost {
    /// Nanoseconds of the target's time spent on the probe, all points together.
    pub total_ns: f64,
    /// Added to each call, on average.
    pub per_call_ns: f64,
}

/// The cost of the hits counted in `st`: the program counts apart the hits of points
/// the kernel single-steps (a RET, a first instruction) and the others.
pub fn of(st: &Stats, hc: &HitCost) -> Cost {
    let all = st.hits + st.morestack + st.ret_hits;
    let stepped = st.stepped_hits.min(all);
    let total_ns =
        (all - stepped) as f64 * hc.emulated_ns + stepped as f64 * hc.stepped_ns + st.prog_ns_all();
    Cost {
        total_ns,
        per_call_ns: total_ns / st.hits.max(1) as f64,
    }
}

/// Share of the target's CPU time that went to probes: `total_ns` over the CPU time
/// the target used in the same interval (which includes the probes' traps).
pub fn overhead_pct(total_ns: f64, target_cpu_ns: u64) -> Option<f64> {
    (target_cpu_ns > 0).then(|| 100.0 * total_ns / target_cpu_ns as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_and_return_hits_are_priced_by_kind() {
        let hc = HitCost {
            emulated_ns: 500.0,
            stepped_ns: 14_000.0,
            nop5_ns: 500.0,
            latency_floor_ns: 600.0,
            latency_floor_stepped_ns: 6_000.0,
        };
        let st = Stats {
            hits: 100,
            ret_hits: 100,
            stepped_hits: 100,
            prog_ns: 3_000,
            timed: 20,
            ..Default::default()
        };
        let c = of(&st, &hc);
        assert_eq!(c.total_ns, 100.0 * 500.0 + 100.0 * 14_000.0 + 30_000.0);
        assert_eq!(c.per_call_ns, 14_800.0);
        let entry_only = Stats {
            hits: 10,
            morestack: 2,
            stepped_hits: 12,
            ..Default::default()
        };
        // A dropped morestack hit still costs a hit.
        assert_eq!(of(&entry_only, &hc).total_ns, 12.0 * 14_000.0);
        // Returns after call sites, emulated: no single-stepped hit at all.
        let sites = Stats {
            hits: 10,
            ret_hits: 10,
            ..Default::default()
        };
        assert_eq!(of(&sites, &hc).total_ns, 20.0 * 500.0);
        assert_eq!(overhead_pct(1e6, 1e8 as u64), Some(1.0));
        assert_eq!(overhead_pct(1e6, 0), None);
    }

    #[test]
    fn the_first_hits_count_once_each() {
        // Twenty calls, every hit in the head: one cold hit of 30 µs and 39 of 500 ns
        // cost what they cost, not 30 µs scaled up as a sample.
        let few = Stats {
            hits: 20,
            ret_hits: 20,
            head_ns: 30_000 + 39 * 500,
            head_hits: 40,
            ..Default::default()
        };
        assert_eq!(few.prog_ns_all(), 49_500.0);
        // Past the head, the samples' average stands for the rest.
        let many = Stats {
            hits: 1064,
            head_ns: 64_000,
            head_hits: 64,
            prog_ns: 30_000,
            timed: 60,
            ..Default::default()
        };
        assert_eq!(many.prog_ns_all(), 64_000.0 + 500.0 * 1000.0);
    }
}
