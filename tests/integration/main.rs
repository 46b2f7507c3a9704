//! Integration tests: regsweep against layouts written by the real registry.

mod bounded;
mod cloudenv;
mod clouds;
mod docs;
mod evidence;
mod faults;
mod fixture;
mod hardening;
mod inuse;
mod layout;
pub(crate) mod live;
mod operator;
mod outputs;
mod page;
mod proxy;
mod pullenv;
mod pulls;
mod records;
mod refusals;
pub(crate) mod retention;
pub(crate) mod s3;
mod safety;
mod servers;
mod space;
mod testenv;
mod usage;
mod world;

use std::collections::BTreeSet;
use std::time::Duration;
use testenv::*;

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn plain_gc_deletes_what_the_reference_gc_does_and_every_tag_still_pulls() {
    let w = world::build();
    let before = blobs_on_disk(&w.reg.v2());
    let expected = w.plain_garbage(&before);
    assert_eq!(
        expected.len(),
        4,
        "the dangling blob and the deleted manifest with its config and own layer"
    );

    let (code, dry) = gc_json(&w.reg.root, &["--dry-run", "--grace", "0"]);
    assert_eq!(code, 0, "{dry}");
    assert_eq!(deleted_blobs(&dry), expected);
    assert_eq!(
        w.reg.reference_gc_dry_run(),
        expected,
        "the reference GC's own choice"
    );
    assert_eq!(
        blobs_on_disk(&w.reg.v2()),
        before,
        "a dry run deletes nothing"
    );
    assert_eq!(dry["summary"]["manifests_deleted"], 0);

    let (code, real) = gc_json(&w.reg.root, &["--grace", "0"]);
    assert_eq!(code, 0, "{real}");
    assert_eq!(deleted_blobs(&real), expected);
    let after = blobs_on_disk(&w.reg.v2());
    assert_eq!(after, before.difference(&expected).cloned().collect());
    w.assert_all_pull();
    assert!(
        w.reg.reference_gc_dry_run().is_empty(),
        "the reference GC finds nothing left"
    );

    let (_, again) = gc_json(&w.reg.root, &["--grace", "0"]);
    assert_eq!(again["summary"]["blobs_deleted"], 0);
    assert_eq!(again["summary"]["layer_links_deleted"], 0);
}

#[test]
fn delete_untagged_keeps_index_children_referrers_and_signatures() {
    let w = world::build();
    let before = blobs_on_disk(&w.reg.v2());
    let expected: BTreeSet<String> = before
        .iter()
        .filter(|d| !w.kept.contains(*d))
        .cloned()
        .collect();
    assert!(expected.is_superset(&w.untagged_only));

    let (code, report) = gc_json(&w.reg.root, &["--delete-untagged", "--grace", "0"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(deleted_blobs(&report), expected);
    let manifests: BTreeSet<&str> = report["manifests_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        manifests.len(),
        2,
        "the overwritten v1 and its referrer: {manifests:?}"
    );
    assert!(manifests.contains(w.old_sbom.as_str()));
    assert!(!manifests.contains(w.sbom.as_str()));
    assert_eq!(blobs_on_disk(&w.reg.v2()), w.kept);
    w.assert_all_pull();
    assert!(
        w.reg.pull(&format!("acme/app@{}", w.old_sbom)).is_err(),
        "the untagged image's referrer is gone"
    );
    assert!(
        w.reg.reference_gc_dry_run().is_empty(),
        "the reference GC finds nothing left"
    );
}

#[test]
fn a_run_scoped_by_repository_touches_only_those_and_no_blob_another_needs() {
    let w = world::build();
    let (code, all) = gc_json(&w.reg.root, &["--dry-run", "--grace", "0", "-m"]);
    assert_eq!(code, 0, "{all}");
    let linked = |from: &dyn Fn(&[serde_json::Value]) -> bool| -> BTreeSet<String> {
        (all["blobs_deleted"].as_array().unwrap().iter())
            .filter(|b| from(b["linked_from"].as_array().unwrap()))
            .map(|b| b["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let acme = linked(&|f| f.iter().any(|r| r.as_str().unwrap().starts_with("acme/")));
    let nowhere = linked(&|f| f.is_empty());
    assert!(!acme.is_empty() && !nowhere.is_empty(), "{all}");

    // library/** alone: nothing of acme's goes, nor any blob linked from nowhere.
    let (code, lib) = gc_json(
        &w.reg.root,
        &["--grace", "0", "-m", "--repository", "library/**"],
    );
    assert_eq!(code, 0, "{lib}");
    assert_eq!(lib["summary"]["repositories_in_scope"], 1, "{lib}");
    for list in ["tags_deleted", "manifests_deleted", "layer_links_deleted"] {
        for item in lib[list].as_array().unwrap() {
            assert!(
                item["repository"].as_str().unwrap().starts_with("library/"),
                "{item}"
            );
        }
    }
    let gone = deleted_blobs(&lib);
    assert!(
        gone.is_disjoint(&acme) && gone.is_disjoint(&nowhere),
        "{lib}"
    );
    w.assert_all_pull();

    // acme/**, through a reviewed plan: the plan carries its scope to apply.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let root = w.reg.root.to_str().unwrap();
    let out = regsweep(&[
        "gc",
        "--root",
        root,
        "--dry-run",
        "--grace",
        "0",
        "-m",
        "--repository",
        "acme/**",
        "--format",
        "json",
        "--report",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    assert_eq!(
        doc["options"]["repositories"],
        serde_json::json!(["acme/**"])
    );
    let out = regsweep(&["apply", plan.to_str().unwrap(), "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let on_disk = blobs_on_disk(&w.reg.v2());
    assert!(
        on_disk.is_disjoint(&w.untagged_only),
        "acme's untagged image went"
    );
    assert!(
        on_disk.is_superset(&nowhere),
        "blobs linked from nowhere are not acme's"
    );
    w.assert_all_pull();

    // An unscoped run finishes the job.
    let (code, rest) = gc_json(&w.reg.root, &["--grace", "0", "-m"]);
    assert_eq!(code, 0, "{rest}");
    assert_eq!(deleted_blobs(&rest), nowhere);
    assert_eq!(blobs_on_disk(&w.reg.v2()), w.kept);
    w.assert_all_pull();
    assert!(w.reg.reference_gc_dry_run().is_empty());
}

#[test]
fn delete_untagged_with_an_age_takes_only_untagged_manifests_pushed_before_it() {
    let w = world::build();
    let manifests = |r: &serde_json::Value| -> BTreeSet<String> {
        (r["manifests_deleted"].as_array().unwrap().iter())
            .map(|m| m["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let dry = |extra: &[&str]| {
        let mut args = vec!["--dry-run", "--grace", "0"];
        args.extend_from_slice(extra);
        let (code, r) = gc_json(&w.reg.root, &args);
        assert_eq!(code, 0, "{r}");
        r
    };
    let all = dry(&["-m"]);
    let untagged = manifests(&all);
    assert_eq!(untagged.len(), 2, "{all}");
    // Everything was pushed just now: with an age, no untagged manifest is old enough.
    let young = dry(&["--delete-untagged=1d"]);
    assert!(manifests(&young).is_empty(), "{young}");
    assert!(deleted_blobs(&young).is_disjoint(&w.untagged_only));
    assert_eq!(young["options"]["delete_untagged_older_than"], "1d");
    // Pushed two days ago (their revision links say so): past 1d, not past 3d.
    let revisions = w
        .reg
        .v2()
        .join("repositories/acme/app/_manifests/revisions/sha256");
    for d in &untagged {
        let link = revisions.join(&d["sha256:".len()..]).join("link");
        let ok = std::process::Command::new("touch")
            .args(["-d", "2 days ago"])
            .arg(&link)
            .status()
            .unwrap()
            .success();
        assert!(ok, "touch {}", link.display());
    }
    assert_eq!(manifests(&dry(&["--delete-untagged=1d"])), untagged);
    assert_eq!(deleted_blobs(&dry(&["-m=1d"])), deleted_blobs(&all));
    assert!(manifests(&dry(&["--delete-untagged=3d"])).is_empty());

    // The same as a policy setting; the command line's age wins over it.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yml");
    std::fs::write(&policy, "version: 1\nuntagged: {older_than: 1d}\n").unwrap();
    let p = policy.to_str().unwrap();
    assert_eq!(manifests(&dry(&["--policy", p])), untagged);
    assert!(manifests(&dry(&["--policy", p, "-m=3d"])).is_empty());
    let out = regsweep(&["policy", "check", p]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("untagged manifests go after 1d"), "{text}");

    // And for real: the two go, every tag still pulls.
    let (code, real) = gc_json(&w.reg.root, &["--grace", "0", "--delete-untagged=1d"]);
    assert_eq!(code, 0, "{real}");
    assert_eq!(manifests(&real), untagged);
    w.assert_all_pull();
    assert!(w.reg.reference_gc_dry_run().is_empty());
}

#[test]
fn grace_keeps_everything_young_and_counts_it() {
    let w = world::build();
    let before = blobs_on_disk(&w.reg.v2());
    let (code, report) = gc_json(&w.reg.root, &["--delete-untagged"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["summary"]["blobs_deleted"], 0);
    assert_eq!(report["summary"]["manifests_deleted"], 0);
    let expected_kept = (before.len() - w.kept.len()) as u64 + 2; // + the two untagged manifests
    assert_eq!(
        report["summary"]["kept_by_grace"].as_u64().unwrap(),
        expected_kept,
        "{report}"
    );
    assert_eq!(blobs_on_disk(&w.reg.v2()), before);

    // Age the layout: the same run now sweeps.
    age_tree(&w.reg.root, 2 * DAY);
    let (_, report) = gc_json(&w.reg.root, &["--delete-untagged", "--grace", "1d"]);
    assert_eq!(report["summary"]["kept_by_grace"], 0);
    assert_eq!(blobs_on_disk(&w.reg.v2()), w.kept);
    w.assert_all_pull();
}

#[test]
fn a_push_during_the_grace_period_survives() {
    let mut w = world::build();
    age_tree(&w.reg.root, 2 * DAY);
    // A fresh push that reuses an old base layer: its manifest and new layer are young, the
    // shared base is old but its fresh layer link in the new repository protects it.
    let mut oci = w.reg.new_oci();
    let img = oci.image(
        &[("base-os", 3000), ("fresh", 1000)],
        "amd64",
        "2026-01-01T00:00:00Z",
    );
    oci.tag(&img.manifest, "fresh");
    w.reg.push(&oci, "fresh", "fresh/app:1");
    // Simulate a push cut off before its tag was written: remove the tag, keep the revision.
    std::fs::remove_dir_all(w.reg.v2().join("repositories/fresh/app/_manifests/tags/1")).unwrap();
    let (_, report) = gc_json(&w.reg.root, &["--delete-untagged"]);
    for d in img.blobs() {
        assert!(
            !deleted_blobs(&report).contains(&d),
            "{d} of the fresh push was deleted"
        );
    }
    w.reg
        .pull(&format!("fresh/app@{}", img.manifest.digest))
        .expect("the fresh push pulls");
    w.assert_all_pull();
}

#[test]
fn drop_in_form_reads_the_registry_config() {
    let w = world::build();
    age_tree(&w.reg.root, 2 * DAY);
    let before = blobs_on_disk(&w.reg.v2());
    let out = regsweep(&[
        "garbage-collect",
        "--dry-run",
        w.reg.config.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would delete") && text.contains("4 blobs"),
        "{text}"
    );
    assert_eq!(blobs_on_disk(&w.reg.v2()), before);
    // The reference's own lines, the same as the reference prints them on the same config.
    let eligible = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("blob eligible for deletion: "))
            .map(|d| d.trim().to_string())
            .collect()
    };
    assert_eq!(eligible(&text), w.reg.reference_gc_dry_run());
    // Its marking lines too: every repository, manifest and blob the reference marks, by line.
    let marking = |text: &str| -> Vec<String> {
        let mut v: Vec<String> = (text.lines())
            .filter(|l| l.contains(": marking "))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let reference = w.reg.reference_gc_dry_run_output();
    assert!(reference.contains(": marking manifest "), "{reference}");
    assert_eq!(marking(&text), marking(&reference));
    assert!(
        text.lines().any(|l| l == "library/multi"),
        "the repository lines: {text}"
    );
    // The count line too, to the number.
    let count = |text: &str| -> String {
        (text.lines())
            .find(|l| l.contains("blobs marked,"))
            .unwrap_or_default()
            .to_string()
    };
    assert!(count(&text).ends_with("blobs marked, 4 blobs and 0 manifests eligible for deletion"));
    assert_eq!(count(&text), count(&reference), "{text}");
    // Go's flag forms, and a config completed by the registry's environment.
    let bare = w.reg.tmp.path().join("no-storage.yml");
    std::fs::write(&bare, "version: 0.1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["garbage-collect", "--dry-run=true", "-m=false"])
        .arg(&bare)
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &w.reg.root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        eligible(&String::from_utf8_lossy(&out.stdout)),
        eligible(&text)
    );
    assert_eq!(blobs_on_disk(&w.reg.v2()), before);
    // The report names where the root came from, and so does -v.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["gc", "--dry-run", "-v", "--config"])
        .arg(&bare)
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &w.reg.root)
        .output()
        .unwrap();
    let (text, log) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        text.contains("  environment    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"),
        "{text}"
    );
    assert!(
        log.contains("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY from the environment"),
        "{log}"
    );

    let out = regsweep(&[
        "garbage-collect",
        "-m",
        "-q",
        w.reg.config.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "quiet means quiet");
    assert_eq!(blobs_on_disk(&w.reg.v2()), w.kept);
    w.assert_all_pull();
}

/// Rewrites `fixtures/registry` from the real registry: `scripts/regen-fixtures.sh`.
#[test]
#[ignore]
fn regenerate_fixtures() {
    let w = world::build();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let dest = out.join("registry");
    let _ = std::fs::remove_dir_all(&dest);
    copy_tree(&w.reg.root, &dest);
    // Git keeps no empty folders: drop them here too, so a checkout is the same as this tree.
    regsweep::stages::trash::prune(&dest);
    let expected = serde_json::json!({
        "tags": w.tags,
        "kept": w.kept,
        "untagged_only": w.untagged_only,
        "sbom": w.sbom,
        "old_sbom": w.old_sbom,
    });
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

#[test]
fn the_manifest_cache_never_changes_what_gc_decides() {
    let w = world::build();
    let cache = w.reg.tmp.path().join("cache/manifests.bin");
    let c = cache.to_str().unwrap();
    let plan = |extra: &[&str]| {
        let mut args = vec!["--dry-run", "--grace", "0", "-m"];
        args.extend_from_slice(extra);
        let (code, r) = gc_json(&w.reg.root, &args);
        assert_eq!(code, 0, "{r}");
        (deleted_blobs(&r), r["manifests_deleted"].clone())
    };
    let truth = plan(&["--no-cache"]);
    assert_eq!(plan(&["--cache", c]), truth, "cold");
    assert!(cache.exists(), "written");
    assert_eq!(plan(&["--cache", c]), truth, "warm");
    // Damaged: ignored and rebuilt, never trusted.
    let mut bytes = std::fs::read(&cache).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&cache, &bytes).unwrap();
    assert_eq!(plan(&["--cache", c]), truth, "damaged");
    assert_ne!(std::fs::read(&cache).unwrap(), bytes, "rebuilt");
    // A manifest the cache knows but the store lost is still reported missing, and blocks.
    let hex = &w.sbom["sha256:".len()..];
    let v2_manifest = w.reg.v2().join("blobs/sha256").join(&hex[..2]).join(hex);
    std::fs::remove_file(v2_manifest.join("data")).unwrap();
    let (code, r) = gc_json(&w.reg.root, &["--dry-run", "--grace", "0", "--cache", c]);
    assert_eq!(code, 3, "damage: {r}");
    assert!(
        r["errors"].to_string().contains("manifest blob is missing"),
        "{}",
        r["errors"]
    );
}
