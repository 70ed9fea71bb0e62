//! Keeps the probes within the budget while they run (the arithmetic is in budget.rs).
//! Every period it prices each probe's points from their hits and the calibrated hit
//! costs, against the target's own CPU time over the same period, and decides for how
//! much of the next period each group of points stays attached; between decisions it
//! opens and closes those windows on time.
//!
//! Costly points (RETs, single-stepped entries) go first: while the cheap entries fit
//! in the budget they stay attached, and the costly points share what is left. When
//! even the cheap entries do not fit, whole probes are attached part of the time, so
//! that the calls seen are seen whole (with latency and results).
use std::collections::HashMap;
use std::time::{Duration, Instant};

use probes_ebpf::points::Points;
use probes_ebpf::{Engine, Group, HitCost, Stats};

use crate::budget::{self, Mode};
use crate::rows::{ROWS_SHARE, RowSampler};
use crate::unseen::Unseen;

/// Windows open at the start of each period.
const PERIOD: Duration = Duration::from_secs(1);
/// A new probe is priced this soon, so that a costly one is cut within a fraction of a
/// second.
const FIRST_LOOK: Duration = Duration::from_millis(20);
/// After a costly window closes, its return points stay attached this long so that the
/// calls entered in it can return (a call still running then stays "in flight").
const GRACE: Duration = Duration::from_millis(10);
/// A group that is off gets a short window this often, to see whether the load has
/// dropped.
const RETRY_EVERY: Duration = Duration::from_secs(20);
/// The shortest window (see `schedule`).
const MIN_WINDOW: Duration = Duration::from_millis(50);
/// The budget is a share of the target's CPU time, counted as at least this much (20%
/// of a core): at the default 5%, never less than 1% of one core. A light service has
/// room, and a probe that costs it a fraction of a percent of a core sees every call;
/// a busy one is held to its share.
pub(crate) const MIN_TARGET_CPU: f64 = 0.2e9;
/// The share of the budget the windows are sized for.
const TARGET_SHARE: f64 = 0.9;
/// How often the hard cap is checked.
const GUARD_EVERY: Duration = Duration::from_millis(10);
/// Shortest open time that gives a usable measure of a group's rate.
pub(crate) const MIN_MEASURE: Duration = Duration::from_millis(15);

#[derive(Debug, Clone, Copy)]
enum Win {
    Open(Instant),
    /// Closed for the program, the points still attached: (opened, closed).
    Closing(Instant, Instant),
    /// The points are on their way out: (removal asked). The kernel takes tens
    /// of ms to remove them (a group of many points is hit until its last goes): the
    /// next window waits for it, and windows are spaced so that it fits their share.
    Removing(Instant),
    Closed,
}

/// How long a window stays open, and how often one opens, for a share `duty` of the
/// time, when removing its points takes `lag` (attached time too): windows of
/// PERIOD × duty each PERIOD, removal included, but never open shorter than MIN_WINDOW
/// (placing and removing points costs the target too: short windows would be mostly
/// that), so a small share opens less often. A group that is off (duty 0) gets a
/// MIN_WINDOW every RETRY_EVERY, to measure again.
fn schedule(duty: f64, lag: Duration) -> (Duration, Duration) {
    if duty <= 0.0 {
        return (MIN_WINDOW, RETRY_EVERY);
    }
    let duty = duty.min(1.0);
    let len = PERIOD.mul_f64(duty).saturating_sub(lag).max(MIN_WINDOW);
    (len, (len + lag).div_f64(duty).max(PERIOD))
}

/// One group of points of a probe and its windows.
struct Windowed {
    group: Group,
    duty: f64,
    win: Win,
    /// When the next window may open, and when the last one did.
    next_open: Instant,
    last_open: Instant,
    /// Time live (open or closing; removal left out) since the last evaluation, and
    /// since the probe was attached. Costs and calls are measured over it: the hits
    /// during a removal count in with the window's, so a group of many points is
    /// priced on the high side.
    live_recent: Duration,
    live_total: Duration,
    /// ns per second the group costs while attached, last measured.
    rate: Option<f64>,
    /// How long removing its points takes the kernel, recently.
    lag: Duration,
    /// Windows opened since the attach (the first look not counted).
    opened: u32,
}

impl Windowed {
    /// A group just attached (`open`), or left detached until it is priced.
    fn new(group: Group, now: Instant, open: bool) -> Windowed {
        Windowed {
            group,
            duty: if open { 1.0 } else { 0.0 },
            win: if open { Win::Open(now) } else { Win::Closed },
            next_open: now + if open { PERIOD } else { RETRY_EVERY },
            // A group left detached is spaced as if a window had opened at the attach.
            last_open: now,
            live_recent: Duration::ZERO,
            live_total: Duration::ZERO,
            rate: None,
            lag: Duration::ZERO,
            opened: 0,
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.win, Win::Open(_))
    }

    /// Whether the points count calls: open, or closing with the points still attached
    /// for the grace period. (Once their removal is asked for, a single entry point goes
    /// within a fraction of a ms, and the kernel's waiting for other CPUs after that,
    /// tens of ms, sees no calls; the calls a group of many points still counts then
    /// make its measures high, on the safe side.)
    fn live(&self) -> bool {
        matches!(self.win, Win::Open(_) | Win::Closing(..))
    }

    fn live_total(&self, now: Instant) -> Duration {
        self.live_total
            + match self.win {
                Win::Open(t) | Win::Closing(t, _) => now.duration_since(t),
                _ => Duration::ZERO,
            }
    }

    /// Closes this group's window when its time is up (for a costly group whose entry
    /// is still open: not yet, `may_close` is false). `cap`: the most this group may
    /// be open (the costly points never longer than the entry; 0 once the period's
    /// budget is spent).
    fn step_close(
        &mut self,
        id: u32,
        engine: &mut Engine,
        now: Instant,
        last_eval: Instant,
        cap: f64,
        may_close: bool,
    ) {
        let duty = self.duty.min(cap);
        // The costly points stay attached GRACE longer than the program watches them:
        // that time is part of their share.
        let grace = if self.group == Group::Costly {
            GRACE
        } else {
            Duration::ZERO
        };
        let (len, _) = schedule(duty, self.lag);
        match self.win {
            Win::Open(since)
                if may_close
                    && duty < 1.0
                    && (cap <= 0.0 || now.duration_since(since) + grace >= len) =>
            {
                let _ = engine.set_window(id, self.group, false);
                match self.group {
                    Group::Costly => self.win = Win::Closing(since, now),
                    Group::Entry => self.removing(since, now, last_eval),
                }
            }
            // Every call entered has returned (the usual case for a short function): no
            // need to wait; its returns would be hit for nothing.
            Win::Closing(since, closed)
                if now.duration_since(closed) >= GRACE || engine.stats(id).in_flight() == 0 =>
            {
                engine.release_window(id, self.group);
                self.removing(since, now, last_eval);
            }
            Win::Removing(asked) if !engine.window_busy(id, self.group) => {
                // Weighed over a few windows: one slow removal does not make the next
                // window short.
                let took = now.duration_since(asked);
                self.lag = (self.lag * 3 + took) / 4;
                self.win = Win::Closed;
            }
            _ => {}
        }
    }

    /// Opens this group's window when the next one is due; `may_open` is false while
    /// the window this one depends on is not open, or the period's budget is spent.
    fn step_open(&mut self, id: u32, engine: &mut Engine, now: Instant, cap: f64, may_open: bool) {
        if !may_open || !self.due(id, engine, now, cap) {
            return;
        }
        let duty = self.duty.min(cap);
        if engine.set_window(id, self.group, true).is_ok() {
            self.win = Win::Open(now);
            self.last_open = now;
            self.opened += 1;
            self.next_open = now + schedule(duty, self.lag).1;
        }
    }

    /// Whether this group's next window may open now (closed, its last one removed,
    /// and its time come).
    fn due(&self, id: u32, engine: &Engine, now: Instant, cap: f64) -> bool {
        let duty = self.duty.min(cap);
        matches!(self.win, Win::Closed)
            && (duty >= 1.0 || now >= self.next_open)
            && !engine.window_busy(id, self.group)
    }

    /// A new share of the time. A group that was off (a window every RETRY_EVERY) opens
    /// as the new share spaces windows from its last one, rather than wait out the retry
    /// interval; a smaller share spaces the next window from the last one at once (a
    /// costly window is followed by the next only once the budget has paid for it);
    /// other rises take effect from the next window (opening early on every rise would
    /// add windows, and each costs the target the kernel's placing and removing of its
    /// points). The first window after the attach opens within PERIOD of it, whatever
    /// the share: whole calls of a costly probe are seen within a second or so.
    fn set_duty(&mut self, duty: f64) {
        let mut from_last = self.last_open + schedule(duty, self.lag).1;
        if self.opened == 0 {
            from_last = from_last.min(self.last_open + PERIOD);
        }
        if self.duty <= 0.0 && duty > 0.0 {
            self.next_open = self.next_open.min(from_last);
        } else if duty < self.duty && self.opened > 0 {
            self.next_open = self.next_open.max(from_last);
        }
        self.duty = duty;
    }

    /// Removal of the points, live since `since`, asked for at `now`.
    fn removing(&mut self, since: Instant, now: Instant, last_eval: Instant) {
        self.live_recent += now.duration_since(since.max(last_eval));
        self.live_total += now.duration_since(since);
        self.win = Win::Removing(now);
    }

    /// Time live since `since` (the last evaluation).
    fn live_recent(&self, now: Instant, since: Instant) -> Duration {
        self.live_recent
            + match self.win {
                Win::Open(t) | Win::Closing(t, _) => now.duration_since(t.max(since)),
                _ => Duration::ZERO,
            }
    }

    /// The time live since `since`; then counts again from zero.
    fn take_recent(&mut self, now: Instant, since: Instant) -> Duration {
        let open = self.live_recent(now, since);
        self.live_recent = Duration::ZERO;
        open
    }
}

struct Probe {
    id: u32,
    name: String,
    entry: Option<Windowed>,
    costly: Option<Windowed>,
    /// The entry is single-stepped: it is in the costly group.
    entry_stepped: bool,
    /// Some return point is single-stepped: the returns are in the costly group.
    returns_costly: bool,
    mode: Mode,
    /// The share of the time last said in a note.
    noted_share: f64,
    attached_at: Instant,
    last: Stats,
    /// Its counters when the current period started (for the hard cap).
    at_period_start: Stats,
    /// What it would cost with every point attached all the time, and what it cost over
    /// the last period, in % of the target's CPU.
    full_pct: Option<f64>,
    recent_pct: Option<f64>,
    /// The calls made while its entry was detached (unseen.rs).
    unseen: Unseen,
}

impl Probe {
    /// What the hits counted in `d` cost, in ns: (cheap group, costly group). Each hit
    /// at its calibrated price, plus the program's own time shared out by hits.
    fn price(&self, d: &Stats, hc: &HitCost) -> (f64, f64) {
        let entry_hits = (d.hits + d.morestack) as f64;
        let all_hits = (entry_hits + d.ret_hits as f64).max(1.0);
        let (entry_ns, stepped_rets) = if self.entry_stepped {
            (hc.stepped_ns, d.stepped_hits as f64 - entry_hits)
        } else {
            (hc.emulated_ns, d.stepped_hits as f64)
        };
        let stepped_rets = stepped_rets.clamp(0.0, d.ret_hits as f64);
        let prog_ns = d.prog_ns_all();
        let entry_cost = entry_hits * entry_ns + prog_ns * entry_hits / all_hits;
        let ret_cost = stepped_rets * hc.stepped_ns
            + (d.ret_hits as f64 - stepped_rets) * hc.emulated_ns
            + prog_ns * d.ret_hits as f64 / all_hits;
        let (mut cheap, mut costly) = (0.0, 0.0);
        *(if self.entry_stepped {
            &mut costly
        } else {
            &mut cheap
        }) += entry_cost;
        *(if self.returns_costly {
            &mut costly
        } else {
            &mut cheap
        }) += ret_cost;
        (cheap, costly)
    }

    /// The group of points that holds the probe's entry (None: not windowed).
    fn entry_group(&self) -> Option<&Windowed> {
        if self.entry_stepped {
            self.costly.as_ref()
        } else {
            self.entry.as_ref()
        }
    }

    /// Share of the time the probe's entry was attached.
    fn entry_share(&self, now: Instant) -> f64 {
        self.entry_group()
            .map_or(1.0, |g| {
                g.live_total(now).as_secs_f64()
                    / now.duration_since(self.attached_at).as_secs_f64().max(1e-9)
            })
            .min(1.0)
    }

    /// Calls made while the entry was detached since the last evaluation (`prev`),
    /// from the calls seen (`d`, costing `cost` ns) while it was attached.
    fn estimate_unseen(
        &mut self,
        d: &Stats,
        cost: f64,
        cpu_now: Option<u64>,
        now: Instant,
        prev: Instant,
    ) {
        let since = prev.max(self.attached_at);
        let span = now.duration_since(since);
        let g = self.entry_group();
        let open = g.map_or(span, |g| g.live_recent(now, since));
        let attached = g.is_none_or(Windowed::live);
        self.unseen
            .evaluate(d.hits, cost, span, open, attached, cpu_now);
    }

    /// Calls made while the entry was detached, up to now.
    fn unseen_now(&self, now: Instant, last_eval: Instant, cpu_now: Option<u64>) -> f64 {
        let since = last_eval.max(self.attached_at);
        match self.entry_group() {
            None => self.unseen.total(),
            Some(g) => {
                let detached = now
                    .duration_since(since)
                    .saturating_sub(g.live_recent(now, since));
                self.unseen.now(g.live(), detached, cpu_now)
            }
        }
    }

    /// Share of the time the costly points were attached.
    fn watch_share(&self) -> f64 {
        let c = self.costly.as_ref().map_or(1.0, |c| c.duty);
        let e = self.entry.as_ref().map_or(1.0, |e| e.duty);
        c.min(e)
    }
}

/// What the budget is doing with one probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watch {
    /// Share of the time the return points are attached, in %.
    pub watch_pct: f64,
    /// Share of calls seen whole (entry and return), in %: of the calls seen at their
    /// entry (`hits`) and those estimated not seen, the ones with their return watched.
    pub observed_pct: f64,
    /// Calls made while the probe's entry was detached, which no counter can see:
    /// estimated from its call rate while attached and the time detached.
    pub unseen_est: u64,
    /// Share of the time the probe's entry was detached, in %.
    pub detached_pct: f64,
    /// `unseen_est` is a lower bound: the calls were timed while the probe itself took
    /// most of the target's time (it slows them), and more were made while detached.
    pub unseen_at_least: bool,
    /// What attaching every point all the time would cost, in % of the target's CPU.
    pub full_pct: Option<f64>,
    /// What the probe cost over the last period, in % of the target's CPU.
    pub recent_pct: Option<f64>,
    pub mode: Mode,
}

/// A change in what the budget does, for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// The probe's function (None: every probe, as for the hard cap).
    pub func: Option<String>,
    pub mode: Mode,
    /// Share of the time the probe's costly points are attached, in %; in a Rows note,
    /// the share of calls made rows.
    pub watch_pct: f64,
    pub full_pct: Option<f64>,
    /// The budget in force, in % (None: off).
    pub budget_pct: Option<f64>,
    pub text: String,
}

pub struct Governor {
    pub budget: Option<f64>,
    probes: HashMap<usize, Probe>,
    period_start: Instant,
    next_eval: Instant,
    last_eval: Instant,
    cpu_at_eval: Option<u64>,
    /// The same at the evaluation before (`evaluate` checks prices against it).
    cpu_at_eval_prev: Option<u64>,
    notes: Vec<Note>,
    /// The cheap entries alone cost more than the budget: their share, in %.
    pub entries_over: Option<f64>,
    frozen: bool,
    /// The target's CPU time a second, last measured (at least MIN_TARGET_CPU).
    cpu_rate: Option<f64>,
    /// This period's budget is spent: every window stays closed until the next.
    capped: bool,
    last_guard: Instant,
    /// Feedback on what the windows really cost against what they were sized for
    /// (points take the kernel a few ms to come and go, windows close on the reader's
    /// clock): the budget they are sized with is scaled by this, in (0, 1].
    correction: f64,
    /// How far the most loaded process's share exceeds the program's (≥ 1: see
    /// per_process.rs): the budget holds for each process on its own, so the program's
    /// probes are sized for that one.
    skew: f64,
    /// When the hard cap last fired, and what the probes had spent of the period when
    /// it fired or they were last priced after it.
    cap_fired: Option<Instant>,
    spent_at_cap: f64,
    /// periscope's own CPU time and the machine's idle time at the last evaluation,
    /// and what periscope's own work took from the target's CPU since (ns a second):
    /// its CPU time beyond what the machine had idle.
    host_at_eval: Option<(u64, (u64, u64))>,
    last_eval_secs: f64,
    pub competing: f64,
    /// Rows are made of 1 call in `rows.factor` (periscope's own work on rows would
    /// otherwise take more than its share of the budget).
    pub rows: RowSampler,
}

/// The hard cap is said again only after this long without it firing.
const CAP_NOTE_QUIET: Duration = Duration::from_secs(30);

impl Governor {
    pub fn new(budget: Option<f64>) -> Governor {
        let now = Instant::now();
        Governor {
            budget,
            probes: HashMap::new(),
            period_start: now,
            next_eval: now + PERIOD,
            last_eval: now,
            cpu_at_eval: None,
            cpu_at_eval_prev: None,
            notes: Vec::new(),
            entries_over: None,
            frozen: false,
            cpu_rate: None,
            capped: false,
            last_guard: now,
            correction: 1.0,
            skew: 1.0,
            cap_fired: None,
            spent_at_cap: 0.0,
            host_at_eval: None,
            last_eval_secs: 1.0,
            competing: 0.0,
            rows: RowSampler::default(),
        }
    }

    /// A probe just attached by the engine at `points`, with all its windows open.
    /// `cpu_ns`: the target's CPU time now.
    pub fn add(
        &mut self,
        func: usize,
        id: u32,
        name: &str,
        engine: &Engine,
        points: &Points,
        cpu_ns: Option<u64>,
    ) {
        let entry_stepped = points.entries.iter().any(|p| p.stepped);
        let returns_costly = points.returns.iter().any(|p| p.stepped);
        let now = Instant::now();
        self.frozen = false;
        if self.probes.is_empty() {
            // The first probe: the target's CPU rate is measured from here.
            self.last_eval = now;
            self.cpu_at_eval = cpu_ns;
            self.next_eval = now + FIRST_LOOK;
        }
        let group = |g| {
            engine
                .has_group(id, g)
                .then(|| Windowed::new(g, now, engine.window_open(id, g)))
        };
        self.probes.insert(
            func,
            Probe {
                id,
                name: name.to_string(),
                entry: group(Group::Entry),
                costly: group(Group::Costly),
                entry_stepped,
                returns_costly,
                mode: Mode::Full,
                noted_share: 1.0,
                attached_at: now,
                last: Stats::default(),
                at_period_start: Stats::default(),
                full_pct: None,
                recent_pct: None,
                unseen: Unseen::new(cpu_ns),
            },
        );
        self.next_eval = self.next_eval.min(now + FIRST_LOOK);
    }

    pub fn remove(&mut self, func: usize) {
        self.probes.remove(&func);
    }

    /// Probe `id`'s returns moved to emulated points in its cheap group (sites.rs):
    /// it has no costly group any more.
    pub fn returns_now_cheap(&mut self, id: u32) {
        for p in self.probes.values_mut().filter(|p| p.id == id) {
            p.costly = None;
            p.returns_costly = false;
        }
    }

    pub fn clear(&mut self) {
        self.probes.clear();
    }

    /// The probes are detached: stop opening windows, keep what is known of them.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Changes the budget; the next tick applies it.
    /// The most loaded process's share of its CPU spent on probes, over the program's
    /// share (per_process.rs); 1 for one process.
    pub fn set_skew(&mut self, skew: f64) {
        self.skew = skew.max(1.0);
    }

    pub fn set_budget(&mut self, budget: Option<f64>) {
        self.budget = budget;
        self.next_eval = Instant::now();
    }

    /// A note about the budget as a whole (the hit prices it decides by).
    pub fn say(&mut self, mode: Mode, text: String) {
        self.notes.push(Note {
            func: None,
            mode,
            watch_pct: 0.0,
            full_pct: None,
            budget_pct: self.budget,
            text: format!("budget {}: {text}", budget::describe(self.budget)),
        });
    }

    /// Changes in what the budget does since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// What the budget does with one probe; `cpu_now`: the target's CPU time now, for
    /// the estimate of calls not seen since the last evaluation.
    pub fn watch(&self, func: usize, st: &Stats, cpu_now: Option<u64>) -> Option<Watch> {
        let p = self.probes.get(&func)?;
        let now = Instant::now();
        let unseen_est = p.unseen_now(now, self.last_eval, cpu_now).round() as u64;
        Some(Watch {
            watch_pct: 100.0 * p.watch_share(),
            observed_pct: observed_pct(st, unseen_est),
            unseen_est,
            detached_pct: 100.0 * (1.0 - p.entry_share(now)),
            unseen_at_least: p.unseen.at_least() && unseen_est > 0,
            full_pct: p.full_pct,
            recent_pct: p.recent_pct,
            mode: p.mode,
        })
    }

    /// Opens and closes windows that are due, and every period prices the probes
    /// again. `cpu_ns` reads the target's CPU time so far (only when it is needed:
    /// readers call this every few milliseconds).
    /// `host` reads periscope's own CPU time and the machine's idle time
    /// (symbols::process), at evaluations only.
    pub fn tick(
        &mut self,
        engine: &mut Engine,
        hc: Option<&HitCost>,
        mut cpu_ns: impl FnMut() -> Option<u64>,
        host: impl FnOnce() -> Option<(u64, (u64, u64))>,
    ) {
        if self.frozen || self.probes.is_empty() {
            return;
        }
        // Read at most once a tick, and only when needed.
        let mut cpu_memo = None;
        let mut cpu = move || *cpu_memo.get_or_insert_with(&mut cpu_ns);
        let now = Instant::now();
        if now >= self.next_eval {
            if let Some(hc) = hc {
                let c = cpu();
                self.last_eval_secs = now.duration_since(self.last_eval).as_secs_f64();
                let target = c.zip(self.cpu_at_eval).map(|(c, t)| c.saturating_sub(t));
                self.measure_host(host(), target);
                self.evaluate(engine, hc, c, now);
            }
            self.next_eval = now + PERIOD;
        }
        let new_period = now.duration_since(self.period_start) >= PERIOD;
        if new_period {
            self.period_start = now;
            self.capped = false;
            for p in self.probes.values_mut() {
                p.at_period_start = engine.stats(p.id);
            }
        } else if now.duration_since(self.last_guard) >= GUARD_EVERY
            && let (Some(b), Some(hc), Some(cpu)) = (self.budget, hc, self.cpu_rate)
        {
            // The hard cap: whatever the estimates said, the probes never spend more
            // than the budget of this period. Past it, the costly windows close until the
            // next period, and the estimates are made again at once. Cheap entries that
            // fit stay; when they go on spending (a burst that started after the last
            // estimate), they are priced again, and go in windows too.
            self.last_guard = now;
            let spent: f64 = self
                .probes
                .values()
                .map(|p| {
                    let (a, c) = p.price(&delta(&engine.stats(p.id), &p.at_period_start), hc);
                    a + c
                })
                .sum();
            let limit = TARGET_SHARE * b / 100.0 * cpu / self.skew * PERIOD.as_secs_f64();
            if !self.capped && spent > limit {
                self.capped = true;
                self.next_eval = now;
                self.note_cap(now, b);
            } else if self.capped
                && spent > self.spent_at_cap + 0.25 * limit
                && now.duration_since(self.last_eval) >= MIN_WINDOW
            {
                self.next_eval = now;
            }
            if self.next_eval == now {
                self.spent_at_cap = spent;
            }
        }
        let capped = self.capped;
        let last_eval = self.last_eval;
        for p in self.probes.values_mut() {
            let was_attached = p.entry_group().map(Windowed::live);
            let entry_duty = p.entry.as_ref().map_or(1.0, |e| e.duty);
            // Closing, the entry goes first and the costly points after it: every call
            // entered while the entry was attached has its return watched. Opening, the
            // other way round. The costly points never stay open longer than the entry
            // (returns without entries would be cost for nothing).
            // The hard cap detaches the costly points; cheap entries only when they are
            // in windows already (else they fit the budget, and stay: calls stay counted).
            let cap = if capped { 0.0 } else { 1.0 };
            if let Some(e) = &mut p.entry {
                let cap = if e.duty >= 1.0 { 1.0 } else { cap };
                e.step_close(p.id, engine, now, last_eval, cap, true);
            }
            // (The entry link takes the kernel a few ms more to go: calls entered then
            // are seen at their entry only, and marked so. Waiting for it would keep the
            // RETs, the costly part, attached longer for nothing.)
            let entry_closed = p
                .entry
                .as_ref()
                .is_none_or(|e| e.duty >= 1.0 || !e.is_open());
            // When the entry is in windows too, the returns open only for its window:
            // returns with no entry before them cost for nothing.
            let entry_due = p
                .entry
                .as_ref()
                .is_none_or(|e| e.duty >= 1.0 || e.is_open() || e.due(p.id, engine, now, cap));
            if let Some(c) = &mut p.costly {
                let cap = if capped { 0.0 } else { entry_duty };
                c.step_close(p.id, engine, now, last_eval, cap, entry_closed);
                c.step_open(p.id, engine, now, cap, !capped && entry_due);
            }
            let returns_ready = p
                .costly
                .as_ref()
                .is_none_or(|c| c.is_open() || c.duty.min(entry_duty) <= 0.0 || c.duty >= 1.0);
            if let Some(e) = &mut p.entry {
                e.step_open(p.id, engine, now, cap, returns_ready && !capped);
            }
            // The target's CPU time while the entry is attached (see `evaluate`).
            let attached = p.entry_group().map(Windowed::live);
            if attached != was_attached
                && let Some(c) = cpu()
            {
                p.unseen.entry_moved(attached == Some(true), c);
            }
        }
    }

    /// Says that the hard cap fired: the first time, and again only after it has been
    /// quiet for a while (it may fire every period under a steady load).
    fn note_cap(&mut self, now: Instant, budget: f64) {
        let quiet = self
            .cap_fired
            .is_none_or(|t| now.duration_since(t) >= CAP_NOTE_QUIET);
        self.cap_fired = Some(now);
        if !quiet {
            return;
        }
        let into = now.duration_since(self.period_start).as_secs_f64();
        self.notes.push(Note {
            func: None,
            mode: Mode::Capped,
            watch_pct: 0.0,
            full_pct: None,
            budget_pct: Some(budget),
            text: format!(
                "budget {}: the probes spent this second's budget in its first {:.2} s: their costly points are detached until the next second (calls entered meanwhile are counted as unwatched or estimated as unseen; said again only after {} s without)",
                budget::describe(Some(budget)),
                into,
                CAP_NOTE_QUIET.as_secs()
            ),
        });
    }

    /// What periscope's own work (reading, decoding, writing rows) took from the target
    /// since the last evaluation: its CPU time beyond the time the machine's CPUs were
    /// idle (on a machine with idle cores periscope competes with nobody), of which the
    /// target's share of everything else that ran (a light target among busy
    /// neighbours loses little of it; a target that fills the machine, most).
    /// `host`: periscope's CPU time, and the machine's idle and total CPU time;
    /// `target_cpu`: the target's CPU time over the same interval.
    fn measure_host(&mut self, host: Option<(u64, (u64, u64))>, target_cpu: Option<u64>) {
        if let (Some((own, (idle, all))), Some((own0, (idle0, all0))), Some(target)) =
            (host, self.host_at_eval, target_cpu)
        {
            let own = own.saturating_sub(own0) as f64;
            let idle = idle.saturating_sub(idle0) as f64;
            let others = (all.saturating_sub(all0) as f64 - idle - own).max(1.0);
            let share = (target as f64 / others).min(1.0);
            let secs = self.last_eval_secs.max(1e-3);
            self.competing = (own - idle).max(0.0) * share / secs;
        }
        if host.is_some() {
            self.host_at_eval = host;
        }
    }

    /// Fewer rows when periscope's own work takes more than its share of the budget
    /// (`allowed`, ns a second), more again when it takes little; said when it changes.
    fn adjust_rows(&mut self, engine: &mut Engine, allowed: f64, rows_made: u64) {
        let Some(factor) = self
            .rows
            .adjust(self.competing, ROWS_SHARE * allowed, rows_made)
        else {
            return;
        };
        engine.set_row_sample(factor);
        let text = if factor > 1 {
            format!(
                "periscope's own work on rows took {} of a core from the target this second: 1 call in {} is now a row (the others count as sampled out; counts and latency histograms keep every call)",
                crate::format::pct1(self.rows.rows_work / 1e7),
                factor
            )
        } else {
            "every call is a row again".to_string()
        };
        self.say(Mode::Rows, text);
        // For the Rows note, the share of calls made rows.
        if let Some(n) = self.notes.last_mut() {
            n.watch_pct = 100.0 / factor as f64;
        }
    }

    fn evaluate(&mut self, engine: &mut Engine, hc: &HitCost, cpu_ns: Option<u64>, now: Instant) {
        let prev = self.last_eval;
        let secs = now.duration_since(prev).as_secs_f64().max(1e-3);
        // The target's CPU time a second (None: unreadable), counted as at least
        // MIN_TARGET_CPU: the budget is a share of that.
        let cpu_rate = match (cpu_ns, self.cpu_at_eval) {
            (Some(c), Some(then)) => {
                Some((c.saturating_sub(then) as f64 / secs).max(MIN_TARGET_CPU))
            }
            _ => None,
        };
        self.last_eval = now;
        self.cpu_at_eval_prev = self.cpu_at_eval;
        self.cpu_at_eval = cpu_ns;
        if cpu_rate.is_some() {
            self.cpu_rate = cpu_rate;
        }
        let mut funcs = Vec::new();
        let mut spent = 0.0;
        let mut rows_made = 0;
        // The prices checked against the target's own CPU time: the probes' hits are
        // handled on the target's threads, so they can never have cost more than all of
        // it. Priced above that, the hit prices are too high this interval (a price
        // measured on a busier moment): scaled down to fit.
        let priced: Vec<(usize, Stats, (f64, f64))> = self
            .probes
            .iter()
            .map(|(&f, p)| {
                let st = engine.stats(p.id);
                (f, st, p.price(&delta(&st, &p.last), hc))
            })
            .collect();
        let total: f64 = priced.iter().map(|(_, _, (a, b))| a + b).sum();
        let target_ns = cpu_ns
            .zip(self.cpu_at_eval_prev)
            .map(|(c, t)| c.saturating_sub(t) as f64);
        let scale = match target_ns {
            Some(t) if total > t && t > 0.0 => t / total,
            _ => 1.0,
        };
        for (func, st, (cheap, costly)) in priced {
            let p = self.probes.get_mut(&func).expect("probe");
            let d = delta(&st, &p.last);
            let (cheap, costly) = (cheap * scale, costly * scale);
            p.last = st;
            rows_made += d.emitted;
            p.estimate_unseen(&d, cheap + costly, cpu_ns, now, prev);
            let mut entry_open = None;
            for (g, cost) in [(&mut p.entry, cheap), (&mut p.costly, costly)] {
                if let Some(g) = g {
                    let open = g.take_recent(now, prev);
                    if g.group == Group::Entry {
                        entry_open = Some(open);
                    }
                    if open >= MIN_MEASURE {
                        // A rise is taken at once; a fall by at most 4x a time: a short
                        // window that saw few calls (the target between two bursts, or
                        // stalled while the kernel placed the points) would otherwise
                        // attach everything again.
                        let measured = cost / open.as_secs_f64();
                        g.rate = Some(g.rate.map_or(measured, |r| measured.max(r / 4.0)));
                    }
                }
            }
            // Returns left detached until priced (Engine::defer_costly): priced from the
            // entry's call rate, each return at a single-stepped hit's price (on the high
            // side: their first window measures them).
            if let (Some(c), Some(open)) = (&mut p.costly, entry_open)
                && c.rate.is_none()
                && !c.live()
                && open >= MIN_MEASURE
            {
                // (Never above the target's CPU time: the hits are handled on its
                // threads, and calls made slower by them are fewer.)
                let calls = (d.hits + d.morestack) as f64 / open.as_secs_f64();
                let most = cpu_rate.unwrap_or(f64::INFINITY);
                c.rate = Some((calls * hc.stepped_ns).min(most));
            }
            let full = p.entry.as_ref().and_then(|g| g.rate).unwrap_or(0.0)
                + p.costly.as_ref().and_then(|g| g.rate).unwrap_or(0.0);
            p.full_pct = cpu_rate.map(|c| 100.0 * full / c);
            p.recent_pct = cpu_rate.map(|c| 100.0 * (cheap + costly) / secs / c);
            spent += (cheap + costly) / secs;
            funcs.push(func);
        }
        let rate = |p: &Probe, g: Group| {
            let w = match g {
                Group::Entry => p.entry.as_ref(),
                Group::Costly => p.costly.as_ref(),
            };
            w.and_then(|w| w.rate).unwrap_or(0.0)
        };
        let entries: Vec<f64> = funcs
            .iter()
            .map(|f| rate(&self.probes[f], Group::Entry))
            .collect();
        let costly: Vec<f64> = funcs
            .iter()
            .map(|f| rate(&self.probes[f], Group::Costly))
            .collect();
        let (entry_duty, costly_duty) = match (self.budget, cpu_rate) {
            (None, _) => {
                self.entries_over = None;
                (vec![1.0; funcs.len()], vec![1.0; funcs.len()])
            }
            // The target's CPU time is unknown this period: keep things as they are.
            (Some(_), None) => return,
            (Some(b), Some(cpu)) => {
                // Aim a little under: windows open and close on the reader's clock, and
                // the kernel takes a few ms to remove points.
                let goal = TARGET_SHARE * b / 100.0 * cpu / self.skew;
                let windowing = self.probes.values().any(|p| p.watch_share() < 1.0);
                // Corrected over whole periods only: a short interval (after the hard cap
                // fired) says nothing about how windows are sized.
                let whole_period = secs >= 0.9 * PERIOD.as_secs_f64();
                if windowing && spent > 0.0 && whole_period {
                    // At most halved or doubled at a time, and never above the plain
                    // sizing.
                    self.correction =
                        (self.correction * (goal / spent).clamp(0.5, 2.0)).clamp(0.05, 1.0);
                } else if !windowing {
                    self.correction = 1.0;
                }
                // periscope's own work counts too, where it takes from the target: up to
                // its share of the budget (past that, fewer rows are made).
                self.adjust_rows(engine, goal, rows_made);
                let rows = self.competing.min(ROWS_SHARE * goal);
                let allowed = (goal * self.correction - rows).max(0.0);
                let e_total: f64 = entries.iter().sum();
                if e_total <= allowed {
                    self.entries_over = None;
                    (
                        vec![1.0; funcs.len()],
                        budget::duties(&costly, allowed - e_total),
                    )
                } else {
                    // Whole probes in windows: a call is seen with both its ends or not
                    // at all, so latency and results keep coming from the windows.
                    self.entries_over = Some(100.0 * e_total / cpu * self.skew);
                    let whole: Vec<f64> = entries.iter().zip(&costly).map(|(e, c)| e + c).collect();
                    let d = budget::duties(&whole, allowed);
                    (d.clone(), d)
                }
            }
        };
        let budget_pct = self.budget;
        for (i, func) in funcs.into_iter().enumerate() {
            let p = self.probes.get_mut(&func).expect("probe");
            if let Some(e) = &mut p.entry {
                e.set_duty(entry_duty[i]);
            }
            if let Some(c) = &mut p.costly {
                c.set_duty(costly_duty[i]);
            }
            // Said when the mode changes, and when the windows widen or narrow by half
            // or more.
            let (share, mode) = (p.watch_share(), Mode::of(p.watch_share()));
            let moved = mode == Mode::Windowed
                && (share > p.noted_share * 1.5 || share < p.noted_share / 1.5);
            if mode != p.mode || moved {
                let was = (mode == p.mode).then_some(p.noted_share);
                p.mode = mode;
                p.noted_share = share;
                self.notes.push(Note {
                    func: Some(p.name.clone()),
                    mode,
                    watch_pct: 100.0 * share,
                    full_pct: p.full_pct,
                    budget_pct,
                    text: describe_change(p, self.budget, was),
                });
            }
        }
    }
}

/// What the budget now does with `p`, in words; `was`: the share of the time it had
/// when last said, if the mode is the same.
fn describe_change(p: &Probe, budget: Option<f64>, was: Option<f64>) -> String {
    let b = budget::describe(budget);
    let name = &p.name;
    if p.mode == Mode::Full {
        return format!("budget {b}: {name}: every point attached all the time again");
    }
    let would = p
        .full_pct
        .map(|f| {
            format!(
                " (with every point attached all the time it would cost {} of the target's CPU)",
                crate::format::pct1(f)
            )
        })
        .unwrap_or_default();
    let was = was
        .map(|w| format!(", was {}", crate::format::pct1(100.0 * w)))
        .unwrap_or_default();
    let share = crate::format::pct1(100.0 * p.watch_share());
    let whole = p.entry_stepped || p.entry.as_ref().is_some_and(|e| e.duty < 1.0);
    match (whole, p.mode) {
        (true, Mode::Windowed) => format!(
            "budget {b}: {name}: attached {share} of the time{was}{would}; calls in between are not seen"
        ),
        (true, _) => format!(
            "budget {b}: {name}: detached{would}; no calls are seen (a short window every {} s measures again)",
            RETRY_EVERY.as_secs()
        ),
        (false, Mode::Windowed) => format!(
            "budget {b}: {name}: return points attached {share} of the time{was}{would}; calls in between are counted, with arguments but no results or latency"
        ),
        (false, _) => format!(
            "budget {b}: {name}: return points detached{would}; calls are counted, with arguments but no results or latency"
        ),
    }
}

/// Calls seen whole (entered and returned with the return watched: `hits` less the
/// unwatched and those still in flight), as a share of every call made (`hits` and the
/// estimate of those not seen), in %.
pub fn observed_pct(st: &Stats, unseen_est: u64) -> f64 {
    let all = st.hits + unseen_est;
    if all == 0 {
        return 100.0;
    }
    let whole = st.hits.saturating_sub(st.unwatched + st.in_flight());
    100.0 * whole as f64 / all as f64
}

fn delta(now: &Stats, then: &Stats) -> Stats {
    Stats {
        hits: now.hits.saturating_sub(then.hits),
        morestack: now.morestack.saturating_sub(then.morestack),
        ret_hits: now.ret_hits.saturating_sub(then.ret_hits),
        prog_ns: now.prog_ns.saturating_sub(then.prog_ns),
        timed: now.timed.saturating_sub(then.timed),
        head_ns: now.head_ns.saturating_sub(then.head_ns),
        head_hits: now.head_hits.saturating_sub(then.head_hits),
        stepped_hits: now.stepped_hits.saturating_sub(then.stepped_hits),
        ..Stats::default()
    }
}
