//! How many calls become rows: all of them, unless periscope's own work on rows takes
//! more than its share of the budget from the target, then 1 in N. periscope's work
//! without rows (polling, reading counters) is told apart from the rows' own: cutting
//! rows cannot lower it, and at a small budget it may pass the rows' share by itself.
//! Pure arithmetic; the governor feeds it once a period.

/// The share of the budget periscope's own work on rows may take before fewer rows
/// are made; below a quarter of it, rows come back.
pub(crate) const ROWS_SHARE: f64 = 0.5;
const MAX_ROW_SAMPLE: u32 = 4096;
/// A cut in rows that left periscope's work above this share of what it was did not
/// lower it: the work was not the rows'.
const IN_VAIN: f64 = 0.8;

#[derive(Debug, Clone)]
pub struct RowSampler {
    /// Rows are made of 1 call in this many.
    pub factor: u32,
    /// What periscope's own work takes from the target without rows (ns a second):
    /// measured in periods without rows, and after a cut that did not lower it.
    base: Option<f64>,
    /// periscope's work when rows were last cut.
    at_cut: Option<f64>,
    /// The rows' own work in the last period (ns a second).
    pub rows_work: f64,
}

impl Default for RowSampler {
    fn default() -> Self {
        RowSampler {
            factor: 1,
            base: None,
            at_cut: None,
            rows_work: 0.0,
        }
    }
}

impl RowSampler {
    /// A period in which periscope's own work took `competing` ns a second from the
    /// target and `rows_made` rows were made, with `share` ns a second allowed for
    /// rows. Returns the new factor when it changes.
    pub fn adjust(&mut self, competing: f64, share: f64, rows_made: u64) -> Option<u32> {
        let was = self.factor;
        let in_vain = self
            .at_cut
            .take()
            .is_some_and(|then| competing > IN_VAIN * then);
        if rows_made == 0 || in_vain {
            self.base = Some(match self.base {
                Some(b) if rows_made == 0 => (b + competing) / 2.0,
                _ => competing,
            });
        }
        self.rows_work = (competing - self.base.unwrap_or(0.0)).max(0.0);
        if self.rows_work > share && share > 0.0 && rows_made > 0 && !in_vain {
            let more = (self.rows_work / share).ceil().max(2.0) as u32;
            self.factor = self.factor.saturating_mul(more).min(MAX_ROW_SAMPLE);
            self.at_cut = Some(competing);
        } else if self.factor > 1 && (self.rows_work < share / 4.0 || in_vain) {
            self.factor /= 2;
        }
        (self.factor != was).then_some(self.factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    #[test]
    fn rows_that_cost_are_cut_and_stay_cut_while_they_would_cost() {
        let mut r = RowSampler::default();
        // Rows take 20 ms a second where 5 are allowed: 1 in 4.
        assert_eq!(r.adjust(20.0 * MS, 5.0 * MS, 10_000), Some(4));
        // The cut worked: 5 ms now, within the share; rows stay cut.
        assert_eq!(r.adjust(5.0 * MS, 5.0 * MS, 2_500), None);
        assert_eq!(r.factor, 4);
        // The target got quiet: rows cost little, and come back by halves.
        assert_eq!(r.adjust(1.0 * MS, 5.0 * MS, 100), Some(2));
        assert_eq!(r.adjust(1.0 * MS, 5.0 * MS, 100), Some(1));
    }

    #[test]
    fn periscopes_polling_is_not_the_rows_work() {
        let mut r = RowSampler::default();
        // A period without rows: periscope's polling alone takes 6 ms a second, more
        // than the rows' share of a small budget.
        assert_eq!(r.adjust(6.0 * MS, 4.0 * MS, 0), None);
        // Rows add 1 ms: well within their share; every call stays a row.
        assert_eq!(r.adjust(7.0 * MS, 4.0 * MS, 500), None);
        assert_eq!(r.factor, 1);
        assert!((r.rows_work - 1.0 * MS).abs() < 1.0, "{}", r.rows_work);
    }

    #[test]
    fn a_cut_that_did_not_lower_the_work_is_taken_back() {
        let mut r = RowSampler::default();
        // No period without rows yet: the whole 8 ms look like the rows'.
        assert_eq!(r.adjust(8.0 * MS, 4.0 * MS, 500), Some(2));
        // 1 row in 2 and periscope still takes 7.5 ms: not the rows. Taken back, and
        // the 7.5 ms are periscope's own from now on.
        assert_eq!(r.adjust(7.5 * MS, 4.0 * MS, 250), Some(1));
        assert_eq!(r.adjust(7.6 * MS, 4.0 * MS, 500), None);
        assert_eq!(r.factor, 1);
    }
}
