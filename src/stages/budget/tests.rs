//! The budget over a pure layout: four tags, each its own manifest (sized 101..104) and layer
//! (10..40) over one shared base blob (50); 560 bytes in all.

use crate::model::coverage::{Intervals, Stream};
use crate::model::pulls::PullHistory;
use crate::model::space::FsUsage;
use crate::model::{Layout, Link, Repo, Rules, Tag, Time};
use crate::pipeline::{Decide, decide_scoped};
use crate::policy::used::Used;
use crate::policy::{Policy, TagExplain};
use crate::testutil::{blobs, dg, image};

const NOW: Time = 1_800_000_000;
const DAY: Time = 86_400;
const RULES: Rules = Rules::without_grace(true);

fn layout() -> Layout {
    let repo = Repo {
        name: "a".into(),
        tags: (1..=4u8)
            .map(|i| Tag {
                name: format!("t{i}"),
                current: Some(Link {
                    digest: dg(100 + i),
                    mtime: NOW - (10 - i as Time) * DAY,
                }),
                index: vec![dg(100 + i)],
            })
            .collect(),
        revisions: (1..=4u8)
            .map(|i| crate::testutil::link(100 + i, 0))
            .collect(),
        layers_absent: [10, 20, 30, 40, 50]
            .iter()
            .map(|&n| crate::testutil::link(n, 0))
            .collect(),
        ..Repo::default()
    };
    let mut l = Layout {
        blobs: blobs(&[101, 102, 103, 104, 10, 20, 30, 40, 50]).into(),
        repos: vec![repo],
        ..Layout::default()
    };
    l.set_manifests((1..=4u8).map(|i| (dg(100 + i), Ok(image(&[i * 10, 50])))));
    crate::testutil::file_layers(&mut l);
    l
}

fn policy(budget: &str, extra: &str) -> Policy {
    let text = format!("version: 1\n{extra}budget: {budget}\n");
    Policy::parse(&text, std::path::Path::new("/p.yml")).unwrap_or_else(|e| panic!("{e}"))
}

/// The plan's deleted tags, its space state and the explanations.
fn run(
    p: &Policy,
    used: &Used,
    fs: Option<FsUsage>,
) -> (Vec<String>, crate::gc::plan::Plan, Vec<TagExplain>) {
    let l = layout();
    let how = Decide {
        policy: Some(p),
        used: Some(used),
        fs,
        ..Decide::default()
    };
    let (plan, explain) = decide_scoped(&l, &how, &RULES, NOW);
    let mut tags: Vec<String> = plan.tags.iter().map(|t| t.tag.clone()).collect();
    tags.sort();
    (tags, plan, explain)
}

#[test]
fn above_high_the_oldest_go_until_under_low_counted_exactly() {
    let (tags, plan, explain) = run(&policy("{high: 500, low: 350}", ""), &Used::default(), None);
    // t1 frees 111 (its manifest and layer), t2 122 more: 233 >= 560 - 350; the base stays.
    assert_eq!(tags, ["t1", "t2"]);
    let s = &plan.space[0];
    assert_eq!(
        (s.used, s.bytes_freed, s.projected, s.tags),
        (560, 233, 327, 2)
    );
    assert!(s.over && s.reached && s.blocked_by.is_empty());
    assert_eq!(
        s.note.as_deref(),
        Some("no --ledger: tags are ordered by push time only")
    );
    let why = explain
        .iter()
        .find(|e| e.tag == "t2")
        .unwrap()
        .reasons
        .join("; ");
    assert!(why.contains("budget: 2nd least valuable of 4"), "{why}");
    // Below high: nothing for the budget.
    let (tags, plan, _) = run(&policy("{high: 600, low: 100}", ""), &Used::default(), None);
    assert!(tags.is_empty() && !plan.space[0].over);
}

#[test]
fn keep_rules_and_protections_are_never_taken_and_what_they_hold_is_said() {
    let keep = "rules:\n  - name: first\n    tags: [t1]\n    keep: {always: true}\nprotect:\n  tags: [t4]\n";
    let (tags, plan, _) = run(
        &policy("{high: 500, low: 350}", keep),
        &Used::default(),
        None,
    );
    assert_eq!(tags, ["t2", "t3"]);
    // Far below what may go: all it may take, how far short, and who holds the rest.
    let (tags, plan2, _) = run(
        &policy("{high: 500, low: 50}", keep),
        &Used::default(),
        None,
    );
    assert_eq!(tags, ["t2", "t3"]);
    let s = &plan2.space[0];
    assert_eq!((s.projected, s.reached, s.short_by), (305, false, 255));
    let by: Vec<(&str, u64)> = s
        .blocked_by
        .iter()
        .map(|b| (b.by.as_str(), b.bytes))
        .collect();
    assert_eq!(by, [("protect.tags", 144), ("rule \"first\"", 111)]);
    assert!(plan.space[0].reached);
}

#[test]
fn shares_of_the_disk_need_a_disk() {
    let p = policy("{high: 85%, low: 80%}", "");
    let fs = FsUsage {
        size: 1000,
        used: 900,
    };
    let (tags, plan, _) = run(&p, &Used::default(), Some(fs));
    assert_eq!(tags, ["t1"]);
    assert_eq!(plan.space[0].projected_percent, Some(78.9));
    let (tags, plan, _) = run(&p, &Used::default(), None);
    assert!(tags.is_empty() && plan.space.is_empty());
    assert!(
        plan.refused[0].contains("a share of a filesystem"),
        "{:?}",
        plan.refused
    );
}

#[test]
fn with_a_ledger_never_pulled_goes_first_and_an_unproven_window_refuses() {
    let mut pulls = PullHistory::default();
    // t1, the oldest, was pulled yesterday; t3 forty days ago (outside the 30d window).
    pulls.tags.insert(("a".into(), "t1".into()), NOW - DAY);
    pulls.tags.insert(("a".into(), "t3".into()), NOW - 40 * DAY);
    pulls.streams = vec![Stream {
        source: "log".into(),
        instance: "default".into(),
        process: String::new(),
        tolerance: 300,
        intervals: Intervals(vec![(NOW - 60 * DAY, NOW)]),
        last_event: Some(NOW),
        last_canary: None,
    }];
    let used = Used {
        pulls: Some(pulls.clone()),
        ..Used::default()
    };
    let (tags, plan, _) = run(&policy("{high: 500, low: 350}", ""), &used, None);
    // Not pulled within the 30d window: t2, t3 and t4; by last pull, t2 and t4 (none at all)
    // before t3; by push, t2 first. t2 and t4 free 266 >= 210.
    assert_eq!(tags, ["t2", "t4"]);
    assert_eq!(
        plan.space[0].order,
        ["never_pulled", "last_pulled", "pushed"]
    );
    // A ledger that proves only the last 10 days cannot say what was pulled over 30.
    pulls.streams[0].intervals = Intervals(vec![(NOW - 10 * DAY, NOW)]);
    let used = Used {
        pulls: Some(pulls),
        ..Used::default()
    };
    let (tags, plan, _) = run(&policy("{high: 500, low: 350}", ""), &used, None);
    assert!(tags.is_empty());
    assert!(
        plan.refused[0].starts_with("budget: its order"),
        "{:?}",
        plan.refused
    );
}

/// `layout()` plus repository `b`, whose one tag shares the base blob 50 with `a`.
fn shared() -> Layout {
    let mut l = layout();
    l.repos.push(Repo {
        name: "b".into(),
        tags: vec![Tag {
            name: "u1".into(),
            current: Some(Link {
                digest: dg(105),
                mtime: NOW,
            }),
            index: vec![dg(105)],
        }],
        revisions: vec![crate::testutil::link(105, 0)],
        layers_absent: [50, 60]
            .iter()
            .map(|&n| crate::testutil::link(n, 0))
            .collect(),
        ..Repo::default()
    });
    l.blobs = blobs(&[101, 102, 103, 104, 105, 10, 20, 30, 40, 50, 60]).into();
    let mut m: Vec<_> = (1..=4u8)
        .map(|i| (dg(100 + i), Ok(image(&[i * 10, 50]))))
        .collect();
    m.push((dg(105), Ok(image(&[60, 50]))));
    l.set_manifests(m);
    crate::testutil::file_layers(&mut l);
    l
}

fn quota_run(quota: &str) -> (Vec<String>, crate::gc::plan::Plan) {
    let l = shared();
    let text = format!("version: 1\nquotas:\n  - {quota}\n");
    let p = Policy::parse(&text, std::path::Path::new("/p.yml")).unwrap_or_else(|e| panic!("{e}"));
    let used = Used::default();
    let how = Decide {
        policy: Some(&p),
        used: Some(&used),
        ..Decide::default()
    };
    let (plan, _) = decide_scoped(&l, &how, &RULES, NOW);
    let mut tags: Vec<String> = (plan.tags.iter())
        .map(|t| format!("{}:{}", t.repository, t.tag))
        .collect();
    tags.sort();
    (tags, plan)
}

#[test]
fn a_quota_counts_as_du_does_exclusive_or_total_over_shared_layers() {
    // a holds 560 bytes in all, 510 of them its own (b shares the base blob, 50): du's SIZE
    // and EXCLUSIVE, the two counts a quota takes.
    let du = crate::inspect::usage::repositories(&shared(), &[]);
    assert_eq!((du[0].bytes, du[0].exclusive_bytes), (560, 510));
    let (tags, plan) = quota_run("{repositories: [a], max: 400, by: exclusive}");
    assert_eq!(tags, ["a:t1"]);
    let s = &plan.space[0];
    assert_eq!(
        (s.what.as_str(), s.used, s.projected, s.reached),
        ("quota a", 510, 399, true)
    );
    // Counted in total, the shared base stays counted: one more tag goes.
    let (tags, plan) = quota_run("{repositories: [a], max: 400, by: total}");
    assert_eq!(tags, ["a:t1", "a:t2"]);
    assert_eq!((plan.space[0].used, plan.space[0].projected), (560, 327));
    // b is under its quota: nothing goes there; a pattern that matches nothing refuses.
    let (tags, plan) = quota_run("{repositories: ['*'], max: 400, by: total}");
    assert_eq!(tags, ["a:t1", "a:t2"]);
    assert!(!plan.space[1].over && plan.space[1].what == "quota b");
    let (tags, plan) = quota_run("{repositories: ['team-z/*'], max: 1GiB}");
    assert!(tags.is_empty());
    assert!(
        plan.refused[0].contains("matches no repository"),
        "{:?}",
        plan.refused
    );
    for (bad, says) in [
        ("{repositories: [a], max: 50%}", "a quota is a size"),
        ("{repositories: [], max: 1GiB}", "names no repository"),
        (
            "{repositories: [a], max: 1GiB, by: shared}",
            "unknown variant `shared`",
        ),
    ] {
        let text = format!("version: 1\nquotas:\n  - {bad}\n");
        let e = Policy::parse(&text, std::path::Path::new("/p.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(says) && e.contains("line 3"), "{bad}: {e}");
    }
}

#[test]
fn bad_budgets_are_refused_with_their_line() {
    for (bad, says) in [
        ("{high: 101%, low: 50%}", "at most 100"),
        ("{high: 80%, low: 85%}", "must be below budget.high"),
        (
            "{high: 80%, low: 1GiB}",
            "must both be shares of the disk or both sizes",
        ),
        (
            "{high: 2GiB, low: 1GiB, order: []}",
            "budget.order is empty",
        ),
        (
            "{high: 2GiB, low: 1GiB, order: [pushed, pushed]}",
            "names a key twice",
        ),
        (
            "{high: 2GiB, low: 1GiB, order: [size]}",
            "unknown variant `size`",
        ),
    ] {
        let text = format!("version: 1\nbudget: {bad}\n");
        let e = Policy::parse(&text, std::path::Path::new("/p.yml"))
            .unwrap_err()
            .to_string();
        // A value is placed on its line; a rule across keys names them.
        let placed = e.contains("line 2") || e.contains("budget.");
        assert!(
            e.starts_with("/p.yml: ") && e.contains(says) && placed,
            "{bad}: {e}"
        );
    }
}
