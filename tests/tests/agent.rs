//! `periscope agent --check`: a probe file checked against the binaries it names,
//! attaching nothing. The demo's sample file is valid; a file with mistakes in five
//! places gets all five, each at its line; a TOML mistake is one line.
use std::process::Command;

use periscope_tests::{Variant, fixture, newest, periscope, repo_root};

/// `agent --check` on `text` (written to a file of its own): (exit code, stdout, stderr).
fn check(text: &str, tag: &str) -> (i32, String, String) {
    let path =
        std::env::temp_dir().join(format!("periscope-agent-{tag}-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(periscope())
        .args(["agent", "--check"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace(path.to_str().unwrap(), "FILE"),
        String::from_utf8_lossy(&out.stderr).replace(path.to_str().unwrap(), "FILE"),
    )
}

/// The lines `FILE:N: …` name.
fn lines_named(stdout: &str) -> Vec<usize> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FILE:")?.split(':').next()?.parse().ok())
        .collect()
}

#[test]
fn the_demos_probe_file_is_valid_against_the_demo() {
    let demo = fixture("demo", &newest(), Variant::Plain);
    let sample = std::fs::read_to_string(repo_root().join("demo/probes.toml")).unwrap();
    // (Named by its path here: the sample names the running program.)
    let text = sample.replace(
        "exe = \"demo-shop\"",
        &format!("exe = \"{}\"", demo.display()),
    );
    assert_ne!(text, sample);
    let (code, out, err) = check(&text, "demo");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "FILE: 1 program(s), 3 probe(s): ok", "{out}");
}

#[test]
fn five_mistakes_are_five_lines_each_at_its_place() {
    let kinds = fixture("kinds", &newest(), Variant::Plain);
    let text = format!(
        r#"budget = "5 percent"

[[program]]
exe = "{}"

[[program.probe]]
func = "main.Logn"
latency = true

[[program.probe]]
func = "main.Login"
args = true
condition = 'attempts >'

[[program.probe]]
func = "main.Login"
log = "login {{usernme}}"

[[program.probe]]
func = "main.Login"
latency = true
by = "nosuch"

[[program.probe]]
func = "main.Sum"
args = true
"#,
        kinds.display()
    );
    let (code, out, err) = check(&text, "five");
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(lines_named(&out), vec![1, 7, 13, 17, 22], "{out}");
    assert!(
        out.contains("unknown function main.Logn (closest: main.Login"),
        "{out}"
    );
    assert!(out.contains(":13: condition, column 11:"), "{out}");
    assert!(
        out.contains(":17: log: column 8:") && out.contains("`usernme`"),
        "{out}"
    );
    assert!(err.contains("FILE: 5 error(s)"), "{err}");
}

#[test]
fn a_program_that_is_not_there_or_not_go_is_said_at_its_line() {
    let (code, out, _) = check(
        "[[program]]\nexe = \"/nonexistent/shop\"\n[[program.probe]]\nfunc = \"main.X\"\nargs = true\n\n[[program]]\nexe = \"/etc/passwd\"\n[[program.probe]]\nfunc = \"main.X\"\nargs = true\n",
        "missing",
    );
    assert_eq!(code, 2);
    assert_eq!(lines_named(&out), vec![2, 8], "{out}");
    assert!(
        out.contains("/etc/passwd is not an ELF executable"),
        "{out}"
    );
    assert!(!out.contains("/proc/"), "named as given: {out}");
}

#[test]
fn a_toml_mistake_is_one_line() {
    let (code, out, err) = check("[[program]]\nexe = \"x\"\nprobez = 1\n", "toml");
    assert_eq!(code, 2);
    assert_eq!(lines_named(&out), vec![3], "{out}");
    assert!(out.contains("unknown field `probez`"), "{out}");
    assert!(err.contains("not a probe file"), "{err}");
}

/// The agent's stderr, read on a thread of its own: its lines as they come.
fn lines_of(err: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

/// Waits for a line holding `what`; every line read so far goes into `seen`.
fn wait_line(rx: &std::sync::mpsc::Receiver<String>, seen: &mut Vec<String>, what: &str) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < end {
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            let done = l.contains(what);
            seen.push(l);
            if done {
                return;
            }
        }
    }
    panic!("no line with {what:?}: {seen:#?}");
}

fn probe_file(bin: &std::path::Path, calls: &std::path::Path, probes: &str) -> String {
    format!(
        "budget = \"off\"\n[output]\njson = \"{}\"\n[[program]]\nexe = \"{}\"\n{probes}",
        calls.display(),
        bin.display()
    )
}

const LOGIN: &str = "[[program.probe]]\nfunc = \"main.Login\"\nargs = true\nret = true\nlog = \"login {username}\"\n";
const SUM: &str = "[[program.probe]]\nfunc = \"main.Sum\"\nargs = true\nret = true\n";
const FLAG: &str = "[[program.probe]]\nfunc = \"main.Flag\"\nargs = true\nret = true\n";

#[test]
fn a_running_agent_reloads_only_what_changed_and_flushes_on_sigterm() {
    use periscope_tests::truth::compare;
    use periscope_tests::{FixtureProc, private_copy};
    let bin = private_copy(&fixture("kinds", &newest(), Variant::Plain), "agent");
    let mut fx = FixtureProc::start(&bin);
    let dir = std::env::temp_dir().join(format!("periscope-agent-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (conf, calls) = (dir.join("probes.toml"), dir.join("calls.jsonl"));
    std::fs::write(&conf, probe_file(&bin, &calls, &format!("{LOGIN}{SUM}"))).unwrap();
    let mut agent = Command::new(periscope())
        .args(["agent", "--config"])
        .arg(&conf)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(agent.stderr.take().unwrap());
    let mut said = Vec::new();
    wait_line(&rx, &mut said, "running ");
    let first = fx.run("run 2");
    // One probe removed, one added, one left as it was.
    std::fs::write(&conf, probe_file(&bin, &calls, &format!("{LOGIN}{FLAG}"))).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGHUP) };
    wait_line(&rx, &mut said, "reloaded");
    let second = fx.run("run 2");
    // A file with a mistake is refused, and what runs goes on.
    std::fs::write(
        &conf,
        probe_file(
            &bin,
            &calls,
            "[[program.probe]]\nfunc = \"main.Nope\"\nargs = true\n",
        ),
    )
    .unwrap();
    unsafe { libc::kill(agent.id() as i32, libc::SIGHUP) };
    wait_line(&rx, &mut said, "the probes running are kept");
    let third = fx.run("run 1");
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let st = agent.wait().unwrap();
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
        said.push(l);
    }
    assert!(st.success(), "{said:#?}");
    let got: Vec<serde_json::Value> = std::fs::read_to_string(&calls)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |recs: &[&Vec<serde_json::Value>], func: &str| -> Vec<serde_json::Value> {
        recs.iter()
            .flat_map(|r| r.iter())
            .filter(|c| c["func"] == func)
            .cloned()
            .collect()
    };
    // Login all along, without a gap at either reload; Sum before the first only, Flag
    // after it only.
    let logins = of(&[&got], "main.Login");
    compare(&of(&[&first, &second, &third], "main.Login"), &logins).unwrap();
    compare(&of(&[&first], "main.Sum"), &of(&[&got], "main.Sum")).unwrap();
    compare(
        &of(&[&second, &third], "main.Flag"),
        &of(&[&got], "main.Flag"),
    )
    .unwrap();
    for l in &logins {
        assert_eq!(
            l["msg"].as_str().unwrap(),
            // (Values formatted as the tables format them: a string quoted.)
            format!("login \"{}\"", l["args"]["username"].as_str().unwrap()),
            "{l}"
        );
    }
    // Set once, not again at a reload; the one removed said so.
    let set_login = said
        .iter()
        .filter(|l| l.contains("main.Login args"))
        .count();
    assert_eq!(set_login, 1, "{said:#?}");
    assert!(
        said.iter().any(|l| l.contains("main.Sum removed")),
        "{said:#?}"
    );
    assert!(
        said.iter()
            .any(|l| l.contains("unknown function main.Nope")),
        "{said:#?}"
    );
    assert!(said.iter().any(|l| l.ends_with("stopped")), "{said:#?}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&bin);
}
