//! A pull-through cache (issue 30, item 4): Debian's registry in proxy mode in front of a second
//! local registry, its `scheduler-state.json` written by itself, expired by its own dates or by
//! `--proxy-ttl`, and written back by regsweep without what went.

use crate::testenv::*;
use std::time::{Duration, Instant};

fn state(reg: &Registry) -> serde_json::Value {
    let text = std::fs::read(reg.root.join("scheduler-state.json")).unwrap_or_default();
    serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null)
}

/// The state's keys naming `digest`.
fn keys_of(state: &serde_json::Value, digest: &str) -> Vec<String> {
    (state.as_object().into_iter().flatten())
        .filter(|(k, _)| k.ends_with(digest))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Waits until the proxy has saved entries for each of `digests` (it saves its scheduler every
/// 5 s once something changed).
fn saved(proxy: &Registry, digests: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while digests.iter().any(|d| keys_of(&state(proxy), d).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "no scheduler state: {}",
            state(proxy)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn expired_entries_of_a_proxy_cache_go_and_its_state_is_written_without_them() {
    let mut upstream = Registry::start();
    let mut oci = upstream.new_oci();
    let v1 = oci.image(
        &[("proxy-base", 800), ("proxy-v1", 900)],
        "amd64",
        "2026-01-01T00:00:00Z",
    );
    let v2 = oci.image(
        &[("proxy-base", 800), ("proxy-v2", 900)],
        "amd64",
        "2026-01-01T00:00:00Z",
    );
    oci.tag(&v1.manifest, "v1");
    oci.tag(&v2.manifest, "v2");
    upstream.push(&oci, "v1", "lib/app:v1");
    upstream.push(&oci, "v2", "lib/app:v2");
    let mut proxy = Registry::start_proxy(&upstream);
    proxy.pull("lib/app:v1").expect("pulled through the proxy");
    proxy.pull("lib/app:v2").expect("pulled through the proxy");
    saved(&proxy, &[&v1.manifest.digest, &v2.manifest.digest]);
    proxy.stop();
    // A week passes for v1's manifest (its blobs' entries keep their own dates).
    let mut s = state(&proxy);
    let key = format!("lib/app@{}", v1.manifest.digest);
    s[&key]["ExpiryData"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(proxy.root.join("scheduler-state.json"), s.to_string()).unwrap();
    let config = proxy.config.to_str().unwrap().to_string();
    let gc = |extra: &[&str]| {
        let args = [
            &[
                "gc", "--config", &config, "--grace", "0", "-m", "--format", "json", "--report",
                "-",
            ][..],
            extra,
        ]
        .concat();
        let out = regsweep(&args);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (
            out.status.code(),
            r,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, r, err) = gc(&[]);
    assert_eq!(code, Some(0), "{err}\n{r}");
    assert_eq!(deleted_tags(&r), ["lib/app:v1".to_string()].into(), "{r}");
    let p = &r["proxy"];
    assert_eq!(
        (p["expired_manifests"].as_u64(), p["tags_expired"].as_u64()),
        (Some(1), Some(1)),
        "{p}"
    );
    assert_eq!(p["state_written"], true, "{p}");
    // Written back without v1's manifest and its own layer; v2's and the shared base stay.
    let after = state(&proxy);
    assert!(keys_of(&after, &v1.manifest.digest).is_empty(), "{after}");
    assert!(keys_of(&after, &v1.layers[1].digest).is_empty(), "{after}");
    assert!(!keys_of(&after, &v2.manifest.digest).is_empty(), "{after}");
    assert!(!keys_of(&after, &v1.layers[0].digest).is_empty(), "{after}");
    assert!(proxy.reference_gc_dry_run().is_empty());
    // Restarted, the proxy reads that state; v1 is fetched again from upstream, v2 is served.
    proxy.restart();
    proxy.pull("lib/app:v1").expect("fetched again");
    proxy.pull("lib/app:v2").expect("still cached");
    saved(&proxy, &[&v1.manifest.digest]);
    proxy.stop();
    // --proxy-ttl counts from when each was cached: 1s has expired them all.
    let plan = proxy.tmp.path().join("plan.json");
    let plan = plan.to_str().unwrap();
    let (code, r, err) = gc(&["--dry-run", "--proxy-ttl", "1s"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(deleted_tags(&r).len(), 2, "{r}");
    // The same as a reviewed plan: apply carries it out and rewrites the state too.
    regsweep_ok(&[
        "gc",
        "--config",
        &config,
        "--grace",
        "0",
        "-m",
        "--dry-run",
        "--proxy-ttl",
        "1s",
        "-q",
        "--format",
        "json",
        "--report",
        plan,
    ]);
    let out = regsweep_ok(&["apply", plan, "--config", &config, "--format", "json"]);
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["proxy"]["state_written"], true, "{a}");
    let after = state(&proxy);
    for d in [&v1.manifest.digest, &v2.manifest.digest] {
        assert!(keys_of(&after, d).is_empty(), "{after}");
    }
    assert!(proxy.reference_gc_dry_run().is_empty());
    // A state file the registry could not read stops the run, naming it; nothing goes.
    std::fs::write(proxy.root.join("scheduler-state.json"), "{\"lib/app@sha").unwrap();
    let before = blobs_on_disk(&proxy.v2());
    let (code, _, err) = gc(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("scheduler-state.json") && err.contains("nothing was deleted"),
        "{err}"
    );
    assert_eq!(blobs_on_disk(&proxy.v2()), before);
}
