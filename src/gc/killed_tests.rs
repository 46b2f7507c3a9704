use super::*;
use crate::gc::plan::{BlobRemoval, LinkRemoval, ManifestRemoval, TagRemoval, UploadRemoval};
use crate::model::{Repo, Tag};
use crate::testutil::{blobs, dg, link};

/// A plan taking two of everything from repository `a`.
fn plan() -> Plan {
    let tag = |t: &str| TagRemoval {
        repository: "a".into(),
        tag: t.into(),
        digest: None,
        rule: "r".into(),
        age_seconds: None,
    };
    let link = |n: u8| LinkRemoval {
        repository: "a".into(),
        tag: None,
        digest: dg(n),
    };
    Plan {
        tags: vec![tag("t1"), tag("t2")],
        manifests: [1, 2]
            .map(|n| ManifestRemoval {
                repository: "a".into(),
                digest: dg(n),
                reason: "untagged".into(),
            })
            .into_iter()
            .collect(),
        layer_links: [link(10), link(20)].into_iter().collect(),
        blobs: [10u8, 20, 101]
            .map(|n| BlobRemoval {
                digest: dg(n),
                size: n as u64,
                linked_from: Default::default(),
                mtime: 0,
            })
            .into_iter()
            .collect(),
        uploads: vec![UploadRemoval {
            repository: "a".into(),
            id: "u1".into(),
            size: 3,
        }],
        ..Plan::default()
    }
}

/// What a sweep of `plan()` killed half way left: one of each kind still there.
fn after() -> Layout {
    let mut l = Layout {
        blobs: blobs(&[20, 102]).into(),
        repos: vec![Repo {
            name: "a".into(),
            tags: vec![Tag {
                name: "t2".into(),
                current: Some(link(2, 0)),
                index: vec![],
            }],
            revisions: vec![link(2, 0)],
            layers_absent: vec![link(20, 0)],
            ..Repo::default()
        }],
        ..Layout::default()
    };
    crate::testutil::file_layers(&mut l);
    l
}

#[test]
fn a_killed_sweep_is_accounted_by_what_of_its_plan_is_gone() {
    let j = Journal::new("gc", &plan(), vec![]);
    let back = Journal::parse(&j.to_bytes(u64::MAX)).unwrap();
    assert_eq!(back, j);
    let runs = back.account(&after());
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    let d = |n: u8| dg(n).to_string();
    assert_eq!(r.tags_removed, ["a:t1"]);
    assert_eq!(r.manifests_removed, [format!("a@{}", d(1))]);
    assert_eq!(r.layer_links_removed, [format!("a@{}", d(10))]);
    assert_eq!(r.blobs_removed, [dg(10), dg(101)]);
    assert_eq!(r.uploads_removed, ["a/_uploads/u1"]);
    assert_eq!(r.bytes_freed, 111);
    assert_eq!(r.planned.blobs, 3);
    assert!(
        r.describe(true).contains(
            "of the 2 tags, 2 manifests, 2 layer links, 3 blobs, 1 upload it planned, it removed 1 tag, 1 manifest, 1 layer link, 2 blobs, 1 upload (111 B)"
        ),
        "{}",
        r.describe(true)
    );
    // The run after it carries it on: killed too, both are accounted, oldest first.
    let next = Journal::new("apply", &Plan::default(), runs.clone());
    let all = Journal::parse(&next.to_bytes(u64::MAX))
        .unwrap()
        .account(&after());
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], runs[0]);
    assert_eq!(all[1].command, "apply");
    assert_eq!(all[1].removed(), Counts::default());
}

#[test]
fn the_journal_written_from_the_plan_is_the_journal_of_it() {
    let j = Journal::new("gc", &plan(), vec![]);
    let mut back = Journal::parse(&Journal::bytes_of("gc", &plan(), vec![], u64::MAX)).unwrap();
    back.started_at.clone_from(&j.started_at); // the two may straddle a second
    assert_eq!(back, j);
    assert!(!j.blobs.is_empty() && !j.layer_links.is_empty() && !j.tags.is_empty());
}

#[test]
fn a_plan_too_large_to_journal_keeps_its_counts_and_says_so() {
    let j = Journal::new("gc", &plan(), vec![]);
    let small = Journal::parse(&j.to_bytes(100)).unwrap();
    let of = Journal::parse(&Journal::bytes_of("gc", &plan(), vec![], 100)).unwrap();
    assert!(of.unlisted && of.blobs.is_empty() && of.planned == small.planned);
    assert!(small.unlisted && small.blobs.is_empty());
    let r = &small.account(&Layout::default())[0];
    assert_eq!(r.planned.blobs, 3);
    assert!(r.blobs_removed.is_empty());
    assert!(r.describe(true).contains("cannot be told"));
    // Without the lock, the journal's run may still be sweeping: it says so.
    assert!(r.describe(false).contains("is sweeping now"));
}

#[test]
fn a_crafted_journal_is_refused() {
    let j = Journal::new("gc", &plan(), vec![]);
    let text = String::from_utf8(j.to_bytes(u64::MAX)).unwrap();
    for bad in [
        text.replace("sweep-journal/v1", "sweep-journal/v9"),
        text.replace("\"t1\"", "\"\\u001b[2J\""),
        text.replace("[\"a\",\"t2\"]", "[\"A/../b\",\"t2\"]"),
        text.replace("\"u1\"", "\"u 1\""),
        text.replace("\"gc\"", "\"g\\nc\""),
        "{".into(),
    ] {
        assert!(Journal::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}
