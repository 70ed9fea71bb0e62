//! The end of a trace over a program of several processes: each probe in each process
//! (its calls, what of them was seen, what it cost there) and what the probes together
//! cost each process, as lines under the program's summary.
use std::io::Write;

use anyhow::Result;
use serde_json::json;

use crate::format::{describe_in_process, fmt_ns};
use crate::per_process::InProcess;

fn round2(p: f64) -> f64 {
    (p * 100.0).round() / 100.0
}

/// `each`: (probe's name, the probe in each process); `costs`: (pid, ns, % of its CPU).
pub fn summarize(
    out: &mut impl Write,
    each: &[(&str, Vec<InProcess>)],
    costs: &[(u32, f64, Option<f64>)],
    as_json: bool,
) -> Result<()> {
    for (name, procs) in each {
        for p in procs {
            if as_json {
                writeln!(
                    out,
                    "{}",
                    json!({"type":"process_stats","func":name,"pid":p.pid,"hits":p.hits,
                        "unwatched":p.unwatched,"unseen_est":p.unseen_est,
                        "unseen_at_least":p.unseen_at_least,
                        "observed_pct":round2(p.observed_pct),
                        "cost_ns":p.per_call_ns.map(|c| c.round() as u64),
                        "overhead_pct":p.overhead_pct.map(round2)})
                )?;
            } else {
                writeln!(out, "{name} in {}", describe_in_process(p))?;
            }
        }
    }
    for &(pid, ns, pct) in costs {
        if as_json {
            writeln!(
                out,
                "{}",
                json!({"type":"process_cost","pid":pid,"cost_ns":ns.round() as u64,
                    "overhead_pct":pct.map(round2)})
            )?;
        } else {
            writeln!(
                out,
                "pid {pid}: the probes cost it {}{}",
                fmt_ns(ns as u64),
                pct.map(|o| format!(", {}% of its CPU", round2(o)))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(())
}
