//! `make bench`, part 3: the TUI at 100,000 events per second. Each 50 ms frame takes
//! 5,000 new decoded calls (`update`) and draws the whole screen (`view`, into
//! ratatui's TestBackend at 200x50); the budget is a frame every 50 ms (20 fps)
//! with input answered within it. Prints the mean and worst frame time.
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use periscope::app::action::{Action, Effect, ProbeSample};
use periscope::app::state::State;
use periscope::app::update::update;
use periscope::app::view::{ViewCache, draw};
use periscope::session::Row;
use periscope_tests::{Variant, fixture, newest};
use probes_ebpf::{Call, GoValue, Stats};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const RATE: u64 = 100_000;
const FRAME: Duration = Duration::from_millis(50);
const FRAMES: usize = 200;

fn main() {
    let bin = fixture("kinds", &newest(), Variant::Plain);
    let cat = Arc::new(symbols::Catalog::open(&bin).unwrap());
    let login = cat
        .functions
        .iter()
        .position(|f| f.name == "main.Login")
        .unwrap();
    let mut s = State::new(cat, 1, "kinds".into());
    // Probe Login with everything, as a user would with `a r l`.
    s.fn_sel = s.visible.iter().position(|&f| f == login).unwrap();
    for k in ['a', 'r', 'l'] {
        let effects = update(
            &mut s,
            Action::Key(KeyEvent::new(KeyCode::Char(k), KeyModifiers::NONE)),
        );
        for e in effects {
            if let Effect::Set { func, settings } = e {
                update(
                    &mut s,
                    Action::Applied {
                        func,
                        settings: settings.clone(),
                        result: Ok(periscope::session::SetOk {
                            settings,
                            note: None,
                            per_call_ns: None,
                            points: None,
                            number: Some(1),
                        }),
                    },
                );
            }
        }
    }
    let mut term = Terminal::new(TestBackend::new(200, 50)).unwrap();
    let mut cache = ViewCache::default();
    let per_frame = RATE * FRAME.as_millis() as u64 / 1000;
    let users = ["alice", "bob", "carol", "mallory"];
    let mut buckets = vec![0u64; probes_ebpf::wire::PSC_HIST_BUCKETS as usize];
    let mut times = Vec::with_capacity(FRAMES);
    let mut n = 0u64;
    for frame in 0..FRAMES {
        let rows: Vec<Row> = (0..per_frame)
            .map(|_| {
                n += 1;
                let lat = 500 + n % 5000;
                buckets[probes_ebpf::hist::bucket_of(lat)] += 1;
                Row {
                    func: login,
                    at: login,
                    build: 0,
                    own: login,
                    stack: None,
                    place: None,
                    call: Call {
                        probe: 0,
                        pid: 1,
                        tid: 1,
                        goid: n % 64,
                        ts_ns: n * 10_000,
                        latency_ns: Some(lat),
                        args: Some(vec![
                            (
                                "username".into(),
                                GoValue::Str {
                                    s: users[n as usize % 4].into(),
                                    truncated: false,
                                },
                            ),
                            ("attempts".into(), GoValue::Int((n % 5) as i64)),
                        ]),
                        ret: Some(vec![
                            ("r0".into(), GoValue::Bool(n % 5 < 4)),
                            ("r1".into(), GoValue::Nil),
                        ]),
                        truncated: false,
                        unwatched: false,
                        stack: None,
                    },
                }
            })
            .collect();
        // The rows arrive decoded (the reader's cost is measured by bench-probes).
        let t0 = Instant::now();
        update(&mut s, Action::Events(rows));
        if frame % 20 == 0 {
            update(
                &mut s,
                Action::Sample(vec![ProbeSample {
                    func: login,
                    stats: Stats {
                        hits: n,
                        emitted: n,
                        ..Stats::default()
                    },
                    points: None,
                    split: Vec::new(),
                    processes: Vec::new(),
                    buckets: Some(buckets.clone()),
                    cost: None,
                }]),
            );
        }
        term.draw(|f| draw(f, &s, &mut cache)).unwrap();
        times.push(t0.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let worst = *times.last().unwrap();
    println!(
        "TUI at {RATE} events/s ({per_frame} new rows a frame, {} kept): update + draw {:.2} ms a frame on average, {:.2} ms at worst; budget {} ms (20 fps): {:.0}x headroom",
        s.rows.len(),
        mean.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        FRAME.as_millis(),
        FRAME.as_secs_f64() / worst.as_secs_f64()
    );
}
