//! A program of several processes, one process at a time: what the probes cost each
//! (each is someone's service, and the budget holds for each on its own) and what each
//! probe saw in each. The kernel counts every probe's hits per process (psc_procs);
//! this prices them as the program's are priced (probes_ebpf::cost), and finds how far
//! the most loaded process's share of its CPU exceeds the program's: the budget's
//! windows, shared by every process (the uprobes are on the file), are sized for that
//! process, so that none pays more than the budget.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use probes_ebpf::{HitCost, ProcStats};

/// How often the processes' shares are measured again: often enough that the budget's
/// first windows are sized for the process that pays (a probe is cut within a fraction
/// of a second), but reading the counters takes at most 5% of that time (a read
/// per (probe, process) pair).
const EVERY: Duration = Duration::from_millis(100);

/// The cost of a probe's hits in one process, priced as cost.rs prices the program's,
/// with the BPF program's time a hit (`prog_ns_per_hit`) taken from the probe's own
/// counters.
pub fn cost_ns(ps: &ProcStats, prog_ns_per_hit: f64, hc: &HitCost) -> f64 {
    let stepped = ps.stepped.min(ps.points);
    (ps.points - stepped) as f64 * hc.emulated_ns
        + stepped as f64 * hc.stepped_ns
        + ps.points as f64 * prog_ns_per_hit
}

/// The most loaded process's share over the program's, from each process's (probe
/// cost, CPU time) over the same `secs`; each counted as using at least `floor` ns of
/// CPU a second, as the program is (a process that barely runs would otherwise decide
/// for all). 1 when nothing was spent.
pub fn skew(each: &[(f64, u64)], secs: f64, floor: f64) -> f64 {
    let least = floor * secs;
    let cost: f64 = each.iter().map(|e| e.0).sum();
    let cpu: f64 = each.iter().map(|e| e.1 as f64).sum();
    if cost <= 0.0 || secs <= 0.0 {
        return 1.0;
    }
    let program = cost / cpu.max(least);
    let worst = each
        .iter()
        .map(|&(c, u)| c / (u as f64).max(least))
        .fold(0.0, f64::max);
    (worst / program).max(1.0)
}

/// What `skew` was measured from last.
/// The shares are of the last few seconds, older ones fading with this time constant:
/// most short intervals see the windows closed and nothing spent, which says nothing
/// of which process pays when they are open.
const FADE_SECS: f64 = 3.0;

#[derive(Default)]
pub struct Shares {
    last: BTreeMap<u32, (f64, u64)>,
    at: Option<Instant>,
    /// Each process's cost and CPU time, faded (FADE_SECS), and the time they span.
    recent: BTreeMap<u32, (f64, f64)>,
    span: f64,
    /// How long reading the counters took last.
    took: Duration,
}

impl Shares {
    pub fn due(&self) -> bool {
        self.at
            .is_none_or(|t| t.elapsed() >= EVERY.max(self.took * 20))
    }

    /// Reading the counters took `d` (see `due`).
    pub fn took(&mut self, d: Duration) {
        self.took = d;
    }

    /// The skew over the last few seconds, from each process's probe cost and CPU
    /// time so far (pid → (ns, ns)); None the first time.
    pub fn update(&mut self, now: BTreeMap<u32, (f64, u64)>, floor: f64) -> Option<f64> {
        let at = Instant::now();
        let secs = self.at.map(|t| at.duration_since(t).as_secs_f64());
        let fade = (-secs.unwrap_or(0.0) / FADE_SECS).exp();
        for v in self.recent.values_mut() {
            v.0 *= fade;
            v.1 *= fade;
        }
        for (pid, &(c, u)) in &now {
            let (c0, u0) = self.last.get(pid).copied().unwrap_or((0.0, 0));
            let r = self.recent.entry(*pid).or_default();
            r.0 += (c - c0).max(0.0);
            r.1 += u.saturating_sub(u0) as f64;
        }
        // (Processes gone: their part fades out.)
        self.recent.retain(|_, r| r.1 >= 1.0 || r.0 > 0.0);
        self.span = self.span * fade + secs.unwrap_or(0.0);
        self.last = now;
        self.at = Some(at);
        let each: Vec<(f64, u64)> = self.recent.values().map(|&(c, u)| (c, u as u64)).collect();
        secs.map(|_| skew(&each, self.span, floor))
    }
}

/// A probe in one process.
#[derive(Debug, Clone, PartialEq)]
pub struct InProcess {
    pub pid: u32,
    pub hits: u64,
    pub unwatched: u64,
    /// Its share of the probe's estimate of calls not seen (by its share of the hits:
    /// which process a call that was not seen came from is not known).
    pub unseen_est: u64,
    /// The probe's estimate is a lower bound (see governor::Watch): so is this one, and
    /// `observed_pct` an upper bound.
    pub unseen_at_least: bool,
    /// Calls entered with their returns watched, of every call made there, in %.
    pub observed_pct: f64,
    /// Nanoseconds added to each call there.
    pub per_call_ns: Option<f64>,
    /// Share of the process's CPU time spent on the probe, since it was attached.
    pub overhead_pct: Option<f64>,
}

/// `observed_pct` of one process: the calls entered with their returns watched, of
/// those counted and those estimated not seen.
pub fn observed_pct(hits: u64, unwatched: u64, unseen: u64) -> f64 {
    let all = hits + unseen;
    if all == 0 {
        return 100.0;
    }
    100.0 * hits.saturating_sub(unwatched) as f64 / all as f64
}

/// The probe's unseen estimate shared out by hits (largest remainders: the parts add
/// up to the whole).
pub fn share_out(total: u64, hits: &[u64]) -> Vec<u64> {
    let sum: u64 = hits.iter().sum();
    if sum == 0 || total == 0 {
        return vec![0; hits.len()];
    }
    let exact: Vec<f64> = hits
        .iter()
        .map(|&h| total as f64 * h as f64 / sum as f64)
        .collect();
    let mut parts: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut left = total - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..hits.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a].fract(), exact[b].fract());
        fb.total_cmp(&fa)
    });
    for i in order {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_process_by_share_decides() {
        // Two processes, one second: A spends 10 ms of its 100 ms on probes (10%), B
        // nothing of its 900 ms: the program's share is 1%, A's ten times that.
        let k = skew(&[(10e6, 100_000_000), (0.0, 900_000_000)], 1.0, 0.0);
        assert!((k - 10.0).abs() < 1e-9, "{k}");
        // Spread evenly: no skew.
        let k = skew(&[(5e6, 500_000_000), (5e6, 500_000_000)], 1.0, 0.0);
        assert!((k - 1.0).abs() < 1e-9, "{k}");
        // A process that barely runs counts as using the floor.
        let k = skew(&[(1e6, 1_000_000), (1e6, 400_000_000)], 1.0, 0.2e9);
        assert!((k - (1e6 / 0.2e9) / (2e6 / 401e6)).abs() < 1e-6, "{k}");
        // Nothing spent.
        assert_eq!(skew(&[(0.0, 5), (0.0, 7)], 1.0, 0.2e9), 1.0);
    }

    #[test]
    fn shares_are_measured_over_the_interval() {
        let mut s = Shares::default();
        let first: BTreeMap<u32, (f64, u64)> =
            [(1, (1e6, 10_000_000)), (2, (0.0, 10_000_000))].into();
        assert_eq!(s.update(first, 0.0), None);
        // Since then: process 1 spent 9 ms of 90 ms, 2 nothing of 90 ms.
        let second: BTreeMap<u32, (f64, u64)> =
            [(1, (10e6, 100_000_000)), (2, (0.0, 100_000_000))].into();
        let k = s.update(second, 0.0).unwrap();
        assert!((k - 2.0).abs() < 1e-9, "{k}");
        // Then nothing spent (the windows closed): which process pays is still known.
        let third: BTreeMap<u32, (f64, u64)> =
            [(1, (10e6, 190_000_000)), (2, (0.0, 190_000_000))].into();
        let k = s.update(third, 0.0).unwrap();
        assert!((k - 2.0).abs() < 1e-9, "{k}");
    }

    #[test]
    fn the_unseen_estimate_is_shared_out_whole() {
        assert_eq!(share_out(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(share_out(7, &[0, 100]), vec![0, 7]);
        assert_eq!(share_out(0, &[3, 4]), vec![0, 0]);
        assert_eq!(share_out(5, &[0, 0]), vec![0, 0]);
        assert_eq!(share_out(100, &[1, 2, 7]).iter().sum::<u64>(), 100);
    }

    #[test]
    fn observed_counts_the_unwatched_and_the_unseen_out() {
        assert_eq!(observed_pct(100, 10, 0), 90.0);
        assert_eq!(observed_pct(90, 0, 10), 90.0);
        assert_eq!(observed_pct(0, 0, 0), 100.0);
    }
}
