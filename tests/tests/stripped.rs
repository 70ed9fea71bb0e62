//! Binaries without DWARF (`-ldflags='-s -w'`): what periscope reads from the function
//! table alone is checked against the DWARF of the same program built with it, and
//! against what the fixture itself says it did.
use periscope_tests::{Variant, fixture, toolchains};
use symbols::{Catalog, Loc};

/// Every argument word the stripped binary shows is where DWARF says that part of
/// the argument is: the same registers in the same order (integers and floats), and
/// stack words inside the argument's stack slot. (DWARF omits blank parameters, so
/// its words are ours in order, less those.)
#[test]
fn raw_words_sit_where_dwarf_puts_the_arguments() {
    for tc in toolchains() {
        for name in ["kinds", "sites", "values"] {
            let plain = Catalog::open(&fixture(name, &tc, Variant::Plain)).unwrap();
            let stripped = Catalog::open(&fixture(name, &tc, Variant::Stripped)).unwrap();
            let (mut checked, mut words) = (0, 0);
            for f in stripped.functions.iter() {
                let Some(raw) = &f.params else { continue };
                // Assembly (ABI0) has no DWARF parameters to compare with.
                let Some(full) = plain
                    .function(&f.name)
                    .filter(|p| !p.abi0)
                    .and_then(|p| p.params.as_ref())
                else {
                    continue;
                };
                let dwarf: Vec<(Loc, u32)> = full
                    .iter()
                    .flat_map(|v| v.location.pieces.iter().map(|p| (p.loc, p.size)))
                    .collect();
                let ours: Vec<(Loc, u32)> = raw
                    .iter()
                    .flat_map(|v| v.location.pieces.iter().map(|p| (p.loc, p.size)))
                    .collect();
                // A generic function's dictionary is not an argument in tracebacks.
                let dwarf_regs: Vec<(Loc, u32)> = dwarf
                    .iter()
                    .copied()
                    .filter(|(l, _)| !matches!(l, Loc::Stack(_)))
                    .skip(usize::from(full.first().is_some_and(|p| p.is_internal())))
                    .collect();
                // DWARF leaves out blank parameters (`func(arg any, _ uintptr)`), which
                // tracebacks keep: its pieces are ours, in order, less those. A word
                // the function never saves is not located (None): it stands for any.
                let ours_regs: Vec<Option<(Loc, u32)>> = raw
                    .iter()
                    .filter_map(|v| match v.location.pieces.first() {
                        None => Some(None),
                        Some(p) if matches!(p.loc, Loc::Stack(_)) => None,
                        Some(p) => Some(Some((p.loc, p.size))),
                    })
                    .collect();
                // Go's layout stops after ten components: then ours are DWARF's first
                // ones, in order.
                let (_, complete) = stripped.raw_words(f).unwrap();
                let ok = if complete {
                    let mut it = ours_regs.iter();
                    dwarf_regs
                        .iter()
                        .all(|d| it.any(|o| o.is_none_or(|o| o == *d)))
                } else {
                    let mut it = dwarf_regs.iter();
                    ours_regs.iter().flatten().all(|o| it.any(|d| o == d))
                };
                assert!(
                    ok,
                    "{} {}: {ours_regs:?}\nvs DWARF {dwarf_regs:?}",
                    tc.label, f.name
                );
                for (loc, size) in &ours {
                    if let Loc::Stack(off) = loc {
                        assert!(
                            dwarf.iter().any(|(l, s)| matches!(l, Loc::Stack(o)
                                if *o <= *off && off + size <= o + s)),
                            "{} {}: word at [SP+{off}] is in no argument's slot: {full:?}",
                            tc.label,
                            f.name
                        );
                    }
                }
                checked += 1;
                words += raw.len();
            }
            assert!(
                checked > 100,
                "{} {name}: only {checked} functions with raw words",
                tc.label
            );
            eprintln!("{} {name}: {checked} functions, {words} words", tc.label);
        }
    }
}

/// Without DWARF the goroutine fields come from the table of Go versions: it agrees
/// with the DWARF of every installed toolchain.
#[test]
fn the_goroutine_layout_table_agrees_with_dwarf() {
    for tc in toolchains() {
        let plain = Catalog::open(&fixture("kinds", &tc, Variant::Plain)).unwrap();
        let stripped = Catalog::open(&fixture("kinds", &tc, Variant::Stripped)).unwrap();
        assert!(!stripped.has_dwarf);
        assert_eq!(stripped.g_offsets, plain.g_offsets, "{}", tc.label);
        assert_eq!(
            symbols::stripped::g_offsets(&plain.go_version),
            plain.g_offsets,
            "{}",
            tc.label
        );
    }
}
