//! `periscope trace` on real Go processes, checked call for call against the record the
//! fixture itself prints. Needs root (CAP_BPF, CAP_PERFMON): CI runs as root.
use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use periscope_tests::truth::{by_func, fixture_funcs};
use periscope_tests::{
    FixtureProc, Toolchain, Variant, fixture, periscope, periscope_bpf_objects, toolchains,
};
use serde_json::Value;

struct Tracer {
    child: Child,
}

impl Tracer {
    fn start(pid: u32, args: &[&str]) -> Tracer {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (child, _stderr) = periscope_tests::spawn_trace(pid, &all);
        Tracer { child }
    }

    /// Stops with SIGTERM (as Ctrl-C would) and returns every JSON line.
    fn stop(self) -> Vec<Value> {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "periscope failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn trace_matches_ground_truth(tc: &Toolchain, variant: Variant) {
    let mut fx = FixtureProc::start(&fixture("kinds", tc, variant));
    let tracer = Tracer::start(fx.pid, &fixture_funcs());
    let truth = fx.run("run 6");
    std::thread::sleep(Duration::from_millis(300));
    let got = tracer.stop();
    let (want, have) = (by_func(&truth), by_func(&got));
    for (func, calls) in &want {
        let h = have
            .get(func)
            .unwrap_or_else(|| panic!("{} {variant:?}: no calls of {func} traced", tc.label));
        assert_eq!(
            h.len(),
            calls.len(),
            "{} {variant:?}: {func}: {} calls traced, {} made",
            tc.label,
            h.len(),
            calls.len()
        );
        for (i, (w, g)) in calls.iter().zip(h).enumerate() {
            assert_eq!(
                g, w,
                "{} {variant:?}: {func} call {i}: traced (args, ret) vs the fixture's record",
                tc.label
            );
        }
    }
    let lat: Vec<&Value> = got.iter().filter(|v| v["type"] == "latency").collect();
    assert_eq!(lat.len(), fixture_funcs().len());
    assert!(
        lat.iter().all(|l| l["count"].as_u64() == Some(6)),
        "{lat:?}"
    );
    assert!(fx.is_running(), "the target must survive tracing");
    assert_eq!(fx.run("run 1").len(), 19, "the target runs on after detach");
}

#[test]
fn arguments_and_results_match_what_each_toolchain_build_did() {
    for tc in toolchains() {
        trace_matches_ground_truth(&tc, Variant::Plain);
    }
    trace_matches_ground_truth(&periscope_tests::newest(), Variant::Pie);
}

#[test]
fn conditions_keep_only_matching_calls() {
    let tc = periscope_tests::newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let tracer = Tracer::start(
        fx.pid,
        &[
            r#"main.SetInfo if u.Name == "alice" && u.Age >= 18"#,
            "main.Login if r1 != nil",
            r#"main.Flag if strict && startsWith(s, "user-1")"#,
            "main.Divide if !(b != 0) || q > 50",
        ],
    );
    let truth = fx.run("run 24");
    std::thread::sleep(Duration::from_millis(300));
    let got = by_func(&tracer.stop());
    let want = |f: &str, keep: &dyn Fn(&Value, &Value) -> bool| -> Vec<(Value, Value)> {
        by_func(&truth)[f]
            .iter()
            .filter(|(a, r)| keep(a, r))
            .cloned()
            .collect()
    };
    let set = want("main.SetInfo", &|a, _| {
        a["u"]["Name"] == "alice" && a["u"]["Age"].as_i64().unwrap() >= 18
    });
    assert!(!set.is_empty());
    assert_eq!(got["main.SetInfo"], set);
    let login = want("main.Login", &|_, r| !r["r1"].is_null());
    assert!(!login.is_empty());
    assert_eq!(got["main.Login"], login);
    let flag = want("main.Flag", &|a, _| {
        a["strict"] == true && a["s"].as_str().unwrap().starts_with("user-1")
    });
    assert!(!flag.is_empty());
    assert_eq!(got["main.Flag"], flag);
    let div = want("main.Divide", &|a, r| {
        a["b"] == 0 || r["q"].as_i64().unwrap() > 50
    });
    assert_eq!(got["main.Divide"], div);
}

#[test]
fn latency_percentiles_match_known_sleeps() {
    let tc = periscope_tests::newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let tracer = Tracer::start(fx.pid, &["--latency", "main.Sleep"]);
    let truth = fx.run("sleep");
    let got = tracer.stop();
    let lat = got.iter().find(|v| v["type"] == "latency").unwrap();
    assert_eq!(lat["count"], 40);
    // What the fixture measured around each call (sleeps overshoot what was asked).
    let mut took: Vec<f64> = truth
        .iter()
        .map(|c| c["elapsed_ns"].as_f64().unwrap())
        .collect();
    took.sort_by(f64::total_cmp);
    let rank = |q: f64| took[((q * took.len() as f64).ceil() as usize).clamp(1, took.len()) - 1];
    let p50 = lat["p50_ns"].as_f64().unwrap();
    let p99 = lat["p99_ns"].as_f64().unwrap();
    assert!(
        (p50 - rank(0.5)).abs() / rank(0.5) < 0.05,
        "p50 {p50} vs measured {}",
        rank(0.5)
    );
    assert!(
        (p99 - rank(0.99)).abs() / rank(0.99) < 0.05,
        "p99 {p99} vs measured {}",
        rank(0.99)
    );
}

#[test]
fn deep_recursion_on_growing_stacks_is_seen_once_per_call_and_harmless() {
    for tc in toolchains() {
        let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
        let tracer = Tracer::start(fx.pid, &["main.Recurse"]);
        let rec = fx.run("recurse 300");
        std::thread::sleep(Duration::from_millis(300));
        let got = tracer.stop();
        let calls: Vec<&Value> = got.iter().filter(|v| v["type"] == "call").collect();
        assert_eq!(
            calls.len() as u64,
            rec[0]["calls"].as_u64().unwrap(),
            "{}",
            tc.label
        );
        // Each call pairs with its own return: Recurse(n) returns the sum below it.
        let total: i64 = calls
            .iter()
            .filter(|c| c["args"]["n"] == 300)
            .map(|c| c["ret"]["r0"].as_i64().unwrap())
            .sum();
        assert_eq!(total, rec[0]["total"].as_i64().unwrap(), "{}", tc.label);
        assert!(fx.is_running());
    }
}

#[test]
fn nothing_is_left_in_the_kernel_after_exit_ctrl_c_or_sigkill() {
    let tc = periscope_tests::newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    // The kernel frees a closed program's maps asynchronously: allow it a moment.
    let clean = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !periscope_bpf_objects().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        periscope_bpf_objects().is_empty()
    };
    // --duration ends by itself.
    let out = Command::new(periscope())
        .args([
            "trace",
            "--duration",
            "300ms",
            "--pid",
            &fx.pid.to_string(),
            "main.Login",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(clean(), "after exit: {:?}", periscope_bpf_objects());
    // SIGTERM / Ctrl-C.
    Tracer::start(fx.pid, &["main.Login"]).stop();
    assert!(clean(), "after Ctrl-C: {:?}", periscope_bpf_objects());
    // SIGKILL: the kernel drops everything with the file descriptors.
    let mut t = Tracer::start(fx.pid, &["main.Login", "main.SetInfo"]);
    assert!(
        !periscope_bpf_objects().is_empty(),
        "while tracing, the program is visible"
    );
    t.child.kill().unwrap();
    t.child.wait().unwrap();
    assert!(clean(), "after SIGKILL: {:?}", periscope_bpf_objects());
    assert_eq!(fx.run("run 1").len(), 19);
}

#[test]
fn bad_probes_get_one_clear_line() {
    let tc = periscope_tests::newest();
    let fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let pid = fx.pid.to_string();
    let cases: &[(&[&str], &str)] = &[
        (
            &["main.Logn"],
            "unknown function main.Logn (closest: main.Login",
        ),
        (
            &["main.Login if user == \"x\""],
            "has no parameter or result `user`",
        ),
        (
            &["main.SetInfo if u.Nme == \"x\""],
            "column 3: main.User has no field `Nme`",
        ),
        (
            &["main.Login if attempts == \"x\""],
            "type mismatch: attempts is int",
        ),
        (
            &["main.Login if attempts = 3"],
            "`attempts = 3`, column 10: `=` is assignment",
        ),
        (&["main.Floats if f64 > 1"], "float"),
        (&["main.inc"], "inlined at every call site"),
        (&["main.Login if"], "the condition after `if` is empty"),
        (
            &["main.Login if attempts >\n \"x\""],
            "column 13: type mismatch",
        ),
        (
            &["--capture", "u.Name,,u.Age", "main.SetInfo"],
            "--capture `u.Name,,u.Age`, column 8: an empty path",
        ),
        (
            &["main.Login if username == \"a\u{1}b\""],
            "column 15: a control character",
        ),
        (
            &["main.Login", "main.Login if attempts > 1"],
            "main.Login is given twice: combine its conditions with ||",
        ),
    ];
    let deep = [
        format!(
            "main.Login if {}attempts{}",
            "(".repeat(8000),
            ")".repeat(8000)
        ),
        format!("main.Login if {}", "(".repeat(20_000)),
        format!("main.Login if {}attempts", "!".repeat(20_000)),
    ];
    let deep: Vec<([&str; 1], &str)> = deep
        .iter()
        .map(|d| ([d.as_str()], "nested too deep"))
        .collect();
    let cases: Vec<(&[&str], &str)> = cases
        .iter()
        .copied()
        .chain(deep.iter().map(|(a, w)| (&a[..], *w)))
        .collect();
    for (args, want) in cases {
        let out = Command::new(periscope())
            .args(["trace", "--pid", &pid])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(want),
            "{}: {err}",
            args.join(" ").chars().take(80).collect::<String>()
        );
        assert!(
            err.len() < 400,
            "a long input is not echoed whole: {} bytes",
            err.len()
        );
    }
    for bad in [
        ["--sample", "0"],
        ["--max-string", "0"],
        ["--max-string", "513"],
    ] {
        let out = Command::new(periscope())
            .args(["trace", "--pid", &pid])
            .args(bad)
            .arg("main.Login")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("is not in"), "{bad:?}: {err}");
    }
    // The same probe twice (a stripped Go 1.19 binary names every shape of a generic
    // `f[...]`, and `list` shows it once per shape) is one probe, not an error.
    let old = FixtureProc::start(&fixture(
        "kinds",
        &periscope_tests::toolchains()[0],
        Variant::Stripped,
    ));
    let out = Command::new(periscope())
        .args([
            "trace",
            "--duration",
            "200ms",
            "--pid",
            &old.pid.to_string(),
        ])
        .args(["main.Max[...]", "main.Max[...]"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("attached 1 probe(s)"), "{err}");
    let out = Command::new(periscope())
        .args(["trace", "--pid", "999999999", "main.Login"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no process with pid"));
}

#[test]
fn slow_calls_lengths_and_string_order_are_decided_in_the_kernel() {
    let tc = periscope_tests::newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let tracer = Tracer::start(
        fx.pid,
        &[
            "--args",
            "main.Sleep if latency > 10ms",
            "main.MapLen if len(m) >= 3",
            "main.Bytes if len(b) > 3",
            r#"main.Flag if s > "user-1" && s <= "user-4""#,
        ],
    );
    let mut truth = fx.run("sleep");
    truth.extend(fx.run("run 12"));
    std::thread::sleep(Duration::from_millis(300));
    let got = tracer.stop();
    let args_of = |calls: &[Value], f: &str| -> Vec<Value> {
        calls
            .iter()
            .filter(|c| c["type"] == "call" && c["func"] == f)
            .map(|c| c["args"].clone())
            .collect()
    };
    // Exactly the 20 ms sleeps, each with its argument, and each slower than 10 ms.
    let slow: Vec<Value> = args_of(&truth, "main.Sleep")
        .into_iter()
        .filter(|a| a["d"].as_i64().unwrap() > 10_000_000)
        .collect();
    assert_eq!(slow.len(), 10);
    assert_eq!(args_of(&got, "main.Sleep"), slow);
    for c in got
        .iter()
        .filter(|c| c["type"] == "call" && c["func"] == "main.Sleep")
    {
        assert!(c["latency_ns"].as_u64().unwrap() > 10_000_000, "{c}");
    }
    let maps: Vec<Value> = args_of(&truth, "main.MapLen")
        .into_iter()
        .filter(|a| a["m"]["len"].as_u64().unwrap() >= 3)
        .collect();
    assert!(!maps.is_empty());
    assert_eq!(args_of(&got, "main.MapLen"), maps);
    let long = |a: &Value| match &a["b"] {
        Value::String(s) => s.len() > 3,
        Value::Array(b) => b.len() > 3,
        other => panic!("{other}"),
    };
    let bytes: Vec<Value> = args_of(&truth, "main.Bytes")
        .into_iter()
        .filter(long)
        .collect();
    assert!(!bytes.is_empty() && bytes.len() < 12);
    assert_eq!(args_of(&got, "main.Bytes"), bytes);
    // Go's own string order, byte by byte: "user-10" > "user-1", "user-4" <= "user-4".
    let flags: Vec<Value> = args_of(&truth, "main.Flag")
        .into_iter()
        .filter(|a| {
            let s = a["s"].as_str().unwrap();
            s > "user-1" && s <= "user-4"
        })
        .collect();
    assert!(!flags.is_empty());
    assert_eq!(args_of(&got, "main.Flag"), flags);
}

#[test]
fn latency_split_by_a_value_counts_the_calls_printed() {
    let tc = periscope_tests::newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    // Two tracers on one run: a string's values, and a comparison's truth.
    let by_user = Tracer::start(fx.pid, &["--by", "username", "main.Login"]);
    let by_err = Tracer::start(fx.pid, &["--by", "r1 != nil", "main.Login"]);
    let truth = fx.run("run 12");
    std::thread::sleep(Duration::from_millis(300));
    for (tracer, key) in [(by_user, "user"), (by_err, "err")] {
        let got = tracer.stop();
        let mut printed: BTreeMap<String, u64> = BTreeMap::new();
        for c in got.iter().filter(|c| c["type"] == "call") {
            let value = match key {
                "user" => c["args"]["username"].as_str().unwrap().to_string(),
                _ => (!c["ret"]["r1"].is_null()).to_string(),
            };
            *printed.entry(value).or_default() += 1;
        }
        let split: BTreeMap<String, u64> = got
            .iter()
            .filter(|c| c["type"] == "latency" && c.get("by").is_some())
            .map(|c| {
                (
                    c["by"].as_str().unwrap().to_string(),
                    c["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(split, printed, "{key}");
        let calls = truth.iter().filter(|c| c["func"] == "main.Login").count() as u64;
        assert_eq!(split.values().sum::<u64>(), calls, "{key}");
        assert!(split.len() >= 2, "{key}: {split:?}");
    }
}
