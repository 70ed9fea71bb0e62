//! What Tab completes in the shell: commands first, then function names (the
//! program's own before the standard library's), options of `trace`, parameter and
//! field names after `if`, and probe numbers after `untrace`.
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

/// Function names starting with `prefix`: the program's own first, at most 200.
fn functions(cat: &Catalog, prefix: &str) -> Vec<String> {
    let (mut own, mut rest): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for f in cat.functions.iter().filter(|f| f.name.starts_with(prefix)) {
        if search::is_user(f) {
            own.push(f.name.clone());
        } else {
            rest.push(f.name.clone());
        }
    }
    own.sort();
    rest.sort();
    own.extend(rest);
    own.truncate(200);
    own
}
