//! Latency histograms for people: the kernel's fine buckets regrouped into at most N
//! log-scaled rows, shared by the TUI's latency pane and the shell's `hist`.
use probes_ebpf::hist::bucket_range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistRow {
    pub lo: u64,
    pub hi: u64,
    pub count: u64,
}

/// A latency figure of a histogram (a percentile, the max) for people: "below floor"
/// where it falls among the calls below the probe's floor (bucket 0, which the HDR
/// histogram records at 1 ns), else its time.
pub fn fmt_latency(v: u64, buckets: &[u64]) -> String {
    match latency_ns(v, buckets) {
        0 if buckets.first().is_some_and(|&n| n > 0) => "below floor".to_string(),
        v => crate::format::fmt_ns(v),
    }
}

/// The same figure for machines: 0 among the calls below the floor (`below_floor`
/// says how many there were), never the 1 ns the HDR histogram records them at.
pub fn latency_ns(v: u64, buckets: &[u64]) -> u64 {
    if v <= 1 && buckets.first().is_some_and(|&n| n > 0) {
        0
    } else {
        v
    }
}

impl HistRow {
    /// The calls faster than the probe's floor (the cost of its own two hits, which is
    /// taken out of every latency): their time is not known, only that it is below it.
    pub fn below_floor(&self) -> bool {
        self.hi == 0
    }
}

/// Rows from the fastest to the slowest call seen: first the calls below the probe's
/// floor (the kernel's bucket 0), if any, in a row of their own; then rows that each
/// cover a fixed fraction of a power of two of nanoseconds (1/16, 1/8 … or a whole one,
/// several when even that does not fit): as finely as `max_rows` allows.
pub fn rows(buckets: &[u64], max_rows: usize) -> Vec<HistRow> {
    let below = buckets.first().copied().unwrap_or(0);
    let mut out = Vec::new();
    if below > 0 {
        out.push(HistRow {
            lo: 0,
            hi: 0,
            count: below,
        });
    }
    let max_rows = max_rows.saturating_sub(out.len());
    out.extend(timed_rows(buckets, max_rows));
    out
}

fn timed_rows(buckets: &[u64], max_rows: usize) -> Vec<HistRow> {
    let Some(first) = buckets.iter().skip(1).position(|&n| n > 0).map(|i| i + 1) else {
        return vec![];
    };
    let last = buckets.iter().rposition(|&n| n > 0).unwrap_or(first);
    let max_rows = max_rows.max(1);
    // Row r spans the kernel buckets whose log2-position falls in it. At most 16 rows
    // per power of two: kernel buckets are linear inside one (up to 1/32 of it wide),
    // so finer logarithmic rows would alias into empty rows.
    let pos = |i: usize| (bucket_range(i).0.max(1) as f64).log2();
    let (p0, p1) = (pos(first), pos(last));
    let mut per = 16.0;
    while per > 1.0 && ((p1 - p0) * per).floor() as usize + 1 > max_rows {
        per /= 2.0;
    }
    let base = (p0 * per).floor();
    let row_of = |i: usize| ((pos(i) * per).floor() - base) as usize;
    let n_rows = row_of(last) + 1;
    let mut counts = vec![0u64; n_rows];
    for (i, &n) in buckets.iter().enumerate().take(last + 1).skip(first) {
        counts[row_of(i)] += n;
    }
    let merge = n_rows.div_ceil(max_rows);
    let edge = |r: usize| 2f64.powf((base + r as f64) / per) as u64;
    (0..n_rows)
        .step_by(merge)
        .map(|r| HistRow {
            lo: edge(r),
            hi: edge(r + merge),
            count: counts[r..(r + merge).min(n_rows)].iter().sum(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes_ebpf::hist::bucket_of;

    fn buckets(values: &[(u64, u64)]) -> Vec<u64> {
        let mut b = vec![0; probes_ebpf::wire::PSC_HIST_BUCKETS as usize];
        for &(v, n) in values {
            b[bucket_of(v)] += n;
        }
        b
    }

    #[test]
    fn rows_keep_every_call_and_cover_each_value() {
        let vals = [(1_000, 5), (2_500, 7), (1_000_000, 3), (40_000_000, 1)];
        let b = buckets(&vals);
        for max in [1, 4, 10, 40] {
            let rows = rows(&b, max);
            assert!(rows.len() <= max, "{} rows for max {max}", rows.len());
            assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 16);
            for &(v, n) in &vals {
                let r = rows.iter().find(|r| r.lo <= v && v < r.hi).unwrap();
                assert!(r.count >= n, "{v} in {r:?}");
            }
        }
    }

    #[test]
    fn calls_below_the_floor_get_a_row_of_their_own() {
        let rows = rows(&buckets(&[(0, 4), (900, 2)]), 5);
        assert!(rows[0].below_floor(), "{rows:?}");
        assert_eq!(rows[0].count, 4);
        assert!(rows[1..].iter().all(|r| !r.below_floor() && r.lo >= 1));
        assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 6);
    }

    #[test]
    fn close_latencies_get_fine_rows() {
        let rows = rows(&buckets(&[(1_100_000, 10), (1_300_000, 10)]), 12);
        assert!(rows.len() >= 3, "{rows:?}");
        assert!(rows[0].hi < 1_300_000);
    }
}
