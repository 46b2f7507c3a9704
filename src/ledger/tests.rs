//! The ledger against real SQLite files: idempotent writes, spans, and refusals.

use super::*;
use crate::ledger::event::Action;

fn ev(t: i64, action: Action, tag: Option<&str>, d: Option<Digest>) -> Event {
    Event {
        time: t,
        action,
        repository: "team/app".into(),
        tag: tag.map(String::from),
        digest: d,
    }
}

fn evidence(instance: &str, points: &[i64]) -> Evidence {
    Evidence {
        source: "log".into(),
        instance: instance.into(),
        tolerance: 60,
        points: points.to_vec(),
        ..Evidence::default()
    }
}

#[test]
fn recording_twice_changes_nothing_and_later_times_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let d = Digest([9; 32]);
    let mut l = Ledger::open_write(&path).unwrap();
    let events = [
        ev(100, Action::Pull, Some("v1"), Some(d)),
        ev(50, Action::Pull, Some("v1"), None),
        ev(40, Action::Push, Some("v2"), Some(d)),
    ];
    let ev1 = [evidence("a", &[10, 40, 50, 100])];
    l.record(&events, &ev1, &[]).unwrap();
    l.record(&events, &ev1, &[]).unwrap();
    let h = Ledger::open_read(&path).unwrap().history().unwrap();
    assert_eq!(h.tags.get(&("team/app".into(), "v1".into())), Some(&100));
    assert!(
        !h.tags.contains_key(&("team/app".into(), "v2".into())),
        "a push is no pull"
    );
    assert_eq!(h.digests.get(&("team/app".into(), d)), Some(&100));
    assert_eq!(h.covered(), Some((10, 100)));
    assert_eq!(h.streams[0].intervals.0, vec![(10, 100)]);
    assert_eq!(h.streams[0].last_event, Some(100));
    assert!(h.created.is_some());
}

#[test]
fn intervals_are_unioned_per_stream_and_a_gap_beyond_the_tolerance_stays_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let mut l = Ledger::open_write(&path).unwrap();
    l.record(&[], &[evidence("a", &[0, 50])], &[]).unwrap();
    // Within 60 s of the stored interval: bridged, as the next line of the same log.
    l.record(&[], &[evidence("a", &[100, 120])], &[]).unwrap();
    // A month later: its own interval.
    l.record(&[], &[evidence("a", &[3_000_000])], &[]).unwrap();
    l.record(&[], &[evidence("b", &[0, 10])], &[]).unwrap();
    let streams = l.streams().unwrap();
    assert_eq!(streams.len(), 2);
    assert_eq!(
        streams[0].intervals.0,
        vec![(0, 120), (3_000_000, 3_000_000)]
    );
    assert_eq!(streams[1].intervals.0, vec![(0, 10)]);
    let r = Refused {
        source: "webhook".into(),
        status: 401,
        reason: "missing or wrong bearer token".into(),
        detail: "from 127.0.0.1".into(),
        time: 7200,
    };
    l.record(
        &[],
        &[],
        &[r.clone(), r.clone(), Refused { time: 7300, ..r }],
    )
    .unwrap();
    let rej = l.rejections().unwrap();
    assert_eq!(
        (rej.len(), rej[0].count, rej[0].first, rej[0].last),
        (1, 3, 7200, 7300)
    );
}

#[test]
fn a_version_1_ledger_is_upgraded_on_write_and_its_spans_prove_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO meta VALUES ('format', 'regsweep-pull-ledger'), ('version', '1');
         CREATE TABLE refs (repository TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
           last_pull INTEGER, last_push INTEGER, last_delete INTEGER,
           PRIMARY KEY (repository, kind, name)) WITHOUT ROWID;
         INSERT INTO refs VALUES ('r', 'tag', 't', 5, NULL, NULL);
         CREATE TABLE spans (source TEXT PRIMARY KEY, covered_from INTEGER NOT NULL,
           covered_until INTEGER NOT NULL, first_event INTEGER, last_event INTEGER);
         INSERT INTO spans VALUES ('log', 0, 99999999999, NULL, NULL);",
    )
    .unwrap();
    drop(c);
    let e = Ledger::open_read(&path).err().unwrap().to_string();
    assert!(e.contains("version 1") && e.contains("upgrade"), "{e}");
    drop(Ledger::open_write(&path).unwrap());
    let h = Ledger::open_read(&path).unwrap().history().unwrap();
    assert!(h.streams.is_empty(), "the old span is no evidence");
    assert_eq!(
        h.tags.get(&("r".into(), "t".into())),
        Some(&5),
        "the pulls stay"
    );
}

#[test]
fn what_is_not_a_ledger_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let e = Ledger::open_read(&junk).err().unwrap().to_string();
    assert!(e.contains("not a SQLite database"), "{e}");
    assert!(Ledger::open_write(&junk).is_err());
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    let e = Ledger::open_write(&other).err().unwrap().to_string();
    assert!(e.contains("not a regsweep pull ledger"), "{e}");
    let missing = Ledger::open_read(&dir.path().join("none.db"))
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("pulls listen"), "{missing}");
    let e = Ledger::open_read(dir.path()).err().unwrap().to_string();
    assert!(e.contains("not a regular file"), "{e}");
}
