//! Data safety against an adversarial layout and a live registry: pushes racing the run, keys in
//! other letter cases, symlinks in and out of the root, files that are not what they seem, crash
//! leftovers, lost reports and edited plans or trash records. Each test names the item of the
//! safety issue it guards.

use crate::testenv::*;
use crate::world;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const DAYS2: Duration = Duration::from_secs(2 * 86_400);

pub(crate) fn gc_cmd(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    c.args(["gc", "--quiet", "--root"])
        .arg(root)
        .env_remove("RUST_LOG");
    c
}

pub(crate) fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `gc` on `root` with `args`, its stdout piped, and waits until it has planned and
/// paused before its sweep (__REGSWEEP_FAULT_PAUSE); writing `go` lets it go on.
pub(crate) fn gc_paused(root: &Path, args: &[&str], go: &Path) -> std::process::Child {
    let child = gc_cmd(root)
        .args(args)
        .env("__REGSWEEP_FAULT_PAUSE", go)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&go.with_extension("ready"));
    child
}

/// Runs a command, killing it if it has not ended in 60 s: a hang is a failure, not a stall.
pub(crate) fn run_bounded(cmd: &mut Command) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} hung: killed after 60 s\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file below `dir`, with its content.
pub(crate) fn snapshot(dir: &Path) -> BTreeSet<(PathBuf, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Moves the folder `real` to `copy` (outside the root) and leaves a symlink to it in its place.
pub(crate) fn move_behind_symlink(real: &Path, copy: &Path) {
    copy_tree(real, copy);
    std::fs::remove_dir_all(real).unwrap();
    std::os::unix::fs::symlink(copy, real).unwrap();
}

pub(crate) fn blob_path(v2: &Path, digest: &str) -> PathBuf {
    v2.join("blobs/sha256")
        .join(&digest[7..9])
        .join(&digest[7..])
}

/// Item 1: a fresh layer link whose blob the blob scan did not see (it arrived after) is kept.
#[test]
fn a_young_link_to_a_blob_the_scan_did_not_see_is_kept() {
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let absent = sha256(b"arrives after the blob scan");
    let link = w
        .reg
        .v2()
        .join("repositories/acme/app/_layers/sha256")
        .join(&absent[7..])
        .join("link");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::fs::write(&link, &absent).unwrap();
    for mode in [&[][..], &["-m"][..]] {
        let (code, r) = gc_json(&w.reg.root, mode);
        assert_eq!(code, 0, "{r}");
        assert!(link.exists(), "the young link was deleted ({mode:?}): {r}");
    }
    w.assert_all_pull();
}

/// Item 2: the first push into a new repository (layer links, no manifest yet) protects the old
/// garbage blob it reuses.
#[test]
fn a_first_push_into_a_new_repository_keeps_the_old_blob_it_reuses() {
    let w = world::build();
    // The deleted `tmp` image's own layer is garbage, and old.
    let tmp_layer = gzip_stored(&bytes_for("tmp-layer", 1800));
    let digest = sha256(&tmp_layer);
    age_tree(&w.reg.root, DAYS2);
    let (_, plan) = gc_json(&w.reg.root, &["--dry-run"]);
    assert!(
        deleted_blobs(&plan).contains(&digest),
        "garbage before the push"
    );
    // The push begins: the registry finds the blob present and links it into the new repository.
    assert_eq!(w.reg.put_blob("brand/new", &tmp_layer), digest);
    assert!(
        !w.reg
            .v2()
            .join("repositories/brand/new/_manifests")
            .exists(),
        "no manifest yet"
    );
    for mode in [&[][..], &["-m"][..]] {
        let (code, r) = gc_json(&w.reg.root, mode);
        assert_eq!(code, 0, "{r}");
        assert!(
            !deleted_blobs(&r).contains(&digest),
            "the reused blob was deleted ({mode:?})"
        );
    }
    // The push ends, and pulls in full.
    let config = w.reg.put_blob("brand/new", b"{}");
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
        "layers": [{"mediaType": OCI_LAYER, "digest": digest, "size": tmp_layer.len()}]});
    w.reg
        .put_manifest("brand/new", "1", OCI_MANIFEST, m.to_string().as_bytes());
    w.reg.pull("brand/new:1").expect("the first push pulls");
    w.assert_all_pull();
}

/// Item 3: a blob committed by rename keeps its upload's old data mtime; its folder says when it
/// arrived.
#[test]
fn a_blob_is_as_young_as_its_arrival_not_its_data() {
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let dangling = sha256(&bytes_for("dangling", 999));
    let dir = blob_path(&w.reg.v2(), &dangling);
    // Commit by rename, as the registry does: the data keeps its mtime, the folder is new.
    let staged = w.reg.tmp.path().join("upload-data");
    std::fs::rename(dir.join("data"), &staged).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::rename(&staged, dir.join("data")).unwrap();
    let (code, r) = gc_json(&w.reg.root, &[]);
    assert_eq!(code, 0, "{r}");
    assert!(
        !deleted_blobs(&r).contains(&dangling),
        "a blob that arrived now was deleted"
    );
    assert!(dir.join("data").exists());
    assert!(r["summary"]["kept_by_grace"].as_u64().unwrap() >= 1, "{r}");
    // With the grace off, it goes: the rule is the arrival, not a blanket keep.
    let (_, r) = gc_json(&w.reg.root, &["--grace", "0"]);
    assert!(deleted_blobs(&r).contains(&dangling));
}

/// Item 4: a push during the sweep that reuses a blob the plan found unreferenced keeps it (and
/// its layer link), because links are read again right before those stages.
#[test]
fn a_push_reusing_a_planned_blob_during_the_run_keeps_it() {
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let dangling_bytes = bytes_for("dangling", 999);
    let dangling = sha256(&dangling_bytes);
    let go = w.reg.tmp.path().join("go");
    let gc = gc_paused(
        &w.reg.root,
        &["-m", "--format", "json", "--report", "-"],
        &go,
    );
    // The client finds the blob in acme/app already (its old layer link), uploads only a
    // config and pushes a manifest naming it.
    let config = w.reg.put_blob("acme/app", b"{\"reuse\":1}");
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 11},
        "layers": [{"mediaType": OCI_LAYER, "digest": dangling, "size": 999}]});
    w.reg
        .put_manifest("acme/app", "reuse", OCI_MANIFEST, m.to_string().as_bytes());
    std::fs::write(&go, "").unwrap();
    let out = gc.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !deleted_blobs(&r).contains(&dangling),
        "the report says the reused blob went"
    );
    assert!(r["summary"]["kept_at_sweep"].as_u64().unwrap() >= 2, "{r}");
    w.reg
        .pull("acme/app:reuse")
        .expect("the push during gc pulls");
    w.assert_all_pull();
}

/// Item 5: the registry takes a bounded stream of pushes while gc runs again and again, with
/// the default grace and with -m; no push fails, and every tag it lists then pulls in full.
/// The pushes share the old base layer that kept images use, add fresh layers, re-push a tag
/// and make first pushes into new repositories. They do not reuse a garbage blob: a push that
/// links one in the moments between gc's last re-read of links and that blob's removal is the
/// window the README says no offline GC can close (read-only mode does); the re-read itself is
/// tested deterministically by `a_push_reusing_a_planned_blob_during_the_run_keeps_it` and
/// `a_first_push_into_a_new_repository_keeps_the_old_blob_it_reuses`.
#[test]
fn soak_pushes_while_gc_runs_repeatedly() {
    let w = world::build();
    let root = w.reg.root.clone();
    soak(w, || gc_cmd(&root));
}

/// The soak again, with the registry's blob-descriptor cache in Redis: gc reads it from
/// `--config` and evicts what it swept, under the same stream of pushes.
#[test]
fn soak_with_a_redis_cache() {
    let redis = Redis::start();
    let w = world::build_on(Registry::start_cached(RegCache::Redis(&redis)));
    let config = w.reg.config.clone();
    soak(w, || gc_config_cmd(&config));
}

/// The soak again, with the cache in the registry's memory (Debian's default config).
#[test]
fn soak_with_an_in_memory_cache() {
    let w = world::build_on(Registry::start_cached(RegCache::InMemory));
    let config = w.reg.config.clone();
    // Beside the running registry, every run that would sweep is refused (1), nothing lost.
    let refused = std::sync::atomic::AtomicUsize::new(0);
    soak_accepting(
        w,
        || gc_config_cmd(&config),
        &|out| match out.status.code() {
            Some(1) => {
                let err = String::from_utf8_lossy(&out.stderr);
                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                err.contains("keeps blob descriptors in memory")
            }
            code => code == Some(0),
        },
    );
    assert!(
        refused.into_inner() > 0,
        "the runs with something to sweep were refused"
    );
}

pub(crate) fn gc_config_cmd(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    c.args(["gc", "--quiet", "--config"])
        .arg(config)
        .env_remove("RUST_LOG");
    c
}

/// A push in flight is no damage: every run beside the pushes ends clean (exit 0).
fn soak(w: world::World, gc: impl Fn() -> Command) {
    soak_accepting(w, gc, &|out| out.status.code() == Some(0));
}

fn soak_accepting(
    mut w: world::World,
    gc: impl Fn() -> Command,
    accept: &dyn Fn(&std::process::Output) -> bool,
) {
    age_tree(&w.reg.root, DAYS2);
    let mut oci = w.reg.new_oci();
    let mut pushes = Vec::new();
    for i in 0..10 {
        let img = oci.image(
            &[("base-os", 3000), (&format!("soak-{i}"), 500 + i)],
            "amd64",
            "2026-11-01T00:00:00Z",
        );
        let name = format!("s{i}");
        oci.tag(&img.manifest, &name);
        let dest = match i % 3 {
            0 => format!("soak/new{i}:1"),  // a first push into a new repository
            1 => "acme/app:v1".to_string(), // a re-pushed tag
            _ => format!("acme/app:soak{i}"),
        };
        pushes.push((name, dest));
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = w.reg.addr.clone();
    let dir = oci.dir.clone();
    let flag = done.clone();
    let pusher = std::thread::spawn(move || {
        let mut failed = Vec::new();
        for (name, dest) in &pushes {
            let out = Command::new("skopeo")
                .args(["copy", "--all", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:{name}", dir.display()))
                .arg(format!("docker://{addr}/{dest}"))
                .output()
                .unwrap();
            if !out.status.success() {
                failed.push(format!("{dest}: {}", String::from_utf8_lossy(&out.stderr)));
            }
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        failed
    });
    let mut runs = 0;
    while !done.load(std::sync::atomic::Ordering::SeqCst) || runs < 4 {
        let mut cmd = gc();
        if runs % 2 == 1 {
            cmd.arg("-m");
        }
        let out = run_bounded(&mut cmd);
        assert!(
            accept(&out),
            "gc run {runs}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // And check or du, read-only, beside the same pushes: nothing in flight is damage.
        let read_only = if runs % 2 == 0 { "check" } else { "du" };
        let out = run_bounded(
            Command::new(env!("CARGO_BIN_EXE_regsweep"))
                .args([read_only, "--quiet", "--root"])
                .arg(&w.reg.root)
                .env_remove("RUST_LOG"),
        );
        assert!(
            out.status.success(),
            "{read_only} beside run {runs}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        runs += 1;
        assert!(runs < 10_000, "bounded");
    }
    let failed = pusher.join().unwrap();
    assert!(failed.is_empty(), "pushes failed beside gc: {failed:?}");
    // Every tag the registry lists pulls in full.
    let mut listed = Vec::new();
    for repo in w.reg.catalog() {
        for tag in w.reg.tags_of(&repo) {
            listed.push(format!("{repo}:{tag}"));
        }
    }
    assert!(listed.len() >= 10, "{listed:?}");
    for t in &listed {
        w.reg
            .pull(t)
            .unwrap_or_else(|e| panic!("{t} does not pull after {runs} gc runs: {e}"));
    }
    w.tags.retain(|t| t != "acme/app:v1");
    w.assert_all_pull();
}

/// Item 6: manifests whose keys are in another letter case, which the registry accepts and
/// serves and its GC marks.
#[test]
fn keys_in_another_case_keep_their_blobs() {
    let w = world::build();
    let mut pushed = Vec::new();
    for (i, (config_key, layers_key, digest_key)) in [
        ("Config", "Layers", "Digest"),
        ("CONFIG", "layers", "digest"),
        ("config", "LAYERS", "DIGEST"),
    ]
    .iter()
    .enumerate()
    {
        let layer_bytes = bytes_for(&format!("case-{i}"), 700);
        let layer = w.reg.put_blob("case/app", &layer_bytes);
        let cfg_bytes = format!("{{\"case\":{i}}}");
        let config = w.reg.put_blob("case/app", cfg_bytes.as_bytes());
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","{config_key}":{{"mediaType":"{OCI_CONFIG}","{digest_key}":"{config}","size":{}}},"{layers_key}":[{{"mediaType":"{OCI_LAYER}","{digest_key}":"{layer}","size":{}}}]}}"#,
            cfg_bytes.len(),
            layer_bytes.len()
        );
        let tag = format!("v{i}");
        w.reg
            .put_manifest("case/app", &tag, OCI_MANIFEST, body.as_bytes());
        pushed.push((tag, layer, config));
    }
    let reference = w.reg.reference_gc_dry_run();
    for (_, layer, config) in &pushed {
        assert!(!reference.contains(layer) && !reference.contains(config));
    }
    for mode in [&["--grace", "0"][..], &["--grace", "0", "-m"][..]] {
        let (code, r) = gc_json(&w.reg.root, mode);
        assert_eq!(code, 0, "{r}");
        for (tag, layer, config) in &pushed {
            assert!(
                !deleted_blobs(&r).contains(layer) && !deleted_blobs(&r).contains(config),
                "blobs of case/app:{tag} deleted ({mode:?})"
            );
            w.reg
                .pull(&format!("case/app:{tag}"))
                .unwrap_or_else(|e| panic!("case/app:{tag}: {e}"));
        }
    }
    w.assert_all_pull();
    assert!(w.reg.reference_gc_dry_run().is_empty());
}

/// Item 7: the registry follows a symlinked repository or revision folder and serves what is
/// behind it; regsweep counts it as damage that withholds the blob sweep, and never breaks it.
#[test]
fn symlinked_repository_and_revision_folders_break_nothing() {
    let w = world::build();
    let v2 = w.reg.v2();
    // acme/tools moves out of the repositories tree (still inside the root) behind a symlink.
    let moved = w.reg.root.join("elsewhere/tools");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(v2.join("repositories/acme/tools"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, v2.join("repositories/acme/tools")).unwrap();
    // And one revision folder of library/multi moves behind a symlink.
    let revs = v2.join("repositories/library/multi/_manifests/revisions/sha256");
    let rev = std::fs::read_dir(&revs).unwrap().next().unwrap().unwrap();
    let rev_target = w.reg.root.join("elsewhere/rev");
    std::fs::rename(rev.path(), &rev_target).unwrap();
    std::os::unix::fs::symlink(&rev_target, rev.path()).unwrap();
    w.assert_all_pull(); // the registry serves through them
    for mode in [&["--grace", "0"][..], &["--grace", "0", "-m"][..]] {
        let (code, r) = gc_json(&w.reg.root, mode);
        assert_eq!(code, 3, "damage is reported: {r}");
        assert!(deleted_blobs(&r).is_empty(), "{mode:?}: {r}");
        assert!(
            r["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["severity"] == "blocking"
                    && e["kind"] == "symlink"
                    && e["path"]
                        .as_str()
                        .unwrap()
                        .ends_with("repositories/acme/tools")),
            "{r}"
        );
        w.assert_all_pull();
    }
}

/// Item 8: removals never follow a symlink out of the root: neither static ones in the layout
/// nor folders swapped for symlinks between the plan and the sweep.
#[test]
fn nothing_outside_the_root_is_touched_through_symlinks() {
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let v2 = w.reg.v2();
    let outside = tempfile::tempdir().unwrap();
    // Static: acme/app's `_layers` is a symlink to a copy outside; a stray repository's
    // `_manifests` too.
    move_behind_symlink(
        &v2.join("repositories/acme/app/_layers"),
        &outside.path().join("layers"),
    );
    copy_tree(
        &v2.join("repositories/library/multi/_manifests"),
        &outside.path().join("manifests"),
    );
    std::fs::create_dir_all(v2.join("repositories/stray/one")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("manifests"),
        v2.join("repositories/stray/one/_manifests"),
    )
    .unwrap();
    let before = snapshot(outside.path());
    for mode in [
        &["--grace", "0"][..],
        &["--grace", "0", "-m", "--allow-damage"][..],
    ] {
        let _ = gc_json(&w.reg.root, mode);
        assert_eq!(
            snapshot(outside.path()),
            before,
            "outside changed ({mode:?})"
        );
    }
}

#[test]
fn a_folder_swapped_for_a_symlink_between_plan_and_sweep_is_left_alone() {
    // Once the blob prefix folders of planned blobs, once a repository with planned items.
    for swap_prefixes in [true, false] {
        let w = world::build();
        age_tree(&w.reg.root, DAYS2);
        let v2 = w.reg.v2();
        let (_, plan) = gc_json(&w.reg.root, &["--dry-run", "-m"]);
        let planned: BTreeSet<String> = deleted_blobs(&plan);
        assert!(planned.len() >= 4);
        let outside = tempfile::tempdir().unwrap();
        let go = w.reg.tmp.path().join("go");
        let gc = gc_paused(
            &w.reg.root,
            &["-m", "--format", "json", "--report", "-"],
            &go,
        );
        // Each swapped folder becomes a symlink to a copy of itself outside the root.
        let swap = |real: PathBuf, name: String| {
            move_behind_symlink(&real, &outside.path().join(name));
        };
        if swap_prefixes {
            let prefixes: BTreeSet<String> = planned.iter().map(|d| d[7..9].to_string()).collect();
            for p in prefixes {
                swap(v2.join("blobs/sha256").join(&p), format!("prefix-{p}"));
            }
        } else {
            swap(v2.join("repositories/acme/app"), "acme-app".into());
        }
        let before = snapshot(outside.path());
        std::fs::write(&go, "").unwrap();
        let out = gc.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "failures are reported: {out:?}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(r["summary"]["sweep_failures"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(
            snapshot(outside.path()),
            before,
            "nothing outside the root changed (prefixes swapped: {swap_prefixes})"
        );
    }
}

/// Item 9: the lock file is never opened through a symlink.
#[test]
fn the_lock_never_follows_a_symlink() {
    let w = world::build();
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("precious");
    std::fs::write(&precious, "keep").unwrap();
    let lock = w.reg.root.join(".regsweep.lock");
    std::os::unix::fs::symlink(&precious, &lock).unwrap();
    let out = gc_cmd(&w.reg.root).arg("--break-lock").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
    std::fs::remove_file(&lock).unwrap();
    let created = outside.path().join("created");
    std::os::unix::fs::symlink(&created, &lock).unwrap();
    let out = gc_cmd(&w.reg.root).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!created.exists(), "a dangling symlink made a file outside");
}
