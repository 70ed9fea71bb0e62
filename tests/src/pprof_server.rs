//! Go's `cmd/pprof` serving its web UI on a CPU profile, on loopback: the large program
//! nobody here wrote that the TUI's end-to-end run and `make bench` drive.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Variant, fixture, newest};

/// `pprof -http` on a CPU profile, killed when dropped.
pub struct Pprof {
    pub child: Child,
    pub port: u16,
}

impl Pprof {
    pub fn start() -> Pprof {
        let dir = crate::repo_root().join("tests/.build");
        let profile = dir.join("mkprof.prof");
        if !profile.exists() {
            let mk = fixture("mkprof", &newest(), Variant::Plain);
            let st = Command::new(mk).arg(&profile).status().unwrap();
            assert!(st.success(), "mkprof failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(crate::pprof())
            .arg(format!("-http=127.0.0.1:{port}"))
            .arg("-no_browser")
            .arg(&profile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Pprof { child, port };
        let start = Instant::now();
        while get(port, "/ui/top").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "pprof -http did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none() && get(self.port, "/ui/top").is_some()
    }
}

impl Drop for Pprof {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP GET on loopback: the status code.
pub fn get(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let head = String::from_utf8_lossy(&out[..out.len().min(32)]).into_owned();
    head.split(' ').nth(1)?.parse().ok()
}
