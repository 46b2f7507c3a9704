//! The bounded mode (`--memory-limit`): the same plans as the default mode on the real
//! registry's layouts, a sweep that leaves every kept tag pulling, and the ways it refuses.

use crate::fixture::fixture;
use crate::testenv::*;
use crate::world;
use std::collections::BTreeSet;

/// What a report plans, item by item, and the plan's checksum.
fn planned(report: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    let keep = [
        "blobs_deleted",
        "manifests_deleted",
        "layer_links_deleted",
        "tags_deleted",
        "summary",
        "findings",
    ];
    let items = keep.iter().map(|k| (k.to_string(), report[k].clone()));
    (
        serde_json::Value::Object(items.collect()),
        report["checksum"].clone(),
    )
}

/// At a limit just above the least a small layout accepts (64 MiB and its few blobs): tiny, and
/// the lists spill.
#[test]
fn the_bounded_mode_plans_as_the_default_and_its_sweep_leaves_every_kept_tag_pulling() {
    let w = world::build();
    let root = &w.reg.root;
    let dry = ["--dry-run", "--grace", "0", "-m", "--no-cache"];
    let (code, held) = gc_json(root, &dry);
    assert_eq!(code, 0, "{held}");
    let r = root.to_str().unwrap();
    let args = [
        &["gc", "--root", r, "--format", "json"][..],
        &dry,
        &["--memory-limit", "66MiB", "-v"],
    ];
    let out = regsweep_ok(&args.concat());
    let bounded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the blob list spills to disk (--memory-limit)"),
        "{said}"
    );
    assert!(held["checksum"].is_string());
    assert_eq!(planned(&bounded), planned(&held));
    let expected: BTreeSet<String> = (blobs_on_disk(&w.reg.v2()).into_iter())
        .filter(|d| !w.kept.contains(d))
        .collect();
    assert_eq!(deleted_blobs(&bounded), expected);

    // The sweep itself in the bounded mode: what the registry serves is whole.
    let (code, swept) = gc_json(root, &["--grace", "0", "-m", "--memory-limit", "66MiB"]);
    assert_eq!(code, 0, "{swept}");
    assert_eq!(deleted_blobs(&swept), expected);
    assert_eq!(blobs_on_disk(&w.reg.v2()), w.kept);
    w.assert_all_pull();
    assert!(
        w.reg.reference_gc_dry_run().is_empty(),
        "the reference GC finds nothing left"
    );
}

/// `du` and `check` say the same in both modes, on the fixture.
#[test]
fn du_and_check_report_the_same_in_the_bounded_mode() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let strip = |mut v: serde_json::Value| {
        for k in ["started_at", "finished_at", "duration_seconds", "run_id"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    for cmd in [
        &["du", "--root", root, "--format", "json", "--no-cache"][..],
        &["check", "--root", root, "--format", "json"][..],
    ] {
        let held = regsweep(cmd);
        let bounded = regsweep(&[cmd, &["--memory-limit", "66MiB", "-v"]].concat());
        assert_eq!(held.status.code(), bounded.status.code(), "{cmd:?}");
        let said = String::from_utf8_lossy(&bounded.stderr);
        assert!(
            said.contains("the blob list spills to disk"),
            "{cmd:?}: {said}"
        );
        let json = |o: &std::process::Output| -> serde_json::Value {
            strip(serde_json::from_slice(&o.stdout).unwrap())
        };
        assert_eq!(json(&bounded), json(&held), "{cmd:?}");
    }
}

#[test]
fn a_limit_too_small_a_bad_size_or_a_full_spill_disk_stops_the_run_before_anything_goes() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let before = blobs_on_disk(&f.v2());
    let gc = |extra: &[&str], env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"));
        c.args([
            "gc",
            "--root",
            root,
            "--grace",
            "0",
            "-m",
            "--no-cache",
            "-q",
        ]);
        c.args(extra)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG");
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err)
    };
    let (code, err) = gc(&["--memory-limit", "1MiB"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("needs at least 65MiB") && err.contains("give --memory-limit 65MiB or more"),
        "{err}"
    );
    let (code, err) = gc(&["--memory-limit", "lots"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("give a size, such as 8GiB"), "{err}");
    // The spill file's disk fills up (the fault hook): exit 1, naming where, nothing deleted.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let full = [("TMPDIR", dir), ("__REGSWEEP_FAULT_SPILL_FULL", "1000")];
    let (code, err) = gc(&["--memory-limit", "1GiB"], &full);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(dir)
            && err.contains("No space left on device")
            && err.contains("nothing was planned or deleted"),
        "{err}"
    );
    // A TMPDIR that is not there: the same, before the blob list is held anywhere.
    let gone = tmp.path().join("missing");
    let missing = [("TMPDIR", gone.to_str().unwrap())];
    let (code, err) = gc(&["--memory-limit", "1GiB"], &missing);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(gone.to_str().unwrap()), "{err}");
    assert_eq!(blobs_on_disk(&f.v2()), before, "nothing was deleted");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "no spill file left"
    );
    // Given room, the same run sweeps.
    let (code, err) = gc(&["--memory-limit", "1GiB"], &[("TMPDIR", dir)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(blobs_on_disk(&f.v2()).len() < before.len());
}

/// Without --memory-limit, a store larger than half the memory available spills by itself (the
/// machine's memory made small by the fault hook), plans the same, and refuses nothing.
#[test]
fn a_store_too_large_for_the_memory_available_spills_by_itself() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let args = [
        "gc",
        "--root",
        root,
        "--dry-run",
        "--grace",
        "0",
        "-m",
        "--no-cache",
        "--format",
        "json",
    ];
    let run = |available: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
            .args(args)
            .arg("-v")
            .env("__REGSWEEP_FAULT_MEM_AVAILABLE", available)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (report, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (held, said) = run("100000000000");
    assert!(!said.contains("spills"), "{said}");
    // 32 blobs held would take about 3 KB: with 4 KB available, that is more than half.
    let (bounded, said) = run("4096");
    assert!(
        said.contains(
            "the blob list spills to disk (the store is larger than half of the memory available)"
        ),
        "{said}"
    );
    assert_eq!(planned(&bounded), planned(&held));
    assert!(!deleted_blobs(&bounded).is_empty());
}
