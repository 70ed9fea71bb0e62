//! `periscope shell PID` fed from a pipe, on a live fixture: tracing with a condition,
//! events, probes with counters, a latency histogram, errors that say what to do;
//! the decoded calls must be calls the fixture says it made.
use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use periscope_tests::{FixtureProc, Variant, fixture, newest, periscope};

#[test]
fn shell_traces_filters_lists_and_shows_latency() {
    let bin = fixture("kinds", &newest(), Variant::Plain);
    let mut fx = FixtureProc::start(&bin);
    fx.run("steady");
    let history = std::env::temp_dir().join(format!("periscope-shell-{}", std::process::id()));
    let _ = std::fs::remove_file(&history);
    let mut shell = Command::new(periscope())
        // Every call is checked whole against the record: no CPU budget.
        .args(["shell", "--budget", "off", &fx.pid.to_string()])
        .env("PERISCOPE_HISTORY", &history)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = [
        "funcs ^main\\.Log",
        r#"trace main.Login if username == "carol""#,
        "trace main.Work --latency",
        "trace main.Login if attempts == \"x\"",
        "trace main.Lgoin",
        "wait 1s",
        "events --last 5",
        "events 1 --last 3",
        "probes",
        "hist main.Login",
        "untrace all",
        "frobnicate",
        "quit",
    ];
    {
        let mut stdin = shell.stdin.take().unwrap();
        for line in script {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = shell.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);

    assert!(
        text.contains("main.Login(username string, attempts int) (bool, error)"),
        "{text}"
    );
    assert!(
        text.contains(r#"probe 1: main.Login (args ret latency if username == "carol"; ~"#),
        "{text}"
    );
    assert!(text.contains("probe 2: main.Work (latency; ~"), "{text}");
    // Errors say what is wrong and where, and the session goes on.
    assert!(
        text.contains("error: type mismatch: attempts is int"),
        "{text}"
    );
    assert!(text.contains("column 13"), "{text}");
    assert!(
        text.contains("unknown function main.Lgoin (closest: main.Login")
            && text.contains("`funcs REGEX` lists them"),
        "{text}"
    );
    assert!(
        text.contains("error: unknown command `frobnicate`"),
        "{text}"
    );
    // Only carol's calls, each one the fixture made.
    let calls: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" main.Login(username="))
        .collect();
    assert!(calls.len() >= 3, "{text}");
    assert!(
        calls.iter().all(|l| l.contains(r#"username="carol""#)),
        "{text}"
    );
    assert!(text.contains("hits") && text.contains("filtered"), "{text}");
    assert!(text.contains("count ") && text.contains("p99"), "{text}");
    assert!(text.contains("removed probe 1: main.Login"), "{text}");

    let rec = fx.run("stop");
    let truth: HashSet<String> = rec[0]["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "username={:?}, attempts={}) → (r0={}, r1=",
                c["username"].as_str().unwrap(),
                c["attempts"],
                c["r0"]
            )
        })
        .collect();
    for l in calls {
        assert!(
            truth.iter().any(|t| l.contains(t.as_str())),
            "{l} is not a call the fixture made"
        );
    }
    // Commands piped in by a script are not the user's history.
    assert!(
        !history.exists(),
        "piped commands were saved to the history"
    );
}

#[test]
fn shell_tab_completes_commands_functions_options_fields_and_probes() {
    let bin = fixture("kinds", &newest(), Variant::Plain);
    let cat = symbols::Catalog::open(&bin).unwrap();
    let complete = |head: &str| periscope::shell_complete::complete(&cat, &[3, 7], head);
    assert_eq!(complete("tr"), (0, vec!["trace ".to_string()]));
    assert_eq!(complete("un").1, vec!["untrace ".to_string()]);
    // The program's own functions come before the standard library's.
    let (at, names) = complete("trace main.Lo");
    assert_eq!(at, 6);
    assert_eq!(names, vec!["main.Login".to_string()]);
    // A short name (the package path left out), as `trace` takes it.
    let (at, names) = complete("trace abi.Kind.Str");
    assert_eq!(at, 6);
    assert_eq!(names, vec!["abi.Kind.String".to_string()]);
    let (_, names) = complete("hist ");
    assert!(names[0].starts_with("main."), "{names:?}");
    assert!(names.len() == 200, "capped: {}", names.len());
    assert_eq!(
        complete("trace main.Login --la").1,
        vec!["--latency ".to_string()]
    );
    // After `if`: parameters and results, then fields through pointers.
    let (at, names) = complete("trace main.SetInfo if ");
    assert_eq!(at, 22);
    assert_eq!(names, ["address", "r0", "startsWith", "u"]);
    let (at, names) = complete("trace main.SetInfo if u.N");
    assert_eq!(at, 22);
    assert_eq!(names, ["u.Name"]);
    assert_eq!(complete("untrace ").1, ["3", "7", "all"]);
}

#[test]
fn the_shell_keeps_a_budget_and_says_what_it_does() {
    // Login a thousand times a second, probed whole: past a 0.5% budget the shell says
    // what the budget did, and `probes` what share of calls was seen whole.
    let mut fx = FixtureProc::start(&fixture("kinds", &newest(), Variant::Plain));
    fx.run("steady");
    let out = piped_shell(
        &[&fx.pid.to_string()],
        &[
            "budget",
            "budget lots",
            "budget 0.5%",
            "trace main.Login",
            "wait 3s",
            "probes",
            "budget off",
            "quit",
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("budget 5%: past it"), "{text}");
    assert!(
        text.contains("error: bad budget \"lots\": give a share of the target's CPU time such as 5% or 0.5%, or off"),
        "{text}"
    );
    assert!(text.contains("budget 0.5%: past it"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("note: budget 0.5%: main.Login: ") && l.contains("of the time")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("main.Login") && l.contains("of calls (budget)")),
        "{text}"
    );
    assert!(
        text.contains("budget off: every point stays attached"),
        "{text}"
    );
    fx.run("stop");
}

#[test]
fn shell_traces_stacks_and_splits_latency_by_a_value() {
    let bin = fixture("kinds", &newest(), Variant::Plain);
    let src =
        std::fs::read_to_string(periscope_tests::repo_root().join("tests/fixtures/kinds/main.go"))
            .unwrap();
    let call_line = 1 + src
        .lines()
        .position(|l| l.contains("ok, err := Login(name, attempts)"))
        .unwrap();
    let mut fx = FixtureProc::start(&bin);
    fx.run("steady");
    let out = piped_shell(
        &["--budget", "off", &fx.pid.to_string()],
        &[
            "trace main.Login --stack --by username",
            "wait 1s",
            "events 1 --last 2",
            "hist 1",
            "quit",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("(args ret latency stack by username"),
        "{text}"
    );
    // Each call's caller, at the line of the call.
    assert!(
        text.contains(&format!("    at main.steady (main.go:{call_line})")),
        "{text}"
    );
    // One line per value under the histogram.
    for user in ["alice", "bob", "carol"] {
        assert!(text.contains(&format!("  = {user}: ")), "{user}: {text}");
    }
}

/// `periscope shell ARGS` fed `script` from a pipe (no history kept); its output.
fn piped_shell(args: &[&str], script: &[&str]) -> std::process::Output {
    let mut shell = periscope_tests::shell_command(args).spawn().unwrap();
    {
        let mut stdin = shell.stdin.take().unwrap();
        for line in script {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    shell.wait_with_output().unwrap()
}

#[test]
fn shell_log_probes_print_their_messages_and_check_their_templates() {
    let mut fx = FixtureProc::start(&fixture("kinds", &newest(), Variant::Plain));
    fx.run("steady");
    let out = piped_shell(
        &["--budget", "off", &fx.pid.to_string()],
        &[
            "trace main.Login --log 'login {username} try {attempts}: {r0}'",
            "trace main.SetInfo --log 'set {u.Nmae}'",
            "wait 1s",
            "events 1 --last 5",
            "probes",
            "quit",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("main.Login  args ret log 'login {username} try {attempts}: {r0}'"),
        "{text}"
    );
    // The template decided what is read: the arguments and the results.
    assert!(text.contains("probe 1: main.Login (args ret"), "{text}");
    // A mistake in a template is said at its column, and sets nothing.
    assert!(
        text.contains("error: --log `set {u.Nmae}`, column 8: main.User has no field `Nmae`"),
        "{text}"
    );
    assert!(!text.contains("probe 2:"), "{text}");
    // steady logs in as alice, bob and carol, with attempts counting up.
    let messages: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" main.Login: "))
        .collect();
    assert_eq!(messages.len(), 5, "{text}");
    for m in messages {
        let msg = m.split(" main.Login: ").nth(1).unwrap();
        let user = ["alice", "bob", "carol"]
            .into_iter()
            .find(|u| msg.starts_with(&format!("login \"{u}\" try ")))
            .unwrap_or_else(|| panic!("{m}"));
        let rest = &msg[format!("login \"{user}\" try ").len()..];
        let (attempts, ok) = rest.split_once(": ").unwrap_or_else(|| panic!("{m}"));
        assert!(attempts.parse::<u64>().is_ok(), "{m}");
        assert!(ok == "true" || ok == "false", "{m}");
    }
}
