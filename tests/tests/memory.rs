//! periscope in a memory cgroup too small for it: one line that says what it needs
//! and what the cgroup allows, exit 2, and nothing attached (it was OOM-killed without
//! a word at 48–64 MB). In one large enough, it runs.
use std::path::PathBuf;
use std::process::Command;

use periscope_tests::{FixtureProc, Variant, fixture, keepers, newest, periscope};

/// A new memory cgroup under this process's own, limited to `mb` (cgroup v1 here, as on
/// this kind of machine; v2 where the memory controller is there).
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(tag: &str, mb: u64) -> Cgroup {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let (dir, limit) = own
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, c, path) = (f.next()?, f.next()?, f.next()?);
                let path = path.trim_start_matches('/');
                if c.split(',').any(|c| c == "memory") {
                    Some((
                        format!("/sys/fs/cgroup/memory/{path}"),
                        "memory.limit_in_bytes",
                    ))
                } else if c.is_empty()
                    && std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
                {
                    Some((format!("/sys/fs/cgroup/{path}"), "memory.max"))
                } else {
                    None
                }
            })
            .expect("a memory cgroup (v1 memory controller or v2)");
        let dir = PathBuf::from(dir).join(format!("periscope-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(limit), format!("{}", mb << 20)).unwrap();
        Cgroup(dir)
    }

    /// `cmd`, run inside the cgroup.
    fn run(&self, cmd: &mut Command) -> std::process::Output {
        let procs = self.0.join("cgroup.procs");
        // SAFETY: between fork and exec the child only writes its pid to a file.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                std::fs::write(&procs, std::process::id().to_string())
            });
        }
        cmd.output().unwrap()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn too_little_memory_is_one_line_with_the_need() {
    let mut fx = FixtureProc::start(&fixture("kinds", &newest(), Variant::Plain));
    fx.run("run 1");
    let trace = || {
        let mut c = Command::new(periscope());
        c.args(["trace", "--duration", "1s", "--latency", "--pid"])
            .arg(fx.pid.to_string())
            .arg("main.Hot");
        c
    };
    // (Keepers of earlier tests may still be removing their links.)
    let keepers_before = keepers();
    let small = Cgroup::new("small", 64);
    let out = small.run(&mut trace());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("periscope needs about") && err.contains("allows 64 MB"),
        "{err}"
    );
    assert!(
        keepers().iter().all(|k| keepers_before.contains(k)),
        "nothing started"
    );
    drop(small);
    // Room enough (the need it says, with a margin): it runs.
    let big = Cgroup::new("big", 256);
    let out = big.run(&mut trace());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("periscope: attached"), "{err}");
}
