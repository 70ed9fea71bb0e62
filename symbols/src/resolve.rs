//! What a function name given by a user means. One name can mean several functions: Go
//! 1.21+ emits a closure once per caller it is inlined into (8 copies of
//! `traceviewer.SVGProfileHandlerFunc.func1` in cmd/trace), and a generic function has
//! one body per shape (`main.Max[go.shape.int]`, `main.Max[go.shape.string]`). A probe
//! on the name covers them all; `NAME@0xADDR` or `NAME@file.go:LINE` picks one.
use crate::Catalog;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No function has this name (the caller suggests close ones).
    #[error("unknown function {0}")]
    Unknown(String),
    #[error("`{pick}` after @ is neither an address (0x4a1b20) nor file.go:LINE")]
    BadPick { pick: String },
    #[error("no function {name} at {pick}: it is at {}", .candidates.join(", "))]
    NoneAt {
        name: String,
        pick: String,
        candidates: Vec<String>,
    },
    /// A name without its package path that ends more than one function's.
    #[error("{name} names functions in {} packages: give the full name ({})", .full.len(), .full.join(", "))]
    ShortAmbiguous { name: String, full: Vec<String> },
    #[error("{name}@{pick} means {} functions: pick one with {name}@ADDRESS ({})", .candidates.len(), .candidates.join(", "))]
    Ambiguous {
        name: String,
        pick: String,
        candidates: Vec<String>,
    },
}

/// Every function `name` means, those with code of their own first (the first is the
/// probe's name in tables). Empty when none.
pub fn group(cat: &Catalog, name: &str) -> Vec<usize> {
    let mut all = named(cat, name);
    if all.is_empty() {
        // The short name tables show (`driver.(*webInterface).render` for
        // `cmd/vendor/github.com/google/pprof/internal/driver.(*webInterface).render`)
        // means the one full name that ends with it after a `/`.
        let full = short_matches(cat, name);
        if let [one] = full.as_slice() {
            all = named(cat, one);
        }
    }
    // Copies without code (inlined everywhere) cannot be probed; keep one if that is
    // all there is, so that the error says why.
    let with_code: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| cat.functions[i].probeable())
        .collect();
    if with_code.is_empty() {
        all.truncate(1);
        all
    } else {
        with_code
    }
}

/// Functions named exactly `name`, or else every instantiation of a generic function
/// by its plain name.
fn named(cat: &Catalog, name: &str) -> Vec<usize> {
    let all: Vec<usize> = (0..cat.functions.len())
        .filter(|&i| cat.functions[i].name == name)
        .collect();
    if !all.is_empty() {
        return all;
    }
    let prefix = format!("{name}[");
    (0..cat.functions.len())
        .filter(|&i| cat.functions[i].name.starts_with(&prefix))
        .collect()
}

/// The distinct full names (generic ones by their plain name) that end in `/name`.
fn short_matches(cat: &Catalog, name: &str) -> Vec<String> {
    if name.is_empty() || name.starts_with('/') {
        return vec![];
    }
    let tail = format!("/{name}");
    let mut full: Vec<String> = cat
        .functions
        .iter()
        .filter_map(|f| {
            let plain = match f.name.find('[') {
                Some(i) if f.name.ends_with(']') && !f.name.ends_with(&tail) => &f.name[..i],
                _ => &f.name,
            };
            plain.ends_with(&tail).then(|| plain.to_string())
        })
        .collect();
    full.sort();
    full.dedup();
    full
}

/// The functions a user's `NAME`, `NAME@0xADDR` or `NAME@file.go:LINE` means.
pub fn resolve(cat: &Catalog, spec: &str) -> Result<Vec<usize>, ResolveError> {
    let (name, pick) = match spec.rsplit_once('@') {
        Some((n, p)) => (n.trim(), Some(p.trim())),
        None => (spec.trim(), None),
    };
    let members = group(cat, name);
    if members.is_empty() {
        let full = short_matches(cat, name);
        if full.len() > 1 {
            return Err(ResolveError::ShortAmbiguous {
                name: name.to_string(),
                full,
            });
        }
        return Err(ResolveError::Unknown(name.to_string()));
    }
    let Some(pick) = pick else {
        return Ok(members);
    };
    let matches: Vec<usize> = if let Some(hex) = pick.strip_prefix("0x") {
        let addr = u64::from_str_radix(hex, 16).map_err(|_| ResolveError::BadPick {
            pick: pick.to_string(),
        })?;
        members
            .iter()
            .copied()
            .filter(|&i| cat.functions[i].entry == addr)
            .collect()
    } else {
        let (file, line) = pick
            .rsplit_once(':')
            .and_then(|(f, l)| Some((f, l.parse::<u32>().ok()?)))
            .ok_or_else(|| ResolveError::BadPick {
                pick: pick.to_string(),
            })?;
        members
            .iter()
            .copied()
            .filter(|&i| {
                let f = &cat.functions[i];
                f.line == Some(line)
                    && f.file
                        .as_deref()
                        .is_some_and(|p| p == file || p.ends_with(&format!("/{file}")))
            })
            .collect()
    };
    let candidates = |of: &[usize]| -> Vec<String> {
        of.iter()
            .map(|&i| {
                let f = &cat.functions[i];
                format!("{:#x} ({})", f.entry, f.location())
            })
            .collect()
    };
    match matches.len() {
        0 => Err(ResolveError::NoneAt {
            name: name.to_string(),
            pick: pick.to_string(),
            candidates: candidates(&members),
        }),
        1 => Ok(matches),
        _ => Err(ResolveError::Ambiguous {
            name: name.to_string(),
            pick: pick.to_string(),
            candidates: candidates(&matches),
        }),
    }
}

/// What a probe over the functions `names` is called in summaries: their name, or for
/// a generic function's bodies, the shapes they cover (`main.Max[int|string]`,
/// `main.List[int|string].Len`): one shape's name would say the others were not seen.
pub fn label(names: &[&str]) -> String {
    let first = names.first().copied().unwrap_or_default();
    let split = |n: &str| -> Option<(String, String, String)> {
        let i = n.find("[go.shape.")?;
        let mut depth = 0;
        let end = n[i..].char_indices().find_map(|(k, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i + k)
        })?;
        // Each type argument's shape without its prefix, nor the parameter index Go
        // 1.19 adds (`go.shape.int_0`).
        let shapes: Vec<&str> = n[i + 1..end]
            .split(',')
            .map(|a| {
                let a = a.trim().trim_start_matches("go.shape.");
                match a.rsplit_once('_') {
                    Some((t, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => t,
                    _ => a,
                }
            })
            .collect();
        Some((
            n[..i].to_string(),
            shapes.join(","),
            n[end + 1..].to_string(),
        ))
    };
    let Some((head, _, tail)) = split(first) else {
        return first.to_string();
    };
    let mut shapes: Vec<String> = Vec::new();
    for n in names {
        match split(n) {
            Some((h, s, t)) if h == head && t == tail => {
                if !shapes.contains(&s) {
                    shapes.push(s);
                }
            }
            _ => return first.to_string(),
        }
    }
    if shapes.len() < 2 {
        return first.to_string();
    }
    format!("{head}[{}]{tail}", shapes.join("|"))
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn a_generics_bodies_are_labelled_with_every_shape() {
        assert_eq!(
            label(&["main.Max[go.shape.int]", "main.Max[go.shape.string]"]),
            "main.Max[int|string]"
        );
        assert_eq!(
            label(&[
                "main.List[go.shape.int].Len",
                "main.List[go.shape.[]uint8].Len"
            ]),
            "main.List[int|[]uint8].Len"
        );
        // One shape (copies of one body), or other functions: the name as it is.
        assert_eq!(
            label(&["main.Max[go.shape.int]", "main.Max[go.shape.int]"]),
            "main.Max[go.shape.int]"
        );
        assert_eq!(label(&["main.f.func1", "main.f.func1"]), "main.f.func1");
        // Go 1.19 numbers each shape by its type parameter.
        assert_eq!(
            label(&["main.Max[go.shape.int_0]", "main.Max[go.shape.string_0]"]),
            "main.Max[int|string]"
        );
        assert_eq!(
            label(&[
                "main.Pair[go.shape.int_0,go.shape.string_1]",
                "main.Pair[go.shape.string_0,go.shape.int_1]"
            ]),
            "main.Pair[int,string|string,int]"
        );
    }
}
