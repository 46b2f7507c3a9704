//! The coverage algebra as a table: intervals from points, holes, instances, rejections.

use super::*;

const M: i64 = 60;
const H: i64 = 3600;
const D: i64 = 86_400;

type Ivs = &'static [(Time, Time)];

fn stream(instance: &str, source: &str, ivs: &[(Time, Time)]) -> Stream {
    Stream {
        source: source.into(),
        instance: instance.into(),
        process: String::new(),
        tolerance: 300,
        intervals: Intervals(ivs.to_vec()),
        last_event: ivs.last().map(|iv| iv.1),
        last_canary: None,
    }
}

fn ask(window: i64, now: Time) -> Ask {
    Ask {
        window: window as u64,
        now,
        max_lag: 0,
        expect: Expect::Seen,
    }
}

#[test]
fn points_within_the_tolerance_make_one_interval_and_a_silence_makes_two() {
    let cases: &[(&[Time], u64, Ivs)] = &[
        (&[], 300, &[]),
        (&[10], 300, &[(10, 10)]),
        (&[10, 300, 600], 300, &[(10, 600)]),
        (&[10, 311], 300, &[(10, 10), (311, 311)]),
        (&[10, 310], 300, &[(10, 310)]),
        // Out of order, as a retried delivery arrives after later events.
        (&[900, 10, 300, 600], 300, &[(10, 900)]),
        (&[0, 1000, 2000], 0, &[(0, 0), (1000, 1000), (2000, 2000)]),
    ];
    for (points, tol, want) in cases {
        let got = Intervals::from_points(points.iter().copied(), *tol);
        assert_eq!(got.0, want.to_vec(), "{points:?} tolerance {tol}");
    }
}

#[test]
fn adding_merges_what_overlaps_or_lies_within_the_bridge() {
    let mut iv = Intervals(vec![(0, 10), (100, 110), (200, 210)]);
    iv.add((105, 150), 0);
    assert_eq!(iv.0, vec![(0, 10), (100, 150), (200, 210)]);
    iv.add((160, 190), 10);
    assert_eq!(iv.0, vec![(0, 10), (100, 210)]);
    iv.add((20, 30), 0);
    assert_eq!(iv.0, vec![(0, 10), (20, 30), (100, 210)]);
    iv.add((-5, 500), 0);
    assert_eq!(iv.0, vec![(-5, 500)]);
    // In order (extended in place or appended), then one that bridges two.
    let mut iv = Intervals::default();
    for t in [0, 100, 200, 1000] {
        iv.add((t, t), 150);
    }
    assert_eq!(iv.0, vec![(0, 200), (1000, 1000)]);
    iv.add((300, 900), 150);
    assert_eq!(iv.0, vec![(0, 1000)]);
}

#[test]
fn holes_are_what_the_intervals_leave_of_a_range() {
    let iv = Intervals(vec![(10, 20), (30, 40)]);
    let cases: &[((Time, Time), Ivs)] = &[
        ((10, 40), &[(20, 30)]),
        ((0, 50), &[(0, 10), (20, 30), (40, 50)]),
        ((12, 18), &[]),
        ((15, 15), &[]),
        ((25, 25), &[(25, 25)]),
        ((41, 45), &[(41, 45)]),
        ((0, 5), &[(0, 5)]),
    ];
    for (range, want) in cases {
        assert_eq!(iv.holes(*range), want.to_vec(), "{range:?}");
    }
    assert_eq!(Intervals::default().holes((1, 2)), vec![(1, 2)]);
}

#[test]
fn two_logs_a_month_apart_leave_the_month_between_as_a_hole() {
    // The repro: a log of a day a month ago, and one of the last hour.
    let now = 100 * D;
    let a = Intervals::from_points([now - 30 * D, now - 29 * D - H], 300);
    let mut both = a.clone();
    both.extend(
        &Intervals::from_points((0..=12).map(|k| now - H + k * 5 * M), 300),
        300,
    );
    let s = [stream("default", "log", &both.0)];
    let why = judge(&s, &[], &ask(14 * D, now)).unwrap();
    assert!(
        why.contains("no evidence from") || why.contains("began"),
        "{why}"
    );
    // The same evidence answers for the last hour alone.
    assert!(judge(&s, &[], &ask(H, now)).is_none());
}

#[test]
fn the_window_is_judged_per_instance() {
    let now = 100 * D;
    let full = (now - 20 * D, now);
    let cases: Vec<(&str, Vec<Stream>, Expect, Option<&str>)> = vec![
        (
            "one instance, covered",
            vec![stream("a:5000", "webhook", &[full])],
            Expect::Seen,
            None,
        ),
        (
            "an instance that went silent in the window is a hole",
            vec![
                stream("a:5000", "webhook", &[full]),
                stream("b:5000", "webhook", &[(now - 20 * D, now - 3 * D)]),
            ],
            Expect::Seen,
            Some("instance b:5000: its evidence ends 3d ago"),
        ),
        (
            "an instance silent before the window is no longer asked about",
            vec![
                stream("a:5000", "webhook", &[full]),
                stream("b:5000", "webhook", &[(now - 40 * D, now - 30 * D)]),
            ],
            Expect::Seen,
            None,
        ),
        (
            "two expected, one seen",
            vec![stream("a:5000", "webhook", &[full])],
            Expect::AtLeast(2),
            Some("1 of the 2 expected instances"),
        ),
        (
            "a named instance that never delivered",
            vec![stream("a:5000", "webhook", &[full])],
            Expect::Named(vec!["a:5000".into(), "c:5000".into()]),
            Some("instance c:5000 delivered nothing at all"),
        ),
        (
            "a named list leaves a retired instance alone",
            vec![
                stream("a:5000", "webhook", &[full]),
                stream("b:5000", "webhook", &[(now - 20 * D, now - 3 * D)]),
            ],
            Expect::Named(vec!["a:5000".into()]),
            None,
        ),
        (
            "a webhook and a log of one instance cover it together, not the hole between",
            vec![
                stream("a:5000", "webhook", &[(now - 20 * D, now - 10 * D)]),
                stream("a:5000", "log", &[(now - 9 * D, now)]),
            ],
            Expect::Seen,
            Some("no evidence from"),
        ),
        (
            "restarted processes of one instance are unioned, their gap stays a hole",
            vec![
                stream("a:5000", "webhook", &[(now - 20 * D, now - 2 * H)]),
                stream("a:5000", "webhook", &[(now - 2 * H + 30, now)]),
            ],
            Expect::Seen,
            Some("a hole of 30s"),
        ),
        (
            "evidence in the future",
            vec![stream("a:5000", "webhook", &[(now - 20 * D, now + D)])],
            Expect::Seen,
            Some("in the future"),
        ),
        (
            "nothing recorded",
            vec![],
            Expect::Seen,
            Some("no evidence yet"),
        ),
        (
            "evidence that ended before the window",
            vec![stream("a:5000", "webhook", &[(now - 40 * D, now - 20 * D)])],
            Expect::Seen,
            Some("before the window starts"),
        ),
    ];
    for (what, streams, expect, want) in cases {
        let a = Ask {
            expect,
            ..ask(14 * D, now)
        };
        let got = judge(&streams, &[], &a);
        match (want, &got) {
            (None, None) => {}
            (Some(w), Some(g)) if g.contains(w) => {}
            _ => panic!("{what}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn a_rejection_in_the_window_refuses_and_one_before_it_does_not() {
    let now = 100 * D;
    let s = [stream("a:5000", "webhook", &[(now - 20 * D, now)])];
    let rej = |last: Time| Rejection {
        source: "webhook".into(),
        status: 401,
        reason: "missing or wrong bearer token".into(),
        count: 7,
        first: last - H,
        last,
        detail: "from 127.0.0.1".into(),
    };
    let why = judge(&s, &[rej(now - D)], &ask(14 * D, now)).unwrap();
    assert!(why.contains("7 deliveries were rejected"), "{why}");
    assert!(why.contains("401 missing or wrong bearer token"), "{why}");
    assert!(judge(&s, &[rej(now - 15 * D)], &ask(14 * D, now)).is_none());
}

#[test]
fn the_lag_lets_the_last_stretch_go_unproven_but_never_the_window_start_nor_currency() {
    let now = 100 * D;
    let s = [stream("a", "log", &[(now - 20 * D, now - 30 * M)])];
    let lagged = Ask {
        max_lag: H as u64,
        ..ask(14 * D, now)
    };
    assert!(judge(&s, &[], &lagged).is_none());
    let why = judge(&s, &[], &ask(14 * D, now)).unwrap();
    assert!(why.contains("ends 30m ago"), "{why}");
    // A window shorter than the lag still needs its first second proven; a window of 0
    // (ranking: "is it current") needs evidence within the lag of now.
    let short = |window: i64| Ask {
        window: window as u64,
        max_lag: H as u64,
        ..ask(0, now)
    };
    assert!(judge(&s, &[], &short(10 * M)).is_some());
    assert!(judge(&s, &[], &short(0)).is_none());
    let stale = [stream("a", "log", &[(now - 20 * D, now - 2 * H)])];
    let why = judge(&stale, &[], &short(0)).unwrap();
    assert!(why.contains("ends 2h ago"), "{why}");
}

#[test]
fn expectations_parse_as_a_count_or_names() {
    assert_eq!("2".parse::<Expect>(), Ok(Expect::AtLeast(2)));
    assert_eq!(
        "a:5000, b:5000".parse::<Expect>(),
        Ok(Expect::Named(vec!["a:5000".into(), "b:5000".into()]))
    );
    assert!("0".parse::<Expect>().is_err());
    assert!(" , ".parse::<Expect>().is_err());
}
