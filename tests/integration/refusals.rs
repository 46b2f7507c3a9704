//! What regsweep refuses rather than risk: an edited trash record or plan, a trash inside the
//! layout, files that are not what they seem, a run with no place for its record.

use crate::safety::*;
use crate::testenv::*;
use crate::world;
use std::path::Path;
use std::process::Command;

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

/// The options of a bucket's requests on a folder are a mistake, said in one line, not ignored.
#[test]
fn bucket_request_options_on_a_folder_are_refused() {
    let f = crate::fixture::fixture();
    let root = f.root.to_str().unwrap();
    for opt in [
        ["--request-timeout", "2s"],
        ["--s3-concurrency", "4"],
        ["--max-requests-per-second", "10"],
    ] {
        let out = regsweep(&["gc", "--root", root, "--dry-run", opt[0], opt[1]]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            (out.status.code(), err.lines().count()),
            (Some(2), 1),
            "{err}"
        );
        assert!(
            err.contains(opt[0]) && err.contains("apply to a bucket"),
            "{err}"
        );
    }
}
