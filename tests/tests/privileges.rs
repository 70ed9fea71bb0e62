//! Which privileges periscope needs, checked with a real unprivileged user that the test
//! creates. Measured on Linux 6.18: CAP_BPF and CAP_PERFMON load the program and make
//! uprobe_multi links; another user's process needs CAP_SYS_PTRACE as well (its /proc
//! files). Without multi links (kernels before 6.6; forced here with
//! PERISCOPE_UPROBE_MULTI=off) each uprobe is a perf event, which the kernel creates only
//! for CAP_SYS_ADMIN ("perf/core: Require CAP_SYS_ADMIN for uprobes", 2025).
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use periscope_tests::{FixtureProc, Variant, fixture, periscope};

const USER: &str = "periscope-test";

fn ensure_user() {
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let st = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", USER])
            .status()
            .expect("useradd");
        assert!(st.success(), "could not create the test user {USER}");
    }
}

/// A directory everyone can read, holding copies of the fixture and periscope.
fn public_copies() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("periscope-priv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |from: &Path, name: &str| {
        let to = dir.join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    (
        copy(
            &fixture("kinds", &periscope_tests::newest(), Variant::Plain),
            "kinds",
        ),
        copy(&periscope(), "periscope"),
    )
}

/// `setpriv` as the test user, with exactly `caps` (ambient, so they survive exec).
fn as_user(caps: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", USER, "--regid", USER, "--clear-groups"]);
    if !caps.is_empty() {
        c.args([
            format!("--inh-caps={caps}"),
            format!("--ambient-caps={caps}"),
        ]);
    }
    c
}

/// Traces main.Work in `fx` as the test user with `caps` while the fixture calls it 100
/// times; returns the exit status, stdout and stderr.
fn trace(
    caps: &str,
    multi: &str,
    periscope: &Path,
    fx: &mut FixtureProc,
) -> (Option<i32>, String, String) {
    let mut child = as_user(caps)
        .env("PERISCOPE_UPROBE_MULTI", multi)
        .arg(periscope)
        .args([
            "trace",
            "--json",
            "--budget",
            "off",
            "--pid",
            &fx.pid.to_string(),
        ])
        .arg("main.Work")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (attached, first) = periscope_tests::read_until_attached(&mut err);
    if attached {
        fx.run("work 100");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        if attached { rest } else { first + &rest },
    )
}

#[test]
fn the_privileges_the_readme_names_are_exactly_the_ones_needed() {
    ensure_user();
    let (kinds, periscope) = public_copies();
    let mut mine = {
        let mut c = as_user("");
        c.arg(&kinds);
        FixtureProc::start_cmd(c)
    };
    let mut roots = FixtureProc::start(&kinds);
    for (caps, multi, target, want) in [
        ("", "on", "own", Err("CAP_BPF and CAP_PERFMON")),
        ("+bpf,+perfmon", "on", "own", Ok(())),
        ("+bpf,+perfmon", "on", "root's", Err("CAP_SYS_PTRACE")),
        ("+bpf,+perfmon,+sys_ptrace", "on", "root's", Ok(())),
        // Without uprobe_multi links, as on kernels before 6.6:
        (
            "+bpf,+perfmon,+sys_ptrace",
            "off",
            "own",
            Err("CAP_SYS_ADMIN"),
        ),
        ("+sys_admin", "off", "own", Ok(())),
        ("+sys_admin", "off", "root's", Err("CAP_SYS_PTRACE")),
        ("+sys_admin,+sys_ptrace", "off", "root's", Ok(())),
    ] {
        let fx = if target == "own" {
            &mut mine
        } else {
            &mut roots
        };
        let what = format!("caps [{caps}], uprobe_multi {multi}, on its {target} process");
        let (code, out, err) = trace(caps, multi, &periscope, fx);
        match want {
            Err(needle) => {
                assert_eq!(code, Some(2), "{what}: {err}");
                assert_eq!(err.lines().count(), 1, "{what}: {err}");
                assert!(err.contains(needle), "{what}: {err}");
            }
            Ok(()) => {
                assert_eq!(code, Some(0), "{what}: {err}");
                let calls = out
                    .lines()
                    .filter(|l| l.contains(r#""type":"call""#))
                    .count();
                assert_eq!(calls, 100, "{what}: every call of `work 100` seen\n{err}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(kinds.parent().unwrap());
}
