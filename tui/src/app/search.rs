//! The function list's filter: the user's own code first, fuzzy search with nucleo.
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher};
use symbols::{Catalog, Function};

/// The program's own code: `main` and packages under a domain-like module path
/// (`github.com/…`). The Go runtime, the standard library and compiler-generated
/// functions (`type:.eq…`) are hidden unless asked for.
pub fn is_user(f: &Function) -> bool {
    let pkg = f.package.as_str();
    pkg == "main"
        || pkg.starts_with("main/")
        || pkg
            .split('/')
            .next()
            .is_some_and(|first| first.contains('.') && !first.ends_with(':'))
}

/// Indices of the functions to list: all when the query is empty (sorted by name),
/// otherwise the fuzzy matches, best first.
pub fn filter(cat: &Catalog, query: &str, show_std: bool) -> Vec<usize> {
    let mut names: Vec<(usize, &str)> = cat
        .functions
        .iter()
        .enumerate()
        .filter(|(_, f)| show_std || is_user(f))
        .map(|(i, f)| (i, f.name.as_str()))
        .collect();
    names.sort_by(|a, b| a.1.cmp(b.1));
    if query.trim().is_empty() {
        return names.into_iter().map(|(i, _)| i).collect();
    }
    let pattern = Pattern::parse(query, CaseMatching::Smart, Normalization::Smart);
    let mut matcher = Matcher::new(Config::DEFAULT);
    // match_list sorts stably by score, so equal scores stay in name order.
    pattern
        .match_list(names.into_iter().map(Named), &mut matcher)
        .into_iter()
        .map(|(n, _)| n.0.0)
        .collect()
}

struct Named<'a>((usize, &'a str));

impl AsRef<str> for Named<'_> {
    fn as_ref(&self) -> &str {
        self.0.1
    }
}
