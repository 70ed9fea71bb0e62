//! The hit prices the budget decides by, kept current: what a uprobe hit costs moves
//! with the machine (a VM's trap costs swing with the host's load), and one measurement
//! at start-up can be several times off minutes later. While probes run, the session
//! measures again every REPRICE_EVERY and prices by the median of the last few
//! measurements; when they disagree widely it says the machine is too noisy to price.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use probes_ebpf::HitCost;
use probes_ebpf::calibrate::{HitPrices, median};

/// How often the hit costs are measured again while probes run (each measurement
/// blocks the reader ~20-40 ms here).
const REPRICE_EVERY: Duration = Duration::from_secs(30);
/// Measurements kept: the price is their median.
const KEEP: usize = 5;
/// Measurements further apart than this (largest / smallest single-stepped hit), or a
/// single measurement whose batches spread this widely, mean a noisy machine.
const NOISY_RATIO: f64 = 2.0;
const NOISY_SPREAD: f64 = 1.0;

pub struct Pricing {
    history: VecDeque<HitPrices>,
    next: Instant,
    said_noisy: bool,
}

impl Pricing {
    pub fn new(first: &HitCost) -> Pricing {
        Pricing {
            history: VecDeque::from([HitPrices {
                emulated_ns: first.emulated_ns,
                stepped_ns: first.stepped_ns,
                nop5_ns: first.nop5_ns,
                spread: 0.0,
            }]),
            next: Instant::now() + REPRICE_EVERY,
            said_noisy: false,
        }
    }

    pub fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// Takes a new measurement (None: it failed; the old prices stay) and sets `hc`'s
    /// prices to the medians. Returns a sentence the first time the machine turns out
    /// too noisy to price.
    pub fn record(&mut self, m: Option<HitPrices>, hc: &mut HitCost) -> Option<String> {
        self.next = Instant::now() + REPRICE_EVERY;
        let m = m?;
        self.history.push_back(m);
        if self.history.len() > KEEP {
            self.history.pop_front();
        }
        let col =
            |f: fn(&HitPrices) -> f64| median(&self.history.iter().map(f).collect::<Vec<_>>());
        hc.emulated_ns = col(|p| p.emulated_ns);
        hc.stepped_ns = col(|p| p.stepped_ns);
        hc.nop5_ns = col(|p| p.nop5_ns);
        let stepped: Vec<f64> = self.history.iter().map(|p| p.stepped_ns).collect();
        let (lo, hi) = stepped
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let noisy = (lo > 0.0 && hi / lo > NOISY_RATIO) || m.spread > NOISY_SPREAD;
        if !noisy || self.said_noisy {
            return None;
        }
        self.said_noisy = true;
        Some(format!(
            "this machine is too noisy to price uprobe hits exactly: a single-stepped hit measured {} to {} over the last {} measurements; the budget prices by their median ({}), measured again every {} s",
            crate::format::fmt_ns(lo.round() as u64),
            crate::format::fmt_ns(hi.round() as u64),
            self.history.len(),
            crate::format::fmt_ns(hc.stepped_ns.round() as u64),
            REPRICE_EVERY.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices(stepped: f64) -> HitPrices {
        HitPrices {
            emulated_ns: stepped / 10.0,
            stepped_ns: stepped,
            nop5_ns: stepped / 12.0,
            spread: 0.1,
        }
    }

    #[test]
    fn the_price_is_the_median_of_the_last_measurements_and_noise_is_said_once() {
        let first = HitCost {
            emulated_ns: 1000.0,
            stepped_ns: 10_000.0,
            nop5_ns: 800.0,
            latency_floor_ns: 500.0,
            latency_floor_stepped_ns: 700.0,
        };
        let mut hc = first;
        let mut p = Pricing::new(&first);
        // One wild measurement moves the price a little, not to itself.
        assert_eq!(p.record(Some(prices(11_000.0)), &mut hc), None);
        assert_eq!(hc.stepped_ns, 10_500.0);
        let said = p.record(Some(prices(40_000.0)), &mut hc);
        assert_eq!(hc.stepped_ns, 11_000.0);
        assert!(said.is_some_and(|s| s.contains("too noisy")));
        // Said once; the floors are never touched.
        assert_eq!(p.record(Some(prices(45_000.0)), &mut hc), None);
        assert_eq!(hc.latency_floor_ns, 500.0);
        // A failed measurement keeps the prices.
        let before = hc;
        assert_eq!(p.record(None, &mut hc), None);
        assert_eq!(hc, before);
        // Only the last few count.
        for _ in 0..KEEP {
            p.record(Some(prices(20_000.0)), &mut hc);
        }
        assert_eq!(hc.stepped_ns, 20_000.0);
    }
}
