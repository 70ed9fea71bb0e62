//! A copy of every probe's counters and histograms at one moment, taken by the
//! front-end's loop (which owns the session) for the exporters to render.
use periscope_session::Session;
use periscope_session::governor::Watch;
use probes_ebpf::Stats;

#[derive(Debug, Clone, Default)]
pub struct ProbeMetrics {
    /// The probe's name (a generic's shapes together, see `Session::label`).
    pub func: String,
    pub stats: Stats,
    pub watch: Option<Watch>,
    /// What the probe cost the target, in % of its CPU time.
    pub overhead_pct: Option<f64>,
    /// The kernel's latency buckets (probes_ebpf::hist), for a latency probe.
    pub latency: Option<Vec<u64>>,
    /// `--by`: each value's buckets.
    pub by: Vec<(String, Vec<u64>)>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub probes: Vec<ProbeMetrics>,
    /// The `--by` expression, if any.
    pub by_expr: Option<String>,
    /// periscope's own work: calls read from the kernel, and calls it could not
    /// write (its output was behind).
    pub rows_read: u64,
    pub rows_unwritten: u64,
}

impl Snapshot {
    /// The probes on `funcs` as they are now, named by `label`.
    pub fn take(
        session: &Session,
        funcs: &[usize],
        label: impl Fn(usize) -> String,
        by_expr: Option<&str>,
    ) -> Snapshot {
        let probes = funcs
            .iter()
            .filter_map(|&f| {
                let stats = session.stats(f)?;
                let cost = session.cost(f, &stats);
                Some(ProbeMetrics {
                    func: label(f),
                    stats,
                    watch: cost.and_then(|c| c.watch),
                    overhead_pct: cost.and_then(|c| c.overhead_pct),
                    latency: session.histogram(f),
                    by: session.histograms_by(f).unwrap_or_default(),
                })
            })
            .collect();
        Snapshot {
            probes,
            by_expr: by_expr.map(str::to_string),
            ..Snapshot::default()
        }
    }
}
