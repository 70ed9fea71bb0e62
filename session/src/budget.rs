//! The budget: the share of the target's CPU time that periscope's probes may take, and
//! how it is kept. Pure arithmetic, tested without a kernel; `Session` applies it.
//!
//! A probe's cheap points (an entry the kernel emulates) always stay attached: counts,
//! arguments and entry conditions keep working. Its expensive points (every RET, and an
//! entry the kernel single-steps) are attached in windows, a share `duty` of each
//! period. When all expensive points together would cost more than the budget leaves
//! after the cheap ones, the most expensive are cut first: every probe may spend at
//! most the same amount λ, chosen so that the sum fits ("water-filling"), so a cheap
//! probe keeps all its returns while a hot one is watched part of the time.

/// Default budget: 5% of the target's CPU time.
pub const DEFAULT_PCT: f64 = 5.0;

/// Below this share of the time (a 50 ms window every 20 s) a group of points is off:
/// it then gets just such a window to measure again.
pub const MIN_DUTY: f64 = 0.0025;

/// `--budget 2%`, `--budget 2`, `--budget off`.
pub fn parse(s: &str) -> Result<Option<f64>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let n = t.strip_suffix('%').unwrap_or(t).trim();
    match n.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 100.0 => Ok(Some(v)),
        _ => Err(format!(
            "bad budget {s:?}: give a share of the target's CPU time such as 5% or 0.5%, or off"
        )),
    }
}

/// "5%" / "off".
pub fn describe(b: Option<f64>) -> String {
    match b {
        Some(v) => format!("{}%", trim_float(v)),
        None => "off".into(),
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Share of each period that each probe's expensive points may be attached, given
/// what they would cost attached all the time (`full`, ns per second each) and what
/// the budget leaves for them (`available`, ns per second).
pub fn duties(full: &[f64], available: f64) -> Vec<f64> {
    let total: f64 = full.iter().sum();
    if total <= available {
        return vec![1.0; full.len()];
    }
    if available <= 0.0 {
        return vec![0.0; full.len()];
    }
    // Water-filling: raise the cap λ until the capped demands use `available`.
    let mut sorted: Vec<f64> = full.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (mut left, mut n) = (available, sorted.len());
    let mut lambda = 0.0;
    for c in sorted {
        if c * n as f64 <= left {
            left -= c;
            n -= 1;
        } else {
            lambda = left / n as f64;
            break;
        }
    }
    full.iter()
        .map(|&c| {
            if c <= lambda || c <= 0.0 {
                1.0
            } else {
                let d = lambda / c;
                if d < MIN_DUTY { 0.0 } else { d }
            }
        })
        .collect()
}

/// What the budget is doing with one probe, for messages when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every point attached all the time.
    Full,
    /// Expensive points attached a share of the time.
    Windowed,
    /// Expensive points off: the budget does not cover even a short window.
    Off,
    /// (Of every probe, in a note:) the period's budget was spent early, and the costly
    /// points stay detached until the next period.
    Capped,
    /// (In a note:) about the hit prices the budget decides by.
    Pricing,
    /// (In a note:) how many calls are made rows, for periscope's own CPU time.
    Rows,
}

impl Mode {
    pub fn of(duty: f64) -> Mode {
        if duty >= 1.0 {
            Mode::Full
        } else if duty > 0.0 {
            Mode::Windowed
        } else {
            Mode::Off
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_fits_or_nothing_does() {
        assert_eq!(duties(&[10.0, 20.0], 100.0), vec![1.0, 1.0]);
        assert_eq!(duties(&[10.0, 20.0], 0.0), vec![0.0, 0.0]);
        assert_eq!(duties(&[], 5.0), Vec::<f64>::new());
    }

    #[test]
    fn the_most_expensive_probe_is_cut_first() {
        // 10 + 1000 wanted, 110 available: the cheap one keeps everything, the hot one
        // gets the remaining 100 (10% of its windows).
        let d = duties(&[10.0, 1000.0], 110.0);
        assert_eq!(d[0], 1.0);
        assert!((d[1] - 0.1).abs() < 1e-9, "{d:?}");
        // Two hot ones share equally: each spends 50.
        let d = duties(&[500.0, 1000.0, 1.0], 101.0);
        assert_eq!(d[2], 1.0);
        assert!((d[0] * 500.0 - 50.0).abs() < 1e-6 && (d[1] * 1000.0 - 50.0).abs() < 1e-6);
        // The sum never exceeds what is available.
        let full = [3.0, 70.0, 700.0, 7000.0];
        let d = duties(&full, 400.0);
        let spent: f64 = full.iter().zip(&d).map(|(c, d)| c * d).sum();
        assert!(spent <= 400.0 + 1e-6, "{spent}");
    }

    #[test]
    fn too_short_a_window_is_none() {
        assert_eq!(duties(&[100_000.0], 100.0), vec![0.0]);
        assert_eq!(Mode::of(0.0), Mode::Off);
        assert_eq!(Mode::of(0.5), Mode::Windowed);
        assert_eq!(Mode::of(1.0), Mode::Full);
    }

    #[test]
    fn budgets_parse_as_users_write_them() {
        assert_eq!(parse("2%"), Ok(Some(2.0)));
        assert_eq!(parse(" 0.5 "), Ok(Some(0.5)));
        assert_eq!(parse("off"), Ok(None));
        assert!(parse("0").is_err() && parse("150%").is_err() && parse("x").is_err());
        assert_eq!(describe(Some(5.0)), "5%");
        assert_eq!(describe(Some(0.25)), "0.25%");
        assert_eq!(describe(None), "off");
    }
}
