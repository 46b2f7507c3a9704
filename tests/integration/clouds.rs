//! Google Cloud Storage and Azure Blob Storage (#23), on their emulators (fake-gcs-server,
//! Azurite), filled with layouts the real registry wrote, key for key as the v3 drivers store
//! them; judged against the filesystem run on the same layout, and, after a sweep, through the
//! real registry serving the layout copied back to disk.

use crate::cloudenv::*;
use crate::fixture::fixture;
use crate::testenv::*;
use crate::world;
use std::collections::BTreeSet;
use std::process::Command;

/// `regsweep <args> --root ROOT --format json` on the folder: the report.
fn disk_json(root: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["--root", root.to_str().unwrap(), "--format", "json"]);
    let out = regsweep(&a);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A dry run on `cloud` writing its plan to `path`: what it says on stderr.
fn dry_run_plan(cloud: &Cloud, path: &std::path::Path) -> String {
    let out = cloud.regsweep(&[
        "gc",
        "-n",
        "--format",
        "json",
        "--report",
        path.to_str().unwrap(),
    ]);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The real registry, serving what the bucket holds (copied back to its folder), pulls every
/// tag in full; with `clean`, its GC also finds nothing left.
fn served_in_full(cloud: &Cloud, w: &mut world::World, clean: bool) {
    cloud.download(&w.reg.root);
    w.reg.restart();
    w.assert_all_pull();
    if clean {
        assert!(
            w.reg.reference_gc_dry_run().is_empty(),
            "the reference GC finds nothing left"
        );
    }
}

fn set(v: &serde_json::Value, key: &str, field: &str) -> BTreeSet<String> {
    (v[key].as_array().unwrap().iter())
        .map(|x| {
            let r = x["repository"].as_str().unwrap_or("");
            format!("{r} {}", x[field].as_str().unwrap())
        })
        .collect()
}

/// What a gc report plans, comparable between a folder and a bucket.
fn planned(v: &serde_json::Value) -> [BTreeSet<String>; 4] {
    [
        deleted_blobs(v),
        set(v, "manifests_deleted", "digest"),
        set(v, "layer_links_deleted", "digest"),
        set(v, "tag_index_entries_deleted", "digest"),
    ]
}

/// The filesystem's plan and the bucket's, on the same layout, and the bucket's report.
fn both_dry_runs(cloud: &Cloud, root: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--dry-run", "--grace", "0", "--no-cache"];
    args.extend_from_slice(extra);
    let (code, disk) = gc_json(root, &args);
    assert_eq!(code, 0, "{disk}");
    let mut a = vec!["gc", "-q", "--report", "-"];
    a.extend(&args);
    let (code, bucket) = cloud.json(&a);
    assert_eq!(code, 0, "{bucket}");
    assert_eq!(planned(&bucket), planned(&disk), "{:?}", cloud.kind);
    assert_eq!(bucket["summary"]["tags"], disk["summary"]["tags"]);
    assert_eq!(bucket["summary"]["bytes"], disk["summary"]["bytes"]);
    bucket
}

#[test]
fn on_both_emulators_a_dry_run_du_and_check_find_what_they_find_on_disk() {
    for kind in [Kind::Azure, Kind::Gcs] {
        let f = fixture();
        let cloud = Cloud::start(kind);
        cloud.upload(&f.root);
        let r = both_dry_runs(&cloud, &f.root, &[]);
        let m = both_dry_runs(&cloud, &f.root, &["-m"]);
        assert_eq!(deleted_blobs(&m).len(), 9, "{kind:?}: {m}");
        assert_eq!(r["root"], cloud.root());
        // Requests by kind: listings and one GET per manifest (and, on Azure, per link).
        let req = &m["summary"]["requests"];
        assert!(req["list"].as_u64().unwrap() > 0, "{req}");
        assert!(req["get"].as_u64().unwrap() >= 10, "{req}");
        assert_eq!(req["put"], 0, "a dry run writes nothing: {req}");

        // du: the same figures; check: the same findings (the fixture's leftovers).
        let du_args = ["du", "--grace", "0", "--no-cache"];
        let disk = disk_json(&f.root, &du_args);
        let (code, du) = cloud.json(&du_args);
        assert_eq!(code, 0, "{du}");
        for k in [
            "bytes",
            "reclaimable_bytes",
            "reclaimable_untagged_bytes",
            "repositories",
        ] {
            assert_eq!(du["summary"][k], disk["summary"][k], "{kind:?} du {k}");
        }
        let kinds = |v: &serde_json::Value| -> BTreeSet<String> {
            (v["findings"].as_array().unwrap().iter())
                .map(|x| x["kind"].as_str().unwrap().to_string())
                .collect()
        };
        let disk = disk_json(&f.root, &["check"]);
        let (code, check) = cloud.json(&["check", "--verify-digests"]);
        assert_eq!(code, 0, "{check}");
        assert_eq!(kinds(&check), kinds(&disk), "{kind:?}");
        assert_eq!(check["verify"]["blobs"], 32, "{check}");

        // policy check previews on the bucket what it previews on the folder.
        let policy = f.tmp.path().join("p.yml");
        std::fs::write(
            &policy,
            "version: 1\nrules:\n  - name: one\n    keep: {newest: 1}\n",
        )
        .unwrap();
        let p = policy.to_str().unwrap();
        let disk = disk_json(&f.root, &["policy", "check", p]);
        let (code, preview) = cloud.json(&["policy", "check", p]);
        assert_eq!(code, 0, "{preview}");
        assert_eq!(preview["repositories"], disk["repositories"], "{preview}");
        assert_eq!(preview["repositories"][0]["delete"], 1, "{preview}");

        // A blob whose content is not its name: damage, by streaming it.
        let victim = deleted_blobs(&m).into_iter().next().unwrap();
        let key = format!(
            "{PREFIX}/docker/registry/v2/blobs/sha256/{}/{}/data",
            &victim[7..9],
            &victim[7..]
        );
        cloud.put(&key, b"not what its name says");
        let (code, check) = cloud.json(&["check", "--verify-digests"]);
        assert_eq!(code, 3, "{kind:?}: {check}");
        assert!(
            check["findings"].to_string().contains(&victim[7..]),
            "{check}"
        );
    }
}

#[test]
fn the_registry_s_layouts_plan_alike_on_disk_and_in_both_buckets() {
    // A layout a test registry wrote: multi-arch, referrers, signatures, an API delete.
    let w = world::build();
    for kind in [Kind::Azure, Kind::Gcs] {
        let cloud = Cloud::start(kind);
        cloud.upload(&w.reg.root);
        both_dry_runs(&cloud, &w.reg.root, &[]);
        both_dry_runs(&cloud, &w.reg.root, &["-m"]);
        // Freshly uploaded: every object is younger than the default grace (by its
        // LastModified), so nothing would go.
        let (code, r) = cloud.json(&["gc", "-n", "-m", "-q", "--report", "-", "--no-cache"]);
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["summary"]["blobs_deleted"], 0, "{r}");
        assert!(r["summary"]["kept_by_grace"].as_u64().unwrap() > 0, "{r}");
    }
}

#[test]
fn a_sweep_on_azure_deletes_what_the_reference_gc_would_and_every_tag_still_pulls() {
    let mut w = world::build();
    let cloud = Cloud::start(Kind::Azure);
    cloud.upload(&w.reg.root);
    let before = cloud.blobs();
    let expected = w.plain_garbage(&before);
    assert_eq!(w.reg.reference_gc_dry_run(), expected);
    cloud.next_second();

    let (code, r) = cloud.json(&["gc", "--grace", "0", "-q", "--report", "-"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(deleted_blobs(&r), expected);
    assert_eq!(
        cloud.blobs(),
        before.difference(&expected).cloned().collect()
    );
    let req = &r["summary"]["requests"];
    // Deletes go in blob batches (up to 256 a request), counted as deletes.
    let deletes = req["delete"].as_u64().unwrap();
    assert!(
        deletes > 0 && deletes < r["summary"]["items_removed"].as_u64().unwrap(),
        "{req}"
    );
    assert!(
        cloud.keys(&format!("{PREFIX}/.regsweep")).is_empty(),
        "the lock is gone"
    );

    // -m with its manifest cache: the second run reads no manifest again.
    let cache = w.reg.tmp.path().join("manifests.bin");
    let dry = [
        "gc",
        "-n",
        "-m",
        "--grace",
        "0",
        "-q",
        "--report",
        "-",
        "--cache",
        cache.to_str().unwrap(),
    ];
    let (code, first) = cloud.json(&dry);
    assert_eq!(code, 0, "{first}");
    let (_, second) = cloud.json(&dry);
    let gets = |v: &serde_json::Value| v["summary"]["requests"]["get"].as_u64().unwrap();
    assert!(
        gets(&second) < gets(&first),
        "{} then {}",
        gets(&first),
        gets(&second)
    );
    let (code, r) = cloud.json(&[
        "gc",
        "-m",
        "--grace",
        "0",
        "-q",
        "--report",
        "-",
        "--no-cache",
    ]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(cloud.blobs(), w.kept, "only what tags reach is left");

    // Judged by the real registry, serving what the bucket holds.
    served_in_full(&cloud, &mut w, true);
}

#[test]
fn a_sweep_on_azure_killed_after_every_step_leaves_every_tag_pullable_and_a_rerun_finishes() {
    let mut w = world::build();
    let cloud = Cloud::start(Kind::Azure);
    cloud.upload(&w.reg.root);
    cloud.next_second();
    let mut kills = 0;
    let rec = tempfile::NamedTempFile::new().unwrap();
    let rec_path = rec.path().to_str().unwrap();
    let mut removed = Vec::new();
    loop {
        let before = cloud.blobs();
        let out = cloud
            .command(&[
                "gc",
                "--grace",
                "0",
                "-m",
                "-q",
                "-j",
                "1",
                "--break-lock",
                "--no-cache",
                "--format",
                "json",
                "--report",
                rec_path,
            ])
            .env("__REGSWEEP_FAULT_KILL_AFTER", "1")
            .output()
            .unwrap();
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(rec.path()).unwrap()).unwrap_or_default();
        match out.status.code() {
            // A killed run's record says it did not finish, never what an earlier run did.
            None => {
                assert_eq!(r["schema"], "regsweep/gc-unfinished/v1", "{r}");
                kills += 1
            }
            // The run that finished says what each killed one removed: what went then.
            Some(0) => {
                assert_eq!(killed_blobs(&r), removed, "{r}");
                break;
            }
            Some(c) => panic!("exit {c}: {}", String::from_utf8_lossy(&out.stderr)),
        }
        removed.push(gone(&before, &cloud.blobs()));
        // After every kill, what the bucket holds serves every tag.
        served_in_full(&cloud, &mut w, false);
        assert!(kills < 100, "no progress");
    }
    assert!(kills >= 5, "killed {kills} times");
    let out = cloud.regsweep(&["gc", "--grace", "0", "-m", "-q"]);
    assert_eq!(out.status.code(), Some(0), "the last run released its lock");
    assert_eq!(cloud.blobs(), w.kept, "the reruns finished the job");
    served_in_full(&cloud, &mut w, true);
}

#[test]
fn azure_locks_plans_and_the_registry_config_and_gcs_refuses_to_sweep() {
    let f = fixture();
    let cloud = Cloud::start(Kind::Azure);
    cloud.upload(&f.root);
    cloud.next_second();
    // A lock object left by a run that died stops the next until --break-lock.
    let lock = format!("{PREFIX}/.regsweep.lock");
    cloud.put(
        &lock,
        b"pid=1\nhost=h\nstarted=2026-01-01T00:00:00Z\ncommand=gc\n",
    );
    let out = cloud.regsweep(&["gc", "--grace", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("az://registry/regroot/.regsweep.lock") && err.contains("--break-lock"),
        "{err}"
    );
    assert_eq!(cloud.blobs().len(), 32, "nothing deleted");

    // The registry's own config (v3's azure section, through its serviceurl): a reviewed
    // plan, applied by the line the dry run prints.
    let config = f.tmp.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  azure:\n    accountname: {AZ_ACCOUNT}\n    accountkey: {AZ_KEY}\n    container: registry\n    rootdirectory: /{PREFIX}\n    serviceurl: {}\n    credentials:\n      type: shared_key\n",
            cloud.endpoint
        ),
    )
    .unwrap();
    let plan = f.tmp.path().join("plan.json");
    let out = regsweep(&[
        "gc",
        "--config",
        config.to_str().unwrap(),
        "-n",
        "-m",
        "--grace",
        "0",
        "--format",
        "json",
        "--report",
        plan.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("after review: regsweep "))
        .unwrap();
    let mut args: Vec<&str> = line.split_whitespace().collect();
    args.extend(["--break-lock", "--format", "json"]);
    let out = regsweep_ok(&args);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["summary"]["failures"], 0, "{r}");
    assert_eq!(cloud.blobs(), f.kept, "the plan went");
    // Through --root and --endpoint, the printed line names both.
    let err = dry_run_plan(&cloud, &f.tmp.path().join("plan2.json"));
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("after review: regsweep "))
        .unwrap();
    assert!(
        line.contains(&format!(
            "--root {} --endpoint {}",
            cloud.root(),
            cloud.endpoint
        )),
        "{line}"
    );
    let mut args: Vec<&str> = line.split_whitespace().collect();
    args.push("--break-lock");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(&args)
        .env("AZURE_STORAGE_ACCOUNT_NAME", AZ_ACCOUNT)
        .env("AZURE_STORAGE_ACCOUNT_KEY", AZ_KEY)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The drop-in reads the same config.
    regsweep_ok(&["garbage-collect", "--dry-run", config.to_str().unwrap()]);

    // GCS: reading commands only; a sweep is refused before anything changes, through --root
    // and through the registry's gcs section alike.
    let gcs = Cloud::start(Kind::Gcs);
    gcs.upload(&f.root);
    let before = gcs.keys(PREFIX);
    let out = gcs.regsweep(&["gc", "--grace", "0", "-m"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sweeping a gs:// bucket is not supported yet"),
        "{err}"
    );
    // Its plan is printed for review, with no apply line that would fail.
    let err = dry_run_plan(&gcs, &f.tmp.path().join("plan3.json"));
    assert!(
        err.contains("this plan is for review only") && !err.contains("after review"),
        "{err}"
    );
    let cfg = f.tmp.path().join("gcs.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n  gcs:\n    bucket: registry\n    rootdirectory: {PREFIX}\n"
        ),
    )
    .unwrap();
    let with_config = |extra: &[&str]| {
        let mut a = vec![
            "gc",
            "--config",
            cfg.to_str().unwrap(),
            "--endpoint",
            &gcs.endpoint,
        ];
        a.extend_from_slice(extra);
        regsweep(&a)
    };
    let out = with_config(&["-n", "-m", "--grace", "0"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("would delete   0 tags, 2 manifests"));
    let out = with_config(&["-m", "--grace", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(gcs.keys(PREFIX), before, "nothing changed");
}

/// The seam's conformance checks (`regsweep::storage::conformance`) on both backends: the
/// checks the filesystem, in-memory and S3 backends pass; reading only on GCS, which sweeps
/// nothing.
#[test]
fn both_backends_conform_to_the_seam() {
    use regsweep::storage::bucket::{BucketRoot, BucketStorage, Service};
    for kind in [Kind::Azure, Kind::Gcs] {
        let cloud = Cloud::start(kind);
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("docker/registry/v2");
        for (path, bytes) in regsweep::storage::conformance::tree() {
            let p = v2.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        cloud.upload(dir.path());
        let root = BucketRoot {
            service: if kind == Kind::Azure {
                Service::Azure
            } else {
                Service::Gcs
            },
            bucket: cloud.bucket.clone(),
            prefix: PREFIX.into(),
            endpoint: Some(cloud.endpoint.clone()),
            account: Some(AZ_ACCOUNT.into()),
            account_key: Some(AZ_KEY.into()),
            ..Default::default()
        };
        let store = BucketStorage::open(&root).unwrap();
        let checked = match kind {
            Kind::Azure => regsweep::storage::conformance::check(&store),
            Kind::Gcs => regsweep::storage::conformance::check_reading(&store),
        };
        checked.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
}

#[test]
fn an_azure_sweep_killed_inside_batches_in_flight_serves_every_kept_tag() {
    // The default -j: many folders' listings and batches in flight when the kill comes (right
    // after the third folder's keys went, before its guards).
    let mut w = world::build();
    let cloud = Cloud::start(Kind::Azure);
    cloud.upload(&w.reg.root);
    cloud.next_second();
    let out = cloud
        .command(&["gc", "--grace", "0", "-m", "-q", "--no-cache"])
        .env("__REGSWEEP_FAULT_KILL_STAGED", "3")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    served_in_full(&cloud, &mut w, false);
    let out = cloud.regsweep(&[
        "gc",
        "--grace",
        "0",
        "-m",
        "-q",
        "--break-lock",
        "--no-cache",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cloud.blobs(), w.kept, "the rerun finished the job");
    served_in_full(&cloud, &mut w, true);
}

/// The seam's conformance checks (`regsweep::storage::conformance`), on the S3 backend over
/// moto: the same checks the filesystem and in-memory backends pass in the unit tests.
#[test]
fn the_s3_backend_conforms_to_the_seam() {
    let moto = Moto::start();
    for (path, bytes) in regsweep::storage::conformance::tree() {
        moto.put(&format!("{S3_PREFIX}/docker/registry/v2/{path}"), &bytes);
    }
    let root = regsweep::storage::bucket::BucketRoot {
        bucket: moto.bucket.clone(),
        prefix: S3_PREFIX.into(),
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key: Some("testing".into()),
        secret_key: Some("testing".into()),
        ..Default::default()
    };
    let store = regsweep::storage::bucket::BucketStorage::open(&root).unwrap();
    regsweep::storage::conformance::check(&store).unwrap();
}

#[test]
fn the_endpoint_flag_wins_over_the_emulator_environment_and_a_refusal_names_the_url() {
    let f = fixture();
    let cloud = Cloud::start(Kind::Azure);
    cloud.upload(&f.root);
    // Azure's tools set AZURE_STORAGE_USE_EMULATOR for Azurite; its default port is not this
    // one, and no account is in the environment: the flag's URL and the emulator's account win.
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args([
            "du",
            "--root",
            &cloud.root(),
            "--endpoint",
            &cloud.endpoint,
            "--format",
            "json",
        ])
        .env("AZURE_STORAGE_USE_EMULATOR", "true")
        .env_remove("AZURE_STORAGE_ACCOUNT_NAME")
        .env_remove("AZURE_STORAGE_ACCOUNT_KEY")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let du: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(du["summary"]["blobs"], 32, "{du}");
    // Nothing listens there: the one line says where it tried.
    let port = free_port();
    let dead = format!("http://127.0.0.1:{port}/devstoreaccount1");
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["du", "--root", &cloud.root(), "--endpoint", &dead])
        .env("AZURE_STORAGE_USE_EMULATOR", "true")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot reach the endpoint http://127.0.0.1:{port}"
        )),
        "{err}"
    );
}
