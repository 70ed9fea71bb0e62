//! How periscope writes times, durations, costs and calls as text: one module that
//! `trace`, the shell and the TUI all use.
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use probes_ebpf::{Call, GoValue};

use crate::session::ProbeCost;

/// CLOCK_REALTIME − CLOCK_MONOTONIC: BPF timestamps are monotonic; adding this makes
/// them Unix time.
pub fn clock_offset_ns() -> i64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    };
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC)
}

/// Unix nanoseconds of a monotonic BPF timestamp.
pub fn unix_ns(ts_ns: u64, offset_ns: i64) -> u64 {
    (ts_ns as i64).saturating_add(offset_ns).max(0) as u64
}

/// Wall-clock time (UTC, as servers and containers log) of a monotonic BPF timestamp:
/// `15:04:05.123456` (`digits` of the second's fraction, 3 or 6), so that a call lines
/// up with the service's own logs.
pub fn wall_clock(ts_ns: u64, offset_ns: i64, digits: u32) -> String {
    let unix = unix_ns(ts_ns, offset_ns);
    let secs = (unix / 1_000_000_000) as libc::time_t;
    // SAFETY: gmtime_r fills a zeroed tm from a valid time_t; both are locals.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&secs, &mut tm);
        tm
    };
    let frac = (unix % 1_000_000_000) / 10u64.pow(9 - digits.min(9));
    format!(
        "{:02}:{:02}:{:02}.{frac:0width$}",
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        width = digits as usize
    )
}

/// One call as a line: `15:04:05.123456 g42    main.Login(…) → (…)  1.2ms`. `offset_ns`
/// turns the kernel's monotonic timestamps into wall-clock time (see `clock_offset_ns`).
/// A call's callers as indented lines under it: `    at main.caller (main.go:42)`.
pub fn stack_lines(s: &crate::session::Callers) -> String {
    match s {
        crate::session::Callers::Frames(stack) => stack
            .parts()
            .map(|p| match p {
                Some(p) => {
                    let file = p.file.rsplit('/').next().unwrap_or(&p.file);
                    format!("    at {} ({file}:{})\n", p.func, p.line)
                }
                None => stack.elided.map_or_else(String::new, |e| {
                    format!("    {}\n", crate::stack::Stack::elided_text(&e))
                }),
            })
            .collect(),
        crate::session::Callers::NotCaptured(why) => format!("    ‹stack not captured: {why}›\n"),
    }
}

pub fn call_line(c: &Call, func: &str, offset_ns: i64) -> String {
    call_line_of(c, func, offset_ns, false)
}

/// `call_line`, with the process (`pid 4321`) after the time when calls come from
/// several.
pub fn call_line_of(c: &Call, func: &str, offset_ns: i64, pid: bool) -> String {
    let join = |vs: &[(probes_ebpf::Name, GoValue)]| {
        vs.iter()
            .map(|(k, v)| format!("{k}={}", v.render()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = wall_clock(c.ts_ns, offset_ns, 6);
    if pid {
        s += &format!(" pid {:<7}", c.pid);
    }
    s += &format!(" g{:<6} {func}(", c.goid);
    // Arguments the probe was not asked for are not "no arguments".
    match &c.args {
        Some(a) => s += &join(a),
        None => s += "…",
    }
    s += ")";
    if let Some(r) = &c.ret {
        s += &format!(" → ({})", join(r));
    }
    match c.latency_ns {
        // (The probe's own time is subtracted: 0 is below what it can measure.)
        Some(0) => s += "  below the probe's floor",
        Some(l) => s += &format!("  {}", fmt_ns(l)),
        None => {}
    }
    s
}

/// `cost ~1.2µs a call, 0.8% of the target's CPU`.
pub fn describe_cost(c: &ProbeCost) -> String {
    let pct = c
        .overhead_pct
        .map(|p| format!(", {p:.1}% of the target's CPU"))
        .unwrap_or_default();
    let observed = c
        .watch
        .filter(|w| w.observed_pct < 99.95)
        // Over a lower bound of the calls not seen, the share seen is an upper bound.
        .map(|w| {
            let most = if w.unseen_at_least { "at most " } else { "" };
            format!(
                "; observed {most}{} of calls (budget)",
                pct1(w.observed_pct)
            )
        })
        .unwrap_or_default();
    let unseen = c
        .watch
        .and_then(|w| describe_unseen(&w))
        .map(|u| format!("; {u}"))
        .unwrap_or_default();
    let observed = observed + &unseen;
    format!(
        "cost ~{} a call{pct}{observed}",
        fmt_ns(c.per_call_ns.round() as u64)
    )
}

/// `~1200 calls not seen: the probe was detached 62% of the time` (None: it never was);
/// `≥1200` when the estimate is a lower bound.
pub fn describe_unseen(w: &crate::governor::Watch) -> Option<String> {
    (w.unseen_est > 0 || w.detached_pct >= 0.05).then(|| {
        format!(
            "{}{} calls not seen: the probe was detached {} of the time",
            if w.unseen_at_least { "≥" } else { "~" },
            w.unseen_est,
            pct1(w.detached_pct)
        )
    })
}

/// What a probe will add to each call, from the calibration: its entry (emulated or
/// single-stepped) and, for results or latency, a single-stepped RET.
pub fn estimate_per_call(hc: &probes_ebpf::HitCost, stepped_entry: bool, paired: bool) -> f64 {
    let entry = if stepped_entry {
        hc.stepped_ns
    } else {
        hc.emulated_ns
    };
    entry + if paired { hc.stepped_ns } else { 0.0 }
}

/// `12%`, `0.4%`: one decimal below 10; a cost too small for that is `<0.1%`, never
/// `0%`.
pub fn pct1(p: f64) -> String {
    if p > 0.0 && p < 0.05 {
        "<0.1%".to_string()
    } else if p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

pub fn fmt_ns(ns: u64) -> String {
    match ns {
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{:.1}µs", n as f64 / 1e3),
        n if n < 1_000_000_000 => format!("{:.2}ms", n as f64 / 1e6),
        n => format!("{:.2}s", n as f64 / 1e9),
    }
}

pub fn parse_duration(s: &str) -> Result<Duration> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("bad duration {s:?} (use e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("bad duration {s:?} (use e.g. 10s, 500ms, 2m)"),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `[{"func","file","line"}, …]`, or `{"not_captured": REASON}`.
enum StackJson<'a> {
    Frames(&'a crate::stack::Stack),
    NotCaptured(&'a str),
}

/// A frame of a JSON stack, or the mark where frames were left out:
/// `{"elided": N}` (`"at_least": true` when the walk stopped before the root).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum FrameJson<'a> {
    Frame(&'a symbols::pclntab::Position),
    Elided {
        elided: u64,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        at_least: bool,
    },
}

impl serde::Serialize for StackJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            StackJson::Frames(f) => s.collect_seq(f.parts().map(|p| match p {
                Some(p) => FrameJson::Frame(p),
                None => {
                    let e = f.elided.unwrap_or(crate::stack::Elided {
                        at: 0,
                        count: 0,
                        at_least: false,
                    });
                    FrameJson::Elided {
                        elided: e.count,
                        at_least: e.at_least,
                    }
                }
            })),
            StackJson::NotCaptured(why) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("not_captured", why)?;
                m.end()
            }
        }
    }
}

/// Appends one call as a JSON object (no newline) to `out`:
/// `{"type":"call","func","pid","tid","goid","ts" (Unix ns of the entry, for lining
/// up with logs),"ts_ns" (the kernel's monotonic clock: orders calls exactly),"args"?,
/// "ret"?,"latency_ns"?,"below_floor"? (only true: latency_ns is 0 because the call
/// took no longer than the probe's own time),"truncated"? (only true),"unwatched"? (only true: seen at
/// its entry only, the budget had the return points detached),"stack"? (callers,
/// innermost first)}`. The fixed keys are written as they are and the numbers with
/// itoa: a trace prints a million of these a second, and serde's struct machinery
/// (a call per key, each key escaped) was a third of the reader's time.
pub fn write_call_json(
    out: &mut Vec<u8>,
    c: &Call,
    func: &str,
    stack: Option<&crate::session::Callers>,
    clock_offset_ns: i64,
) {
    let mut num = itoa::Buffer::new();
    let mut field = |out: &mut Vec<u8>, key: &[u8], v: u64| {
        out.extend_from_slice(key);
        out.extend_from_slice(num.format(v).as_bytes());
    };
    out.extend_from_slice(br#"{"type":"call","func":"#);
    // Writing to a Vec cannot fail, and these values serialize without error.
    let _ = serde_json::to_writer(&mut *out, func);
    field(out, br#","pid":"#, c.pid.into());
    field(out, br#","tid":"#, c.tid.into());
    field(out, br#","goid":"#, c.goid);
    field(out, br#","ts":"#, unix_ns(c.ts_ns, clock_offset_ns));
    field(out, br#","ts_ns":"#, c.ts_ns);
    for (key, vs) in [(&br#","args":"#[..], &c.args), (br#","ret":"#, &c.ret)] {
        if let Some(vs) = vs {
            out.extend_from_slice(key);
            let _ = serde_json::to_writer(&mut *out, &probes_ebpf::value::Fields(vs));
        }
    }
    if let Some(l) = c.latency_ns {
        field(out, br#","latency_ns":"#, l);
        // The probe's own time (the floor) was subtracted: a call that took no longer
        // is 0, which is "below what a probe can measure", not "no time".
        if l == 0 {
            out.extend_from_slice(br#","below_floor":true"#);
        }
    }
    if c.truncated {
        out.extend_from_slice(br#","truncated":true"#);
    }
    if c.unwatched {
        out.extend_from_slice(br#","unwatched":true"#);
    }
    if let Some(s) = stack {
        out.extend_from_slice(br#","stack":"#);
        let s = match s {
            crate::session::Callers::Frames(f) => StackJson::Frames(f),
            crate::session::Callers::NotCaptured(why) => StackJson::NotCaptured(why),
        };
        let _ = serde_json::to_writer(&mut *out, &s);
    }
    out.push(b'}');
}

/// One call as a JSON string (see `write_call_json`).
pub fn call_json(
    c: &Call,
    func: &str,
    stack: Option<&crate::session::Callers>,
    clock_offset_ns: i64,
) -> String {
    let mut out = Vec::with_capacity(256);
    write_call_json(&mut out, c, func, stack, clock_offset_ns);
    String::from_utf8(out).unwrap_or_default()
}

/// A probe in one process of a program of several, as every front-end says it:
/// `pid 4242: 300 hits, observed 99.7%, ~1.2µs/call, 0.8% of its CPU`.
pub fn describe_in_process(p: &crate::per_process::InProcess) -> String {
    let mut s = format!("pid {}: {} hits", p.pid, p.hits);
    if p.observed_pct < 99.95 {
        s.push_str(&format!(
            ", observed {}{}",
            if p.unseen_at_least { "≤" } else { "" },
            pct1(p.observed_pct)
        ));
    }
    if p.unwatched > 0 {
        s.push_str(&format!(" ({} unwatched)", p.unwatched));
    }
    if let Some(c) = p.per_call_ns {
        s.push_str(&format!(", ~{}/call", fmt_ns(c.round() as u64)));
    }
    if let Some(o) = p.overhead_pct {
        s.push_str(&format!(", {o:.1}% of its CPU"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_is_utc_with_the_fraction_asked_for() {
        // 1700000000 s is 2023-11-14 22:13:20 UTC.
        let offset = 1_700_000_000_123_456_789i64;
        assert_eq!(wall_clock(0, offset, 6), "22:13:20.123456");
        assert_eq!(wall_clock(1_000_000_000, offset, 3), "22:13:21.123");
        assert_eq!(unix_ns(5, offset), 1_700_000_000_123_456_794);
    }

    #[test]
    fn a_call_is_one_json_object_with_its_keys_in_order() {
        let mut c = Call {
            probe: 1,
            pid: 10,
            tid: 11,
            goid: 12,
            ts_ns: 1_000,
            latency_ns: Some(250),
            args: Some(vec![
                (
                    "name".into(),
                    GoValue::Str {
                        s: "a\"b".into(),
                        truncated: false,
                    },
                ),
                ("n".into(), GoValue::Int(-3)),
            ]),
            ret: Some(vec![(
                "err".into(),
                GoValue::NotCaptured(probes_ebpf::value::Missing::Budget),
            )]),
            truncated: true,
            unwatched: false,
            stack: None,
        };
        let why = crate::session::Callers::NotCaptured("stack table full".into());
        let text = call_json(&c, "main.F\"", Some(&why), 5);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"call","func":"main.F\"","pid":10,"tid":11,"goid":12,
                "ts":1005,"ts_ns":1000,"args":{"name":"a\"b","n":-3},
                "ret":{"err":{"not_captured":"budget"}},"latency_ns":250,"truncated":true,
                "stack":{"not_captured":"stack table full"}})
        );
        let keys = [
            "type", "func", "pid", "tid", "goid", "ts", "ts_ns", "args", "ret",
        ];
        let at: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        // What a call does not have is left out, not written as null or false.
        (c.args, c.ret, c.latency_ns, c.truncated) = (None, None, None, false);
        let v: serde_json::Value = serde_json::from_str(&call_json(&c, "f", None, 0)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"call","func":"f","pid":10,"tid":11,"goid":12,"ts":1000,"ts_ns":1000})
        );
        // A call no longer than the probe's own time: 0 once the floor is subtracted,
        // said as below the floor rather than as taking no time.
        c.latency_ns = Some(0);
        let v: serde_json::Value = serde_json::from_str(&call_json(&c, "f", None, 0)).unwrap();
        assert_eq!(v["latency_ns"], 0);
        assert_eq!(v["below_floor"], true);
        assert!(call_line(&c, "f", 0).ends_with("below the probe's floor"));
    }
}
