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

/// Sweeps `plan` from now, to the end.
fn sweep_now(store: &MemStorage, plan: &crate::gc::plan::Plan) -> crate::gc::outcome::Outcome {
    sweep(
        store,
        plan,
        &Hidden,
        &SweepOptions {
            stop: &|| false,
            trash: None,
            since_ns: pipeline::since_ns(chrono::Utc::now()),
            staged: &|| {},
        },
    )
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
    let outcome = sweep_now(&store, &plan);
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

fn bounded(limit: u64, disk_cap: Option<u64>) -> ScanOptions {
    ScanOptions {
        memory: crate::spill::Bound {
            limit: Some(limit),
            disk_cap,
            available: None,
        },
        ..ScanOptions::default()
    }
}

#[test]
fn the_bounded_mode_spills_the_blob_list_and_layer_links_and_plans_the_same() {
    let store = MemStorage::new();
    let (kept, garbage) = world(&store);
    // Blobs in many prefixes, so that the runs are many and written out of order.
    let extra: Vec<Digest> = (0..400)
        .map(|i| blob(&store, format!("extra {i}").as_bytes()))
        .collect();
    for d in &extra[..50] {
        layer_link(&store, "acme/other", *d);
    }
    let held = pipeline::load(&store, ScanOptions::default(), None, &Hidden).unwrap();
    let spilled = pipeline::load(&store, bounded(1 << 40, None), None, &Hidden).unwrap();
    assert!(!held.blobs.is_spilled() && spilled.blobs.is_spilled());
    assert!(spilled.repos.iter().all(|r| r.layers.is_spilled()));
    let blobs = |l: &crate::model::Layout| -> Vec<_> {
        l.blobs
            .iter()
            .map(|b| (b.digest, b.size, b.mtime))
            .collect()
    };
    let links = |l: &crate::model::Layout| -> Vec<Vec<_>> {
        (l.repos.iter())
            .map(|r| r.layers.iter().map(|k| (k.blob, { k.mtime })).collect())
            .collect()
    };
    assert_eq!(blobs(&spilled), blobs(&held));
    assert_eq!(spilled.blobs.len(), 405);
    assert_eq!(links(&spilled), links(&held));
    assert_eq!(spilled.manifests.len(), held.manifests.len());
    let now = chrono::Utc::now().timestamp();
    let plan = |l| pipeline::decide(l, None, &Rules::without_grace(false), now).0;
    let (a, b) = (plan(&held), plan(&spilled));
    let goes =
        |p: &crate::gc::plan::Plan| -> Vec<Digest> { p.blobs.iter().map(|b| b.digest()).collect() };
    let unlinks = |p: &crate::gc::plan::Plan| -> Vec<String> {
        (p.layer_links.iter())
            .map(|l| format!("{}@{}", l.repository, l.digest))
            .collect()
    };
    assert_eq!((goes(&b), unlinks(&b)), (goes(&a), unlinks(&a)));
    assert!(garbage.iter().all(|d| goes(&b).contains(d)));
    assert!(kept.iter().all(|d| !goes(&b).contains(d)));
    assert_eq!(goes(&b).len(), 2 + 400, "{:?}", unlinks(&b));
    // The spilled plan sweeps as the held one would.
    let outcome = sweep_now(&store, &b);
    assert!(outcome.failures.is_empty(), "{outcome:?}");
    let after = pipeline::load(&store, bounded(1 << 40, None), None, &Hidden).unwrap();
    let mut left: Vec<Digest> = after.blobs.iter().map(|b| b.digest).collect();
    left.sort();
    let mut want = kept.clone();
    want.sort();
    assert_eq!(left, want);
}

#[test]
fn a_full_spill_disk_or_a_limit_below_the_minimum_stops_the_run_before_it_plans() {
    let store = MemStorage::new();
    world(&store);
    let files = store.files();
    let e = pipeline::load(&store, bounded(1 << 40, Some(100)), None, &Hidden).unwrap_err();
    let said = e.to_string();
    assert!(
        said.contains("spill file") && said.contains("No space left") && said.contains("TMPDIR"),
        "{said}"
    );
    assert_eq!(e.exit_code(), crate::ExitCode::Error);
    let e = pipeline::load(&store, bounded(1 << 20, None), None, &Hidden).unwrap_err();
    let said = e.to_string();
    assert!(said.contains("give --memory-limit 65MiB or more"), "{said}");
    assert_eq!(e.exit_code(), crate::ExitCode::Usage);
    assert_eq!(store.files(), files, "nothing changed");
}

#[test]
fn a_young_tag_without_its_current_link_is_a_push_in_flight_and_an_old_one_is_damage() {
    use crate::model::{FindingKind, Severity};
    let store = MemStorage::new();
    let (kept, _) = world(&store);
    let now = chrono::Utc::now().timestamp();
    // The registry writes a tag's index link, then its current link: caught between the two,
    // and left so long ago.
    let link = kept[0].to_string();
    let index = |tag: &str| {
        format!(
            "repositories/acme/app/_manifests/tags/{tag}/index/sha256/{}/link",
            kept[0].hex()
        )
    };
    store.put(&index("pushing"), link.as_bytes(), now - 5);
    store.put(&index("left"), link.as_bytes(), OLD);
    let severities = |in_flight_from| {
        let scan = ScanOptions {
            in_flight_from,
            ..ScanOptions::default()
        };
        let layout = pipeline::load(&store, scan, None, &Hidden).unwrap();
        let mut found: Vec<(String, Severity)> = layout
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::TagWithoutCurrent)
            .map(|f| {
                (
                    f.path.file_name().unwrap().to_string_lossy().into(),
                    f.severity,
                )
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    };
    assert_eq!(
        severities(Some(now - 3600)),
        [
            ("left".into(), Severity::Damage),
            ("pushing".into(), Severity::Notice)
        ]
    );
    // Without a grace nothing is in flight.
    assert_eq!(
        severities(None),
        [
            ("left".into(), Severity::Damage),
            ("pushing".into(), Severity::Damage)
        ]
    );
}

#[test]
fn the_automatic_choice_looks_past_a_foreign_first_entry_of_the_blob_store() {
    let store = MemStorage::new();
    world(&store);
    for i in 0..400 {
        blob(&store, format!("extra {i}").as_bytes());
    }
    // Sorted before every prefix folder: it holds no blobs, so an estimate from it alone said
    // the store was empty and kept it in memory.
    store.put("blobs/sha256/0-notes", b"mine", OLD);
    let auto = ScanOptions {
        memory: crate::spill::Bound {
            limit: None,
            disk_cap: None,
            // Room for about 100 blobs held: the 405 here do not fit in half of it.
            available: Some(2 * 100 * crate::spill::HELD_PER_BLOB),
        },
        ..ScanOptions::default()
    };
    let layout = pipeline::load(&store, auto, None, &Hidden).unwrap();
    assert!(layout.blobs.is_spilled());
    assert_eq!(layout.blobs.len(), 405);
}

#[test]
fn what_a_cache_may_keep_is_the_layout_less_what_went() {
    use crate::live::{Present, Swept};
    let store = MemStorage::new();
    let (kept, garbage) = world(&store);
    for (i, d) in kept.iter().enumerate() {
        layer_link(&store, &format!("other/r{i}"), *d);
    }
    let layout = pipeline::load(&store, ScanOptions::default(), None, &Hidden).unwrap();
    let name = |r: &str| -> crate::model::Name { r.into() };
    let swept = Swept {
        blobs: vec![garbage[1]],
        links: vec![(name("acme/app"), garbage[0]), (name("other/r1"), kept[1])],
        manifests: Vec::new(),
    };
    let present = Present::new(&layout, &swept);
    let all: Vec<Digest> = kept.iter().chain(&garbage).copied().collect();
    for d in &all {
        assert_eq!(present.has_blob(d), *d != garbage[1], "{d}");
        for repo in ["acme/app", "other/r0", "other/r1", "other/r2", "nowhere"] {
            // What the scan read, less what went: a layer link, or a revision (the manifest).
            let linked = match repo {
                "acme/app" => *d != garbage[1] && *d != garbage[0],
                "other/r0" => *d == kept[0],
                "other/r2" => *d == kept[2],
                _ => false,
            };
            assert_eq!(present.has_link(repo, d), linked, "{repo} {d}");
        }
    }
    assert!(!Present::none().has_blob(&kept[0]));
}
