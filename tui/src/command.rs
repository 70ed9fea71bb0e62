//! The shell's command language: text → `Command`, with errors a user can act on.
use anyhow::{Result, anyhow, bail};

use crate::session::ProbeSpec;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Funcs {
        regex: Option<String>,
    },
    Trace {
        func: String,
        settings: ProbeSpec,
        /// `--log 'TEMPLATE'`: a message per call (session::template).
        log: Option<String>,
    },
    Probes,
    Untrace(Option<usize>),
    /// `events [PROBE] [--last N]`: the last N calls (20), of one probe (a number or a
    /// function name) or of all.
    Events {
        probe: Option<String>,
        last: usize,
    },
    Hist(String),
    Wait(std::time::Duration),
    /// `budget`: show it; `budget 2%` / `budget off`: set it.
    Budget(Option<Option<f64>>),
    Help,
    Quit,
}

pub const COMMANDS: &[(&str, &str)] = &[
    (
        "funcs",
        "funcs [REGEX]            functions (own code; a regex searches all)",
    ),
    (
        "trace",
        "trace FUNC [--args] [--ret] [--latency] [--stack] [--by EXPR] [--sample N] [--capture PATHS] [--log 'TEMPLATE'] [if COND]",
    ),
    (
        "probes",
        "probes                   active probes with their counters",
    ),
    (
        "untrace",
        "untrace N|all            remove probe N (see probes)",
    ),
    (
        "events",
        "events [PROBE] [--last N] the last N calls (20), of one probe or all",
    ),
    (
        "hist",
        "hist FUNC|N              latency histogram and percentiles",
    ),
    (
        "wait",
        "wait DURATION            let calls arrive (2s, 500ms)",
    ),
    (
        "budget",
        "budget [N%|off]          share of the target's CPU the probes may take",
    ),
    ("help", "help                     this list"),
    (
        "quit",
        "quit                     detach everything and leave",
    ),
];

pub fn parse(line: &str) -> Result<Option<Command>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let arg = (!rest.is_empty()).then(|| rest.to_string());
    Ok(Some(match word {
        "funcs" | "functions" => Command::Funcs { regex: arg },
        "trace" => trace(rest)?,
        "probes" => Command::Probes,
        "untrace" => Command::Untrace(match rest {
            "all" => None,
            n => Some(
                n.parse()
                    .map_err(|_| anyhow!("untrace takes a probe number or `all` (see `probes`)"))?,
            ),
        }),
        "events" => events(rest)?,
        "hist" => {
            Command::Hist(arg.ok_or_else(|| anyhow!("hist takes a function or a probe number"))?)
        }
        "wait" | "sleep" => Command::Wait(crate::format::parse_duration(if rest.is_empty() {
            "1s"
        } else {
            rest
        })?),
        "budget" => Command::Budget(match rest {
            "" => None,
            b => Some(crate::budget::parse(b).map_err(|e| anyhow!(e))?),
        }),
        "help" | "?" => Command::Help,
        "quit" | "exit" | "q" => Command::Quit,
        other => bail!("unknown command `{other}` (try `help`)"),
    }))
}

fn events(rest: &str) -> Result<Command> {
    let mut words = rest.split_whitespace();
    let (mut probe, mut last) = (None, 20);
    while let Some(w) = words.next() {
        match w {
            "--last" => {
                last = words
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| {
                        anyhow!("--last takes a number of calls, e.g. `events --last 50`")
                    })?
            }
            p if probe.is_none() && !p.starts_with("--") => probe = Some(p.to_string()),
            other => bail!(
                "unexpected `{other}`: write `events [PROBE] [--last N]` (PROBE: a number from `probes`, or a function)"
            ),
        }
    }
    Ok(Command::Events { probe, last })
}

/// `--log 'TEMPLATE'` (or double quotes) taken out of a trace command: the template,
/// and the command without it. A template holds spaces and braces, and may hold ` if `.
fn take_log(rest: &str) -> Result<(Option<String>, String)> {
    let Some(at) = rest.find("--log") else {
        return Ok((None, rest.to_string()));
    };
    let after = rest[at + "--log".len()..].trim_start();
    let quote = after
        .chars()
        .next()
        .filter(|c| matches!(c, '\'' | '"'))
        .ok_or_else(|| {
            anyhow!("--log takes a quoted template, e.g. `--log 'login {{username}}: {{r1}}'`")
        })?;
    let body = &after[1..];
    let end = body
        .find(quote)
        .ok_or_else(|| anyhow!("--log: the template's closing {quote} is missing"))?;
    let rest_after = &body[end + 1..];
    Ok((
        Some(body[..end].to_string()),
        format!("{} {rest_after}", &rest[..at]),
    ))
}

fn trace(rest: &str) -> Result<Command> {
    let (log, rest) = take_log(rest)?;
    let rest = rest.as_str();
    let (head, condition) = match rest.split_once(" if ") {
        Some((h, c)) => (h, Some(c.trim().to_string())),
        None => (rest, None),
    };
    let mut words = head.split_whitespace();
    let mut func = None;
    let (mut args, mut ret, mut latency, mut sample) = (false, false, false, 1);
    let mut paths = Vec::new();
    let mut stack = false;
    let mut by = None;
    while let Some(w) = words.next() {
        match w {
            "--args" => args = true,
            "--ret" => ret = true,
            "--latency" => latency = true,
            "--sample" => {
                sample = words
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| anyhow!("--sample takes a whole number ≥ 1"))?
            }
            "--stack" => stack = true,
            "--by" => {
                by = Some(
                    words
                        .next()
                        .ok_or_else(|| anyhow!("--by takes an expression, e.g. `--by err!=nil`"))?
                        .to_string(),
                )
            }
            "--capture" => {
                let list = words.next().ok_or_else(|| {
                    anyhow!("--capture takes paths, e.g. `--capture r.URL.Path,r.Host`")
                })?;
                paths.extend(list.split(',').filter(|p| !p.is_empty()).map(String::from));
            }
            f if f.starts_with("--") => {
                bail!(
                    "unknown option {f} (--args --ret --latency --stack --by EXPR --sample N --capture PATHS --log 'TEMPLATE')"
                )
            }
            f if func.is_none() => func = Some(f.to_string()),
            f => bail!("unexpected `{f}`: write `trace FUNC [options] if CONDITION`"),
        }
    }
    let func =
        func.ok_or_else(|| anyhow!("trace takes a function name, e.g. `trace main.Login`"))?;
    // Nothing chosen means everything, as with `periscope trace`; with a log template,
    // what the template names (the shell applies it).
    let all = !(args || ret || latency) && log.is_none();
    // --by splits the latency histogram: it records latency.
    latency |= by.is_some();
    Ok(Command::Trace {
        func,
        settings: ProbeSpec {
            args: args || all,
            ret: ret || all,
            latency: latency || all,
            sample,
            condition,
            paths,
            stack,
            by,
        },
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_with_options_and_condition() {
        let c = parse(r#"trace main.Login --args --sample 10 if username == "a b""#)
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            Command::Trace {
                func: "main.Login".into(),
                settings: ProbeSpec {
                    args: true,
                    sample: 10,
                    condition: Some(r#"username == "a b""#.into()),
                    ..ProbeSpec::default()
                },
                log: None,
            }
        );
        // A template with spaces, braces and even ` if ` in it, before a condition.
        let c = parse(r#"trace main.SetInfo --log 'set {u.Name} if {address}' if u.Age > 3"#)
            .unwrap()
            .unwrap();
        let Command::Trace {
            func,
            settings,
            log,
        } = c
        else {
            panic!("{c:?}")
        };
        assert_eq!(func, "main.SetInfo");
        assert_eq!(log.as_deref(), Some("set {u.Name} if {address}"));
        assert_eq!(settings.condition.as_deref(), Some("u.Age > 3"));
        assert!(!settings.args && !settings.ret && !settings.latency);
        assert!(
            parse("trace main.SetInfo --log set")
                .unwrap_err()
                .to_string()
                .contains("quoted")
        );
        assert!(
            parse("trace main.SetInfo --log 'set")
                .unwrap_err()
                .to_string()
                .contains("closing")
        );
    }

    #[test]
    fn errors_say_what_to_write() {
        assert!(
            parse("trace")
                .unwrap_err()
                .to_string()
                .contains("function name")
        );
        assert!(parse("frob").unwrap_err().to_string().contains("help"));
        assert!(parse("untrace x").is_err());
        assert_eq!(parse("  ").unwrap(), None);
        assert_eq!(parse("untrace all").unwrap(), Some(Command::Untrace(None)));
        assert_eq!(
            parse("events 2 --last 5").unwrap(),
            Some(Command::Events {
                probe: Some("2".into()),
                last: 5
            })
        );
        assert_eq!(
            parse("events").unwrap(),
            Some(Command::Events {
                probe: None,
                last: 20
            })
        );
        assert!(parse("events --last x").is_err());
        assert_eq!(
            parse("budget 2%").unwrap(),
            Some(Command::Budget(Some(Some(2.0))))
        );
        assert_eq!(
            parse("budget off").unwrap(),
            Some(Command::Budget(Some(None)))
        );
        assert_eq!(parse("budget").unwrap(), Some(Command::Budget(None)));
        assert!(parse("budget lots").unwrap_err().to_string().contains("5%"));
    }
}
