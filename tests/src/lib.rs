//! Shared by the end-to-end tests: Go toolchains, fixture builds (cached per toolchain
//! and variant), the periscope binary, and a driver for fixture processes.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod bench;
pub mod pprof_server;
pub mod truth;
pub mod vm;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[derive(Debug, Clone)]
pub struct Toolchain {
    /// `go1.19`, `go1.21`, `go1.27`.
    pub label: String,
    pub go: PathBuf,
}

/// Every toolchain `make setup` installs. A missing one fails the test: CI must run them all.
pub fn toolchains() -> Vec<Toolchain> {
    let root = repo_root();
    let candidates = [
        ("go1.19", PathBuf::from("/usr/lib/go-1.19/bin/go")),
        ("go1.21", root.join(".tools/go-1.21.13/go/bin/go")),
        ("go1.27", root.join(".tools/go-1.27.3/go/bin/go")),
    ];
    candidates
        .into_iter()
        .map(|(label, go)| {
            assert!(go.exists(), "{} is missing: run `make setup`", go.display());
            Toolchain {
                label: label.into(),
                go,
            }
        })
        .collect()
}

/// Every Go release the project installs, 1.19 to 1.27 (`make setup`): for the value
/// fixtures, since each release describes some values its own way. Most tests use the
/// three of `toolchains`.
pub fn every_release() -> Vec<Toolchain> {
    let root = repo_root();
    let mut all = vec![Toolchain {
        label: "go1.19".into(),
        go: PathBuf::from("/usr/lib/go-1.19/bin/go"),
    }];
    for v in [
        "1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3",
    ] {
        let go = root.join(format!(".tools/go-{v}/go/bin/go"));
        assert!(go.exists(), "{} is missing: run `make setup`", go.display());
        let minor = v.rsplit_once('.').map_or(v, |(m, _)| m);
        all.push(Toolchain {
            label: format!("go{minor}"),
            go,
        });
    }
    all
}

pub fn newest() -> Toolchain {
    toolchains().pop().unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Plain,
    /// `-ldflags='-s -w'`: no symbol table, no DWARF.
    Stripped,
    /// `-buildmode=pie`.
    Pie,
    /// `-tags rebuilt`: the next release of a program (the deploy fixture).
    Rebuilt,
}

static BUILD: Mutex<()> = Mutex::new(());

/// Builds `tests/fixtures/NAME` (or `demo` when NAME is "demo") with a toolchain, once;
/// later calls reuse the binary unless a source file is newer.
pub fn fixture(name: &str, tc: &Toolchain, variant: Variant) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let root = repo_root();
    let src = if name == "demo" {
        root.join("demo")
    } else {
        root.join("tests/fixtures").join(name)
    };
    let suffix = match variant {
        Variant::Plain => "",
        Variant::Stripped => "-stripped",
        Variant::Pie => "-pie",
        Variant::Rebuilt => "-rebuilt",
    };
    let out_dir = root.join("tests/.build");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{name}-{}{suffix}", tc.label));
    if is_fresh(&out, &src) {
        return out;
    }
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let mut cmd = Command::new(&tc.go);
    cmd.current_dir(&src)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        // Only the cgo fixture links C (with gcc); the others stay pure Go.
        .env("CGO_ENABLED", if name == "cgo" { "1" } else { "0" })
        .env("GOCACHE", out_dir.join(format!("gocache-{}", tc.label)))
        .arg("build")
        .arg("-o")
        .arg(&tmp);
    match variant {
        Variant::Plain => {}
        Variant::Stripped => {
            cmd.arg("-ldflags=-s -w");
        }
        Variant::Pie => {
            cmd.arg("-buildmode=pie");
        }
        Variant::Rebuilt => {
            cmd.arg("-tags=rebuilt");
        }
    }
    let st = cmd.arg(".").status().expect("run go build");
    assert!(st.success(), "go build of {name} with {} failed", tc.label);
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Go's own `cmd/pprof` (17,000 functions, a real web UI nobody here wrote), built once
/// from the newest toolchain's sources and kept between runs: the large program the
/// TUI's end-to-end run and its wide snapshots use.
pub fn pprof() -> PathBuf {
    pprof_variant(Variant::Plain)
}

/// `cmd/pprof` built plain or stripped (`-ldflags=-s -w`), cached like `pprof()`.
pub fn pprof_variant(variant: Variant) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let tc = newest();
    let out_dir = repo_root().join("tests/.build");
    std::fs::create_dir_all(&out_dir).unwrap();
    let suffix = if variant == Variant::Stripped {
        "-stripped"
    } else {
        ""
    };
    let out = out_dir.join(format!("pprof-{}{suffix}", tc.label));
    if out.exists() {
        return out;
    }
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let mut cmd = Command::new(&tc.go);
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", out_dir.join(format!("gocache-{}", tc.label)))
        .args(["build", "-o"])
        .arg(&tmp);
    if variant == Variant::Stripped {
        cmd.arg("-ldflags=-s -w");
    }
    let st = cmd.arg("cmd/pprof").status().expect("run go build");
    assert!(st.success(), "go build cmd/pprof with {} failed", tc.label);
    std::fs::rename(&tmp, &out).unwrap();
    out
}

fn is_fresh(out: &Path, src: &Path) -> bool {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else {
        return false;
    };
    std::fs::read_dir(src).unwrap().flatten().all(|e| {
        e.metadata()
            .and_then(|m| m.modified())
            .map(|t| t <= built)
            .unwrap_or(false)
    })
}

/// The periscope binary of this build (target/<profile>/periscope).
pub fn periscope() -> PathBuf {
    // In the VM (vm.rs), where the checks run from the initramfs.
    if let Some(p) = std::env::var_os("PERISCOPE_BIN") {
        return PathBuf::from(p);
    }
    // Tests run from target/<profile>/deps, the tools in tests/src/bin from
    // target/<profile>.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let bin = [
        dir.join("periscope"),
        dir.parent().unwrap().join("periscope"),
    ]
    .into_iter()
    .find(|b| b.exists())
    .unwrap_or_else(|| dir.join("periscope"));
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p periscope` first",
        bin.display()
    );
    bin
}

/// `periscope shell ARGS` with its pipes open and no history kept, to be spawned.
pub fn shell_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(periscope());
    cmd.arg("shell")
        .args(args)
        .env("PERISCOPE_HISTORY", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts `periscope trace --pid PID ARGS...` with piped output and waits until it
/// says it attached; returns the child and the rest of its stderr.
pub fn spawn_trace(pid: u32, args: &[&str]) -> (Child, BufReader<std::process::ChildStderr>) {
    // Tests that compare every call with the fixture's record run without a CPU budget
    // (which may see some calls at their entry only); tests of the budget ask for one.
    let budget: &[&str] = if args.contains(&"--budget") {
        &[]
    } else {
        &["--budget", "off"]
    };
    let mut cmd = Command::new(periscope());
    cmd.args(["trace", "--pid", &pid.to_string()])
        .args(budget)
        .args(args)
        .stdout(Stdio::piped());
    wait_attached(cmd)
}

/// Spawns a `periscope trace` command (its stdout as the caller set it) with stderr
/// piped, and waits until it says it attached; returns the child and the rest of its
/// stderr.
pub fn wait_attached(mut cmd: Command) -> (Child, BufReader<std::process::ChildStderr>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (attached, said) = read_until_attached(&mut err);
    assert!(attached, "periscope did not attach: {said}");
    (child, err)
}

/// `periscope trace --json ARGS` with stdout in a file of its own (a flood must never
/// wait on a pipe the test reads only at the end), started and attached; what it says
/// on stderr after "attached" comes from the thread when it exits.
pub fn trace_to_file(
    args: &[&str],
    tag: &str,
) -> (Child, PathBuf, std::thread::JoinHandle<Vec<String>>) {
    let out = std::env::temp_dir().join(format!("periscope-{tag}-{}.jsonl", std::process::id()));
    let file = std::fs::File::create(&out).unwrap();
    let mut cmd = Command::new(periscope());
    cmd.args(["trace", "--json"]).args(args).stdout(file);
    let (child, err) = wait_attached(cmd);
    let said = std::thread::spawn(move || err.lines().map_while(Result::ok).collect());
    (child, out, said)
}

/// Stops a `trace_to_file` trace with SIGTERM (it must exit 0) and returns its JSON
/// lines; the file goes.
pub fn stop_trace(child: Child, out: &Path) -> Vec<serde_json::Value> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait_with_output().unwrap();
    assert!(st.status.success());
    let text = std::fs::read_to_string(out).unwrap();
    let _ = std::fs::remove_file(out);
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Reads `periscope trace`'s stderr up to its "attached" line: notes on the probes
/// (where each sits, what a condition costs) come first. Returns whether it attached,
/// and everything read.
pub fn read_until_attached(err: &mut impl BufRead) -> (bool, String) {
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            return (false, said);
        }
        said.push_str(&line);
        if line.contains("periscope: attached") {
            return (true, said);
        }
    }
}

/// A running fixture, driven through its stdin protocol.
pub struct FixtureProc {
    pub child: Child,
    pub pid: u32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl FixtureProc {
    pub fn start(bin: &Path) -> FixtureProc {
        FixtureProc::start_cmd(Command::new(bin))
    }

    /// Starts the fixture through `cmd` (for example `setpriv … BIN`, which execs it:
    /// the pid is the fixture's).
    pub fn start_cmd(mut cmd: Command) -> FixtureProc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fixture");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line");
        assert_eq!(ready["type"], "ready");
        let pid = child.id();
        FixtureProc {
            child,
            pid,
            stdin,
            stdout,
        }
    }

    /// Sends a command and returns every record up to its `done`.
    pub fn run(&mut self, cmd: &str) -> Vec<serde_json::Value> {
        self.send(cmd);
        self.wait_done()
    }

    /// Every record up to the `done` of a command sent (`send`): several fixtures
    /// can run one at the same time.
    pub fn wait_done(&mut self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "fixture {} exited during a command", self.pid);
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["type"] == "done" {
                return out;
            }
            out.push(v);
        }
    }

    /// Starts a command without waiting for its end (for `busy`).
    pub fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for FixtureProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Names of BPF programs and links currently loaded that belong to periscope.
pub fn periscope_bpf_objects() -> Vec<String> {
    let mut found = Vec::new();
    for what in ["prog", "link", "map"] {
        let out = Command::new("bpftool")
            .args([what, "show", "--json"])
            .output()
            .expect("bpftool (run `make setup`)");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        for item in v.as_array().into_iter().flatten() {
            let name = item["name"].as_str().unwrap_or("");
            let prog_name = item["prog_name"].as_str().unwrap_or("");
            if name.starts_with("periscope")
                || name.starts_with("psc_")
                || prog_name.starts_with("periscope")
            {
                found.push(format!("{what}: {item}"));
            }
        }
    }
    found
}

/// Ids of BPF links whose program is periscope's.
pub fn periscope_links() -> std::collections::BTreeSet<u64> {
    let json = |what: &str| -> serde_json::Value {
        let out = Command::new("bpftool")
            .args([what, "show", "--json"])
            .output()
            .expect("bpftool (run `make setup`)");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let progs: std::collections::BTreeSet<u64> = json("prog")
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "periscope_probe")
        .filter_map(|p| p["id"].as_u64())
        .collect();
    json("link")
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["prog_id"].as_u64().is_some_and(|id| progs.contains(&id)))
        .filter_map(|l| l["id"].as_u64())
        .collect()
}

/// A private copy of a fixture binary, so that a uprobe leaked by one test (it stays on
/// the file's inode) cannot affect another.
pub fn private_copy(bin: &Path, tag: &str) -> PathBuf {
    let dir = repo_root().join("tests/.build/private");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!(
        "{}-{tag}-{}",
        bin.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&out);
    std::fs::copy(bin, &out).unwrap();
    out
}

/// Compares the executable mappings of the target's own binary in `/proc/PID/mem` with
/// the file, byte for byte; returns the addresses that differ (a leaked uprobe is an
/// int3, 0xcc, left in memory).
pub fn text_differences(pid: u32) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut file = std::fs::File::open(&exe).unwrap();
    let mut diffs = Vec::new();
    let mut compared = 0;
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || Path::new(f[5]) != exe || !f[1].contains('x') {
            continue;
        }
        let (lo, hi) = f[0].split_once('-').unwrap();
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).unwrap(),
            u64::from_str_radix(hi, 16).unwrap(),
        );
        let off = u64::from_str_radix(f[2], 16).unwrap();
        let mut a = vec![0u8; (hi - lo) as usize];
        let mut b = vec![0u8; (hi - lo) as usize];
        mem.seek(SeekFrom::Start(lo)).unwrap();
        mem.read_exact(&mut a).unwrap();
        file.seek(SeekFrom::Start(off)).unwrap();
        let n = file.read(&mut b).unwrap();
        compared += n;
        for (i, (x, y)) in a[..n].iter().zip(&b[..n]).enumerate() {
            if x != y {
                diffs.push(format!(
                    "{:#x}: memory {x:#04x}, file {y:#04x}",
                    lo + i as u64
                ));
            }
        }
    }
    assert!(
        compared > 0,
        "no executable mapping of {} found",
        exe.display()
    );
    diffs
}

/// How many times the kernel has logged that it failed to remove a uprobe.
pub fn kernel_uprobe_leaks() -> usize {
    let out = Command::new("dmesg").output().expect("dmesg");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("leaking uprobe"))
        .count()
}

/// Pids of running periscope keeper processes.
pub fn keepers() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "periscope-keep")
        })
        .collect()
}

/// Waits up to `secs` for `done`; returns whether it came true.
pub fn eventually(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

/// Traces with `args` (periscope's `trace` options and probes) through the fixture's
/// command `cmd`: the calls periscope printed, and the fixture's own record.
pub fn trace_calls(
    fx: &mut FixtureProc,
    args: &[&str],
    cmd: &str,
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let (lines, record) = trace_lines(fx, args, cmd);
    let calls = lines.into_iter().filter(|v| v["type"] == "call").collect();
    (calls, record)
}

/// As `trace_calls`, every line periscope printed (calls, latency, stats, budget).
pub fn trace_lines(
    fx: &mut FixtureProc,
    args: &[&str],
    cmd: &str,
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let (child, _err) = spawn_trace(fx.pid, args);
    let record = fx.run(cmd);
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let got: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (got, record)
}

/// A terminal for the TUI and the shell in tests: a tmux server of its own (`-L
/// SOCKET`), driven by keys and read back as text.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(socket: &str, width: u16, height: u16, cmd: &str) -> Tmux {
        let _ = Command::new("tmux")
            .args(["-L", socket, "kill-server"])
            .output();
        let ok = Command::new("tmux")
            .args([
                "-L",
                socket,
                "new-session",
                "-d",
                "-s",
                "e2e",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(cmd)
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux (run `make setup`)");
        assert!(ok.success());
        Tmux {
            socket: socket.into(),
        }
    }

    pub fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "e2e"])
            .args(keys)
            .status()
            .unwrap();
        assert!(ok.success());
        // Give the UI a frame to answer.
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Types text literally (no key-name lookup).
    pub fn text(&self, s: &str) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "e2e", "-l", s])
            .status()
            .unwrap();
        assert!(ok.success());
        std::thread::sleep(Duration::from_millis(150));
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "e2e"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `pred` holds (or fails with the last screen).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
