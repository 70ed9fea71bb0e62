//! The probe file: programs and their probes in TOML, what `periscope agent` runs on a
//! host and `periscope agent --check` checks against the binaries without attaching
//! anything. Every value keeps its place in the file, so that each mistake is reported
//! at its line (all of them, not the first).
//!
//! ```toml
//! budget = "5%"
//!
//! [output]
//! metrics = "127.0.0.1:9464"
//! json = "/var/log/periscope/calls.jsonl"
//!
//! [[program]]
//! exe = "/srv/shop/shop"          # a path or a running program's name, as --exe; or pids = [1234]
//!
//! [[program.probe]]
//! func = "main.(*Store).Login"
//! args = true
//! ret = true
//! latency = true
//! condition = 'username == "alice"'
//! by = "pid"
//! log = "login {username} -> {r1} in {latency}"
//! sample = 10
//! ```
use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;
use symbols::Catalog;
pub use toml::Spanned;

use crate::ProbeSpec;
use crate::program::{Program, Scope};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeFile {
    /// Each process's budget: `5%`, `0.5%`, `off` (the default is 5%).
    pub budget: Option<Spanned<String>>,
    #[serde(default)]
    pub output: Output,
    #[serde(default, rename = "program")]
    pub programs: Vec<Spanned<ProgramEntry>>,
}

/// Where the calls go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Prometheus' `/metrics` at this address.
    pub metrics: Option<Spanned<String>>,
    /// JSON lines, appended to this file.
    pub json: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramEntry {
    /// A path or a running program's name, as `--exe` takes it.
    pub exe: Option<Spanned<String>>,
    /// Or these processes, as `--pid` given again.
    pub pids: Option<Spanned<Vec<u32>>>,
    #[serde(default, rename = "probe")]
    pub probes: Vec<Spanned<ProbeEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeEntry {
    /// As `trace` takes it: a name, `NAME@0xADDR` or `NAME@file.go:LINE`.
    pub func: Spanned<String>,
    #[serde(default)]
    pub args: bool,
    #[serde(default)]
    pub ret: bool,
    #[serde(default)]
    pub latency: bool,
    #[serde(default)]
    pub stack: bool,
    pub condition: Option<Spanned<String>>,
    pub by: Option<Spanned<String>>,
    /// Paths read before anything else (`--capture`).
    #[serde(default)]
    pub capture: Vec<String>,
    pub log: Option<Spanned<String>>,
    /// Keep one call in this many.
    pub sample: Option<Spanned<u32>>,
}

/// A mistake in the file, at its line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub line: usize,
    pub msg: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

/// The line (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl ProbeFile {
    /// Reads the file's text; a TOML mistake (a key it does not know among them) is one
    /// error at its line.
    pub fn parse(text: &str) -> Result<ProbeFile, FileError> {
        toml::from_str(text).map_err(|e| FileError {
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            msg: e.message().trim().to_string(),
        })
    }

    /// Every mistake, checked against the binaries (read, never attached to): the
    /// programs found, each probe's function, condition, split, captures and template
    /// as setting it would check them. `text` is the file's, for the lines.
    pub fn check(&self, text: &str) -> Vec<FileError> {
        let at = |s: std::ops::Range<usize>| line_of(text, s.start);
        let mut errors = Vec::new();
        if let Some(b) = &self.budget
            && let Err(e) = crate::budget::parse(b.get_ref())
        {
            errors.push(FileError {
                line: at(b.span()),
                msg: e,
            });
        }
        if let Some(m) = &self.output.metrics
            && m.get_ref().parse::<std::net::SocketAddr>().is_err()
        {
            errors.push(FileError {
                line: at(m.span()),
                msg: format!(
                    "metrics: {:?} is not an address to listen on (such as 127.0.0.1:9464)",
                    m.get_ref()
                ),
            });
        }
        if let Some(j) = &self.output.json {
            let p = PathBuf::from(j.get_ref());
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) {
                errors.push(FileError {
                    line: at(j.span()),
                    msg: format!("json: the directory of {} does not exist", p.display()),
                });
            }
        }
        if self.programs.is_empty() {
            errors.push(FileError {
                line: 1,
                msg: "no [[program]]: name one with exe = \"PATH_OR_NAME\" or pids = [PID]".into(),
            });
        }
        // A file's catalog once, whichever programs name it.
        let mut cats: HashMap<PathBuf, Result<Catalog, String>> = HashMap::new();
        for p in &self.programs {
            let line = at(p.span());
            let entry = p.get_ref();
            let cat = match entry.scope() {
                Err(msg) => Err(msg),
                Ok(scope) => Program::find(&scope).and_then(|prog| {
                    let path = prog.file(0).path.clone();
                    // (The path through periscope's descriptor differs per open: keyed by
                    // what was given.)
                    let key = PathBuf::from(prog.display.clone());
                    let shown = prog.display.clone();
                    let cat = cats.entry(key).or_insert_with(|| {
                        // (Named as given, not through periscope's descriptor.)
                        Catalog::open(&path)
                            .map_err(|e| e.to_string().replace(&path.display().to_string(), &shown))
                    });
                    cat.as_ref().map(|_| ()).map_err(|e| e.clone())?;
                    Ok(PathBuf::from(prog.display.clone()))
                }),
            };
            let key = match cat {
                Ok(k) => k,
                Err(msg) => {
                    let line = entry.exe.as_ref().map_or(line, |e| at(e.span()));
                    errors.push(FileError { line, msg });
                    continue;
                }
            };
            let Some(Ok(cat)) = cats.get(&key) else {
                continue;
            };
            if entry.probes.is_empty() {
                errors.push(FileError {
                    line,
                    msg: "no [[program.probe]] for this program".into(),
                });
            }
            for probe in &entry.probes {
                errors.extend(probe.get_ref().check(cat, text));
            }
        }
        errors.sort_by_key(|e| e.line);
        errors
    }

    /// Probes in all.
    pub fn probe_count(&self) -> usize {
        self.programs.iter().map(|p| p.get_ref().probes.len()).sum()
    }
}

/// A probe to write (`render`): its function's name, what it captures, its template.
pub struct ToWrite<'a> {
    pub func: &'a str,
    pub spec: &'a ProbeSpec,
    pub log: Option<&'a str>,
}

/// A probe file for one program and its probes: what a session answered an incident
/// with, to be checked (`agent --check`) and run (`agent --config`) as it is.
pub fn render(budget: Option<f64>, exe: &str, probes: &[ToWrite]) -> String {
    // (Strings quoted by TOML's own rules: names like `main.(*T).Get` and conditions
    // with quotes in them.)
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::from(
        "# A probe file written by periscope: check it with `periscope agent --check FILE`,\n\
         # run it with `periscope agent --config FILE`.\n",
    );
    out += &format!("budget = {}\n\n", q(&crate::budget::describe(budget)));
    out += &format!(
        "[[program]]\n# Every process of this file, those started later included.\nexe = {}\n",
        q(exe)
    );
    for p in probes {
        out += &format!("\n[[program.probe]]\nfunc = {}\n", q(p.func));
        let s = p.spec;
        for (on, key) in [
            (s.args, "args"),
            (s.ret, "ret"),
            (s.latency, "latency"),
            (s.stack, "stack"),
        ] {
            if on {
                out += &format!("{key} = true\n");
            }
        }
        if let Some(c) = &s.condition {
            out += &format!("condition = {}\n", q(c));
        }
        if let Some(b) = &s.by {
            out += &format!("by = {}\n", q(b));
        }
        if !s.paths.is_empty() {
            let paths: Vec<String> = s.paths.iter().map(|p| q(p)).collect();
            out += &format!("capture = [{}]\n", paths.join(", "));
        }
        if let Some(l) = p.log {
            out += &format!("log = {}\n", q(l));
        }
        if s.sample > 1 {
            out += &format!("sample = {}\n", s.sample);
        }
    }
    out
}

impl ProgramEntry {
    /// What it names, as `--exe` or `--pid` would.
    pub fn scope(&self) -> Result<Scope, String> {
        match (&self.exe, &self.pids) {
            (Some(e), None) => Ok(Scope::Exe(e.get_ref().clone())),
            (None, Some(p)) if !p.get_ref().is_empty() => Ok(Scope::Pids(p.get_ref().clone())),
            (Some(_), Some(_)) => Err("give exe or pids, not both".into()),
            _ => Err("a program needs exe = \"PATH_OR_NAME\" or pids = [PID, …]".into()),
        }
    }
}

impl ProbeEntry {
    /// What the probe captures, before its template adds what it names.
    pub fn spec(&self) -> ProbeSpec {
        ProbeSpec {
            args: self.args,
            ret: self.ret,
            latency: self.latency,
            condition: self.condition.as_ref().map(|c| c.get_ref().clone()),
            sample: self.sample.as_ref().map_or(1, |s| *s.get_ref()),
            paths: self.capture.clone(),
            stack: self.stack,
            by: self.by.as_ref().map(|b| b.get_ref().clone()),
        }
    }

    /// Its mistakes against the program's catalog, each at its line.
    fn check(&self, cat: &Catalog, text: &str) -> Vec<FileError> {
        let at = |s: std::ops::Range<usize>| line_of(text, s.start);
        let func_line = at(self.func.span());
        let mut errors = Vec::new();
        let mut spec = self.spec();
        let name = self.func.get_ref();
        if let Some(s) = &self.sample
            && *s.get_ref() == 0
        {
            errors.push(FileError {
                line: at(s.span()),
                msg: "sample = 0: keep one call in N, N ≥ 1".into(),
            });
        }
        let funcs = match crate::session::find_functions(cat, name) {
            Ok(f) => f,
            Err(e) => {
                errors.push(FileError {
                    line: func_line,
                    msg: e.to_string(),
                });
                return errors;
            }
        };
        let f = &cat.functions[funcs[0]];
        if let Some(l) = &self.log {
            let line = at(l.span());
            match crate::template::Template::parse(l.get_ref()).and_then(|t| t.check(cat, f)) {
                Ok(needs) => needs.apply(&mut spec),
                Err(e) => {
                    errors.push(FileError {
                        line,
                        msg: format!("log: {e}"),
                    });
                    return errors;
                }
            }
        }
        if spec.is_empty() {
            errors.push(FileError {
                line: func_line,
                msg: format!(
                    "{name}: captures nothing: set args, ret or latency = true, or a log template"
                ),
            });
            return errors;
        }
        for &m in &funcs {
            let f = &cat.functions[m];
            let cond = match &self.condition {
                Some(c) => match probes_ebpf::condition::compile(cat, f, c.get_ref()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors.push(FileError {
                            line: at(c.span()),
                            msg: format!("condition, column {}: {}", e.column, e.msg),
                        });
                        return errors;
                    }
                },
                None => None,
            };
            if let Err(e) = probes_ebpf::plan::build(cat, f, &spec.capture(64), cond.as_ref()) {
                let line = match (&e, &self.by) {
                    (probes_ebpf::PlanError::By(_), Some(b)) => at(b.span()),
                    _ => func_line,
                };
                errors.push(FileError {
                    line,
                    msg: e.to_string(),
                });
                return errors;
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_file_reads_back_as_the_same_probes() {
        let spec = ProbeSpec {
            args: true,
            latency: true,
            condition: Some(r#"u.Name == "al\ice""#.into()),
            sample: 3,
            paths: vec!["r.URL.Path".into()],
            by: Some("err != nil".into()),
            ..ProbeSpec::default()
        };
        let text = render(
            Some(2.0),
            "/srv/my shop/shop",
            &[ToWrite {
                func: "main.(*Store).Login",
                spec: &spec,
                log: Some("login {u.Name} in {latency}"),
            }],
        );
        let f = ProbeFile::parse(&text).unwrap();
        assert_eq!(f.budget.as_ref().unwrap().get_ref(), "2%");
        let p = f.programs[0].get_ref();
        assert_eq!(p.scope(), Ok(Scope::Exe("/srv/my shop/shop".into())));
        let e = p.probes[0].get_ref();
        assert_eq!(e.func.get_ref(), "main.(*Store).Login");
        assert_eq!(e.spec(), spec);
        assert_eq!(
            e.log.as_ref().unwrap().get_ref(),
            "login {u.Name} in {latency}"
        );
    }

    #[test]
    fn a_toml_mistake_is_at_its_line() {
        let text = "budget = \"5%\"\n\n[[program]]\nexe = \"/bin/x\"\nprobes = 3\n";
        let e = ProbeFile::parse(text).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.msg.contains("unknown field"), "{e}");
    }

    #[test]
    fn the_file_reads_as_written() {
        let text = r#"
budget = "2%"
[output]
metrics = "127.0.0.1:9464"
[[program]]
exe = "shop"
[[program.probe]]
func = "main.Login"
latency = true
condition = 'user == "alice"'
sample = 4
"#;
        let f = ProbeFile::parse(text).unwrap();
        assert_eq!(f.programs.len(), 1);
        let p = f.programs[0].get_ref();
        assert_eq!(p.scope(), Ok(Scope::Exe("shop".into())));
        let s = p.probes[0].get_ref().spec();
        assert!(s.latency && !s.args);
        assert_eq!(s.sample, 4);
        assert_eq!(s.condition.as_deref(), Some("user == \"alice\""));
        assert_eq!(line_of(text, p.probes[0].get_ref().func.span().start), 8);
    }
}
