//! The calls a probe cannot count: those made while the budget had its entry detached
//! (whole probes in windows, stepped entries under the hard cap). Estimated from what
//! was seen while it was attached, by the target's CPU time where it is known: while
//! attached, the probe itself slows the calls (its cost is taken out), and a busy
//! target makes more calls in the same time once it is gone; a service waiting for
//! requests spends its CPU time on them, so the CPU clock suits both. By the wall clock
//! otherwise. Pure arithmetic; the governor feeds it.
use std::time::Duration;

use crate::governor::MIN_MEASURE;

/// How much of the past measures each evaluation keeps (about the last five windows).
const DECAY: f64 = 0.8;
/// The share of the target's time a probe takes beyond which the calls it times are
/// slowed enough that a rate by the wall clock is only a lower bound.
const SLOWED: f64 = 0.25;
/// Calls that measure a rate however short the look.
const ENOUGH_CALLS: u64 = 100;

#[derive(Debug, Clone)]
pub struct Unseen {
    /// Calls estimated up to the last evaluation.
    total: f64,
    /// Calls a second, last measured while attached (the wall clock's estimate).
    call_rate: Option<f64>,
    /// Calls per ns of the target's own CPU time, last measured while attached.
    calls_per_cpu_ns: Option<f64>,
    /// Some estimate was by the wall clock while the probe itself took most of the
    /// target's time: the calls then ran slower than unprobed, so it is a lower bound.
    at_least: bool,
    /// The last measure of the rate was taken while the probe dominated.
    unknowable: bool,
    /// The wall clock's rate was measured while the probe took more than SLOWED of the
    /// target's time.
    rate_slowed: bool,
    /// Calls seen and the target's own work (ns) while attached, summed over the
    /// evaluations with the older ones fading (DECAY each).
    acc: (f64, f64),
    /// The target's CPU time spent while the entry was attached since the last
    /// evaluation, that time when it was last attached, and the CPU time at the last
    /// evaluation (or at the attach).
    cpu_attached: u64,
    cpu_open_at: Option<u64>,
    cpu_at_eval: Option<u64>,
}

impl Unseen {
    /// A probe attached (entry attached) when the target's CPU time was `cpu`.
    pub fn new(cpu: Option<u64>) -> Unseen {
        Unseen {
            total: 0.0,
            call_rate: None,
            calls_per_cpu_ns: None,
            at_least: false,
            unknowable: false,
            rate_slowed: false,
            acc: (0.0, 0.0),
            cpu_attached: 0,
            cpu_open_at: cpu,
            cpu_at_eval: cpu,
        }
    }

    /// The entry was attached (`attached`) or detached when the target's CPU time was
    /// `cpu`.
    pub fn entry_moved(&mut self, attached: bool, cpu: u64) {
        if attached {
            self.cpu_open_at = Some(cpu);
        } else if let Some(t) = self.cpu_open_at.take() {
            self.cpu_attached += cpu.saturating_sub(t);
        }
    }

    pub fn total(&self) -> f64 {
        self.total
    }

    /// Whether the estimate up to now is a lower bound: some part of it was, or the
    /// calls since the last evaluation are estimated by a rate the probe slowed.
    pub fn at_least(&self) -> bool {
        self.at_least
            || (self.calls_per_cpu_ns.is_none()
                && self.call_rate.is_some()
                && (self.unknowable || self.rate_slowed))
    }

    /// An evaluation: over the last `span`, the entry was attached `open` of it (and is
    /// `attached_now`), `hits` calls were seen, costing the target `cost` ns; `cpu_now`
    /// is the target's CPU time now. Adds the calls made while detached.
    pub fn evaluate(
        &mut self,
        hits: u64,
        cost: f64,
        span: Duration,
        open: Duration,
        attached_now: bool,
        cpu_now: Option<u64>,
    ) {
        let mut cpu_att = std::mem::take(&mut self.cpu_attached);
        if let Some(cpu) = cpu_now
            && attached_now
            && let Some(t) = self.cpu_open_at.replace(cpu)
        {
            cpu_att += cpu.saturating_sub(t);
        }
        // A window in which the target did nothing (it was between bursts, or the points
        // were on their way out) says nothing of its rate: the last one stays.
        let idle = cpu_now.is_some() && cpu_att < 1_000_000 && hits == 0;
        // (A short look that saw many calls measures too: a probe attached last, just
        // before the evaluation, may have no other window for many seconds.)
        let measured = open >= MIN_MEASURE || (hits >= ENOUGH_CALLS && !open.is_zero());
        if measured && !idle {
            self.call_rate = Some(hits as f64 / open.as_secs_f64());
            // Timed while the probe took a large share of the target's time, the calls
            // ran slower than unprobed: by this rate, an estimate is a lower bound.
            self.rate_slowed = cpu_att > 0 && cost > SLOWED * cpu_att as f64;
        }
        let wall = self.call_rate.unwrap_or(0.0) * span.saturating_sub(open).as_secs_f64();
        let Some(cpu) = cpu_now else {
            self.total += wall;
            return;
        };
        let cpu_span = self.cpu_at_eval.replace(cpu).map(|t| cpu.saturating_sub(t));
        // The target's own work while attached, less the probe's. (Whether the probe
        // dominated is known from the first look on; the rate is taken from windows: in
        // a first look of the entry alone, the probe's cost is often most of the
        // target's time, and what is left after taking it out is within its error.)
        let work = cpu_att as f64 - cost;
        // The subtraction means something only while the target's own work is a fair
        // part of its time; below that the prices' error is larger than the work, and
        // the unprobed rate cannot be known. (A nearly idle target keeps its last rate.)
        // Between the two, the rate by CPU time is too uncertain to be taken (a 30%
        // error in the price is the whole work at 77%): the last one stays.
        let dominated = cpu_att >= 1_000_000 && cost > 0.8 * cpu_att as f64;
        let reliable = cost <= 0.5 * cpu_att as f64;
        if dominated {
            self.calls_per_cpu_ns = None;
            self.acc = (0.0, 0.0);
            self.unknowable = true;
        } else if reliable && work >= 1e6 && hits > 0 && span != open {
            // Over the last several windows, the older ones fading: one short window
            // catches a few hundred calls, too few to stand for a whole second alone.
            self.acc = (DECAY * self.acc.0 + hits as f64, DECAY * self.acc.1 + work);
            self.calls_per_cpu_ns = Some(self.acc.0 / self.acc.1);
            self.unknowable = false;
        }
        if span == open {
            return;
        }
        self.total += match (cpu_span, self.calls_per_cpu_ns) {
            (Some(all), Some(r)) => r * all.saturating_sub(cpu_att) as f64,
            _ => {
                self.at_least |= (self.unknowable || self.rate_slowed) && wall > 0.0;
                wall
            }
        };
    }

    /// Calls made while detached up to now: the total, and since the last evaluation at
    /// the last measured rate (`attached_now`: the entry is attached; `detached`: wall
    /// time detached since the last evaluation; `cpu_now`: the target's CPU time now).
    pub fn now(&self, attached_now: bool, detached: Duration, cpu_now: Option<u64>) -> f64 {
        if let (Some(cpu), Some(r), Some(at_eval)) =
            (cpu_now, self.calls_per_cpu_ns, self.cpu_at_eval)
        {
            let open = self.cpu_attached
                + match (attached_now, self.cpu_open_at) {
                    (true, Some(t)) => cpu.saturating_sub(t),
                    _ => 0,
                };
            let detached = cpu.saturating_sub(at_eval).saturating_sub(open);
            return self.total + r * detached as f64;
        }
        self.total + self.call_rate.unwrap_or(0.0) * detached.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_busy_target_is_estimated_by_cpu_time_with_the_probe_taken_out() {
        // Attached 100 ms of a second, on one busy core: 1,000 calls seen, the probe
        // costing 50 ms of the 100. Unprobed, the target does 1,000 calls in 50 ms of
        // its own work: 900 ms detached make 18,000 calls.
        let mut u = Unseen::new(Some(0));
        u.entry_moved(false, 100 * MS);
        let sec = Duration::from_secs(1);
        u.evaluate(
            1000,
            50.0 * MS as f64,
            sec,
            sec / 10,
            false,
            Some(1000 * MS),
        );
        assert!((u.total() - 18_000.0).abs() < 1.0, "{}", u.total());
        assert!(!u.at_least());
        // Half a second more, detached, at the same rate.
        let now = u.now(false, sec / 2, Some(1500 * MS));
        assert!((now - 28_000.0).abs() < 1.0, "{now}");
    }

    #[test]
    fn a_probe_that_dominated_gives_a_lower_bound_by_the_wall_clock() {
        // Attached 100 ms: 1,000 calls, the probe 95% of the target's time there.
        let mut u = Unseen::new(Some(0));
        u.entry_moved(false, 100 * MS);
        let sec = Duration::from_secs(1);
        u.evaluate(
            1000,
            95.0 * MS as f64,
            sec,
            sec / 10,
            false,
            Some(1000 * MS),
        );
        assert!((u.total() - 9_000.0).abs() < 1.0, "{}", u.total());
        assert!(u.at_least());
    }

    #[test]
    fn a_rate_the_probe_slowed_gives_a_lower_bound() {
        // Attached 100 ms: 1,000 calls, the probe 60% of the target's time there (too
        // much to take out of the CPU time reliably, too little to call it dominated):
        // the wall clock's rate stands, as a lower bound, also for the calls since.
        let mut u = Unseen::new(Some(0));
        u.entry_moved(false, 100 * MS);
        let sec = Duration::from_secs(1);
        u.evaluate(
            1000,
            60.0 * MS as f64,
            sec,
            sec / 10,
            false,
            Some(1000 * MS),
        );
        assert!((u.total() - 9_000.0).abs() < 1.0, "{}", u.total());
        assert!(u.at_least());
    }

    #[test]
    fn always_attached_means_nothing_unseen() {
        let mut u = Unseen::new(Some(0));
        let sec = Duration::from_secs(1);
        u.evaluate(5000, 1.0 * MS as f64, sec, sec, true, Some(800 * MS));
        assert_eq!(u.total(), 0.0);
        assert_eq!(u.now(true, Duration::ZERO, Some(900 * MS)), 0.0);
    }
}
