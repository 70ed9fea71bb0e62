//! Every value periscope shows is the program's own, or marked as not captured: never a
//! made-up nil, zero or "". Checked against the values fixture's own record on every
//! toolchain and as PIE.

use periscope_tests::{FixtureProc, Variant, fixture, toolchains};
use serde_json::Value;

/// Whether `got` (what periscope printed) is a faithful view of `want` (the fixture's
/// record); counts the values marked as not captured.
fn faithful(got: &Value, want: &Value, path: &str, marked: &mut usize) -> Result<(), String> {
    if got.get("not_captured").is_some() {
        *marked += 1;
        return Ok(());
    }
    let bad = || {
        Err(format!(
            "{path}: periscope showed {got}, the program had {want}"
        ))
    };
    match (got, want) {
        (Value::Null, Value::Null) => Ok(()),
        // The promise: a real value is never shown as nil.
        (Value::Null, _) => bad(),
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                let gv = g.get(k).ok_or_else(|| format!("{path}.{k}: missing"))?;
                faithful(gv, wv, &format!("{path}.{k}"), marked)?;
            }
            Ok(())
        }
        // A cut list: {"len", "items", "truncated"}, its items a prefix.
        (Value::Object(g), Value::Array(w)) if g.contains_key("items") => {
            if g["len"].as_u64() != Some(w.len() as u64) {
                return bad();
            }
            let items = g["items"].as_array().unwrap();
            if items.is_empty() || items.len() >= w.len() {
                return bad();
            }
            for (i, (gv, wv)) in items.iter().zip(w).enumerate() {
                faithful(gv, wv, &format!("{path}[{i}]"), marked)?;
            }
            Ok(())
        }
        // A pointer that was not followed (deeper than one level): its address, which is
        // the program's own value.
        (Value::String(g), Value::Object(_)) if g.starts_with("0x") => Ok(()),
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                faithful(gv, wv, &format!("{path}[{i}]"), marked)?;
            }
            Ok(())
        }
        (Value::String(g), Value::String(w)) => match g.strip_suffix('…') {
            Some(prefix) if w.starts_with(prefix) => Ok(()),
            _ if g == w => Ok(()),
            _ => bad(),
        },
        _ if got == want => Ok(()),
        _ => bad(),
    }
}

/// Traces the fixture's value-shaped functions through one `run 3`.
fn trace_run(fx: &mut FixtureProc, extra: &[&str]) -> (Vec<Value>, Vec<Value>) {
    let mut args = vec!["--json", "--args"];
    args.extend_from_slice(extra);
    args.extend([
        "main.Six",
        "main.Take",
        "main.Ten",
        "main.(*Mux).Serve",
        "main.Hold",
        "main.Gauge",
    ]);
    periscope_tests::trace_calls(fx, &args, "run 3")
}

#[test]
fn results_of_functions_with_a_defer_are_each_once_where_the_abi_puts_them() {
    // Go 1.19 to 1.26 describe each unnamed or blank result of a function with a
    // `defer` twice; the results are the program's own, once each, on every release.
    for tc in periscope_tests::every_release() {
        for variant in [Variant::Plain, Variant::Pie] {
            let what = format!("{} {variant:?}", tc.label);
            let bin = fixture("values", &tc, variant);
            let out = std::process::Command::new(periscope_tests::periscope())
                .args([
                    "list",
                    bin.to_str().unwrap(),
                    r"^main\.(Audit|Named|Blank)$",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            for want in [
                "main.Audit(name string, round int) (int, error)",
                "main.Named(name string) (n int, err error)",
                "main.Blank(x int) (int, error)",
            ] {
                assert!(
                    text.lines().any(|l| l.starts_with(want)),
                    "{what}: {want} not in {text}"
                );
            }
            let mut fx = FixtureProc::start(&bin);
            let (got, record) = periscope_tests::trace_calls(
                &mut fx,
                &[
                    "--json",
                    "--args",
                    "--ret",
                    "main.Audit",
                    "main.Named",
                    "main.Blank",
                ],
                "defers 6",
            );
            assert_eq!(got.len(), 18, "{what}: {got:?}");
            for (g, w) in got.iter().zip(&record) {
                assert_eq!(g["func"], w["func"], "{what}");
                assert_eq!(g["args"], w["args"], "{what}: {g}");
                assert_eq!(g["ret"], w["ret"], "{what}: {g}");
            }
        }
    }
}

#[test]
fn values_are_the_programs_own_or_marked_not_captured() {
    for tc in periscope_tests::every_release() {
        for variant in [Variant::Plain, Variant::Pie] {
            let what = format!("{} {variant:?}", tc.label);
            let mut fx = FixtureProc::start(&fixture("values", &tc, variant));
            let (got, record) = trace_run(&mut fx, &[]);
            assert_eq!(got.len(), record.len(), "{what}: {got:?}");
            let mut marked = 0;
            for (g, w) in got.iter().zip(&record) {
                assert_eq!(g["func"], w["func"], "{what}");
                faithful(&g["args"], &w["args"], &w["func"].to_string(), &mut marked)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            // Six strings: every element whole.
            assert_eq!(got[0]["args"], record[0]["args"], "{what}");
            // Wide's fields past the stack window were not captured, and say so.
            let w = &got[1]["args"]["w"];
            for field in ["Tail", "Name", "M", "P"] {
                assert_eq!(w[field]["not_captured"], "budget", "{what}: {field} in {w}");
            }
            assert_eq!(got[1]["args"]["k"], 0, "{what}");
            // Ten strings: the first eight, the list marked as cut.
            let ten = &got[2]["args"]["xs"];
            assert_eq!(ten["len"], 10, "{what}: {ten}");
            assert_eq!(
                ten["items"].as_array().map(Vec::len),
                Some(8),
                "{what}: {ten}"
            );
            assert_eq!(ten["items"][7], "t7", "{what}: {ten}");
            // The request's own strings before the receiver's contents.
            let (r, want) = (&got[3]["args"]["r"], &record[3]["args"]["r"]);
            for field in ["Method", "Host", "RemoteAddr", "RequestURI", "Body"] {
                assert_eq!(r[field], want[field], "{what}: {field} in {r}");
            }
            let m = got[3]["args"]["m"].to_string();
            assert!(
                m.contains(r#""not_captured":"budget""#),
                "{what}: receiver {m}"
            );
            // Interfaces inside a struct: dynamic type and value, as at the top.
            assert_eq!(got[4]["args"], record[4]["args"], "{what}");
            // Floats in memory are read (a float64, a float32, a complex128, and one
            // inside an interface); the float argument is in an XMM register.
            assert_eq!(got[5]["args"], record[5]["args"], "{what}");
            assert!(marked >= 5, "{what}");
        }
    }
}

#[test]
fn capture_paths_are_read_first_and_followed_through_pointers() {
    let tc = periscope_tests::newest();
    let mut fx = FixtureProc::start(&fixture("values", &tc, Variant::Plain));
    let (got, record) = trace_run(&mut fx, &["--capture", "r.URL.Path,m.Prefix"]);
    let serve: Vec<(&Value, &Value)> = got
        .iter()
        .zip(&record)
        .filter(|(g, _)| g["func"] == "main.(*Mux).Serve")
        .collect();
    assert_eq!(serve.len(), 3, "{got:?}");
    // `m.Prefix` names a field of Serve's `m`; Gauge's `m` has none, and Gauge is
    // traced as without the path.
    let gauge: Vec<&Value> = got.iter().filter(|g| g["func"] == "main.Gauge").collect();
    assert_eq!(gauge.len(), 3, "{got:?}");
    assert!(
        gauge.iter().all(|g| g["args"]["m"]["Label"] == "gauge"),
        "{gauge:?}"
    );
    for (g, w) in serve {
        assert_eq!(
            g["args"]["r"]["URL"]["Path"], w["args"]["r"]["URL"]["Path"],
            "{g}"
        );
        assert_eq!(g["args"]["m"]["Prefix"], "/api", "{g}");
        let mut marked = 0;
        faithful(&g["args"], &w["args"], "Serve", &mut marked).unwrap();
    }
    // A path that names nobody's value is one clear line.
    let out = std::process::Command::new(periscope_tests::periscope())
        .args([
            "trace",
            "-p",
            &fx.pid.to_string(),
            "--capture",
            "req.Host",
            "main.Ten",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no probed function has a parameter or result `req`"),
        "{err}"
    );
    let out = std::process::Command::new(periscope_tests::periscope())
        .args([
            "trace",
            "-p",
            &fx.pid.to_string(),
            "--capture",
            "r.URL.Nope",
            "main.(*Mux).Serve",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no field `Nope`"), "{err}");
}

#[test]
fn conditions_compare_floats_read_from_memory() {
    for tc in periscope_tests::toolchains() {
        let mut fx = FixtureProc::start(&fixture("values", &tc, Variant::Plain));
        // A float64 field, and a float32 one against a constant Go would convert to
        // float32 (0.1 is not exact in either width).
        let cond = "main.Gauge if m.Celsius > 1.5 || m.Ratio == 0.1";
        let (got, record) =
            periscope_tests::trace_calls(&mut fx, &["--json", "--args", cond], "run 3");
        let want: Vec<&Value> = record
            .iter()
            .filter(|r| r["func"] == "main.Gauge")
            .filter(|r| {
                let m = &r["args"]["m"];
                m["Celsius"].as_f64().unwrap() > 1.5 || m["Ratio"].as_f64() == Some(0.1)
            })
            .collect();
        assert_eq!(want.len(), 2, "{}: the fixture's rounds changed", tc.label);
        let got_m: Vec<&Value> = got.iter().map(|g| &g["args"]["m"]).collect();
        let want_m: Vec<&Value> = want.iter().map(|w| &w["args"]["m"]).collect();
        assert_eq!(got_m, want_m, "{}", tc.label);
        // The float argument is in an XMM register: refused, and said why.
        let out = std::process::Command::new(periscope_tests::periscope())
            .args(["trace", "-p", &fx.pid.to_string(), "main.Gauge if f > 1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("XMM register"), "{}: {err}", tc.label);
    }
}

/// Functions named by `periscope list BIN REGEX --json`, with their entry addresses.
fn listed(bin: &std::path::Path, regex: &str) -> Vec<(String, String, u64)> {
    let out = std::process::Command::new(periscope_tests::periscope())
        .args(["list", bin.to_str().unwrap(), regex, "--json"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|f| f["inlined_only"] == false)
        .map(|f| {
            let name = f["name"].as_str().unwrap().into();
            (
                name,
                f["entry"].as_str().unwrap().into(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_name_means_every_function_of_that_name() {
    for tc in toolchains() {
        for variant in [Variant::Plain, Variant::Pie] {
            let what = format!("{} {variant:?}", tc.label);
            let bin = fixture("values", &tc, variant);
            // The closure's copies: one name for both on Go 1.27, two names on 1.21,
            // one function on 1.19.
            let copies = listed(&bin, r"^main\.(main\.)?Wrap\.func[0-9]$");
            let mut names: Vec<&str> = copies.iter().map(|c| c.0.as_str()).collect();
            names.dedup();
            if tc.label == "go1.27" {
                assert_eq!((copies.len(), names.len()), (2, 1), "{what}: {copies:?}");
            }
            let mut fx = FixtureProc::start(&bin);
            let mut args = vec!["--json", "--args", "--ret", "main.Max"];
            args.extend(names.iter().copied());
            let (lines, record) = periscope_tests::trace_lines(&mut fx, &args, "names 3");
            let got: Vec<Value> = lines
                .iter()
                .filter(|v| v["type"] == "call")
                .cloned()
                .collect();
            // The summary names every shape the probe covers, not one of them.
            let stats: Vec<&str> = lines
                .iter()
                .filter(|v| v["type"] == "stats")
                .filter_map(|v| v["func"].as_str())
                .collect();
            assert!(
                stats.contains(&"main.Max[int|string]") || stats.contains(&"main.Max[string|int]"),
                "{what}: {stats:?}"
            );
            // Every call of every copy, once, with its own values.
            let key = |x: &Value, r: &Value| format!("{x}->{r}");
            let mut want_closure: Vec<String> = record
                .iter()
                .filter(|c| c["func"] == "closure")
                .map(|c| key(&c["args"]["x"], &c["ret"]))
                .collect();
            let mut got_closure: Vec<String> = got
                .iter()
                .filter(|c| c["func"].as_str().unwrap().contains("Wrap.func"))
                .map(|c| key(&c["args"]["x"], &c["ret"]["r0"]))
                .collect();
            want_closure.sort();
            got_closure.sort();
            assert_eq!(got_closure, want_closure, "{what}");
            // Both instantiations of the generic function, each under its own name.
            let maxes: Vec<(String, String)> = got
                .iter()
                .filter(|c| c["func"].as_str().unwrap().starts_with("main.Max["))
                .map(|c| (c["args"]["a"].to_string(), c["ret"]["r0"].to_string()))
                .collect();
            let want_max: Vec<(String, String)> = record
                .iter()
                .filter(|c| c["func"] == "main.Max")
                .map(|c| (c["args"]["a"].to_string(), c["ret"].to_string()))
                .collect();
            assert_eq!(maxes, want_max, "{what}");
            let shapes: std::collections::BTreeSet<&str> = got
                .iter()
                .filter_map(|c| c["func"].as_str())
                .filter(|n| n.starts_with("main.Max["))
                .collect();
            assert_eq!(shapes.len(), 2, "{what}: {shapes:?}");
            if tc.label != "go1.27" {
                continue;
            }
            // NAME@ADDRESS picks one copy: it sees the calls of one handler only.
            let one = format!("{}@{}", copies[0].0, copies[0].1);
            let (got, _) =
                periscope_tests::trace_calls(&mut fx, &["--json", "--args", &one], "names 3");
            let n = got.len();
            assert_eq!(n, 3, "{what}: {one}");
            // A file:line both copies share is ambiguous: the error lists them.
            let out = std::process::Command::new(periscope_tests::periscope())
                .args(["trace", "-p", &fx.pid.to_string()])
                .arg(format!("main.Wrap.func1@main.go:{}", copies[0].2))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(err.contains("means 2 functions"), "{err}");
            assert!(err.contains(&copies[1].1), "{err}");
        }
    }
}

#[test]
fn a_structs_own_fields_are_read_before_what_its_lists_hold() {
    // Profile holds 24 strings in three arrays before its Label, its map and its Level:
    // more than a probe reads. The fields are whole; the lists hold what was left.
    for tc in toolchains() {
        let what = tc.label.clone();
        let mut fx = FixtureProc::start(&fixture("values", &tc, Variant::Plain));
        let (got, record) = periscope_tests::trace_calls(
            &mut fx,
            &["--json", "--args", "main.(*Profile).Inspect"],
            "inspect 3",
        );
        let want: Vec<&Value> = record.iter().filter(|r| r["type"] == "call").collect();
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(&want) {
            let (gp, wp) = (&g["args"]["p"], &w["args"]["p"]);
            for field in ["Label", "Seen", "Level"] {
                assert_eq!(gp[field], wp[field], "{what}: {field}: {g}");
            }
            assert_eq!(g["args"]["depth"], w["args"]["depth"], "{what}: {g}");
            let mut marked = 0;
            faithful(&g["args"], &w["args"], "args", &mut marked)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            // Some notes did not fit, each said, and the reads went in list order.
            assert!(
                marked > 0,
                "{what}: every note fit, the test proves nothing: {g}"
            );
            let lists: Vec<&Value> = ["Notes", "Drafts", "Tags"]
                .iter()
                .flat_map(|l| gp[*l].as_array().unwrap())
                .collect();
            let first_cut = lists
                .iter()
                .position(|v| v.get("not_captured").is_some())
                .unwrap();
            assert!(
                lists[first_cut..]
                    .iter()
                    .all(|v| v["not_captured"] == "budget"),
                "{what}: {g}"
            );
        }
    }
}
