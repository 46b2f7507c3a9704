//! Images in use (Kubernetes JSON, reference lists) protect tags and untagged manifests from
//! every rule and -m; the listener's faults; bad ledgers and clock skew.

use crate::pullenv::*;
use crate::testenv::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn deleted_tags(report: &serde_json::Value) -> BTreeSet<String> {
    (report["tags_deleted"].as_array().unwrap().iter())
        .map(|t| t["tag"].as_str().unwrap().to_string())
        .collect()
}

fn deleted_manifests(report: &serde_json::Value) -> BTreeSet<String> {
    (report["manifests_deleted"].as_array().unwrap().iter())
        .map(|t| t["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn images_running_in_a_cluster_are_kept_whatever_the_policy_and_m_say() {
    let mut reg = Registry::start();
    let mut oci = reg.new_oci();
    let mut digest = std::collections::BTreeMap::new();
    for name in ["v1", "v2", "v3", "old", "new"] {
        let img = oci.image(&[(name, 800)], "amd64", "2024-01-01T00:00:00Z");
        oci.tag(&img.manifest, name);
        digest.insert(name, img.manifest.digest.clone());
    }
    for (name, tag) in [
        ("v1", "v1"),
        ("v2", "v2"),
        ("v3", "v3"),
        ("old", "rolling"),
        ("new", "rolling"),
    ] {
        reg.push(&oci, name, &format!("app:{tag}"));
    }
    // The pushes share a second; push order made plain, so that `newest: 1` means `rolling`
    // (ties would go to the highest version).
    let tags = reg.v2().join("repositories/app/_manifests/tags");
    for (i, t) in ["v3", "v2", "v1"].iter().enumerate() {
        age_tree(
            &tags.join(t),
            std::time::Duration::from_secs(60 * (i as u64 + 1)),
        );
    }
    let addr = reg.addr.clone();
    // Shaped as `kubectl get pods -A -o json` and a Deployment, from the API reference.
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "prod"},
         "spec": {"initContainers": [{"name": "migrate", "image": format!("{addr}/app:v1")}],
                  "containers": [{"name": "web", "image": format!("{addr}/app:v2")},
                                 {"name": "sidecar", "image": "docker.io/library/busybox:1.36"}]},
         "status": {"phase": "Running",
            "initContainerStatuses": [{"name": "migrate", "image": format!("{addr}/app:v1"),
                "imageID": format!("{addr}/app@{}", digest["v1"])}],
            "containerStatuses": [
                {"name": "web", "image": format!("{addr}/app:rolling"),
                 "imageID": format!("docker-pullable://{addr}/app@{}", digest["old"])},
                {"name": "sidecar", "image": "docker.io/library/busybox:1.36",
                 "imageID": "docker-pullable://busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "prod"},
         "spec": {"template": {"spec": {"containers": [{"name": "api", "image": format!("{addr}/app:nope")}]}}}}
    ]});
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods.json");
    std::fs::write(&pods, doc.to_string()).unwrap();
    let policy = dir.path().join("p.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: newest\n    keep: {newest: 1}\n",
    )
    .unwrap();
    let base = ["--policy", s(&policy), "--grace", "0", "-m"];

    // Without the images in use, the policy and -m take what runs.
    let mut dry = base.to_vec();
    dry.push("--dry-run");
    let (_, r) = gc_json(&reg.root, &dry);
    assert_eq!(
        deleted_tags(&r),
        ["v1", "v2", "v3"].map(String::from).into()
    );
    assert!(deleted_manifests(&r).contains(&digest["old"]));

    let mut run = base.to_vec();
    run.extend([
        "--keep-images",
        s(&pods),
        "--registry-host",
        &addr,
        "--explain",
    ]);
    let (code, r) = gc_json(&reg.root, &run);
    assert_eq!(code, 0, "{r}");
    assert_eq!(deleted_tags(&r), ["v3"].map(String::from).into());
    let gone = deleted_manifests(&r);
    assert!(
        !gone.contains(&digest["old"]) && !gone.contains(&digest["v1"]),
        "{gone:?}"
    );
    assert_eq!(r["used"]["tags_protected"], 2, "{}", r["used"]);
    assert_eq!(r["used"]["other_hosts"], 2, "{}", r["used"]);
    assert_eq!(r["used"]["unresolved"], 1, "{}", r["used"]);
    let notice = (r["errors"].as_array().unwrap().iter())
        .find(|e| e["kind"] == "image_not_found")
        .unwrap();
    assert!(
        notice["message"].as_str().unwrap().contains("app:nope"),
        "{notice}"
    );
    let v1 = (r["explain"].as_array().unwrap().iter())
        .find(|e| e["tag"] == "v1")
        .unwrap();
    assert!(v1["reasons"].to_string().contains("in use: "), "{v1}");
    for t in [
        "app:v1",
        "app:v2",
        "app:rolling",
        &format!("app@{}", digest["old"]),
    ] {
        reg.pull(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    assert!(reg.reference_gc_dry_run().is_empty());

    // A plain list names its bad line; nothing is deleted.
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "# running\napp:v2\napp@sha256:12\n").unwrap();
    let out = regsweep(&["gc", "--root", s(&reg.root), "--keep-images", s(&list)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("list.txt") && err.contains("line 3"), "{err}");
}

fn envelope_now(repo: &str, tag: &str) -> Vec<u8> {
    let now = chrono::Utc::now().to_rfc3339();
    let digest = sha256(format!("{repo}:{tag}").as_bytes());
    envelope("pull", repo, Some(tag), &digest, &now)
}

#[test]
fn the_listener_refuses_bad_requests_and_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Listener::start(dir.path(), Some("tok"));
    let good = envelope_now("app", "v1");
    assert_eq!(l.post(&good, None), Some(401));
    assert_eq!(l.post(&good, Some("wrong")), Some(401));
    assert_eq!(l.post(b"{\"events\": [", Some("tok")), Some(400));
    assert_eq!(l.post(b"{\"x\": 1}", Some("tok")), Some(400));
    let big = format!("{{\"events\": [], \"pad\": \"{}\"}}", "x".repeat(70_000));
    assert_eq!(l.post(big.as_bytes(), Some("tok")), Some(413));
    // Truncated: the body ends before its Content-Length.
    let head = "POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Length: 500\r\n\r\n{\"events\": [";
    let cut = post_bytes_half_closed(&l.addr, head.as_bytes());
    assert!(cut.is_none_or(|c| (400..500).contains(&c)), "{cut:?}");
    assert!(
        history(&l.ledger).tags.is_empty(),
        "refused requests recorded nothing"
    );
    assert_eq!(l.post(&good, Some("tok")), Some(200));
    assert_eq!(tags(&history(&l.ledger)), pairs("app", &["v1"]));

    // SIGKILL while four clients post: every event answered 200 is in the ledger.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let addr = l.addr.clone();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (acked, dir, addr) = (acked.clone(), dir.path().to_path_buf(), addr.clone());
            std::thread::spawn(move || {
                let probe = Listener::client(&dir, &addr);
                for i in 0..2000 {
                    let tag = format!("c{c}-{i}");
                    match probe.post(&envelope_now("load", &tag), Some("tok")) {
                        Some(200) => acked.lock().unwrap().push(tag),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 200 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    l.kill();
    clients.into_iter().for_each(|c| c.join().unwrap());
    let acked = acked.lock().unwrap().clone();
    let recorded = tags(&history(&l.ledger));
    let lost: Vec<_> = acked
        .iter()
        .filter(|t| !recorded.contains(&("load".to_string(), t.to_string())))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost: {lost:?}",
        lost.len()
    );

    // A clean stop on SIGTERM.
    let mut l = Listener::start(dir.path(), Some("tok"));
    assert_eq!(l.post(&envelope_now("app", "v9"), Some("tok")), Some(200));
    assert!(l.terminate().success());
    assert!(tags(&history(&l.ledger)).contains(&("app".to_string(), "v9".to_string())));
}

/// Sends `req`, closes the writing half, and reads the status.
fn post_bytes_half_closed(addr: &str, req: &[u8]) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(req).ok()?;
    s.shutdown(std::net::Shutdown::Write).ok()?;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_registry_keeps_serving_while_the_listener_is_down_and_delivers_later() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let notify = format!(
        "notifications:\n  endpoints:\n    - name: regsweep\n      url: http://{addr}/events\n      timeout: 1s\n      threshold: 3\n      backoff: 1s\n"
    );
    let mut reg = Registry::start_observed("text", &notify);
    let mut oci = reg.new_oci();
    let img = oci.image(&[("q", 500)], "amd64", "2024-01-01T00:00:00Z");
    oci.tag(&img.manifest, "q");
    reg.push(&oci, "q", "app:q");
    reg.pull("app:q").unwrap();
    // The ledger begins in a later second than the pull (times are whole seconds): the queued
    // events are dated before it, which must not make them refused.
    let pulled = chrono::Utc::now().timestamp();
    while chrono::Utc::now().timestamp() < pulled + 2 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The registry queued the events in memory and retries: they arrive once a listener is up.
    let l = Listener::start_on(dir.path(), None, &addr);
    let h = wait_for(&l.ledger, |h| !h.tags.is_empty());
    assert_eq!(tags(&h), pairs("app", &["q"]));
    // They are pulls, not evidence: coverage starts no earlier than the ledger.
    let created = h.created.expect("a listener's ledger has a creation time");
    assert!(
        h.covered().is_none_or(|(from, _)| from >= created),
        "{:?}",
        h.covered()
    );
    assert!(h.rejections.is_empty(), "{:?}", h.rejections);
}

#[test]
fn bad_ledgers_and_a_clock_ahead_are_refused_and_nothing_is_deleted() {
    let mut reg = Registry::start();
    let mut oci = reg.new_oci();
    let img = oci.image(&[("z", 500)], "amd64", "2024-01-01T00:00:00Z");
    oci.tag(&img.manifest, "z");
    for t in ["a", "b"] {
        reg.push(&oci, "z", &format!("app:{t}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: r\n    tags: [a]\n    delete: {not_pulled_for: 1s}\n",
    )
    .unwrap();
    let root = s(&reg.root);

    let out = regsweep(&["gc", "--root", root, "--policy", s(&policy)]);
    assert_eq!(out.status.code(), Some(2), "a pull rule needs a ledger");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ledger"));

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "not a database, but long enough to look like a file").unwrap();
    let out = regsweep(&[
        "gc",
        "--root",
        root,
        "--policy",
        s(&policy),
        "--ledger",
        s(&junk),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), err.lines().count()),
        (Some(1), 1),
        "{err}"
    );
    assert!(err.contains("junk.db") && err.contains("not a"), "{err}");

    // A log whose clock is a day ahead: its lines are neither pulls nor evidence (counted as
    // ahead of the clock), so the ledger proves nothing and the rule refuses.
    let ahead = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let log = dir.path().join("reg.log");
    std::fs::write(&log, format!("time=\"{ahead}\" level=info msg=\"response completed\" http.request.method=GET http.request.uri=\"/v2/app/manifests/b\" http.response.status=200\n")).unwrap();
    let ledger = dir.path().join("l.db");
    let out = regsweep(&[
        "pulls",
        "import",
        "--ledger",
        s(&ledger),
        "--format",
        "json",
        s(&log),
    ]);
    assert!(out.status.success());
    let imported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(imported["summary"]["future_lines"], 1, "{imported}");
    let (code, r) = gc_json(
        &reg.root,
        &[
            "--policy",
            s(&policy),
            "--ledger",
            s(&ledger),
            "--grace",
            "0",
        ],
    );
    assert_eq!(code, 1, "{r}");
    assert!(
        r["refused"].to_string().contains("no evidence"),
        "{}",
        r["refused"]
    );
    assert_eq!(reg.tags_of("app").len(), 2, "nothing deleted");

    // A ledger another process holds locked: one line, after waiting.
    let conn = rusqlite::Connection::open(&ledger).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = regsweep(&["pulls", "import", "--ledger", s(&ledger), s(&log)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
