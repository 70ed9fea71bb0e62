//! `--metrics ADDR`: an HTTP endpoint serving `/metrics` from the latest snapshot, on
//! a thread of its own (a scrape never waits for the probes' reader, nor it for one).
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::prometheus;
use crate::snapshot::Snapshot;

pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    latest: Arc<Mutex<Snapshot>>,
    thread: Option<JoinHandle<()>>,
    /// When `publish_every` last took a snapshot.
    last: Mutex<Option<std::time::Instant>>,
}

/// A scrape sees counters at most this old.
const EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl MetricsServer {
    /// Listens on `addr` (`127.0.0.1:9464`; port 0 picks one: see `addr`).
    pub fn start(addr: &str) -> Result<MetricsServer, String> {
        let server = tiny_http::Server::http(addr)
            .map(Arc::new)
            .map_err(|e| {
                format!("--metrics {addr}: cannot listen there ({e}): give another address, or port 0 for a free one")
            })?;
        let latest = Arc::new(Mutex::new(Snapshot::default()));
        let (srv, snap) = (Arc::clone(&server), Arc::clone(&latest));
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&srv, &snap))
            .map_err(|e| format!("--metrics: {e}"))?;
        Ok(MetricsServer {
            server,
            latest,
            thread: Some(thread),
            last: Mutex::new(None),
        })
    }

    /// The address it listens on (the port chosen for port 0).
    pub fn addr(&self) -> String {
        match self.server.server_addr() {
            tiny_http::ListenAddr::IP(a) => a.to_string(),
            tiny_http::ListenAddr::Unix(a) => format!("{a:?}"),
        }
    }

    /// What the next scrape sees.
    pub fn publish(&self, s: Snapshot) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Takes a snapshot of `session` for the next scrape when the last one is a
    /// quarter of a second old (front-ends call it from their loops);
    /// `rows_read`: the calls periscope has read so far.
    pub fn publish_every(&self, session: &periscope_session::Session, rows_read: u64) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        let mut s = Snapshot::of(session);
        s.rows_read = rows_read;
        self.publish(s);
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, latest: &Mutex<Snapshot>) {
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        let response = if path == "/metrics" && *req.method() == tiny_http::Method::Get {
            let body = {
                let s = latest.lock().unwrap_or_else(|e| e.into_inner());
                prometheus::render(&s)
            };
            let ct = tiny_http::Header::from_bytes("Content-Type", prometheus::CONTENT_TYPE)
                .expect("a valid header");
            tiny_http::Response::from_string(body).with_header(ct)
        } else {
            tiny_http::Response::from_string("periscope serves /metrics\n").with_status_code(404)
        };
        let _ = req.respond(response);
    }
}
