//! Attach and detach 200 probes in a loop on a busy target: the target never
//! misbehaves (every call it makes while probed decodes to exactly what it computed),
//! and after each round nothing of periscope's stays attached and no descriptor leaks.
//! Two rounds: the kernel needs ~0.1 s to remove each uprobe (about a minute a round).
use std::time::{Duration, Instant};

use periscope::session::{ProbeSpec, Row, Session};
use periscope_tests::{FixtureProc, Variant, fixture, newest, periscope_links};
use probes_ebpf::GoValue;

const PROBES: usize = 200;
const ROUNDS: usize = 2;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn int(v: &GoValue) -> i64 {
    match v {
        GoValue::Int(i) => *i,
        other => panic!("not an int: {other:?}"),
    }
}

#[test]
fn attach_and_detach_200_probes_in_a_loop_on_a_busy_target() {
    let bin = fixture("kinds", &newest(), Variant::Plain);
    let mut fx = FixtureProc::start(&bin);
    // A warm-up round so that the standard library functions below have run once.
    fx.run("run 1");
    let mut session = Session::open(fx.pid).expect("open the fixture");
    // Every sampled call of Hot is checked whole: no CPU budget cutting returns.
    session.set_budget(None);
    let cat = session.cat.clone();
    let hot = cat
        .functions
        .iter()
        .position(|f| f.name == "main.Hot")
        .unwrap();
    // main.Hot, which the busy loop calls millions of times a second, then 199 more
    // probeable functions: the fixture's own, then the standard library's that it uses
    // (fmt, strconv, encoding/json, sort…), never the runtime's.
    let mut targets = vec![hot];
    let own = |name: &str| name.starts_with("main.");
    let lib = |name: &str| {
        [
            "fmt.",
            "strconv.",
            "encoding/json.",
            "sort.",
            "strings.",
            "bufio.",
            "errors.",
            "unicode/utf8.",
            "time.",
            "os.",
        ]
        .iter()
        .any(|p| name.starts_with(p))
    };
    for pass in [own as fn(&str) -> bool, lib] {
        for (i, f) in cat.functions.iter().enumerate() {
            if targets.len() < PROBES && i != hot && f.probeable() && pass(&f.name) {
                targets.push(i);
            }
        }
    }
    assert_eq!(targets.len(), PROBES, "not enough probeable functions");

    fx.run("busy");
    std::thread::sleep(Duration::from_millis(100));
    let fds_before = open_fds();
    let mut checked = 0usize;
    let mut buf: Vec<Row> = Vec::new();
    for round in 0..ROUNDS {
        let t0 = Instant::now();
        for (k, &f) in targets.iter().enumerate() {
            // Alternate what is captured so that entry-only and paired plans are both
            // attached and removed; Hot keeps all of it, sampled.
            let settings = ProbeSpec {
                args: true,
                ret: f == hot || k % 2 == 0,
                latency: k % 3 == 0,
                condition: None,
                sample: if f == hot { 97 } else { 1 },
                ..ProbeSpec::default()
            };
            session
                .set(f, &settings)
                .unwrap_or_else(|e| panic!("round {round}: {}: {e}", cat.functions[f].name));
        }
        let attached = t0.elapsed();
        let links = periscope_links().len();
        assert!(
            links >= PROBES,
            "round {round}: {links} links for {PROBES} probes"
        );
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            session.drain(&mut buf, usize::MAX);
            std::thread::sleep(Duration::from_millis(10));
        }
        session.drain(&mut buf, usize::MAX);
        // Every sampled call of Hot returned x ^ y: the probes never disturbed it.
        for r in buf.drain(..).filter(|r| r.func == hot) {
            let (Some(args), Some(ret)) = (&r.call.args, &r.call.ret) else {
                panic!("Hot without args or results: {:?}", r.call)
            };
            assert_eq!(
                int(&ret[0].1),
                int(&args[0].1) ^ int(&args[1].1),
                "{:?}",
                r.call
            );
            checked += 1;
        }
        let st = session.stats(hot).unwrap();
        assert!(st.hits > 0, "round {round}: Hot never hit");
        let t1 = Instant::now();
        session.remove_all();
        let returned = t1.elapsed();
        session.wait_detached(|_| {});
        // Removal returns at once; the kernel takes ~0.1 s per uprobe to let go.
        assert!(
            returned < Duration::from_secs(1),
            "remove_all blocked for {returned:?}"
        );
        eprintln!(
            "round {round}: attached {PROBES} probes ({links} uprobes) in {attached:?}; removal returned in {returned:?}, the kernel let go in {:?}",
            t1.elapsed()
        );
        assert!(
            periscope_links().is_empty(),
            "links left after round {round}"
        );
        assert_eq!(
            open_fds(),
            fds_before,
            "descriptors leaked in round {round}"
        );
        assert!(fx.is_running(), "the fixture died in round {round}");
    }
    assert!(checked > 100, "only {checked} Hot calls checked");
    // The target still answers, and computes what it always did.
    let rec = fx.run("run 1");
    assert!(rec.iter().any(|r| r["func"] == "main.Login"), "{rec:?}");
    drop(session);
    assert!(fx.is_running());
}
