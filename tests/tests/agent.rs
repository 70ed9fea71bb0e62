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
