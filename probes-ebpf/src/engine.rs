//! Loads the BPF object once and attaches or detaches probes at any time. Everything is
//! owned by file descriptors (perf events + BPF links): when periscope exits, even by
//! SIGKILL, the kernel drops them all. Nothing is pinned.
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues, RingBuf};
use aya::programs::UProbe;
use symbols::Function;

use crate::calibrate::{HitCost, HitPrices};
use crate::error::EngineError;
use crate::keeper::Keeper;
use crate::plan::Plan;
use crate::points::{Point, Points};
use crate::wire::*;

const PROGRAM: &str = "periscope_probe";

/// A pid that stands for every process running the probed file, those that start later
/// included: the uprobe lives on the file's inode (uprobe_multi's pid 0: no filter; a
/// perf event's pid -1 on CPU 0, which the kernel's uprobe filter treats as system-wide).
pub const EVERY_PROCESS: u32 = 0;

/// The outer part of a deep stack: the frames the walk followed from the probe's
/// frame pointer (`depth`, return addresses, the first of them the one the kernel's
/// stack holds after the pc), whether it stopped before the goroutine's first frame
/// (`cut`), and the last of them, outermost last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outer {
    pub depth: u32,
    pub cut: bool,
    pub ips: Vec<u64>,
}

pub struct Engine {
    ebpf: aya::Ebpf,
    probes: Array<MapData, psc_probe>,
    stats: PerCpuArray<MapData, psc_stats>,
    hist: Array<MapData, psc_hist>,
    stacks: aya::maps::StackTraceMap<MapData>,
    outers: aya::maps::HashMap<MapData, u64, psc_outer>,
    /// Call sites of PSC_F_SITES probes (see `cover_site`).
    sites: aya::maps::HashMap<MapData, psc_site_key, u32>,
    /// Sites the BPF program saw for the first time, for `take_sites`.
    new_sites: Vec<Site>,
    /// Probes that learn their call sites (PSC_F_SITES), live or being detached.
    sites_ids: HashSet<u32>,
    /// Each probe's counters per process (PSC_F_PROCS: procs.rs), and the calls of each
    /// (probe, process) that harvests found unwatched.
    procs: crate::procs::ProcMap,
    procs_harvested: HashMap<(u32, u32), u64>,
    by_hist: aya::maps::HashMap<MapData, psc_by_key, psc_hist>,
    by_count: Array<MapData, u32>,
    by_names: aya::maps::HashMap<MapData, psc_by_key, psc_by_name>,
    events: RingBuf<MapData>,
    /// Paired calls' entries waiting for their return (see harvest.rs).
    pending: crate::harvest::PendingMap,
    /// Calls found in `pending` whose return can no longer be seen, by probe: added to
    /// the kernel's counters.
    harvested: HashMap<u32, crate::harvest::Harvested>,
    /// The return points' generation went up (or a probe went): stale entries are to
    /// be taken out of `pending`, once BPF programs that read the old plan are done.
    harvest_due: Option<std::time::Instant>,
    /// Paired probes: the group that holds their return points, and the process.
    returns: HashMap<u32, Group>,
    /// Each probe's own 1-in-N sampling, and the factor the budget multiplies it by
    /// when periscope's own work on rows competes with the target (`set_row_sample`).
    base_sample: HashMap<u32, u32>,
    row_sample: u32,
    /// Costly return points of probes attached from now on start detached (`defer_costly`).
    defer_costly: bool,
    /// periscope's own copy of the uprobe links, by key (see `window_key`); the keeper
    /// holds another.
    links: HashMap<u32, Vec<OwnedFd>>,
    keeper: Option<Keeper>,
    /// Why there is no keeper, when there is none.
    pub keeper_error: Option<String>,
    /// Keepers died and replaced, to be said (take_keeper_notes).
    keeper_notes: Vec<String>,
    free: Vec<u32>,
    /// Ids handed out by `attach` and not yet detached.
    allocated: HashSet<u32>,
    /// Without a keeper: keys whose links a background thread has closed.
    closed: Arc<Mutex<Vec<u32>>>,
    closers: Vec<std::thread::JoinHandle<()>>,
    /// Keys released whose uprobes are not yet gone from the kernel, with their count.
    releasing: HashMap<u32, usize>,
    /// Ids detached whose keys are not all released yet.
    detached: HashSet<u32>,
    /// Uprobes attached, by key.
    uprobes: HashMap<u32, usize>,
    /// Each live probe's plan as written to the kernel (its WATCHING flag changes).
    plans: HashMap<u32, psc_probe>,
    /// The points of each probe that the budget attaches in windows, by group.
    windows: HashMap<(u32, Group), Window>,
    /// The program loaded again for uprobe_multi links (multi.rs), where the kernel
    /// has them; otherwise each uprobe is a perf event of its own.
    multi: Option<OwnedFd>,
    /// Why uprobes are not batched, when they are not.
    pub multi_error: Option<String>,
    /// A multi link has been made: an EINVAL from now on is about the offsets given.
    multi_proven: bool,
}

/// A call site a PSC_F_SITES probe's function was first called from: the address its
/// calls return to, in process `pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    pub probe: u32,
    pub pid: u32,
    pub ret: u64,
}

/// The two groups of a probe's points that the budget attaches and detaches apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// An entry the kernel emulates (~0.5-1 µs a hit): counts, arguments, conditions.
    Entry = 0,
    /// Every RET, and an entry the kernel single-steps (~5-15 µs a hit).
    Costly = 1,
}

/// One group of a probe's points: attached while its window is open, under a key of
/// its own.
struct Window {
    exe: std::path::PathBuf,
    /// The processes its uprobes fire in (see `EVERY_PROCESS`).
    pids: Vec<u32>,
    points: Vec<(u64, u64)>,
    /// The key of the open window's link, if one is open.
    open: Option<u32>,
    generation: u32,
}

/// Keys of the keeper's table: a probe id for its permanent links, and for each window
/// a key of its own (a window reopened while the last one's release is still pending
/// must not have its new links closed with the old).
const WINDOW_KEY: u32 = 1 << 31;

fn window_key(id: u32, group: Group, generation: u32) -> u32 {
    WINDOW_KEY | ((group as u32) << 30) | ((generation & 0x3fff) << 16) | id
}

const _: () = assert!(PSC_MAX_PROBES <= 1 << 16);

fn id_of(key: u32) -> u32 {
    key & 0xffff
}

/// The file offset of code of periscope's own (calibration).
fn own_offset(addr: usize) -> Result<u64, EngineError> {
    crate::calibrate::file_offset(addr).ok_or_else(|| {
        EngineError::Io(std::io::Error::other(
            "calibration: periscope's own code is not in /proc/self/maps",
        ))
    })
}

/// The plan of a calibration probe on periscope's own code: every call, the goroutine
/// read from calibrate.rs's fake `g` (goid at 0, stack top at 8).
fn own_plan(flags: u32) -> psc_probe {
    psc_probe {
        flags,
        sample_every: 1,
        goid_off: 0,
        stack_hi_off: 8,
        ..Default::default()
    }
}

/// The descriptor of periscope's program (for perf-event links).
fn program_fd(ebpf: &mut aya::Ebpf) -> std::io::Result<std::os::fd::BorrowedFd<'_>> {
    let prog: &mut UProbe = ebpf
        .program_mut(PROGRAM)
        .ok_or_else(|| std::io::Error::other(format!("no program {PROGRAM}")))?
        .try_into()
        .map_err(std::io::Error::other)?;
    Ok(prog.fd().map_err(std::io::Error::other)?.as_fd())
}

/// Gives a keeper the programs it makes links with: the program, and its copy for
/// uprobe_multi links where the kernel has them.
fn give_programs(
    k: &mut Keeper,
    ebpf: &mut aya::Ebpf,
    multi: Option<&OwnedFd>,
) -> std::io::Result<()> {
    k.give_prog(crate::keeper::PROG_PERF, program_fd(ebpf)?)?;
    match multi {
        Some(m) => k.give_prog(crate::keeper::PROG_MULTI, m.as_fd()),
        None => Ok(()),
    }
}

/// Errors that mean "this kernel cannot make uprobe_multi links", as opposed to a bad
/// offset or a target that is gone.
fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
    )
}

/// Counters of one probe, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub hits: u64,
    pub filtered: u64,
    pub sampled_out: u64,
    pub lost: u64,
    pub emitted: u64,
    pub morestack: u64,
    pub unpaired: u64,
    pub returns: u64,
    pub ret_hits: u64,
    /// The BPF program's time on the timed hits after the head (one in 16), and how
    /// many those were.
    pub prog_ns: u64,
    pub timed: u64,
    /// Its time on each of the first hits (per CPU), all timed, and how many.
    pub head_ns: u64,
    pub head_hits: u64,
    pub unwatched: u64,
    pub unrecorded: u64,
    pub stepped_hits: u64,
}

impl From<&psc_stats> for Stats {
    fn from(s: &psc_stats) -> Stats {
        Stats {
            hits: s.hits,
            filtered: s.filtered,
            sampled_out: s.sampled_out,
            lost: s.lost,
            emitted: s.emitted,
            morestack: s.morestack,
            unpaired: s.unpaired,
            returns: s.returns,
            ret_hits: s.ret_hits,
            prog_ns: s.prog_ns,
            timed: s.timed,
            head_ns: s.head_ns,
            head_hits: s.head_hits,
            unwatched: s.unwatched,
            unrecorded: s.unrecorded,
            stepped_hits: s.stepped_hits,
        }
    }
}

impl Stats {
    /// Two probes' counters together (CPUs, or the functions of one name).
    pub fn plus(&self, s: &Stats) -> Stats {
        Stats {
            hits: self.hits + s.hits,
            filtered: self.filtered + s.filtered,
            sampled_out: self.sampled_out + s.sampled_out,
            lost: self.lost + s.lost,
            emitted: self.emitted + s.emitted,
            morestack: self.morestack + s.morestack,
            unpaired: self.unpaired + s.unpaired,
            returns: self.returns + s.returns,
            ret_hits: self.ret_hits + s.ret_hits,
            prog_ns: self.prog_ns + s.prog_ns,
            timed: self.timed + s.timed,
            head_ns: self.head_ns + s.head_ns,
            head_hits: self.head_hits + s.head_hits,
            unwatched: self.unwatched + s.unwatched,
            unrecorded: self.unrecorded + s.unrecorded,
            stepped_hits: self.stepped_hits + s.stepped_hits,
        }
    }

    /// The BPF program's time on all hits: the head's as measured, and the sampled
    /// hits' average times the hits after the head.
    pub fn prog_ns_all(&self) -> f64 {
        let all = self.hits + self.morestack + self.ret_hits;
        let rest = all.saturating_sub(self.head_hits);
        let avg = if self.timed > 0 {
            self.prog_ns as f64 / self.timed as f64
        } else if self.head_hits > 0 {
            self.head_ns as f64 / self.head_hits as f64
        } else {
            0.0
        };
        self.head_ns as f64 + avg * rest as f64
    }

    /// Calls entered and not yet accounted for: running now, or never returned through
    /// a RET (a panic, a tail jump out of the function).
    pub fn in_flight(&self) -> u64 {
        self.hits.saturating_sub(
            self.emitted + self.filtered + self.sampled_out + self.lost + self.unrecorded,
        )
    }
}

impl Engine {
    pub fn new() -> Result<Engine, EngineError> {
        // Fork the keeper first, while this process holds no BPF objects yet.
        let (keeper, keeper_error) = match Keeper::spawn() {
            Ok(k) => (Some(k), None),
            Err(e) => (None, Some(format!("no keeper process ({e})"))),
        };
        let mut ebpf = aya::EbpfLoader::new()
            .load(BPF_OBJECT)
            .map_err(EngineError::Load)?;
        let prog: &mut UProbe = ebpf
            .program_mut(PROGRAM)
            .ok_or(EngineError::MissingMap(PROGRAM))?
            .try_into()?;
        prog.load()?;
        // PERISCOPE_UPROBE_MULTI=off forces one perf event per uprobe, as on kernels
        // older than 6.6: how the fallback is tested and benchmarked here.
        let forced_off = std::env::var_os("PERISCOPE_UPROBE_MULTI").is_some_and(|v| v == "off");
        let (multi, multi_error) = if forced_off {
            (None, Some("PERISCOPE_UPROBE_MULTI=off".to_string()))
        } else {
            match crate::multi::load(&ebpf, BPF_OBJECT, PROGRAM) {
                Ok(fd) => (Some(fd), None),
                Err(e) => (None, Some(format!("no uprobe_multi links ({e})"))),
            }
        };
        // The keeper makes the links (keeper.rs): it gets both programs now.
        let mut keeper = keeper;
        let mut keeper_error = keeper_error;
        if let Some(k) = keeper.as_mut()
            && let Err(e) = give_programs(k, &mut ebpf, multi.as_ref())
        {
            keeper_error = Some(format!("the keeper process is gone ({e})"));
        }
        let mut take =
            |name: &'static str| ebpf.take_map(name).ok_or(EngineError::MissingMap(name));
        let probes = Array::try_from(take("psc_probes")?)?;
        let stats = PerCpuArray::try_from(take("psc_stats")?)?;
        let hist = Array::try_from(take("psc_hist")?)?;
        let events = RingBuf::try_from(take("psc_events")?)?;
        let stacks = aya::maps::StackTraceMap::try_from(take("psc_stacks")?)?;
        let outers = aya::maps::HashMap::try_from(take("psc_outers")?)?;
        let sites = aya::maps::HashMap::try_from(take("psc_sites")?)?;
        let procs = aya::maps::PerCpuHashMap::try_from(take("psc_procs")?)?;
        let by_hist = aya::maps::HashMap::try_from(take("psc_by_hist")?)?;
        let by_count = Array::try_from(take("psc_by_count")?)?;
        let by_names = aya::maps::HashMap::try_from(take("psc_by_names")?)?;
        let pending = aya::maps::HashMap::try_from(take("psc_pending")?)?;
        Ok(Engine {
            ebpf,
            probes,
            stats,
            hist,
            stacks,
            outers,
            sites,
            new_sites: Vec::new(),
            sites_ids: HashSet::new(),
            procs,
            procs_harvested: HashMap::new(),
            by_hist,
            by_count,
            by_names,
            events,
            pending,
            harvested: HashMap::new(),
            harvest_due: None,
            returns: HashMap::new(),
            base_sample: HashMap::new(),
            row_sample: 1,
            defer_costly: false,
            links: HashMap::new(),
            keeper,
            keeper_error,
            keeper_notes: Vec::new(),
            free: (0..PSC_MAX_PROBES).rev().collect(),
            allocated: Default::default(),
            closed: Arc::new(Mutex::new(Vec::new())),
            closers: Vec::new(),
            releasing: HashMap::new(),
            detached: HashSet::new(),
            uprobes: HashMap::new(),
            plans: HashMap::new(),
            windows: HashMap::new(),
            multi,
            multi_error,
            multi_proven: false,
        })
    }

    /// The keeper process's pid (see keeper.rs), when there is one.
    pub fn keeper_pid(&self) -> Option<u32> {
        self.keeper.as_ref().map(Keeper::pid)
    }

    /// Attaches `plan` to `f` in processes `pids` (or `[EVERY_PROCESS]`), whose
    /// executable is `exe`; returns the
    /// probe id that its events carry.
    pub fn attach(
        &mut self,
        pids: &[u32],
        exe: &Path,
        elf: &symbols::elf::Elf,
        f: &Function,
        plan: &Plan,
        points: &Points,
    ) -> Result<u32, EngineError> {
        let id = self.allocate_id()?;
        match self.attach_id(id, pids, exe, elf, f, plan, points) {
            Ok(()) => Ok(id),
            Err(e) => {
                self.detach(id);
                Err(e)
            }
        }
    }

    /// Watches the runtime's panic recovery (`runtime.recovery`, at link address
    /// `addr`) in `pids`: shared return points need it (see psc_recovered in the BPF
    /// program). Its id goes to `detach_many` like a probe's.
    pub fn watch_recovery(
        &mut self,
        pids: &[u32],
        exe: &Path,
        elf: &symbols::elf::Elf,
        addr: u64,
    ) -> Result<u32, EngineError> {
        let offset = elf
            .vaddr_to_offset(symbols::LinkAddr(addr))
            .ok_or_else(|| EngineError::NoOffset {
                func: "runtime.recovery".into(),
                addr,
            })?;
        let id = self.allocate_id()?;
        let cookie = u64::from(id) | (u64::from(PSC_POINT_RECOVERY) << PSC_COOKIE_KIND_SHIFT);
        for &pid in pids {
            if let Err(error) = self.attach_points(id, exe, pid, &[(offset.0, cookie)]) {
                self.detach(id);
                return Err(EngineError::Attach {
                    func: "runtime.recovery".into(),
                    pid,
                    batched: self.multi.is_some(),
                    error,
                });
            }
        }
        Ok(id)
    }

    /// From now on probe `id` sees its returns after the call sites learnt (added with
    /// `add_return_point` and `cover_site`) and no longer at its RETs, which go: a call
    /// from a site not covered is seen at its entry only. Entries stored before stay
    /// valid: their calls return through covered sites.
    pub fn rely_on_sites(&mut self, id: u32) -> Result<(), EngineError> {
        let entry_open = self.window_open(id, Group::Entry);
        if let Some(wire) = self.plans.get_mut(&id) {
            wire.flags |= PSC_F_SITES_ONLY;
            if entry_open {
                wire.flags |= PSC_F_WATCHING;
            } else {
                wire.flags &= !PSC_F_WATCHING;
            }
            self.probes.set(id, *wire, 0)?;
        }
        self.returns.insert(id, Group::Entry);
        if let Some(key) = self
            .windows
            .remove(&(id, Group::Costly))
            .and_then(|w| w.open)
        {
            self.release_keys(&[key]);
        }
        Ok(())
    }

    /// Call sites seen for the first time since the last call (PSC_F_SITES probes).
    pub fn take_sites(&mut self) -> Vec<Site> {
        std::mem::take(&mut self.new_sites)
    }

    /// Adds a return point to probe `id`'s cheap group (`point`: file offset and
    /// cookie), attached at once while that group's window is open and with it from
    /// then on.
    pub fn add_return_point(&mut self, id: u32, point: (u64, u64)) -> std::io::Result<()> {
        let Some(w) = self.windows.get_mut(&(id, Group::Entry)) else {
            return Err(std::io::Error::other("the probe has no cheap points"));
        };
        w.points.push(point);
        let (exe, pids, open) = (w.exe.clone(), w.pids.clone(), w.open);
        if let Some(key) = open {
            for pid in pids {
                self.attach_points(key, &exe, pid, &[point])?;
            }
        }
        Ok(())
    }

    /// Tells the BPF program that a return point now sits after `site`: calls from it
    /// are paired from now on.
    pub fn cover_site(&mut self, site: Site) -> Result<(), EngineError> {
        let key = psc_site_key {
            probe: site.probe,
            pid: site.pid,
            ret: site.ret,
        };
        self.sites.insert(key, 1, 0)?;
        Ok(())
    }

    /// Forgets the call sites seen in a process that exited (restarts would otherwise
    /// fill the table).
    pub fn forget_process(&mut self, pid: u32) {
        if self.sites_ids.is_empty() {
            return;
        }
        let keys: Vec<psc_site_key> = self
            .sites
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.pid == pid)
            .collect();
        for k in keys {
            let _ = self.sites.remove(&k);
        }
    }

    /// Forgets the call sites of probes that are gone (their ids are handed out again).
    fn forget_sites(&mut self, ids: &[u32]) {
        let keys: Vec<psc_site_key> = self
            .sites
            .keys()
            .filter_map(Result::ok)
            .filter(|k| ids.contains(&k.probe))
            .collect();
        for k in keys {
            let _ = self.sites.remove(&k);
        }
        self.new_sites.retain(|s| !ids.contains(&s.probe));
    }

    /// A free probe id (one whose uprobes are all gone), now handed out.
    fn allocate_id(&mut self) -> Result<u32, EngineError> {
        self.reclaim();
        let id = self
            .free
            .pop()
            .ok_or(EngineError::TooMany(PSC_MAX_PROBES))?;
        self.allocated.insert(id);
        Ok(id)
    }

    /// From now on, a probe whose costly group holds only return points (its entry is
    /// emulated) is attached with that group detached: the budget opens it once it has
    /// priced it from the entry's call rate. Attaching every return of a hot function
    /// for a first look costs the target more than the budget of a whole second: its
    /// single-stepped returns while they are measured, and again while the kernel takes
    /// them out (tens of ms, hit all the while).
    pub fn defer_costly(&mut self, on: bool) {
        self.defer_costly = on;
    }

    /// The points are attached in two groups (see `Group`), each under a window key
    /// that `set_window` detaches and attaches again for the budget; both windows start
    /// open (the costly one may start closed: `defer_costly`). The costly group holds
    /// the single-stepped points, and all the returns when any of them is single-stepped
    /// (a call is paired only if its return is watched wherever it returns).
    #[allow(clippy::too_many_arguments)]
    fn attach_id(
        &mut self,
        id: u32,
        pids: &[u32],
        exe: &Path,
        elf: &symbols::elf::Elf,
        f: &Function,
        plan: &Plan,
        points: &Points,
    ) -> Result<(), EngineError> {
        let paired = plan.wire.flags & PSC_F_PAIRED != 0;
        let returns_costly = points.returns.iter().any(|p| p.stepped);
        let entry_stepped = points.entries.iter().any(|p| p.stepped);
        let deferred = self.defer_costly && !entry_stepped;
        let mut wire = plan.wire;
        // Whichever group holds the return points, the program stores an entry to pair
        // only while they are all attached (WATCHING); the generation starts at 0.
        if paired {
            wire.flags |= PSC_F_WINDOWED;
            if !(returns_costly && deferred) {
                wire.flags |= PSC_F_WATCHING;
            }
            let group = if returns_costly {
                Group::Costly
            } else {
                Group::Entry
            };
            self.returns.insert(id, group);
        }
        wire.generation = 0;
        if points.sites && paired {
            wire.flags |= PSC_F_SITES;
            self.sites_ids.insert(id);
        }
        self.base_sample.insert(id, wire.sample_every.max(1));
        if wire.flags & PSC_F_EVENTS != 0 {
            wire.sample_every = wire.sample_every.max(1).saturating_mul(self.row_sample);
        }
        self.harvested.remove(&id);
        self.probes.set(id, wire, 0)?;
        self.plans.insert(id, wire);
        self.zero_counters(id, plan.wire.flags & PSC_F_LATENCY != 0)?;
        if plan.wire.flags & PSC_F_BY != 0 {
            self.reset_by(id)?;
        }
        let offset = |p: &Point| {
            elf.vaddr_to_offset(symbols::LinkAddr(p.addr))
                .map(|o| (o.0, p.cookie(id)))
                .ok_or_else(|| EngineError::NoOffset {
                    func: f.name.clone(),
                    addr: p.addr,
                })
        };
        let batched = self.multi.is_some();
        let attach_err = |(pid, error)| EngineError::Attach {
            func: f.name.clone(),
            pid,
            batched,
            error,
        };
        let returns: &[Point] = if paired { &points.returns } else { &[] };
        // Returns first, the entries last: a call that starts while the probe is being
        // attached is then either not seen at all or seen whole, never entered without
        // a return probe to complete it.
        let ordered = returns.iter().chain(&points.entries);
        let (mut costly, mut cheap) = (Vec::new(), Vec::new());
        for p in ordered {
            let is_ret = returns.contains(p);
            if p.stepped || (is_ret && returns_costly) {
                costly.push(offset(p)?);
            } else {
                cheap.push(offset(p)?);
            }
        }
        for (group, points) in [(Group::Costly, costly), (Group::Entry, cheap)] {
            if points.is_empty() {
                continue;
            }
            let w = Window {
                exe: exe.to_path_buf(),
                pids: pids.to_vec(),
                points,
                open: None,
                generation: 0,
            };
            self.windows.insert((id, group), w);
            if group == Group::Costly && deferred {
                continue;
            }
            self.open_window(id, group).map_err(attach_err)?;
        }
        Ok(())
    }

    /// Whether the points of `group` are attached now (their window is open).
    pub fn window_open(&self, id: u32, group: Group) -> bool {
        self.windows
            .get(&(id, group))
            .is_some_and(|w| w.open.is_some())
    }

    /// Whether the probe has points in `group` (attached in windows).
    pub fn has_group(&self, id: u32, group: Group) -> bool {
        self.windows.contains_key(&(id, group))
    }

    /// Opens or closes a window of a probe. For the group holding the return points,
    /// opening attaches them and then tells the program (every entry it then stores has
    /// its return watched); closing tells it first, and `release_window` detaches after
    /// the calls entered in the window have had time to return (at once for the entry
    /// group, whose entries would otherwise go on being stored). Other groups attach
    /// and detach at once.
    pub fn set_window(&mut self, id: u32, group: Group, open: bool) -> Result<(), EngineError> {
        let Some(w) = self.windows.get(&(id, group)) else {
            return Ok(());
        };
        if open == w.open.is_some() {
            return Ok(());
        }
        let holds_returns = self.returns.get(&id) == Some(&group);
        if open {
            if let Err((pid, error)) = self.open_window(id, group) {
                // What did attach goes again at once.
                if let Some(key) = self
                    .windows
                    .get_mut(&(id, group))
                    .and_then(|w| w.open.take())
                {
                    self.release_keys(&[key]);
                }
                return Err(EngineError::Attach {
                    func: format!("probe {id}"),
                    pid,
                    batched: self.multi.is_some(),
                    error,
                });
            }
            if holds_returns {
                self.set_watching(id, true)?;
            }
            Ok(())
        } else if holds_returns {
            self.set_watching(id, false)?;
            if group == Group::Entry {
                self.release_window(id, group);
            }
            Ok(())
        } else {
            self.release_window(id, group);
            Ok(())
        }
    }

    /// Detaches the points of a window closed by `set_window(id, group, false)`. When
    /// they are the return points, the generation goes up first: an entry stored before
    /// can then never pair with a return seen after the gap (harvest.rs).
    pub fn release_window(&mut self, id: u32, group: Group) {
        let holds_returns = self.returns.get(&id) == Some(&group);
        let watching = self
            .plans
            .get(&id)
            .is_some_and(|p| p.flags & PSC_F_WATCHING != 0);
        if holds_returns && watching {
            return;
        }
        let Some(key) = self
            .windows
            .get_mut(&(id, group))
            .and_then(|w| w.open.take())
        else {
            return;
        };
        if holds_returns && let Some(wire) = self.plans.get_mut(&id) {
            wire.generation = wire.generation.wrapping_add(1);
            let _ = self.probes.set(id, *wire, 0);
            self.harvest_due.get_or_insert_with(std::time::Instant::now);
        }
        self.release_keys(&[key]);
    }

    /// Whether a window of this group is still being removed (the next waits for it,
    /// so that windows never pile up in the kernel).
    pub fn window_busy(&self, id: u32, group: Group) -> bool {
        self.releasing
            .keys()
            .any(|&k| k & WINDOW_KEY != 0 && id_of(k) == id && (k >> 30) & 1 == group as u32)
    }

    fn open_window(&mut self, id: u32, group: Group) -> Result<(), (u32, std::io::Error)> {
        let w = self
            .windows
            .get_mut(&(id, group))
            .expect("a windowed group");
        w.generation = w.generation.wrapping_add(1);
        let key = window_key(id, group, w.generation);
        let (exe, pids, points) = (w.exe.clone(), w.pids.clone(), w.points.clone());
        w.open = Some(key);
        // One set of links per process; a failure names the process it was for.
        for pid in pids {
            self.attach_points(key, &exe, pid, &points)
                .map_err(|e| (pid, e))?;
        }
        Ok(())
    }

    /// Makes a row of only 1 call in `factor` (on top of each probe's own sampling), in
    /// every probe that records calls: the rest count as sampled out. Latency histograms
    /// and counts keep every call.
    pub fn set_row_sample(&mut self, factor: u32) {
        self.row_sample = factor.max(1);
        for (&id, wire) in &mut self.plans {
            if wire.flags & PSC_F_EVENTS == 0 {
                continue;
            }
            let base = self.base_sample.get(&id).copied().unwrap_or(1);
            wire.sample_every = base.saturating_mul(self.row_sample);
            let _ = self.probes.set(id, *wire, 0);
        }
    }

    fn set_watching(&mut self, id: u32, on: bool) -> Result<(), EngineError> {
        let Some(wire) = self.plans.get_mut(&id) else {
            return Ok(());
        };
        if on {
            wire.flags |= PSC_F_WATCHING;
        } else {
            wire.flags &= !PSC_F_WATCHING;
        }
        self.probes.set(id, *wire, 0)?;
        Ok(())
    }

    /// Measures what a uprobe hit costs here (see calibrate.rs): probes two functions of
    /// periscope's own under an inactive plan and times them against bare calls.
    pub fn calibrate(&mut self) -> Result<HitCost, EngineError> {
        let p = self.price_hits()?;
        Ok(HitCost {
            emulated_ns: p.emulated_ns,
            stepped_ns: p.stepped_ns,
            nop5_ns: p.nop5_ns,
            latency_floor_ns: self.calibrate_floor(false)?,
            latency_floor_stepped_ns: self.calibrate_floor(true)?,
        })
    }

    /// Measures the hit costs again (not the latency floors, which every latency
    /// already had subtracted): the session repeats it while probes run, so that the
    /// budget's prices follow the machine.
    pub fn price_hits(&mut self) -> Result<HitPrices, EngineError> {
        self.own_probe(Self::price_hits_with)
    }

    /// Runs `f` with a probe id of its own for a calibration on periscope's own code;
    /// its uprobes go after, whatever `f` returned (through the keeper, like any
    /// probe's: start-up does not wait for them).
    fn own_probe<T>(
        &mut self,
        f: impl FnOnce(&mut Self, u32) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let id = self.allocate_id()?;
        let result = f(self, id);
        self.detach(id);
        result
    }

    /// Fresh counters for probe `id` (per CPU), and its latency histogram.
    fn zero_counters(&mut self, id: u32, latency: bool) -> Result<(), EngineError> {
        // (Its counters per process stay readable after it is detached, for the final
        // summary, until its id is used again: now.)
        crate::procs::forget(&mut self.procs, &mut self.procs_harvested, &[id]);
        let ncpu = aya::util::nr_cpus().map_err(|(_, e)| EngineError::Io(e))?;
        self.stats.set(
            id,
            PerCpuValues::try_from(vec![psc_stats::default(); ncpu]).map_err(EngineError::Io)?,
            0,
        )?;
        if latency {
            self.hist.set(id, psc_hist::default(), 0)?;
        }
        Ok(())
    }

    fn price_hits_with(&mut self, id: u32) -> Result<HitPrices, EngineError> {
        let mut per_call = [0f64; 3];
        let mut spread = 0.0;
        for (k, (f, n)) in crate::calibrate::targets().into_iter().enumerate() {
            let (bare, _) = crate::calibrate::time_per_call(f, n);
            self.attach_own(id, &[(own_offset(f as usize)?, u64::from(id))])?;
            let (probed, s) = crate::calibrate::time_per_call(f, n);
            per_call[k] = (probed - bare).max(0.0);
            if k == 1 {
                spread = s;
            }
        }
        Ok(HitPrices {
            emulated_ns: per_call[0],
            stepped_ns: per_call[1],
            nop5_ns: per_call[2],
            spread,
        })
    }

    /// The median latency a probe measures on an empty function (calibrate.rs).
    fn calibrate_floor(&mut self, stepped: bool) -> Result<f64, EngineError> {
        self.own_probe(|e, id| e.calibrate_floor_with(id, stepped))
    }

    fn calibrate_floor_with(&mut self, id: u32, stepped: bool) -> Result<f64, EngineError> {
        self.probes
            .set(id, own_plan(PSC_F_ACTIVE | PSC_F_PAIRED | PSC_F_LATENCY), 0)?;
        self.zero_counters(id, true)?;
        let (entry, ret) = crate::calibrate::floor_points(stepped);
        let cookie = |kind: u32| u64::from(id) | (u64::from(kind) << PSC_COOKIE_KIND_SHIFT);
        let points = [
            (own_offset(ret)?, cookie(PSC_POINT_RET)),
            (own_offset(entry)?, cookie(PSC_POINT_ENTRY)),
        ];
        self.attach_own(id, &points)?;
        crate::calibrate::floor_calls(stepped);
        let h = crate::hist::to_hdr(&self.histogram(id));
        Ok(if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(0.5) as f64
        })
    }

    /// Whether this kernel's user stack, taken at a `push rbp` (a Go function's entry
    /// after its stack check), includes the caller, whose return address is then at
    /// [rsp]: Linux 6.12 does, and stable kernels that took the change (Debian 12's
    /// 6.1.192 does); a version cannot tell, so periscope asks the kernel once, on a
    /// function of its own. Before any probe is attached: it reads the ring buffer.
    pub fn kernel_adds_caller(&mut self) -> Result<bool, EngineError> {
        debug_assert!(self.plans.is_empty(), "events of probes would be dropped");
        self.own_probe(Self::kernel_adds_caller_with)
    }

    fn kernel_adds_caller_with(&mut self, id: u32) -> Result<bool, EngineError> {
        self.probes
            .set(id, own_plan(PSC_F_ACTIVE | PSC_F_EVENTS | PSC_F_STACK), 0)?;
        self.zero_counters(id, false)?;
        let (entry, ret) = crate::calibrate::stack_points();
        let cookie = u64::from(id) | (u64::from(PSC_POINT_ENTRY) << PSC_COOKIE_KIND_SHIFT);
        self.attach_own(id, &[(own_offset(entry)?, cookie)])?;
        crate::calibrate::stack_call();
        let mut stack_id = None;
        while let Some(item) = self.events.next() {
            if let Some(ev) = crate::wire::read::<psc_event>(&item, 0)
                && ev.probe == id
            {
                stack_id = u32::try_from(ev.stack_id).ok();
            }
        }
        let ips = stack_id.and_then(|s| self.stack(s)).ok_or_else(|| {
            EngineError::Io(std::io::Error::other(
                "calibration: no stack from a probe on periscope's own function",
            ))
        })?;
        // The probed function itself, then its caller or already the caller's caller.
        Ok(ips.get(1) == Some(&ret))
    }

    /// Uprobes in periscope's own process (calibration).
    fn attach_own(&mut self, id: u32, points: &[(u64, u64)]) -> Result<(), EngineError> {
        let pid = std::process::id();
        self.attach_points(id, Path::new("/proc/self/exe"), pid, points)
            .map_err(|error| EngineError::Attach {
                func: "periscope's calibration function".into(),
                pid,
                batched: self.multi.is_some(),
                error,
            })
    }

    /// Uprobes of probe `id` at `points` (file offset, cookie) in process `pid` (or in
    /// every process running `exe`: `EVERY_PROCESS`), registered in the order
    /// given: one uprobe_multi link where the kernel has them, else a perf-event link
    /// each. The keeper makes them (a link never exists outside it); without a keeper,
    /// periscope does.
    fn attach_points(
        &mut self,
        key: u32,
        exe: &Path,
        pid: u32,
        points: &[(u64, u64)],
    ) -> std::io::Result<()> {
        if self
            .keeper
            .as_ref()
            .is_some_and(|k| k.makes(crate::keeper::PROG_PERF))
        {
            return self.keeper_attach(key, exe, pid, points);
        }
        if let Some(multi) = &self.multi {
            match crate::multi::attach(multi.as_fd(), exe, pid, points) {
                Ok(link) => {
                    self.multi_proven = true;
                    self.keep(key, link, points.len());
                    return Ok(());
                }
                Err(e) if !self.multi_proven && is_unsupported(&e) => self.refuse_multi(&e),
                Err(e) => return Err(e),
            }
        }
        let prog_fd = program_fd(&mut self.ebpf)?;
        let links = points
            .iter()
            .map(|&(offset, cookie)| crate::uprobe::attach(prog_fd, exe, offset, pid, cookie))
            .collect::<Vec<_>>();
        let mut first_error = None;
        for link in links {
            match link {
                Ok(link) => self.keep(key, link, 1),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A kernel that loads the multi program but refuses its links: one perf event per
    /// uprobe from now on.
    fn refuse_multi(&mut self, e: &std::io::Error) {
        self.multi = None;
        self.multi_error = Some(format!("uprobe_multi links refused ({e})"));
    }

    /// attach_points through the keeper, in requests of at most MAX_POINTS points.
    fn keeper_attach(
        &mut self,
        key: u32,
        exe: &Path,
        pid: u32,
        points: &[(u64, u64)],
    ) -> std::io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(exe.as_os_str().as_bytes()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has a NUL byte")
        })?;
        let pmu = crate::uprobe::uprobe_pmu()?;
        let mut first_error = None;
        for chunk in points.chunks(crate::keeper::MAX_POINTS) {
            loop {
                let kind = if self.multi.is_some() {
                    crate::keeper::PROG_MULTI
                } else {
                    crate::keeper::PROG_PERF
                };
                let keeper = self.keeper.as_mut().expect("checked by the caller");
                let made = keeper.make(key, kind, pmu, &path, pid, chunk);
                *self.uprobes.entry(key).or_default() += made.uprobes;
                // periscope's copies: the keeper's are never the last (keeper.rs).
                self.links.entry(key).or_default().extend(made.links);
                match made.result {
                    Ok(()) => {
                        self.multi_proven |= kind == crate::keeper::PROG_MULTI;
                    }
                    Err(e)
                        if kind == crate::keeper::PROG_MULTI
                            && !self.multi_proven
                            && is_unsupported(&e) =>
                    {
                        self.refuse_multi(&e);
                        continue;
                    }
                    Err(e) => {
                        if !keeper.is_alive() {
                            self.keeper_error = Some(format!("the keeper process is gone ({e})"));
                        }
                        first_error.get_or_insert(e);
                    }
                }
                break;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Hands a duplicate of `link` to the keeper and keeps the original: from here on,
    /// periscope dying in any way leaves the removal of these uprobes to the keeper.
    fn keep(&mut self, key: u32, link: OwnedFd, uprobes: usize) {
        if let Some(Err(e)) = self.keeper.as_mut().map(|k| k.hold(key, &[link.as_fd()])) {
            self.keeper_error = Some(format!("the keeper process is gone ({e})"));
        }
        self.links.entry(key).or_default().push(link);
        *self.uprobes.entry(key).or_default() += uprobes;
    }

    /// Whether uprobes are batched into uprobe_multi links (else one perf event each).
    pub fn batched(&self) -> bool {
        self.multi.is_some()
    }

    /// Detaches every uprobe of a probe. Its counters and histogram stay readable until
    /// the id is reused.
    pub fn detach(&mut self, id: u32) {
        self.detach_many(&[id]);
    }

    /// Detaches several probes without waiting. Removing a perf-event uprobe waits for
    /// RCU grace periods under the kernel's event_mutex (~0.1 s per uprobe on this
    /// machine, serialized), so the plans are disabled at once and the keeper (or, without
    /// one, a background thread) closes the links. An id is reused only after its links
    /// are gone, so a late hit can never run under another probe's plan.
    pub fn detach_many(&mut self, ids: &[u32]) {
        // Only ids handed out by `attach`: freeing one twice would give it to two probes.
        let ids: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| self.allocated.remove(id))
            .collect();
        // Disable the plans first: a hit racing with the removal then does nothing.
        for &id in &ids {
            let _ = self.probes.set(id, psc_probe::default(), 0);
            self.plans.remove(&id);
            self.returns.remove(&id);
        }
        // Their stored entries can never pair now: out of the table before the id
        // is given to another probe.
        if !ids.is_empty() {
            self.harvest_due.get_or_insert_with(std::time::Instant::now);
        }
        let mut keys = Vec::new();
        for &id in &ids {
            self.detached.insert(id);
            keys.push(id);
            for group in [Group::Costly, Group::Entry] {
                if let Some(key) = self.windows.remove(&(id, group)).and_then(|w| w.open) {
                    keys.push(key);
                }
            }
        }
        self.release_keys(&keys);
    }

    /// Closes the links of `keys` without waiting (the keeper, or without one a
    /// background thread, closes them).
    fn release_keys(&mut self, keys: &[u32]) {
        let mut orphans = Vec::new();
        for &key in keys {
            let links = self.links.remove(&key).unwrap_or_default();
            let uprobes = self.uprobes.remove(&key).unwrap_or_default();
            self.releasing.insert(key, uprobes);
            match self.keeper.as_mut().filter(|k| k.is_alive()) {
                Some(k) => {
                    // Ours first, while the keeper's copies keep the uprobes: closing
                    // ours is then instant, and the keeper's close (after the RELEASE
                    // below) is the last, the one that removes them.
                    drop(links);
                    if k.release(key).is_err() {
                        // The keeper died: its copies closed when it exited.
                        self.closed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(key);
                    }
                }
                None => orphans.push((key, links)),
            }
        }
        if orphans.is_empty() {
            return;
        }
        let closed = Arc::clone(&self.closed);
        let closer = std::thread::spawn(move || {
            for (key, links) in orphans {
                drop(links);
                closed.lock().unwrap_or_else(|e| e.into_inner()).push(key);
            }
        });
        self.closers.push(closer);
    }

    /// Uprobes detached whose removal from the target is not finished yet.
    pub fn detaching(&self) -> usize {
        self.releasing.values().sum()
    }

    /// Waits until every detached probe's uprobes are gone from the target, calling
    /// `progress` with the number still to go whenever it changes.
    pub fn wait_detached(&mut self, mut progress: impl FnMut(usize)) {
        self.reclaim();
        let mut last = usize::MAX;
        while !self.releasing.is_empty() {
            let n = self.detaching();
            if n != last {
                progress(n);
                last = n;
            }
            let keeper_busy = self.keeper.as_ref().is_some_and(|k| k.releasing() > 0);
            if keeper_busy {
                self.take_released(true);
            } else {
                for c in self.closers.drain(..) {
                    let _ = c.join();
                }
            }
            self.reclaim();
        }
        progress(0);
    }

    /// Frees the ids whose links the keeper reports closed (waiting for one with `block`).
    fn take_released(&mut self, block: bool) {
        let done = self
            .keeper
            .as_mut()
            .map(|k| k.poll(block))
            .unwrap_or_default();
        self.free_ids(done);
        if self.keeper.as_ref().is_some_and(|k| !k.is_alive()) {
            self.replace_keeper();
        }
    }

    /// The keeper died (killed, say): periscope still holds a copy of every link, so
    /// nothing left the target, but a `kill -9` of periscope now would leak them. A new
    /// keeper takes copies of every link and the programs, and that is said.
    fn replace_keeper(&mut self) {
        let old = self.keeper.take().map_or(0, |k| {
            let pid = k.pid();
            k.reap();
            pid
        });
        let new = Keeper::spawn().and_then(|mut k| {
            give_programs(&mut k, &mut self.ebpf, self.multi.as_ref())?;
            for (&key, links) in &self.links {
                let fds: Vec<std::os::fd::BorrowedFd<'_>> =
                    links.iter().map(|l| l.as_fd()).collect();
                k.hold(key, &fds)?;
            }
            Ok(k)
        });
        match new {
            Ok(k) => {
                self.keeper_notes.push(format!(
                    "the keeper process (pid {old}) died; a new one (pid {}) holds every probe now",
                    k.pid()
                ));
                self.keeper = Some(k);
                self.keeper_error = None;
            }
            Err(e) => {
                let e = format!(
                    "the keeper process (pid {old}) died, and no new one could be started ({e})"
                );
                self.keeper_notes.push(e.clone());
                self.keeper_error = Some(e);
            }
        }
    }

    /// What happened to the keeper since the last call (see replace_keeper).
    pub fn take_keeper_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.keeper_notes)
    }

    fn reclaim(&mut self) {
        self.take_released(false);
        let closed: Vec<u32> = self
            .closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        self.free_ids(closed);
        self.closers.retain(|c| !c.is_finished());
    }

    /// Takes note of released keys, and frees each detached id none of whose keys is
    /// still being released.
    fn free_ids(&mut self, keys: Vec<u32>) {
        for key in keys {
            self.releasing.remove(&key);
            let id = id_of(key);
            let busy = self.releasing.keys().any(|&k| id_of(k) == id);
            if !busy && self.detached.remove(&id) {
                // Its sites must not look covered to the probe that gets the id next.
                if self.sites_ids.remove(&id) {
                    self.forget_sites(&[id]);
                }
                self.free.insert(0, id);
            }
        }
    }

    /// A probe's counters: the kernel's, summed over CPUs, and the calls harvest.rs
    /// found unwatched.
    /// Every probe's counters in each process, as (probe, pid, counters), for probes
    /// planned with PSC_F_PROCS.
    pub fn proc_stats(&self) -> Vec<(u32, u32, crate::procs::ProcStats)> {
        crate::procs::read(&self.procs, &self.procs_harvested)
    }

    pub fn stats(&self, id: u32) -> Stats {
        let Ok(per_cpu) = self.stats.get(&id, 0) else {
            return Stats::default();
        };
        let extra = self.harvested.get(&id).map(|h| h.stats).unwrap_or_default();
        per_cpu.iter().fold(extra, |a, s| a.plus(&Stats::from(s)))
    }

    /// Takes out of the kernel's table the stored entries that can no longer pair
    /// (harvest.rs), handing each unwatched call to `f` as an event. Waits a little
    /// after the generation changed, for BPF programs that read the old plan to finish.
    pub fn harvest(&mut self, force: bool, f: impl FnMut(u32, &[u8])) {
        const SETTLE: std::time::Duration = std::time::Duration::from_millis(2);
        let Some(since) = self.harvest_due else {
            return;
        };
        if !force && since.elapsed() < SETTLE {
            return;
        }
        self.harvest_due = None;
        crate::harvest::take(
            &mut self.pending,
            &self.plans,
            &mut self.harvested,
            &mut self.procs_harvested,
            f,
        );
    }

    /// Latency bucket counts (one histogram for all CPUs).
    pub fn histogram(&self, id: u32) -> Vec<u64> {
        match self.hist.get(&id, 0) {
            Ok(h) => h.buckets.to_vec(),
            Err(_) => vec![0u64; PSC_HIST_BUCKETS as usize],
        }
    }

    /// `--by`: each value's latency buckets (with a string value's first bytes), and
    /// the "other" histogram's (`flags` PSC_BY_OTHER_FLAG) once a probe has more values
    /// than the kernel keeps apart.
    pub fn by_histograms(&self, id: u32) -> Vec<(psc_by_key, Option<psc_by_name>, Vec<u64>)> {
        self.by_hist
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| k.probe == id)
            .map(|(k, h)| (k, self.by_names.get(&k, 0).ok(), h.buckets.to_vec()))
            .collect()
    }

    /// Forgets a probe id's `--by` histograms (a new probe may get the id).
    fn reset_by(&mut self, id: u32) -> Result<(), EngineError> {
        let stale: Vec<psc_by_key> = self
            .by_hist
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.probe == id)
            .collect();
        for k in &stale {
            let _ = self.by_hist.remove(k);
            let _ = self.by_names.remove(k);
        }
        self.by_count.set(id, 0, 0)?;
        Ok(())
    }

    /// The return addresses of a stack the BPF program recorded (`Call::stack`),
    /// innermost first, as the kernel walked them.
    pub fn stack(&self, id: u32) -> Option<Vec<u64>> {
        let trace = self.stacks.get(&id, 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).collect())
    }

    /// The outer part of a stack deeper than `stack` holds (`StackRef::outer`).
    pub fn outer(&self, key: u64) -> Option<Outer> {
        let o = self.outers.get(&key, 0).ok()?;
        let n = (o.n as usize).min(o.ips.len());
        Some(Outer {
            depth: o.depth,
            cut: o.cut != 0,
            ips: o.ips[..n].to_vec(),
        })
    }

    /// Hands at most `max` records waiting in the ring buffer to `f`; returns how
    /// many were read. The bound is what keeps periscope's memory flat when the program produces
    /// events faster than they are consumed: what is not drained stays in the ring
    /// buffer, and once that is full the BPF program drops and counts (`lost`).
    /// `f` gets each record with the id of the probe that wrote it (records of another
    /// kind or version are skipped, and counted).
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(u32, &[u8])) -> usize {
        // Readers call this every few milliseconds: the place to take the keeper's
        // answers, so that they never pile up in the socket.
        self.reclaim();
        self.harvest(false, &mut f);
        let mut n = 0;
        while n < max
            && let Some(item) = self.events.next()
        {
            if let Some(se) = crate::wire::read::<psc_site_event>(&item, 0)
                && u32::from(se.kind) == PSC_EV_SITE
            {
                self.new_sites.push(Site {
                    probe: se.probe,
                    pid: se.pid,
                    ret: se.ret,
                });
            } else if let Some(ev) = crate::wire::read::<psc_event>(&item, 0) {
                f(ev.probe, &item);
            }
            n += 1;
        }
        n
    }
}
