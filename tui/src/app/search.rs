//! The function list's filter: the user's own code first, fuzzy search with nucleo.
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};
use symbols::{Catalog, Function};

/// The program's own code: `main`, the main module's packages (from the build
/// information: `cmd/compile/internal/…` in Go's compiler), and packages under a
/// domain-like module path (`github.com/…`), vendored ones too
/// (`cmd/vendor/github.com/google/pprof/…`). The Go runtime, the standard library and
/// compiler-generated functions (`type:.eq…`) are hidden unless asked for.
pub fn is_user(cat: &Catalog, f: &Function) -> bool {
    cat.main_module
        .as_deref()
        .is_some_and(|m| symbols::buildinfo::in_module(&f.package, m))
        || is_user_package(&f.package)
}

fn is_user_package(pkg: &str) -> bool {
    let domain = |e: &str| e.contains('.') && !e.ends_with(':');
    let mut parts = pkg.split('/');
    pkg == "main"
        || pkg.starts_with("main/")
        || parts.next().is_some_and(domain)
        || parts
            .skip_while(|&e| e != "vendor")
            .nth(1)
            .is_some_and(domain)
}

/// Indices of the functions to list: all when the query is empty (sorted by name),
/// otherwise the fuzzy matches, best first.
pub fn filter(cat: &Catalog, query: &str, show_std: bool) -> Vec<usize> {
    let mut names: Vec<(usize, &str)> = cat
        .functions
        .iter()
        .enumerate()
        .filter(|(_, f)| show_std || is_user(cat, f))
        .map(|(i, f)| (i, f.name.as_str()))
        .collect();
    names.sort_by(|a, b| a.1.cmp(b.1));
    if query.trim().is_empty() {
        return names.into_iter().map(|(i, _)| i).collect();
    }
    let pattern = Pattern::parse(query, CaseMatching::Smart, Normalization::Smart);
    let mut matcher = Matcher::new(Config::DEFAULT);
    let (mut buf, mut own_buf) = (Vec::new(), Vec::new());
    // A match in the function's own name (`driver.(*webInterface).render`) ranks above
    // one spread over its package path: in a large program, "render" matches every
    // function of a package whose path holds r-e-n-d-e-r.
    let mut scored: Vec<(bool, u32, usize)> = names
        .into_iter()
        .filter_map(|(i, name)| {
            let full = pattern.score(Utf32Str::new(name, &mut buf), &mut matcher)?;
            let own = pattern.score(
                Utf32Str::new(symbols::catalog::short_name(name), &mut own_buf),
                &mut matcher,
            );
            Some((own.is_some(), own.unwrap_or(full), i))
        })
        .collect();
    // Stable: equal ranks stay in name order.
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    scored.into_iter().map(|(_, _, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use symbols::catalog::short_name as own_name;

    #[test]
    fn own_name_keeps_the_last_package_element_and_the_function() {
        let long = "cmd/vendor/github.com/google/pprof/internal/driver.(*webInterface).render";
        assert_eq!(own_name(long), "driver.(*webInterface).render");
        assert_eq!(own_name("main.Login"), "main.Login");
        assert_eq!(
            own_name("net/http.(*ServeMux).ServeHTTP"),
            "http.(*ServeMux).ServeHTTP"
        );
        assert_eq!(own_name("a/b.c/d.F"), "d.F");
    }

    #[test]
    fn vendored_modules_are_own_code_the_standard_library_is_not() {
        use super::is_user_package as own;
        assert!(own("main"));
        assert!(own("github.com/acme/shop/store"));
        assert!(own("cmd/vendor/github.com/google/pprof/internal/driver"));
        assert!(!own("net/http"));
        // The standard library's own vendored copies stay with it.
        assert!(!own("vendor/golang.org/x/net/http2/hpack"));
    }
}
