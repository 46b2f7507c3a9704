//! regsweep on the registry's s3 driver: the real registry writes the world into a bucket of a
//! local S3 server (moto), regsweep reads it by listing, and the reference GC, run on the same
//! bucket, judges.

use crate::testenv::*;
use crate::world;
use std::collections::BTreeSet;
use std::process::Command;

/// Runs regsweep with `args` and `AWS_*` test credentials (for `s3://` roots; a `--config`
/// carries its own); the exit code, stdout and stderr.
pub(crate) fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `regsweep <command> --config REGISTRY.yml --format json ...`: the exit code and the report.
fn json(reg: &Registry, command: &[&str], extra: &[&str]) -> (i32, serde_json::Value) {
    let config = reg.config.to_str().unwrap();
    let mut args: Vec<&str> = command.to_vec();
    args.extend(["--config", config, "--format", "json"]);
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args);
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}); exit {code}\n{out}\n{err}"));
    (code, v)
}

#[test]
fn a_dry_run_on_s3_plans_what_the_reference_gc_deletes_by_listing() {
    let w = world::build_on(Registry::start_s3());
    let moto = w.reg.s3.as_ref().unwrap();
    let keys_before = moto.keys("");
    let before = moto.blobs();
    let expected = w.plain_garbage(&before);
    assert_eq!(
        expected.len(),
        4,
        "the dangling blob and the deleted manifest with its config and own layer"
    );

    let (code, dry) = json(
        &w.reg,
        &["gc"],
        &["--dry-run", "--grace", "0", "--report", "-"],
    );
    assert_eq!(code, 0, "{dry}");
    assert_eq!(deleted_blobs(&dry), expected);
    assert_eq!(
        w.reg.reference_gc_dry_run(),
        expected,
        "the reference GC, on the same bucket"
    );
    assert_eq!(
        dry["root"],
        format!("s3://{}/{S3_PREFIX}", moto.bucket),
        "the report names the bucket and prefix"
    );
    // The cost: listings, and GETs only where a key's name does not say it all; nothing written.
    let req = &dry["summary"]["requests"];
    let n = |k: &str| req[k].as_u64().unwrap_or_else(|| panic!("no {k} in {req}"));
    assert!(n("list") > 0, "{req}");
    assert_eq!((n("put"), n("copy"), n("delete")), (0, 0, 0), "{req}");
    let tags = dry["summary"]["tags"].as_u64().unwrap();
    let manifests = dry["summary"]["manifests"].as_u64().unwrap();
    // Links are named by their listed ETags (a tag's current one among its history), so the
    // GETs are the manifests, each once, the world's one abandoned upload's `startedat`, and
    // the sweep journal a killed run may have left at the root.
    assert!(
        n("get") <= manifests + 2,
        "GETs only for manifests (each once), the upload's start and the sweep journal: {req} for {tags} tags and {manifests} manifests"
    );

    // The manifest cache: a repeat run reads no manifest again, and decides the same.
    let cache = w.reg.tmp.path().join("manifests.bin");
    let cache = cache.to_str().unwrap();
    let args = [
        "--dry-run",
        "--grace",
        "0",
        "--report",
        "-",
        "--cache",
        cache,
    ];
    let (_, cold) = json(&w.reg, &["gc"], &args);
    let (code, warm) = json(&w.reg, &["gc"], &args);
    assert_eq!(code, 0, "{warm}");
    assert_eq!(deleted_blobs(&warm), expected);
    assert_eq!(warm["blobs_deleted"], cold["blobs_deleted"]);
    let gets = |r: &serde_json::Value| r["summary"]["requests"]["get"].as_u64().unwrap();
    assert!(
        gets(&warm) <= 2 && gets(&cold) >= manifests,
        "the warm run GETs no manifest (only the upload's start and the sweep journal): {} then {}",
        gets(&cold),
        gets(&warm)
    );

    let (code, untagged) = json(
        &w.reg,
        &["gc"],
        &["--dry-run", "--grace", "0", "-m", "--report", "-"],
    );
    assert_eq!(code, 0, "{untagged}");
    assert_eq!(
        deleted_blobs(&untagged),
        expected.union(&w.untagged_only).cloned().collect(),
        "--delete-untagged also plans the overwritten image and its referrer, and keeps the multi-arch children"
    );

    let prom = w.reg.tmp.path().join("du.prom");
    let (code, du) = json(&w.reg, &["du"], &["--metrics", prom.to_str().unwrap()]);
    assert_eq!(code, 0, "{du}");
    let prom = std::fs::read_to_string(&prom).unwrap();
    assert!(
        prom.contains("regsweep_requests{command=\"du\",kind=\"list\"}"),
        "{prom}"
    );
    assert_eq!(du["summary"]["blobs"], before.len());
    assert!(
        du["summary"]["requests"]["list"].as_u64().unwrap() > 0,
        "{du}"
    );

    let (code, check) = json(&w.reg, &["check"], &["--verify-digests"]);
    assert_eq!(code, 0, "{check}");
    assert_eq!(check["summary"]["damage"], 0, "{check}");
    assert_eq!(check["verify"]["blobs"], before.len(), "{check}");

    // The drop-in, on the registry's own s3 config.
    let (code, out, err) = run(&[
        "garbage-collect",
        "--dry-run",
        w.reg.config.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("s3://") && out.contains("would delete"),
        "{out}"
    );

    assert_eq!(moto.keys(""), keys_before, "nothing in the bucket changed");
    w.assert_all_pull();
}

#[test]
fn s3_roots_and_options_that_cannot_be_used_say_why_and_change_nothing() {
    let reg = one_image_on_s3("s3-layer", "acme/s3:v1");
    let moto = reg.s3.as_ref().unwrap();
    let keys = moto.keys("");
    let root = format!("s3://{}/{S3_PREFIX}", moto.bucket);
    let endpoint = moto.endpoint.as_str();

    let trash = reg.tmp.path().join("trash");
    let (code, _, err) = run(&[
        "gc",
        "--root",
        &root,
        "--s3-endpoint",
        endpoint,
        "--grace",
        "0",
        "--trash",
        trash.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--trash is not supported on an object store") && err.contains(&root),
        "{err}"
    );

    let (code, _, err) = run(&[
        "gc",
        "--root",
        "s3://no-such-bucket/x",
        "--s3-endpoint",
        endpoint,
        "--dry-run",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("s3://no-such-bucket/x: no such bucket"),
        "{err}"
    );

    let wrong = format!("s3://{}/elsewhere", moto.bucket);
    let (code, _, err) = run(&["du", "--root", &wrong, "--s3-endpoint", endpoint]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a registry storage root"), "{err}");

    // A port nothing listens on: retried, then one line.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, _, err) = run(&["check", "--root", &root, "--s3-endpoint", &dead]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach the endpoint"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // No credentials at all: the crate falls back to the instance metadata service, pointed
    // here at a closed port (on a cloud machine it would answer): one line naming credentials.
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args([
            "gc",
            "--root",
            &root,
            "--s3-endpoint",
            &moto.endpoint,
            "--dry-run",
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env("AWS_METADATA_ENDPOINT", &dead)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no usable credentials"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // By `--root s3://...`, with the credentials of the AWS_* environment.
    let (code, _, err) = run(&[
        "gc",
        "--root",
        &root,
        "--s3-endpoint",
        endpoint,
        "--dry-run",
        "--grace",
        "0",
    ]);
    assert_eq!(code, 0, "{err}");
    // du's text speaks of a bucket's stored bytes, not of a disk.
    let (code, table, err) = run(&["du", "--root", &root, "--s3-endpoint", endpoint]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains(" stored in 1 repository;") && !table.contains("on disk"),
        "{table}"
    );
    assert_eq!(moto.keys(""), keys, "nothing in the bucket changed");
    reg.pull("acme/s3:v1").unwrap();
}

/// The world on the s3 driver, returned once the clock has left the second of its last push,
/// so that a run judging it does not count that push as written during the run.
pub(crate) fn settled_world() -> world::World {
    let w = world::build_on(Registry::start_s3());
    w.reg.s3.as_ref().unwrap().next_second();
    w
}

/// A registry on the s3 driver holding one small image, pushed as `repo_tag`.
fn one_image_on_s3(seed: &str, repo_tag: &str) -> Registry {
    let mut reg = Registry::start_s3();
    let mut oci = reg.new_oci();
    let img = oci.image(&[(seed, 400)], "amd64", "2024-01-01T00:00:00Z");
    oci.tag(&img.manifest, "v1");
    reg.push(&oci, "v1", repo_tag);
    reg
}

#[test]
fn a_sweep_on_s3_deletes_what_the_reference_gc_would_and_every_tag_still_pulls() {
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let expected = w.plain_garbage(&before);
    assert_eq!(w.reg.reference_gc_dry_run(), expected);

    let (code, real) = json(&w.reg, &["gc"], &["--grace", "0", "--report", "-"]);
    assert_eq!(code, 0, "{real}");
    assert_eq!(deleted_blobs(&real), expected);
    assert_eq!(
        moto.blobs(),
        before.difference(&expected).cloned().collect()
    );
    let req = &real["summary"]["requests"];
    assert!(req["delete"].as_u64().unwrap() > 0, "{req}");
    assert_eq!(req["copy"], 0, "no blob is copied: {req}");
    w.assert_all_pull();
    assert!(
        w.reg.reference_gc_dry_run().is_empty(),
        "the reference GC finds nothing left"
    );
    assert!(
        moto.keys(&format!("{S3_PREFIX}/.regsweep")).is_empty(),
        "the lock object is gone"
    );

    let (code, untagged) = json(
        &w.reg,
        &["gc"],
        &[
            "--grace",
            "0",
            "-m",
            "--purge-uploads",
            "1s",
            "--report",
            "-",
        ],
    );
    assert_eq!(code, 0, "{untagged}");
    assert_eq!(deleted_blobs(&untagged), w.untagged_only);
    assert_eq!(untagged["summary"]["uploads_deleted"], 1, "{untagged}");
    // Deletes are batched by folder at every stage: at most one request per folder an item
    // leaves (two for uploads, whose guard goes after the rest), where item by item each item
    // costs one or more.
    let r = &untagged;
    let group = |list: &str, by: &dyn Fn(&serde_json::Value) -> String| {
        let items = r[list].as_array().unwrap();
        let folders: BTreeSet<String> = items.iter().map(by).collect();
        (items.len(), folders.len())
    };
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let stages = [
        group("tags_deleted", &|v| field(v, "repository")),
        group("tag_index_entries_deleted", &|v| {
            field(v, "repository") + ":" + &field(v, "tag")
        }),
        group("manifests_deleted", &|v| field(v, "repository")),
        group("layer_links_deleted", &|v| field(v, "repository")),
        group("blobs_deleted", &|v| field(v, "digest")[7..9].to_string()),
        group("uploads_deleted", &|v| field(v, "repository")),
    ];
    let items: usize = stages.iter().map(|s| s.0).sum();
    let folders: usize = stages.iter().map(|s| s.1).sum::<usize>() + stages[5].1;
    let deletes = r["summary"]["requests"]["delete"].as_u64().unwrap() as usize;
    assert!(
        folders < items,
        "the run has folders of several items: {stages:?}"
    );
    assert!(
        deletes <= folders,
        "{deletes} delete requests for {stages:?}"
    );
    assert!(
        moto.keys(&format!(
            "{S3_PREFIX}/docker/registry/v2/repositories/acme/app/_uploads/"
        ))
        .is_empty(),
        "the abandoned upload's objects are gone"
    );
    w.assert_all_pull();
    assert!(w.reg.reference_gc_dry_run().is_empty());

    let (code, again) = json(&w.reg, &["gc"], &["--grace", "0", "-m", "--report", "-"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["summary"]["items_removed"], 0, "{again}");
}

#[test]
fn a_sweep_on_s3_killed_after_every_step_leaves_every_tag_pullable_and_a_rerun_finishes() {
    killed_after_every_step(&["-j", "1"], "1", 5);
}

#[test]
fn a_sweep_on_s3_with_many_folders_in_flight_killed_mid_batch_serves_every_kept_tag() {
    // The default -j: many folders' listings and batches in flight at once when the kill comes
    // (right after the third folder's keys went, before its guards).
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let config = w.reg.config.to_str().unwrap().to_string();
    let gc = |kill: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        c.args([
            "gc",
            "--config",
            &config,
            "--grace",
            "0",
            "-m",
            "--quiet",
            "--break-lock",
        ])
        .env_remove("RUST_LOG");
        if let Some(n) = kill {
            c.env("__REGSWEEP_FAULT_KILL_STAGED", n);
        }
        c.output().unwrap()
    };
    let out = gc(Some("3"));
    assert_eq!(
        out.status.code(),
        None,
        "killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.assert_all_pull();
    let out = gc(None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(moto.blobs(), w.kept, "the rerun finished the job");
    w.assert_all_pull();
    assert!(w.reg.reference_gc_dry_run().is_empty());
}

/// Sweeps with `jobs`, killed when the sweep asks whether to go on for the `kill_after`+1-th
/// time, again and again until a run finishes: every kept tag pulls after every kill.
fn killed_after_every_step(jobs: &[&str], kill_after: &str, min_kills: usize) {
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let kept_blobs: BTreeSet<String> = w.kept.clone();
    let config = w.reg.config.to_str().unwrap().to_string();
    let rec = w.reg.tmp.path().join("rec.json");
    let gc = |extra: &[&str], kill: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        c.args(["gc", "--config", &config, "--grace", "0", "-m", "--quiet"])
            .args(jobs)
            .args(extra)
            .args(["--format", "json", "--report"])
            .arg(&rec)
            .env_remove("RUST_LOG");
        if kill {
            // SIGKILL when the sweep asks whether to go on once more: with -j 1, one step went
            // (on a bucket, one folder's batch of items).
            c.env("__REGSWEEP_FAULT_KILL_AFTER", kill_after);
        }
        c.output().unwrap()
    };
    let mut kills = 0;
    let mut removed = Vec::new();
    loop {
        let before = moto.blobs();
        let out = gc(&["--break-lock"], true);
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
        match out.status.code() {
            // Killed: one step went, and its record says it did not finish.
            None if r["schema"] == "regsweep/gc-unfinished/v1" => kills += 1,
            None => panic!("killed, and its record is {r}"),
            // Fewer than two items were left: it finished, and its record says what each
            // killed run before it removed, exactly what went from the bucket then.
            Some(0) => {
                assert_eq!(killed_blobs(&r), removed, "{r}");
                break;
            }
            Some(c) => panic!("exit {c}: {}", String::from_utf8_lossy(&out.stderr)),
        }
        removed.push(gone(&before, &moto.blobs()));
        w.assert_all_pull();
        assert!(kills < 100, "no progress");
    }
    assert!(kills >= min_kills, "the sweep was killed {kills} times");
    // A killed run leaves its lock object: the next run stops, naming it, until --break-lock.
    let out = gc(&[], true);
    assert_eq!(out.status.code(), Some(0), "the last run released its lock");
    assert_eq!(moto.blobs(), kept_blobs, "the reruns finished the job");
    w.assert_all_pull();
    assert!(w.reg.reference_gc_dry_run().is_empty());
}

#[test]
fn a_sweep_on_s3_killed_inside_a_batch_between_its_keys_and_its_guards_serves_every_kept_tag() {
    use std::os::unix::process::ExitStatusExt;
    let mut w = settled_world();
    // A policy that deletes a tag with history, so that a batch has keys (the tag's index
    // entries) that go before its guard (its current/link).
    let policy = w.reg.tmp.path().join("p.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: drop v1\n    repositories: ['acme/app']\n    tags: ['v1']\n    delete: {}\n",
    )
    .unwrap();
    w.tags.retain(|t| t != "acme/app:v1");
    let config = w.reg.config.to_str().unwrap().to_string();
    let gc = |kill_staged: Option<usize>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        c.args([
            "gc", "--config", &config, "--grace", "0", "-m", "-j", "1", "--quiet",
        ])
        .args(["--break-lock", "--policy", policy.to_str().unwrap()])
        .env_remove("RUST_LOG");
        if let Some(k) = kill_staged {
            // SIGKILL after the k-th batch's keys went and before its guards.
            c.env("__REGSWEEP_FAULT_KILL_STAGED", k.to_string());
        }
        c.output().unwrap()
    };
    let mut kills = 0;
    for k in 0..60 {
        let out = gc(Some(k));
        if out.status.code() == Some(0) {
            break; // fewer than k + 1 batches were left
        }
        assert_eq!(out.status.signal(), Some(9), "k={k}: {out:?}");
        kills += 1;
        w.assert_all_pull();
    }
    assert!(kills >= 3, "killed {kills} times");
    let out = gc(None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    w.assert_all_pull();
    assert!(w.reg.reference_gc_dry_run().is_empty());
    assert!(
        !w.reg.tags_of("acme/app").contains(&"v1".to_string()),
        "the policy's tag is gone"
    );
}

#[test]
fn a_lock_object_left_by_a_killed_run_stops_the_next_until_break_lock() {
    let w = settled_world();
    let config = w.reg.config.to_str().unwrap().to_string();
    let gc = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_regsweep"))
            .args([
                "gc", "--config", &config, "--grace", "0", "-j", "1", "--quiet",
            ])
            .args(extra)
            .env_remove("RUST_LOG")
            .env("__REGSWEEP_FAULT_KILL_AFTER", "0")
            .output()
            .unwrap()
    };
    assert_eq!(gc(&[]).status.code(), None, "killed before its first item");
    let out = gc(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(".regsweep.lock") && err.contains("--break-lock") && err.contains("pid="),
        "{err}"
    );
    // Dry runs take no lock.
    let (code, _) = json(
        &w.reg,
        &["gc"],
        &["--dry-run", "--grace", "0", "--report", "-"],
    );
    assert_eq!(code, 0);
    let (code, r) = json(
        &w.reg,
        &["gc"],
        &["--grace", "0", "--break-lock", "--report", "-"],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["summary"]["blobs_deleted"], 4, "{r}");
    w.assert_all_pull();
}

#[test]
fn throttling_is_retried_then_reported_and_a_refusal_is_one_line() {
    let reg = one_image_on_s3("throttled", "acme/slow:v1");
    let moto = reg.s3.as_ref().unwrap();
    let root = format!("s3://{}/{S3_PREFIX}", moto.bucket);

    // The first three requests get 503 SlowDown: retried with backoff, and the run succeeds.
    let proxy = S3Proxy::start(&moto.endpoint, 3);
    let (code, out, err) = run(&[
        "du",
        "--root",
        &root,
        "--s3-endpoint",
        &proxy.endpoint,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(proxy.counts()["failed"], 3, "{}", proxy.counts());
    let du: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(du["summary"]["blobs"], 3, "{du}");
    let requests = &du["summary"]["requests"];
    assert_eq!(requests["throttled"], 3, "{du}");
    let lowest = requests["lowest_in_flight"].as_u64().unwrap();
    // Retries of one request each cut the bound (each is sent under the bound the last cut
    // set); requests that failed together cut it once.
    assert!(
        (1..=128).contains(&lowest),
        "at least one halving of 256: {du}"
    );
    drop(proxy);

    // Requests in flight stay within --s3-concurrency, and a rate limit still finishes.
    let proxy = S3Proxy::start(&moto.endpoint, 0);
    let (code, out, err) = run(&[
        "gc",
        "--root",
        &root,
        "--s3-endpoint",
        &proxy.endpoint,
        "--dry-run",
        "--format",
        "json",
        "--s3-concurrency",
        "2",
        "--max-requests-per-second",
        "50",
        "--no-cache",
    ]);
    assert_eq!(code, 0, "{err}");
    let gc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let peak = gc["summary"]["requests"]["peak_in_flight"]
        .as_u64()
        .unwrap();
    assert!((1..=2).contains(&peak), "{gc}");
    drop(proxy);

    // Throttled for good: the run gives up after its retries, in one line, and exits 1.
    let proxy = S3Proxy::start(&moto.endpoint, usize::MAX / 2);
    let (code, _, err) = run(&[
        "gc",
        "--root",
        &root,
        "--s3-endpoint",
        &proxy.endpoint,
        "--dry-run",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&root) && err.contains("503"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(proxy.counts()["failed"].as_u64().unwrap() > 1, "retried");
    drop(proxy);

    // Refused (403 AccessDenied): not retried, one line naming it, exit 1.
    let proxy = S3Proxy::failing_with(&moto.endpoint, usize::MAX / 2, 403);
    let (code, _, err) = run(&["du", "--root", &root, "--s3-endpoint", &proxy.endpoint]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&root) && err.contains("access denied"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_plan_for_a_bucket_is_reviewed_then_applied_there() {
    let w = settled_world();
    let moto = w.reg.s3.as_ref().unwrap();
    let before = moto.blobs();
    let expected = w.plain_garbage(&before);
    let plan = w.reg.tmp.path().join("plan.json");
    let config = w.reg.config.to_str().unwrap();
    let (code, _, err) = run(&[
        "gc",
        "--config",
        config,
        "--dry-run",
        "--grace",
        "0",
        "--format",
        "json",
        "--report",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let printed = (err
        .lines()
        .find_map(|l| l.strip_prefix("after review: regsweep ")))
    .unwrap_or_else(|| panic!("the dry run says how to apply its plan: {err}"))
    .to_string();
    let plan = plan.to_str().unwrap();

    // Another bucket than the plan's is refused, and nothing changes.
    let (code, _, err) = run(&[
        "apply",
        plan,
        "--root",
        "s3://other/regroot",
        "--s3-endpoint",
        &moto.endpoint,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the plan is for s3://"), "{err}");
    assert_eq!(moto.blobs(), before);

    // The line the dry run printed works as printed: it names the config that reaches the
    // bucket (endpoint and keys), not only the plan.
    let mut args: Vec<&str> = printed.split_whitespace().collect();
    assert!(args.contains(&"--config"), "{printed}");
    args.extend(["--format", "json"]);
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["failures"], serde_json::json!([]), "{r}");
    assert_eq!(
        moto.blobs(),
        before.difference(&expected).cloned().collect()
    );
    w.assert_all_pull();
    assert!(w.reg.reference_gc_dry_run().is_empty());
}
