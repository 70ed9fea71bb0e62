//! `trace --log TEMPLATE`: a message per call from the values it names, checked
//! against what the fixture passed; templates with mistakes are refused at their
//! column before anything attaches.
use std::process::Command;

use periscope_tests::{FixtureProc, Variant, fixture, newest, periscope, trace_lines};

#[test]
fn each_call_is_its_message_with_the_values_the_program_passed() {
    let tc = newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let template = "set {u.Name} ({u.Age}) at {address}: {r0} in {latency}";
    let (lines, record) = trace_lines(
        &mut fx,
        &["--json", "--log", template, "main.SetInfo"],
        "run 3",
    );
    let want: Vec<&serde_json::Value> = record
        .iter()
        .filter(|r| r["func"] == "main.SetInfo")
        .collect();
    let got: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "call").collect();
    assert_eq!(got.len(), want.len());
    assert!(!want.is_empty());
    for (g, w) in got.iter().zip(&want) {
        let msg = g["msg"].as_str().unwrap_or_else(|| panic!("no msg: {g}"));
        let (u, addr) = (&w["args"]["u"], w["args"]["address"].as_str().unwrap());
        let head = format!(
            "set {:?} ({}) at {addr:?}: ",
            u["Name"].as_str().unwrap(),
            u["Age"]
        );
        assert!(msg.starts_with(&head), "{msg:?} for {w}");
        match w["ret"]["r0"].as_object() {
            None => assert!(msg.contains(": nil in "), "{msg:?}"),
            Some(e) => assert!(
                msg.contains(e["value"].as_str().unwrap()),
                "{msg:?} for {w}"
            ),
        }
        // The latency, as tables print it.
        let l = g["latency_ns"].as_u64().unwrap();
        assert!(
            msg.ends_with(&periscope::format::fmt_ns(l)) || (l == 0 && msg.ends_with("floor")),
            "{msg:?}"
        );
        // It captured what it named: the arguments and the result.
        assert!(g["args"]["u"]["Name"].is_string(), "{g}");
    }
    // Text: one line a call, its time then the message.
    let (child, _err) =
        periscope_tests::spawn_trace(fx.pid, &["--log", "{address}!", "main.SetInfo"]);
    let rec = fx.run("run 2");
    let calls = rec.iter().filter(|r| r["func"] == "main.SetInfo").count();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let messages: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" main.SetInfo: "))
        .collect();
    assert_eq!(messages.len(), calls, "{text}");
    assert!(messages.iter().all(|l| l.ends_with("\"!")), "{text}");
}

#[test]
fn a_template_with_a_mistake_is_one_line_at_its_column() {
    let tc = newest();
    let fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    for (template, column, says) in [
        ("who {nope}", "column 6", "no parameter or result `nope`"),
        ("{u.Nmae}", "column 4", "Nmae"),
        ("{u", "column 1", "without its `}`"),
    ] {
        let out = Command::new(periscope())
            .args([
                "trace",
                "--pid",
                &fx.pid.to_string(),
                "--log",
                template,
                "main.SetInfo",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{template}: {err}");
        assert_eq!(err.lines().count(), 1, "{template}: {err}");
        assert!(
            err.contains(column) && err.contains(says),
            "{template}: {err}"
        );
        assert!(!err.contains("attached"), "{err}");
    }
}
