use super::*;
use crate::model::Link;
use crate::model::manifest::Manifest;
use crate::testutil::dg;

const NOW: Time = 1_800_000_000;
const DAY: Time = 86_400;

fn parse(yaml: &str) -> Result<Policy> {
    Policy::parse(yaml, Path::new("/p/policy.yml"))
}

fn policy(yaml: &str) -> Policy {
    parse(yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// A repository whose tags are `(name, digest byte, age in days)`.
fn repo(name: &str, tags: &[(&str, u8, i64)]) -> Repo {
    Repo {
        name: name.into(),
        tags: tags
            .iter()
            .map(|&(t, d, age)| Tag {
                name: t.into(),
                current: Some(Link {
                    digest: dg(d),
                    mtime: NOW - age * DAY,
                }),
                index: vec![dg(d)],
            })
            .collect(),
        revisions: tags
            .iter()
            .map(|&(_, d, _)| Link {
                digest: dg(d),
                mtime: 0,
            })
            .collect(),
        ..Repo::default()
    }
}

/// The layout with an image manifest for every revision.
fn images(mut layout: Layout) -> Layout {
    let mut m = Vec::new();
    for r in &layout.repos {
        for rev in &r.revisions {
            m.push((
                rev.digest,
                Ok(Manifest {
                    blobs: vec![],
                    config: None,
                    children: vec![],
                    subject: None,
                    problems: vec![],
                }),
            ));
        }
    }
    layout.set_manifests(m);
    layout
}

fn run(p: &Policy, repos: Vec<Repo>) -> Evaluation {
    let layout = images(Layout {
        repos,
        ..Layout::default()
    });
    evaluate(p, &layout, &HashMap::new(), NOW)
}

/// The deleted tags of repository `r`, sorted.
fn deleted(ev: &Evaluation, repo: &str) -> Vec<String> {
    let mut v: Vec<String> = ev
        .explain
        .iter()
        .filter(|e| e.repository == repo && e.delete)
        .map(|e| e.tag.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn the_documented_example_parses() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("deployed.txt"),
        format!("# in production\n{}\n\n", dg(7)),
    )
    .unwrap();
    let yaml = r#"
version: 1
age_from: pushed
rules:
  - name: releases
    repositories: ["acme/**", "!acme/sandbox/**"]
    tags: ["v*", "!*-rc*"]
    keep: {newest: 10}
  - name: branch builds
    tags: ["main-*", "release-*"]
    group_by: '^(?P<branch>[a-z]+)-'
    keep: {newest: 5, within: 90d}
  - name: pull requests
    tags: ["pr-*"]
    delete: {older_than: 14d}
  - name: semver
    tags: ["v*"]
    keep: {semver: 3}
protect:
  tags: ["latest", "stable"]
  digests_file: deployed.txt
"#;
    let path = dir.path().join("policy.yml");
    std::fs::write(&path, yaml).unwrap();
    let p = Policy::load(&path).unwrap();
    assert_eq!(p.rules.len(), 4);
    assert!(p.protect_digests.contains(&dg(7)));
    assert!(p.rules[0].repositories.is_match("acme/app"));
    assert!(!p.rules[0].repositories.is_match("acme/sandbox/x"));
    assert!(!p.rules[0].tags.is_match("v1.0-rc1"));
}

#[test]
fn errors_name_the_line() {
    let cases = [
        (
            "version: 1\nrules:\n  - name: a\n    kep: {newest: 1}\n",
            "line 4",
            "unknown field `kep`",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    tags: ['[z-a]']\n    keep: {newest: 1}\n",
            "line 4",
            "bad glob",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    delete: {older_than: 14x}\n",
            "line 4",
            "unknown unit",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    tags: ['re:(']\n    delete: {}\n",
            "line 4",
            "bad regular expression",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    group_by: 'abc'\n    delete: {}\n",
            "line 4",
            "no capture group",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    delete: {older_than: 14}\n",
            "line 4",
            "give a unit",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    keep: {newest: -1}\n",
            "line 4",
            "newest",
        ),
        ("version: 1\nrules: [\n", "line", "did not find"),
    ];
    for (yaml, line, what) in cases {
        let e = parse(yaml).unwrap_err().to_string();
        assert!(e.starts_with("/p/policy.yml: "), "{e}");
        assert!(e.contains(line) && e.contains(what), "{yaml}\n=> {e}");
    }
}

#[test]
fn a_bad_regular_expression_is_shown_as_written_on_its_own_line() {
    let yaml = "version: 1\nrules:\n  - name: a\n    repositories: '**'\n    tags:\n      - v*\n      - 're:v[0-9'\n    delete: {}\n";
    let e = parse(yaml).unwrap_err().to_string();
    assert!(e.contains("rules[0].tags") && e.contains("line 7"), "{e}");
    assert!(e.contains("\n    v[0-9\n") && !e.contains("(?:"), "{e}");
}

#[test]
fn rule_shape_errors() {
    for (yaml, what) in [
        ("version: 2\n", "version 2"),
        (
            "version: 1\nrules:\n  - name: a\n    keep: {newest: 1}\n    delete: {}\n",
            "both keep and delete",
        ),
        (
            "version: 1\nrules:\n  - name: a\n",
            "neither keep nor delete",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    keep: {}\n",
            "at least one of",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    keep: {newest: 0}\n",
            "count of 0",
        ),
        (
            "version: 1\nrules:\n  - {name: a, delete: {}}\n  - {name: a, delete: {}}\n",
            "two rules are named",
        ),
        ("rules: []\n", "missing field `version`"),
        ("version: 1\nage_from: built\n", "unknown variant"),
    ] {
        let e = parse(yaml).unwrap_err().to_string();
        assert!(e.contains(what), "{yaml}\n=> {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.txt"), "sha256:nope\n").unwrap();
    let path = dir.path().join("p.yml");
    std::fs::write(&path, "version: 1\nprotect:\n  digests_file: d.txt\n").unwrap();
    let e = Policy::load(&path).unwrap_err().to_string();
    assert!(e.contains("d.txt") && e.contains("line 1"), "{e}");
}

#[test]
fn globs_and_regexes() {
    let m = Matcher::compile(&["acme/*".into()]).unwrap();
    assert!(m.is_match("acme/app") && !m.is_match("acme/a/b") && !m.is_match("acme"));
    let m = Matcher::compile(&["acme/**".into()]).unwrap();
    assert!(m.is_match("acme/app") && m.is_match("acme/a/b"));
    let m = Matcher::compile(&["v{1,2}.*".into(), "!v2.9*".into()]).unwrap();
    assert!(
        m.is_match("v1.0") && m.is_match("v2.1") && !m.is_match("v2.9.1") && !m.is_match("v3.0")
    );
    let m = Matcher::compile(&["pr-?".into()]).unwrap();
    assert!(m.is_match("pr-1") && !m.is_match("pr-12"));
    // Anchored at both ends, unlike zot's.
    let m = Matcher::compile(&["re:v[0-9]+".into()]).unwrap();
    assert!(m.is_match("v12") && !m.is_match("xv12") && !m.is_match("v12-rc"));
    let m = Matcher::compile(&["!latest".into()]).unwrap();
    assert!(m.is_match("v1") && !m.is_match("latest"));
    assert!(Matcher::compile(&["!".into()]).is_err());
}

#[test]
fn newest_counts_per_repository_with_ties_by_version_then_name() {
    let p = policy("version: 1\nrules:\n  - name: r\n    keep: {newest: 2}\n");
    let ev = run(
        &p,
        vec![
            repo(
                "a",
                &[("t1", 1, 5), ("t2", 2, 3), ("t3", 3, 3), ("t4", 4, 1)],
            ),
            repo("b", &[("x", 5, 100), ("y", 6, 200)]),
        ],
    );
    // t4 is youngest; t2 and t3 tie, and t3 wins: the later name.
    assert_eq!(deleted(&ev, "a"), vec!["t1", "t2"]);
    assert!(deleted(&ev, "b").is_empty());
    let t3 = ev.explain.iter().find(|e| e.tag == "t2").unwrap();
    assert_eq!(t3.rule.as_deref(), Some("r"));
    assert!(
        t3.reasons[0].contains("not among the newest 2"),
        "{:?}",
        t3.reasons
    );
    // Pushed in the same second (S3's whole seconds): the highest version stays, by semver
    // (v1.10.0 over v1.2.0), and any version over a name that is none.
    let p = policy("version: 1\nrules:\n  - name: r\n    keep: {newest: 1}\n");
    let same = [
        ("v1.0.0", 1, 3),
        ("v1.2.0", 2, 3),
        ("v1.10.0", 3, 3),
        ("zz", 4, 3),
    ];
    let ev = run(&p, vec![repo("a", &same)]);
    assert_eq!(deleted(&ev, "a"), vec!["v1.0.0", "v1.2.0", "zz"]);
}

#[test]
fn within_and_any_criterion_keeps() {
    let p = policy("version: 1\nrules:\n  - name: r\n    keep: {newest: 1, within: 10d}\n");
    let ev = run(
        &p,
        vec![repo("a", &[("old", 1, 30), ("mid", 2, 9), ("new", 3, 1)])],
    );
    assert_eq!(deleted(&ev, "a"), vec!["old"]);
}

#[test]
fn delete_rules_older_than_and_all() {
    let p = policy(
        "version: 1\nrules:\n  - name: prs\n    tags: ['pr-*']\n    delete: {older_than: 14d}\n  - name: tmp\n    tags: ['tmp-*']\n    delete: {}\n",
    );
    let ev = run(
        &p,
        vec![repo(
            "a",
            &[
                ("pr-1", 1, 20),
                ("pr-2", 2, 3),
                ("tmp-x", 3, 0),
                ("main", 4, 100),
            ],
        )],
    );
    assert_eq!(deleted(&ev, "a"), vec!["pr-1", "tmp-x"]);
    let main = ev.explain.iter().find(|e| e.tag == "main").unwrap();
    assert_eq!(main.reasons, vec!["no rule matches it"]);
}

#[test]
fn a_keeping_rule_beats_a_deleting_one_whatever_the_order() {
    let a = "  - name: keep-v\n    tags: ['v*']\n    keep: {semver: 1}\n";
    let b = "  - name: drop-old\n    delete: {older_than: 10d}\n";
    for rules in [format!("{a}{b}"), format!("{b}{a}")] {
        let p = policy(&format!("version: 1\nrules:\n{rules}"));
        let ev = run(
            &p,
            vec![repo(
                "a",
                &[
                    ("v1.0.0", 1, 50),
                    ("v2.0.0", 2, 40),
                    ("dev", 3, 30),
                    ("new", 4, 1),
                ],
            )],
        );
        assert_eq!(deleted(&ev, "a"), vec!["dev", "v1.0.0"], "{rules}");
    }
}

#[test]
fn counts_never_depend_on_other_rules() {
    // ECR's trap: a lower-priority rule keeps fewer than N because an earlier rule took tags.
    let p = policy(
        "version: 1\nrules:\n  - name: all\n    keep: {newest: 3}\n  - name: v\n    tags: ['v*']\n    keep: {newest: 3}\n",
    );
    let ev = run(
        &p,
        vec![repo(
            "a",
            &[
                ("x1", 1, 1),
                ("x2", 2, 2),
                ("x3", 3, 3),
                ("v1", 4, 4),
                ("v2", 5, 5),
                ("v3", 6, 6),
                ("v4", 7, 7),
            ],
        )],
    );
    assert_eq!(deleted(&ev, "a"), vec!["v4"]);
}

#[test]
fn semver_orders_prereleases_and_ignores_build_metadata() {
    let p =
        policy("version: 1\nrules:\n  - name: s\n    tags: ['v*', '1*']\n    keep: {semver: 3}\n");
    let ev = run(
        &p,
        vec![repo(
            "a",
            &[
                ("v1.0.0", 1, 1),
                ("v1.10.0", 2, 9),
                ("v1.9.0", 3, 1),
                ("v2.0.0-rc.1", 4, 1),
                ("v2.0.0-rc.2_b7", 5, 1),
                ("1.2.3_build", 6, 1),
                ("vnext", 7, 1),
            ],
        )],
    );
    // Highest: 2.0.0-rc.2 (build metadata after `_`, as Helm writes it), 2.0.0-rc.1, 1.10.0;
    // a tag that is no version is never kept by semver.
    assert_eq!(
        deleted(&ev, "a"),
        vec!["1.2.3_build", "v1.0.0", "v1.9.0", "vnext"]
    );
    let p = policy(
        "version: 1\nrules:\n  - name: s\n    tags: ['v*', '!*-rc*']\n    keep: {semver: 1}\n",
    );
    let ev = run(
        &p,
        vec![repo(
            "a",
            &[("v1.0.0", 1, 1), ("v2.0.0-rc.1", 2, 1), ("v1.1.0", 3, 1)],
        )],
    );
    assert_eq!(
        deleted(&ev, "a"),
        vec!["v1.0.0"],
        "the excluded rc is not matched, so not deleted"
    );
}

#[test]
fn group_by_counts_per_group() {
    let p = policy(
        "version: 1\nrules:\n  - name: b\n    tags: ['*-*']\n    group_by: '^(?P<branch>[a-z]+)-'\n    keep: {newest: 1}\n",
    );
    let ev = run(
        &p,
        vec![repo(
            "a",
            &[
                ("main-1", 1, 3),
                ("main-2", 2, 1),
                ("dev-1", 3, 5),
                ("dev-2", 4, 4),
                ("9-x", 5, 1),
                ("8-y", 6, 2),
            ],
        )],
    );
    // "9-x" and "8-y" do not match group_by: they form one group of their own.
    assert_eq!(deleted(&ev, "a"), vec!["8-y", "dev-1", "main-1"]);
    let e = ev.explain.iter().find(|e| e.tag == "dev-1").unwrap();
    assert!(e.reasons[0].contains("in group \"dev\""), "{:?}", e.reasons);
}

#[test]
fn repositories_patterns_scope_rules() {
    let p = policy(
        "version: 1\nrules:\n  - name: r\n    repositories: ['acme/**', '!acme/sandbox/**']\n    delete: {}\n",
    );
    let ev = run(
        &p,
        vec![
            repo("acme/app", &[("a", 1, 1), ("b", 2, 1)]),
            repo("acme/sandbox/x", &[("a", 3, 1)]),
            repo("other", &[("a", 4, 1)]),
        ],
    );
    assert_eq!(deleted(&ev, "acme/app"), vec!["a", "b"]);
    assert!(deleted(&ev, "acme/sandbox/x").is_empty() && deleted(&ev, "other").is_empty());
    assert_eq!(
        ev.refusals.len(),
        1,
        "every tag of acme/app would go: {:?}",
        ev.refusals
    );
    assert!(ev.refusals[0].contains("acme/app"));
}

#[test]
fn protection_by_tag_and_digest() {
    let mut p = policy(
        "version: 1\nrules:\n  - name: r\n    delete: {}\nprotect:\n  tags: ['latest', 'stable']\n",
    );
    p.protect_digests.insert(dg(3));
    let ev = run(
        &p,
        vec![repo(
            "a",
            &[
                ("latest", 1, 100),
                ("old", 2, 100),
                ("deployed", 3, 100),
                ("x", 4, 1),
            ],
        )],
    );
    assert_eq!(deleted(&ev, "a"), vec!["old", "x"]);
    assert!(ev.refusals.is_empty());
}

#[test]
fn damaged_and_invalid_tags_are_never_deleted() {
    let p = policy("version: 1\nrules:\n  - name: r\n    delete: {}\n");
    let mut r = repo("a", &[("ok", 1, 1), ("broken", 2, 1), ("..weird", 3, 1)]);
    r.tags[1].current = None;
    let ev = run(&p, vec![r]);
    assert_eq!(deleted(&ev, "a"), vec!["ok"]);
}

#[test]
fn created_ages_with_fallback() {
    let p = policy(
        "version: 1\nage_from: created\nrules:\n  - name: r\n    delete: {older_than: 10d}\n",
    );
    let layout = Layout {
        repos: vec![repo(
            "a",
            &[
                ("built-old", 1, 1),
                ("zero", 2, 1),
                ("future", 3, 50),
                ("none", 4, 50),
                ("new", 5, 1),
            ],
        )],
        ..Layout::default()
    };
    let mut created = HashMap::new();
    created.insert(dg(1), NOW - 100 * DAY);
    created.insert(dg(2), 0); // reproducible builds: before 1980, fall back to pushed (1 day)
    created.insert(dg(3), NOW + 10 * DAY); // in the future: pushed (50 days)
    created.insert(dg(5), NOW - DAY);
    let ev = evaluate(&p, &images(layout), &created, NOW);
    assert_eq!(deleted(&ev, "a"), vec!["built-old", "future", "none"]);
}

#[test]
fn same_second_push_times_are_refused() {
    let p = policy("version: 1\nrules:\n  - name: r\n    keep: {newest: 1}\n");
    let same: Vec<(String, u8, i64)> = (0..6).map(|i| (format!("t{i}"), i as u8 + 1, 30)).collect();
    let tags: Vec<(&str, u8, i64)> = same.iter().map(|(n, d, a)| (n.as_str(), *d, *a)).collect();
    let ev = run(&p, vec![repo("copied", &tags)]);
    assert_eq!(ev.refusals.len(), 1);
    assert!(ev.refusals[0].contains("same second"), "{:?}", ev.refusals);
    // A delete-all rule uses no ages: only the every-tag net applies to it.
    let p = policy("version: 1\nrules:\n  - name: r\n    tags: ['t0', 't1']\n    delete: {}\n");
    assert!(run(&p, vec![repo("copied", &tags)]).refusals.is_empty());
}

#[test]
fn signature_tags_follow_their_subject() {
    let p = policy("version: 1\nrules:\n  - name: r\n    tags: ['old']\n    delete: {}\n");
    let sig = |d: u8| format!("sha256-{}.sig", dg(d).hex());
    let att = |d: u8| format!("sha256-{}.att", dg(d).hex());
    let (s1, s2, a2, s9) = (sig(1), sig(2), att(2), sig(9));
    let mut r = repo(
        "a",
        &[
            ("old", 1, 100),
            ("new", 2, 1),
            (&s1, 11, 1),
            (&s2, 12, 1),
            (&a2, 13, 1),
            (&s9, 14, 1),
        ],
    );
    r.revisions.push(Link {
        digest: dg(9),
        mtime: 0,
    });
    let ev = run(&p, vec![r]);
    // The signature of the deleted image goes; the kept image's stay; a signature of an
    // untagged manifest (signed by digest) was never reached by a tag, so it stays.
    assert_eq!(deleted(&ev, "a"), vec!["old".to_string(), s1.clone()]);
    let e = ev.explain.iter().find(|e| e.tag == s1).unwrap();
    assert_eq!(e.rule.as_deref(), Some("signature of a deleted image"));
    // Rules never match signature tags, even a rule that matches everything.
    let p = policy("version: 1\nrules:\n  - name: r\n    tags: ['**', '!new']\n    delete: {}\n");
    let ev = run(&p, vec![repo("b", &[("new", 2, 1), (&s2, 12, 1)])]);
    assert!(deleted(&ev, "b").is_empty());
}

#[test]
fn cosign_names() {
    let hex = dg(1).hex();
    assert_eq!(cosign_subject(&format!("sha256-{hex}.sig")), Some(dg(1)));
    assert_eq!(cosign_subject(&format!("sha256-{hex}.sbom")), Some(dg(1)));
    assert_eq!(cosign_subject(&format!("sha256-{hex}.foo")), None);
    assert_eq!(cosign_subject("sha256-abc.sig"), None);
    assert_eq!(cosign_subject("latest"), None);
}

#[test]
fn calendar_tiers_count_per_group_and_say_which_period_kept_a_tag() {
    // NOW is 2027-01-15T08:00Z: ages 0, 1 and 1.5 days fall on three days; 40 days is in
    // December 2026, 45 days too (older, so not its month's newest).
    let p = policy(
        "version: 1\nrules:\n  - name: tiers\n    group_by: '^(main|dev)-'\n    keep: {daily: 2, monthly: 2}\n",
    );
    let mut r = repo(
        "a",
        &[
            ("main-5", 1, 0),
            ("main-4", 2, 1),
            ("main-3", 3, 2),
            ("main-2", 4, 40),
            ("main-1", 5, 45),
            ("dev-2", 6, 3),
            ("dev-1", 7, 4),
        ],
    );
    r.tags[2].current.as_mut().unwrap().mtime = NOW - DAY - DAY / 2;
    let ev = run(&p, vec![r]);
    // main: daily keeps 5 and 4; monthly keeps 5 (January) and 2 (December); 3 and 1 go.
    // dev: two days, two dailies; its only month keeps dev-2 and, with a count left, the oldest.
    assert_eq!(deleted(&ev, "a"), vec!["main-1", "main-3"]);
    let why = |t: &str| {
        ev.explain
            .iter()
            .find(|e| e.tag == t)
            .unwrap()
            .reasons
            .join("; ")
    };
    assert!(
        why("main-2").contains("monthly 2026-12 in group \"main\""),
        "{}",
        why("main-2")
    );
    assert!(
        why("dev-1").contains("oldest monthly 2027-01"),
        "{}",
        why("dev-1")
    );
    assert!(
        why("main-3").contains("not the newest of its period in any tier (daily 2, monthly 2)"),
        "{}",
        why("main-3")
    );
    for (bad, says) in [
        ("daily: 0", "a count of 0 keeps nothing"),
        (
            "weekly: forever",
            "\"forever\": a tier takes a count (7) or \"unlimited\"",
        ),
        ("quarterly: 4", "unknown field `quarterly`"),
    ] {
        let e = parse(&format!(
            "version: 1\nrules:\n  - name: t\n    keep:\n      {bad}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains(says) && e.contains("line 5"), "{bad}: {e}");
    }
    assert!(parse("version: 1\nrules:\n  - name: t\n    keep: {yearly: unlimited}\n").is_ok());
}
