//! Log probes (`--log 'login {username} → {err} in {latency}'`): a message per call,
//! its values named in braces as conditions name them (a parameter, a result, a field
//! through pointers: `{u.Name}`), or `{latency}`. Checked against the function when the
//! probe is set (a name it does not have is an error at its column), and it decides
//! what the probe captures: the paths it names are read first, and nothing it does not
//! need. A value not captured prints its reason, never an invented value.
use probes_ebpf::{Call, GoValue};
use symbols::{Catalog, Function};

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// `{a.b.c}`: the names, and the column (1-based, in characters) of the first.
    Value {
        path: Vec<String>,
        column: usize,
    },
    Latency,
}

/// A template's mistake, at its column (1-based, in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub column: usize,
    pub msg: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "column {}: {}", self.column, self.msg)
    }
}

/// What a probe must capture for a template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub args: bool,
    pub ret: bool,
    pub latency: bool,
    /// The paths it names through pointers, read before anything else (`--capture`).
    pub paths: Vec<String>,
}

impl Needs {
    /// Adds what a template needs to what `spec` captures (trace, the shell and the TUI
    /// alike): the paths it names are read first, its results and latency recorded, and
    /// the arguments whenever it names one or names no value at all (a message is a
    /// row: a template of `{latency}` alone still makes one per call).
    pub fn apply(self, spec: &mut crate::ProbeSpec) {
        spec.args |= self.args || !(self.ret || spec.ret);
        spec.ret |= self.ret;
        spec.latency |= self.latency;
        for p in self.paths {
            if !spec.paths.contains(&p) {
                spec.paths.insert(0, p);
            }
        }
    }
}

impl Template {
    /// `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '{' if chars.get(i + 1) == Some(&'{') => {
                    lit.push('{');
                    i += 2;
                }
                '}' if chars.get(i + 1) == Some(&'}') => {
                    lit.push('}');
                    i += 2;
                }
                '}' => {
                    return Err(TemplateError {
                        column: i + 1,
                        msg: "a `}` without its `{` (write `}}` for a brace)".into(),
                    });
                }
                '{' => {
                    let close = chars[i + 1..]
                        .iter()
                        .position(|&c| c == '}')
                        .map(|k| i + 1 + k)
                        .ok_or(TemplateError {
                            column: i + 1,
                            msg: "a `{` without its `}` (write `{{` for a brace)".into(),
                        })?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    let lead = inner.len() - inner.trim_start().len();
                    let column = i + 2 + inner[..lead].chars().count();
                    let expr = inner.trim();
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(value_part(expr, column)?);
                    i = close + 1;
                }
                c => {
                    lit.push(c);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// Checks every name against `f` (its parameters, then its results, or
    /// `latency`); what a probe on it must capture.
    pub fn check(&self, cat: &Catalog, f: &Function) -> Result<Needs, TemplateError> {
        let mut needs = Needs::default();
        let has = |vs: &Option<Vec<symbols::Value>>, n: &str| {
            vs.as_ref().is_some_and(|vs| vs.iter().any(|v| v.name == n))
        };
        for p in &self.parts {
            match p {
                Part::Text(_) => {}
                Part::Latency => needs.latency = true,
                Part::Value { path, column } => {
                    let root = path[0].as_str();
                    if has(&f.params, root) {
                        needs.args = true;
                    } else if has(&f.results, root) {
                        needs.ret = true;
                    } else {
                        let names = |vs: &Option<Vec<symbols::Value>>| {
                            vs.as_ref().map_or_else(String::new, |vs| {
                                vs.iter()
                                    .map(|v| v.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            })
                        };
                        return Err(TemplateError {
                            column: *column,
                            msg: format!(
                                "{} has no parameter or result `{root}` (parameters: {}; results: {}; or `latency`)",
                                f.name,
                                names(&f.params),
                                names(&f.results)
                            ),
                        });
                    }
                    let joined = path.join(".");
                    // Fields are checked as a capture path is (and read as one).
                    if let Err(e) = probes_ebpf::condition::capture_path(cat, f, &joined) {
                        return Err(TemplateError {
                            column: column + e.column.saturating_sub(1),
                            msg: e.msg,
                        });
                    }
                    if path.len() > 1 && !needs.paths.contains(&joined) {
                        needs.paths.push(joined);
                    }
                }
            }
        }
        Ok(needs)
    }

    /// The message for one call.
    pub fn render(&self, c: &Call) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => s += t,
                Part::Latency => {
                    s += &match (c.latency_ns, c.unwatched) {
                        (Some(0), _) => "below the probe's floor".to_string(),
                        (Some(l), _) => crate::format::fmt_ns(l),
                        (None, true) => "‹not captured: return not watched (cpu budget)›".into(),
                        (None, false) => "‹not captured: no return seen›".into(),
                    }
                }
                Part::Value { path, .. } => s += &value_of(c, path),
            }
        }
        s
    }
}

fn value_part(expr: &str, column: usize) -> Result<Part, TemplateError> {
    if expr == "latency" {
        return Ok(Part::Latency);
    }
    let path: Vec<String> = expr.split('.').map(str::to_string).collect();
    let ident = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    match path.iter().position(|n| !ident(n)) {
        None => Ok(Part::Value { path, column }),
        Some(k) => Err(TemplateError {
            column: column
                + path[..k]
                    .iter()
                    .map(|n| n.chars().count() + 1)
                    .sum::<usize>(),
            msg: if expr.is_empty() {
                "an empty `{}`: name a parameter, a result, a field (`u.Name`) or `latency`".into()
            } else {
                format!("`{expr}` is not a name or a path of fields (`u.Name`)")
            },
        }),
    }
}

/// The value at `path` in the call's arguments or results, as tables show it.
fn value_of(c: &Call, path: &[String]) -> String {
    let root = path[0].as_str();
    let found = [&c.args, &c.ret]
        .into_iter()
        .flatten()
        .find_map(|vs| vs.iter().find(|(k, _)| &**k == root).map(|(_, v)| v));
    let Some(mut v) = found else {
        let side = if c
            .args
            .as_ref()
            .is_some_and(|a| a.iter().any(|(k, _)| &**k == root))
        {
            "argument"
        } else {
            "value"
        };
        return format!("‹not captured: {side} not read›");
    };
    for name in &path[1..] {
        // Through an interface's dynamic value; a followed pointer is its target.
        while let GoValue::Iface {
            value: Some(inner), ..
        } = v
        {
            v = inner;
        }
        v = match v {
            GoValue::Struct(fields) => match fields.iter().find(|(k, _)| &**k == name) {
                Some((_, f)) => f,
                None => return format!("‹no field {name}›"),
            },
            GoValue::Nil => return format!("‹nil: no {name}›"),
            other => return other.render(),
        };
    }
    v.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes_ebpf::value::Missing;

    fn call(args: Vec<(&str, GoValue)>, latency: Option<u64>) -> Call {
        Call {
            probe: 1,
            pid: 1,
            tid: 1,
            goid: 1,
            ts_ns: 0,
            latency_ns: latency,
            args: Some(args.into_iter().map(|(k, v)| (k.into(), v)).collect()),
            ret: Some(vec![("r0".into(), GoValue::Nil)]),
            truncated: false,
            unwatched: false,
            stack: None,
        }
    }

    #[test]
    fn a_message_names_arguments_fields_results_and_latency() {
        let t = Template::parse("set {u.Name} at { address }: {r0} in {latency} {{ok}}").unwrap();
        let u = GoValue::Struct(vec![
            (
                "Name".into(),
                GoValue::Str {
                    s: "alice".into(),
                    truncated: false,
                },
            ),
            ("Age".into(), GoValue::Int(30)),
        ]);
        let c = call(
            vec![
                ("u", u),
                (
                    "address",
                    GoValue::Str {
                        s: "1 Main St".into(),
                        truncated: false,
                    },
                ),
            ],
            Some(1500),
        );
        assert_eq!(
            t.render(&c),
            "set \"alice\" at \"1 Main St\": nil in 1.5µs {ok}"
        );
    }

    #[test]
    fn what_was_not_captured_says_why() {
        let t = Template::parse("{u.Name} {latency}").unwrap();
        let c = call(vec![("u", GoValue::NotCaptured(Missing::Budget))], None);
        assert_eq!(
            t.render(&c),
            format!(
                "{} ‹not captured: no return seen›",
                GoValue::NotCaptured(Missing::Budget).render()
            )
        );
    }

    #[test]
    fn mistakes_point_at_their_column() {
        let e = Template::parse("login {user").unwrap_err();
        assert_eq!(e.column, 7);
        let e = Template::parse("a } b").unwrap_err();
        assert_eq!(e.column, 3);
        let e = Template::parse("x {u.1a}").unwrap_err();
        assert_eq!(e.column, 6, "{e}");
        let e = Template::parse("x {}").unwrap_err();
        assert_eq!(e.column, 4, "{e}");
    }
}
