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

const DAYS2: Duration = Duration::from_secs(2 * 86_400);

fn gc_cmd(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    c.args(["gc", "--quiet", "--root"])
        .arg(root)
        .env_remove("RUST_LOG");
    c
}

fn wait_for(path: &Path) {
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
fn gc_paused(root: &Path, args: &[&str], go: &Path) -> std::process::Child {
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
fn run_bounded(cmd: &mut Command) -> std::process::Output {
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
fn snapshot(dir: &Path) -> BTreeSet<(PathBuf, Vec<u8>)> {
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
fn move_behind_symlink(real: &Path, copy: &Path) {
    copy_tree(real, copy);
    std::fs::remove_dir_all(real).unwrap();
    std::os::unix::fs::symlink(copy, real).unwrap();
}

fn blob_path(v2: &Path, digest: &str) -> PathBuf {
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
    soak(w, || gc_config_cmd(&config));
}

fn gc_config_cmd(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    c.args(["gc", "--quiet", "--config"])
        .arg(config)
        .env_remove("RUST_LOG");
    c
}

fn soak(mut w: world::World, gc: impl Fn() -> Command) {
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
            matches!(out.status.code(), Some(0) | Some(3)),
            "gc run {runs}: {}",
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

/// Item 10: restore writes only into a verified registry layout (or the one given), whatever the
/// trash's run record says.
#[test]
fn restore_refuses_an_edited_run_record() {
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let trash = w.reg.tmp.path().join("trash");
    let out = gc_cmd(&w.reg.root)
        .args(["-m", "--trash"])
        .arg(&trash)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let run = std::fs::read_dir(&trash)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let record = run.join("run.json");
    let original = std::fs::read_to_string(&record).unwrap();
    let victim = tempfile::tempdir().unwrap();
    std::fs::write(victim.path().join("file"), "mine").unwrap();
    let edited = original.replace(
        w.reg.v2().canonicalize().unwrap().to_str().unwrap(),
        victim.path().to_str().unwrap(),
    );
    assert_ne!(edited, original);
    std::fs::write(&record, &edited).unwrap();
    let out = regsweep(&["restore", trash.to_str().unwrap(), "--all"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a registry layout"),
        "{out:?}"
    );
    assert_eq!(
        snapshot(victim.path()).len(),
        1,
        "nothing written into the victim folder"
    );
    assert!(!victim.path().join(".regsweep.lock").exists());
    // With --root, a record naming another registry is refused too.
    let restore_into_root = || {
        regsweep(&[
            "restore",
            trash.to_str().unwrap(),
            "--all",
            "--root",
            w.reg.root.to_str().unwrap(),
        ])
    };
    let other = Registry::start();
    let other_v2 = other.v2();
    std::fs::create_dir_all(other_v2.join("repositories")).unwrap();
    std::fs::write(
        &record,
        original.replace(
            w.reg.v2().canonicalize().unwrap().to_str().unwrap(),
            other_v2.canonicalize().unwrap().to_str().unwrap(),
        ),
    )
    .unwrap();
    let out = restore_into_root();
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the given root"));
    // The true record, with --root, restores.
    std::fs::write(&record, &original).unwrap();
    let out = restore_into_root();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    w.reg
        .pull(&format!("acme/app@{}", w.old_sbom))
        .expect("restored");
}

/// Item 11: a trash inside the registry's layout is refused before anything is created.
#[test]
fn a_trash_inside_the_layout_is_refused() {
    let w = world::build();
    let bogus = w.reg.v2().join("repositories/acme/app/_manifests/tags/x");
    let out = gc_cmd(&w.reg.root)
        .args(["--grace", "0", "--trash"])
        .arg(&bogus)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("inside the registry's layout"));
    assert!(!bogus.exists(), "no bogus tag created");
    assert_eq!(w.reg.tags_of("acme/app").len(), 3);
}

/// Item 12: a FIFO, a device or a symlink where a small file belongs is reported and passed
/// over; no command hangs or reads without bound.
#[test]
fn files_that_are_not_what_they_seem_are_damage_not_hangs() {
    let w = world::build();
    let uploads = w.reg.v2().join("repositories/acme/app/_uploads");
    let upload = std::fs::read_dir(&uploads)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let startedat = upload.join("startedat");
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, "2000-01-01T00:00:00Z").unwrap();
    let make_fifo = |p: &Path| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
    };
    let tag_link = w
        .reg
        .v2()
        .join("repositories/library/multi/_manifests/tags/latest/current/link");
    type Make<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Make)> = vec![
        ("fifo", Box::new(|| make_fifo(&startedat))),
        (
            "device",
            Box::new(|| std::os::unix::fs::symlink("/dev/zero", &startedat).unwrap()),
        ),
        (
            "symlink",
            Box::new(|| std::os::unix::fs::symlink(&secret, &startedat).unwrap()),
        ),
    ];
    for (what, make) in cases {
        let _ = std::fs::remove_file(&startedat);
        make();
        for args in [
            vec!["gc", "--dry-run", "--purge-uploads", "1h"],
            vec!["du"],
            vec!["check"],
        ] {
            let out = run_bounded(
                Command::new(env!("CARGO_BIN_EXE_regsweep"))
                    .args(&args)
                    .arg("--root")
                    .arg(&w.reg.root),
            );
            assert!(out.status.code().is_some(), "{what} {args:?}: {out:?}");
        }
        let (code, r) = gc_json(&w.reg.root, &["--dry-run", "--purge-uploads", "1h"]);
        assert_eq!(code, 3, "{what}: {r}");
        assert!(
            r["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["path"].as_str().unwrap().ends_with("startedat")),
            "{what}: the path is named: {r}"
        );
        assert!(
            r["uploads_deleted"].as_array().unwrap().is_empty(),
            "{what}: a young upload is not taken for an old one: {r}"
        );
    }
    // A FIFO where a tag link belongs: blocking damage, not a hang.
    std::fs::remove_file(&tag_link).unwrap();
    make_fifo(&tag_link);
    let out = run_bounded(gc_cmd(&w.reg.root).args(["--grace", "0", "-m"]));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

/// Item 13: a sweep killed with items taken out of sight leaves nothing the registry or its GC
/// can see; the next run deletes the leftovers.
#[test]
fn crash_leftovers_are_invisible_to_the_registry_and_finished_later() {
    use std::os::unix::process::ExitStatusExt;
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let policy = w.reg.tmp.path().join("p.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: drop v1\n    repositories: ['acme/app']\n    tags: ['v1']\n    delete: {}\n",
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for k in [0, 1, 3, 6] {
        let root = tmp.path().join(format!("k{k}"));
        copy_tree(&w.reg.root, &root);
        age_tree(&root, DAYS2);
        let out = gc_cmd(&root)
            .args(["-m", "-j", "1", "--policy"])
            .arg(&policy)
            .env("__REGSWEEP_FAULT_KILL_STAGED", k.to_string())
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(9), "k={k}: {out:?}");
        let staging = root.join("docker/registry/v2/.regsweep-staging");
        assert_eq!(
            std::fs::read_dir(&staging).unwrap().count(),
            1,
            "k={k}: one item left staged"
        );
        let reg = Registry::serve(&root);
        for repo in reg.catalog() {
            for tag in reg.tags_of(&repo) {
                assert!(
                    !tag.starts_with('.'),
                    "k={k}: the registry lists {repo}:{tag}"
                );
            }
        }
        // The reference GC walks the same trees and must not trip on anything.
        reg.reference_gc_dry_run();
        drop(reg);
        let out = gc_cmd(&root)
            .args(["-m", "--break-lock", "--policy"])
            .arg(&policy)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "k={k}: {out:?}");
        assert_eq!(
            std::fs::read_dir(&staging).unwrap().count(),
            0,
            "k={k}: the next run finished the leftovers"
        );
    }
}

/// Item 14: a report or metrics file that cannot be written stops the run before anything is
/// deleted; one that fails at the end is printed to stderr instead of being lost.
#[test]
fn no_deletion_without_a_place_for_its_record() {
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let before = blobs_on_disk(&w.reg.v2());
    let missing = w.reg.tmp.path().join("no/such/folder");
    for flag in ["--report", "--metrics"] {
        let out = gc_cmd(&w.reg.root)
            .args(["--grace", "0", flag])
            .arg(missing.join("out"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no/such/folder/out"), "{flag}: {err}");
        assert_eq!(
            blobs_on_disk(&w.reg.v2()),
            before,
            "{flag}: nothing deleted"
        );
    }
    // The folder goes away during the run: the report comes out on stderr.
    let dir = w.reg.tmp.path().join("reports");
    std::fs::create_dir(&dir).unwrap();
    let go = w.reg.tmp.path().join("go");
    let report = dir.join("r.json");
    let gc = gc_paused(
        &w.reg.root,
        &[
            "--grace",
            "0",
            "--format",
            "json",
            "--report",
            report.to_str().unwrap(),
        ],
        &go,
    );
    std::fs::remove_dir(&dir).unwrap();
    std::fs::write(&go, "").unwrap();
    let out = gc.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"blobs_deleted\"") && err.contains("printed to stderr"),
        "{err}"
    );
}

/// Item 15: a plan pinned by its reviewed checksum; an edited plan, checksum recomputed, is
/// refused.
#[test]
fn apply_refuses_a_plan_other_than_the_pinned_one() {
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let dir = w.reg.tmp.path().to_path_buf();
    std::fs::write(
        dir.join("p.yml"),
        "version: 1\nrules:\n  - name: drop v1\n    repositories: ['acme/app']\n    tags: ['v1']\n    delete: {}\n",
    )
    .unwrap();
    let plan = dir.join("plan.json");
    let out = regsweep(&[
        "gc",
        "--root",
        w.reg.root.to_str().unwrap(),
        "--dry-run",
        "--policy",
        dir.join("p.yml").to_str().unwrap(),
        "--format",
        "json",
        "--report",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&plan).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pinned = v["checksum"].as_str().unwrap().to_string();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&pinned),
        "the dry run prints the checksum to pin"
    );
    // The crafted plan: delete acme/app:v2 instead, checksum recomputed as anyone can.
    let mut crafted = v.clone();
    crafted["tags_deleted"][0]["repository"] = "acme/app".into();
    crafted["tags_deleted"][0]["tag"] = "v2".into();
    let v2_digest = w
        .reg
        .v2()
        .join("repositories/acme/app/_manifests/tags/v2/current/link");
    crafted["tags_deleted"][0]["digest"] = std::fs::read_to_string(v2_digest).unwrap().into();
    crafted["checksum"] = regsweep::report::plan_checksum(&crafted).into();
    std::fs::write(&plan, serde_json::to_string(&crafted).unwrap()).unwrap();
    let out = regsweep(&["apply", plan.to_str().unwrap(), "--checksum", &pinned]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the plan that was reviewed"));
    w.reg.pull("acme/app:v2").expect("the current tag stays");
    // A plan whose root was edited to a folder that is no registry, checksum recomputed and
    // not pinned: refused, and nothing is written there.
    let elsewhere = tempfile::tempdir().unwrap();
    let mut moved = v.clone();
    moved["root"] = elsewhere.path().to_str().unwrap().into();
    moved["checksum"] = regsweep::report::plan_checksum(&moved).into();
    std::fs::write(&plan, serde_json::to_string(&moved).unwrap()).unwrap();
    let out = regsweep(&["apply", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a registry storage root"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    // The reviewed plan applies.
    std::fs::write(&plan, &text).unwrap();
    let out = regsweep(&["apply", plan.to_str().unwrap(), "--checksum", &pinned]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(w.reg.pull("acme/app:v1").is_err(), "the planned tag went");
}
