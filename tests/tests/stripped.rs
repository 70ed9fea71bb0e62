//! Binaries without DWARF (`-ldflags='-s -w'`): what periscope reads from the function
//! table alone is checked against the DWARF of the same program built with it, and
//! against what the fixture itself says it did.
use periscope_tests::{FixtureProc, Variant, fixture, toolchains};
use symbols::{Catalog, Loc};

/// Every argument word the stripped binary shows is where DWARF says that part of
/// the argument is: the same registers in the same order (integers and floats), stack
/// words inside the argument's stack slot, and all of them in parameter order. (DWARF
/// omits blank parameters, so its words are ours in order, less those.) On the
/// fixtures with each toolchain, and on cmd/pprof, whose big frames put register
/// arguments' slots past what Go's layout records.
#[test]
fn raw_words_sit_where_dwarf_puts_the_arguments() {
    for tc in toolchains() {
        for name in ["kinds", "sites", "values"] {
            let plain = Catalog::open(&fixture(name, &tc, Variant::Plain)).unwrap();
            let stripped = Catalog::open(&fixture(name, &tc, Variant::Stripped)).unwrap();
            compare(&plain, &stripped, &format!("{} {name}", tc.label));
        }
    }
    let plain = Catalog::open(&periscope_tests::pprof_variant(Variant::Plain)).unwrap();
    let stripped = Catalog::open(&periscope_tests::pprof_variant(Variant::Stripped)).unwrap();
    compare(&plain, &stripped, "cmd/pprof");
}

fn compare(plain: &Catalog, stripped: &Catalog, label: &str) {
    let (mut checked, mut words, mut dwarf_regs, mut found) = (0, 0, 0, 0);
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
        // A generic function's dictionary (`.dict`, RAX) is left out of Go's layout
        // but saved with the arguments: it is a word of ours too.
        let dwarf: Vec<(Loc, u32)> = full
            .iter()
            .flat_map(|v| v.location.pieces.iter().map(|p| (p.loc, p.size)))
            .collect();
        // Each located word falls in a DWARF piece (its register, or inside its stack
        // slot), and those pieces come in DWARF's order: parameter order.
        let (mut at, mut found_here) = (0, 0);
        for v in raw {
            let Some(p) = v.location.pieces.first() else {
                continue;
            };
            let fits = |(l, s): &(Loc, u32)| match (l, p.loc) {
                (Loc::Stack(o), Loc::Stack(w)) => *o <= w && w + p.size <= o + s,
                (l, w) => *l == w && *s == p.size,
            };
            match dwarf.iter().skip(at).position(fits) {
                Some(j) => {
                    at += j;
                    found_here += usize::from(!matches!(p.loc, Loc::Stack(_)));
                }
                // A blank parameter's word, which DWARF does not list.
                None => assert!(
                    dwarf.iter().position(fits).is_none(),
                    "{label} {}: {} out of parameter order: {raw:?}\nvs DWARF {dwarf:?}",
                    f.name,
                    v.name
                ),
            }
        }
        // How many of DWARF's register words a complete list shows (an argument the
        // function never uses is not located).
        if stripped.raw_words(f).unwrap().1 {
            found += found_here;
            dwarf_regs += dwarf
                .iter()
                .filter(|(l, _)| !matches!(l, Loc::Stack(_)))
                .count();
        }
        checked += 1;
        words += raw.len();
    }
    assert!(
        checked > 100,
        "{label}: only {checked} functions with raw words"
    );
    eprintln!(
        "{label}: {checked} functions, {words} words; {found} of DWARF's {dwarf_regs} register words (complete lists)"
    );
    assert!(
        found * 100 >= dwarf_regs * 95,
        "{label}: only {found} of {dwarf_regs} register words shown"
    );
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

/// A stripped build of the kinds fixture, on every toolchain: each `main.Sleep` call
/// (one goroutine each) is seen once with its duration as raw word `a0`, its own
/// goroutine id and a latency between the sleep asked for and what the fixture
/// measured; a condition on `a0` keeps exactly the long sleeps.
#[test]
fn stripped_targets_give_latency_goroutines_and_raw_words() {
    for tc in toolchains() {
        let bin = fixture("kinds", &tc, Variant::Stripped);
        let mut fx = FixtureProc::start(&bin);
        let (got, record) = periscope_tests::trace_calls(
            &mut fx,
            &["--json", "--args", "--latency", "main.Sleep"],
            "sleep",
        );
        let truth: Vec<&serde_json::Value> = record
            .iter()
            .filter(|r| r["func"] == "main.Sleep")
            .collect();
        assert_eq!(got.len(), truth.len(), "{}: {got:?}", tc.label);
        for (g, t) in got.iter().zip(&truth) {
            let what = format!("{}: {g} vs {t}", tc.label);
            assert!(t["goid"].as_i64().is_some_and(|id| id > 1), "{what}");
            assert_eq!(g["args"]["a0"], t["args"]["d"], "{what}");
            assert_eq!(g["goid"], t["goid"], "{what}");
            let lat = g["latency_ns"].as_i64().unwrap();
            let (d, elapsed) = (
                t["args"]["d"].as_i64().unwrap(),
                t["elapsed_ns"].as_i64().unwrap(),
            );
            assert!(d <= lat && lat <= elapsed, "{what}");
        }
        // A condition on a raw word, decided in the kernel.
        let (got, _) = periscope_tests::trace_calls(
            &mut fx,
            &["--json", "--args", "main.Sleep if a0 > 10000000"],
            "sleep",
        );
        let long: Vec<i64> = got
            .iter()
            .map(|g| g["args"]["a0"].as_i64().unwrap())
            .collect();
        assert_eq!(long, vec![20_000_000; 10], "{}", tc.label);
        // Results need DWARF: said, and the rest still works.
        let out = std::process::Command::new(periscope_tests::periscope())
            .args(["trace", "--pid", &fx.pid.to_string(), "--ret", "main.Sleep"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("results need DWARF"), "{err}");
        fx.run("quit");
    }
}

/// Debian's fzf (Go 1.19, stripped): a latency probe on its fuzzy matcher while it
/// filters 200,000 lines. Its output is byte for byte what it prints unprobed, and
/// the probe timed its calls.
#[test]
fn fzf_stripped_latency_of_its_matcher_output_unchanged() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let fzf = std::path::Path::new("/usr/bin/fzf");
    assert!(fzf.exists(), "fzf is missing: run `make setup`");
    let mut input = String::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        input += &format!("{i:06} {:016x} src/pkg{}/file{}.go\n", x, x % 97, x % 13);
    }
    let filter = |probe: bool| -> (Vec<u8>, String) {
        let mut child = Command::new(fzf)
            .args(["--filter", "pkg4file"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut trace = None;
        if probe {
            let (t, err) = periscope_tests::spawn_trace(
                child.id(),
                &[
                    "--json",
                    "--latency",
                    "--budget",
                    "off",
                    "algo.FuzzyMatchV2",
                ],
            );
            trace = Some((t, err));
        }
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let said = trace
            .map(|(t, _)| {
                // fzf has exited: periscope says so and prints its summary.
                let o = t.wait_with_output().unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                String::from_utf8_lossy(&o.stdout).into_owned()
            })
            .unwrap_or_default();
        (out.stdout, said)
    };
    let (plain, _) = filter(false);
    let (probed, said) = filter(true);
    assert!(plain.len() > 1000, "fzf matched too little");
    assert!(
        plain == probed,
        "fzf printed something else under the probe"
    );
    let latency: serde_json::Value = said
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "latency")
        .unwrap_or_else(|| panic!("no latency summary: {said}"));
    assert!(latency["count"].as_u64().unwrap() > 1000, "{latency}");
    // Most of fzf's calls reject a line within a few hundred ns, near the probe's own
    // floor: on a busy machine half of them may be below it (counted, not made up),
    // so the slow end is what proves that calls were timed.
    assert!(
        latency["below_floor"].as_u64().unwrap() < latency["count"].as_u64().unwrap(),
        "{latency}"
    );
    assert!(latency["p99_ns"].as_u64().unwrap() > 0, "{latency}");
}
