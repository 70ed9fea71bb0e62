//! A program of several processes, one process at a time (per_process.rs): what the
//! probes cost each, for the budget and the reports.
use rustc_hash::FxHashMap;

use super::Session;

impl Session {
    /// A program of several processes: how far the most loaded process's share of its
    /// CPU spent on probes exceeds the program's, for the budget (per_process.rs).
    pub(super) fn measure_shares(&mut self) {
        if !self.program.is_many() || self.active.is_empty() || !self.shares.due() {
            return;
        }
        let Ok(hc) = &self.hit_cost else {
            return;
        };
        let t0 = std::time::Instant::now();
        let costs = self.process_cost_ns(hc);
        self.shares.took(t0.elapsed());
        let now = self
            .program
            .cpu_each()
            .into_iter()
            .map(|(pid, cpu)| (pid, (costs.get(&pid).copied().unwrap_or(0.0), cpu)))
            .collect();
        if let Some(k) = self.shares.update(now, crate::governor::MIN_TARGET_CPU) {
            self.gov.set_skew(k);
        }
    }

    /// Every live probe's counters in each process, by probe id, with the BPF
    /// program's time a hit of that probe.
    fn proc_counters(&self) -> Vec<(u32, u32, probes_ebpf::ProcStats, f64)> {
        let mut per_hit: FxHashMap<u32, f64> = FxHashMap::default();
        self.engine
            .proc_stats()
            .into_iter()
            .filter(|(id, _, _)| self.by_id.contains_key(id))
            .map(|(id, pid, ps)| {
                let each = *per_hit.entry(id).or_insert_with(|| {
                    let st = self.engine.stats(id);
                    st.prog_ns_all() / (st.hits + st.ret_hits + st.morestack).max(1) as f64
                });
                (id, pid, ps, each)
            })
            .collect()
    }

    /// What every probe together has cost each process, in ns.
    fn process_cost_ns(&self, hc: &probes_ebpf::HitCost) -> std::collections::BTreeMap<u32, f64> {
        let mut by: std::collections::BTreeMap<u32, f64> = Default::default();
        for (_, pid, ps, each) in self.proc_counters() {
            *by.entry(pid).or_default() += crate::per_process::cost_ns(&ps, each, hc);
        }
        by
    }

    /// What the probes together have cost each process of a program of several: (pid,
    /// ns, share of its CPU time since periscope began counting it, in %).
    pub fn process_costs(&self) -> Vec<(u32, f64, Option<f64>)> {
        let Ok(hc) = &self.hit_cost else {
            return Vec::new();
        };
        let cpu = self.program.cpu_each();
        self.process_cost_ns(hc)
            .into_iter()
            .map(|(pid, ns)| {
                let pct = cpu
                    .get(&pid)
                    .and_then(|&c| probes_ebpf::cost::overhead_pct(ns, c));
                (pid, ns, pct)
            })
            .collect()
    }

    /// The probe on `func` in each process of a program of several, by pid: its calls,
    /// what of them was seen, and what it cost there.
    pub fn per_process(&self, func: usize) -> Vec<crate::per_process::InProcess> {
        self.per_process_all().remove(&func).unwrap_or_default()
    }

    /// `per_process` of every probe, from one read of the kernel's counters.
    pub fn per_process_all(&self) -> FxHashMap<usize, Vec<crate::per_process::InProcess>> {
        type ByPid = std::collections::BTreeMap<u32, (probes_ebpf::ProcStats, f64)>;
        let hc = self.hit_cost.as_ref().ok();
        let mut by: FxHashMap<usize, ByPid> = FxHashMap::default();
        for (id, pid, ps, each) in self.proc_counters() {
            let Some(&(func, _)) = self.by_id.get(&id) else {
                continue;
            };
            let e = by.entry(func).or_default().entry(pid).or_default();
            e.0 = e.0.plus(&ps);
            e.1 += hc.map_or(0.0, |hc| crate::per_process::cost_ns(&ps, each, hc));
        }
        by.into_iter()
            .filter_map(|(func, pids)| Some((func, self.in_processes(func, pids)?)))
            .collect()
    }

    fn in_processes(
        &self,
        func: usize,
        by: std::collections::BTreeMap<u32, (probes_ebpf::ProcStats, f64)>,
    ) -> Option<Vec<crate::per_process::InProcess>> {
        use crate::per_process::*;
        let a = self.active.get(&func)?;
        let hc = self.hit_cost.as_ref().ok();
        let hits: Vec<u64> = by.values().map(|(ps, _)| ps.hits).collect();
        let watch = self.watch(func);
        let unseen = watch.map_or(0, |w| w.unseen_est);
        let at_least = watch.is_some_and(|w| w.unseen_at_least);
        let shares = share_out(unseen, &hits);
        let cpu = self.program.cpu_each();
        let each = by
            .into_iter()
            .zip(shares)
            .map(|((pid, (ps, ns)), unseen_est)| {
                let since = cpu.get(&pid).map(|&c| {
                    c.saturating_sub(a.cpu_each_at_attach.get(&pid).copied().unwrap_or(0))
                });
                InProcess {
                    pid,
                    hits: ps.hits,
                    unwatched: ps.unwatched,
                    unseen_est,
                    unseen_at_least: at_least,
                    observed_pct: observed_pct(ps.hits, ps.unwatched, unseen_est),
                    per_call_ns: hc.map(|_| ns / ps.hits.max(1) as f64),
                    overhead_pct: hc
                        .and(since)
                        .and_then(|c| probes_ebpf::cost::overhead_pct(ns, c)),
                }
            })
            .collect();
        Some(each)
    }
}
