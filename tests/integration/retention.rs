//! Retention policies against the real registry: exact tags left, and every kept tag pulls.

use crate::testenv::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

const DAY: u64 = 86_400;

const POLICY: &str = r#"version: 1
rules:
  - name: releases
    tags: ["v*", "!*-rc*"]
    keep: {newest: 2}
  - name: release candidates
    tags: ["*-rc*"]
    delete: {older_than: 30d}
  - name: branch builds
    tags: ["main-*", "dev-*"]
    group_by: '^(?P<branch>[a-z]+)-'
    keep: {newest: 1, within: 40d}
  - name: pull requests
    tags: ["pr-*"]
    delete: {older_than: 14d}
protect:
  tags: ["latest"]
"#;

/// `(tag, age in days)`; `latest` names the same image as `v1.0.0`.
const TAGS: [(&str, u64); 12] = [
    ("v1.0.0", 400),
    ("v1.1.0", 300),
    ("v1.2.0", 200),
    ("v2.0.0-rc.1", 10),
    ("main-1", 100),
    ("main-2", 50),
    ("main-3", 5),
    ("dev-1", 60),
    ("dev-2", 30),
    ("pr-1", 20),
    ("pr-2", 3),
    ("latest", 500),
];

pub(crate) fn set_tag_age(root: &Path, repo: &str, tag: &str, days: u64) {
    let link = root
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_manifests/tags")
        .join(tag)
        .join("current/link");
    let t = SystemTime::now() - Duration::from_secs(days * DAY);
    std::fs::File::options()
        .write(true)
        .open(link)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn tags_on_disk(root: &Path, repo: &str) -> BTreeSet<String> {
    std::fs::read_dir(
        root.join("docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags"),
    )
    .unwrap()
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .collect()
}

/// A registry with every tag of `TAGS` in `acme/svc`, all files two years old.
fn registry() -> (Registry, tempfile::TempDir) {
    let mut reg = Registry::start();
    let mut oci = reg.new_oci();
    for (tag, _) in TAGS {
        let seed = if tag == "latest" { "v1.0.0" } else { tag };
        let img = oci.image(
            &[("svc-base", 2000), (seed, 700)],
            "amd64",
            "2024-01-01T00:00:00Z",
        );
        oci.tag(&img.manifest, tag);
    }
    for (tag, _) in TAGS {
        reg.push(&oci, tag, &format!("acme/svc:{tag}"));
    }
    age_tree(&reg.root, Duration::from_secs(730 * DAY));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yml"), POLICY).unwrap();
    (reg, dir)
}

#[test]
fn a_policy_deletes_exactly_the_tags_it_should_and_the_rest_pull() {
    let (reg, dir) = registry();
    for (tag, days) in TAGS {
        set_tag_age(&reg.root, "acme/svc", tag, days);
    }
    let policy = dir.path().join("policy.yml");
    let policy = policy.to_str().unwrap();

    // The preview agrees with the run, and changes nothing.
    let out = regsweep_ok(&[
        "policy",
        "check",
        policy,
        "--root",
        reg.root.to_str().unwrap(),
        "--format",
        "json",
        "--explain",
    ]);
    let preview: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(preview["summary"]["tags_deleted"], 5, "{preview}");
    assert_eq!(preview["repositories"][0]["in_scope"], 11, "all but latest");
    assert_eq!(tags_on_disk(&reg.root, "acme/svc").len(), 12);

    let (code, report) = gc_json(
        &reg.root,
        &["--policy", policy, "--delete-untagged", "--explain"],
    );
    assert_eq!(code, 0, "{report}");
    let deleted: BTreeSet<(String, String)> = report["tags_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag"].as_str().unwrap().to_string(),
                t["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("v1.0.0", "releases"),
        ("main-1", "branch builds"),
        ("main-2", "branch builds"),
        ("dev-1", "branch builds"),
        ("pr-1", "pull requests"),
    ]
    .iter()
    .map(|(t, r)| (t.to_string(), r.to_string()))
    .collect();
    assert_eq!(deleted, expected);
    for t in report["tags_deleted"].as_array().unwrap() {
        assert!(t["age_seconds"].as_i64().unwrap() > 14 * DAY as i64, "{t}");
    }
    let left: BTreeSet<String> = [
        "v1.1.0",
        "v1.2.0",
        "v2.0.0-rc.1",
        "main-3",
        "dev-2",
        "pr-2",
        "latest",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(tags_on_disk(&reg.root, "acme/svc"), left);
    assert_eq!(report["explain"].as_array().unwrap().len(), 12);
    // Four images went (v1.0.0's stays: latest names it), each a manifest, a config, a layer.
    assert_eq!(report["summary"]["manifests_deleted"], 4);
    assert_eq!(report["summary"]["blobs_deleted"], 12);

    for t in &left {
        reg.pull(&format!("acme/svc:{t}"))
            .unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    for (t, _) in &expected {
        assert!(
            reg.pull(&format!("acme/svc:{t}")).is_err(),
            "{t} was deleted"
        );
    }
    assert!(reg.reference_gc_dry_run().is_empty());
}

#[test]
fn the_safety_net_refuses_a_restored_registry_unless_forced() {
    let (reg, dir) = registry();
    // age_tree gave every tag link the same mtime: what a copy without -p looks like.
    let policy = dir.path().join("policy.yml");
    let policy = policy.to_str().unwrap();
    let (code, report) = gc_json(&reg.root, &["--policy", policy, "-m"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["refused_by_safety_net"], true);
    assert!(
        report["refused"][0]
            .as_str()
            .unwrap()
            .contains("same second"),
        "{report}"
    );
    assert_eq!(
        tags_on_disk(&reg.root, "acme/svc").len(),
        12,
        "nothing deleted"
    );

    let out = regsweep(&[
        "policy",
        "check",
        policy,
        "--root",
        reg.root.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused"));

    let (code, report) = gc_json(&reg.root, &["--policy", policy, "-m", "--force"]);
    assert_eq!(code, 0, "{report}");
    assert!(report["summary"]["tags_deleted"].as_u64().unwrap() > 0);
    for t in tags_on_disk(&reg.root, "acme/svc") {
        reg.pull(&format!("acme/svc:{t}"))
            .unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

#[test]
fn a_policy_that_would_empty_a_repository_is_refused() {
    let (reg, dir) = registry();
    for (i, (tag, _)) in TAGS.iter().enumerate() {
        set_tag_age(&reg.root, "acme/svc", tag, 100 + i as u64);
    }
    let policy = dir.path().join("all.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: everything\n    delete: {older_than: 30d}\n",
    )
    .unwrap();
    let (code, report) = gc_json(&reg.root, &["--policy", policy.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        report["refused"][0]
            .as_str()
            .unwrap()
            .contains("every one of its 12 tags"),
        "{report}"
    );
    assert_eq!(tags_on_disk(&reg.root, "acme/svc").len(), 12);
    // The record says what happened: nothing deleted, the would-be tags apart.
    assert_eq!(
        report["tags_deleted"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert_eq!(
        report["refused_tags"].as_array().map(Vec::len),
        Some(12),
        "{report}"
    );

    // A refused dry run's plan is no way around the safety net: apply refuses it.
    let plan = dir.path().join("plan.json");
    let root = reg.root.to_str().unwrap();
    let out = regsweep(&[
        "gc",
        "--root",
        root,
        "--dry-run",
        "--policy",
        policy.to_str().unwrap(),
        "--format",
        "json",
        "--report",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds nothing to apply"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = regsweep(&["apply", plan.to_str().unwrap(), "--root", root]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), err.lines().count()),
        (Some(1), 1),
        "{err}"
    );
    assert!(err.contains("safety net refused"), "{err}");
    assert_eq!(tags_on_disk(&reg.root, "acme/svc").len(), 12);
}

#[test]
fn a_malformed_policy_names_its_line_and_deletes_nothing() {
    let (reg, dir) = registry();
    let policy = dir.path().join("bad.yml");
    std::fs::write(&policy, "version: 1\nrules:\n  - name: prs\n    tags: ['pr-*']\n    delete: {older_than: 2 fortnights}\n").unwrap();
    for args in [
        vec![
            "gc",
            "--root",
            reg.root.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
        vec!["policy", "check", policy.to_str().unwrap()],
    ] {
        let out = regsweep(&args);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad.yml") && err.contains("line 5") && err.contains("2 fortnights"),
            "{err}"
        );
    }
    assert_eq!(tags_on_disk(&reg.root, "acme/svc").len(), 12);
}

#[test]
fn policy_check_speaks_the_policy_files_words() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: prs\n    tags: ['pr-*']\n    delete: {older_than: 14d}\n",
    )
    .unwrap();
    let out = regsweep(&["policy", "check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "valid: 1 rule (prs), age_from: pushed, 0 protected tag patterns, 0 protected digests"
        ),
        "{text}"
    );
}
