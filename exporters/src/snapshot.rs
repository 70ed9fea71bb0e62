//! A copy of every probe's counters and histograms at one moment, taken by the
//! front-end's loop (which owns the session) for the exporters to render.
use periscope_session::governor::Watch;
use periscope_session::per_process::InProcess;
use periscope_session::{ErrorCount, Session};
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
    /// `--by`: the expression, and each value's buckets.
    pub by_expr: Option<String>,
    pub by: Vec<(String, Vec<u64>)>,
    /// A probe reading an `error` result: its calls made rows, and their errors.
    pub errors: Option<ErrorCount>,
    /// A program of several processes: the probe in each one running.
    pub processes: Vec<InProcess>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub probes: Vec<ProbeMetrics>,
    /// periscope's own work: calls read from the kernel, and calls it could not
    /// write (its output was behind).
    pub rows_read: u64,
    pub rows_unwritten: u64,
    /// periscope's own process: resident memory and CPU time.
    pub resident_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
}

impl Snapshot {
    /// Every probe of the session as it is now, in the order they were set, each
    /// named as summaries name it (`Session::label`).
    pub fn of(session: &Session) -> Snapshot {
        // (Of the processes running: one that exited leaves its series.)
        let running = session.pids();
        let mut processes = if session.is_many() {
            session.per_process_all()
        } else {
            Default::default()
        };
        let probes = session
            .probes()
            .into_iter()
            .filter_map(|(_, f, spec)| {
                let stats = session.stats(f)?;
                let cost = session.cost(f, &stats);
                Some(ProbeMetrics {
                    func: session.label(f),
                    stats,
                    watch: cost.and_then(|c| c.watch),
                    overhead_pct: cost.and_then(|c| c.overhead_pct),
                    latency: session.histogram(f),
                    by: session.histograms_by(f).unwrap_or_default(),
                    by_expr: spec.by,
                    errors: session.errors(f),
                    processes: processes
                        .remove(&f)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|p| running.contains(&p.pid))
                        .collect(),
                })
            })
            .collect();
        Snapshot {
            probes,
            resident_bytes: resident_bytes(),
            cpu_seconds: symbols::process::own_cpu_ns().map(|ns| ns as f64 / 1e9),
            ..Snapshot::default()
        }
    }
}

/// This process's resident memory (`/proc/self/statm`, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
