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
use symbols::probe_points::EntryKind;

use crate::calibrate::HitCost;
use crate::error::EngineError;
use crate::keeper::Keeper;
use crate::plan::Plan;
use crate::wire::*;

const PROGRAM: &str = "periscope_probe";

pub struct Engine {
    ebpf: aya::Ebpf,
    probes: Array<MapData, psc_probe>,
    stats: PerCpuArray<MapData, psc_stats>,
    hist: PerCpuArray<MapData, psc_hist>,
    events: RingBuf<MapData>,
    /// periscope's own copy of each probe's uprobe links; the keeper holds another.
    links: HashMap<u32, Vec<OwnedFd>>,
    keeper: Option<Keeper>,
    /// Why there is no keeper, when there is none.
    pub keeper_error: Option<String>,
    free: Vec<u32>,
    /// Ids handed out by `attach` and not yet detached.
    allocated: HashSet<u32>,
    /// Without a keeper: ids whose links a background thread has closed.
    closed: Arc<Mutex<Vec<u32>>>,
    closers: Vec<std::thread::JoinHandle<()>>,
    /// Uprobes detached and not yet gone from the kernel, by id.
    detaching: HashMap<u32, usize>,
    /// Uprobes attached, by id.
    uprobes: HashMap<u32, usize>,
    /// The program loaded again for uprobe_multi links (multi.rs), where the kernel
    /// has them; otherwise each uprobe is a perf event of its own.
    multi: Option<OwnedFd>,
    /// Why uprobes are not batched, when they are not.
    pub multi_error: Option<String>,
    /// A multi link has been made: an EINVAL from now on is about the offsets given.
    multi_proven: bool,
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
    pub prog_ns: u64,
}

impl Stats {
    /// Calls entered and not yet accounted for: running now, or never returned through
    /// a RET (a panic, a tail jump out of the function).
    pub fn in_flight(&self) -> u64 {
        self.hits
            .saturating_sub(self.emitted + self.filtered + self.sampled_out + self.lost)
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
        let mut take =
            |name: &'static str| ebpf.take_map(name).ok_or(EngineError::MissingMap(name));
        let probes = Array::try_from(take("psc_probes")?)?;
        let stats = PerCpuArray::try_from(take("psc_stats")?)?;
        let hist = PerCpuArray::try_from(take("psc_hist")?)?;
        let events = RingBuf::try_from(take("psc_events")?)?;
        Ok(Engine {
            ebpf,
            probes,
            stats,
            hist,
            events,
            links: HashMap::new(),
            keeper,
            keeper_error,
            free: (0..PSC_MAX_PROBES).rev().collect(),
            allocated: Default::default(),
            closed: Arc::new(Mutex::new(Vec::new())),
            closers: Vec::new(),
            detaching: HashMap::new(),
            uprobes: HashMap::new(),
            multi,
            multi_error,
            multi_proven: false,
        })
    }

    /// The keeper process's pid (see keeper.rs), when there is one.
    pub fn keeper_pid(&self) -> Option<u32> {
        self.keeper.as_ref().map(Keeper::pid)
    }

    /// Attaches `plan` to `f` in process `pid`, whose executable is `exe`; returns the
    /// probe id that its events carry.
    pub fn attach(
        &mut self,
        pid: u32,
        exe: &Path,
        elf: &symbols::elf::Elf,
        f: &Function,
        plan: &Plan,
    ) -> Result<u32, EngineError> {
        let id = self.allocate_id()?;
        match self.attach_id(id, pid, exe, elf, f, plan) {
            Ok(()) => Ok(id),
            Err(e) => {
                self.detach(id);
                Err(e)
            }
        }
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

    fn attach_id(
        &mut self,
        id: u32,
        pid: u32,
        exe: &Path,
        elf: &symbols::elf::Elf,
        f: &Function,
        plan: &Plan,
    ) -> Result<(), EngineError> {
        self.probes.set(id, plan.wire, 0)?;
        let ncpu = aya::util::nr_cpus().map_err(|(_, e)| EngineError::Io(e))?;
        self.stats.set(
            id,
            PerCpuValues::try_from(vec![psc_stats::default(); ncpu]).map_err(EngineError::Io)?,
            0,
        )?;
        if plan.wire.flags & PSC_F_LATENCY != 0 {
            self.hist.set(
                id,
                PerCpuValues::try_from(vec![psc_hist::default(); ncpu]).map_err(EngineError::Io)?,
                0,
            )?;
        }
        let points = f.probes.as_ref().ok_or_else(|| EngineError::NoOffset {
            func: f.name.clone(),
            addr: f.entry,
        })?;
        let entry_kind = match points.entry_kind {
            EntryKind::StackCheckBranch => PSC_POINT_ENTRY_JBE,
            _ => PSC_POINT_ENTRY,
        };
        // Returns first, the entry last: a call that starts while the probe is being
        // attached is then either not seen at all or seen whole, never entered without
        // a return probe to complete it.
        let mut sites = Vec::new();
        if plan.wire.flags & PSC_F_PAIRED != 0 {
            sites.extend(points.returns.iter().map(|&r| (r, PSC_POINT_RET)));
        }
        sites.push((points.entry, entry_kind));
        let mut offsets = Vec::with_capacity(sites.len());
        for (addr, kind) in sites {
            let offset = elf
                .vaddr_to_offset(addr)
                .ok_or_else(|| EngineError::NoOffset {
                    func: f.name.clone(),
                    addr,
                })?;
            offsets.push((offset, u64::from(id) | (u64::from(kind) << 32)));
        }
        self.attach_points(id, exe, pid, &offsets)
            .map_err(|error| EngineError::Attach {
                func: f.name.clone(),
                pid,
                error,
            })
    }

    /// Measures what a uprobe hit costs here (see calibrate.rs): probes two functions of
    /// periscope's own under an inactive plan and times them against bare calls.
    pub fn calibrate(&mut self) -> Result<HitCost, EngineError> {
        let id = self.allocate_id()?;
        let result = self.calibrate_with(id);
        // The links go like any probe's (through the keeper): startup does not wait.
        self.detach(id);
        result
    }

    fn calibrate_with(&mut self, id: u32) -> Result<HitCost, EngineError> {
        let exe = Path::new("/proc/self/exe");
        let pid = std::process::id();
        let mut per_call = [0f64; 2];
        for (k, (f, n)) in crate::calibrate::targets().into_iter().enumerate() {
            let bare = crate::calibrate::time_per_call(f, n);
            let offset = crate::calibrate::file_offset(f as usize).ok_or_else(|| {
                EngineError::Io(std::io::Error::other(
                    "calibration: periscope's own code is not in /proc/self/maps",
                ))
            })?;
            self.attach_points(id, exe, pid, &[(offset, u64::from(id))])
                .map_err(|error| EngineError::Attach {
                    func: "periscope's calibration function".into(),
                    pid,
                    error,
                })?;
            per_call[k] = (crate::calibrate::time_per_call(f, n) - bare).max(0.0);
        }
        Ok(HitCost {
            emulated_ns: per_call[0],
            stepped_ns: per_call[1],
        })
    }

    /// Uprobes of probe `id` at `points` (file offset, cookie), registered in the order
    /// given: one uprobe_multi link where the kernel has them, else a perf-event link
    /// each. Every link goes to the keeper at once.
    fn attach_points(
        &mut self,
        id: u32,
        exe: &Path,
        pid: u32,
        points: &[(u64, u64)],
    ) -> std::io::Result<()> {
        if let Some(multi) = &self.multi {
            match crate::multi::attach(multi.as_fd(), exe, pid, points) {
                Ok(link) => {
                    self.multi_proven = true;
                    self.keep(id, link, points.len());
                    return Ok(());
                }
                // A kernel that loads the program but refuses the link: one perf event
                // per uprobe from now on.
                Err(e) if !self.multi_proven && is_unsupported(&e) => {
                    self.multi = None;
                    self.multi_error = Some(format!("uprobe_multi links refused ({e})"));
                }
                Err(e) => return Err(e),
            }
        }
        let prog: &mut UProbe = self
            .ebpf
            .program_mut(PROGRAM)
            .expect("loaded")
            .try_into()
            .map_err(std::io::Error::other)?;
        let prog_fd = prog.fd().map_err(std::io::Error::other)?.as_fd();
        let links = points
            .iter()
            .map(|&(offset, cookie)| crate::uprobe::attach(prog_fd, exe, offset, pid, cookie))
            .collect::<Vec<_>>();
        let mut first_error = None;
        for link in links {
            match link {
                Ok(link) => self.keep(id, link, 1),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Hands a duplicate of `link` to the keeper and keeps the original: from here on,
    /// periscope dying in any way leaves the removal of these uprobes to the keeper.
    fn keep(&mut self, id: u32, link: OwnedFd, uprobes: usize) {
        if let Some(Err(e)) = self.keeper.as_mut().map(|k| k.hold(id, &[link.as_fd()])) {
            self.keeper_error = Some(format!("the keeper process is gone ({e})"));
        }
        self.links.entry(id).or_default().push(link);
        *self.uprobes.entry(id).or_default() += uprobes;
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
        }
        let mut orphans = Vec::new();
        for &id in &ids {
            let links = self.links.remove(&id).unwrap_or_default();
            let uprobes = self.uprobes.remove(&id).unwrap_or_default();
            self.detaching.insert(id, uprobes);
            match self.keeper.as_mut().filter(|k| k.is_alive()) {
                Some(k) => {
                    // Ours first, while the keeper's copies keep the uprobes: closing
                    // ours is then instant, and the keeper's close (after the RELEASE
                    // below) is the last, the one that removes them.
                    drop(links);
                    if k.release(id).is_err() {
                        // The keeper died: its copies closed when it exited.
                        self.closed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(id);
                    }
                }
                None => orphans.push((id, links)),
            }
        }
        if orphans.is_empty() {
            return;
        }
        let closed = Arc::clone(&self.closed);
        let closer = std::thread::spawn(move || {
            for (id, links) in orphans {
                drop(links);
                closed.lock().unwrap_or_else(|e| e.into_inner()).push(id);
            }
        });
        self.closers.push(closer);
    }

    /// Uprobes detached whose removal from the target is not finished yet.
    pub fn detaching(&self) -> usize {
        self.detaching.values().sum()
    }

    /// Waits until every detached probe's uprobes are gone from the target, calling
    /// `progress` with the number still to go whenever it changes.
    pub fn wait_detached(&mut self, mut progress: impl FnMut(usize)) {
        self.reclaim();
        let mut last = usize::MAX;
        while !self.detaching.is_empty() {
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

    fn free_ids(&mut self, ids: Vec<u32>) {
        for id in ids {
            if self.detaching.remove(&id).is_some() {
                self.free.insert(0, id);
            }
        }
    }

    pub fn stats(&self, id: u32) -> Stats {
        let Ok(per_cpu) = self.stats.get(&id, 0) else {
            return Stats::default();
        };
        per_cpu.iter().fold(Stats::default(), |a, s| Stats {
            hits: a.hits + s.hits,
            filtered: a.filtered + s.filtered,
            sampled_out: a.sampled_out + s.sampled_out,
            lost: a.lost + s.lost,
            emitted: a.emitted + s.emitted,
            morestack: a.morestack + s.morestack,
            unpaired: a.unpaired + s.unpaired,
            returns: a.returns + s.returns,
            ret_hits: a.ret_hits + s.ret_hits,
            prog_ns: a.prog_ns + s.prog_ns,
        })
    }

    /// Latency bucket counts summed over CPUs.
    pub fn histogram(&self, id: u32) -> Vec<u64> {
        let mut sum = vec![0u64; PSC_HIST_BUCKETS as usize];
        if let Ok(per_cpu) = self.hist.get(&id, 0) {
            for h in per_cpu.iter() {
                for (s, b) in sum.iter_mut().zip(h.buckets.iter()) {
                    *s += b;
                }
            }
        }
        sum
    }

    /// Hands at most `max` records waiting in the ring buffer to `f`; returns how
    /// many. The bound is what keeps periscope's memory flat when the program produces
    /// events faster than they are consumed: what is not drained stays in the ring
    /// buffer, and once that is full the BPF program drops and counts (`lost`).
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        // Readers call this every few milliseconds: the place to take the keeper's
        // answers, so that they never pile up in the socket.
        self.reclaim();
        let mut n = 0;
        while n < max
            && let Some(item) = self.events.next()
        {
            f(&item);
            n += 1;
        }
        n
    }
}
