//! The TUI without a terminal: `update` driven directly with keys and a synthetic event
//! stream, every screen rendered with ratatui's TestBackend and compared with insta
//! snapshots (addresses redacted). The catalog is the real one of the kinds fixture.
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use periscope::app::action::{Action, Effect, ProbeSample};
use periscope::app::state::{MAX_ROWS, Mode, Pane, State};
use periscope::app::update::update;
use periscope::app::view::{ViewCache, draw};
use periscope::session::{ProbeSpec, Row};
use periscope_tests::{Variant, fixture, newest};
use probes_ebpf::{Call, GoValue, Stats};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use symbols::Catalog;

fn catalog() -> Arc<Catalog> {
    static CAT: std::sync::OnceLock<Arc<Catalog>> = std::sync::OnceLock::new();
    CAT.get_or_init(|| {
        let bin = fixture("kinds", &newest(), Variant::Plain);
        Arc::new(Catalog::open(&bin).unwrap())
    })
    .clone()
}

fn state() -> State {
    let mut s = State::new(catalog(), 4242, "kinds".into());
    // As a calibration on this kind of VM measures it.
    s.hit_cost = Some(probes_ebpf::HitCost {
        emulated_ns: 500.0,
        stepped_ns: 14_000.0,
        nop5_ns: 500.0,
        latency_floor_ns: 600.0,
        latency_floor_stepped_ns: 6_000.0,
    });
    s
}

fn func(s: &State, name: &str) -> usize {
    s.cat.functions.iter().position(|f| f.name == name).unwrap()
}

fn press(s: &mut State, code: KeyCode) -> Vec<Effect> {
    update(s, Action::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn typed(s: &mut State, text: &str) {
    for c in text.chars() {
        press(s, KeyCode::Char(c));
    }
}

/// Performs effects as the runtime would, with every attach succeeding.
fn perform(s: &mut State, effects: Vec<Effect>) {
    for e in effects {
        if let Effect::Set { func, settings } = e {
            let more = update(
                s,
                Action::Applied {
                    func,
                    settings: settings.clone(),
                    result: Ok(periscope::session::SetOk {
                        settings,
                        note: None,
                        per_call_ns: Some(28_000.0),
                        points: Some(
                            "entry: first instruction, single-stepped; return: 2 RET(s), single-stepped"
                                .into(),
                        ),
                        number: Some(1),
                    }),
                },
            );
            perform(s, more);
        }
    }
}

fn select(s: &mut State, name: &str) {
    press(s, KeyCode::Esc);
    press(s, KeyCode::Char('/'));
    typed(s, name);
    press(s, KeyCode::Enter);
    let want = func(s, name);
    assert_eq!(s.selected_fn(), Some(want), "search for {name}");
}

fn render(s: &State, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut cache = ViewCache::default();
    term.draw(|f| draw(f, s, &mut cache)).unwrap();
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        out += line.trim_end();
        out.push('\n');
    }
    out
}

macro_rules! snapshot {
    ($name:expr, $text:expr) => {
        // Addresses and the fixture's line numbers change with the toolchain and the
        // fixture's source; what the screen shows around them is what is checked.
        insta::with_settings!({filters => vec![
            (r"0x[0-9a-f]{6}", "0x______"),
            (r"main\.go:\d+ ", "main.go:LINE "),
        ]}, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

fn str_(s: &str) -> GoValue {
    GoValue::Str {
        s: s.into(),
        truncated: false,
    }
}

/// A call of main.Login as the decoder would produce it.
fn login(s: &State, i: u64, user: &str, attempts: i64) -> Row {
    let frozen = attempts > 3;
    Row {
        func: func(s, "main.Login"),
        at: func(s, "main.Login"),
        build: 0,
        own: func(s, "main.Login"),
        stack: None,
        place: None,
        call: Call {
            probe: 0,
            pid: 4242,
            tid: 4243,
            goid: 18 + i % 3,
            ts_ns: 3_600_000_000_000 + i * 1_250_000,
            latency_ns: Some(800 + 150 * i),
            args: Some(vec![
                ("username".into(), str_(user)),
                ("attempts".into(), GoValue::Int(attempts)),
            ]),
            ret: Some(vec![
                ("r0".into(), GoValue::Bool(!frozen && !user.is_empty())),
                (
                    "r1".into(),
                    if frozen {
                        GoValue::Iface {
                            ty: "*errors.errorString".into(),
                            value: Some(Box::new(str_("account frozen"))),
                        }
                    } else {
                        GoValue::Nil
                    },
                ),
            ]),
            truncated: false,
            unwatched: false,
            stack: None,
        },
    }
}

fn logins(s: &State, n: u64) -> Vec<Row> {
    let users = ["alice", "bob", "carol"];
    (0..n)
        .map(|i| login(s, i, users[i as usize % 3], (i % 6) as i64))
        .collect()
}

/// Probes Login with everything and feeds it calls and a latency sample.
fn busy_state() -> State {
    let mut s = state();
    select(&mut s, "main.Login");
    for k in ['a', 'r', 'l'] {
        let e = press(&mut s, KeyCode::Char(k));
        perform(&mut s, e);
    }
    let rows = logins(&s, 40);
    update(&mut s, Action::Events(rows));
    let login = func(&s, "main.Login");
    let mut buckets = vec![0u64; probes_ebpf::wire::PSC_HIST_BUCKETS as usize];
    for (v, n) in [
        (900u64, 120u64),
        (1_100, 300),
        (1_500, 90),
        (4_000, 12),
        (60_000, 2),
    ] {
        buckets[probes_ebpf::hist::bucket_of(v)] += n;
    }
    for (second, hits) in [(1u64, 150u64), (2, 330), (3, 524)] {
        let _ = second;
        update(
            &mut s,
            Action::Sample(vec![ProbeSample {
                func: login,
                stats: Stats {
                    hits,
                    emitted: hits,
                    ..Stats::default()
                },
                points: None,
                split: Vec::new(),
                processes: Vec::new(),
                buckets: Some(buckets.clone()),
                cost: Some(periscope::session::ProbeCost {
                    per_call_ns: 28_600.0,
                    overhead_pct: Some(2.4),
                    watch: None,
                }),
            }]),
        );
    }
    s
}

#[test]
fn functions_screen_lists_own_code_and_searches() {
    let mut s = state();
    // Only the program's own functions by default, all of the fixture's among them.
    assert!(s.visible.len() < 90, "{} functions listed", s.visible.len());
    assert!(
        s.visible
            .iter()
            .all(|&i| s.cat.functions[i].name.starts_with("main."))
    );
    snapshot!("functions", render(&s, 160, 40));
    press(&mut s, KeyCode::Char('/'));
    typed(&mut s, "setinf");
    assert_eq!(s.fn_name(s.visible[0]), "main.SetInfo");
    snapshot!("functions_search", render(&s, 160, 40));
    // `s` shows the runtime too.
    press(&mut s, KeyCode::Esc);
    press(&mut s, KeyCode::Char('s'));
    assert!(s.visible.len() > 1000);
    assert!(
        s.visible
            .iter()
            .any(|&i| s.cat.functions[i].name == "runtime.mallocgc")
    );
}

#[test]
fn keys_toggle_probes_and_mark_the_function() {
    let mut s = state();
    select(&mut s, "main.Login");
    let login = func(&s, "main.Login");
    let e = press(&mut s, KeyCode::Char('a'));
    assert_eq!(
        e,
        vec![Effect::Set {
            func: login,
            settings: ProbeSpec {
                args: true,
                ..ProbeSpec::default()
            }
        }]
    );
    perform(&mut s, e);
    let e = press(&mut s, KeyCode::Char('l'));
    perform(&mut s, e);
    assert_eq!(s.probes[&login].marker(), "A·L");
    assert_eq!(s.lat_sel, Some(login));
    // Turning everything off removes the probe.
    for k in ['a', 'l'] {
        let e = press(&mut s, KeyCode::Char(k));
        perform(&mut s, e);
    }
    assert!(s.probes.is_empty());
    assert_eq!(s.lat_sel, None);
    // An inlined-only function cannot be probed, and says why.
    select(&mut s, "main.inc");
    assert!(press(&mut s, KeyCode::Char('a')).is_empty());
    assert!(s.message.as_ref().unwrap().0.contains("inlined"));
}

#[test]
fn events_and_latency_screen() {
    let s = busy_state();
    let text = render(&s, 160, 40);
    assert!(text.contains(r#"username="carol" attempts=5"#), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(r#"username="bob" attempts=4 "#)
                && l.contains("r0=false r1=*errors.")),
        "{text}"
    );
    // The probe's counters, from the last sample.
    assert!(text.contains("hits 524  emitted 524  filtered 0"), "{text}");
    // What the probe costs the target: per call in the details, in total in the bar.
    assert!(text.contains("cost 2.4% CPU"), "{text}");
    assert!(
        text.contains("probe: args ret latency  ~28.6µs/call, 2.4% CPU"),
        "{text}"
    );
    snapshot!("events_latency", text);
}

#[test]
fn condition_editor_checks_as_you_type_and_completes() {
    let mut s = state();
    select(&mut s, "main.SetInfo");
    let setinfo = func(&s, "main.SetInfo");
    press(&mut s, KeyCode::Char('c'));
    typed(&mut s, "u.N");
    press(&mut s, KeyCode::Tab);
    let Mode::Condition { input, .. } = &s.mode else {
        panic!("not editing: {:?}", s.mode)
    };
    assert_eq!(input.text, "u.Name");
    typed(&mut s, " == 7");
    let Mode::Condition { error, .. } = &s.mode else {
        panic!()
    };
    let (col, msg) = error.clone().expect("a type error");
    assert_eq!(col, 11, "{msg}");
    snapshot!("condition_error", render(&s, 160, 40));
    // On a narrow terminal the error wraps, whole: its last word is on the screen.
    let last = msg.split_whitespace().last().unwrap().to_string();
    let narrow = render(&s, 40, 24);
    assert!(narrow.contains(&last), "{msg:?} cut:\n{narrow}");
    // Enter with an error applies nothing.
    assert!(press(&mut s, KeyCode::Enter).is_empty());
    for _ in 0..4 {
        press(&mut s, KeyCode::Backspace);
    }
    typed(&mut s, r#"== "alice" && ad"#);
    press(&mut s, KeyCode::Tab);
    // A string alone is not a condition: caught before anything reaches the kernel.
    let Mode::Condition { input, error, .. } = &s.mode else {
        panic!()
    };
    assert_eq!(input.text, r#"u.Name == "alice" && address"#);
    assert!(error.as_ref().is_some_and(|e| e.0 == 22), "{error:?}");
    assert!(press(&mut s, KeyCode::Enter).is_empty());
    typed(&mut s, r#" != """#);
    let e = press(&mut s, KeyCode::Enter);
    assert_eq!(
        e,
        vec![Effect::Set {
            func: setinfo,
            settings: ProbeSpec {
                args: true,
                condition: Some(r#"u.Name == "alice" && address != """#.into()),
                ..ProbeSpec::default()
            }
        }]
    );
    // An attach that fails keeps the editor open and says why on the message line.
    update(
        &mut s,
        Action::Applied {
            func: setinfo,
            settings: ProbeSpec::default(),
            result: Err(periscope::session::SetError::TargetGone(
                "the process is gone".into(),
            )),
        },
    );
    assert!(matches!(&s.mode, Mode::Condition { error: None, .. }));
    assert!(s.message.as_ref().unwrap().0.contains("gone"));
}

#[test]
fn table_follows_pauses_scrolls_filters_and_stays_bounded() {
    let mut s = busy_state();
    press(&mut s, KeyCode::Tab);
    assert_eq!(s.focus, Pane::Events);
    // Space pauses: new rows are kept but not shown.
    press(&mut s, KeyCode::Char(' '));
    let before = s.shown_rows().count();
    let more = logins(&s, 5);
    update(&mut s, Action::Events(more));
    assert_eq!(s.shown_rows().count(), before);
    press(&mut s, KeyCode::Char(' '));
    assert_eq!(s.shown_rows().count(), before + 5);
    // Scrolling up leaves follow mode; Enter opens that call.
    press(&mut s, KeyCode::Up);
    press(&mut s, KeyCode::Up);
    let sel = s.ev_sel.expect("scrolled");
    assert_eq!(sel, s.next_seq - 2);
    press(&mut s, KeyCode::Enter);
    assert_eq!(
        s.mode,
        Mode::Detail {
            seq: sel,
            scroll: 0
        }
    );
    snapshot!("call_detail", render(&s, 160, 40));
    press(&mut s, KeyCode::Esc);
    press(&mut s, KeyCode::Char('G'));
    assert_eq!(s.ev_sel, None);
    // f shows one function's calls.
    press(&mut s, KeyCode::Char('f'));
    assert_eq!(s.ev_filter, Some(func(&s, "main.Login")));
    press(&mut s, KeyCode::Char('f'));
    assert_eq!(s.ev_filter, None);
    // Memory stays bounded whatever the rate.
    for _ in 0..3 {
        let rows = logins(&s, MAX_ROWS as u64 / 2);
        update(&mut s, Action::Events(rows));
    }
    assert_eq!(s.rows.len(), MAX_ROWS);
    assert!(s.dropped_rows > 0);
}

#[test]
fn help_comes_from_the_keymap_and_exit_is_shown() {
    let mut s = state();
    press(&mut s, KeyCode::Char('?'));
    let text = render(&s, 160, 44);
    for b in periscope::app::keymap::KEYS {
        assert!(text.contains(b.help), "help lacks {:?}", b.help);
    }
    snapshot!("help", text);
    press(&mut s, KeyCode::Char('x'));
    assert_eq!(s.mode, Mode::Normal);
    let e = update(&mut s, Action::TargetExited("pid 4242 exited".into()));
    assert_eq!(e, vec![Effect::DetachAll]);
    assert!(render(&s, 160, 40).contains("TARGET EXITED"));
    let e = press(&mut s, KeyCode::Char('q'));
    assert_eq!(e, vec![Effect::DetachAll, Effect::Quit]);
    assert!(s.quit);
}

#[test]
fn sampling_and_removal_by_keys() {
    let mut s = state();
    select(&mut s, "main.Login");
    let login = func(&s, "main.Login");
    // `n` on a function without a probe starts one that captures arguments.
    press(&mut s, KeyCode::Char('n'));
    press(&mut s, KeyCode::Backspace);
    typed(&mut s, "x1");
    typed(&mut s, "0");
    let Mode::Sample { input, .. } = &s.mode else {
        panic!("{:?}", s.mode)
    };
    assert_eq!(input.text, "10", "digits only");
    let e = press(&mut s, KeyCode::Enter);
    assert_eq!(
        e,
        vec![Effect::Set {
            func: login,
            settings: ProbeSpec {
                args: true,
                sample: 10,
                ..ProbeSpec::default()
            }
        }]
    );
    perform(&mut s, e);
    assert_eq!(s.mode, Mode::Normal);
    assert!(s.probes[&login].describe().contains("1/10"));
    // Zero is refused with a message, and nothing is applied.
    press(&mut s, KeyCode::Char('n'));
    press(&mut s, KeyCode::Backspace);
    press(&mut s, KeyCode::Backspace);
    typed(&mut s, "0");
    assert!(press(&mut s, KeyCode::Enter).is_empty());
    assert!(s.message.as_ref().unwrap().1, "an error message");
    press(&mut s, KeyCode::Esc);
    // `x` removes the probe.
    let e = press(&mut s, KeyCode::Char('x'));
    perform(&mut s, e);
    assert!(s.probes.is_empty());
}

#[test]
fn help_scrolls_on_a_small_terminal() {
    // At 80x24 the keys do not fit: the popup says which lines it shows, scrolls to
    // the last, and closes on any other key.
    let mut s = state();
    press(&mut s, KeyCode::Char('?'));
    let first = render(&s, 80, 24);
    assert!(first.contains("Everywhere"), "{first}");
    assert!(first.contains("lines 1–"), "{first}");
    assert!(!first.contains("Ctrl-C quits"), "{first}");
    press(&mut s, KeyCode::Char('G'));
    let last = render(&s, 80, 24);
    assert!(last.contains("Ctrl-C quits"), "{last}");
    assert!(!last.contains("Everywhere"), "{last}");
    press(&mut s, KeyCode::Char('g'));
    assert!(render(&s, 80, 24).contains("Everywhere"));
    press(&mut s, KeyCode::Esc);
    assert_eq!(s.mode, Mode::Normal);
}

#[test]
fn every_screen_draws_at_any_size() {
    let mut s = busy_state();
    // Each screen, and a text only it shows once there is room for it.
    for (mode_keys, shows) in [
        (vec![], "Functions"),
        (vec![KeyCode::Char('?')], "Keys"),
        (vec![KeyCode::Tab, KeyCode::Enter], "goroutine"),
        (vec![KeyCode::Char('c')], "Condition"),
        (vec![KeyCode::Char('n')], "Sampling"),
        (
            vec![KeyCode::Char('/'), KeyCode::Char('z'), KeyCode::Char('z')],
            "zz",
        ),
    ] {
        select(&mut s, "main.Login");
        s.focus = Pane::Functions;
        s.mode = Mode::Normal;
        for k in &mode_keys {
            press(&mut s, *k);
        }
        // Tiny terminals must not panic; from 80x24 the screen says what it is.
        for (w, h) in [(1, 1), (10, 3), (40, 10)] {
            render(&s, w, h);
        }
        for (w, h) in [(80, 24), (300, 100)] {
            let text = render(&s, w, h);
            assert!(
                text.contains(shows),
                "{mode_keys:?} at {w}x{h}: no {shows:?}\n{text}"
            );
        }
    }
}

#[test]
fn a_new_search_selects_its_best_match_before_any_key_acts() {
    let mut s = state();
    select(&mut s, "main.SetInfo");
    // "in" matches main.SetInfo too: the selection must still move to the best match,
    // so that `a` right after the search probes what the search found.
    press(&mut s, KeyCode::Char('/'));
    typed(&mut s, "in");
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.fn_sel, 0);
    let best = s.selected_fn().unwrap();
    assert_eq!(best, s.visible[0]);
    let effects = press(&mut s, KeyCode::Char('a'));
    assert!(
        matches!(&effects[..], [Effect::Set { func, .. }] if *func == best),
        "{effects:?}"
    );
}

#[test]
fn b_sets_the_budget_and_budget_notes_show() {
    let mut s = state();
    assert_eq!(s.budget, Some(5.0));
    press(&mut s, KeyCode::Char('b'));
    assert!(matches!(s.mode, Mode::Budget { .. }));
    // The prompt starts with the budget in force; replace it.
    for _ in 0..4 {
        press(&mut s, KeyCode::Backspace);
    }
    typed(&mut s, "2%");
    let e = press(&mut s, KeyCode::Enter);
    assert_eq!(e, vec![Effect::SetBudget(Some(2.0))]);
    assert_eq!(s.mode, Mode::Normal);
    update(&mut s, Action::BudgetSet(Some(2.0)));
    assert_eq!(s.budget, Some(2.0));
    assert!(render(&s, 160, 44).contains("budget 2%"));
    // A bad budget says what to write and keeps the prompt.
    press(&mut s, KeyCode::Char('b'));
    typed(&mut s, "x");
    assert!(press(&mut s, KeyCode::Enter).is_empty());
    assert!(render(&s, 160, 44).contains("such as 5% or 0.5%, or off"));
    press(&mut s, KeyCode::Esc);
    update(
        &mut s,
        Action::BudgetNote("budget 2%: main.Login: return points attached 40% of the time".into()),
    );
    assert!(render(&s, 160, 44).contains("return points attached 40% of the time"));
}

#[test]
fn the_table_is_in_entry_order_though_calls_arrive_at_their_return() {
    let mut s = busy_state();
    let before = s.rows.len();
    // An enclosing call returns after the two it made: it arrives last, entered first.
    let (outer, a, b) = (
        login(&s, 100, "outer", 0),
        login(&s, 101, "a", 0),
        login(&s, 102, "b", 0),
    );
    update(&mut s, Action::Events(vec![a]));
    // The selection follows its row when an earlier-entered call goes in before it.
    let sel = s.rows.back().unwrap().seq;
    s.ev_sel = Some(sel);
    update(&mut s, Action::Events(vec![b, outer]));
    let users: Vec<String> = s
        .rows
        .iter()
        .skip(before)
        .map(|r| r.row.call.args.as_ref().unwrap()[0].1.render())
        .collect();
    assert_eq!(users, [r#""outer""#, r#""a""#, r#""b""#]);
    let first = s.rows.front().unwrap().seq;
    assert!(
        s.rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == first + i as u64)
    );
    assert_eq!(
        s.row(s.ev_sel.unwrap())
            .unwrap()
            .row
            .call
            .args
            .as_ref()
            .unwrap()[0]
            .1
            .render(),
        r#""a""#
    );
}

#[test]
fn capture_editor_checks_each_path_and_sets_them() {
    let mut s = state();
    select(&mut s, "main.SetInfo");
    let setinfo = func(&s, "main.SetInfo");
    press(&mut s, KeyCode::Char('C'));
    typed(&mut s, "address, u.Nme");
    let Mode::Condition { error, .. } = &s.mode else {
        panic!("not editing: {:?}", s.mode)
    };
    // The column is the bad field's within the whole line.
    let (col, msg) = error.clone().expect("an unknown field");
    assert_eq!(col, 12, "{msg}");
    assert!(msg.contains("has no field `Nme`"), "{msg}");
    assert!(render(&s, 120, 40).contains("Capture first"));
    assert!(press(&mut s, KeyCode::Enter).is_empty());
    press(&mut s, KeyCode::Backspace);
    press(&mut s, KeyCode::Backspace);
    typed(&mut s, "ame");
    let e = press(&mut s, KeyCode::Enter);
    assert_eq!(
        e,
        vec![Effect::Set {
            func: setinfo,
            settings: ProbeSpec {
                args: true,
                paths: vec!["address".into(), "u.Name".into()],
                ..ProbeSpec::default()
            }
        }]
    );
}

#[test]
fn log_editor_checks_the_template_and_rows_show_their_message() {
    let mut s = state();
    select(&mut s, "main.Login");
    let login = func(&s, "main.Login");
    press(&mut s, KeyCode::Char('L'));
    typed(&mut s, "login {usernme}");
    let Mode::Condition { error, .. } = &s.mode else {
        panic!("not editing: {:?}", s.mode)
    };
    let (col, msg) = error.clone().expect("an unknown name");
    assert_eq!(col, 8, "{msg}");
    assert!(render(&s, 120, 40).contains("Log message"));
    assert!(press(&mut s, KeyCode::Enter).is_empty());
    for _ in 0..8 {
        press(&mut s, KeyCode::Backspace);
    }
    typed(&mut s, "username} try {attempts}: {r0}");
    let e = press(&mut s, KeyCode::Enter);
    // The template names a result: results are read too.
    assert_eq!(
        e,
        vec![Effect::Set {
            func: login,
            settings: ProbeSpec {
                args: true,
                ret: true,
                ..ProbeSpec::default()
            }
        }]
    );
    perform(&mut s, e);
    let rows = logins(&s, 6);
    update(&mut s, Action::Events(rows));
    let text = render(&s, 160, 40);
    assert!(text.contains(r#"login "alice" try 0: true"#), "{text}");
    assert!(text.contains(r#"login "bob" try 1: "#), "{text}");
    assert!(
        text.contains("log: 'login {username} try {attempts}: {r0}'"),
        "{text}"
    );
}

#[test]
fn the_callers_view_ranks_call_paths_by_calls_and_by_latency() {
    let mut s = state();
    select(&mut s, "main.Login");
    let e = press(&mut s, KeyCode::Char('t'));
    let Effect::Set { settings, .. } = &e[0] else {
        panic!("{e:?}")
    };
    assert!(settings.stack && settings.args, "{settings:?}");
    perform(&mut s, e);
    let at = |func: &str, line: u32| symbols::pclntab::Position {
        func: func.into(),
        file: "/src/shop/main.go".into(),
        line,
    };
    let busy = Arc::new(periscope::stack::Stack::from(vec![
        at("main.handleLogin", 42),
        at("main.main", 7),
    ]));
    let slow = Arc::new(periscope::stack::Stack::from(vec![
        at("main.retryLogin", 88),
        at("main.main", 9),
    ]));
    let mut rows = Vec::new();
    for i in 0..30 {
        let mut r = login(&s, i, "alice", 1);
        let (frames, lat) = if i % 10 == 0 {
            (&slow, 50_000_000)
        } else {
            (&busy, 1_000)
        };
        r.call.latency_ns = Some(lat);
        r.stack = Some(periscope::session::Callers::Frames(Arc::clone(frames)));
        rows.push(r);
    }
    update(&mut s, Action::Events(rows));
    press(&mut s, KeyCode::Char('T'));
    assert!(matches!(s.mode, Mode::Callers { .. }), "{:?}", s.mode);
    let text = render(&s, 160, 40);
    let by_calls = text.find("by calls").unwrap();
    let by_latency = text.find("by total latency").unwrap();
    // The busy path leads by calls, the slow one by time.
    let first_after = |from: usize| {
        let rest = &text[from..];
        let busy = rest.find("handleLogin").unwrap_or(usize::MAX);
        let slow = rest.find("retryLogin").unwrap_or(usize::MAX);
        if busy < slow { "busy" } else { "slow" }
    };
    assert_eq!(first_after(by_calls), "busy", "{text}");
    assert_eq!(first_after(by_latency), "slow", "{text}");
    assert!(
        text.contains("27") && text.contains("handleLogin:main.go:42"),
        "{text}"
    );
    // Enter on a call shows its callers too.
    press(&mut s, KeyCode::Esc);
    s.focus = Pane::Events;
    press(&mut s, KeyCode::Enter);
    assert!(render(&s, 160, 40).contains("main.main (main.go:"));
}

#[test]
fn latency_split_by_a_value_shows_histograms_side_by_side() {
    let mut s = busy_state();
    let login = func(&s, "main.Login");
    s.focus = Pane::Latency;
    press(&mut s, KeyCode::Char('v'));
    typed(&mut s, "r1 != nil");
    let Mode::Condition { error, .. } = &s.mode else {
        panic!("{:?}", s.mode)
    };
    assert_eq!(error, &None);
    assert!(render(&s, 160, 40).contains("Split latency by"));
    let e = press(&mut s, KeyCode::Enter);
    let Effect::Set { settings, .. } = &e[0] else {
        panic!("{e:?}")
    };
    assert_eq!(settings.by.as_deref(), Some("r1 != nil"));
    perform(&mut s, e);
    let mut fast = vec![0u64; probes_ebpf::wire::PSC_HIST_BUCKETS as usize];
    fast[probes_ebpf::hist::bucket_of(900)] = 70;
    let mut slow = fast.clone();
    slow[probes_ebpf::hist::bucket_of(900)] = 0;
    slow[probes_ebpf::hist::bucket_of(2_000_000)] = 5;
    update(
        &mut s,
        Action::Sample(vec![ProbeSample {
            func: login,
            stats: Stats::default(),
            points: None,
            buckets: None,
            cost: None,
            split: vec![("false".into(), fast), ("true".into(), slow)],
            processes: Vec::new(),
        }]),
    );
    let text = render(&s, 200, 50);
    assert!(text.contains("r1 != nil = false"), "{text}");
    assert!(text.contains("r1 != nil = true"), "{text}");
    assert!(
        text.contains("70 calls") && text.contains("5 calls"),
        "{text}"
    );
    // At 80×24 the columns would be a dozen characters: a table, a row per value.
    let text = render(&s, 80, 24);
    let row = |value: &str| {
        text.lines()
            .find(|l| l.contains(&format!("┃{value} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no row for {value}:\n{text}"))
    };
    assert!(row("false").contains("false 70 "), "{text}");
    assert!(row("true").contains("true 5 "), "{text}");
    insta::assert_snapshot!("split_80x24", text);
}

#[test]
fn long_names_are_cut_from_the_left_keeping_the_package() {
    use periscope::app::view::events::short;
    assert_eq!(
        short("cmd/vendor/github.com/google/pprof/internal/driver.(*webInterface).render"),
        "driver.(*webInterface).render"
    );
    assert_eq!(short("main.(*Store).Login"), "(*Store).Login");
    assert_eq!(
        short("net/http.(*ServeMux).ServeHTTP"),
        "http.(*ServeMux).ServeHTTP"
    );
    assert_eq!(short("fmt.Sprintf"), "fmt.Sprintf");
}

#[test]
fn the_call_popup_scrolls_and_copies_the_call_as_json() {
    use base64::Engine as _;
    let mut s = busy_state();
    s.focus = Pane::Events;
    press(&mut s, KeyCode::Enter);
    assert!(
        matches!(s.mode, Mode::Detail { scroll: 0, .. }),
        "{:?}",
        s.mode
    );
    press(&mut s, KeyCode::Char('j'));
    press(&mut s, KeyCode::Char('j'));
    assert!(
        matches!(s.mode, Mode::Detail { scroll: 2, .. }),
        "{:?}",
        s.mode
    );
    press(&mut s, KeyCode::Char('k'));
    assert!(
        matches!(s.mode, Mode::Detail { scroll: 1, .. }),
        "{:?}",
        s.mode
    );
    // In a short terminal the popup says which lines it shows.
    let text = render(&s, 120, 8);
    assert!(text.contains("lines 2–"), "{text}");
    press(&mut s, KeyCode::Char('g'));
    assert!(matches!(s.mode, Mode::Detail { scroll: 0, .. }));
    press(&mut s, KeyCode::Char('y'));
    let osc = s.clipboard.take().expect("OSC 52 for the terminal");
    let b64 = osc
        .strip_prefix("\x1b]52;c;")
        .and_then(|r| r.strip_suffix('\x07'))
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(j["func"], "main.Login");
    assert!(j["args"]["username"].is_string(), "{j}");
    // Any other key closes it.
    press(&mut s, KeyCode::Char('x'));
    assert_eq!(s.mode, Mode::Normal);
}

#[test]
fn a_condition_stays_with_its_function_when_the_probe_goes() {
    let mut s = state();
    select(&mut s, "main.SetInfo");
    let setinfo = func(&s, "main.SetInfo");
    press(&mut s, KeyCode::Char('c'));
    typed(&mut s, r#"u.Name == "alice""#);
    let e = press(&mut s, KeyCode::Enter);
    perform(&mut s, e);
    // `a` turns off the arguments: nothing left to capture, the probe goes...
    let e = press(&mut s, KeyCode::Char('a'));
    assert_eq!(
        e,
        vec![Effect::Set {
            func: setinfo,
            settings: ProbeSpec::default()
        }]
    );
    perform(&mut s, e);
    assert!(!s.probes.contains_key(&setinfo));
    assert!(
        s.message.as_ref().unwrap().0.contains("kept"),
        "{:?}",
        s.message
    );
    // ...and `l` brings it back with its condition.
    let e = press(&mut s, KeyCode::Char('l'));
    let Effect::Set { settings, .. } = &e[0] else {
        panic!("{e:?}")
    };
    assert!(settings.latency);
    assert_eq!(settings.condition.as_deref(), Some(r#"u.Name == "alice""#));
}

#[test]
fn w_writes_the_tables_calls_as_json_lines() {
    let mut s = busy_state();
    let dir = std::env::temp_dir().join(format!("periscope-w-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    s.save_dir = dir.clone();
    press(&mut s, KeyCode::Char('w'));
    let msg = s.message.clone().unwrap().0;
    assert!(msg.starts_with("wrote 40 calls to "), "{msg}");
    let path = std::path::PathBuf::from(
        msg.trim_start_matches("wrote 40 calls to ")
            .trim_end_matches(" (readable by you only)"),
    );
    // Captured values can be secrets: the file is its owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 40);
    assert!(
        lines
            .iter()
            .all(|l| l["type"] == "call" && l["func"] == "main.Login")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A call of pprof's `driver.(*webInterface).render` as the decoder would produce it.
fn render_call(func: usize, i: u64) -> Row {
    let views = ["flamegraph", "top", "source", "peek", "disasm"];
    let view = views[i as usize % views.len()];
    let uri = format!("/ui/{view}?f=runtime.mallocgc&si=cpu&sort=flat&i={i}");
    Row {
        func,
        at: func,
        build: 0,
        own: func,
        stack: None,
        place: None,
        call: Call {
            probe: 0,
            pid: 4242,
            tid: 4243,
            goid: 47_822 + i,
            ts_ns: 3_600_000_000_000 + i * 2_500_000,
            latency_ns: Some(1_800_000 + 90_000 * i),
            args: Some(vec![
                ("ui".into(), GoValue::Ptr(0xc0001a2000)),
                (
                    "w".into(),
                    GoValue::Iface {
                        ty: "*net/http.response".into(),
                        value: None,
                    },
                ),
                (
                    "req".into(),
                    GoValue::Struct(vec![
                        ("Method".into(), str_("GET")),
                        ("Host".into(), str_("127.0.0.1:18080")),
                        ("RequestURI".into(), str_(&uri)),
                    ]),
                ),
                ("tmpl".into(), str_(view)),
                ("rpt".into(), GoValue::Ptr(0xc000f3e000)),
                (
                    "errList".into(),
                    GoValue::List {
                        items: vec![],
                        len: 0,
                    },
                ),
                (
                    "legend".into(),
                    GoValue::List {
                        items: vec![str_("File: mk"), str_("Type: cpu")],
                        len: 6,
                    },
                ),
                (
                    "data".into(),
                    GoValue::NotCaptured(probes_ebpf::value::Missing::Budget),
                ),
            ]),
            ret: None,
            truncated: false,
            unwatched: false,
            stack: None,
        },
    }
}

/// cmd/pprof's real catalog (17,000 functions, long vendored names) at 120 and 300
/// columns: the search's best match, names cut from the left keeping their package,
/// whole goroutine ids, arguments as wide as the terminal allows.
#[test]
fn a_large_real_program_at_120_and_300_columns() {
    let cat = Arc::new(Catalog::open(&periscope_tests::pprof()).unwrap());
    let mut s = State::new(cat, 4242, "pprof".into());
    s.hit_cost = state().hit_cost;
    press(&mut s, KeyCode::Char('/'));
    typed(&mut s, "render");
    press(&mut s, KeyCode::Enter);
    let webui = s.selected_fn().unwrap();
    assert_eq!(
        s.cat.functions[webui].name,
        "cmd/vendor/github.com/google/pprof/internal/driver.(*webInterface).render"
    );
    for k in ['a', 'l'] {
        let e = press(&mut s, KeyCode::Char(k));
        perform(&mut s, e);
    }
    // The request's URI, named with `C`, comes first in each row.
    press(&mut s, KeyCode::Char('C'));
    typed(&mut s, "req.RequestURI");
    let e = press(&mut s, KeyCode::Enter);
    perform(&mut s, e);
    let rows = (0..30).map(|i| render_call(webui, i)).collect();
    update(&mut s, Action::Events(rows));
    for w in [120u16, 300] {
        s.focus = Pane::Functions;
        let text = render(&s, w, 24);
        snapshot!(format!("pprof_functions_{w}"), text);
        s.focus = Pane::Events;
        let text = render(&s, w, 24);
        // Whole goroutine ids and the short name, at any width.
        assert!(text.contains("g47851"), "{text}");
        assert!(text.contains("driver.(*webInterface).render"), "{text}");
        assert!(text.contains(r#"req.RequestURI="/u"#), "{text}");
        if w == 300 {
            assert!(
                text.contains(r#"req.RequestURI="/ui/disasm?f=runtime.mallocgc"#),
                "{text}"
            );
        }
        snapshot!(format!("pprof_events_{w}"), text);
    }
}

/// A stripped target: the status bar says what it offers, the list shows raw words,
/// the condition editor completes and checks them as unsigned integers, and a row
/// shows them in hex.
#[test]
fn a_stripped_target_shows_raw_words_and_says_so() {
    let cat = Arc::new(Catalog::open(&fixture("kinds", &newest(), Variant::Stripped)).unwrap());
    let mut s = State::new(cat, 4242, "kinds-stripped".into());
    select(&mut s, "main.SetInfo");
    let setinfo = func(&s, "main.SetInfo");
    let text = render(&s, 160, 40);
    assert!(text.contains("no DWARF: raw argument words"), "{text}");
    assert!(
        text.contains("main.SetInfo(a0 word64, a1 word64, a2 word64)"),
        "{text}"
    );
    press(&mut s, KeyCode::Char('c'));
    typed(&mut s, "a");
    press(&mut s, KeyCode::Tab);
    typed(&mut s, "2 > 3");
    let Mode::Condition { input, error, .. } = &s.mode else {
        panic!("not editing: {:?}", s.mode)
    };
    assert_eq!(input.text, "a2 > 3");
    assert!(error.is_none(), "{error:?}");
    // Not a string: a word compares as an unsigned integer.
    typed(&mut s, " && a1 == \"x\"");
    let Mode::Condition { error, .. } = &s.mode else {
        panic!()
    };
    assert!(error.is_some());
    for _ in 0.." && a1 == \"x\"".len() {
        press(&mut s, KeyCode::Backspace);
    }
    let e = press(&mut s, KeyCode::Enter);
    perform(&mut s, e);
    let row = Row {
        func: setinfo,
        at: setinfo,
        build: 0,
        own: setinfo,
        stack: None,
        place: None,
        call: Call {
            probe: 0,
            pid: 4242,
            tid: 4243,
            goid: 21,
            ts_ns: 3_600_000_000_000,
            latency_ns: None,
            args: Some(vec![
                ("a0".into(), GoValue::Word(0xc000012345)),
                ("a1".into(), GoValue::Word(0x4b2e5a)),
                ("a2".into(), GoValue::Word(5)),
            ]),
            ret: None,
            truncated: false,
            unwatched: false,
            stack: None,
        },
    };
    update(&mut s, Action::Events(vec![row]));
    s.focus = Pane::Events;
    let text = render(&s, 160, 40);
    assert!(
        text.contains("a0=0xc000012345 a1=0x4b2e5a a2=0x5"),
        "{text}"
    );
}

#[test]
fn control_keys_edit_prompts_as_readline_does_and_are_never_typed() {
    let mut s = state();
    let ctrl = |s: &mut State, c: char| {
        update(
            s,
            Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)),
        )
    };
    // The budget prompt holds "5%": Ctrl-U clears it (it was typed as `u`: "5%u1%").
    press(&mut s, KeyCode::Char('b'));
    ctrl(&mut s, 'u');
    typed(&mut s, "1%");
    assert_eq!(
        press(&mut s, KeyCode::Enter),
        vec![Effect::SetBudget(Some(1.0))]
    );
    // Ctrl-H is a backspace, Ctrl-W takes a word, Ctrl-A and Ctrl-K the line's head.
    press(&mut s, KeyCode::Char('b'));
    ctrl(&mut s, 'u');
    typed(&mut s, "2%x");
    ctrl(&mut s, 'h');
    assert_eq!(
        press(&mut s, KeyCode::Enter),
        vec![Effect::SetBudget(Some(2.0))]
    );
    press(&mut s, KeyCode::Char('b'));
    ctrl(&mut s, 'u');
    typed(&mut s, "off 3%");
    ctrl(&mut s, 'w');
    ctrl(&mut s, 'a');
    ctrl(&mut s, 'k');
    typed(&mut s, "4%");
    assert_eq!(
        press(&mut s, KeyCode::Enter),
        vec![Effect::SetBudget(Some(4.0))]
    );
}

#[test]
fn calls_of_several_processes_say_which_made_each() {
    let mut s = state();
    s.program = Some("3 process(es) of /srv/shop".into());
    select(&mut s, "main.Login");
    for k in ['a', 'r', 'l'] {
        let e = press(&mut s, KeyCode::Char(k));
        perform(&mut s, e);
    }
    let mut rows = logins(&s, 6);
    for (i, r) in rows.iter_mut().enumerate() {
        r.call.pid = [4242, 5150, 61_003][i % 3];
    }
    update(&mut s, Action::Events(rows));
    // The probe in each process: the details pane lists them, the busiest first.
    let login = func(&s, "main.Login");
    let in_process = |pid: u32, hits: u64, overhead: f64| periscope::per_process::InProcess {
        pid,
        hits,
        unwatched: 0,
        unseen_est: 0,
        unseen_at_least: false,
        observed_pct: 100.0,
        per_call_ns: Some(1_200.0),
        overhead_pct: Some(overhead),
    };
    update(
        &mut s,
        Action::Sample(vec![ProbeSample {
            func: login,
            stats: Stats {
                hits: 6,
                emitted: 6,
                ..Stats::default()
            },
            buckets: None,
            cost: None,
            points: None,
            split: Vec::new(),
            processes: vec![
                in_process(4242, 2, 0.4),
                in_process(5150, 3, 1.9),
                in_process(61_003, 1, 0.1),
            ],
        }]),
    );
    let text = render(&s, 160, 36);
    assert!(text.contains("3 process(es) of /srv/shop"), "{text}");
    let order: Vec<usize> = [
        "pid 5150: 3 hits, ~1.2µs/call, 1.9% of its CPU",
        "pid 4242: 2 hits",
        "pid 61003: 1 hits",
    ]
    .iter()
    .map(|l| text.find(l).unwrap_or_else(|| panic!("{l}: {text}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    let header = text.lines().find(|l| l.contains("ARGUMENTS")).unwrap();
    assert!(
        header.contains("TIME") && header.contains(" PID "),
        "{header}"
    );
    for pid in ["4242", "5150", "61003"] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!(" {pid} ")) && l.contains("username=")),
            "{pid}: {text}"
        );
    }
    snapshot!("several_processes", text);
}

#[test]
fn w_writes_the_probes_as_a_probe_file_the_agent_accepts() {
    use periscope::probe_file::ProbeFile;
    let mut s = state();
    let dir = std::env::temp_dir().join(format!("periscope-tui-probes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    s.save_dir = dir.clone();
    let bin = periscope_tests::fixture(
        "kinds",
        &periscope_tests::newest(),
        periscope_tests::Variant::Plain,
    );
    s.exe_path = bin.display().to_string();
    // Nothing to write yet: said.
    press(&mut s, KeyCode::Char('W'));
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    select(&mut s, "main.SetInfo");
    for k in ['a', 'r'] {
        let e = press(&mut s, KeyCode::Char(k));
        perform(&mut s, e);
    }
    press(&mut s, KeyCode::Char('c'));
    typed(&mut s, "u.Name == \"alice\"");
    let e = press(&mut s, KeyCode::Enter);
    perform(&mut s, e);
    select(&mut s, "main.Login");
    let e = press(&mut s, KeyCode::Char('l'));
    perform(&mut s, e);
    press(&mut s, KeyCode::Char('W'));
    let written: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let text = std::fs::read_to_string(&written[0]).unwrap();
    let file = ProbeFile::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(file.check(&text), vec![], "{text}");
    let probes = &file.programs[0].get_ref().probes;
    assert_eq!(probes.len(), 2, "{text}");
    for p in probes {
        let p = p.get_ref();
        let f = func(&s, p.func.get_ref());
        assert_eq!(Some(&p.spec()), s.probes.get(&f), "{text}");
    }
    assert!(
        text.contains(r#"condition = 'u.Name == "alice"'"#)
            || text.contains(r#"u.Name == \"alice\""#),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
