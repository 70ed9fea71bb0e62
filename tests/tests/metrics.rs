//! `trace --metrics ADDR`: the probes' counters and latency histograms served for
//! Prometheus, scraped while the trace runs and compared with what the trace itself
//! says at the end and with what the fixture did.
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use periscope_tests::{FixtureProc, Variant, fixture, newest, periscope, read_until_attached};
use serde_json::Value;

/// GET `path` from `addr` (host:port): the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the sample `name{labels}` in an exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[test]
fn a_scrape_holds_the_probes_counts_and_latency_as_the_trace_reports_them() {
    let tc = newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let mut child = Command::new(periscope())
        .args([
            "trace",
            "--pid",
            &fx.pid.to_string(),
            "--json",
            "--budget",
            "off",
        ])
        .args([
            "--metrics",
            "127.0.0.1:0",
            "--args",
            "--latency",
            "main.Pace",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (attached, said) = read_until_attached(&mut err);
    assert!(attached, "{said}");
    let addr = said
        .lines()
        .find_map(|l| l.strip_prefix("periscope: metrics at http://"))
        .and_then(|l| l.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address: {said}"))
        .to_string();
    // The calls are read as they come (a full pipe would hold the reader back).
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    let rec = fx.run("pace 4 3000");
    assert_eq!(rec[0]["calls"], 3000);
    // Published a quarter of a second at most after the last call.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let (status, text) = get(&addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    let (missing, _) = get(&addr, "/other");
    assert!(missing.contains("404"), "{missing}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let lines = lines.join().unwrap();
    let of = |t: &str| lines.iter().find(|l| l["type"] == t).unwrap().clone();
    let (st, lat) = (of("stats"), of("latency"));
    let f = r#"{func="main.Pace"}"#;
    // Counters: exactly the trace's own, and the fixture's calls.
    assert_eq!(sample(&text, &format!("periscope_calls_total{f}")), 3000.0);
    for (metric, key) in [
        ("periscope_calls_total", "hits"),
        ("periscope_recorded_total", "emitted"),
        ("periscope_lost_total", "lost"),
        ("periscope_filtered_total", "filtered"),
    ] {
        assert_eq!(
            sample(&text, &format!("{metric}{f}")),
            st[key].as_f64().unwrap(),
            "{metric}: {st}"
        );
    }
    assert_eq!(sample(&text, &format!("periscope_observed_ratio{f}")), 1.0);
    // The histogram: every call, cumulative, and its median in the bucket that holds
    // the trace's own p50 (or the one next to it: a kernel bucket straddling a bound
    // counts on the side of its midpoint).
    let count = sample(&text, &format!("periscope_latency_seconds_count{f}"));
    assert_eq!(count, lat["count"].as_f64().unwrap());
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest =
                l.strip_prefix(r#"periscope_latency_seconds_bucket{func="main.Pace",le=""#)?;
            let (le, v) = rest.split_once("\"} ")?;
            Some((le.parse().unwrap_or(f64::INFINITY), v.parse().unwrap()))
        })
        .collect();
    assert_eq!(buckets.len(), 25);
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().unwrap().1, count);
    let p50 = lat["p50_ns"].as_f64().unwrap() / 1e9;
    let at = buckets.iter().position(|&(_, c)| c >= count / 2.0).unwrap();
    let holds = buckets.iter().position(|&(le, _)| p50 <= le).unwrap();
    assert!(
        at.abs_diff(holds) <= 1,
        "median in bucket {at}, p50 {p50} s in {holds}: {buckets:?}"
    );
    // The slow calls spin 300 µs: none is counted below 250 µs unless fast.
    let slow = count - buckets.iter().find(|&&(le, _)| le == 0.00025).unwrap().1;
    assert!(
        (1400.0..=1600.0).contains(&slow),
        "{slow} calls above 250 µs: {buckets:?}"
    );
}

#[test]
fn an_address_that_cannot_be_listened_on_is_one_line_before_anything_attaches() {
    let tc = newest();
    let fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(periscope())
        .args([
            "trace",
            "--pid",
            &fx.pid.to_string(),
            "--metrics",
            &addr,
            "main.Pace",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--metrics") && err.contains(&addr), "{err}");
    assert!(!err.contains("attached"), "{err}");
}
