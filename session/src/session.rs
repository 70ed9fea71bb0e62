//! One live target and the probes on it: the part of periscope that the TUI, the shell
//! and their tests share. It owns the catalog and the BPF engine; dropping it detaches
//! everything (all kernel objects are owned by its file descriptors).
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use probes_ebpf::points::Points;
use probes_ebpf::{Call, Engine, Plan, Stats};
use rustc_hash::FxHashMap;
use symbols::Catalog;

use crate::build::Build;
pub use crate::deploy::DeployNote;
pub use crate::error::{OpenError, SetError};
use crate::governor::{Governor, Note, Watch};
use crate::program::Program;
pub use crate::program::{Place, Scope};
pub use crate::spec::ProbeSpec;

mod callers;
mod deploys;
mod learn;
mod processes;

/// Events decoded at a time: a bound on what a reader holds between two looks at the
/// clock, the keyboard or its output.
pub const DRAIN_BATCH: usize = 8192;

/// What became of the target process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Running,
    Exited,
    /// It replaced its program (exec): the probes were on the old one.
    Execed {
        program: String,
    },
}

impl Target {
    /// "pid N exited" / "pid N replaced its program with /usr/bin/x (exec)", for
    /// messages.
    pub fn describe(&self, pid: u32) -> String {
        match self {
            Target::Running => format!("pid {pid} is running"),
            Target::Exited => format!("pid {pid} exited"),
            Target::Execed { program } => {
                format!("pid {pid} replaced its program with {program} (exec)")
            }
        }
    }
}

/// A probe as it was set: the settings in force (they can differ from those asked for),
/// and a note on the difference.
#[derive(Debug, Clone, PartialEq)]
pub struct SetOk {
    pub settings: ProbeSpec,
    pub note: Option<String>,
    /// What the probe will add to each call, from the calibration and its points.
    pub per_call_ns: Option<f64>,
    /// Where it sits, in words.
    pub points: Option<String>,
    /// Its number (see `Session::probes`); None when the probe was removed.
    pub number: Option<u32>,
}

/// A call decoded from the ring buffer: `func` is its probe's (the first function of
/// the probe's name), `at` the function that was called (one of the name's), both as
/// the session's catalog (`cat`) knows them.
#[derive(Debug, Clone)]
pub struct Row {
    pub func: usize,
    pub at: usize,
    /// The program's file it ran in: 0, or a later deploy's (program.rs), whose
    /// catalog knows the function as `own`.
    pub build: usize,
    pub own: usize,
    pub call: Call,
    /// Its callers, innermost first (`--stack`).
    pub stack: Option<Callers>,
    /// Its process's container and namespace pid, when it is in one (program.rs).
    pub place: Option<Arc<crate::program::Place>>,
}

/// A kernel stack id, the caller at the entry, the outer part's key, the load bias of
/// the process it was taken in, and the file it runs (a deploy's addresses mean other
/// functions).
type StackKey = (u32, Option<u64>, Option<u64>, u64, usize);

/// A call's callers, innermost first: its caller at the line of the call, then that
/// one's caller, up to PSC_STACK_DEPTH frames; for a deeper stack, its outermost
/// frames after those, and the count of the frames between (`Stack::elided`).
#[derive(Debug, Clone, PartialEq)]
pub enum Callers {
    Frames(Arc<crate::stack::Stack>),
    /// Why there is none (the kernel's stack table was full, say).
    NotCaptured(String),
}

/// One probe as the user sees it: every function its name means (see
/// symbols::resolve), each attached as an engine probe of its own (their types, and so
/// their plans, can differ: generic instantiations).
struct Active {
    /// Its number, for the shell and for messages: kept when the probe is replaced.
    number: u32,
    /// What it captures, as set (it can differ from what was asked).
    spec: ProbeSpec,
    members: Vec<Member>,
    /// The target's CPU time when the probe was attached (its counters start at zero),
    /// and each process's (a program of several).
    cpu_at_attach: Option<u64>,
    cpu_each_at_attach: std::collections::BTreeMap<u32, u64>,
    latency: bool,
    /// Calls made rows with their results read, and of them those that returned a
    /// non-nil error (functions with an `error` result).
    errors: Option<ErrorCount>,
}

/// A probe's calls with results read, and those among them that returned an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCount {
    pub returned: u64,
    pub errors: u64,
}

struct Member {
    /// Which of the program's files (`Session::builds`), and the function in its catalog.
    build: usize,
    func: usize,
    /// The function as the session's catalog knows it (the same name): what rows say.
    shown: usize,
    id: u32,
    plan: Plan,
    points: Points,
    /// Its call sites in use, learnt (sites.rs): a paired probe whose returns are RETs.
    learn: Option<crate::sites::Learn>,
}

/// What a probe has cost the target since it was attached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeCost {
    /// Nanoseconds added to each call, all its points together.
    pub per_call_ns: f64,
    /// Share of the target's CPU time spent on this probe.
    pub overhead_pct: Option<f64>,
    /// What the budget does with it.
    pub watch: Option<Watch>,
}

pub struct Session {
    /// The first process given or found (0 when none runs yet: `--exe PATH`).
    pub pid: u32,
    /// The executable, as the kernel and the keeper find it (program.rs).
    pub exe: PathBuf,
    /// Its processes: one, a chosen few, or every one that runs the file.
    program: Program,
    /// The catalog of the file the session was opened on: the functions front-ends
    /// list, and rows name.
    pub cat: Arc<Catalog>,
    /// Each file of the program: `cat`'s first, then each deploy's.
    builds: Vec<Build>,
    engine: Engine,
    /// Fast-hashed: two lookups per decoded call.
    active: FxHashMap<usize, Active>,
    /// Engine probe id → (the probe's function, its member).
    by_id: FxHashMap<u32, (usize, usize)>,
    next_number: u32,
    pub max_string: u16,
    /// What a uprobe hit costs here, measured at start-up; the error says why not.
    pub hit_cost: Result<probes_ebpf::HitCost, String>,
    gov: Governor,
    /// Keeps `hit_cost`'s prices current while probes run.
    pricing: Option<crate::pricing::Pricing>,
    /// Symbolized stacks, by (stack id, caller at the entry, outer part): the kernel
    /// deduplicates stacks, so each is walked and symbolized once.
    stacks: HashMap<StackKey, Arc<crate::stack::Stack>>,
    /// A user stack taken at a `push rbp` includes the caller (Linux ≥ 6.12, and stable
    /// kernels that took the change: Engine::kernel_adds_caller).
    kernel_adds_caller: bool,
    /// What changed in where probes sit, to be said (`take_said`).
    said: Vec<String>,
    /// Deploys since the last call (`take_deploy_notes`).
    deploys: Vec<DeployNote>,
    /// A deploy's file being read.
    reading: Option<crate::deploy::Reading>,
    /// Each process's share of its CPU spent on probes (a program of several).
    shares: crate::per_process::Shares,
}

impl Session {
    /// Opens a running Go process: its catalog (which must have DWARF) and the BPF engine.
    pub fn open(pid: u32) -> Result<Session, OpenError> {
        Session::open_scope(&Scope::Pids(vec![pid]))
    }

    /// Opens a program: one process, several of one executable, or every process that
    /// runs an executable (program.rs).
    pub fn open_scope(scope: &Scope) -> Result<Session, OpenError> {
        if let Scope::Pids(pids) = scope {
            for &pid in pids {
                // One line for a pid that is not there, not ours, a zombie…
                symbols::process::exe_path(pid)?;
            }
        }
        let mut program = Program::find(scope).map_err(OpenError::Program)?;
        let exe = program.file(0).path.clone();
        let pid = program.first_pid();
        // Before anything large is read or made: an OOM kill would say nothing.
        crate::memory::check(&exe).map_err(OpenError::Memory)?;
        let cat = Catalog::open(&exe)?;
        // Without DWARF, calls are paired by the goroutine fields of a known Go
        // version (symbols::stripped); an unknown one is refused, never guessed.
        if !cat.has_dwarf && cat.g_offsets.is_none() {
            return Err(OpenError::Stripped {
                pid,
                version: cat.go_version.clone(),
                known: symbols::stripped::known_versions(),
            });
        }
        program.locate(cat.elf.first_load_vaddr())?;
        let mut engine = Engine::new()?;
        let hit_cost = engine.calibrate().map_err(|e| e.to_string());
        // Asked of the kernel (stable kernels took the change); by its version if that
        // fails.
        let kernel_adds_caller = engine
            .kernel_adds_caller()
            .unwrap_or_else(|_| symbols::process::kernel_version() >= (6, 12));
        // The budget opens deferred return points once priced: only with prices.
        engine.defer_costly(hit_cost.is_ok());
        let cat = Arc::new(cat);
        Ok(Session {
            pid,
            builds: vec![Build::new(Arc::clone(&cat), exe.clone())],
            exe,
            program,
            cat,
            engine,
            active: FxHashMap::default(),
            by_id: FxHashMap::default(),
            next_number: 1,
            max_string: 64,
            pricing: hit_cost.as_ref().ok().map(crate::pricing::Pricing::new),
            hit_cost,
            gov: Governor::new(Some(crate::budget::DEFAULT_PCT)),
            stacks: HashMap::new(),
            kernel_adds_caller,
            said: Vec::new(),
            deploys: Vec::new(),
            reading: None,
            shares: Default::default(),
        })
    }

    /// Sets (or replaces) the probe on function `func` and every function of the same
    /// name (closure copies, generic instantiations: symbols::resolve); empty settings
    /// remove it. On error the previous probe stays as it was. A note says what could
    /// not be done as asked (results of a function that never returns through a RET).
    pub fn set(&mut self, func: usize, s: &ProbeSpec) -> Result<SetOk, SetError> {
        let mut members = symbols::resolve::group(&self.cat, &self.cat.functions[func].name);
        // The probe is keyed by the function asked for, whichever copy that is: the
        // TUI knows it by that one.
        members.retain(|&m| m != func);
        members.insert(0, func);
        self.set_group(&members, s)
    }

    /// Sets (or replaces) one probe over `funcs` (from symbols::resolve), keyed by the
    /// first: its rows, counters and histogram are those of all of them together.
    pub fn set_group(&mut self, funcs: &[usize], s: &ProbeSpec) -> Result<SetOk, SetError> {
        let func = funcs[0];
        if s.is_empty() {
            self.remove(func);
            return Ok(SetOk {
                settings: s.clone(),
                note: None,
                per_call_ns: None,
                points: None,
                number: None,
            });
        }
        let mut attached: Vec<Member> = Vec::new();
        let mut first: Option<SetOk> = None;
        for &f in funcs {
            // Attaching takes the kernel ms per probe: the budget acts on the probes
            // already attached meanwhile (a hot one's first look ends on time).
            self.tick();
            match self.attach_one(0, f, s) {
                Ok((m, ok)) => {
                    attached.push(m);
                    first.get_or_insert(ok);
                }
                Err(e) => {
                    // All or nothing: the previous probe stays as it was.
                    let ids: Vec<u32> = attached.iter().map(|m| m.id).collect();
                    self.engine.detach_many(&ids);
                    // A target that exits mid-attach fails with whatever the kernel
                    // said about its files (ENOENT, ESRCH): say what happened.
                    if matches!(e, SetError::Attach(_))
                        && !self.program.every
                        && let Some(&pid) = self
                            .program
                            .pids()
                            .iter()
                            .find(|&&p| !symbols::process::is_alive(p))
                    {
                        return Err(SetError::ExitedDuringAttach(pid));
                    }
                    return Err(e);
                }
            }
        }
        // The program's later files (deploys) get the probe too, by name; what cannot
        // be done there is said, and leaves the probe on the others.
        let name = self.cat.functions[func].name.clone();
        for b in 1..self.builds.len() {
            match self.attach_by_name(b, func, s) {
                Ok(members) => attached.extend(members),
                Err(why) => self.said.push(why),
            }
        }
        let mut ok = first.expect("a probe has at least one function");
        let number = match self.active.get(&func) {
            Some(a) => a.number,
            None => {
                self.next_number += 1;
                self.next_number - 1
            }
        };
        ok.number = Some(number);
        self.remove(func);
        let cpu = self.program.cpu_ns();
        for (i, m) in attached.iter().enumerate() {
            self.gov
                .add(m.id as usize, m.id, &name, &self.engine, &m.points, cpu);
            self.by_id.insert(m.id, (func, i));
        }
        if attached.len() > 1 {
            ok.points = ok
                .points
                .map(|p| format!("{} functions named so, each {p}", attached.len()));
        }
        self.active.insert(
            func,
            Active {
                number,
                spec: ok.settings.clone(),
                members: attached,
                cpu_at_attach: cpu,
                cpu_each_at_attach: if self.program.is_many() {
                    self.program.cpu_each()
                } else {
                    Default::default()
                },
                latency: ok.settings.latency,
                errors: (ok.settings.ret
                    && self.cat.functions[func]
                        .results
                        .iter()
                        .flatten()
                        .any(|r| r.type_name == "error"))
                .then(ErrorCount::default),
            },
        );
        Ok(ok)
    }

    /// Plans and attaches the probe on function `func` of the program's file `b` (the
    /// budget's windows start open); the caller records it.
    fn attach_one(
        &mut self,
        b: usize,
        func: usize,
        s: &ProbeSpec,
    ) -> Result<(Member, SetOk), SetError> {
        let cat = Arc::clone(&self.builds[b].cat);
        let f = &cat.functions[func];
        let mut note = None;
        let adjusted;
        let mut s = s;
        // What this function cannot give is dropped from the probe, and said: results
        // of a stripped binary (its traceback layout has none: stripped.rs), results
        // and latency of a function that never returns through a RET.
        let cut = if !cat.has_dwarf && s.ret {
            if !(s.args || s.latency) {
                return Err(SetError::NoResults(f.name.clone()));
            }
            Some((
                false,
                "results need DWARF (the binary is stripped): arguments as raw words and latency only",
            ))
        } else if f.probes.as_ref().is_some_and(|p| p.returns.is_empty())
            && s.args
            && (s.ret || s.latency)
        {
            Some((
                true,
                "results and latency unavailable: it never returns through a RET (tail jump or assembly); arguments only",
            ))
        } else {
            None
        };
        if let Some((no_latency, why)) = cut {
            adjusted = ProbeSpec {
                ret: false,
                latency: s.latency && !no_latency,
                ..s.clone()
            };
            s = &adjusted;
            add_note(&mut note, &f.name, why);
        } else if let Some(points) = f.probes.as_ref().filter(|p| p.tail_jumps > 0)
            && (s.ret || s.latency)
        {
            add_note(
                &mut note,
                &f.name,
                &format!(
                    "{} exit(s) are tail jumps: calls that leave that way have no return and count as in flight",
                    points.tail_jumps
                ),
            );
        }
        if !cat.has_dwarf && s.args && f.params.is_none() {
            add_note(
                &mut note,
                &f.name,
                "its argument words cannot be located without DWARF (no stack check saves them)",
            );
        }
        let cond = match s.condition.as_deref().map(str::trim) {
            Some(c) if !c.is_empty() => {
                Some(probes_ebpf::condition::compile(&cat, f, c).map_err(SetError::Condition)?)
            }
            _ => None,
        };
        let mut plan =
            probes_ebpf::plan::build(&cat, f, &s.capture(self.max_string), cond.as_ref())?;
        // A condition on results or latency is decided at the return: it needs the
        // return points even when neither results nor latency are shown.
        let paired = s.ret || s.latency || cond.as_ref().is_some_and(|c| c.reads_results);
        let results = s.ret || cond.as_ref().is_some_and(|c| c.reads_results);
        let points = self.builds[b]
            .points(f, paired, results)
            .ok_or_else(|| SetError::NoCode(f.name.clone()))?;
        // Learnt return points are shared ones too.
        if points.returns.iter().any(|p| p.shared) || (points.sites && paired) {
            self.watch_recovery(b)?;
        }
        let stepped_entry = points.entries.iter().any(|p| p.stepped);
        plan.wire.latency_floor_ns = self.latency_floor_ns(stepped_entry) as u32;
        // Several processes: counted per process too (per_process.rs).
        if self.program.is_many() {
            plan.wire.flags |= probes_ebpf::wire::PSC_F_PROCS;
        }
        // Attach the new probe before detaching the old one, so a failed attach leaves
        // the old probe running. Expensive points go in windows that the budget opens
        // and closes (governor.rs); they start open.
        let id = self.engine.attach(
            &self.program.attach_pids(),
            &self.builds[b].exe,
            &cat.elf,
            f,
            &plan,
            &points,
        )?;
        if cond.is_some() && plan.wire.flags & probes_ebpf::wire::PSC_F_PAIRED != 0 {
            let ret = self
                .hit_cost
                .as_ref()
                .map(|hc| {
                    let each = if points.returns.iter().any(|p| p.stepped) {
                        hc.stepped_ns
                    } else {
                        hc.emulated_ns
                    };
                    format!(" (~{} each)", crate::format::fmt_ns(each as u64))
                })
                .unwrap_or_default();
            let paying = format!(
                "calls the condition filters out still pay for the return point{ret}: only results and latency need it"
            );
            add_note(&mut note, &f.name, &paying);
        }
        let per_call_ns = self.hit_cost.as_ref().ok().map(|hc| {
            let stepped = points.entries.iter().any(|p| p.stepped);
            let ret_stepped = points.returns.iter().any(|p| p.stepped);
            let ret = if points.returns.is_empty() {
                0.0
            } else if ret_stepped {
                hc.stepped_ns
            } else {
                hc.emulated_ns
            };
            (if stepped {
                hc.stepped_ns
            } else {
                hc.emulated_ns
            }) + ret
        });
        let described = Some(points.describe.clone());
        let ok = SetOk {
            settings: s.clone(),
            note,
            per_call_ns,
            points: described,
            number: None,
        };
        Ok((
            Member {
                build: b,
                func,
                // (A deploy's: see attach_by_name.)
                shown: func,
                id,
                learn: (points.sites && paired).then(|| crate::sites::Learn::new(results)),
                plan,
                points,
            },
            ok,
        ))
    }

    /// Watches the runtime's panic recovery in the program's file `b`, once: shared
    /// return points need it.
    fn watch_recovery(&mut self, b: usize) -> Result<(), SetError> {
        let build = &self.builds[b];
        if build.recovery.is_some() {
            return Ok(());
        }
        let addr = symbols::callsites::recovery_entry(&build.cat)
            .ok_or_else(|| SetError::NoCode("runtime.recovery".into()))?;
        let id = self.engine.watch_recovery(
            &self.program.attach_pids(),
            &build.exe,
            &build.cat.elf,
            addr,
        )?;
        self.builds[b].recovery = Some(id);
        Ok(())
    }

    pub fn remove(&mut self, func: usize) {
        if let Some(a) = self.active.remove(&func) {
            let ids: Vec<u32> = a.members.iter().map(|m| m.id).collect();
            for id in &ids {
                self.gov.remove(*id as usize);
                self.by_id.remove(id);
            }
            self.engine.detach_many(&ids);
        }
    }

    /// Removes every probe at once (the engine closes their links in the background).
    pub fn remove_all(&mut self) {
        self.gov.clear();
        let ids: Vec<u32> = self
            .active
            .drain()
            .flat_map(|(_, a)| a.members.into_iter().map(|m| m.id))
            .chain(self.builds.iter_mut().filter_map(|b| b.recovery.take()))
            .collect();
        self.by_id.clear();
        self.engine.detach_many(&ids);
    }

    /// Stops every probe (at once: see `Engine::detach_many`). The probes' calls stay
    /// readable through `drain` until the next `set`; their counters are final once
    /// `detaching` is 0 (until then, points not yet removed still count calls).
    pub fn stop_all(&mut self) {
        self.gov.freeze();
        let ids: Vec<u32> = self
            .active
            .values()
            .flat_map(|a| a.members.iter().map(|m| m.id))
            .chain(self.builds.iter_mut().filter_map(|b| b.recovery.take()))
            .collect();
        self.engine.detach_many(&ids);
    }

    /// Uprobes whose removal has not finished yet (`drain` takes note of removals).
    pub fn detaching(&self) -> usize {
        self.engine.detaching()
    }

    /// Each stopped probe's final counters and, for latency probes, its latency
    /// buckets: read after `detaching` is 0, they count exactly the calls `drain`
    /// gives (and the ones said lost or in flight).
    pub fn finals(&self) -> Vec<(usize, Stats, Option<Vec<u64>>)> {
        let mut finals: Vec<_> = self
            .active
            .keys()
            .map(|&func| {
                let st = self.stats(func).unwrap_or_default();
                (func, st, self.histogram(func))
            })
            .collect();
        finals.sort_by_key(|f| f.0);
        finals
    }

    /// Blocks until removed probes are gone from the target (removal runs in the
    /// keeper process: see `Engine::detach_many`); `progress` gets the number of
    /// uprobes still to go.
    pub fn wait_detached(&mut self, progress: impl FnMut(usize)) {
        self.engine.wait_detached(progress);
    }

    /// Removes every probe and waits until the target carries none of their uprobes,
    /// saying so on stderr when that takes a while. Every way periscope stops goes
    /// through here (or `stop_all`, then `drain` until `detaching` is 0) before the process exits.
    pub fn close(&mut self) {
        self.remove_all();
        self.wait_detached(detach_progress());
    }

    pub fn probed(&self) -> impl Iterator<Item = usize> + '_ {
        self.active.keys().copied()
    }

    /// Every probe as (number, function, what it captures), by number.
    pub fn probes(&self) -> Vec<(u32, usize, ProbeSpec)> {
        let mut v: Vec<_> = self
            .active
            .iter()
            .map(|(&f, a)| (a.number, f, a.spec.clone()))
            .collect();
        v.sort_by_key(|p| p.0);
        v
    }

    /// The function of probe `number`.
    pub fn probe_by_number(&self, number: u32) -> Option<usize> {
        self.active
            .iter()
            .find(|(_, a)| a.number == number)
            .map(|(&f, _)| f)
    }

    /// Decodes at most `max` waiting events into `out`; returns how many records were
    /// read (see `Engine::drain` for why there is a bound).
    pub fn drain(&mut self, out: &mut Vec<Row>, max: usize) -> usize {
        // Readers call this every few milliseconds: the budget's clock.
        self.tick();
        let first = out.len();
        let (builds, active, by_id) = (&self.builds, &self.active, &self.by_id);
        let program = &mut self.program;
        // The last process's bias and place: calls come in runs of one process (one
        // lookup a call otherwise, on the reader's hottest path).
        let mut last: Option<(u32, symbols::LoadBias, Option<Arc<crate::program::Place>>)> = None;
        let n = self.engine.drain(max, |probe, raw| {
            // Events of a probe that was just replaced or removed are dropped: their plan
            // is gone, and with it the meaning of their bytes.
            let Some(&(func, member)) = by_id.get(&probe) else {
                return;
            };
            let m = &active[&func].members[member];
            let pid = probes_ebpf::decode::pid_of(raw).unwrap_or(0);
            let (_, bias, place) = match &last {
                Some(l) if l.0 == pid => l,
                _ => last.insert((
                    pid,
                    program.bias(pid),
                    program.proc(pid).and_then(|p| p.place.clone()),
                )),
            }
            .clone();
            let cat = &builds[m.build].cat;
            if let Some(call) = probes_ebpf::decode::decode(raw, cat, &m.plan, bias) {
                out.push(Row {
                    func,
                    at: m.shown,
                    build: m.build,
                    own: m.func,
                    call,
                    stack: None,
                    place,
                });
            }
        });
        for r in out.iter_mut().filter(|r| r.stack.is_none()) {
            if let Some(s) = r.call.stack {
                r.stack = Some(self.callers(r.build, r.own, r.call.pid, s));
            }
        }
        for r in &out[first..] {
            self.count_error(r);
        }
        n
    }

    /// Counts a row's call among its probe's returned calls, and among its errors when
    /// an `error` result is non-nil (one not captured counts in neither).
    fn count_error(&mut self, r: &Row) {
        // (Rows without results, most of a flood of arguments, cost no lookup.)
        let Some(ret) = r.call.ret.as_deref() else {
            return;
        };
        let Some(count) = self.active.get_mut(&r.func).and_then(|a| a.errors.as_mut()) else {
            return;
        };
        let results = self.builds[r.build].cat.functions[r.own]
            .results
            .as_deref()
            .unwrap_or(&[]);
        let mut known = true;
        let mut failed = false;
        for (name, v) in ret {
            if !results
                .iter()
                .any(|x| *x.name == **name && x.type_name == "error")
            {
                continue;
            }
            match v {
                probes_ebpf::GoValue::Nil => {}
                probes_ebpf::GoValue::Iface { .. } => failed = true,
                _ => known = false,
            }
        }
        if known {
            count.returned += 1;
            count.errors += u64::from(failed);
        }
    }

    /// Calls made rows with their results read, and those that returned a non-nil
    /// error, for a probe reading the results of a function with an `error` result.
    pub fn errors(&self, func: usize) -> Option<ErrorCount> {
        self.active.get(&func)?.errors
    }

    /// Where a probe on `f` sits (probes_ebpf::points): at its call sites where every
    /// call is one of them (symbols::callsites, indexed once per session), else in the
    /// function. `results`: results are read at the return points.
    pub fn points(&self, f: &symbols::Function, paired: bool, results: bool) -> Option<Points> {
        self.builds[0].points(f, paired, results)
    }

    /// How many uprobes a probe on `func` with `s` would place (over every function of
    /// its name), for a progress line before attaching. 0 for a removal.
    pub fn uprobes_for(&self, func: usize, s: &ProbeSpec) -> usize {
        if s.is_empty() {
            return 0;
        }
        let name = &self.cat.functions[func].name;
        symbols::resolve::group(&self.cat, name)
            .into_iter()
            .filter_map(|m| self.points(&self.cat.functions[m], s.ret || s.latency, s.ret))
            .map(|p| p.entries.len() + p.returns.len())
            .sum()
    }

    /// The probe on `func`'s name in summaries: its function's, or for a generic
    /// function's bodies, every shape it covers (`main.Max[int|string]`).
    pub fn label(&self, func: usize) -> String {
        let names: Vec<&str> = match self.active.get(&func) {
            // (A deploy's members have the names of the first file's.)
            Some(a) => a
                .members
                .iter()
                .filter(|m| m.build == 0)
                .map(|m| self.cat.functions[m.func].name.as_str())
                .collect(),
            None => vec![self.cat.functions[func].name.as_str()],
        };
        symbols::resolve::label(&names)
    }

    /// Where the probe on `func` sits, in words (`entry: 3 call site(s); …`).
    pub fn describe_points(&self, func: usize) -> Option<String> {
        let a = self.active.get(&func)?;
        let m = a.members.first()?;
        let learnt = m.learn.as_ref().map(|l| l.describe()).unwrap_or_default();
        let first = &format!("{}{learnt}", m.points.describe);
        Some(match a.members.len() {
            1 => first.clone(),
            n => format!("{n} functions named so, the first: {first}"),
        })
    }

    /// Opens and closes the budget's windows that are due (see governor.rs), and
    /// measures the hit prices again when that is due (pricing.rs).
    pub fn tick(&mut self) {
        if let (Some(pricing), Ok(hc)) = (&mut self.pricing, &mut self.hit_cost)
            && !self.active.is_empty()
            && pricing.due()
        {
            let m = self.engine.price_hits().ok();
            if let Some(text) = pricing.record(m, hc) {
                self.gov.say(crate::budget::Mode::Pricing, text);
            }
        }
        self.learn_sites();
        self.program.look();
        self.follow_deploys();
        self.measure_shares();
        let program = &self.program;
        self.gov.tick(
            &mut self.engine,
            self.hit_cost.as_ref().ok(),
            || program.cpu_ns(),
            || symbols::process::own_cpu_ns().zip(symbols::process::machine_times_ns()),
        );
    }

    /// The budget: a share of the target's CPU time in %, or None (off).
    pub fn budget(&self) -> Option<f64> {
        self.gov.budget
    }

    pub fn set_budget(&mut self, budget: Option<f64>) {
        self.gov.set_budget(budget);
        self.engine
            .defer_costly(budget.is_some() && self.hit_cost.is_ok());
    }

    /// What the budget does with the probe on `func`. Of a probe over several
    /// functions: its busiest one's windows, and the calls of them all.
    pub fn watch(&self, func: usize) -> Option<Watch> {
        self.watch_at(func, None)
    }

    /// The same, with the target's CPU time now (`cost` reads it anyway) for a finer
    /// estimate of the calls not seen.
    fn watch_at(&self, func: usize, cpu_now: Option<u64>) -> Option<Watch> {
        let a = self.active.get(&func)?;
        let each: Vec<(Watch, Stats)> = a
            .members
            .iter()
            .filter_map(|m| {
                let st = self.engine.stats(m.id);
                Some((self.gov.watch(m.id as usize, &st, cpu_now)?, st))
            })
            .collect();
        let (busiest, _) = each.iter().max_by_key(|(_, st)| st.hits)?;
        let st = each
            .iter()
            .fold(Stats::default(), |sum, (_, st)| sum.plus(st));
        let unseen_est = each.iter().map(|(w, _)| w.unseen_est).sum();
        Some(Watch {
            unseen_est,
            unseen_at_least: each.iter().any(|(w, _)| w.unseen_at_least),
            observed_pct: crate::governor::observed_pct(&st, unseen_est),
            ..*busiest
        })
    }

    /// The keeper process died and was replaced (or could not be), since the last call.
    pub fn take_keeper_notes(&mut self) -> Vec<String> {
        self.engine.take_keeper_notes()
    }

    /// Changes in what the budget does, since the last call.
    pub fn take_budget_notes(&mut self) -> Vec<Note> {
        self.gov.take_notes()
    }

    /// When the cheap points alone cost more than the budget: their share of the
    /// target's CPU, in %.
    pub fn entries_over_budget(&self) -> Option<f64> {
        self.gov.entries_over
    }

    /// The probe's own time inside each latency it measures (calibrated at start-up,
    /// for an entry the kernel emulates or single-steps), subtracted from every latency.
    pub fn latency_floor_ns(&self, stepped_entry: bool) -> f64 {
        self.hit_cost.as_ref().map_or(0.0, |hc| {
            if stepped_entry {
                hc.latency_floor_stepped_ns
            } else {
                hc.latency_floor_ns
            }
        })
    }

    /// What the probe on `func` has cost the target since it was attached, from its
    /// counters `st` (see probes_ebpf::cost).
    pub fn cost(&self, func: usize, st: &Stats) -> Option<ProbeCost> {
        let cpu_now = self.program.cpu_ns();
        let hc = self.hit_cost.as_ref().ok()?;
        let a = self.active.get(&func)?;
        let c = probes_ebpf::cost::of(st, hc);
        let cpu = cpu_now
            .zip(a.cpu_at_attach)
            .map(|(now, then)| now.saturating_sub(then));
        Some(ProbeCost {
            per_call_ns: c.per_call_ns,
            overhead_pct: cpu.and_then(|cpu| probes_ebpf::cost::overhead_pct(c.total_ns, cpu)),
            watch: self.watch_at(func, cpu_now),
        })
    }

    pub fn stats(&self, func: usize) -> Option<Stats> {
        self.active.get(&func).map(|a| {
            a.members.iter().fold(Stats::default(), |sum, m| {
                sum.plus(&self.engine.stats(m.id))
            })
        })
    }

    /// `--by`: each value's latency buckets, named (`true`, `404`, `GET`, `other`), the
    /// busiest first.
    pub fn histograms_by(&self, func: usize) -> Option<Vec<(String, Vec<u64>)>> {
        use probes_ebpf::wire::*;
        let a = self.active.get(&func)?;
        let mut named: Vec<(String, Vec<u64>)> = Vec::new();
        for m in &a.members {
            let by = m.plan.by.as_ref()?;
            for (k, name, buckets) in self.engine.by_histograms(m.id) {
                let label = if k.flags & PSC_BY_OTHER_FLAG != 0 {
                    "other".to_string()
                } else {
                    match by.kind {
                        PSC_BY_BOOL => (k.value != 0).to_string(),
                        PSC_BY_INT if by.signed => (k.value as i64).to_string(),
                        PSC_BY_INT | PSC_BY_PID => k.value.to_string(),
                        _ => name.map_or_else(
                            || format!("#{:x}", k.value),
                            |n| {
                                let len = (n.len as usize).min(n.str_.len());
                                let s = String::from_utf8_lossy(&n.str_[..len]).into_owned();
                                // The first 32 bytes name it; a longer value is cut.
                                if len == n.str_.len() {
                                    format!("{s}…")
                                } else {
                                    s
                                }
                            },
                        ),
                    }
                };
                match named.iter_mut().find(|(l, _)| *l == label) {
                    Some((_, sum)) => sum.iter_mut().zip(buckets).for_each(|(s, x)| *s += x),
                    None => named.push((label, buckets)),
                }
            }
        }
        named.sort_by_key(|(_, b)| std::cmp::Reverse(b.iter().sum::<u64>()));
        Some(named)
    }

    /// Latency bucket counts (see `probes_ebpf::hist`) of a probe that records latency.
    pub fn histogram(&self, func: usize) -> Option<Vec<u64>> {
        let a = self.active.get(&func).filter(|a| a.latency)?;
        a.members
            .iter()
            .map(|m| self.engine.histogram(m.id))
            .reduce(|mut sum, h| {
                sum.iter_mut().zip(h).for_each(|(s, x)| *s += x);
                sum
            })
    }

    /// Whether the target still runs the program periscope opened. A process that execs
    /// another binary keeps its pid, but none of the probes apply to it any more.
    /// Of a program of several processes: whether any is left (or, for every process
    /// of a file, always: the next one is seen from its first call).
    pub fn target(&self) -> Target {
        if self.program.is_many() {
            return if self.program.is_over() {
                Target::Exited
            } else {
                Target::Running
            };
        }
        if !symbols::process::is_alive(self.pid) {
            return Target::Exited;
        }
        match symbols::process::exe_identity(self.pid) {
            Some(id) if id != self.program.id() => Target::Execed {
                program: std::fs::read_link(format!("/proc/{}/exe", self.pid))
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "another program".into()),
            },
            None => Target::Exited,
            _ => Target::Running,
        }
    }

    /// What became of the target, in words: "pid N exited", or for a program of
    /// several processes, "every process of /usr/bin/shop exited".
    pub fn describe_target(&self, t: &Target) -> String {
        if self.program.is_many() && *t == Target::Exited {
            format!("every process of {} exited", self.program.display)
        } else {
            t.describe(self.pid)
        }
    }

    /// The target in a few words: `pid 123`, `3 processes of /usr/bin/shop`.
    pub fn target_label(&self) -> String {
        if !self.program.is_many() {
            return format!("pid {}", self.pid);
        }
        match self.program.pids().len() {
            1 if !self.program.every => format!("pid {} of {}", self.pid, self.program.display),
            n => format!("{n} process(es) of {}", self.program.display),
        }
    }

    /// The program's file as people know it (the path given, or as its first process
    /// sees it): what a probe file names (`exe = …`).
    pub fn program_path(&self) -> String {
        self.program.display.clone()
    }

    /// Whether calls come from more than one process: rows then say which.
    pub fn is_many(&self) -> bool {
        self.program.is_many()
    }

    /// The processes running the program now.
    pub fn pids(&self) -> Vec<u32> {
        self.program.pids()
    }

    /// A process's container and namespace pid, when it is in one.
    pub fn place(&self, pid: u32) -> Option<Arc<crate::program::Place>> {
        self.program.proc(pid).and_then(|p| p.place.clone())
    }

    /// Changes in where probes sit since the last call (learnt return points).
    pub fn take_said(&mut self) -> Vec<String> {
        std::mem::take(&mut self.said)
    }

    /// Processes that started, exited or exec'ed since the last call.
    pub fn take_process_notes(&mut self) -> Vec<crate::program::ProcessNote> {
        let notes = self.program.take_notes();
        for n in &notes {
            if n.event != crate::program::ProcessEvent::Started {
                self.engine.forget_process(n.pid);
                for a in self.active.values_mut() {
                    for l in a.members.iter_mut().filter_map(|m| m.learn.as_mut()) {
                        l.seen.retain(|s| s.pid != n.pid);
                    }
                }
            }
        }
        notes
    }

    /// Set when periscope runs without its keeper process (it could not be forked, or
    /// died): stopping normally is still safe, but a `kill -9` of periscope could leave
    /// breakpoints in the target.
    pub fn keeper_warning(&self) -> Option<String> {
        self.engine.keeper_error.as_ref().map(|e| {
            format!("{e}: a kill -9 of periscope could leave breakpoints in the target; stop it with q, Ctrl-C or SIGTERM")
        })
    }

    /// Set when uprobes are not batched into uprobe_multi links (kernels before 6.6):
    /// each uprobe is then a perf event, which the kernel takes ~0.1 s to remove.
    pub fn batching_note(&self) -> Option<String> {
        self.engine.multi_error.as_ref().map(|e| {
            format!("one perf event per uprobe ({e}): removing each takes the kernel ~0.1 s, so stopping many probes is slow")
        })
    }

    pub fn is_alive(&self) -> bool {
        self.target() == Target::Running
    }
}

/// Adds calls to a table kept in entry order. A call arrives when it returns, so one
/// that encloses others arrives after them: it goes in at its entry time.
pub fn insert_by_entry(rows: &mut std::collections::VecDeque<Row>, mut new: Vec<Row>) {
    new.sort_by_key(|r| r.call.ts_ns);
    for row in new {
        let mut at = rows.len();
        while at > 0 && rows[at - 1].call.ts_ns > row.call.ts_ns {
            at -= 1;
        }
        rows.insert(at, row);
    }
}

/// Adds `text` to a probe's note: `NAME: text`, or `…; text` after what it says.
fn add_note(note: &mut Option<String>, name: &str, text: &str) {
    *note = Some(match note.take() {
        Some(n) => format!("{n}; {text}"),
        None => format!("{name}: {text}"),
    });
}

/// Prints "detaching N uprobes…" on stderr when there are many to remove (the kernel
/// takes ~0.1 s for each perf-event uprobe here), and when that is done.
pub fn detach_progress() -> impl FnMut(usize) {
    let mut announced = false;
    let started = std::time::Instant::now();
    move |left| {
        if !announced && left >= 10 {
            announced = true;
            crate::say!("periscope: detaching {left} uprobes…");
        } else if announced && left == 0 {
            crate::say!(
                "periscope: detached in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            announced = false;
        }
    }
}

/// The functions a user's `NAME`, `NAME@0xADDR` or `NAME@file.go:LINE` means (see
/// symbols::resolve), the probe's own first; an unknown name fails naming the closest.
pub fn find_functions(cat: &Catalog, spec: &str) -> Result<Vec<usize>> {
    use symbols::resolve::{ResolveError, resolve};
    match resolve(cat, spec) {
        Ok(fs) => Ok(fs),
        Err(ResolveError::Unknown(name)) => {
            let mut scored: Vec<(f64, &str)> = cat
                .functions
                .iter()
                .map(|f| {
                    // Also against the name without its package path, as tables show it.
                    let short = symbols::catalog::short_name(&f.name);
                    let score = strsim::jaro_winkler(&name, &f.name)
                        .max(strsim::jaro_winkler(&name, short));
                    (score, f.name.as_str())
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let close: Vec<&str> = scored.iter().take(3).map(|s| s.1).collect();
            bail!(
                "unknown function {name} (closest: {}; `periscope list PID REGEX` lists them all)",
                close.join(", ")
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// The first function a user's name means (see `find_functions`).
pub fn find_function(cat: &Catalog, spec: &str) -> Result<usize> {
    find_functions(cat, spec).map(|fs| fs[0])
}

/// Attaches a learnt return point (sites.rs) to probe `id`.
fn add_return(
    engine: &mut Engine,
    cat: &Catalog,
    id: u32,
    a: &symbols::callsites::AfterCall,
) -> Result<(), String> {
    let offset = cat
        .elf
        .vaddr_to_offset(symbols::LinkAddr(a.addr))
        .ok_or_else(|| format!("{:#x} is outside the file's segments", a.addr))?;
    let point = probes_ebpf::points::Point {
        addr: a.addr,
        kind: probes_ebpf::wire::PSC_POINT_AFTERCALL,
        stepped: !a.emulated,
        shared: true,
    };
    engine
        .add_return_point(id, (offset.0, point.cookie(id)))
        .map_err(|e| e.to_string())
}
