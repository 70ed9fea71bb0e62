//! `trace --metrics ADDR`: the probes' counters and latency histograms served for
//! Prometheus, scraped while the trace runs and compared with what the trace itself
//! says at the end and with what the fixture did.
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use periscope_tests::{FixtureProc, Variant, fixture, newest, periscope, read_until_attached};
use serde_json::Value;

/// GET `path` from `addr` (host:port): the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    try_get(addr, path).unwrap_or_else(|| panic!("GET http://{addr}{path} failed"))
}

fn try_get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// The value of the sample `name{labels}` in an exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// A trace of the kinds fixture with `--metrics` on a free port and `probe` (options
/// and functions): the trace, the endpoint's address, and the thread that collects its
/// JSON lines.
fn trace_with_metrics(
    fx: &FixtureProc,
    probe: &[&str],
) -> (
    std::process::Child,
    String,
    std::thread::JoinHandle<Vec<Value>>,
) {
    let mut child = Command::new(periscope())
        .args([
            "trace",
            "--pid",
            &fx.pid.to_string(),
            "--json",
            "--budget",
            "off",
        ])
        .args(["--metrics", "127.0.0.1:0"])
        .args(probe)
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
    (child, addr, lines)
}

/// Stops the trace; its summary lines (stats, latency or null).
fn stop(
    mut child: std::process::Child,
    lines: std::thread::JoinHandle<Vec<Value>>,
) -> (Value, Value) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let lines = lines.join().unwrap();
    // (A probe without latency has no latency line: null.)
    let of = |t: &str| {
        lines
            .iter()
            .find(|l| l["type"] == t)
            .cloned()
            .unwrap_or_default()
    };
    (of("stats"), of("latency"))
}

#[test]
fn a_scrape_holds_the_probes_counts_and_latency_as_the_trace_reports_them() {
    let tc = newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let (child, addr, lines) = trace_with_metrics(&fx, &["--args", "--latency", "main.Pace"]);
    let rec = fx.run("pace 4 3000");
    assert_eq!(rec[0]["calls"], 3000);
    // Published a quarter of a second at most after the last call.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let (status, text) = get(&addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    let (missing, _) = get(&addr, "/other");
    assert!(missing.contains("404"), "{missing}");
    let (st, lat) = stop(child, lines);
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
fn errors_are_counted_among_the_calls_whose_results_were_read() {
    // Divide returns an error when its divisor is 0: a third of the fixture's rounds.
    let mut fx = FixtureProc::start(&fixture("kinds", &newest(), Variant::Plain));
    let (child, addr, lines) = trace_with_metrics(&fx, &["--ret", "main.Divide"]);
    let record = fx.run("run 30");
    let divides: Vec<&Value> = record
        .iter()
        .filter(|r| r["func"] == "main.Divide")
        .collect();
    let failed = divides
        .iter()
        .filter(|r| !r["ret"]["err"].is_null())
        .count();
    assert_eq!(divides.len(), 30);
    assert!(failed > 0 && failed < 30, "{failed}");
    std::thread::sleep(std::time::Duration::from_millis(600));
    let (_, text) = get(&addr, "/metrics");
    stop(child, lines);
    let f = r#"{func="main.Divide"}"#;
    assert_eq!(sample(&text, &format!("periscope_returned_total{f}")), 30.0);
    assert_eq!(
        sample(&text, &format!("periscope_errors_total{f}")),
        failed as f64
    );
    // periscope's own process, under the usual names.
    assert!(sample(&text, "process_resident_memory_bytes") > 1e6);
    assert!(sample(&text, "process_cpu_seconds_total") > 0.0);
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

/// A query's one value from a Prometheus server's HTTP API (None until it has one).
fn query(prom: &str, q: &str) -> Option<f64> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (_, body) = try_get(prom, &format!("/api/v1/query?query={enc}"))?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn debians_prometheus_scrapes_the_counts_and_its_quantiles_agree_with_periscopes() {
    let prometheus = std::path::Path::new("/usr/bin/prometheus");
    assert!(
        prometheus.exists(),
        "no /usr/bin/prometheus: run `make setup`"
    );
    let tc = newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let (child, addr, lines) = trace_with_metrics(&fx, &["--args", "--latency", "main.Pace"]);
    let rec = fx.run("pace 4 3000");
    assert_eq!(rec[0]["calls"], 3000);
    // A Prometheus of its own, scraping every second into a scratch directory.
    let dir = std::env::temp_dir().join(format!("psc-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: periscope\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let web = format!("127.0.0.1:{port}");
    let mut prom = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stored = periscope_tests::eventually(30, || {
        query(&web, r#"periscope_calls_total{func="main.Pace"}"#) == Some(3000.0)
    });
    let q50 = query(
        &web,
        "histogram_quantile(0.5, periscope_latency_seconds_bucket)",
    );
    let q99 = query(
        &web,
        "histogram_quantile(0.99, periscope_latency_seconds_bucket)",
    );
    let recorded = query(&web, r#"periscope_recorded_total{func="main.Pace"}"#);
    let _ = prom.kill();
    let _ = prom.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (st, lat) = stop(child, lines);
    assert!(stored, "Prometheus never stored the 3000 calls");
    assert_eq!(recorded, st["emitted"].as_f64(), "{st}");
    // Each quantile within one bucket's width of periscope's own (a bucket of the
    // fixed bounds, the wider of the two around periscope's figure).
    let bounds: Vec<f64> = periscope_exporters::prometheus::BOUNDS_NS
        .iter()
        .map(|&b| b as f64 / 1e9)
        .collect();
    for (q, key) in [(q50, "p50_ns"), (q99, "p99_ns")] {
        let q = q.unwrap_or_else(|| panic!("no {key} from Prometheus"));
        let own = lat[key].as_f64().unwrap() / 1e9;
        let i = bounds.partition_point(|&b| b < own).min(bounds.len() - 1);
        let width = (bounds[i] - if i > 0 { bounds[i - 1] } else { 0.0 })
            .max(bounds.get(i + 1).map_or(0.0, |&b| b - bounds[i]));
        assert!(
            (q - own).abs() <= width,
            "{key}: Prometheus {q} s, periscope {own} s (bucket width {width} s)"
        );
    }
}

#[test]
fn the_shell_serves_metrics_for_the_probes_it_sets() {
    let tc = newest();
    let mut fx = FixtureProc::start(&fixture("kinds", &tc, Variant::Plain));
    let mut shell = periscope_tests::shell_command(&[
        "--budget",
        "off",
        "--metrics",
        "127.0.0.1:0",
        &fx.pid.to_string(),
    ])
    .spawn()
    .unwrap();
    let mut stdin = shell.stdin.take().unwrap();
    let mut out = BufReader::new(shell.stdout.take().unwrap());
    let mut said = String::new();
    let addr = loop {
        let mut l = String::new();
        assert!(
            out.read_line(&mut l).unwrap() > 0,
            "no metrics line: {said}"
        );
        said.push_str(&l);
        if let Some(a) = l.trim().strip_prefix("metrics at http://") {
            break a.trim_end_matches("/metrics").to_string();
        }
    };
    writeln!(stdin, "trace main.Pace --latency").unwrap();
    stdin.flush().unwrap();
    loop {
        let mut l = String::new();
        assert!(out.read_line(&mut l).unwrap() > 0, "no probe: {said}");
        said.push_str(&l);
        if l.contains("main.Pace") {
            break;
        }
    }
    fx.run("pace 4 1000");
    let f = r#"{func="main.Pace"}"#;
    let seen = periscope_tests::eventually(5, || {
        get(&addr, "/metrics")
            .1
            .contains(&format!("periscope_calls_total{f} 1000\n"))
    });
    let text = get(&addr, "/metrics").1;
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    assert!(shell.wait().unwrap().success());
    assert!(seen, "{text}");
    assert_eq!(
        sample(&text, &format!("periscope_latency_seconds_count{f}")),
        1000.0
    );
}
