//! What Tab completes in the shell: commands first, then function names (the
//! program's own before the standard library's), options of `trace`, parameter and
//! field names after `if`, and probe numbers after `untrace`.
use std::collections::HashMap;

use symbols::Catalog;

use crate::app::{complete, search};
use crate::command::COMMANDS;

/// Candidates for the text before the cursor, and the byte where they start.
pub fn complete(cat: &Catalog, probes: &[usize], head: &str) -> (usize, Vec<String>) {
    let Some((cmd, args)) = head.split_once(' ') else {
        let cands = COMMANDS
            .iter()
            .filter(|(c, _)| c.starts_with(head))
            .map(|(c, _)| format!("{c} "))
            .collect();
        return (0, cands);
    };
    let start = cmd.len() + 1;
    match cmd {
        "trace" => {
            if let Some(i) = head.find(" if ") {
                let func = head[start..i].split_whitespace().next().unwrap_or("");
                let Ok(idx) = crate::session::find_function(cat, func) else {
                    return (head.len(), vec![]);
                };
                let (w_start, word) = complete::current_word(head);
                return (
                    w_start,
                    complete::candidates(cat, &cat.functions[idx], word),
                );
            }
            if args.contains(' ') {
                let last = head.rsplit(' ').next().unwrap_or("");
                let cands = ["--args", "--ret", "--latency", "--sample", "if"]
                    .iter()
                    .filter(|o| o.starts_with(last))
                    .map(|o| format!("{o} "))
                    .collect();
                return (head.len() - last.len(), cands);
            }
            (start, functions(cat, args))
        }
        "hist" => (start, functions(cat, args)),
        "untrace" => {
            let cands = probes
                .iter()
                .map(|n| n.to_string())
                .chain(["all".to_string()])
                .filter(|n| n.starts_with(args))
                .collect();
            (start, cands)
        }
        _ => (head.len(), vec![]),
    }
}

/// Function names starting with `prefix`: the program's own first, at most 200. A
/// prefix of a short name (`http.(*Server).Se`, the package path left out, as `trace`
/// accepts it) completes to the short name where only one function has it, else to
/// the full names.
fn functions(cat: &Catalog, prefix: &str) -> Vec<String> {
    use symbols::catalog::short_name;
    let mut shorts: HashMap<&str, usize> = HashMap::new();
    for f in &cat.functions {
        let short = short_name(&f.name);
        if short != f.name && short.starts_with(prefix) {
            *shorts.entry(short).or_default() += 1;
        }
    }
    let (mut own, mut rest): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for f in &cat.functions {
        let short = short_name(&f.name);
        let name = if f.name.starts_with(prefix) {
            f.name.as_str()
        } else if shorts.get(short) == Some(&1) {
            short
        } else if shorts.contains_key(short) {
            f.name.as_str()
        } else {
            continue;
        };
        if search::is_user(cat, f) {
            own.push(name.to_string());
        } else {
            rest.push(name.to_string());
        }
    }
    own.sort();
    own.dedup();
    rest.sort();
    rest.dedup();
    own.extend(rest);
    own.truncate(200);
    own
}
