//! Tests on copies of `fixtures/registry`: exact results, damage, bad input and interrupted sweeps.

use crate::testenv::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub tags: Vec<String>,
    pub kept: BTreeSet<String>,
    pub untagged_only: BTreeSet<String>,
}

pub(crate) fn set(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A copy of the fixture, aged two days so the default grace does not hold it back.
pub fn fixture() -> Fixture {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    copy_tree(&src.join("registry"), &root);
    age_tree(&root, Duration::from_secs(2 * 86_400));
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("expected.json")).unwrap()).unwrap();
    let tags = e["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    Fixture {
        tmp,
        root,
        tags,
        kept: set(&e["kept"]),
        untagged_only: set(&e["untagged_only"]),
    }
}

impl Fixture {
    pub fn v2(&self) -> PathBuf {
        self.root.join("docker/registry/v2")
    }
    pub fn repo(&self, name: &str) -> PathBuf {
        self.v2().join("repositories").join(name)
    }
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        self.v2()
            .join("blobs/sha256")
            .join(&digest[7..9])
            .join(&digest[7..])
            .join("data")
    }
    /// The digest `repo:tag` points at.
    pub fn tag_target(&self, repo: &str, tag: &str) -> String {
        std::fs::read_to_string(
            self.repo(repo)
                .join("_manifests/tags")
                .join(tag)
                .join("current/link"),
        )
        .unwrap()
    }
    pub fn garbage(&self) -> BTreeSet<String> {
        blobs_on_disk(&self.v2())
            .into_iter()
            .filter(|d| !self.kept.contains(d) && !self.untagged_only.contains(d))
            .collect()
    }
}

pub(crate) fn error_paths(report: &serde_json::Value) -> Vec<String> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fixture_results_are_exact_in_both_modes() {
    let f = fixture();
    let (code, plain) = gc_json(&f.root, &["--dry-run"]);
    assert_eq!(code, 0, "{plain}");
    assert_eq!(deleted_blobs(&plain), f.garbage());
    let (_, untagged) = gc_json(&f.root, &["--dry-run", "-m"]);
    let expected: BTreeSet<String> = f.garbage().union(&f.untagged_only).cloned().collect();
    assert_eq!(deleted_blobs(&untagged), expected);
    assert_eq!(
        untagged["summary"]["tag_index_entries_deleted"], 1,
        "the overwritten v1 leaves the tag's history"
    );
    assert_eq!(untagged["schema"], "regsweep/gc-report/v2");
    for key in [
        "repositories",
        "tags",
        "manifests",
        "blobs",
        "bytes",
        "tags_deleted",
        "manifests_deleted",
        "blobs_deleted",
        "bytes_freed",
        "layer_links_deleted",
        "uploads_deleted",
        "kept_by_grace",
        "errors",
    ] {
        assert!(untagged["summary"][key].is_u64(), "summary.{key}");
    }
    assert_eq!(untagged["summary"]["repositories"], 3);
    assert_eq!(untagged["summary"]["tags"], 5);
}

#[test]
fn uploads_are_purged_only_when_asked_and_by_age() {
    let f = fixture();
    let (_, r) = gc_json(&f.root, &["--dry-run"]);
    assert_eq!(r["summary"]["uploads_deleted"], 0);
    // The fixture's upload started when the fixture was made: older than an hour, younger than ten years.
    let (_, r) = gc_json(&f.root, &["--dry-run", "--purge-uploads", "3650d"]);
    assert_eq!(r["summary"]["uploads_deleted"], 0);
    let (code, r) = gc_json(&f.root, &["--purge-uploads", "1s"]);
    assert_eq!(code, 0);
    assert_eq!(r["summary"]["uploads_deleted"], 1);
    assert_eq!(r["uploads_deleted"][0]["repository"], "acme/app");
    assert!(
        std::fs::read_dir(f.repo("acme/app/_uploads"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn a_wrong_root_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    for (root, needle) in [
        (tmp.path().join("nope"), "No such file"),
        (tmp.path().to_path_buf(), "not a registry storage root"),
    ] {
        let out = regsweep(&["gc", "--dry-run", "--root", root.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(root.to_str().unwrap()) && err.contains(needle),
            "{err}"
        );
        assert_eq!(err.matches(needle).count(), 1, "the cause once: {err}");
        assert!(out.stdout.is_empty());
    }
    // gc without a root names both ways to give one.
    let out = regsweep(&["gc", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--root") && err.contains("--config"), "{err}");
    // A restore without a selector names both.
    let out = regsweep(&["restore", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tag") && err.contains("--all"), "{err}");
}

#[test]
fn bad_arguments_exit_with_the_usage_code() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    for args in [
        vec!["gc", "--root", root, "--grace", "10x"],
        vec!["gc", "--root", root, "--grace", ""],
        vec!["gc", "--root", root, "--purge-uploads", "soon"],
        vec!["gc", "--root", root, "-j", "0"],
        vec!["gc"],
        vec!["gc", "--root", root, "--config", "x.yml"],
        vec!["gc", "--root", root, "--format", "xml"],
        vec!["frobnicate"],
    ] {
        let out = regsweep(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
    let out = regsweep(&["gc", "--root", root, "--grace", "10x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--grace") && err.contains("10x"), "{err}");
    assert_eq!(
        blobs_on_disk(&f.v2()).len(),
        f.garbage().len() + f.kept.len() + f.untagged_only.len()
    );
}

#[test]
fn registry_configs_are_read_or_refused_by_name() {
    let f = fixture();
    let cfg = f.tmp.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            f.root.display()
        ),
    )
    .unwrap();
    let out = regsweep(&["gc", "--dry-run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A driver regsweep does not read is refused by name.
    std::fs::write(&cfg, "version: 0.1\nstorage:\n  azure:\n    container: c\n").unwrap();
    let out = regsweep(&["gc", "--dry-run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(cfg.to_str().unwrap()) && err.contains("azure"),
        "{err}"
    );
    // The s3 driver is read: its bucket and endpoint are where regsweep goes (here nothing
    // listens), named in one line.
    std::fs::write(
        &cfg,
        "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: us-east-1\n    regionendpoint: http://127.0.0.1:1\n    accesskey: k\n    secretkey: s\n",
    )
    .unwrap();
    let out = regsweep(&["gc", "--dry-run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://b: cannot reach the endpoint"), "{err}");

    let out = regsweep(&[
        "garbage-collect",
        f.tmp.path().join("missing.yml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yml"));
}

/// Plants damage that hides references; gc must report it by path, exit 3 and delete no blob.
fn assert_damage_withholds(f: &Fixture, path: &Path) {
    let before = blobs_on_disk(&f.v2());
    let (code, r) = gc_json(&f.root, &["-m"]);
    assert_eq!(code, 3, "{r}");
    assert!(
        error_paths(&r).contains(&path.to_str().unwrap().to_string()),
        "{path:?} not in {r}"
    );
    assert_eq!(r["summary"]["blobs_deleted"], 0);
    assert!(!r["withheld"].as_array().unwrap().is_empty());
    assert_eq!(blobs_on_disk(&f.v2()), before, "nothing deleted");

    let (code, r) = gc_json(&f.root, &["-m", "--allow-damage"]);
    assert_eq!(code, 3, "damage is still reported: {r}");
    assert!(r["summary"]["blobs_deleted"].as_u64().unwrap() > 0);
}

#[test]
fn a_garbage_revision_link_withholds_sweeping() {
    let f = fixture();
    let target = f.tag_target("acme/app", "v2");
    let link = f
        .repo("acme/app/_manifests/revisions/sha256")
        .join(&target[7..])
        .join("link");
    std::fs::write(&link, "garbage").unwrap();
    assert_damage_withholds(&f, &link);
}

#[test]
fn an_empty_tag_link_withholds_sweeping() {
    let f = fixture();
    let link = f.repo("acme/tools/cli/_manifests/tags/1.0/current/link");
    std::fs::write(&link, "").unwrap();
    assert_damage_withholds(&f, &link);
}

#[test]
fn a_manifest_that_is_not_json_withholds_sweeping() {
    let f = fixture();
    let data = f.blob_data(&f.tag_target("library/multi", "latest"));
    std::fs::write(&data, "{ truncated").unwrap();
    assert_damage_withholds(&f, &data);
}

#[test]
fn a_missing_manifest_blob_withholds_sweeping() {
    let f = fixture();
    let data = f.blob_data(&f.tag_target("acme/app", "v1"));
    std::fs::remove_file(&data).unwrap();
    assert_damage_withholds(&f, &data);
}

#[test]
fn symlinks_and_crafted_names_are_reported_and_left_alone() {
    let f = fixture();
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("_manifests/tags/x/current")).unwrap();
    std::fs::write(outside.join("precious"), "keep me").unwrap();
    // A repository that is a symlink out of the root, a blob folder that is a symlink, a blob
    // whose data is a symlink, and names the registry would never write.
    std::os::unix::fs::symlink(&outside, f.repo("evil")).unwrap();
    let fake = "ab".repeat(32);
    std::fs::create_dir_all(f.v2().join("blobs/sha256/ab")).unwrap();
    std::os::unix::fs::symlink(&outside, f.v2().join("blobs/sha256/ab").join(&fake)).unwrap();
    let evil_tag = f.repo("acme/app/_manifests/tags/evil/current");
    std::fs::create_dir_all(&evil_tag).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", evil_tag.join("link")).unwrap();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    std::fs::create_dir_all(f.v2().join("blobs/sha256/cd")).unwrap();
    let linked = "cd".repeat(32);
    std::fs::create_dir_all(f.v2().join("blobs/sha256/cd").join(&linked)).unwrap();
    std::os::unix::fs::symlink(
        outside.join("precious"),
        f.v2().join("blobs/sha256/cd").join(&linked).join("data"),
    )
    .unwrap();
    std::fs::create_dir_all(f.repo("Bad Name/_manifests/tags")).unwrap();
    std::fs::create_dir_all(f.repo("acme/app/_manifests/tags/..hidden/current")).unwrap();
    std::fs::write(
        f.repo("acme/app/_manifests/tags/..hidden/current/link"),
        f.tag_target("acme/app", "v2"),
    )
    .unwrap();

    let (code, r) = gc_json(&f.root, &["-m", "--allow-damage"]);
    assert_eq!(code, 3, "{r}");
    let paths = error_paths(&r);
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    for p in [
        f.repo("evil"),
        f.v2().join("blobs/sha256/ab").join(&fake),
        evil_tag.join("link"),
        f.v2().join("blobs/sha256/cd").join(&linked).join("data"),
        f.repo("Bad Name"),
        f.repo("acme/app/_manifests/tags/..hidden"),
    ] {
        assert!(
            paths.contains(&p.to_str().unwrap().to_string()),
            "{p:?} not reported: {paths:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me"
    );
    assert!(outside.join("_manifests/tags/x/current").is_dir());
    assert!(f.repo("Bad Name").is_dir() && f.repo("evil").exists());
    assert!(
        f.v2()
            .join("blobs/sha256/cd")
            .join(&linked)
            .join("data")
            .is_symlink()
    );
    assert_eq!(
        blobs_on_disk(&f.v2()).intersection(&f.kept).count(),
        f.kept.len(),
        "every kept blob is still there"
    );
}

#[test]
fn an_interrupted_sweep_always_leaves_a_pullable_registry_and_a_rerun_finishes() {
    use regsweep::config::GcConfig;
    let probe = fixture();
    let cfg = |root: &Path| GcConfig {
        dry_run: false,
        options: regsweep::report::Options {
            delete_untagged: true,
            grace: regsweep::model::duration::Span::from_secs(3600),
            purge_uploads: Some(regsweep::model::duration::Span::from_secs(1)),
            ..Default::default()
        },
        jobs: Some(1),
        ..GcConfig::planning(root.to_path_buf())
    };
    let now = chrono::Utc::now().timestamp();
    let hidden = regsweep::progress::Hidden;
    let total = {
        let store = regsweep::storage::fs::FsStorage::open(&probe.root).unwrap();
        let a = regsweep::commands::gc::analyse(store, &cfg(&probe.root), now, &hidden).unwrap();
        let p = &a.plan;
        p.tags.len()
            + p.tag_index.len()
            + p.manifests.len()
            + p.layer_links.len()
            + p.blobs.len()
            + p.uploads.len()
            + p.empty_dirs.len()
    };
    assert!(total > 15, "the plan has {total} items");
    // One thread, so "stop after k items" is exact; every point from the first item to the last.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for k in 0..total {
        let f = fixture();
        let store = regsweep::storage::fs::FsStorage::open(&f.root).unwrap();
        let a = regsweep::commands::gc::analyse(store, &cfg(&f.root), now, &hidden).unwrap();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let stop = || asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= k;
        let opts = regsweep::stages::sweep::SweepOptions {
            stop: &stop,
            trash: None,
            since_ns: regsweep::pipeline::since_ns(chrono::Utc::now()),
            staged: &|| {},
        };
        let outcome = pool.install(|| a.session.sweep(&a.plan, &hidden, &opts));
        // Releases the lock the analysis took, for the rerun below.
        drop(a);
        assert!(
            outcome.interrupted && outcome.failures.is_empty(),
            "k={k}: {outcome:?}"
        );
        assert_eq!(outcome.removed as usize, k, "k={k}");
        let reg = Registry::serve(&f.root);
        for t in &f.tags {
            reg.pull(t).unwrap_or_else(|e| {
                panic!("after {k} of {total} removals, {t} does not pull: {e}")
            });
        }
        drop(reg);
        let (code, r) = gc_json(&f.root, &["-m", "--purge-uploads", "1s"]);
        assert_eq!(code, 0, "k={k}: {r}");
        assert_eq!(
            blobs_on_disk(&f.v2()),
            f.kept,
            "after an interruption at {k}, a rerun finishes the job"
        );
    }
}

/// Runs `chattr` (immutable flag: even root cannot rename or delete under it).
fn chattr(flag: &str, path: &Path) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_folder_that_refuses_deletion_is_reported_and_the_rest_goes() {
    let f = fixture();
    let dangling = sha256(&bytes_for("dangling", 999));
    let data = f.blob_data(&dangling);
    let prefix = data.parent().unwrap().parent().unwrap().to_path_buf();
    if !chattr("+i", &prefix) {
        eprintln!("skipped: this filesystem has no immutable flag (chattr +i)");
        return;
    }
    let (code, r) = gc_json(&f.root, &[]);
    chattr("-i", &prefix);
    assert_eq!(code, 1, "{r}");
    let failures: Vec<&serde_json::Value> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["severity"] == "error" && e["kind"] == "sweep_failed")
        .collect();
    assert_eq!(failures.len(), 1, "{r}");
    assert!(
        failures[0]["path"]
            .as_str()
            .unwrap()
            .ends_with(&dangling[7..]),
        "{r}"
    );
    assert!(data.is_file(), "the blob is whole: its data is still there");
    let left = blobs_on_disk(&f.v2());
    assert_eq!(
        left.len(),
        f.kept.len() + f.untagged_only.len() + 1,
        "everything else went"
    );
    let (code, _) = gc_json(&f.root, &[]);
    assert_eq!(code, 0);
    assert!(!data.exists());
}
