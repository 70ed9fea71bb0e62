//! Turns "capture the arguments/results of this function, when this condition holds"
//! into the probe's plan (`psc_probe`): which words and bytes the kernel reads.
use symbols::{Catalog, Function, Loc};

use crate::condition::CompiledCondition;
use crate::error::PlanError;
use crate::recipe::{Builder, Recipe};
use crate::wire::*;

/// What the user asked for on one function.
#[derive(Debug, Clone)]
pub struct Capture {
    pub args: bool,
    pub ret: bool,
    pub latency: bool,
    pub sample_every: u32,
    pub max_string: u16,
    pub max_elems: u16,
    /// Paths captured before anything else (`r.URL.Path`), in the condition syntax.
    pub paths: Vec<String>,
    /// Record the callers' stack at each kept call's entry.
    pub stack: bool,
    /// One latency histogram per value of this expression (`--by`).
    pub by: Option<String>,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            args: true,
            ret: true,
            latency: true,
            sample_every: 1,
            max_string: 64,
            max_elems: 8,
            paths: Vec::new(),
            stack: false,
            by: None,
        }
    }
}

/// A probe ready to load: the wire plan, and the recipe the decoder walks.
#[derive(Clone)]
pub struct Plan {
    pub wire: psc_probe,
    pub recipe: Recipe,
    /// `--by`: how its values read back (a string's are named, a bool's true/false).
    pub by: Option<crate::condition::CompiledBy>,
    pub capture: Capture,
    pub entry_stack_off: u32,
    pub ret_stack_off: u32,
}

pub fn build(
    cat: &Catalog,
    f: &Function,
    capture: &Capture,
    cond: Option<&CompiledCondition>,
) -> Result<Plan, PlanError> {
    if f.inlined_only {
        return Err(PlanError::Inlined {
            func: f.name.clone(),
        });
    }
    if f.probes.is_none() {
        return Err(PlanError::NoCode {
            func: f.name.clone(),
        });
    }
    let needs_ret = capture.ret
        || capture.latency
        || capture.by.is_some()
        || cond.is_some_and(|c| c.reads_results);
    if needs_ret && f.probes.as_ref().is_some_and(|p| p.returns.is_empty()) {
        return Err(PlanError::NoReturn {
            func: f.name.clone(),
        });
    }
    let g = cat.g_offsets.ok_or(PlanError::NoRuntimeG)?;
    // One `--capture` list serves every probe of a trace: a path names this function's
    // values when its first name is one of them (`trace` checks that each path is
    // somebody's).
    let named = capture
        .paths
        .iter()
        .filter(|text| f.value(path_root(text)).is_some())
        .map(|text| crate::condition::capture_path(cat, f, text))
        .collect::<Result<Vec<_>, _>>()?;
    let mut b = Builder::new(cat, capture, &named);
    let params = f.params.as_deref().unwrap_or(&[]);
    let results = f.results.as_deref().unwrap_or(&[]);
    let mut recipe = Recipe::default();
    if capture.args {
        let receiver = has_receiver(&f.name, &f.package);
        for (i, v) in params.iter().filter(|v| !v.is_internal()).enumerate() {
            recipe
                .args
                .push(b.top(v, PSC_SEC_ENTRY, receiver && i == 0));
        }
    }
    if capture.ret {
        for v in results {
            recipe.results.push(b.top(v, PSC_SEC_RET, false));
        }
    }
    let ops = b.finish(&mut recipe);
    let (entry_stack_off, entry_stack_len) = stack_window(params.iter().map(|v| &v.location));
    let (ret_stack_off, ret_stack_len) = stack_window(results.iter().map(|v| &v.location));
    let mut wire = psc_probe {
        sample_every: capture.sample_every.max(1),
        goid_off: g.goid as u32,
        stack_hi_off: g.stack_hi as u32,
        entry_stack_off: entry_stack_off as u16,
        entry_stack_len: if capture.args {
            entry_stack_len as u16
        } else {
            0
        },
        ret_stack_off: ret_stack_off as u16,
        ret_stack_len: if capture.ret { ret_stack_len as u16 } else { 0 },
        ..Default::default()
    };
    wire.nops = ops.len() as u16;
    wire.ops[..ops.len()].copy_from_slice(&ops);
    let mut flags = PSC_F_ACTIVE;
    if capture.args || capture.ret {
        flags |= PSC_F_EVENTS;
    }
    if capture.ret || capture.latency {
        flags |= PSC_F_PAIRED;
    }
    if capture.latency {
        flags |= PSC_F_LATENCY;
    }
    if capture.stack {
        // A stack is shown with its call: it needs an event, even for latency alone.
        flags |= PSC_F_STACK | PSC_F_EVENTS;
    }
    wire.prog = [PSC_PROG_END as u8; PSC_MAX_PROG as usize];
    if let Some(c) = cond {
        flags |= PSC_F_COND;
        if c.reads_results {
            flags |= PSC_F_COND_RET | PSC_F_PAIRED;
        }
        wire.natoms = c.atoms.len() as u16;
        for (i, a) in c.atoms.iter().enumerate() {
            wire.atoms[i] = *a;
        }
        wire.prog[..c.prog.len()].copy_from_slice(&c.prog);
    }
    let by = match &capture.by {
        Some(text) => Some(
            crate::condition::compile_by(cat, f, text, wire.natoms as usize)
                .map_err(PlanError::By)?,
        ),
        None => None,
    };
    if let Some(b) = &by {
        // One histogram per value, at the return: the probe pairs and times calls.
        flags |= PSC_F_BY | PSC_F_PAIRED | PSC_F_LATENCY;
        wire.by = b.by;
        for a in &b.atoms {
            wire.atoms[wire.natoms as usize] = *a;
            wire.natoms += 1;
        }
    }
    wire.flags = flags;
    Ok(Plan {
        wire,
        recipe,
        by,
        capture: capture.clone(),
        entry_stack_off,
        ret_stack_off,
    })
}

/// The smallest stack window covering every stack-held piece.
fn stack_window<'a>(locs: impl Iterator<Item = &'a symbols::Location>) -> (u32, u32) {
    let (mut lo, mut hi) = (u32::MAX, 0);
    for l in locs {
        for p in &l.pieces {
            if let Loc::Stack(off) = p.loc {
                lo = lo.min(off);
                hi = hi.max(off + p.size);
            }
        }
    }
    if lo == u32::MAX {
        return (8, 0);
    }
    (lo, (hi - lo).min(PSC_MAX_STACK))
}

/// The parameter or result a `--capture` path starts from.
pub fn path_root(text: &str) -> &str {
    text.trim().split('.').next().unwrap_or("").trim()
}

/// Whether the function is a method, whose first parameter is its receiver:
/// `pkg.(*T).M`, `pkg.T.M`, `pkg.T[...].M`; not a closure (`pkg.F.func1`) or a
/// method value's wrapper (`pkg.T.M-fm`).
pub fn has_receiver(name: &str, package: &str) -> bool {
    let rest = name
        .strip_prefix(package)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(name);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in rest.char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            '.' if depth == 0 => {
                parts.push(&rest[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&rest[start..]);
    let closure = |p: &str| {
        p.strip_prefix("func")
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
    };
    parts.len() == 2 && !closure(parts[1]) && !parts[1].ends_with("-fm")
}

#[cfg(test)]
mod tests {
    use super::has_receiver;

    #[test]
    fn receivers_are_told_from_closures() {
        assert!(has_receiver("net/http.(*ServeMux).ServeHTTP", "net/http"));
        assert!(has_receiver("main.Shop.Price", "main"));
        assert!(has_receiver("main.List[go.shape.int].Len", "main"));
        assert!(!has_receiver("main.Login", "main"));
        assert!(!has_receiver("main.main.func1", "main"));
        assert!(!has_receiver("main.Shop.Price-fm", "main"));
        assert!(!has_receiver("main.(*Shop).Price.func2", "main"));
    }
}
