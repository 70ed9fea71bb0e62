//! The Prometheus text exposition format (version 0.0.4): every probe's counters, the
//! budget's view of it, and its latency as a histogram in base units (seconds).
//!
//! Latency buckets are fixed, 1-2.5-5 per decade from 1 µs to 60 s (`BOUNDS_NS`): what
//! dashboards and `histogram_quantile` expect. Each of the kernel's fine buckets (≤ 3.1%
//! wide) is counted at its midpoint, as periscope's own percentiles are, and `_sum` is
//! summed from those midpoints (the kernel keeps counts per bucket, not a sum). Calls
//! below the probe's floor count in the first bucket, at 0 s.
use std::fmt::Write;

use probes_ebpf::hist::bucket_range;

use crate::snapshot::Snapshot;

/// The histogram's upper bounds, in ns (`+Inf` follows).
pub const BOUNDS_NS: [u64; 24] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// The content type of what `render` writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value, escaped as the format wants (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One counter or gauge family: its header, then a sample per probe that has a value.
fn family<'a>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl Iterator<Item = (&'a str, Option<f64>)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (func, v) in samples {
        if let Some(v) = v {
            let _ = writeln!(out, "{name}{{func=\"{}\"}} {v}", escape(func));
        }
    }
}

/// A program of several processes: each probe in each process running (the budget
/// holds for each on its own).
fn per_process(out: &mut String, p: &[crate::snapshot::ProbeMetrics]) {
    type Value = fn(&periscope_session::per_process::InProcess) -> Option<f64>;
    let families: [(&str, &str, &str, Value); 3] = [
        (
            "periscope_process_hits_total",
            "counter",
            "The probe's calls in one process of the program.",
            |x| Some(x.hits as f64),
        ),
        (
            "periscope_process_observed_ratio",
            "gauge",
            "Share of the process's calls (seen and its share of the estimated unseen) seen whole.",
            |x| Some(x.observed_pct / 100.0),
        ),
        (
            "periscope_process_overhead_ratio",
            "gauge",
            "What the probe cost the process, as a share of its CPU time.",
            |x| x.overhead_pct.map(|o| o / 100.0),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for m in p {
            for x in &m.processes {
                if let Some(v) = value(x) {
                    let _ = writeln!(
                        out,
                        "{name}{{func=\"{}\",pid=\"{}\"}} {v}",
                        escape(&m.func),
                        x.pid
                    );
                }
            }
        }
    }
}

/// For each kernel bucket: the bound it counts under, and its midpoint in ns (bucket 0
/// holds the calls below the floor: 0 s). Computed once.
fn places() -> &'static [(usize, u64)] {
    static PLACES: std::sync::OnceLock<Vec<(usize, u64)>> = std::sync::OnceLock::new();
    PLACES.get_or_init(|| {
        (0..probes_ebpf::wire::PSC_HIST_BUCKETS as usize)
            .map(|i| {
                let mid = if i == 0 {
                    0
                } else {
                    let (lo, hi) = bucket_range(i);
                    lo + (hi - lo) / 2
                };
                (BOUNDS_NS.partition_point(|&b| b < mid), mid)
            })
            .collect()
    })
}

/// Cumulative counts per bound (and +Inf), and the sum in seconds, of kernel buckets.
pub fn to_buckets(kernel: &[u64]) -> (Vec<u64>, u64, f64) {
    let mut counts = vec![0u64; BOUNDS_NS.len() + 1];
    let mut sum_ns = 0f64;
    let places = places();
    for (&n, &(at, mid)) in kernel.iter().zip(places) {
        if n == 0 {
            continue;
        }
        counts[at] += n;
        sum_ns += mid as f64 * n as f64;
    }
    let mut total = 0;
    for c in &mut counts {
        total += *c;
        *c = total;
    }
    (counts, total, sum_ns / 1e9)
}

/// Each bound as its `le` label value (seconds), formatted once: a scrape writes
/// thousands of bucket lines.
fn le_labels() -> &'static [String] {
    static LE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LE.get_or_init(|| {
        BOUNDS_NS
            .iter()
            .map(|b| (*b as f64 / 1e9).to_string())
            .collect()
    })
}

fn histogram(out: &mut String, name: &str, labels: &str, kernel: &[u64]) {
    let (counts, total, sum) = to_buckets(kernel);
    let mut n = itoa::Buffer::new();
    for (c, le) in counts.iter().zip(le_labels()) {
        out.push_str(name);
        out.push_str("_bucket{");
        out.push_str(labels);
        out.push_str(",le=\"");
        out.push_str(le);
        out.push_str("\"} ");
        out.push_str(n.format(*c));
        out.push('\n');
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

/// The whole exposition.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096 + s.probes.len() * 4096);
    let p = &s.probes;
    let counter =
        |out: &mut String, name: &str, help: &str, f: &dyn Fn(&probes_ebpf::Stats) -> u64| {
            family(
                out,
                name,
                "counter",
                help,
                p.iter()
                    .map(|m| (m.func.as_str(), Some(f(&m.stats) as f64))),
            )
        };
    counter(
        &mut out,
        "periscope_calls_total",
        "Calls seen at their entry (hits).",
        &|st| st.hits,
    );
    counter(
        &mut out,
        "periscope_recorded_total",
        "Calls made rows (emitted).",
        &|st| st.emitted,
    );
    counter(
        &mut out,
        "periscope_filtered_total",
        "Calls the probe's condition dropped in the kernel.",
        &|st| st.filtered,
    );
    counter(
        &mut out,
        "periscope_sampled_out_total",
        "Calls left out by 1-in-N sampling.",
        &|st| st.sampled_out,
    );
    counter(
        &mut out,
        "periscope_lost_total",
        "Calls dropped because the kernel's ring buffer was full.",
        &|st| st.lost,
    );
    counter(
        &mut out,
        "periscope_unwatched_total",
        "Calls seen at their entry only: the CPU budget had the return points detached.",
        &|st| st.unwatched,
    );
    family(
        &mut out,
        "periscope_returned_total",
        "counter",
        "Calls made rows with their results read (a probe reading an error result).",
        p.iter()
            .map(|m| (m.func.as_str(), m.errors.map(|e| e.returned as f64))),
    );
    family(
        &mut out,
        "periscope_errors_total",
        "counter",
        "Of periscope_returned_total, the calls that returned a non-nil error.",
        p.iter()
            .map(|m| (m.func.as_str(), m.errors.map(|e| e.errors as f64))),
    );
    family(
        &mut out,
        "periscope_in_flight",
        "gauge",
        "Calls entered and not yet returned.",
        p.iter()
            .map(|m| (m.func.as_str(), Some(m.stats.in_flight() as f64))),
    );
    family(
        &mut out,
        "periscope_unseen_calls",
        "gauge",
        "Calls estimated made while the budget had the probe's entry detached (an estimate, not a count).",
        p.iter()
            .map(|m| (m.func.as_str(), m.watch.map(|w| w.unseen_est as f64))),
    );
    family(
        &mut out,
        "periscope_observed_ratio",
        "gauge",
        "Share of all calls (seen and estimated unseen) seen whole, entry and return.",
        p.iter()
            .map(|m| (m.func.as_str(), m.watch.map(|w| w.observed_pct / 100.0))),
    );
    family(
        &mut out,
        "periscope_overhead_ratio",
        "gauge",
        "What the probe cost the target, as a share of its CPU time.",
        p.iter()
            .map(|m| (m.func.as_str(), m.overhead_pct.map(|o| o / 100.0))),
    );
    if p.iter().any(|m| !m.processes.is_empty()) {
        per_process(&mut out, p);
    }
    let name = "periscope_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Call-to-return latency, the probe's own time taken out."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for m in p {
        if let Some(b) = &m.latency {
            histogram(&mut out, name, &format!("func=\"{}\"", escape(&m.func)), b);
        }
    }
    if p.iter().any(|m| m.by_expr.is_some()) {
        let name = "periscope_latency_by_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Latency split by the value of an expression (--by): 32 values, then \"other\"."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for m in p {
            let Some(expr) = &m.by_expr else { continue };
            for (value, b) in &m.by {
                let labels = format!(
                    "func=\"{}\",by=\"{}\",value=\"{}\"",
                    escape(&m.func),
                    escape(expr),
                    escape(value)
                );
                histogram(&mut out, name, &labels, b);
            }
        }
    }
    // periscope's own health.
    let _ = writeln!(
        out,
        "# HELP periscope_rows_read_total Calls periscope read from the kernel."
    );
    let _ = writeln!(out, "# TYPE periscope_rows_read_total counter");
    let _ = writeln!(out, "periscope_rows_read_total {}", s.rows_read);
    let _ = writeln!(
        out,
        "# HELP periscope_rows_unwritten_total Calls read but not written: periscope's output was behind."
    );
    let _ = writeln!(out, "# TYPE periscope_rows_unwritten_total counter");
    let _ = writeln!(out, "periscope_rows_unwritten_total {}", s.rows_unwritten);
    // The usual names of a process's own figures (as Prometheus' client libraries
    // export them), for periscope's process.
    if let Some(b) = s.resident_bytes {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes periscope's resident memory."
        );
        let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
        let _ = writeln!(out, "process_resident_memory_bytes {b}");
    }
    if let Some(c) = s.cpu_seconds {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total periscope's CPU time (user and system)."
        );
        let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(out, "process_cpu_seconds_total {c}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ProbeMetrics;
    use probes_ebpf::hist::bucket_of;

    fn kernel(latencies: &[u64]) -> Vec<u64> {
        let mut b = vec![0u64; probes_ebpf::wire::PSC_HIST_BUCKETS as usize];
        for &l in latencies {
            b[bucket_of(l)] += 1;
        }
        b
    }

    #[test]
    fn buckets_are_cumulative_and_count_every_call() {
        // 3 calls under 1 µs, 2 near 40 µs, 1 at 2 s, 1 below the floor.
        let (c, total, sum) = to_buckets(&kernel(&[0, 300, 800, 40_000, 41_000, 2_000_000_000]));
        assert_eq!(total, 6);
        assert_eq!(c[0], 3, "≤ 1 µs: {c:?}");
        assert_eq!(c[4], 3, "≤ 25 µs");
        assert_eq!(c[5], 5, "≤ 50 µs");
        assert_eq!(c[18], 5, "≤ 1 s");
        assert_eq!(c[19], 6, "≤ 2.5 s");
        assert_eq!(*c.last().unwrap(), 6);
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
        // The sum within the kernel buckets' width (3.1%).
        let want = (300 + 800 + 40_000 + 41_000 + 2_000_000_000) as f64 / 1e9;
        assert!((sum - want).abs() / want < 0.032, "{sum} {want}");
    }

    #[test]
    fn the_exposition_has_a_sample_per_probe_and_escapes_labels() {
        let stats = probes_ebpf::Stats {
            hits: 7,
            emitted: 5,
            ..Default::default()
        };
        let s = Snapshot {
            probes: vec![ProbeMetrics {
                func: "main.(*T).Get\"x\"".into(),
                stats,
                latency: Some(kernel(&[1_500])),
                ..ProbeMetrics::default()
            }],
            ..Snapshot::default()
        };
        let text = render(&s);
        assert!(
            text.contains("periscope_calls_total{func=\"main.(*T).Get\\\"x\\\"\"} 7"),
            "{text}"
        );
        assert!(text.contains("periscope_recorded_total{func=\"main.(*T).Get\\\"x\\\"\"} 5"));
        assert!(text.contains(
            "periscope_latency_seconds_bucket{func=\"main.(*T).Get\\\"x\\\"\",le=\"0.000001\"} 0"
        ));
        assert!(text.contains(
            "periscope_latency_seconds_bucket{func=\"main.(*T).Get\\\"x\\\"\",le=\"0.0000025\"} 1"
        ));
        assert!(
            text.contains("periscope_latency_seconds_count{func=\"main.(*T).Get\\\"x\\\"\"} 1")
        );
        // Every sample line is NAME{LABELS} VALUE, after its family's TYPE.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
        assert!(!text.contains("periscope_process_"), "one process: {text}");
    }

    #[test]
    fn a_program_of_several_processes_has_each_ones_series() {
        let one = |pid, hits, overhead| periscope_session::per_process::InProcess {
            pid,
            hits,
            unwatched: 0,
            unseen_est: hits,
            unseen_at_least: false,
            observed_pct: 50.0,
            per_call_ns: Some(900.0),
            overhead_pct: overhead,
        };
        let s = Snapshot {
            probes: vec![ProbeMetrics {
                func: "main.Login".into(),
                processes: vec![one(41, 10, Some(2.5)), one(42, 3, None)],
                ..ProbeMetrics::default()
            }],
            ..Snapshot::default()
        };
        let text = render(&s);
        for want in [
            "periscope_process_hits_total{func=\"main.Login\",pid=\"41\"} 10",
            "periscope_process_hits_total{func=\"main.Login\",pid=\"42\"} 3",
            "periscope_process_observed_ratio{func=\"main.Login\",pid=\"42\"} 0.5",
            "periscope_process_overhead_ratio{func=\"main.Login\",pid=\"41\"} 0.025",
        ] {
            assert!(text.lines().any(|l| l == want), "{want}: {text}");
        }
        // Not known, not invented.
        assert!(!text.contains("periscope_process_overhead_ratio{func=\"main.Login\",pid=\"42\"}"));
    }
}
