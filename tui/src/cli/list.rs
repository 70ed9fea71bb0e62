//! `periscope list TARGET [REGEX]`: every function with its signature and location.
use std::io::Write;

use anyhow::{Context, Result};
use serde_json::json;
use symbols::Function;

use crate::target::Target;

pub fn run(target: &Target, pattern: Option<&str>, as_json: bool) -> Result<()> {
    let re = match pattern {
        Some(p) => Some(
            regex::Regex::new(p)
                .map_err(|e| anyhow::anyhow!("bad regex {p:?}: {}", first_line(&e.to_string())))?,
        ),
        None => None,
    };
    let cat = target.open()?;
    if !cat.has_dwarf {
        eprintln!(
            "periscope: {} has no DWARF (stripped?): listing names from .gopclntab; argument and result types need DWARF",
            cat.elf.path().display()
        );
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for f in &cat.functions {
        if re.as_ref().is_some_and(|re| !re.is_match(&f.name)) {
            continue;
        }
        let r = if as_json {
            writeln!(out, "{}", function_json(f))
        } else {
            writeln!(out, "{}", function_line(f))
        };
        if r.is_err() {
            return Ok(()); // reader went away (`| head`)
        }
    }
    out.flush().context("writing the list")?;
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s).trim()
}

pub fn function_line(f: &Function) -> String {
    let mut s = format!("{}  {}", f.signature(), f.location());
    if f.inlined_only {
        s += "  [inlined: not probeable]";
    } else if let Some(p) = &f.probes
        && p.entry_kind.is_expensive()
    {
        s += "  [expensive probe: no stack check]";
    }
    s.trim_end().to_string()
}

pub fn function_json(f: &Function) -> serde_json::Value {
    let hex = |a: u64| format!("{a:#x}");
    let values = |vs: &Option<Vec<symbols::Value>>| {
        vs.as_ref().map(|vs| {
            vs.iter()
                .map(|v| {
                    json!({
                        "name": v.name,
                        "type": v.type_name,
                        "location": v.location.describe(),
                        "pieces": v.location.pieces,
                    })
                })
                .collect::<Vec<_>>()
        })
    };
    json!({
        "name": f.name,
        "package": f.package,
        "file": f.file,
        "line": f.line,
        "params": values(&f.params),
        "results": values(&f.results),
        "entry": hex(f.entry),
        "end": hex(f.end),
        "inlined_only": f.inlined_only,
        "probe_entry": f.probes.as_ref().map(|p| hex(p.entry)),
        "probe_entry_kind": f.probes.as_ref().map(|p| p.entry_kind),
        "returns": f.probes.as_ref().map(|p| p.returns.iter().map(|&a| hex(a)).collect::<Vec<_>>()),
    })
}
