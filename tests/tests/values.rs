//! Every value periscope shows is the program's own, or marked as not captured: never a
//! made-up nil, zero or "". Checked against the values fixture's own record on every
//! toolchain and as PIE.
use std::time::Duration;

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

#[test]
fn values_are_the_programs_own_or_marked_not_captured() {
    for tc in toolchains() {
        for variant in [Variant::Plain, Variant::Pie] {
            let what = format!("{} {variant:?}", tc.label);
            let mut fx = FixtureProc::start(&fixture("values", &tc, variant));
            let (child, _err) = periscope_tests::spawn_trace(
                fx.pid,
                &["--json", "--args", "main.Six", "main.Take"],
            );
            let record = fx.run("run 3");
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let out = child.wait_with_output().unwrap();
            let got: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .filter(|v: &Value| v["type"] == "call")
                .collect();
            assert_eq!(got.len(), record.len(), "{what}: {got:?}");
            let mut marked = 0;
            for (g, w) in got.iter().zip(&record) {
                assert_eq!(g["func"], w["func"], "{what}");
                faithful(&g["args"], &w["args"], &w["func"].to_string(), &mut marked)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            // The six strings: the first ones whole, the list marked as cut.
            let six = &got[0]["args"]["xs"];
            assert_eq!(six["len"], 6, "{what}: {six}");
            assert_eq!(six["items"][0], "a0", "{what}: {six}");
            // Wide's fields past the stack window were not captured, and say so.
            let w = &got[1]["args"]["w"];
            for field in ["Tail", "Name", "M", "P"] {
                assert_eq!(w[field]["not_captured"], "budget", "{what}: {field} in {w}");
            }
            assert_eq!(got[1]["args"]["k"], 0, "{what}");
            assert!(marked >= 4, "{what}");
        }
    }
}
