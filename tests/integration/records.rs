//! Records that never lie: a delete the store answers with a per-key error is tried once more,
//! and what still did not go is a failure, never listed as deleted.

use crate::s3::{run, settled_world};
use crate::servers::{S3_PREFIX, S3Proxy};
use crate::testenv::*;

fn sweep(w: &crate::world::World, proxy: &S3Proxy) -> (i32, serde_json::Value) {
    let moto = w.reg.s3.as_ref().unwrap();
    let root = format!("s3://{}/{S3_PREFIX}", moto.bucket);
    let (code, out, err) = run(&[
        "gc",
        "--root",
        &root,
        "--endpoint",
        &proxy.endpoint,
        "--grace",
        "0",
        "--format",
        "json",
        "--quiet",
        "--report",
        "-",
        "--no-cache",
    ]);
    let r = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    (code, r)
}

#[test]
fn a_key_the_store_did_not_delete_is_retried_and_else_reported_never_listed() {
    // Once: the retry deletes it, and the record lists every blob.
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let expected = w.plain_garbage(&before);
    let proxy = S3Proxy::with_key_errors(&moto.endpoint, 1);
    let (code, r) = sweep(&w, &proxy);
    assert_eq!(code, 0, "{r}");
    assert_eq!(deleted_blobs(&r), expected, "{r}");
    assert_eq!(
        moto.blobs(),
        before.difference(&expected).cloned().collect()
    );
    w.assert_all_pull();

    // Every time: what did not go is a failure, and the lists hold only what went.
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let proxy = S3Proxy::with_key_errors(&moto.endpoint, 100_000);
    let (code, r) = sweep(&w, &proxy);
    assert_eq!(code, 1, "a failed removal fails the run: {r}");
    assert!(r["summary"]["sweep_failures"].as_u64().unwrap() > 0, "{r}");
    assert!(r["errors"].to_string().contains("InternalError"), "{r}");
    let after = moto.blobs();
    let listed = deleted_blobs(&r);
    assert!(
        listed.is_disjoint(&after),
        "a blob listed as deleted is still in the bucket"
    );
    let gone: std::collections::BTreeSet<String> = before.difference(&after).cloned().collect();
    assert_eq!(listed, gone, "the record lists exactly what went");
    w.assert_all_pull();
}
