//! `periscope list TARGET [REGEX]`: every function with its signature and location.
use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;
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
    if let Some(w) = cat.release_warning() {
        eprintln!("periscope: warning: {w}");
    }
    if !cat.has_dwarf {
        eprintln!(
            "periscope: {}: {}",
            cat.elf.path().display(),
            symbols::stripped::NOTE
        );
    }
    // Where a probe with results and latency would sit (call sites or the function's
    // own points), for the functions a pattern picks: indexing the calls costs a scan of
    // the whole binary, which listing everything does without.
    let graph = re
        .as_ref()
        .map(|_| symbols::callsites::CallGraph::build(&cat));
    let points = |f: &Function| {
        let g = graph.as_ref()?;
        f.probeable().then_some(())?;
        let shared = symbols::callsites::recovery_entry(&cat).is_some();
        let sites = g.plan(&cat, f, true, shared);
        let straight = g.straight_entry(&cat, f);
        probes_ebpf::points::Points::choose(f, true, Some(&sites), straight).map(|p| p.describe)
    };
    // Names several functions share (closure copies): a probe on the name takes them
    // all, NAME@ADDRESS picks one.
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for f in cat.functions.iter().filter(|f| f.probeable()) {
        *seen.entry(f.name.as_str()).or_default() += 1;
    }
    let inlined_too: std::collections::HashSet<&str> = cat
        .functions
        .iter()
        .filter(|f| f.inlined_only)
        .map(|f| f.name.as_str())
        .collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for f in &cat.functions {
        if re.as_ref().is_some_and(|re| !re.is_match(&f.name)) {
            continue;
        }
        // A function inlined at some call sites and compiled at others is one line of
        // text: the probeable copy's, which says that inlined calls are not seen.
        if !as_json && f.inlined_only && seen.contains_key(f.name.as_str()) {
            continue;
        }
        let p = points(f);
        let r = if as_json {
            writeln!(out, "{}", function_json(f, p.as_deref()))
        } else {
            let mut line = function_line(f, p.is_some());
            if let Some(&n) = seen.get(f.name.as_str())
                && n > 1
                && f.probeable()
            {
                line += &format!("  [1 of {n} named so: {}@{:#x}]", f.name, f.entry);
            }
            if f.probeable() && inlined_too.contains(f.name.as_str()) {
                line += "  [also inlined: a probe sees only the calls that were not]";
            }
            match p {
                Some(p) => writeln!(out, "{line}  [{p}]"),
                None => writeln!(out, "{line}"),
            }
        };
        if r.is_err() {
            return Ok(()); // reader went away (`| head`)
        }
    }
    out.flush().context("writing the list")?;
    // The process ends here: freeing 20,000 functions one by one would only add time.
    std::mem::forget(cat);
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s).trim()
}

/// `placed`: the points a probe would use are listed after it (call sites can make a
/// leaf cheap), so its own first instruction's cost is not the answer.
pub fn function_line(f: &Function, placed: bool) -> String {
    let mut s = format!("{}  {}", f.signature(), f.location());
    if f.inlined_only {
        // Go's DWARF lists an inlined function's parameters, never its results.
        s += "  [inlined: not probeable; results not in DWARF]";
    } else if f.params.is_none() && f.probes.is_some() {
        // Stripped, and no stack-growth path to say where its words are.
        s += "  [argument words not located: no stack check]";
    } else if f.probes.is_none() && f.params.is_some() {
        s += "  [not in Go's function table (C code?): not probeable]";
    } else if let Some(p) = &f.probes
        && p.entry_kind.is_expensive()
        && !placed
    {
        s += "  [expensive probe: no stack check]";
    }
    if f.abi0 {
        s += "  [ABI0: values on the stack]";
    }
    s.trim_end().to_string()
}

/// One function as JSON, serialized straight from borrowed data: building
/// `serde_json::Value` maps for 20,000 functions cost as much as loading the catalog.
fn values_json(vs: &Option<Vec<symbols::Value>>) -> Option<Vec<ValueJson<'_>>> {
    vs.as_ref().map(|vs| {
        vs.iter()
            .map(|v| ValueJson {
                name: &v.name,
                ty: &v.type_name,
                location: v.location.describe(),
                pieces: &v.location.pieces,
            })
            .collect()
    })
}

pub fn function_json(f: &Function, points: Option<&str>) -> String {
    let j = FunctionJson {
        name: &f.name,
        package: &f.package,
        file: f.file.as_deref(),
        line: f.line,
        params: values_json(&f.params),
        results: values_json(&f.results),
        entry: Hex(f.entry),
        end: Hex(f.end),
        inlined_only: f.inlined_only,
        abi: if f.abi0 { "ABI0" } else { "ABIInternal" },
        probe_entry: f.probes.as_ref().map(|p| Hex(p.entry)),
        probe_entry_kind: f.probes.as_ref().map(|p| p.entry_kind),
        returns: f
            .probes
            .as_ref()
            .map(|p| p.returns.iter().map(|&a| Hex(a)).collect()),
        points,
    };
    serde_json::to_string(&j).expect("plain data serializes")
}

#[derive(Serialize)]
struct FunctionJson<'a> {
    name: &'a str,
    package: &'a str,
    file: Option<&'a str>,
    line: Option<u32>,
    params: Option<Vec<ValueJson<'a>>>,
    results: Option<Vec<ValueJson<'a>>>,
    entry: Hex,
    end: Hex,
    inlined_only: bool,
    /// ABI0: every value on the stack; ABIInternal: the register ABI.
    abi: &'static str,
    probe_entry: Option<Hex>,
    probe_entry_kind: Option<symbols::probe_points::EntryKind>,
    returns: Option<Vec<Hex>>,
    /// Where a probe with results and latency would sit (with a pattern only).
    #[serde(skip_serializing_if = "Option::is_none")]
    points: Option<&'a str>,
}

#[derive(Serialize)]
struct ValueJson<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    location: String,
    pieces: &'a [symbols::Piece],
}

/// An address as `"0x4a3f20"`.
struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}
