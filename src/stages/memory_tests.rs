//! The stages on the in-memory backend, without a registry: a layout written as the registry
//! writes it, scanned, planned and swept, then scanned again.

use crate::model::Rules;
use crate::model::digest::Digest;
use crate::pipeline;
use crate::progress::Hidden;
use crate::stages::scan::ScanOptions;
use crate::stages::sweep::{SweepOptions, sweep};
use crate::storage::memory::MemStorage;
use sha2::{Digest as _, Sha256};

const OLD: i64 = 1_600_000_000;

fn digest(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// Writes a blob as the registry does; its digest.
fn blob(store: &MemStorage, bytes: &[u8]) -> Digest {
    let d = digest(bytes);
    let hex = d.hex();
    store.put(
        &format!("blobs/sha256/{}/{hex}/data", &hex[..2]),
        bytes,
        OLD,
    );
    d
}

fn layer_link(store: &MemStorage, repo: &str, d: Digest) {
    let path = format!("repositories/{repo}/_layers/sha256/{}/link", d.hex());
    store.put(&path, d.to_string().as_bytes(), OLD);
}

/// One tagged image (config, layer) and two pieces of garbage: a layer linked and used by no
/// manifest, and a blob linked from nowhere. The digests of the image's three blobs and of
/// the garbage.
fn world(store: &MemStorage) -> (Vec<Digest>, Vec<Digest>) {
    let config = blob(
        store,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let layer = blob(store, b"layer bytes");
    let unused = blob(store, b"an unused layer");
    let lost = blob(store, b"linked from nowhere");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":1}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":1}}]}}"#
    );
    let m = blob(store, manifest.as_bytes());
    for d in [config, layer, unused] {
        layer_link(store, "acme/app", d);
    }
    let link = m.to_string();
    let base = "repositories/acme/app/_manifests";
    store.put(
        &format!("{base}/revisions/sha256/{}/link", m.hex()),
        link.as_bytes(),
        OLD,
    );
    store.put(
        &format!("{base}/tags/v1/current/link"),
        link.as_bytes(),
        OLD,
    );
    store.put(
        &format!("{base}/tags/v1/index/sha256/{}/link", m.hex()),
        link.as_bytes(),
        OLD,
    );
    (vec![m, config, layer], vec![unused, lost])
}

#[test]
fn scan_plan_and_sweep_on_the_in_memory_backend() {
    let store = MemStorage::new();
    let (kept, garbage) = world(&store);
    let layout = pipeline::load(&store, ScanOptions::default(), None, &Hidden).unwrap();
    assert_eq!((layout.repos.len(), layout.blobs.len()), (1, 5));
    assert!(layout.findings.is_empty(), "{:?}", layout.findings);
    let now = chrono::Utc::now().timestamp();
    let (plan, _) = pipeline::decide(&layout, None, &Rules::without_grace(false), now);
    let mut planned: Vec<Digest> = plan.blobs.iter().map(|b| b.digest()).collect();
    planned.sort();
    let mut want = garbage.clone();
    want.sort();
    assert_eq!(planned, want);
    assert_eq!(plan.layer_links.len(), 1);
    let outcome = sweep(
        &store,
        &plan,
        &Hidden,
        &SweepOptions {
            stop: &|| false,
            trash: None,
            since_ns: pipeline::since_ns(chrono::Utc::now()),
            staged: &|| {},
        },
    );
    assert!(
        outcome.failures.is_empty() && outcome.kept.is_empty(),
        "{outcome:?}"
    );
    let files = store.files();
    for d in &garbage {
        assert!(
            !files.iter().any(|f| f.contains(&d.hex())),
            "{d} left: {files:?}"
        );
    }
    for d in &kept {
        let data = format!("blobs/sha256/{}/{}/data", &d.hex()[..2], d.hex());
        assert!(store.exists(&data), "{d} swept");
    }
    assert!(
        !files.iter().any(|f| f.contains(".regsweep-staging")),
        "{files:?}"
    );
    // Again: nothing left to do.
    let layout = pipeline::load(&store, ScanOptions::default(), None, &Hidden).unwrap();
    let (plan, _) = pipeline::decide(&layout, None, &Rules::without_grace(false), now);
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn a_sweep_on_the_in_memory_backend_keeps_what_changed_during_the_run() {
    let store = MemStorage::new();
    let (_, garbage) = world(&store);
    let layout = pipeline::load(&store, ScanOptions::default(), None, &Hidden).unwrap();
    let now = chrono::Utc::now().timestamp();
    let (plan, _) = pipeline::decide(&layout, None, &Rules::without_grace(false), now);
    let started = chrono::Utc::now();
    // A push rewrites the unused layer's link after the plan: it must stay, with its blob.
    let unused = garbage[0];
    let link = format!("repositories/acme/app/_layers/sha256/{}/link", unused.hex());
    store.put(
        &link,
        unused.to_string().as_bytes(),
        chrono::Utc::now().timestamp() + 1,
    );
    let outcome = sweep(
        &store,
        &plan,
        &Hidden,
        &SweepOptions {
            stop: &|| false,
            trash: None,
            since_ns: pipeline::since_ns(started),
            staged: &|| {},
        },
    );
    assert!(store.exists(&link), "{outcome:?}");
    let data = format!("blobs/sha256/{}/{}/data", &unused.hex()[..2], unused.hex());
    assert!(
        store.exists(&data),
        "the blob a new link names stays: {outcome:?}"
    );
    assert!(store.locked_by().is_none());
}
