//! The TUI and the shell, through tmux, on a large program nobody here wrote: Go's own
//! `cmd/pprof` (17,000 functions) serving its web UI, under a bounded request loop on
//! loopback. As a new user would: search → the best match is selected → a condition
//! creates the probe → the call popup scrolls → the condition survives the probe's
//! removal → `w` saves the calls → quit, with nothing left in the kernel. Then the
//! shell: Ctrl-C during `wait` returns to the prompt with a summary.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use periscope_tests::pprof_server::{Pprof, get};
use periscope_tests::{Tmux, periscope, periscope_bpf_objects};

const RENDER: &str = "cmd/vendor/github.com/google/pprof/internal/driver.(*webInterface).render";

/// Requests three of pprof's views in turn, one every 100 ms, until dropped; counts
/// the `top` views served (each renders the `top` template once).
struct Load {
    stop: Arc<AtomicBool>,
    tops: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tops = Arc::new(AtomicU64::new(0));
        let (st, tp) = (stop.clone(), tops.clone());
        let thread = std::thread::spawn(move || {
            let views = ["/ui/top", "/ui/flamegraph", "/ui/peek"];
            let mut i = 0;
            while !st.load(Ordering::Relaxed) {
                let v = views[i % views.len()];
                if get(port, v) == Some(200) && v == "/ui/top" {
                    tp.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Load {
            stop,
            tops,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait_for_file(path: &Path) -> String {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(100));
    std::fs::read_to_string(path).unwrap()
}

/// The status line's `wrote N calls to PATH`.
fn written(screen: &str) -> Option<(u64, PathBuf)> {
    let at = screen.find("wrote ")?;
    let rest = &screen[at + 6..];
    let (n, rest) = rest.split_once(" calls to ")?;
    let path = rest.split_whitespace().next()?;
    Some((n.parse().ok()?, PathBuf::from(path)))
}

#[test]
fn tui_on_cmd_pprof_search_probe_popup_condition_save_quit() {
    let mut pprof = Pprof::start();
    let load = Load::start(pprof.port);
    let dir = std::env::temp_dir().join(format!("periscope-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = dir.join("status");
    // Run from `dir`: `w` writes there.
    let tmux = Tmux::start(
        "periscope-large",
        240,
        30,
        &format!(
            "cd {} && {} --budget off {}; echo $? > {}; sleep 60",
            dir.display(),
            periscope().display(),
            pprof.child.id(),
            status.display()
        ),
    );
    tmux.wait_for("the function list", |s| s.contains("Functions"));

    // Search: the best match is selected before any key acts on it.
    tmux.keys(&["/"]);
    tmux.text("render");
    tmux.keys(&["Enter"]);
    tmux.wait_for("render selected", |s| s.contains(&format!("┌ {RENDER} ")));

    // A condition on an unprobed function creates an arguments probe with it.
    tmux.keys(&["c"]);
    tmux.text(r#"tmpl == "top""#);
    tmux.wait_for("the condition to check", |s| {
        s.contains("ok: evaluated in the kernel")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for("the probe with its condition", |s| {
        s.contains(r#"if tmpl == "top""#)
    });
    let screen = tmux.wait_for("a few calls", |s| {
        s.matches("driver.(*webInterface).render w=").count() >= 3
    });
    assert!(
        !screen.contains(r#"tmpl="stacks""#) && !screen.contains(r#"tmpl="plaintext""#),
        "the condition lets only `top` through:\n{screen}"
    );

    // The call popup: it scrolls, and shows the template.
    tmux.keys(&["Tab"]);
    tmux.keys(&["Enter"]);
    let popup = tmux.wait_for("the call popup", |s| s.contains("y copies JSON"));
    assert!(
        popup.contains("lines 1–"),
        "a long call in 30 rows:\n{popup}"
    );
    tmux.keys(&["j", "j", "j"]);
    tmux.wait_for("the popup scrolled", |s| s.contains("lines 4–"));
    // The request's fields fill the first page; the template is on the next.
    tmux.keys(&["PageDown"]);
    tmux.wait_for("the template", |s| {
        !s.contains("lines 4–") && s.contains(r#"tmpl = "top""#)
    });
    tmux.keys(&["G"]);
    tmux.wait_for("the popup's end", |s| {
        let Some((_, rest)) = s.split_once(" Call · lines ") else {
            return false;
        };
        // `lines 16–41 of 41`
        let t: Vec<&str> = rest.split([' ', '–']).collect();
        t.len() > 3 && t[1] == t[3]
    });
    tmux.keys(&["Escape"]);
    tmux.keys(&["BTab"]);

    // `a` turns the arguments off: the probe goes, its condition stays with the
    // function, and `l` brings it back with latency.
    tmux.keys(&["a"]);
    tmux.wait_for("the condition kept", |s| {
        s.contains(r#"its condition `tmpl == "top"` is kept"#)
    });
    tmux.keys(&["l"]);
    // `··L?`: latency, with a condition.
    tmux.wait_for("latency with the condition", |s| {
        s.contains("··L?") && s.contains(r#"if tmpl == "top""#) && s.contains("p99")
    });

    // `w` writes the table's calls; each is a `top` render, as the condition said.
    tmux.keys(&["w"]);
    let screen = tmux.wait_for("the file written", |s| written(s).is_some());
    let (n, path) = written(&screen).unwrap();
    let path = if path.is_absolute() {
        path
    } else {
        dir.join(path)
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let calls: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(calls.len() as u64, n);
    assert!(n >= 3, "{text}");
    for c in &calls {
        assert_eq!(c["func"], RENDER, "{c}");
        if let Some(tmpl) = c["args"].get("tmpl") {
            assert_eq!(tmpl, "top", "{c}");
        }
    }
    assert!(
        n <= load.tops.load(Ordering::Relaxed),
        "more `top` renders than `top` views served"
    );

    // Quit: exit status 0, nothing of periscope's in the kernel, pprof still serves.
    tmux.keys(&["q"]);
    assert_eq!(wait_for_file(&status).trim(), "0");
    drop(load);
    let start = Instant::now();
    while !periscope_bpf_objects().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "left in the kernel: {:?}",
            periscope_bpf_objects()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(pprof.running(), "pprof stopped serving");
    let diffs = periscope_tests::text_differences(pprof.child.id());
    assert!(diffs.is_empty(), "breakpoints left: {diffs:?}");
    drop(tmux);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shell_ctrl_c_interrupts_wait_and_returns_to_the_prompt() {
    let pprof = Pprof::start();
    let _load = Load::start(pprof.port);
    let tmux = Tmux::start(
        "periscope-large-shell",
        200,
        50,
        &format!(
            "{} shell {}; sleep 60",
            periscope().display(),
            pprof.child.id()
        ),
    );
    tmux.wait_for("the prompt", |s| s.contains("periscope>"));
    // The short name, as the tables show it, is accepted.
    tmux.text("trace driver.(*webInterface).render --latency");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the probe", |s| s.contains("probe 1: "));
    tmux.text("wait 30s");
    tmux.keys(&["Enter"]);
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for("the prompt after Ctrl-C", |s| {
        s.contains("interrupted") && s.trim_end().ends_with("periscope>")
    });
    assert!(t.elapsed() < Duration::from_secs(10), "{screen}");
    // The shell is still alive and its probe still counts.
    tmux.text("probes");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the probe table", |s| s.contains("hits "));
    tmux.text("quit");
    tmux.keys(&["Enter"]);
    let start = Instant::now();
    while !periscope_bpf_objects().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "left in the kernel"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
