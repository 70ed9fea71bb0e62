//! The kernel's log-linear latency buckets (32 per power of two: ≤ 3.1% wide) and their
//! conversion into an HDR histogram. Must match hist_bucket() in periscope.bpf.c.
use hdrhistogram::Histogram;

use crate::wire::PSC_HIST_BUCKETS;

pub fn bucket_of(v: u64) -> usize {
    if v < 64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let shift = e - 5;
    let idx = 64 + (e as usize - 6) * 32 + ((v >> shift) & 31) as usize;
    idx.min(PSC_HIST_BUCKETS as usize - 1)
}

/// The [low, high] nanoseconds a bucket covers.
pub fn bucket_range(i: usize) -> (u64, u64) {
    if i < 64 {
        return (i as u64, i as u64);
    }
    let e = (i - 64) / 32 + 6;
    let shift = e - 5;
    let mant = 32 + ((i - 64) % 32) as u64;
    let low = mant << shift;
    (low, low + (1u64 << shift) - 1)
}

/// Sums per-CPU bucket counts into an HDR histogram (3 significant digits), recording
/// each bucket at its midpoint.
pub fn to_hdr(buckets: &[u64]) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds");
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 {
            let (lo, hi) = bucket_range(i);
            let _ = h.record_n((lo + (hi - lo) / 2).max(1), n);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_within_three_percent() {
        for v in [
            1u64,
            63,
            64,
            100,
            1000,
            12_345,
            2_000_000,
            20_000_000,
            100_000_000_000,
        ] {
            let (lo, hi) = bucket_range(bucket_of(v));
            assert!(lo <= v && v <= hi, "{v} not in [{lo},{hi}]");
            assert!((hi - lo) as f64 <= v as f64 * 0.032, "{v}: bucket too wide");
        }
    }
}
