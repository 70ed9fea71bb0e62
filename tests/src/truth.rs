//! The kinds fixture's record of its own calls (`run N` prints each call's arguments and
//! results), and periscope's calls, in a form the two compare in.
use std::collections::BTreeMap;

use serde_json::Value;

/// The functions of `run` whose every call the fixture records.
pub fn fixture_funcs() -> Vec<&'static str> {
    vec![
        "main.Ints",
        "main.Flag",
        "main.Floats",
        "main.Bytes",
        "main.Strings",
        "main.Array",
        "main.MapLen",
        "main.SetInfo",
        "main.Move",
        "main.Sum",
        "main.Pack",
        "main.Describe",
        "main.Divide",
        "main.Login",
        "main.Point.Norm1",
        "main.(*Store).Put",
        "main.Max",
        "main.Total",
        "main.Many",
    ]
}

/// A generic function's instances are one function in the record.
pub fn norm(func: &str) -> String {
    if func.starts_with("main.Max[") {
        "main.Max".into()
    } else {
        func.into()
    }
}

/// The calls of each function, (arguments, results), in order.
pub fn by_func(calls: &[Value]) -> BTreeMap<String, Vec<(Value, Value)>> {
    let mut m: BTreeMap<String, Vec<(Value, Value)>> = BTreeMap::new();
    for c in calls.iter().filter(|c| c["type"] == "call") {
        m.entry(norm(c["func"].as_str().unwrap()))
            .or_default()
            .push((c["args"].clone(), c["ret"].clone()));
    }
    m
}

/// Every function of the record traced call for call with the same arguments and
/// results; the first difference otherwise.
pub fn compare(truth: &[Value], got: &[Value]) -> Result<(), String> {
    let (want, have) = (by_func(truth), by_func(got));
    for (func, calls) in &want {
        let Some(h) = have.get(func) else {
            return Err(format!("no calls of {func} traced"));
        };
        if h.len() != calls.len() {
            return Err(format!(
                "{func}: {} calls traced, {} made",
                h.len(),
                calls.len()
            ));
        }
        for (i, (w, g)) in calls.iter().zip(h).enumerate() {
            if g != w {
                return Err(format!(
                    "{func} call {i}: traced {}, {}; the fixture's record {}, {}",
                    g.0, g.1, w.0, w.1
                ));
            }
        }
    }
    Ok(())
}
