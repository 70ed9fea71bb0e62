//! `periscope agent --config FILE`: a probe file (session::probe_file) run headless as a
//! service. Each program gets a session with its probes; calls go to the JSON lines
//! file and the metrics endpoint the file names; what happens is one line on stderr.
//! SIGHUP reads the file again and changes only what changed (a probe not touched keeps
//! its counters and histograms); a file with mistakes is refused and the running one
//! kept. SIGTERM or SIGINT detach everything and flush.
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::format::{clock_offset_ns, write_call_json};
use crate::probe_file::{ProbeEntry, ProbeFile};
use crate::session::{DRAIN_BATCH, ProbeSpec, Row, Session};
use crate::template::Template;

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

/// One line on stderr, for the service manager's log.
macro_rules! log {
    ($($arg:tt)*) => { crate::say!("periscope agent: {}", format!($($arg)*)) };
}

/// A probe as the file asked for it: what makes two the same across a reload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProbeKey {
    func: String,
    spec: String,
    log: Option<String>,
}

struct Placed {
    /// The probe's function in the session's catalog.
    func: usize,
    template: Option<Template>,
}

/// A program of the file and its probes.
struct Running {
    /// `exe = "…"` or `pids = […]`, as written: what makes two the same across a reload.
    key: String,
    session: Session,
    probes: HashMap<ProbeKey, Placed>,
}

pub fn run(path: &Path) -> Result<()> {
    let (file, _) = read(path)?;
    // SAFETY: the handlers only store to atomics.
    unsafe {
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
    let out = match &file.output.json {
        Some(j) => Some(open_output(Path::new(j.get_ref()))?),
        None => None,
    };
    let metrics =
        crate::metrics::start(file.output.metrics.as_ref().map(|m| m.get_ref().as_str()))?;
    if let Some(m) = &metrics {
        log!("metrics at http://{}/metrics", m.addr());
    }
    let mut agent = Agent {
        running: Vec::new(),
        out,
        offset: clock_offset_ns(),
        rows_read: 0,
    };
    agent.apply(&file);
    log!(
        "running {}: {} program(s), {} probe(s)",
        path.display(),
        agent.running.len(),
        agent.running.iter().map(|r| r.probes.len()).sum::<usize>()
    );
    let mut rows = Vec::new();
    // Snapshots for the metrics endpoint, as the other front-ends take them: four a
    // second (each reads every probe's counters and histograms).
    let mut published: Option<std::time::Instant> = None;
    while !STOP.load(Ordering::SeqCst) {
        if RELOAD.swap(false, Ordering::SeqCst) {
            match read(path) {
                Ok((file, _)) => {
                    // The calls already made are written before a probe goes (its
                    // events mean nothing once its plan is gone).
                    while agent.pump(&mut rows) {}
                    agent.apply(&file);
                    log!("reloaded {}", path.display());
                }
                Err(e) => log!("{e:#}; the probes running are kept"),
            }
        }
        let busy = agent.pump(&mut rows);
        if let Some(m) = &metrics
            && published.is_none_or(|t| t.elapsed() >= Duration::from_millis(250))
        {
            published = Some(std::time::Instant::now());
            m.publish(agent.snapshot());
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    log!("stopping: detaching every probe");
    for r in &mut agent.running {
        r.session.stop_all();
    }
    // What was read before the probes went is written too.
    while agent.running.iter().any(|r| r.session.detaching() > 0) {
        agent.pump(&mut rows);
        std::thread::sleep(Duration::from_millis(5));
    }
    agent.pump(&mut rows);
    if let Some(o) = &mut agent.out {
        o.flush().context("writing the calls")?;
    }
    for r in &mut agent.running {
        r.session.close();
    }
    log!("stopped");
    Ok(())
}

/// The file, checked against the binaries: its mistakes, all of them, refuse it.
fn read(path: &Path) -> Result<(ProbeFile, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot be read", path.display()))?;
    let file = ProbeFile::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}:{}: {}", path.display(), e.line, e.msg))?;
    let errors = file.check(&text);
    if !errors.is_empty() {
        let all: Vec<String> = errors
            .iter()
            .map(|e| format!("{}:{}: {}", path.display(), e.line, e.msg))
            .collect();
        bail!("{} error(s): {}", errors.len(), all.join("; "));
    }
    Ok((file, text))
}

fn open_output(path: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot be written", path.display()))?;
    Ok(std::io::BufWriter::new(f))
}

struct Agent {
    running: Vec<Running>,
    out: Option<std::io::BufWriter<std::fs::File>>,
    offset: i64,
    rows_read: u64,
}

impl Agent {
    /// Makes the running programs and probes what `file` says: programs and probes no
    /// longer named go, new ones come, the others are left as they are.
    fn apply(&mut self, file: &ProbeFile) {
        let budget = file
            .budget
            .as_ref()
            .map_or(Ok(Some(crate::budget::DEFAULT_PCT)), |b| {
                crate::budget::parse(b.get_ref())
            })
            .unwrap_or(Some(crate::budget::DEFAULT_PCT));
        let wanted: Vec<(String, &crate::probe_file::ProgramEntry)> = file
            .programs
            .iter()
            .map(|p| (program_key(p.get_ref()), p.get_ref()))
            .collect();
        self.running.retain_mut(|r| {
            let keep = wanted.iter().any(|(k, _)| *k == r.key);
            if !keep {
                log!("{}: no longer in the file: its probes are removed", r.key);
                r.session.close();
            }
            keep
        });
        for (key, entry) in wanted {
            if !self.running.iter().any(|r| r.key == key) {
                let scope = match entry.scope() {
                    Ok(s) => s,
                    Err(e) => {
                        log!("{key}: {e}");
                        continue;
                    }
                };
                match Session::open_scope(&scope) {
                    Ok(session) => {
                        log!("{key}: {}", session.target_label());
                        self.running.push(Running {
                            key: key.clone(),
                            session,
                            probes: HashMap::new(),
                        });
                    }
                    Err(e) => {
                        log!("{key}: {e}");
                        continue;
                    }
                }
            }
            let r = self
                .running
                .iter_mut()
                .find(|r| r.key == key)
                .expect("just added");
            if r.session.budget() != budget {
                r.session.set_budget(budget);
            }
            r.apply(&entry.probes);
        }
    }

    /// Reads each program's calls and writes them; says what happened. Whether any
    /// calls were read.
    fn pump(&mut self, rows: &mut Vec<Row>) -> bool {
        let mut busy = false;
        for r in &mut self.running {
            rows.clear();
            let n = r.session.drain(rows, DRAIN_BATCH);
            busy |= n > 0;
            self.rows_read += rows.len() as u64;
            if let Some(out) = &mut self.out {
                // Each probe's template by its function, looked up once a batch.
                let templates: HashMap<usize, &Template> = r
                    .probes
                    .values()
                    .filter_map(|p| Some((p.func, p.template.as_ref()?)))
                    .collect();
                let mut buf = Vec::with_capacity(rows.len() * 256);
                for row in rows.iter() {
                    let name = &r.session.cat.functions[row.at].name;
                    write_call_json(&mut buf, &row.call, name, row.stack.as_ref(), self.offset);
                    if let Some(t) = templates.get(&row.func) {
                        buf.pop();
                        buf.extend_from_slice(br#","msg":"#);
                        let _ = serde_json::to_writer(&mut buf, &t.render(&row.call));
                        buf.push(b'}');
                    }
                    buf.push(b'\n');
                }
                if let Err(e) = out.write_all(&buf) {
                    log!("writing the calls: {e}");
                }
            }
            for line in r.session.take_said() {
                log!("{}: {line}", r.key);
            }
            for n in r.session.take_process_notes() {
                log!("{}: {}", r.key, n.describe());
            }
            for d in r.session.take_deploy_notes() {
                log!("{}: {}", r.key, d.describe());
                for line in d.lines {
                    log!("{}: {line}", r.key);
                }
            }
            for n in r.session.take_budget_notes() {
                log!("{}: {}", r.key, n.text);
            }
            for w in r.session.take_keeper_notes() {
                log!("{}: warning: {w}", r.key);
            }
        }
        if !busy && let Some(o) = &mut self.out {
            let _ = o.flush();
        }
        busy
    }

    /// Every program's probes, for the metrics endpoint.
    fn snapshot(&self) -> periscope_exporters::Snapshot {
        let mut all = periscope_exporters::Snapshot::default();
        for r in &self.running {
            let s = periscope_exporters::Snapshot::of(&r.session);
            // One series per label set: a function two programs probe is named with its
            // program the second time.
            for mut p in s.probes {
                if all.probes.iter().any(|q| q.func == p.func) {
                    p.func = format!("{} [{}]", p.func, r.key);
                }
                all.probes.push(p);
            }
            all.resident_bytes = s.resident_bytes;
            all.cpu_seconds = s.cpu_seconds;
        }
        all.rows_read = self.rows_read;
        all
    }
}

impl Running {
    /// Sets the probes the file names and removes the others, leaving those that did
    /// not change as they are.
    fn apply(&mut self, entries: &[crate::probe_file::Spanned<ProbeEntry>]) {
        let wanted: Vec<(ProbeKey, &ProbeEntry)> = entries
            .iter()
            .map(|e| (probe_key(e.get_ref()), e.get_ref()))
            .collect();
        let gone: Vec<ProbeKey> = self
            .probes
            .keys()
            .filter(|k| !wanted.iter().any(|(w, _)| w == *k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(p) = self.probes.remove(&k) {
                self.session.remove(p.func);
                log!("{}: {} removed", self.key, k.func);
            }
        }
        for (k, e) in wanted {
            if self.probes.contains_key(&k) {
                continue;
            }
            match set(&mut self.session, e) {
                Ok(p) => {
                    log!("{}: {} {}", self.key, k.func, k.spec);
                    self.probes.insert(k, p);
                }
                Err(err) => log!("{}: {}: {err:#}", self.key, k.func),
            }
        }
    }
}

/// Sets one probe of the file on the session.
fn set(session: &mut Session, e: &ProbeEntry) -> Result<Placed> {
    let funcs = crate::session::find_functions(&session.cat, e.func.get_ref())?;
    let mut spec: ProbeSpec = e.spec();
    let template = match &e.log {
        Some(l) => {
            let t = Template::parse(l.get_ref()).map_err(|e| anyhow::anyhow!("log: {e}"))?;
            t.check(&session.cat, &session.cat.functions[funcs[0]])
                .map_err(|e| anyhow::anyhow!("log: {e}"))?
                .apply(&mut spec);
            Some(t)
        }
        None => None,
    };
    // (Two probes on one function would replace each other: the file's check says so.)
    if session.probed().any(|f| funcs.contains(&f)) {
        bail!("a function probed twice: one probe per function");
    }
    session.set_group(&funcs, &spec)?;
    Ok(Placed {
        func: funcs[0],
        template,
    })
}

fn program_key(p: &crate::probe_file::ProgramEntry) -> String {
    match (&p.exe, &p.pids) {
        (Some(e), _) => format!("exe {}", e.get_ref()),
        (None, Some(pids)) => format!("pids {:?}", pids.get_ref()),
        _ => "a program without exe or pids".into(),
    }
}

fn probe_key(e: &ProbeEntry) -> ProbeKey {
    ProbeKey {
        func: e.func.get_ref().clone(),
        spec: e.spec().describe(),
        log: e.log.as_ref().map(|l| l.get_ref().clone()),
    }
}
