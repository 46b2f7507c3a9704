//! Delete only on evidence: pull rules refuse when the ledger cannot prove it saw every pull of
//! the window (a hole between two logs, a wrong token, no notifications, a registry gone
//! silent), a tag pushed inside the window counts as recent, and the canary's coverage follows
//! what the real registry delivers to the real listener.

use crate::pullenv::*;
use crate::testenv::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DAY: i64 = 86_400;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Pushes `repo:tag` for each tag, one small image each.
fn push_tags(reg: &mut Registry, repo: &str, tags: &[&str]) {
    let mut oci = reg.new_oci();
    for t in tags {
        let img = oci.image(
            &[(&format!("{repo}-{t}"), 700)],
            "amd64",
            "2024-01-01T00:00:00Z",
        );
        oci.tag(&img.manifest, t);
        reg.push(&oci, t, &format!("{repo}:{t}"));
    }
}

/// An access-log line of the registry: a manifest GET of `path` at `t`.
fn access_line(t: i64, path: &str) -> String {
    let at = chrono::DateTime::from_timestamp(t, 0).unwrap();
    format!(
        "127.0.0.1 - - [{}] \"GET {path} HTTP/1.1\" 200 525 \"\" \"skopeo\"\n",
        at.format("%d/%b/%Y:%H:%M:%S +0000")
    )
}

fn policy(dir: &Path, rule: &str) -> PathBuf {
    let p = dir.join("p.yml");
    std::fs::write(
        &p,
        format!("version: 1\nrules:\n  - name: unused for two weeks\n    {rule}\n"),
    )
    .unwrap();
    p
}

fn status(ledger: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["pulls", "status", "--ledger", s(ledger), "--format", "json"];
    args.extend_from_slice(extra);
    let out = regsweep(&args);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), v)
}

fn import(ledger: &Path, log: &Path) {
    let out = regsweep(&["pulls", "import", "--ledger", s(ledger), s(log)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_logs_a_month_apart_prove_nothing_of_the_month_between_and_a_fresh_push_is_recent() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::start();
    push_tags(&mut reg, "acme/app", &["v1", "v2", "v3"]);
    let now = chrono::Utc::now().timestamp();
    for t in ["v2", "v3"] {
        crate::retention::set_tag_age(&reg.root, "acme/app", t, 40);
    }
    // v1 was pushed just now: 2 hours old at most, never 14 days unpulled.
    let pull = |tag: &str| format!("/v2/acme/app/manifests/{tag}");
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    std::fs::write(
        &a,
        access_line(now - 30 * DAY, &pull("v2")) + &access_line(now - 29 * DAY, &pull("v2")),
    )
    .unwrap();
    let last_hour: String = (0..=12)
        .map(|k| access_line(now - 3600 + k * 300, &pull("v2")))
        .collect();
    std::fs::write(&b, last_hour).unwrap();
    let ledger = dir.path().join("p.db");
    import(&ledger, &a);
    import(&ledger, &b);
    let p = policy(dir.path(), "delete: {not_pulled_for: 14d}");
    let args = ["--policy", s(&p), "--ledger", s(&ledger), "--grace", "0"];
    let (code, r) = gc_json(&reg.root, &[&args[..], &["--dry-run"]].concat());
    assert_eq!(code, 1, "{r}");
    let why = r["refused"].to_string();
    assert!(why.contains("no evidence from"), "{why}");
    assert_eq!(r["refused_by_safety_net"], true, "{r}");
    let (code, st) = status(&ledger, &["--window", "14d"]);
    assert_eq!(code, 1, "{st}");
    assert!(!st["holes"].as_array().unwrap().is_empty(), "{st}");
    assert_eq!(status(&ledger, &["--window", "30m"]).0, 0);

    // The month imported too: the window is covered; v1 stays as pushed within it, v2 was
    // pulled, v3 goes.
    let month = dir.path().join("month.log");
    let lines: String = (0..=(30 * DAY / 240))
        .map(|k| access_line(now - 30 * DAY + k * 240, "/v2/"))
        .collect();
    std::fs::write(&month, lines).unwrap();
    import(&ledger, &month);
    let (code, r) = gc_json(&reg.root, &[&args[..], &["--explain"]].concat());
    assert_eq!(
        (code, deleted_tags(&r)),
        (0, ["acme/app:v3".to_string()].into()),
        "{r}"
    );
    let v1 = (r["explain"].as_array().unwrap().iter())
        .find(|e| e["tag"] == "v1")
        .unwrap();
    assert!(
        v1["reasons"].to_string().contains("pushed within 14d"),
        "{v1}"
    );
    for t in ["acme/app:v1", "acme/app:v2"] {
        reg.pull(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

/// The registry's notification endpoint for a listener at `addr`, with `auth`.
fn notify(addr: &str, auth: &str) -> String {
    format!(
        "notifications:\n  endpoints:\n    - name: regsweep\n      url: http://{addr}/events\n      headers:\n        Authorization: [{auth}]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n"
    )
}

/// Polls `done` for up to a minute.
fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_wrong_token_or_no_notifications_make_pull_rules_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Listener::start(dir.path(), Some("right"));
    let mut reg = Registry::start_observed("text", &notify(&listener.addr, "Bearer wrong"));
    push_tags(&mut reg, "team/a", &["v1", "v2"]);
    reg.pull("team/a:v1").unwrap();
    until("a rejected delivery", || {
        !regsweep::ledger::Ledger::open_read(&listener.ledger)
            .unwrap()
            .rejections()
            .unwrap()
            .is_empty()
    });
    let p = policy(dir.path(), "delete: {not_pulled_for: 1s}");
    let (code, r) = dry_run(&reg.root, &p, &listener.ledger);
    assert_eq!(code, 1, "{r}");
    let why = r["refused"].to_string();
    assert!(why.contains("rejected") && why.contains("401"), "{why}");
    let (code, st) = status(&listener.ledger, &["--window", "1h"]);
    assert_eq!(code, 1);
    assert!(st["summary"]["rejected"].as_u64().unwrap() > 0, "{st}");
    // The scheme is case-insensitive (RFC 9110): a lower-case `bearer` is the right token.
    let e = envelope(
        "pull",
        "team/a",
        Some("v1"),
        &format!("sha256:{}", "1".repeat(64)),
        &chrono::Utc::now().to_rfc3339(),
    );
    assert_eq!(listener.post_as(&e, Some("bearer right")), Some(200));
    assert!(
        !listener.said().contains("no --token-file"),
        "{}",
        listener.said()
    );

    // A registry with no notifications at all: the listener hears nothing, proves nothing.
    let quiet = tempfile::tempdir().unwrap();
    let idle = Listener::start(quiet.path(), None);
    // Without a token every local process is trusted, and it says so at start.
    assert!(
        idle.said()
            .contains("no --token-file: any process on this machine"),
        "{}",
        idle.said()
    );
    reg.pull("team/a:v2").unwrap();
    // What a local process posts to it is a pull, never evidence: the rule still refuses.
    let now = chrono::Utc::now().to_rfc3339();
    let forged = envelope(
        "pull",
        "team/b",
        Some("v9"),
        &format!("sha256:{}", "3".repeat(64)),
        &now,
    );
    assert_eq!(idle.post(&forged, None), Some(200));
    let (code, r) = dry_run(&reg.root, &p, &idle.ledger);
    assert_eq!(code, 1, "{r}");
    let why = r["refused"].to_string();
    assert!(
        why.contains("no evidence yet") && why.contains("without a token"),
        "{r}"
    );
    assert_eq!(reg.tags_of("team/a").len(), 2);
}

/// The listener's /metrics text.
fn metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

fn metric(text: &str, name: &str) -> u64 {
    (text.lines())
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_canary_comes_back_through_the_registry_and_coverage_stops_with_its_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut reg = Registry::start_observed("text", &notify(&addr, "Bearer t0ken"));
    push_tags(&mut reg, "team/a", &["v1", "v2"]);
    let url = format!("http://{}", reg.addr);
    let canary = ["--canary", &url, "--canary-interval", "1s"];
    let mut listener = Listener::start_with(dir.path(), Some("t0ken"), &addr, &canary);
    until("the canary's pulls through the registry", || {
        let h = history(&listener.ledger);
        h.streams.iter().any(|s| s.last_canary.is_some())
    });
    assert!(
        reg.tags_of("regsweep/canary")
            .contains(&"latest".to_string())
    );
    until("five seconds proven by the canary", || {
        status(&listener.ledger, &["--window", "5s", "--ledger-lag", "0s"]).0 == 0
    });
    // The canary stays whatever the rules say.
    let p = dir.path().join("all.yml");
    let rule = "  - name: v1 and every latest\n    tags: [\"v1\", \"latest\"]\n    delete: {}\n";
    std::fs::write(&p, format!("version: 1\nrules:\n{rule}")).unwrap();
    let (code, r) = dry_run(&reg.root, &p, &listener.ledger);
    assert_eq!(code, 0, "{r}");
    assert_eq!(deleted_tags(&r), ["team/a:v1".to_string()].into(), "{r}");

    // The registry stops: no canary event comes back, so coverage ends where they did.
    reg.stop();
    let stopped = chrono::Utc::now().timestamp();
    until("two failed canary pulls", || {
        metric(
            &metrics(&listener.addr),
            "regsweep_ledger_canary_failures_total",
        ) >= 2
    });
    let h = history(&listener.ledger);
    let last = h.covered().unwrap().1;
    assert!(
        last <= stopped + 1,
        "covered until {last}, stopped at {stopped}"
    );
    let (code, st) = status(&listener.ledger, &["--window", "5s", "--ledger-lag", "0s"]);
    assert_eq!(code, 1, "{st}");
    assert!(
        metrics(&listener.addr).contains("regsweep_ledger_last_canary_timestamp_seconds{instance=")
    );
    listener.terminate();
}

#[test]
fn idle_sockets_do_not_keep_an_event_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Listener::start(dir.path(), None);
    let idle: Vec<std::net::TcpStream> = (0..1500)
        .filter_map(|_| std::net::TcpStream::connect(&listener.addr).ok())
        .collect();
    assert!(idle.len() > 1000, "{} sockets", idle.len());
    let e = envelope(
        "pull",
        "team/a",
        Some("v1"),
        &format!("sha256:{}", "2".repeat(64)),
        &chrono::Utc::now().to_rfc3339(),
    );
    // post_bytes gives up after 20 s: before, the event waited for the 30 s read timeout.
    assert_eq!(listener.post(&e, None), Some(200));
    // One address holds at most 256 connections: the oldest silent ones made room.
    let m = metrics(&listener.addr);
    let gauge = |name: &str| -> u64 {
        (m.lines().find_map(|l| l.strip_prefix(name)))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {m}"))
    };
    assert!(gauge("regsweep_ledger_connections_open ") <= 256, "{m}");
    assert!(
        gauge("regsweep_ledger_connections_crowded_out_total ") >= 1000,
        "{m}"
    );
    drop(idle);
    // A GET is no delivery: answered, never an alarm.
    let get = "GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(post_bytes(&listener.addr, get.as_bytes()), Some(405));
    // An event dated far ahead is not believed: counted as a rejection, not recorded.
    let far = envelope(
        "pull",
        "team/a",
        Some("v9"),
        &format!("sha256:{}", "3".repeat(64)),
        "9999-12-31T00:00:00Z",
    );
    assert_eq!(listener.post(&far, None), Some(200));
    until("the future event counted", || {
        !regsweep::ledger::Ledger::open_read(&listener.ledger)
            .unwrap()
            .rejections()
            .unwrap()
            .is_empty()
    });
    let h = history(&listener.ledger);
    assert!(
        !h.tags
            .contains_key(&("team/a".to_string(), "v9".to_string()))
    );
    assert!(
        h.rejections[0].reason.contains("future"),
        "{:?}",
        h.rejections
    );
}

#[test]
fn apply_reads_the_evidence_again_and_keeps_what_was_pulled_or_started_since_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::start();
    push_tags(&mut reg, "acme/app", &["v1", "v2", "v3", "v4"]);
    for t in ["v1", "v2", "v3", "v4"] {
        crate::retention::set_tag_age(&reg.root, "acme/app", t, 40);
    }
    let now = chrono::Utc::now().timestamp();
    let ledger = dir.path().join("p.db");
    let month = dir.path().join("month.log");
    let lines: String = (0..=(30 * DAY / 240))
        .map(|k| access_line(now - 30 * DAY + k * 240, "/v2/"))
        .collect();
    std::fs::write(&month, lines).unwrap();
    import(&ledger, &month);
    let images = dir.path().join("images.txt");
    std::fs::write(&images, format!("{}/acme/app:v4\n", reg.addr)).unwrap();
    let p = policy(dir.path(), "delete: {not_pulled_for: 14d}");
    let plan = dir.path().join("plan.json");
    let make_plan = || {
        let (code, r) = gc_json(
            &reg.root,
            &[
                "--dry-run",
                "--policy",
                s(&p),
                "--ledger",
                s(&ledger),
                "--keep-images",
                s(&images),
                "--grace",
                "0",
            ],
        );
        assert_eq!(code, 0, "{r}");
        std::fs::write(&plan, r.to_string()).unwrap();
        r
    };
    let r = make_plan();
    let planned: BTreeSet<String> = ["v1", "v2", "v3"]
        .iter()
        .map(|t| format!("acme/app:{t}"))
        .collect();
    assert_eq!(deleted_tags(&r), planned, "{r}");
    // Since the plan: v1 pulled, v2 started somewhere.
    let pulled = dir.path().join("later.log");
    let t = chrono::Utc::now().timestamp();
    std::fs::write(&pulled, access_line(t, "/v2/acme/app/manifests/v1")).unwrap();
    import(&ledger, &pulled);
    std::fs::write(
        &images,
        format!("{a}/acme/app:v4\n{a}/acme/app:v2\n", a = reg.addr),
    )
    .unwrap();
    let out = regsweep(&["apply", s(&plan), "--format", "json"]);
    let a: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{a}");
    let skipped = a["skipped"].to_string();
    assert!(skipped.contains("kept: pulled since the plan"), "{skipped}");
    assert!(skipped.contains("kept: in use since the plan"), "{skipped}");
    let left = |reg: &Registry| reg.tags_of("acme/app").into_iter().collect::<BTreeSet<_>>();
    let want: BTreeSet<String> = ["v1", "v2", "v4"].iter().map(|t| t.to_string()).collect();
    assert_eq!(left(&reg), want);
    for t in ["acme/app:v1", "acme/app:v2", "acme/app:v4"] {
        reg.pull(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    // A file of images that has become empty since the plan (a failed kubectl) is refused.
    make_plan();
    std::fs::write(&images, "").unwrap();
    let out = regsweep(&["apply", s(&plan)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--keep-images-empty-ok"), "{err}");
    std::fs::write(&images, format!("{}/acme/app:v4\n", reg.addr)).unwrap();
    // A plan whose evidence is gone is refused, nothing deleted.
    make_plan();
    std::fs::remove_file(&images).unwrap();
    let out = regsweep(&["apply", s(&plan)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("images.txt") && err.contains("gone"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(left(&reg), want);
}

#[test]
fn a_pod_running_an_untagged_image_keeps_latest_and_an_empty_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::start();
    push_tags(&mut reg, "library/multi", &["latest", "old"]);
    let host = reg.addr.replace("127.0.0.1", "localhost");
    let pods = serde_json::json!({"kind": "List", "items": [{"kind": "Pod",
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {"containers": [{"name": "c", "image": format!("{host}/library/multi")}]}},
        {"kind": "Pod", "metadata": {"name": "q", "namespace": "n"},
        "spec": {"containers": [{"name": "c", "image": "quay.io/x/y:1"}]}}]});
    let file = dir.path().join("pods.json");
    std::fs::write(&file, pods.to_string()).unwrap();
    let p = dir.path().join("all.yml");
    std::fs::write(&p, "version: 1\nrules:\n  - name: old\n    delete: {}\n").unwrap();
    let (code, r) = gc_json(
        &reg.root,
        &[
            "--dry-run",
            "--policy",
            s(&p),
            "--keep-images",
            s(&file),
            "--registry-host",
            &host,
            "--grace",
            "0",
        ],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        deleted_tags(&r),
        ["library/multi:old".to_string()].into(),
        "{r}"
    );
    assert_eq!(r["used"]["tags_protected"], 1, "{r}");
    assert!(
        r["errors"].to_string().contains("quay.io"),
        "the other host is named: {r}"
    );
    // What a failed `kubectl get pods -o json > pods.json` leaves: refused, unless meant.
    std::fs::write(&file, "").unwrap();
    let out = regsweep(&[
        "gc",
        "--root",
        s(&reg.root),
        "--dry-run",
        "--keep-images",
        s(&file),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--keep-images-empty-ok") && err.contains("pods.json"),
        "{err}"
    );
    let out = regsweep(&[
        "gc",
        "--root",
        s(&reg.root),
        "--dry-run",
        "--keep-images",
        s(&file),
        "--keep-images-empty-ok",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The registry's config at `reg`, served by a second process on another port with no
/// notifications: a replica the listener never hears of.
fn silent_replica(reg: &Registry) -> (std::process::Child, String) {
    let text = std::fs::read_to_string(&reg.config).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let body = text.split("notifications:").next().unwrap().to_string()
        + &text[text.find("storage:").unwrap()..];
    let cfg = reg.config.with_file_name("replica.yml");
    std::fs::write(&cfg, body.replace(&reg.addr, &addr)).unwrap();
    let child = std::process::Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until("the replica", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    (child, addr)
}

#[test]
fn a_replica_that_never_notifies_is_caught_by_expect_instances_and_a_restart_is_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Listener::start(dir.path(), Some("t"));
    let mut reg = Registry::start_observed("text", &notify(&listener.addr, "Bearer t"));
    push_tags(&mut reg, "team/a", &["v1", "v2"]);
    let t0 = chrono::Utc::now().timestamp();
    reg.pull("team/a:v1").unwrap();
    let (mut replica, addr) = silent_replica(&reg);
    // A pull the listener never hears of: served by the replica.
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{addr}/team/a:v2"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until("the pull's event", || {
        !history(&listener.ledger).tags.is_empty()
    });
    let _ = t0;
    // The window from the ledger's first evidence to now: its start is proven.
    let root = reg.root.clone();
    let ledger = listener.ledger.clone();
    let dir_path = dir.path().to_path_buf();
    let gc = |extra: &[&str]| {
        let first = history(&ledger).covered().unwrap().0;
        while chrono::Utc::now().timestamp() <= first {
            std::thread::sleep(Duration::from_millis(20));
        }
        let window = chrono::Utc::now().timestamp() - first;
        let p = policy(&dir_path, &format!("delete: {{not_pulled_for: {window}s}}"));
        let mut args = vec![
            "--dry-run",
            "--policy",
            s(&p),
            "--ledger",
            s(&ledger),
            "--grace",
            "0",
        ];
        args.extend_from_slice(extra);
        gc_json(&root, &args)
    };
    let (code, r) = gc(&["--expect-instances", "2"]);
    assert_eq!(code, 1, "{r}");
    assert!(
        r["refused"]
            .to_string()
            .contains("of the 2 expected instances"),
        "{r}"
    );
    // Without --expect-instances nothing knows there is a replica: it must be asked for.
    let (code, r) = gc(&[]);
    assert_eq!(code, 0, "{r}");
    let _ = replica.kill();
    let _ = replica.wait();

    // The registry restarted: its new process is a new stream, and the time between the two
    // is a hole however short (its delivery queue may have been lost with it).
    let before = history(&listener.ledger).streams.len();
    let pushed = chrono::Utc::now().timestamp();
    while chrono::Utc::now().timestamp() <= pushed {
        std::thread::sleep(Duration::from_millis(20));
    }
    reg.restart();
    let restarted = chrono::Utc::now().timestamp();
    while chrono::Utc::now().timestamp() <= restarted {
        std::thread::sleep(Duration::from_millis(20));
    }
    reg.pull("team/a:v1").unwrap();
    until("the new process's events", || {
        history(&listener.ledger).streams.len() > before
    });
    let (code, r) = gc(&["--ledger-lag", "0s"]);
    assert_eq!(code, 1, "{r}");
    assert!(r["refused"].to_string().contains("a hole of"), "{r}");
    assert_eq!(reg.tags_of("team/a").len(), 2);
}
