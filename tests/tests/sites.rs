//! Call-site probes, exact: every call of each function of the sites fixture is seen once,
//! with the arguments and results the program itself recorded, on Go 1.19, 1.21, 1.27 and
//! a PIE, whichever points periscope chose: entries at the call sites of a leaf, returns
//! after them (a jcc, or the return address itself when the call ends its caller), the
//! function's own points where its address is taken (a func value, an interface), and
//! for such a leaf the first emulated instruction of its early check.
use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::process::{Command, Stdio};

use periscope_tests::{FixtureProc, Toolchain, Variant, fixture, periscope, toolchains};
use serde_json::{Value, json};

const FUNCS: [&str; 8] = [
    "main.Checked",
    "main.Leaf3",
    "main.ViaValue",
    "main.(*Square).Area",
    "main.Tail",
    "main.Grow",
    "main.Fib",
    "main.Risky",
];

const ROUNDS: i64 = 30;

fn fib(n: i64) -> i64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

/// Every call of Fib(5), as (n, result).
fn fib_calls(n: i64, out: &mut Vec<(i64, i64)>) {
    out.push((n, fib(n)));
    if n >= 2 {
        fib_calls(n - 1, out);
        fib_calls(n - 2, out);
    }
}

/// A call as compared: its arguments and results, as JSON text.
fn key(args: &Value, ret: &Value) -> String {
    format!("{args} -> {ret}")
}

fn check(tc: &Toolchain, variant: Variant) {
    let label = format!("{} {variant:?}", tc.label);
    let mut fx = FixtureProc::start(&fixture("sites", tc, variant));
    let mut child = Command::new(periscope())
        .args([
            "trace",
            "--json",
            "--budget",
            "off",
            "--pid",
            &fx.pid.to_string(),
        ])
        .args(FUNCS)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Which points each probe uses, said before "attached".
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (attached, said) = periscope_tests::read_until_attached(&mut err);
    assert!(attached, "{label}: {said}");
    let points: BTreeMap<String, String> = said
        .lines()
        .filter_map(|l| l.strip_prefix("periscope: ")?.split_once(": entry"))
        .map(|(f, p)| (f.to_string(), format!("entry{p}")))
        .collect();
    let record = fx.run(&format!("run {ROUNDS}"));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    assert!(child.wait().unwrap().success(), "{label}: {rest}");

    // Where the probes sat.
    let says = |f: &str, what: &str| {
        let p = &points[f];
        assert!(p.contains(what), "{label}: {f}: {p} (wanted {what:?})");
    };
    says("main.Leaf3", "entry: 3 call site(s)");
    says("main.Leaf3", "return: after 3 call site(s)");
    says("main.ViaValue", "address taken");
    says("main.(*Square).Area", "address taken");
    says("main.Checked", "entry: first emulated instruction");
    for f in ["main.Tail", "main.Grow", "main.Fib", "main.Risky"] {
        says(f, "return: after");
    }

    // What the program did, per function (Fib: every call of the recursion).
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut panics = 0;
    for r in record.iter().filter(|r| r["type"] == "call") {
        let f = r["func"].as_str().unwrap();
        if f == "main.Fib" {
            let mut calls = Vec::new();
            fib_calls(r["args"]["n"].as_i64().unwrap(), &mut calls);
            for (n, v) in calls {
                want.entry(f.into())
                    .or_default()
                    .push(key(&json!({"n": n}), &json!({"r0": v})));
            }
        } else if r["ret"].is_null() {
            panics += 1; // never returns: no row, one call in flight
        } else {
            want.entry(f.into())
                .or_default()
                .push(key(&r["args"], &r["ret"]));
        }
    }
    // What periscope saw.
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stats = BTreeMap::new();
    for l in out.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let f = v["func"].as_str().unwrap_or("").to_string();
        match v["type"].as_str() {
            Some("call") => {
                // The receiver is shown as the struct it points to.
                let args = v["args"].clone();
                got.entry(f).or_default().push(key(&args, &v["ret"]));
            }
            Some("stats") => {
                stats.insert(f, v);
            }
            _ => {}
        }
    }
    for f in FUNCS {
        let (mut w, mut g) = (
            want.remove(f).unwrap_or_default(),
            got.remove(f).unwrap_or_default(),
        );
        w.sort();
        g.sort();
        assert!(!w.is_empty(), "{label}: {f}: the fixture recorded no call");
        assert_eq!(g, w, "{label}: {f}: calls seen differ from calls made");
    }
    assert_eq!(
        stats["main.Risky"]["in_flight"].as_u64().unwrap(),
        panics,
        "{label}: a call that panicked has no return: in flight"
    );
    for (f, st) in &stats {
        assert_eq!(st["lost"], 0, "{label}: {f}: {st}");
    }
}

#[test]
fn every_call_is_seen_once_at_its_call_sites_on_every_toolchain() {
    for tc in toolchains() {
        check(&tc, Variant::Plain);
    }
    check(&periscope_tests::newest(), Variant::Pie);
}
