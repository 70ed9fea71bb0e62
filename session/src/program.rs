//! The processes a session probes: one executable file, run by one process (`--pid`),
//! a chosen few (`--pid` again), or every process that runs it, now and later (`--exe`:
//! replicas, restarts, containers). A uprobe lives on the file, so a process that
//! starts after the probes were attached is seen from its very first call; what
//! changes per process is where the file is mapped (a PIE's load bias) and its CPU time.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use symbols::LoadBias;
use symbols::process::{cpu_time_ns, exe_identity, is_alive, load_bias};

/// What the user named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// These processes (one or more), which must all run one executable.
    Pids(Vec<u32>),
    /// Every process running this executable, now and later: a path (which may not be
    /// running yet), or a program's file name matched against running processes.
    Exe(String),
}

/// Exited processes whose bias and place are kept for their calls still to be read.
const EXITED_KEPT: usize = 1024;

/// How often the processes are looked at again (exits, and new ones under `--exe`).
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Where a process runs, when that is not plainly on the host: what its rows carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Its pid in its own pid namespace (a container's), when that differs.
    pub nspid: Option<u32>,
    /// Its container's id (64 hex digits), from its cgroup path.
    pub container: Option<String>,
}

impl Place {
    fn of(pid: u32) -> Option<Arc<Place>> {
        let p = Place {
            nspid: nspid(pid),
            container: container_id(pid),
        };
        (p.nspid.is_some() || p.container.is_some()).then(|| Arc::new(p))
    }

    /// ` (container 0123456789ab, pid 1 inside)`, or nothing.
    pub fn describe(place: Option<&Place>) -> String {
        let Some(p) = place else {
            return String::new();
        };
        let mut parts = Vec::new();
        if let Some(c) = &p.container {
            parts.push(format!("container {}", &c[..12.min(c.len())]));
        }
        if let Some(ns) = p.nspid {
            parts.push(format!("pid {ns} inside"));
        }
        format!(" ({})", parts.join(", "))
    }
}

/// A process of the program.
#[derive(Debug, Clone)]
pub struct Proc {
    /// Which of the program's files it runs (`Program::file`): 0, or a deploy's.
    pub build: usize,
    pub bias: LoadBias,
    pub place: Option<Arc<Place>>,
    /// Its CPU time when periscope started counting it: 0 for a process that started
    /// while the probes were on the file (all its time was under them).
    cpu_base: u64,
    cpu_last: u64,
}

/// Something that happened to the program's processes, to be said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessNote {
    pub pid: u32,
    pub place: Option<Arc<Place>>,
    pub event: ProcessEvent,
    /// Processes of the program running after it.
    pub running: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    Started,
    Exited,
    /// It replaced its program (exec): the probes were on the old one.
    Execed,
}

impl ProcessNote {
    pub fn event_name(&self) -> &'static str {
        match self.event {
            ProcessEvent::Started => "started",
            ProcessEvent::Exited => "exited",
            ProcessEvent::Execed => "exec",
        }
    }

    pub fn describe(&self) -> String {
        let what = match self.event {
            ProcessEvent::Started => "started",
            ProcessEvent::Exited => "exited",
            ProcessEvent::Execed => "replaced its program (exec)",
        };
        format!(
            "pid {}{} {what}; {} process(es) of the program running",
            self.pid,
            Place::describe(self.place.as_deref()),
            self.running
        )
    }
}

/// One executable file of the program: the one found first, or a deploy's (a new file
/// at the path, or of the name).
pub struct ExeFile {
    /// Held open: `path` names it through this descriptor, for the kernel and for the
    /// keeper process, whatever becomes of the name it was found by (a process that
    /// exits, a file replaced, another mount namespace).
    file: std::fs::File,
    pub path: PathBuf,
    /// How people know it: the path given, or as its first process sees it.
    pub display: String,
    /// (device, inode).
    pub id: (u64, u64),
    /// Its first loaded address, once its catalog is read (the session's): until then
    /// its processes wait.
    first_load_vaddr: Option<u64>,
}

/// What finds a deploy: the path given (a new file put there), or the program's name
/// (a process running a new file of that name).
#[derive(Debug, Clone)]
enum Follow {
    Path(PathBuf),
    Name(String),
}

/// At most this many files in one session: each holds a catalog (tens of MB for a
/// large program).
pub const MAX_FILES: usize = 8;

pub struct Program {
    /// Every process running the file, those that start later included (`--exe`).
    pub every: bool,
    /// The files, the first found at 0 (`file`).
    files: Vec<ExeFile>,
    /// How people know the program: the path given, or as its first process sees it.
    pub display: String,
    follow: Option<Follow>,
    /// Files found since the session last asked (`take_new_files`).
    fresh: Vec<usize>,
    /// Files whose catalog could not be read, by identity, with their size and
    /// modification time then: tried again only once either changed (a file still
    /// being written).
    refused: BTreeMap<(u64, u64), (u64, i64)>,
    procs: BTreeMap<u32, Proc>,
    /// The pids chosen (`Scope::Pids`), in the order given.
    chosen: Vec<u32>,
    /// CPU time of processes that exited, as last read: in all, and each one's.
    cpu_gone: u64,
    gone_each: BTreeMap<u32, u64>,
    /// Processes that exited, the latest EXITED_KEPT: their calls still in the ring
    /// buffer are decoded with their own bias and place.
    exited: BTreeMap<u32, Proc>,
    exited_order: std::collections::VecDeque<u32>,
    notes: Vec<ProcessNote>,
    last_look: Instant,
    /// Clock ticks since boot when the session opened: a process started later has
    /// spent all its CPU time under the probes.
    opened_ticks: u64,
}

impl Program {
    /// Finds the processes and the file. `--exe` with a name needs a running process
    /// to find the file by; with a path, none needs to run yet.
    pub fn find(scope: &Scope) -> Result<Program, String> {
        let opened_ticks = uptime_ticks();
        let (file, display, pids, every, follow) = match scope {
            Scope::Pids(pids) if pids.is_empty() => {
                return Err("no process given: give a pid, or --exe PATH_OR_NAME".into());
            }
            Scope::Pids(pids) => {
                // (Each pid was checked by the caller: Session::open_scope.)
                let first = pids[0];
                let file = open_exe(first)?;
                let id = identity(&file)?;
                for &pid in &pids[1..] {
                    if exe_identity(pid) != Some(id) {
                        return Err(format!(
                            "pid {pid} runs {}, not {} (pid {first}): one program at a time (`--exe PATH` probes every process of one)",
                            exe_name(pid),
                            exe_name(first)
                        ));
                    }
                }
                (file, exe_name(first), pids.clone(), false, None)
            }
            Scope::Exe(given) if given.contains('/') => {
                let file = std::fs::File::open(given).map_err(|e| {
                    format!("--exe {given}: {e} (give the path of a Go executable, or a running program's name)")
                })?;
                if !file.metadata().is_ok_and(|m| m.is_file()) {
                    return Err(format!("--exe {given}: not a regular file"));
                }
                let id = identity(&file)?;
                let pids = running(|pid| exe_identity(pid) == Some(id));
                let follow = Follow::Path(PathBuf::from(given));
                (file, given.clone(), pids, true, Some(follow))
            }
            Scope::Exe(name) => {
                let pids = running(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/exe"))
                        .ok()
                        .is_some_and(|p| p.file_name().is_some_and(|n| n == name.as_str()))
                });
                let mut programs: BTreeMap<(u64, u64), Vec<u32>> = BTreeMap::new();
                for pid in pids {
                    if let Some(id) = exe_identity(pid) {
                        programs.entry(id).or_default().push(pid);
                    }
                }
                match programs.len() {
                    0 => {
                        return Err(format!(
                            "no running process runs a program named {name} (give its path to probe it from its first start: --exe /path/to/{name})"
                        ));
                    }
                    1 => {}
                    _ => {
                        let each: Vec<String> = programs
                            .values()
                            .map(|pids| format!("{} (pid {})", exe_name(pids[0]), join(pids)))
                            .collect();
                        return Err(format!(
                            "{name} names {} programs: {}; give the path of one",
                            programs.len(),
                            each.join(", ")
                        ));
                    }
                }
                let pids = programs.into_values().next().unwrap_or_default();
                let file = open_exe(pids[0])?;
                let follow = Follow::Name(name.clone());
                (file, exe_name(pids[0]), pids, true, Some(follow))
            }
        };
        let first = ExeFile::new(file, display.clone())?;
        let procs = pids
            .iter()
            .map(|&pid| {
                let cpu = cpu_time_ns(pid).unwrap_or(0);
                let p = Proc {
                    build: 0,
                    bias: LoadBias(0),
                    place: Place::of(pid),
                    cpu_base: cpu,
                    cpu_last: cpu,
                };
                (pid, p)
            })
            .collect();
        Ok(Program {
            every,
            files: vec![first],
            display,
            follow,
            fresh: Vec::new(),
            refused: BTreeMap::new(),
            procs,
            chosen: if every { Vec::new() } else { pids },
            cpu_gone: 0,
            gone_each: BTreeMap::new(),
            exited: BTreeMap::new(),
            exited_order: std::collections::VecDeque::new(),
            notes: Vec::new(),
            last_look: Instant::now(),
            opened_ticks,
        })
    }

    /// Where each process has the first file mapped, once the file's first loaded
    /// address is known (from its catalog).
    pub fn locate(&mut self, first_load_vaddr: u64) -> Result<(), symbols::Error> {
        self.files[0].first_load_vaddr = Some(first_load_vaddr);
        for (&pid, p) in &mut self.procs {
            p.bias = load_bias(pid, first_load_vaddr)?;
        }
        Ok(())
    }

    /// File `b` (0: the one found first).
    pub fn file(&self, b: usize) -> &ExeFile {
        &self.files[b]
    }

    /// (device, inode) of the file found first.
    pub fn id(&self) -> (u64, u64) {
        self.files[0].id
    }

    /// Files found since the last call (deploys): the session reads each one's catalog,
    /// then `located` (or `refuse`) lets its processes in.
    pub fn take_new_files(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.fresh)
    }

    /// File `b`'s catalog is read: its processes join at the next look.
    pub fn located(&mut self, b: usize, first_load_vaddr: u64) {
        self.files[b].first_load_vaddr = Some(first_load_vaddr);
        self.last_look = Instant::now() - LOOK_EVERY;
    }

    /// File `b` (the newest) cannot be probed: it is forgotten, and tried again only
    /// when its size or modification time changes.
    pub fn refuse(&mut self, b: usize) {
        if b + 1 == self.files.len() && b > 0 {
            let f = self.files.pop().expect("checked");
            self.refused.insert(f.id, f.stamp());
        }
    }

    /// The first pid given or found (0 when none runs yet): what single-process
    /// front-ends show.
    pub fn first_pid(&self) -> u32 {
        self.chosen
            .first()
            .or_else(|| self.procs.keys().next())
            .copied()
            .unwrap_or(0)
    }

    /// Whether it is more than the one process given: rows then say which process.
    pub fn is_many(&self) -> bool {
        self.every || self.chosen.len() > 1
    }

    /// The processes uprobes are attached in: every process of the file, or the pids
    /// chosen (those still running).
    pub fn attach_pids(&self) -> Vec<u32> {
        if self.every {
            vec![probes_ebpf::EVERY_PROCESS]
        } else {
            self.chosen
                .iter()
                .copied()
                .filter(|p| self.procs.contains_key(p))
                .collect()
        }
    }

    /// The processes running it now, by pid.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.keys().copied().collect()
    }

    /// A process running it, or one that exited lately (its calls may still be read).
    pub fn proc(&self, pid: u32) -> Option<&Proc> {
        self.procs.get(&pid).or_else(|| self.exited.get(&pid))
    }

    /// The load bias for a call of `pid`: a process seen for the first time (started
    /// since the last look) is added now.
    pub fn bias(&mut self, pid: u32) -> LoadBias {
        if let Some(p) = self.procs.get(&pid) {
            return p.bias;
        }
        // Exited since the last look, its calls still being read (a live process with
        // that pid is a new one).
        if let Some(p) = self.exited.get(&pid)
            && !is_alive(pid)
        {
            return p.bias;
        }
        if self.every
            && let Some(b) = exe_identity(pid).and_then(|id| self.located_file(id))
        {
            self.add(pid, b);
            if let Some(p) = self.procs.get(&pid) {
                return p.bias;
            }
        }
        // A process that exited before it was looked at: a PIE's bias is not known
        // then, and type names of its interface values are not found (said as such).
        LoadBias(0)
    }

    /// The file of that identity, if its catalog is read.
    fn located_file(&self, id: (u64, u64)) -> Option<usize> {
        self.files
            .iter()
            .position(|f| f.id == id && f.first_load_vaddr.is_some())
    }

    fn add(&mut self, pid: u32, build: usize) {
        let Some(vaddr) = self.files[build].first_load_vaddr else {
            return;
        };
        let Ok(bias) = load_bias(pid, vaddr) else {
            return;
        };
        let cpu = cpu_time_ns(pid).unwrap_or(0);
        let base = if start_ticks(pid).is_some_and(|t| t >= self.opened_ticks) {
            0
        } else {
            cpu
        };
        let place = Place::of(pid);
        self.exited.remove(&pid);
        self.procs.insert(
            pid,
            Proc {
                build,
                bias,
                place: place.clone(),
                cpu_base: base,
                cpu_last: cpu,
            },
        );
        let running = self.procs.len();
        self.notes.push(ProcessNote {
            pid,
            place,
            event: ProcessEvent::Started,
            running,
        });
    }

    /// Looks at the processes again when that is due: those that exited or exec'ed
    /// leave (their CPU time stays counted), and under `--exe` new ones join.
    pub fn look(&mut self) {
        if self.last_look.elapsed() < LOOK_EVERY {
            return;
        }
        self.last_look = Instant::now();
        // What an exiting process has used is kept from here (to the last look).
        for (&pid, p) in &mut self.procs {
            if let Some(now) = cpu_time_ns(pid) {
                p.cpu_last = p.cpu_last.max(now);
            }
        }
        let gone: Vec<(u32, ProcessEvent)> = self
            .procs
            .iter()
            .filter_map(|(&pid, p)| {
                if !is_alive(pid) {
                    return Some((pid, ProcessEvent::Exited));
                }
                match exe_identity(pid) {
                    Some(id) if id != self.files[p.build].id => Some((pid, ProcessEvent::Execed)),
                    None => Some((pid, ProcessEvent::Exited)),
                    _ => None,
                }
            })
            .collect();
        for (pid, event) in gone {
            let place = self.procs.remove(&pid).and_then(|p| {
                let used = p.cpu_last.saturating_sub(p.cpu_base);
                self.cpu_gone += used;
                *self.gone_each.entry(pid).or_default() += used;
                let place = p.place.clone();
                self.exited.insert(pid, p);
                self.exited_order.push_back(pid);
                if self.exited_order.len() > EXITED_KEPT
                    && let Some(old) = self.exited_order.pop_front()
                {
                    self.exited.remove(&old);
                }
                place
            });
            let running = self.procs.len();
            self.notes.push(ProcessNote {
                pid,
                place,
                event,
                running,
            });
        }
        if !self.every {
            return;
        }
        self.follow_deploys();
        let known: Vec<u32> = self.procs.keys().copied().collect();
        let mut new = Vec::new();
        running(|pid| {
            if known.contains(&pid) {
                return false;
            }
            if let Some(b) = exe_identity(pid).and_then(|id| self.located_file(id)) {
                new.push((pid, b));
            }
            false
        });
        for (pid, b) in new {
            self.add(pid, b);
        }
    }

    /// Finds a new file of the program: one put at the path given (found before any
    /// process runs it, so its first process is seen from its first call), or one a
    /// process of the program's name runs.
    fn follow_deploys(&mut self) {
        // One at a time: the newest file is being read (so a refused one is the last).
        if self.files.len() >= MAX_FILES
            || self
                .files
                .last()
                .is_some_and(|f| f.first_load_vaddr.is_none())
        {
            return;
        }
        let found: Option<(std::fs::File, String)> = match &self.follow {
            None => None,
            Some(Follow::Path(path)) => std::fs::metadata(path)
                .ok()
                .filter(|m| m.is_file() && self.is_new(meta_id(m), stamp_of(m)))
                .and_then(|_| std::fs::File::open(path).ok())
                .map(|f| (f, path.display().to_string())),
            Some(Follow::Name(name)) => {
                let mut found = None;
                running(|pid| {
                    if found.is_none()
                        && std::fs::read_link(format!("/proc/{pid}/exe"))
                            .is_ok_and(|p| p.file_name().is_some_and(|n| n == name.as_str()))
                        && let Ok(f) = std::fs::File::open(format!("/proc/{pid}/exe"))
                        && let Ok(m) = f.metadata()
                        && self.is_new(meta_id(&m), stamp_of(&m))
                    {
                        found = Some((f, exe_name(pid)));
                    }
                    false
                });
                found
            }
        };
        let Some((file, display)) = found else {
            return;
        };
        // (The path may have changed again between the look and the open: the file
        // opened is the one taken, whatever it is.)
        if let Ok(f) = ExeFile::new(file, display)
            && !self.files.iter().any(|k| k.id == f.id)
        {
            self.refused.remove(&f.id);
            self.files.push(f);
            self.fresh.push(self.files.len() - 1);
        }
    }

    /// Whether a file is not one of the program's yet (nor one refused as it is now).
    fn is_new(&self, id: (u64, u64), stamp: (u64, i64)) -> bool {
        !self.files.iter().any(|f| f.id == id) && self.refused.get(&id) != Some(&stamp)
    }

    /// CPU time of the program's processes since periscope started counting each,
    /// those that exited included: it only grows.
    pub fn cpu_ns(&self) -> Option<u64> {
        let mut total = self.cpu_gone;
        let mut any = false;
        for (&pid, p) in &self.procs {
            let now = cpu_time_ns(pid);
            any |= now.is_some();
            total += now.unwrap_or(0).max(p.cpu_last).saturating_sub(p.cpu_base);
        }
        (any || self.cpu_gone > 0 || self.every).then_some(total)
    }

    /// Each process's CPU time since periscope started counting it, those that exited
    /// included (as last read).
    pub fn cpu_each(&self) -> BTreeMap<u32, u64> {
        let mut each = self.gone_each.clone();
        for (&pid, p) in &self.procs {
            let now = cpu_time_ns(pid).unwrap_or(0).max(p.cpu_last);
            *each.entry(pid).or_default() += now.saturating_sub(p.cpu_base);
        }
        each
    }

    /// What happened to the processes since the last call.
    pub fn take_notes(&mut self) -> Vec<ProcessNote> {
        std::mem::take(&mut self.notes)
    }

    /// Whether nothing is left to probe: every chosen process is gone (under `--exe`,
    /// the probes wait on the file for the next one).
    pub fn is_over(&self) -> bool {
        !self.every && self.procs.is_empty()
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn open_exe(pid: u32) -> Result<std::fs::File, String> {
    std::fs::File::open(format!("/proc/{pid}/exe")).map_err(|e| {
        match symbols::process::exe_path(pid) {
            Err(e) => e.to_string(),
            Ok(_) => format!("pid {pid}: its executable cannot be opened ({e})"),
        }
    })
}

fn identity(file: &std::fs::File) -> Result<(u64, u64), String> {
    file.metadata()
        .map(|m| meta_id(&m))
        .map_err(|e| format!("the executable cannot be read: {e}"))
}

fn meta_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Size and modification time: whether a file is still being written.
fn stamp_of(m: &std::fs::Metadata) -> (u64, i64) {
    use std::os::unix::fs::MetadataExt;
    (m.size(), m.mtime_nsec() + m.mtime() * 1_000_000_000)
}

impl ExeFile {
    fn new(file: std::fs::File, display: String) -> Result<ExeFile, String> {
        use std::os::fd::AsRawFd;
        let id = identity(&file)?;
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            file.as_raw_fd()
        ));
        Ok(ExeFile {
            file,
            path,
            display,
            id,
            first_load_vaddr: None,
        })
    }

    fn stamp(&self) -> (u64, i64) {
        self.file.metadata().map(|m| stamp_of(&m)).unwrap_or((0, 0))
    }
}

/// The executable of `pid` as it names it (`/usr/bin/shop`).
fn exe_name(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("/proc/{pid}/exe"))
}

/// Running processes (not zombies, not periscope itself) for which `pick` holds.
fn running(mut pick: impl FnMut(u32) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && pick(pid) && is_alive(pid))
        .collect();
    pids.sort_unstable();
    pids
}

/// The pid a process has in its own pid namespace, when that is another one.
fn nspid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    let ids: Vec<u32> = line[6..]
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    (ids.len() > 1).then(|| *ids.last().unwrap_or(&pid))
}

/// The id of the container a process runs in, from its cgroup path: a 64-digit hex
/// segment, as Docker (`/docker/ID`, `docker-ID.scope`), containerd and CRI-O
/// (`cri-containerd-ID.scope`, `crio-ID.scope`) and Podman (`libpod-ID.scope`) name them.
fn container_id(pid: u32) -> Option<String> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cgroups
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .flat_map(|path| path.split('/'))
        .find_map(|seg| {
            let seg = seg.strip_suffix(".scope").unwrap_or(seg);
            let id = seg.rsplit('-').next().unwrap_or(seg);
            (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
        })
}

/// When the process started, in clock ticks since boot (stat(5) field 22).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(19)?.parse().ok()
}

fn uptime_ticks() -> u64 {
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (up * hz) as u64
}

impl Program {
    /// The path of the file for people (`/usr/bin/shop`).
    pub fn file_name(&self) -> String {
        Path::new(&self.display)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.display.clone())
    }
}
