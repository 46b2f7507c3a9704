//! Records that never lie: a delete the store answers with a per-key error is tried once more,
//! and what still did not go is a failure, never listed as deleted.

use crate::s3::{run, settled_world};
use crate::servers::{S3_PREFIX, S3Proxy};
use crate::testenv::*;

/// `gc --grace 0 --no-cache` on the world's bucket through `proxy`, with `extra`.
fn gc_through(w: &crate::world::World, proxy: &S3Proxy, extra: &[&str]) -> (i32, String, String) {
    let moto = w.reg.s3.as_ref().unwrap();
    let root = format!("s3://{}/{S3_PREFIX}", moto.bucket);
    let mut args = vec![
        "gc",
        "--root",
        &root,
        "--endpoint",
        &proxy.endpoint,
        "--grace",
        "0",
        "--no-cache",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn sweep(w: &crate::world::World, proxy: &S3Proxy) -> (i32, serde_json::Value) {
    let (code, out, err) = gc_through(w, proxy, &["--quiet", "--format", "json", "--report", "-"]);
    let r = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    (code, r)
}

/// The sweep went as planned: the record lists `expected`, the bucket lost exactly that, and
/// every kept tag pulls.
fn assert_swept_as_planned(
    w: &crate::world::World,
    r: &serde_json::Value,
    before: &Set,
    expected: &Set,
) {
    let moto = w.reg.s3.as_ref().unwrap();
    assert_eq!(&deleted_blobs(r), expected, "{r}");
    assert_eq!(moto.blobs(), before.difference(expected).cloned().collect());
    w.assert_all_pull();
}

/// A run whose removals failed (`cause` among its errors): exit 1, and the record lists
/// exactly what left the bucket, nothing still in it.
fn assert_lists_only_what_went(
    w: &crate::world::World,
    code: i32,
    r: &serde_json::Value,
    before: &Set,
    cause: &str,
) {
    assert_eq!(code, 1, "a failed removal fails the run: {r}");
    assert!(r["summary"]["sweep_failures"].as_u64().unwrap() > 0, "{r}");
    assert!(r["errors"].to_string().contains(cause), "{r}");
    let after = w.reg.s3.as_ref().unwrap().blobs();
    let listed = deleted_blobs(r);
    assert!(
        listed.is_disjoint(&after),
        "a blob listed as deleted is still in the bucket: {r}"
    );
    let gone: Set = before.difference(&after).cloned().collect();
    assert_eq!(listed, gone, "the record lists exactly what went");
    w.assert_all_pull();
}

type Set = std::collections::BTreeSet<String>;

#[test]
fn a_key_the_store_did_not_delete_is_retried_and_else_reported_never_listed() {
    // Once: resent (object_store resends a DeleteObjects whose answer names an InternalError,
    // up to five times), and the record lists every blob.
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let expected = w.plain_garbage(&before);
    let proxy = S3Proxy::with_key_errors(&moto.endpoint, 1);
    let (code, r) = sweep(&w, &proxy);
    assert_eq!(code, 0, "{r}");
    assert_swept_as_planned(&w, &r, &before, &expected);

    // Twelve times, one folder at a time: the first try and its immediate retry (six requests
    // each, with object_store's resending) both lose a key; the pass at the end of the stage,
    // after every other folder, deletes it.
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let expected = w.plain_garbage(&before);
    let proxy = S3Proxy::with_key_errors(&moto.endpoint, 12);
    let (code, out, err) = gc_through(&w, &proxy, &["-j", "1", "-v", "--format", "json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(code, 0, "{r}");
    assert!(err.contains("once more, after the stage"), "{err}");
    assert_eq!(r["summary"]["sweep_failures"], 0, "{r}");
    assert_swept_as_planned(&w, &r, &before, &expected);

    // Every time: what did not go is a failure, and the lists hold only what went.
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let proxy = S3Proxy::with_key_errors(&moto.endpoint, 100_000);
    let (code, r) = sweep(&w, &proxy);
    assert_lists_only_what_went(&w, code, &r, &before, "InternalError");
}

#[test]
fn a_delete_answer_naming_a_key_not_asked_for_or_leaving_one_out_is_not_believed() {
    // Every key went, and every answer also names one not asked for (object_store would
    // panic on it): the answers are refused, the listings say what went, and the run is whole.
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let expected = w.plain_garbage(&before);
    let proxy = S3Proxy::answering(&moto.endpoint, "foreign");
    let (code, out, err) = gc_through(&w, &proxy, &["--format", "json", "-v"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(code, 0, "{r}\n{err}");
    assert!(err.contains("not believed"), "{err}");
    assert_swept_as_planned(&w, &r, &before, &expected);

    // Each request loses its first key and its answer says nothing of it (object_store would
    // count it deleted): what stays is a failure, and the record lists exactly what went.
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let proxy = S3Proxy::answering(&moto.endpoint, "silent");
    let (code, r) = sweep(&w, &proxy);
    assert_lists_only_what_went(&w, code, &r, &before, "says nothing of");
}

#[test]
fn a_run_refused_before_its_report_leaves_its_refusal_not_the_last_report() {
    let mut reg = Registry::start_cached(crate::servers::RegCache::InMemory);
    crate::live::push_and_delete(&mut reg, "refused-app", "test/app:v1");
    let dir = tempfile::tempdir().unwrap();
    let (report, metrics) = (dir.path().join("r.json"), dir.path().join("m.prom"));
    std::fs::write(&report, "{\"schema\": \"the previous run's report\"}").unwrap();
    std::fs::write(&metrics, "regsweep_run_refused{command=\"gc\"} 0\n").unwrap();
    let before = blobs_on_disk(&reg.v2());
    let out = regsweep(&[
        "gc",
        "--config",
        reg.config.to_str().unwrap(),
        "--grace",
        "0",
        "--format",
        "json",
        "--report",
        report.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["schema"], "regsweep/gc-refused/v1", "{r}");
    assert_eq!(r["summary"]["exit_code"], 1);
    assert!(
        r["summary"]["error"]
            .as_str()
            .unwrap()
            .contains("in memory"),
        "{r}"
    );
    let m = std::fs::read_to_string(&metrics).unwrap();
    assert!(m.contains("regsweep_run_refused{command=\"gc\"} 1"), "{m}");
    assert_eq!(blobs_on_disk(&reg.v2()), before, "nothing deleted");
}

#[test]
fn items_dated_ahead_of_the_clock_are_named_as_clock_skew_by_gc_and_check() {
    let f = crate::fixture::fixture();
    let v2 = f.root.join("docker/registry/v2");
    let ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(365 * 86_400);
    let link = v2.join("repositories/acme/app/_manifests/tags/v1/current/link");
    (std::fs::File::options().write(true).open(&link).unwrap())
        .set_modified(ahead)
        .unwrap();
    let (_, r) = gc_json(&f.root, &["--dry-run"]);
    let skew: Vec<&serde_json::Value> = (r["errors"].as_array().unwrap().iter())
        .filter(|e| e["kind"] == "clock_skew")
        .collect();
    assert_eq!(skew.len(), 1, "{r}");
    assert!(
        skew[0]["message"].as_str().unwrap().contains("by 365d"),
        "{r}"
    );
    assert!(
        skew[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("tags/v1/current/link"),
        "{r}"
    );
    let out = regsweep(&[
        "check",
        "--root",
        f.root.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(c["findings"].to_string().contains("clock_skew"), "{c}");
}

#[test]
fn connections_reset_at_random_are_retried_and_the_sweep_ends_as_planned() {
    // Every 7th request's connection reset, unanswered: each is retried and the run ends
    // (before the gate gave a dropped request's place back, lost places stopped a run for good).
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let expected = w.plain_garbage(&before);
    let proxy = S3Proxy::resetting(&moto.endpoint, 7);
    let (code, r) = sweep(&w, &proxy);
    assert_eq!(code, 0, "{r}");
    assert!(
        proxy.counts()["reset"].as_u64().unwrap() > 3,
        "{}",
        proxy.counts()
    );
    assert_eq!(deleted_blobs(&r), expected, "{r}");
    // The record counts the failed attempts it retried, as the proxy counted its resets.
    let retried = r["summary"]["requests"]["retried"].as_u64().unwrap_or(0);
    let resets = proxy.counts()["reset"].as_u64().unwrap();
    assert!(
        retried >= resets && retried > 0,
        "{retried} retried, {resets} reset: {r}"
    );
    assert_eq!(
        moto.blobs(),
        before.difference(&expected).cloned().collect()
    );
    w.assert_all_pull();
}

#[test]
fn an_endpoint_that_stops_answering_fails_the_run_naming_it_and_nothing_is_deleted() {
    // Answers 40 requests, then holds every connection unanswered: each request times out,
    // is retried, and the run stops with the endpoint and the cause instead of waiting forever,
    // before it plans: what went unanswered is unknown, not damage, so --allow-damage is no
    // licence to sweep past it.
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let proxy = S3Proxy::stalling_after(&moto.endpoint, 40);
    let extra = ["--quiet", "--request-timeout", "2s", "--allow-damage"];
    let (code, out, err) = gc_through(&w, &proxy, &extra);
    assert_eq!(code, 1, "{out}{err}");
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.contains(&proxy.endpoint) && line.contains("timed out"),
        "{err}"
    );
    assert!(
        proxy.counts()["stalled"].as_u64().unwrap() > 0,
        "{}",
        proxy.counts()
    );
    assert_eq!(moto.blobs(), before, "nothing deleted");
}
