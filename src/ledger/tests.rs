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
    l.record("log", &events, Some((10, 200))).unwrap();
    l.record("log", &events, Some((10, 200))).unwrap();
    let h = Ledger::open_read(&path).unwrap().history().unwrap();
    assert_eq!(h.tags.get(&("team/app".into(), "v1".into())), Some(&100));
    assert!(
        !h.tags.contains_key(&("team/app".into(), "v2".into())),
        "a push is no pull"
    );
    assert_eq!(h.digests.get(&("team/app".into(), d)), Some(&100));
    assert_eq!(h.covered(), Some((10, 200)));
    assert_eq!(h.spans[0].first_event, Some(40));
    l.record("log", &[], Some((5, 150))).unwrap();
    let spans = l.spans().unwrap();
    assert_eq!((spans[0].covered_from, spans[0].covered_until), (5, 200));
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
