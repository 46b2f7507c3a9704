//! Faults and changes under a run: SIGKILL at many points, SIGTERM, a push during gc, a layout
//! that changed under a plan, and the trash put back.
//!
//! The fault hooks these tests and `safety.rs` stand on (`__REGSWEEP_FAULT_*`) are listed,
//! with what each does, in one place: the module doc of `src/cli/faults.rs`.

use crate::testenv::*;
use crate::world;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DAYS2: Duration = Duration::from_secs(2 * 86_400);

/// The world, plus thousands of dangling blobs and some untagged images, all two days old.
fn big_world() -> world::World {
    let w = world::build();
    let lw = LayoutWriter::new(&w.reg.root);
    for i in 0..3000 {
        lw.blob(&bytes_for(&format!("garbage{i}"), 64));
    }
    for i in 0..20 {
        lw.image("acme/app", None, &[bytes_for(&format!("untagged{i}"), 100)]);
    }
    age_tree(&w.reg.root, DAYS2);
    w
}

fn gc_cmd(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    c.args(["gc", "-m", "--quiet", "--root"])
        .arg(root)
        .env_remove("RUST_LOG");
    c
}

fn pull_all(root: &Path, w: &world::World) {
    let reg = Registry::serve(root);
    for t in &w.tags {
        reg.pull(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    reg.pull(&format!("acme/app@{}", w.sbom))
        .expect("the kept referrer");
}

#[test]
fn sigkill_at_any_point_of_a_sweep_loses_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let w = big_world();
    let (_, plan) = gc_json(&w.reg.root, &["-m", "--dry-run"]);
    let s = &plan["summary"];
    let total = [
        "tags_deleted",
        "tag_index_entries_deleted",
        "manifests_deleted",
        "layer_links_deleted",
        "blobs_deleted",
    ]
    .iter()
    .map(|k| s[k].as_u64().unwrap())
    .sum::<u64>();
    assert!(total > 3000, "{total}");
    let tmp = tempfile::tempdir().unwrap();
    let mut accounted = 0;
    for i in 0..22u64 {
        let k = 1 + i * (total - 2) / 21;
        let root = tmp.path().join(format!("k{k}"));
        copy_tree(&w.reg.root, &root);
        let v2 = root.join("docker/registry/v2");
        let before = (blobs_on_disk(&v2), revisions_on_disk(&v2));
        let (rec, prom) = (tmp.path().join("rec.json"), tmp.path().join("m.prom"));
        // A record of an earlier run, which the killed one must not leave in place.
        std::fs::write(&rec, "{\"schema\": \"an earlier run's\"}").unwrap();
        let recorded = |c: &mut Command| {
            c.args(["--format", "json", "--report"])
                .arg(&rec)
                .arg("--metrics")
                .arg(&prom);
        };
        let mut c = gc_cmd(&root);
        recorded(&mut c);
        let out = c
            .env("__REGSWEEP_FAULT_KILL_AFTER", k.to_string())
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(9), "k={k}: {out:?}");
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
        assert_eq!(r["schema"], "regsweep/gc-unfinished/v1", "k={k}: {r}");
        assert_eq!(r["summary"]["planned"]["blobs"], s["blobs_deleted"], "{r}");
        let m = std::fs::read_to_string(&prom).unwrap();
        assert!(
            m.contains("regsweep_run_unfinished{command=\"gc\"} 1"),
            "{m}"
        );
        pull_all(&root, &w);
        let after_kill = (blobs_on_disk(&v2), revisions_on_disk(&v2));
        if i % 7 == 0 {
            // check names the killed sweep and leaves its journal for the next gc.
            let out = regsweep(&[
                "check",
                "--format",
                "json",
                "--root",
                root.to_str().unwrap(),
            ]);
            let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let said = (c["findings"].as_array().unwrap().iter())
                .find(|f| f["kind"] == "sweep_killed")
                .unwrap_or_else(|| panic!("k={k}: {c}"));
            assert!(
                said["message"]
                    .as_str()
                    .unwrap()
                    .contains("was killed mid-sweep")
            );
            assert!(root.join(".regsweep.sweep-journal").exists());
        }
        // The dead run's lock is stale: reported, then broken on request.
        let out = gc_cmd(&root).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "k={k}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("stale lock") && err.contains("--break-lock"),
            "{err}"
        );
        let mut c = gc_cmd(&root);
        recorded(&mut c);
        let out = c.arg("--break-lock").output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "k={k}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
        assert_eq!(r["schema"], "regsweep/gc-report/v2", "k={k}");
        // Its record says what the killed run removed: exactly what went from the disk.
        let killed = r["killed_runs"].as_array().expect("killed_runs");
        assert_eq!(killed.len(), 1, "k={k}: {killed:?}");
        assert_eq!(
            strings(&killed[0]["blobs_removed"]),
            gone(&before.0, &after_kill.0),
            "k={k}"
        );
        assert_eq!(
            strings(&killed[0]["manifests_removed"]),
            gone(&before.1, &after_kill.1),
            "k={k}"
        );
        assert!(!root.join(".regsweep.sweep-journal").exists(), "k={k}");
        accounted += killed[0]["blobs_removed"].as_array().unwrap().len();
        let m = std::fs::read_to_string(&prom).unwrap();
        assert!(
            m.contains("regsweep_run_unfinished{command=\"gc\"} 0"),
            "{m}"
        );
        assert_eq!(
            blobs_on_disk(&root.join("docker/registry/v2")),
            w.kept,
            "after a kill at {k}, a rerun finishes the job"
        );
        pull_all(&root, &w);
        std::fs::remove_dir_all(&root).unwrap();
    }
    assert!(
        accounted > 3000,
        "the killed runs removed {accounted} blobs in all"
    );
}

/// `repo@digest` of every revision link under `v2`.
fn revisions_on_disk(v2: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, repo: &str, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "_manifests" {
                let revs = e.path().join("revisions/sha256");
                for r in std::fs::read_dir(revs).into_iter().flatten().flatten() {
                    if r.path().join("link").is_file() {
                        let hex = r.file_name().to_string_lossy().into_owned();
                        out.insert(format!("{repo}@sha256:{hex}"));
                    }
                }
            } else if !name.starts_with('_') && e.path().is_dir() {
                let sub = if repo.is_empty() {
                    name
                } else {
                    format!("{repo}/{name}")
                };
                walk(&e.path(), &sub, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&v2.join("repositories"), "", &mut out);
    out
}

/// A JSON array of strings, as a set.
fn strings(v: &serde_json::Value) -> BTreeSet<String> {
    (v.as_array().unwrap().iter())
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sigterm_stops_after_the_items_in_hand_and_says_so() {
    let w = big_world();
    let plan = gc_cmd(&w.reg.root)
        .args(["--dry-run", "--format", "json", "--report", "-"])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let planned = deleted_blobs(&plan);
    let out = gc_cmd(&w.reg.root)
        .args(["--format", "json", "--report", "-"])
        .env("__REGSWEEP_FAULT_TERM_AFTER", "500")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["interrupted"], true);
    let removed = r["summary"]["items_removed"].as_u64().unwrap();
    assert!(
        (500..600).contains(&removed),
        "stopped right after the items in hand: {removed}"
    );
    // The record lists what went, not what was planned: each listed blob is gone, each
    // planned one not listed is still there.
    let listed = deleted_blobs(&r);
    let on_disk = blobs_on_disk(&w.reg.v2());
    assert!(
        listed.len() < planned.len(),
        "{} of {}",
        listed.len(),
        planned.len()
    );
    assert!(
        listed.is_disjoint(&on_disk),
        "a listed blob is still on disk"
    );
    assert!(
        planned.difference(&listed).all(|b| on_disk.contains(b)),
        "a blob went unlisted"
    );
    assert_eq!(
        r["summary"]["blobs_deleted"].as_u64(),
        Some(listed.len() as u64)
    );
    assert!(
        !w.reg.root.join(".regsweep.lock").exists(),
        "a clean stop releases the lock"
    );
    w.assert_all_pull();
    let out = gc_cmd(&w.reg.root).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(blobs_on_disk(&w.reg.v2()), w.kept);
}

#[test]
fn a_second_run_waits_for_no_one_it_fails_at_once() {
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let go = w.reg.tmp.path().join("go");
    let mut first = gc_cmd(&w.reg.root)
        .env("__REGSWEEP_FAULT_PAUSE", &go)
        .spawn()
        .unwrap();
    wait_for(&go.with_extension("ready"));
    let out = gc_cmd(&w.reg.root).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {}", first.id())) && err.contains("started"),
        "{err}"
    );
    // A dry run takes no lock: audits run beside a sweep.
    assert_eq!(
        gc_cmd(&w.reg.root)
            .arg("--dry-run")
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    std::fs::write(&go, "").unwrap();
    assert!(first.wait().unwrap().success());
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

#[test]
fn a_push_while_gc_runs_with_the_default_grace_pulls_in_full() {
    let mut w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let go = w.reg.tmp.path().join("go");
    // gc scans and plans, then waits; the push lands between its plan and its sweep.
    let mut gc = gc_cmd(&w.reg.root)
        .env("__REGSWEEP_FAULT_PAUSE", &go)
        .spawn()
        .unwrap();
    wait_for(&go.with_extension("ready"));
    let mut oci = w.reg.new_oci();
    let img = oci.image(
        &[("base-os", 3000), ("pushed-during-gc", 1500)],
        "amd64",
        "2026-11-01T00:00:00Z",
    );
    oci.tag(&img.manifest, "fresh");
    w.reg.push(&oci, "fresh", "acme/app:fresh");
    w.reg.push(&oci, "fresh", "newcomer/app:1");
    std::fs::write(&go, "").unwrap();
    assert!(gc.wait().unwrap().success());
    w.reg.pull("acme/app:fresh").expect("pushed during gc");
    w.reg.pull("newcomer/app:1").expect("pushed during gc");
    w.assert_all_pull();
    assert!(w.reg.reference_gc_dry_run().is_empty());
}

#[test]
fn apply_keeps_what_changed_under_the_plan() {
    let mut w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let dir = w.reg.tmp.path().to_path_buf();
    std::fs::write(dir.join("p.yml"), "version: 1\nrules:\n  - name: drop v1\n    repositories: ['acme/app']\n    tags: ['v1']\n    delete: {}\n").unwrap();
    let plan = dir.join("plan.json");
    let out = regsweep(&[
        "gc",
        "--root",
        w.reg.root.to_str().unwrap(),
        "-m",
        "--dry-run",
        "--policy",
        dir.join("p.yml").to_str().unwrap(),
        "--format",
        "json",
        "--report",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let planned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(planned["tags_deleted"][0]["tag"], "v1");
    let dangling = sha256(&bytes_for("dangling", 999));
    assert!(deleted_blobs(&planned).contains(&dangling));

    // Monday's plan, Tuesday's registry: v1 now names another image, and a new manifest
    // uses the dangling blob.
    let mut oci = w.reg.new_oci();
    let img = oci.image(
        &[("base-os", 3000), ("v1-tuesday", 900)],
        "amd64",
        "2026-11-02T00:00:00Z",
    );
    oci.tag(&img.manifest, "v1");
    w.reg.push(&oci, "v1", "acme/app:v1");
    let layer = w.reg.put_blob("other/app", &bytes_for("dangling", 999));
    let config = w.reg.put_blob("other/app", b"{}");
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": 999}]});
    w.reg.put_manifest(
        "other/app",
        "uses-dangling",
        OCI_MANIFEST,
        m.to_string().as_bytes(),
    );

    let out = regsweep(&["apply", plan.to_str().unwrap(), "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped: BTreeSet<(String, String)> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap().into(),
                s["item"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        skipped.contains(&("tag".into(), "acme/app:v1".into())),
        "{skipped:?}"
    );
    assert!(
        skipped.contains(&("blob".into(), dangling.clone())),
        "{skipped:?}"
    );
    assert!(r["summary"]["applied"].as_u64().unwrap() > 0);
    w.reg.pull("acme/app:v1").expect("the moved tag stays");
    w.reg
        .pull("other/app:uses-dangling")
        .expect("the new manifest's blob stays");
    w.tags.retain(|t| t != "acme/app:v1");
    w.assert_all_pull();
}

/// Every file below `dir` with its content.
fn files(dir: &Path) -> BTreeSet<(String, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && !e.path().ends_with(".regsweep.lock"))
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_trash_puts_back_one_tag_or_everything_exactly() {
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let before = files(&w.reg.root);
    let dir = w.reg.tmp.path().to_path_buf();
    std::fs::write(
        dir.join("p.yml"),
        "version: 1\nrules:\n  - name: drop v2\n    tags: ['v2']\n    delete: {}\n",
    )
    .unwrap();
    let trash = dir.join("trash");
    let out = regsweep(&[
        "gc",
        "--root",
        w.reg.root.to_str().unwrap(),
        "-m",
        "-q",
        "--policy",
        dir.join("p.yml").to_str().unwrap(),
        "--trash",
        trash.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(w.reg.pull("acme/app:v2").is_err(), "v2 went to the trash");

    let out = regsweep(&["restore", trash.to_str().unwrap(), "--tag", "acme/app:v2"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("restored  tag ")
            && text.contains("restored  layer link ")
            && !text.contains("LayerLink"),
        "the README's words, not the code's: {text}"
    );
    w.reg
        .pull("acme/app:v2")
        .expect("one tag restored with all it needs");

    let out = regsweep(&["restore", trash.to_str().unwrap(), "--all"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files(&w.reg.root), before, "everything back, byte for byte");
    w.assert_all_pull();
    let out = regsweep(&["restore", trash.to_str().unwrap(), "--all"]);
    assert_eq!(out.status.code(), Some(2), "nothing left to restore");

    // Emptying: runs younger than the limit stay.
    let out = regsweep(&[
        "gc",
        "--root",
        w.reg.root.to_str().unwrap(),
        "-q",
        "--trash",
        trash.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let out = regsweep(&[
        "trash",
        "empty",
        trash.to_str().unwrap(),
        "--older-than",
        "7d",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 trash runs deleted"));
    // The trash, listed: one run, its items and what emptying it frees.
    let out = regsweep(&["trash", "list", trash.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = &list["runs"];
    assert_eq!(runs.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["summary"]["runs"], 1, "{list}");
    assert_eq!(runs[0]["command"], "gc");
    assert!(runs[0]["items"].as_u64().unwrap() > 0, "{runs}");
    let bytes = runs[0]["bytes"].as_u64().unwrap();
    assert!(bytes > 0, "{runs}");
    let out = regsweep(&["trash", "list", trash.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 trash run in"),
        "{out:?}"
    );
    let out = regsweep(&[
        "trash",
        "empty",
        trash.to_str().unwrap(),
        "--older-than",
        "0",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 trash run deleted for good")
            && text.contains(&format!("{} freed", regsweep::units::human_bytes(bytes))),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(&trash).unwrap().count(), 0);
}

#[test]
fn restore_of_a_tag_brings_back_its_referrers_and_signature_tags() {
    let w = world::build();
    age_tree(&w.reg.root, DAYS2);
    let dir = w.reg.tmp.path().to_path_buf();
    std::fs::write(
        dir.join("p.yml"),
        "version: 1\nrules:\n  - name: drop v2\n    tags: ['v2']\n    delete: {}\n",
    )
    .unwrap();
    let trash = dir.join("trash");
    let sig_tag = w.tags.iter().find(|t| t.ends_with(".sig")).unwrap().clone();
    let (code, r) = gc_json(
        &w.reg.root,
        &[
            "-m",
            "--policy",
            dir.join("p.yml").to_str().unwrap(),
            "--trash",
            trash.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{r}");
    // gc took the image, its SBOM (subject v2) and its cosign signature tag.
    let tags_gone: Vec<String> = r["tags_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["repository"].as_str().unwrap(),
                t["tag"].as_str().unwrap()
            )
        })
        .collect();
    assert!(tags_gone.contains(&sig_tag), "{tags_gone:?}");
    let sbom = format!("acme/app@{}", w.sbom);
    assert!(w.reg.pull(&sbom).is_err() && w.reg.pull(&sig_tag).is_err());

    let out = regsweep(&["restore", trash.to_str().unwrap(), "--tag", "acme/app:v2"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    w.reg.pull("acme/app:v2").expect("the image");
    w.reg.pull(&sbom).expect("its SBOM, a referrer");
    w.reg.pull(&sig_tag).expect("its cosign signature tag");
    w.assert_all_pull();
    // Only what v2 needs came back: the old image's SBOM stays in the trash.
    assert!(w.reg.pull(&format!("acme/app@{}", w.old_sbom)).is_err());
}

#[test]
fn a_policy_without_m_says_what_m_would_free_and_a_trash_run_frees_nothing_yet() {
    let w = world::build();
    let dir = w.reg.tmp.path().to_path_buf();
    let policy = dir.join("drop-v2.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: drop v2\n    tags: ['v2']\n    delete: {}\n",
    )
    .unwrap();
    let (root, policy) = (w.reg.root.to_str().unwrap(), policy.to_str().unwrap());
    let out = regsweep(&[
        "gc",
        "--root",
        root,
        "--dry-run",
        "--grace",
        "0",
        "--policy",
        policy,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("-m (--delete-untagged) would also free"),
        "the tag goes, its image stays until -m: {text}"
    );
    let trash = dir.join("trash");
    let out = regsweep(&[
        "gc",
        "--root",
        root,
        "--grace",
        "0",
        "-m",
        "--policy",
        policy,
        "--trash",
        trash.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("moved to {}", trash.display()))
            && text.contains("nothing freed until `regsweep trash empty`")
            && !text.contains("  deleted "),
        "{text}"
    );
}
