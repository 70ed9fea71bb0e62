//! Completion of names in a condition: parameters and results of the function, then
//! struct fields, followed through pointers as conditions follow them.
use symbols::{Catalog, Function, Kind, TypeId};

/// The word being typed at the end of `head` (a path like `u.Na`): (start byte, word).
pub fn current_word(head: &str) -> (usize, &str) {
    let start = head
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.')
        .last()
        .map_or(head.len(), |(i, _)| i);
    (start, &head[start..])
}

/// Full words that complete `word` (which may be empty), sorted.
pub fn candidates(cat: &Catalog, f: &Function, word: &str) -> Vec<String> {
    let (base, partial) = match word.rsplit_once('.') {
        Some((b, p)) => (Some(b), p),
        None => (None, word),
    };
    let names: Vec<String> = match base {
        None => {
            let mut v: Vec<String> = f
                .params
                .iter()
                .chain(f.results.iter())
                .flatten()
                .filter(|v| !v.is_internal())
                .map(|v| v.name.clone())
                .collect();
            v.push("startsWith".into());
            v
        }
        Some(b) => match resolve(cat, f, b) {
            Some(ty) => match &cat.types.get(ty).kind {
                Kind::Struct(fields) => fields.iter().map(|fl| fl.name.clone()).collect(),
                _ => Vec::new(),
            },
            None => Vec::new(),
        },
    };
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with(partial))
        .map(|n| match base {
            Some(b) => format!("{b}.{n}"),
            None => n,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The struct type a path leads to, through any pointers.
fn resolve(cat: &Catalog, f: &Function, path: &str) -> Option<TypeId> {
    let mut parts = path.split('.');
    let (v, _) = f.value(parts.next()?)?;
    let mut ty = deref(cat, v.ty);
    for p in parts {
        ty = deref(cat, cat.types.field(ty, p)?.ty);
    }
    Some(ty)
}

fn deref(cat: &Catalog, mut ty: TypeId) -> TypeId {
    while let Kind::Pointer(Some(t)) = cat.types.get(ty).kind {
        ty = t;
    }
    ty
}

/// The longest prefix all candidates share.
pub fn common_prefix(cands: &[String]) -> String {
    let Some(first) = cands.first() else {
        return String::new();
    };
    let mut n = first.len();
    for c in &cands[1..] {
        n = n.min(
            first
                .char_indices()
                .zip(c.chars())
                .take_while(|((_, a), b)| a == b)
                .last()
                .map_or(0, |((i, a), _)| i + a.len_utf8()),
        );
    }
    first[..n].to_string()
}
