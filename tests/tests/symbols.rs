//! The Go binary reader, on every fixture built by every toolchain.
use std::collections::HashMap;
use std::process::Command;

use periscope_tests::{Toolchain, Variant, fixture, periscope, toolchains};
use symbols::probe_points::EntryKind;
use symbols::{Catalog, Loc};

/// Exact signatures of the fixture's functions (generic instantiations by prefix).
const SIGNATURES: &[&str] = &[
    "main.Ints(a int8, b int16, c int32, d int64, e uint8, f uint16, g uint32, h uint64, i int, j uint) int64",
    "main.Flag(strict bool, s string) bool",
    "main.Floats(f32 float32, f64 float64, n int) float64",
    "main.Bytes(b []uint8) int",
    "main.Strings(ss []string) int",
    "main.Array(a [3]int) int",
    "main.MapLen(m map[string]int) int",
    "main.SetInfo(u *main.User, address string) error",
    "main.Move(p main.Point, dx int) main.Point",
    "main.Sum(b main.Big) int",
    "main.Pack(s main.Small) main.Small",
    "main.Describe(v interface {}) string",
    "main.Divide(a int, b int) (q int, r int, err error)",
    "main.Login(username string, attempts int) (bool, error)",
    "main.Point.Norm1(p main.Point) int",
    "main.(*Store).Put(s *main.Store, key string, val int) bool",
    "main.Total(prefix string, nums []int) int",
    "main.Many(a1 int, a2 int, a3 int, a4 int, a5 int, a6 int, a7 int, a8 int, a9 int, a10 int, a11 int) int",
    "main.Sleep(d time.Duration)",
    "main.Recurse(n int) int",
];

fn catalog(tc: &Toolchain, v: Variant) -> Catalog {
    Catalog::open(&fixture("kinds", tc, v)).unwrap()
}

#[test]
fn every_fixture_function_has_its_exact_signature() {
    for tc in toolchains() {
        for v in [Variant::Plain, Variant::Pie] {
            let cat = catalog(&tc, v);
            assert!(
                cat.go_version.starts_with(&tc.label),
                "{} vs {}",
                cat.go_version,
                tc.label
            );
            let sigs: Vec<String> = cat.functions.iter().map(|f| f.signature()).collect();
            for want in SIGNATURES {
                assert!(
                    sigs.iter().any(|s| s == want),
                    "{} {v:?}: missing {want}",
                    tc.label
                );
            }
            let max = cat
                .functions
                .iter()
                .find(|f| f.name.starts_with("main.Max["))
                .expect("generic");
            assert!(
                max.signature()
                    .ends_with("(a go.shape.int, b go.shape.int) go.shape.int")
                    || tc.label == "go1.19"
            );
            // Hidden dictionary argument first, in RAX; a and b follow.
            let p = max.params.as_ref().unwrap();
            assert_eq!(p[0].name, ".dict");
            assert_eq!(p[1].location.pieces[0].loc, Loc::Reg(1));
            // Lines as the fixture's source has them; an inlined-only function's from
            // its abstract origin and inlined copies.
            let src = std::fs::read_to_string(
                periscope_tests::repo_root().join("tests/fixtures/kinds/main.go"),
            )
            .unwrap();
            let line_of =
                |decl: &str| 1 + src.lines().position(|l| l.starts_with(decl)).unwrap() as u32;
            let inc = cat.function("main.inc").expect("inlined function listed");
            assert!(inc.inlined_only && !inc.probeable());
            if tc.label != "go1.19" {
                // Go 1.19 gives abstract functions no line at all.
                assert_eq!(inc.location(), format!("main.go:{}", line_of("func inc(")));
            }
            let login = cat.function("main.Login").unwrap();
            assert_eq!(
                login.location(),
                format!("main.go:{}", line_of("func Login("))
            );
            assert!(login.file.as_deref().unwrap().ends_with("kinds/main.go"));
        }
    }
}

#[test]
fn locations_follow_the_register_abi() {
    let tc = periscope_tests::newest();
    let cat = catalog(&tc, Variant::Plain);
    let f = |n: &str| cat.function(n).unwrap();
    let regs = |v: &symbols::Value| v.location.describe();
    let ints = f("main.Ints");
    let p = ints.params.as_ref().unwrap();
    assert_eq!(regs(&p[0]), "RAX");
    assert_eq!(regs(&p[8]), "R11");
    assert_eq!(regs(&p[9]), "[SP+8]"); // the tenth integer spills
    let many = f("main.Many").params.clone().unwrap();
    assert_eq!(regs(&many[9]), "[SP+8]");
    assert_eq!(regs(&many[10]), "[SP+16]");
    let sum = f("main.Sum").params.clone().unwrap();
    assert_eq!(regs(&sum[0]), "[SP+8]"); // 10 words: whole struct on the stack
    let floats = f("main.Floats").params.clone().unwrap();
    assert_eq!(regs(&floats[0]), "X0");
    assert_eq!(regs(&floats[2]), "RAX");
    let divide = f("main.Divide").results.clone().unwrap();
    assert_eq!(
        divide.iter().map(regs).collect::<Vec<_>>(),
        ["RAX", "RBX", "RCX,RDI"]
    );
    let set = f("main.SetInfo").params.clone().unwrap();
    assert_eq!(regs(&set[1]), "RBX,RCX");
}

/// DWARF register numbers (System V psABI) of the integer argument registers.
fn dwarf_reg(loc: Loc) -> Option<u16> {
    match loc {
        Loc::Reg(i) => Some([0, 3, 2, 5, 4, 8, 9, 10, 11][i as usize]),
        Loc::Xmm(x) => Some(17 + u16::from(x)),
        Loc::Stack(_) => None,
    }
}

#[test]
fn locations_agree_with_go_dwarf_location_lists() {
    for tc in toolchains() {
        let cat = catalog(&tc, Variant::Plain);
        let (mut checked, mut mismatches) = (0, Vec::new());
        for f in &cat.functions {
            for v in f.params.iter().flatten() {
                let Some(dw) = &v.dwarf_entry else { continue };
                // Compare the pieces DWARF places in registers at the entry address.
                let ours: Vec<Option<u16>> =
                    v.location.pieces.iter().map(|p| dwarf_reg(p.loc)).collect();
                if dw.iter().all(|(r, _)| r.is_none()) || ours.iter().all(|r| r.is_none()) {
                    continue;
                }
                if dw.len() != ours.len() && !(dw.len() == 1 && dw[0].1 == 0) {
                    continue; // DWARF describes only part of the value
                }
                checked += 1;
                // Go 1.19 to 1.27 emit two wrong location lists that their own code
                // contradicts (checked with `go tool objdump`): findScavengeCandidate
                // reads `max` from RDI, and utf8.Valid's slice cap is in RCX, not a
                // second RBX.
                if matches!(
                    (f.name.as_str(), v.name.as_str()),
                    ("runtime.(*pallocData).findScavengeCandidate", "max")
                        | ("unicode/utf8.Valid", "p")
                ) {
                    continue;
                }
                let agree = dw
                    .iter()
                    .zip(&ours)
                    .all(|((d, _), o)| d.is_none() || d == o);
                if !agree {
                    mismatches.push(format!(
                        "{} {}: dwarf {:?} ours {}",
                        f.name,
                        v.name,
                        dw,
                        v.location.describe()
                    ));
                }
            }
        }
        assert!(
            checked > 200,
            "{}: only {checked} parameters had DWARF locations",
            tc.label
        );
        assert!(
            mismatches.is_empty(),
            "{}: {} of {checked} disagree:\n{}",
            tc.label,
            mismatches.len(),
            mismatches[..mismatches.len().min(20)].join("\n")
        );
    }
}

#[test]
fn probe_points_are_instruction_boundaries_inside_the_function() {
    for tc in toolchains() {
        for v in [Variant::Plain, Variant::Pie] {
            let cat = catalog(&tc, v);
            let mut kinds: HashMap<&str, EntryKind> = HashMap::new();
            for f in cat.functions.iter().filter(|f| f.probeable()) {
                let p = f.probes.as_ref().unwrap();
                let code = cat
                    .elf
                    .bytes_at(f.entry, (f.end - f.entry) as usize)
                    .unwrap();
                let mut dec = iced_x86_boundaries(code, f.entry);
                dec.sort();
                assert!(
                    dec.binary_search(&p.entry).is_ok(),
                    "{} entry {:#x}",
                    f.name,
                    p.entry
                );
                for r in &p.returns {
                    assert!(dec.binary_search(r).is_ok(), "{} ret {r:#x}", f.name);
                }
                if f.name.starts_with("main.") {
                    kinds.insert(Box::leak(f.name.clone().into_boxed_str()), p.entry_kind);
                }
            }
            // SetInfo has a frame and so a stack check: the entry is the emulated
            // push on Go ≥ 1.21 and the check's branch on 1.19.
            let want = if tc.label == "go1.19" {
                EntryKind::StackCheckBranch
            } else {
                EntryKind::PushAfterCheck
            };
            assert_eq!(kinds["main.SetInfo"], want, "{}", tc.label);
            assert!(
                !cat.function("main.Login")
                    .unwrap()
                    .probes
                    .as_ref()
                    .unwrap()
                    .returns
                    .is_empty()
            );
        }
    }
}

fn iced_x86_boundaries(code: &[u8], ip: u64) -> Vec<u64> {
    // An independent walk: every decoded instruction start.
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < code.len() {
        out.push(ip + off as u64);
        let len = insn_len(&code[off..]);
        if len == 0 {
            break;
        }
        off += len;
    }
    out
}

fn insn_len(code: &[u8]) -> usize {
    let mut d = iced_x86::Decoder::new(64, code, iced_x86::DecoderOptions::NONE);
    let i = d.decode();
    if i.is_invalid() { 0 } else { i.len() }
}

#[test]
fn g_offsets_come_from_dwarf() {
    for tc in toolchains() {
        let g = catalog(&tc, Variant::Plain)
            .g_offsets
            .expect("runtime.g in DWARF");
        assert_eq!(g.stack_hi, 8, "{}", tc.label); // g.stack is the first field: {lo, hi}
        assert!(
            g.goid > 100 && g.goid < 400,
            "{} goid at {}",
            tc.label,
            g.goid
        );
    }
}

fn list(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(periscope())
        .arg("list")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_prints_signatures_and_json() {
    let tc = periscope_tests::newest();
    let bin = fixture("kinds", &tc, Variant::Plain);
    let (code, out, _) = list(&[bin.to_str().unwrap(), r"^main\.Login$"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("main.Login(username string, attempts int) (bool, error)  main.go:"),
        "{out}"
    );
    let (code, out, _) = list(&["--json", bin.to_str().unwrap(), r"^main\.Login$"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["name"], "main.Login");
    assert_eq!(v["params"][0]["name"], "username");
    assert_eq!(v["params"][0]["type"], "string");
    assert_eq!(v["params"][0]["location"], "RAX,RBX");
    assert_eq!(v["results"][1]["type"], "error");
    assert!(v["probe_entry"].as_str().unwrap().starts_with("0x"));
    assert!(!v["returns"].as_array().unwrap().is_empty());
    assert!(v["line"].as_u64().unwrap() > 0 && v["file"].as_str().unwrap().ends_with("main.go"));
}

#[test]
fn list_works_on_stripped_and_pie_binaries_and_by_pid() {
    let tc = periscope_tests::newest();
    let stripped = fixture("kinds", &tc, Variant::Stripped);
    let (code, out, err) = list(&[stripped.to_str().unwrap(), r"^main\."]);
    assert_eq!(code, 0, "{err}");
    // Raw words where the stack-growth path shows the registers (SetInfo(u *User,
    // address string): three words); none for a leaf without a stack check.
    assert!(
        out.lines()
            .any(|l| l.starts_with("main.SetInfo(a0 word64, a1 word64, a2 word64)")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("main.Login(?)")), "{out}");
    assert_eq!(err.lines().count(), 1, "one note about DWARF: {err}");
    assert!(err.contains("DWARF"));
    let stripped_cat = Catalog::open(&stripped).unwrap();
    let plain_cat = catalog(&tc, Variant::Plain);
    let a = stripped_cat.function("main.SetInfo").unwrap();
    let b = plain_cat.function("main.SetInfo").unwrap();
    assert_eq!(a.entry, b.entry, "pclntab entry matches DWARF low_pc");
    assert_eq!(
        a.probes.as_ref().unwrap().entry,
        b.probes.as_ref().unwrap().entry
    );

    let pie = fixture("kinds", &tc, Variant::Pie);
    let (code, out, _) = list(&[pie.to_str().unwrap(), r"^main\.SetInfo$"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("main.SetInfo(u *main.User, address string) error"));

    let mut proc = periscope_tests::FixtureProc::start(&pie);
    let (code, out, _) = list(&[&proc.pid.to_string(), r"^main\.Login$"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("main.Login("));
    let cat = Catalog::open(&symbols::process::exe_path(proc.pid).unwrap()).unwrap();
    let bias = symbols::process::load_bias(proc.pid, cat.elf.first_load_vaddr()).unwrap();
    assert!(
        cat.elf.is_pie && !bias.is_zero(),
        "a PIE is loaded away from 0"
    );
    assert!(proc.is_running());
}

#[test]
fn bad_targets_get_one_clear_line_and_status_2() {
    let tmp = std::env::temp_dir().join(format!("periscope-notelf-{}", std::process::id()));
    std::fs::write(&tmp, "#!/bin/sh\necho hi\n").unwrap();
    // The first 100 KB of a real Go binary.
    let truncated = std::env::temp_dir().join(format!("periscope-trunc-{}", std::process::id()));
    let whole =
        std::fs::read(fixture("kinds", &periscope_tests::newest(), Variant::Plain)).unwrap();
    std::fs::write(&truncated, &whole[..100_000]).unwrap();
    // A zombie: a child that exited and that nobody has reaped yet.
    let mut zombie = Command::new("true").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["/nonexistent/app".into()], "no such file"),
        (vec![tmp.to_str().unwrap().into()], "not an ELF"),
        (vec!["/tmp".into()], "/tmp is not a regular file"),
        (
            vec![truncated.to_str().unwrap().into()],
            "truncated or damaged ELF",
        ),
        (vec!["2".into()], "pid 2 is a kernel thread"),
        (vec![zombie.id().to_string()], "is a zombie"),
        (vec!["/bin/true".into()], "not a Go program"),
        (vec!["999999999".into()], "no process with pid"),
        (
            vec![
                fixture("kinds", &periscope_tests::newest(), Variant::Plain)
                    .to_str()
                    .unwrap()
                    .into(),
                "main.(".into(),
            ],
            "bad regex",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let (code, out, err) = list(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    zombie.wait().unwrap();
    std::fs::remove_file(tmp).unwrap();
    std::fs::remove_file(truncated).unwrap();
}

#[test]
fn pclntab_positions_agree_with_go_addr2line_and_survive_stripping() {
    use std::io::Write;
    for tc in toolchains() {
        let bin = fixture("kinds", &tc, Variant::Plain);
        let plain = Catalog::open(&bin).unwrap();
        let stripped = Catalog::open(&fixture("kinds", &tc, Variant::Stripped)).unwrap();
        // Entries and a few pcs inside each of the fixture's functions.
        let pcs: Vec<u64> = plain
            .functions
            .iter()
            .filter(|f| f.package == "main" && f.probeable())
            .flat_map(|f| [f.entry, f.entry + (f.end - f.entry) / 3, f.end - 1])
            .collect();
        // Go's own reader of the same tables is the oracle.
        let mut child = Command::new(&tc.go)
            .args(["tool", "addr2line"])
            .arg(&bin)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let input: String = pcs.iter().map(|pc| format!("{pc:#x}\n")).collect();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        let want: Vec<&str> = out.lines().collect();
        assert_eq!(want.len(), 2 * pcs.len(), "{}", tc.label);
        for (i, &pc) in pcs.iter().enumerate() {
            let p = plain.position(symbols::LinkAddr(pc)).unwrap();
            assert_eq!(
                (p.func.as_str(), format!("{}:{}", p.file, p.line)),
                (want[2 * i], want[2 * i + 1].to_string()),
                "{} {pc:#x}",
                tc.label
            );
            assert_eq!(
                stripped.position(symbols::LinkAddr(pc)),
                Some(p),
                "{} {pc:#x}",
                tc.label
            );
        }
        assert!(pcs.len() > 30, "{}: {}", tc.label, pcs.len());
    }
}

#[test]
fn a_name_without_its_package_path_means_the_one_function_it_ends() {
    let tc = periscope_tests::newest();
    let cat = catalog(&tc, Variant::Plain);
    let full = |n: &str| -> Vec<String> {
        symbols::resolve::resolve(&cat, n)
            .unwrap()
            .iter()
            .map(|&i| cat.functions[i].name.clone())
            .collect()
    };
    // Tables cut names to their last package element; such a name is accepted back.
    assert_eq!(full("utf8.Valid"), ["unicode/utf8.Valid"]);
    assert_eq!(full("unicode/utf8.Valid"), ["unicode/utf8.Valid"]);
    // Only at a path boundary: `f8.Valid` is no package's name.
    assert!(matches!(
        symbols::resolve::resolve(&cat, "f8.Valid"),
        Err(symbols::resolve::ResolveError::Unknown(_))
    ));
}

#[test]
fn a_function_both_inlined_and_compiled_is_one_line_that_says_so() {
    // cmd/pprof has a few hundred functions Go inlined at some call sites and compiled
    // for others: `list` shows each once, probeable, saying that a probe sees only the
    // calls that were not inlined (JSON keeps both records, as DWARF has them).
    let bin = periscope_tests::pprof();
    let (code, json, err) = list(&[bin.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let mut probeable = std::collections::HashSet::new();
    let mut inlined = std::collections::HashSet::new();
    for l in json.lines() {
        let f: serde_json::Value = serde_json::from_str(l).unwrap();
        let name = f["name"].as_str().unwrap().to_string();
        if f["inlined_only"] == true {
            inlined.insert(name);
        } else {
            probeable.insert(name);
        }
    }
    let both: Vec<&String> = inlined.intersection(&probeable).collect();
    assert!(both.len() > 100, "{}", both.len());
    let (code, text, err) = list(&[bin.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mut lines_of: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for l in text.lines() {
        if let Some(name) = both.iter().find(|n| l.starts_with(&format!("{n}("))) {
            lines_of.entry(name.as_str()).or_default().push(l);
        }
    }
    for name in &both {
        let ls = lines_of
            .get(name.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert_eq!(ls.len(), 1, "{name}: {ls:?}");
        assert!(
            ls[0].contains("[also inlined: a probe sees only the calls that were not]"),
            "{}",
            ls[0]
        );
        assert!(!ls[0].contains("not probeable"), "{}", ls[0]);
    }
}
