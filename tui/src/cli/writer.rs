//! `trace`'s output: calls written to stdout on a thread of their own, behind a bounded
//! queue (a few batches of DRAIN_BATCH calls), so that a slow reader of stdout never
//! makes periscope hold more. It keeps the numbers that say where calls were lost: time
//! spent formatting against time spent waiting on stdout, and the calls it was told to
//! skip at the end so that the summary is always written.
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use symbols::Catalog;

use crate::format::{call_line_of, write_call_json};
use crate::session::Row;

pub enum Out {
    Rows(Vec<Row>),
    Text(Vec<u8>),
}

#[derive(Default)]
struct Shared {
    /// Past the end's deadline: skip calls, write only text (the summary).
    hurry: AtomicBool,
    skipped: AtomicUsize,
    format_ns: AtomicU64,
    write_ns: AtomicU64,
}

pub struct Writer {
    pub tx: SyncSender<Out>,
    thread: std::thread::JoinHandle<()>,
    shared: Arc<Shared>,
}

/// Why calls were not written: the writer's own time or stdout's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behind {
    /// Most of the writer's time went into writes: whoever reads stdout is slower.
    Stdout,
    /// Most of it went into formatting: periscope itself could not keep up.
    Formatting,
}

impl Writer {
    /// `log`: each call is its message (text), or carries it (`"msg"` in JSON).
    /// `many`: calls come from several processes, and text lines say which.
    pub fn start(
        cat: Arc<Catalog>,
        json: bool,
        many: bool,
        clock_offset_ns: i64,
        log: Option<Arc<crate::template::Template>>,
    ) -> Writer {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Out>(4);
        let shared = Arc::new(Shared::default());
        let sh = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            let mut buf = Vec::new();
            for msg in rx {
                buf.clear();
                let t0 = Instant::now();
                match msg {
                    Out::Rows(rows) if sh.hurry.load(Ordering::Relaxed) => {
                        sh.skipped.fetch_add(rows.len(), Ordering::Relaxed);
                        continue;
                    }
                    Out::Rows(mut rows) => format_calls(
                        &mut buf,
                        &mut rows,
                        &cat,
                        json,
                        many,
                        clock_offset_ns,
                        log.as_deref(),
                    ),
                    Out::Text(t) => buf = t,
                }
                let t1 = Instant::now();
                let ok = out.write_all(&buf).is_ok() && out.flush().is_ok();
                let t2 = Instant::now();
                sh.format_ns
                    .fetch_add((t1 - t0).as_nanos() as u64, Ordering::Relaxed);
                sh.write_ns
                    .fetch_add((t2 - t1).as_nanos() as u64, Ordering::Relaxed);
                if !ok {
                    return; // stdout closed: dropping `rx` tells the main loop
                }
            }
        });
        Writer { tx, thread, shared }
    }

    /// Queues `msg`, waiting until `deadline` for room; gives it back when it could not
    /// be queued (no room in time, or stdout closed).
    pub fn offer(&self, mut msg: Out, deadline: Instant) -> Result<(), Out> {
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => return Err(m),
            }
        }
    }

    /// `offer`, and on failure how many calls were not queued.
    pub fn send_until(&self, msg: Out, deadline: Instant) -> Result<(), usize> {
        self.offer(msg, deadline).map_err(|m| match m {
            Out::Rows(r) => r.len(),
            Out::Text(_) => 0,
        })
    }

    /// From now on calls still queued are skipped (and counted): only text goes out.
    pub fn hurry(&self) {
        self.shared.hurry.store(true, Ordering::Relaxed);
    }

    /// Where the writer's time went, once it has spent any.
    pub fn behind(&self) -> Behind {
        let f = self.shared.format_ns.load(Ordering::Relaxed);
        let w = self.shared.write_ns.load(Ordering::Relaxed);
        if w > f {
            Behind::Stdout
        } else {
            Behind::Formatting
        }
    }

    /// Closes the queue and waits `first` for everything queued to be written, then
    /// (still writing) skips the calls left and waits `then` for the text; returns
    /// whether all was written, and how many calls were skipped after `hurry`.
    pub fn finish(self, first: Duration, then: Duration) -> (bool, usize) {
        drop(self.tx);
        let wait = |d: Duration| {
            let deadline = Instant::now() + d;
            while !self.thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.thread.is_finished()
        };
        let done = wait(first) || {
            self.shared.hurry.store(true, Ordering::Relaxed);
            wait(then)
        };
        let skipped = self.shared.skipped.load(Ordering::Relaxed);
        if done {
            let _ = self.thread.join();
        }
        (done, skipped)
    }
}

/// Formats the calls into `buf`, in one buffer written at once (a line is made of
/// dozens of small pieces, each a call into a writer otherwise).
fn format_calls(
    buf: &mut Vec<u8>,
    rows: &mut Vec<Row>,
    cat: &Catalog,
    as_json: bool,
    many: bool,
    clock_offset_ns: i64,
    log: Option<&crate::template::Template>,
) {
    buf.reserve(rows.len() * 256);
    for r in rows.drain(..) {
        let name = &cat.functions[r.at].name;
        if as_json {
            write_call_json(buf, &r.call, name, r.stack.as_ref(), clock_offset_ns);
            if let Some(p) = &r.place {
                // Inside the object, last: the pid its container knows it by, and the
                // container.
                buf.pop();
                if let Some(ns) = p.nspid {
                    let _ = write!(buf, r#","nspid":{ns}"#);
                }
                if let Some(c) = &p.container {
                    let _ = write!(buf, r#","container":"{c}""#);
                }
                buf.push(b'}');
            }
            if let Some(t) = log {
                // Inside the object, last.
                buf.pop();
                buf.extend_from_slice(br#","msg":"#);
                let _ = serde_json::to_writer(&mut *buf, &t.render(&r.call));
                buf.push(b'}');
            }
            buf.push(b'\n');
        } else if let Some(t) = log {
            let when = crate::format::wall_clock(r.call.ts_ns, clock_offset_ns, 6);
            let pid = if many {
                format!(" pid {}", r.call.pid)
            } else {
                String::new()
            };
            let _ = writeln!(buf, "{when}{pid} {name}: {}", t.render(&r.call));
        } else {
            let line = call_line_of(&r.call, name, clock_offset_ns, many);
            let stack = r.stack.as_ref().map(crate::format::stack_lines);
            let _ = write!(buf, "{line}\n{}", stack.unwrap_or_default());
        }
    }
}
