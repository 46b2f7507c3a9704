//! Keep what is used: the pull ledger fed by the real registry (its webhook and its logs), pull
//! rules judged by it, and images in use protected; every kept tag pulls afterwards.

use crate::pullenv::*;
use crate::testenv::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const IMAGES: [(&str, &str); 5] = [
    ("team/a", "v1"),
    ("team/a", "v2"),
    ("team/a", "v3"),
    ("b", "x"),
    ("b", "y"),
];

/// Pushes every image of `IMAGES`; `repo:tag` -> manifest digest.
fn fill(reg: &mut Registry) -> BTreeMap<String, String> {
    let mut oci = reg.new_oci();
    let mut out = BTreeMap::new();
    for (repo, tag) in IMAGES {
        let seed = format!("{}-{tag}", repo.replace('/', "-"));
        let img = oci.image(&[(&seed, 900)], "amd64", "2024-01-01T00:00:00Z");
        oci.tag(&img.manifest, &seed);
        out.insert(format!("{repo}:{tag}"), img.manifest.digest.clone());
    }
    for (repo, tag) in IMAGES {
        reg.push(
            &oci,
            &format!("{}-{tag}", repo.replace('/', "-")),
            &format!("{repo}:{tag}"),
        );
    }
    out
}

/// Pulls `team/a:v1` by tag, `team/a:v2` by digest and `b:x` by tag, through skopeo.
fn pull_some(reg: &Registry, d: &BTreeMap<String, String>) {
    reg.pull("team/a:v1").unwrap();
    reg.pull(&format!("team/a@{}", d["team/a:v2"])).unwrap();
    reg.pull("b:x").unwrap();
}

/// A policy deleting every tag not pulled for `secs` seconds.
fn unused_policy(dir: &Path, secs: i64) -> PathBuf {
    let p = dir.join(format!("unused-{secs}.yml"));
    let text =
        format!("version: 1\nrules:\n  - name: unused\n    delete: {{not_pulled_for: {secs}s}}\n");
    std::fs::write(&p, text).unwrap();
    p
}

/// A moment after every push so far: a window that starts here holds no push, so the tags
/// pushed before it are judged by their pulls alone (a tag pushed inside a window is recent).
fn after_pushes() -> i64 {
    let pushed = chrono::Utc::now().timestamp();
    // Durations count whole seconds: wait for the clock to pass the pushes' second.
    while chrono::Utc::now().timestamp() <= pushed {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    chrono::Utc::now().timestamp()
}

/// The window from `t0` to now: at least a second (a window of 0 asks only whether the
/// ledger is current, which a ledger begun seconds ago cannot say).
fn window_since(t0: i64) -> i64 {
    while chrono::Utc::now().timestamp() <= t0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    chrono::Utc::now().timestamp() - t0
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn webhook_and_log_pulls_drive_pull_rules_and_every_kept_tag_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Listener::start(dir.path(), Some("s3cret"));
    let notify = format!(
        "notifications:\n  endpoints:\n    - name: regsweep\n      url: http://{}/events\n      headers:\n        Authorization: [Bearer s3cret]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n",
        listener.addr
    );
    let mut reg = Registry::start_observed("text", &notify);
    let d = fill(&mut reg);
    let t0 = after_pushes();
    pull_some(&reg, &d);
    let want_tags: BTreeSet<_> = pairs("team/a", &["v1"])
        .union(&pairs("b", &["x"]))
        .cloned()
        .collect();
    let want_digests: BTreeSet<_> = [
        ("team/a", d["team/a:v1"].as_str()),
        ("team/a", d["team/a:v2"].as_str()),
        ("b", d["b:x"].as_str()),
    ]
    .iter()
    .map(|(r, x)| (r.to_string(), x.to_string()))
    .collect();
    let h = wait_for(&listener.ledger, |h| digests(h) == want_digests);
    assert_eq!(tags(&h), want_tags, "exactly the tags pulled, none pushed");

    // The registry's own log of the same run gives the same tag pulls, and the digest pull.
    let from_log = dir.path().join("from-log.db");
    let out = regsweep(&[
        "pulls",
        "import",
        "--ledger",
        s(&from_log),
        "--format",
        "json",
        s(reg.log.as_ref().unwrap()),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logged = history(&from_log);
    assert_eq!(tags(&logged), want_tags);
    let by_digest: BTreeSet<_> = [("team/a".to_string(), d["team/a:v2"].clone())].into();
    assert_eq!(digests(&logged), by_digest);
    // Importing it again changes nothing.
    let again = regsweep(&[
        "pulls",
        "import",
        "--ledger",
        s(&from_log),
        s(reg.log.as_ref().unwrap()),
    ]);
    assert_eq!(again.status.code(), Some(0));
    let twice = history(&from_log);
    assert_eq!(
        (twice.tags.clone(), twice.streams.clone()),
        (logged.tags.clone(), logged.streams.clone())
    );

    // A window longer than the ledger's span cannot be judged: nothing is deleted.
    let long = dir.path().join("long.yml");
    std::fs::write(
        &long,
        "version: 1\nrules:\n  - name: stale\n    delete: {not_pulled_for: 90d}\n",
    )
    .unwrap();
    let (code, r) = gc_json(
        &reg.root,
        &[
            "--policy",
            s(&long),
            "--ledger",
            s(&listener.ledger),
            "--grace",
            "0",
        ],
    );
    assert_eq!(code, 1, "{r}");
    assert!(
        r["refused"][0].as_str().unwrap().contains("began"),
        "{}",
        r["refused"]
    );
    assert_eq!(reg.tags_of("team/a").len(), 3);

    // Judged by each ledger, the never-pulled tags go, and only they.
    let expected: BTreeSet<String> = ["team/a:v3".to_string(), "b:y".to_string()].into();
    let p = unused_policy(dir.path(), window_since(t0));
    let (code, r) = dry_run(&reg.root, &p, &from_log);
    assert_eq!((code, deleted_tags(&r)), (0, expected.clone()), "{r}");
    let p = unused_policy(dir.path(), window_since(t0));
    let (code, r) = gc_json(
        &reg.root,
        &[
            "--policy",
            s(&p),
            "--ledger",
            s(&listener.ledger),
            "--grace",
            "0",
            "-m",
            "--explain",
        ],
    );
    assert_eq!((code, deleted_tags(&r)), (0, expected), "{r}");
    let v1 = (r["explain"].as_array().unwrap().iter())
        .find(|e| e["tag"] == "v1")
        .unwrap();
    assert!(v1["last_pulled_at"].is_string(), "{v1}");
    let v3 = (r["explain"].as_array().unwrap().iter())
        .find(|e| e["tag"] == "v3")
        .unwrap();
    assert!(
        v3["reasons"]
            .to_string()
            .contains("never pulled since its push at"),
        "{v3}"
    );
    assert_eq!(r["used"]["ledger"][0]["source"], "webhook");
    assert_eq!(reg.tags_of("team/a"), vec!["v1", "v2"]);
    assert_eq!(reg.tags_of("b"), vec!["x"]);
    for t in ["team/a:v1", "team/a:v2", "b:x"] {
        reg.pull(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    assert!(reg.reference_gc_dry_run().is_empty());
}

#[test]
fn the_json_log_of_the_registry_gives_the_same_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::start_observed("json", "");
    let d = fill(&mut reg);
    let t0 = after_pushes();
    pull_some(&reg, &d);
    let ledger = dir.path().join("l.db");
    // As `journalctl -o cat | regsweep pulls import`: from stdin, other programs' lines mixed in.
    let mut text = std::fs::read_to_string(reg.log.as_ref().unwrap()).unwrap();
    text.insert_str(0, "kernel: eth0 link up\nsystemd[1]: Started x.\n");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args([
            "pulls",
            "import",
            "--ledger",
            s(&ledger),
            "--format",
            "json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["summary"]["other_lines"], 2, "{r}");
    let h = history(&ledger);
    let want: BTreeSet<_> = pairs("team/a", &["v1"])
        .union(&pairs("b", &["x"]))
        .cloned()
        .collect();
    assert_eq!(tags(&h), want);
    assert!(digests(&h).contains(&("team/a".to_string(), d["team/a:v2"].clone())));
    let p = unused_policy(dir.path(), window_since(t0));
    let (code, r) = dry_run(&reg.root, &p, &ledger);
    let expected: BTreeSet<String> = ["team/a:v3".to_string(), "b:y".to_string()].into();
    assert_eq!((code, deleted_tags(&r)), (0, expected), "{r}");
}
