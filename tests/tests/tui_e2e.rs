//! The real `periscope PID` in tmux on a running fixture, driven by keystrokes: search
//! a function, capture its arguments and results, narrow them with a condition, show
//! its latency, quit; then nothing of periscope's is left in the kernel and the
//! fixture still runs. What the screen shows is checked against the fixture's own
//! record of its calls.
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use periscope_tests::{
    FixtureProc, Tmux, Variant, fixture, newest, periscope, periscope_bpf_objects, periscope_links,
};

const SOCKET: &str = "periscope-e2e";

/// (username, attempts, r0) of every Login row on screen.
fn login_rows(screen: &str) -> Vec<(String, u64, bool)> {
    let mut rows = Vec::new();
    for line in screen.lines() {
        let Some(at) = line.find("username=\"") else {
            continue;
        };
        let rest = &line[at + 10..];
        let Some((user, rest)) = rest.split_once('"') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("attempts=") else {
            continue;
        };
        let (n, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let r0 = rest.trim_start().strip_prefix("r0=");
        if let (Ok(n), Some(r0)) = (n.parse(), r0) {
            rows.push((user.to_string(), n, r0.starts_with("true")));
        }
    }
    rows
}

#[test]
fn tui_search_probe_condition_latency_quit() {
    let bin = fixture("kinds", &newest(), Variant::Plain);
    let mut fx = FixtureProc::start(&bin);
    fx.run("steady");
    let leaks_before = periscope_tests::kernel_uprobe_leaks();
    let status = std::env::temp_dir().join(format!("periscope-e2e-{}", std::process::id()));
    let _ = std::fs::remove_file(&status);
    // Every row is checked against the record: no CPU budget (which may show some
    // calls without their results).
    let tmux = Tmux::start(
        SOCKET,
        160,
        45,
        &format!(
            "{} --budget off {}; echo $? > {}; sleep 60",
            periscope().display(),
            fx.pid,
            status.display()
        ),
    );
    tmux.wait_for("the function list", |s| {
        s.contains("Functions") && s.contains("main.Login(")
    });

    // Search, then capture arguments and results.
    tmux.keys(&["/"]);
    tmux.text("main.Login");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the search to select Login", |s| {
        s.contains("┌ main.Login ")
    });
    tmux.keys(&["a", "r"]);
    let screen = tmux.wait_for("decoded Login calls", |s| login_rows(s).len() >= 6);
    let before = login_rows(&screen);
    let users: HashSet<&str> = before.iter().map(|r| r.0.as_str()).collect();
    assert!(
        users.len() >= 2,
        "calls of several users expected:\n{screen}"
    );

    // A condition: only bob's calls from now on.
    tmux.keys(&["c"]);
    tmux.text("username == \"bob\"");
    tmux.wait_for("the condition to check", |s| {
        s.contains("ok: evaluated in the kernel")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for("the condition to apply", |s| {
        s.contains("if username == \"bob\"")
    });
    // The table holds 20-odd rows and Login runs every millisecond: after a second
    // every row on screen came after the condition.
    std::thread::sleep(Duration::from_millis(1500));
    let screen = tmux.screen();
    let after = login_rows(&screen);
    assert!(after.len() >= 6, "rows expected:\n{screen}");
    assert!(
        after.iter().all(|r| r.0 == "bob"),
        "only bob's calls expected:\n{screen}"
    );

    // Latency: a histogram with a count and percentiles.
    tmux.keys(&["l"]);
    let screen = tmux.wait_for("a latency histogram", |s| {
        s.contains("count") && s.contains("p99") && s.contains("█")
    });
    assert!(
        screen.contains("ARL?"),
        "marker of a full probe with a condition:\n{screen}"
    );

    // Quit: periscope exits 0, leaves nothing in the kernel, and the fixture runs on.
    tmux.keys(&["q"]);
    let start = Instant::now();
    while !status.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "periscope did not quit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "0");
    let _ = std::fs::remove_file(&status);
    wait_until_gone();
    assert!(fx.is_running(), "the fixture died");
    // Quitting detached everything before periscope exited: the target's code is its
    // file again, byte for byte, and the kernel logged no leaked uprobe.
    let diffs = periscope_tests::text_differences(fx.pid);
    assert!(
        diffs.is_empty(),
        "breakpoints left in the target: {diffs:?}"
    );
    assert_eq!(periscope_tests::kernel_uprobe_leaks(), leaks_before);

    // Everything shown matches what the fixture says it did.
    let record = fx.run("stop");
    let steady = record
        .iter()
        .find(|r| r["type"] == "steady")
        .expect("steady record");
    let truth: HashSet<(String, u64, bool)> = steady["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["username"].as_str().unwrap().to_string(),
                c["attempts"].as_u64().unwrap(),
                c["r0"].as_bool().unwrap(),
            )
        })
        .collect();
    for row in before.iter().chain(&after) {
        assert!(
            truth.contains(row),
            "{row:?} is not a call the fixture made: {truth:?}"
        );
    }
    assert!(steady["calls"].as_u64().unwrap() > 100);
    assert!(Path::new(&bin).exists());
}

fn wait_until_gone() {
    let start = Instant::now();
    loop {
        let left = periscope_bpf_objects();
        if left.is_empty() {
            return;
        }
        // The kernel frees maps asynchronously after the last reference goes.
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "left in the kernel: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tui_keeps_what_it_captured_when_the_target_exits() {
    let bin = fixture("kinds", &newest(), Variant::Plain);
    let mut fx = FixtureProc::start(&bin);
    fx.run("steady");
    let tmux = Tmux::start(
        SOCKET,
        160,
        45,
        &format!("{} {}; sleep 60", periscope().display(), fx.pid),
    );
    tmux.wait_for("the function list", |s| s.contains("main.Login("));
    tmux.keys(&["/"]);
    tmux.text("main.Login");
    tmux.keys(&["Enter", "a", "r"]);
    tmux.wait_for("decoded Login calls", |s| login_rows(s).len() >= 3);
    fx.child.kill().unwrap();
    fx.child.wait().unwrap();
    let screen = tmux.wait_for("the exit to show", |s| s.contains("TARGET EXITED"));
    assert!(
        screen.contains(&format!("pid {} exited", fx.pid)),
        "{screen}"
    );
    assert!(
        login_rows(&screen).len() >= 3,
        "captured rows kept:\n{screen}"
    );
    // Its uprobes are gone at once, while periscope still runs and shows them.
    let start = Instant::now();
    while !periscope_links().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "links left");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Ctrl-C quits too, and the rest goes with the process.
    tmux.keys(&["C-c"]);
    wait_until_gone();
}

#[test]
fn tui_keeps_a_budget_and_says_so() {
    // Login a thousand times a second under a 0.5% budget: the TUI says what the budget
    // does, shows the share of calls observed, and `b` changes the budget.
    let bin = fixture("kinds", &newest(), Variant::Plain);
    let mut fx = FixtureProc::start(&bin);
    fx.run("steady");
    let tmux = Tmux::start(
        SOCKET,
        160,
        45,
        &format!(
            "{} --budget 0.5% {}; sleep 60",
            periscope().display(),
            fx.pid
        ),
    );
    tmux.wait_for("the function list", |s| s.contains("main.Login("));
    tmux.keys(&["/"]);
    tmux.text("main.Login");
    tmux.keys(&["Enter", "l"]);
    let screen = tmux.wait_for("the budget's message", |s| {
        s.contains("budget 0.5%: main.Login:") && s.contains("of the time")
    });
    assert!(screen.contains("budget 0.5%"), "{screen}");
    tmux.wait_for("the share observed", |s| s.contains(" observed "));
    tmux.keys(&["b"]);
    tmux.wait_for("the budget prompt", |s| s.contains("budget: 0.5%"));
    tmux.keys(&["BSpace", "BSpace", "BSpace", "BSpace"]);
    tmux.text("off");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the budget off", |s| s.contains("/ budget off"));
    tmux.keys(&["q"]);
    wait_until_gone();
    fx.run("stop");
}

#[test]
fn tui_at_80x24_keeps_names_values_and_the_budget_readable() {
    // The smallest usual terminal: function rows can be told apart, a probe's rows show
    // their values (not 7 characters of them), the status bar keeps the cost and the
    // budget, the help scrolls, a log template shows as messages; q leaves nothing.
    let bin = fixture("kinds", &newest(), Variant::Plain);
    let mut fx = FixtureProc::start(&bin);
    fx.run("steady");
    let tmux = Tmux::start(
        SOCKET,
        80,
        24,
        &format!("{} --budget 5% {}", periscope().display(), fx.pid),
    );
    let screen = tmux.wait_for("the function list", |s| s.contains("Functions"));
    // No two rows of the function pane read the same.
    let rows: Vec<&str> = screen
        .lines()
        .skip(1)
        .take(9)
        .map(|l| l.split('┃').nth(1).unwrap_or(l).trim())
        .filter(|r| !r.is_empty())
        .collect();
    let distinct: HashSet<&&str> = rows.iter().collect();
    assert_eq!(distinct.len(), rows.len(), "rows alike:\n{screen}");
    tmux.keys(&["/"]);
    tmux.text("main.Login");
    tmux.keys(&["Enter", "a", "r"]);
    // Values in the room left by the time and function columns (gone at this width).
    let screen = tmux.wait_for("decoded Login calls", |s| {
        s.lines()
            .filter(|l| l.contains(" username=\"") && l.contains(" r0="))
            .count()
            >= 3
    });
    assert!(!screen.contains("TIME"), "{screen}");
    // The status bar keeps the cost against the budget (once the probe is priced).
    tmux.wait_for("the cost in the status bar", |s| {
        s.lines()
            .nth(22)
            .is_some_and(|l| l.contains("cost") && l.contains("budget 5%"))
    });
    // The help scrolls where it does not fit.
    tmux.keys(&["?"]);
    tmux.wait_for("the help", |s| s.contains("Keys") && s.contains("lines 1–"));
    tmux.keys(&["Escape"]);
    // A log template: rows are messages.
    tmux.keys(&["L"]);
    tmux.text("who {username} #{attempts}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("log messages", |s| {
        s.contains("MESSAGE") && s.lines().any(|l| l.contains("who \"alice\" #"))
    });
    tmux.keys(&["q"]);
    wait_until_gone();
    assert!(fx.is_running());
}

#[test]
fn tui_on_every_process_of_a_program_shows_which_made_each_call() {
    let bin = periscope_tests::private_copy(&fixture("kinds", &newest(), Variant::Plain), "tui");
    let mut fxs: Vec<FixtureProc> = (0..3).map(|_| FixtureProc::start(&bin)).collect();
    for fx in &mut fxs {
        fx.run("steady");
    }
    let tmux = Tmux::start(
        SOCKET,
        160,
        45,
        &format!(
            "{} --budget off --exe {}; sleep 60",
            periscope().display(),
            bin.display()
        ),
    );
    tmux.wait_for("the function list", |s| s.contains("main.Login("));
    assert!(
        tmux.screen().contains("3 process(es) of"),
        "{}",
        tmux.screen()
    );
    tmux.keys(&["/"]);
    tmux.text("main.Login");
    tmux.keys(&["Enter", "a", "r"]);
    let pids: Vec<String> = fxs.iter().map(|f| f.pid.to_string()).collect();
    let screen = tmux.wait_for("rows of every process", |s| {
        pids.iter().all(|p| {
            s.lines()
                .any(|l| l.contains(&format!(" {p} ")) && l.contains("username="))
        })
    });
    assert!(screen.contains(" PID "), "{screen}");
    // One exits: said, and the rest go on.
    let gone = fxs.pop().unwrap();
    let gone_pid = gone.pid;
    drop(gone);
    tmux.wait_for("the exit said", |s| {
        s.contains(&format!("pid {gone_pid} exited; 2 process(es)"))
    });
    assert!(!tmux.screen().contains("TARGET EXITED"));
    tmux.keys(&["q"]);
    wait_until_gone();
    let _ = std::fs::remove_file(&bin);
}
