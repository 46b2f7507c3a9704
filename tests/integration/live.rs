//! The live registry's blob-descriptor cache after a sweep (issue 18, item 1): a re-push of
//! what was swept must upload again and pull, with the registry's cache in Redis (evicted by
//! regsweep) or in memory (reported, caught by `--registry-url`, mended by a restart).

use crate::testenv::*;
use std::collections::BTreeSet;

/// Pushes a one-layer image to `repo_tag`, then deletes its manifest through the API: its
/// blobs stay until a gc, and the registry's cache holds them. Returns the image.
pub(crate) fn push_and_delete(reg: &mut Registry, seed: &str, repo_tag: &str) -> (OciDir, Image) {
    let mut oci = reg.new_oci();
    let img = oci.image(&[(seed, 1500)], "amd64", "2026-01-01T00:00:00Z");
    oci.tag(&img.manifest, "x");
    reg.push(&oci, "x", repo_tag);
    let repo = repo_tag.split(':').next().unwrap();
    reg.delete_manifest(repo, &img.manifest.digest);
    (oci, img)
}

fn gc_config(reg: &Registry, extra: &[&str]) -> (i32, serde_json::Value, String) {
    gc_config_at(&reg.config, extra)
}

/// `gc_config` with the registry config at `config`.
fn gc_config_at(config: &std::path::Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec![
        "gc",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
        "--report",
        "-",
        "--grace",
        "0",
        "-m",
    ];
    args.extend_from_slice(extra);
    let out = regsweep(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), report, err)
}

fn kinds(report: &serde_json::Value) -> BTreeSet<String> {
    (report["errors"].as_array().into_iter().flatten())
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

/// HEAD of a blob in a repository through the registry: its status.
fn head_blob(reg: &Registry, repo: &str, digest: &str) -> u16 {
    let url = format!("http://{}/v2/{repo}/blobs/{digest}", reg.addr);
    reg.curl(&["-I", &url]).0
}

#[test]
fn with_a_redis_cache_a_re_push_after_the_sweep_uploads_again_and_pulls() {
    let redis = Redis::start();
    let mut reg = Registry::start_cached(RegCache::Redis(&redis));
    let (oci, img) = push_and_delete(&mut reg, "redis-app", "test/app:v1");
    let (_, other) = push_and_delete(&mut reg, "redis-mounted", "test/other:v1");
    let layer = &img.layers[0].digest;
    assert_eq!(head_blob(&reg, "test/app", layer), 200);
    assert!(
        redis.keys("blobs::*").contains(&format!("blobs::{layer}")),
        "the registry cached the layer: {:?}",
        redis.keys("*")
    );
    let (code, r, err) = gc_config(&reg, &[]);
    assert_eq!(code, 0, "{err}\n{r}");
    assert_eq!(r["registry"]["cache"], "redis", "{r}");
    assert!(r["registry"]["evicted"].as_u64().unwrap() > 0, "{r}");
    let gone: BTreeSet<String> = deleted_blobs(&r);
    assert!(gone.contains(layer), "{r}");
    for d in &gone {
        assert!(
            !redis.keys("*").iter().any(|k| k.contains(d.as_str())),
            "{d} still in Redis: {:?}",
            redis.keys("*")
        );
    }
    // The registry no longer claims the layer; a cross-repository mount of a swept layer is
    // refused (an upload starts, 202) instead of mounted (201).
    assert_eq!(head_blob(&reg, "test/app", layer), 404);
    let mount = format!(
        "http://{}/v2/fresh/repo/blobs/uploads/?mount={}&from=test/other",
        reg.addr, other.layers[0].digest
    );
    assert_eq!(
        reg.curl(&["-X", "POST", &mount]).0,
        202,
        "mount of a swept layer"
    );
    // The same image pushed again uploads its layers and pulls in full.
    reg.push(&oci, "x", "test/app:v1");
    reg.pull("test/app:v1").expect("the re-pushed image pulls");
    assert!(
        reg.reference_gc_dry_run().is_empty(),
        "the reference GC finds nothing left"
    );
}

#[test]
fn with_an_in_memory_cache_the_report_says_restart_and_the_registry_url_catches_the_claim() {
    let mut reg = Registry::start_cached(RegCache::InMemory);
    let (oci, img) = push_and_delete(&mut reg, "mem-app", "test/app:v1");
    let layer = img.layers[0].digest.clone();
    assert_eq!(head_blob(&reg, "test/app", &layer), 200);
    let metrics = reg.tmp.path().join("m.prom");
    let url = format!("http://{}", reg.addr);
    // The registry answers at its config's http.addr: no sweep without a restart named, and
    // the refusal says how to give one.
    let before = blobs_on_disk(&reg.v2());
    let (code, _, err) = gc_config(&reg, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--restart-command") && err.contains("nothing was swept"),
        "{err}"
    );
    assert_eq!(blobs_on_disk(&reg.v2()), before, "nothing deleted");
    // Told (wrongly) that it is stopped, the sweep goes, and the registry's word shows why
    // that was wrong.
    let (code, r, err) = gc_config(
        &reg,
        &[
            "--registry-stopped",
            "--registry-url",
            &url,
            "--metrics",
            metrics.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 4, "the registry still claims what went: {err}\n{r}");
    assert!(deleted_blobs(&r).contains(&layer), "{r}");
    let k = kinds(&r);
    assert!(
        k.contains("registry_restart_needed") && k.contains("registry_claims_swept"),
        "{k:?}"
    );
    assert_eq!(r["registry"]["restart_needed"], true);
    let claimed = r["registry"]["probe"]["claimed"].as_array().unwrap();
    assert!(
        claimed.iter().any(|c| c["digest"] == layer.as_str()),
        "the stale layer is named: {r}"
    );
    let m = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        m.contains("regsweep_registry_restart_needed{command=\"gc\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("regsweep_registry_stale_claims{command=\"gc\"} "),
        "{m}"
    );
    // The claim is real: the cache answers 200 for a blob whose data is gone.
    assert_eq!(head_blob(&reg, "test/app", &layer), 200);
    // After the restart the report asked for, a re-push uploads again and pulls.
    reg.restart();
    assert_eq!(head_blob(&reg, "test/app", &layer), 404);
    reg.push(&oci, "x", "test/app:v1");
    reg.pull("test/app:v1")
        .expect("the re-pushed image pulls after the restart");
    // The text says it too, in words.
    let (_, img2) = push_and_delete(&mut reg, "mem-app-2", "test/app2:v1");
    let out = regsweep(&[
        "gc",
        "--config",
        reg.config.to_str().unwrap(),
        "--grace",
        "0",
        "-m",
        "--registry-stopped",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("RESTART the registry before the next push"),
        "{text}"
    );
    assert!(!blobs_on_disk(&reg.v2()).contains(&img2.layers[0].digest));
    // With the report in a file, the notice still reaches stderr (cron mails it).
    let (_, img3) = push_and_delete(&mut reg, "mem-app-3", "test/app3:v1");
    let file = reg.tmp.path().join("report.json");
    let out = regsweep(&[
        "gc",
        "--config",
        reg.config.to_str().unwrap(),
        "--grace",
        "0",
        "-m",
        "--registry-stopped",
        "--format",
        "json",
        "--report",
        file.to_str().unwrap(),
    ]);
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in memory") && err.contains("restart it"),
        "{err}"
    );
    assert!(!blobs_on_disk(&reg.v2()).contains(&img3.layers[0].digest));
}

#[test]
fn with_an_in_memory_cache_the_restart_command_runs_after_the_sweep_and_a_re_push_pulls() {
    let mut reg = Registry::start_cached(RegCache::InMemory);
    let (oci, img) = push_and_delete(&mut reg, "restart-app", "test/app:v1");
    let layer = img.layers[0].digest.clone();
    assert_eq!(head_blob(&reg, "test/app", &layer), 200);
    // The registry restarted as a service manager would: stopped, then started anew.
    let pidfile = reg.tmp.path().join("new.pid");
    let cmd = format!(
        "kill {pid}; while curl -s -o /dev/null http://{addr}/v2/; do sleep 0.05; done; docker-registry serve {cfg} >/dev/null 2>&1 & echo $! > {pf}",
        pid = reg.pid(),
        addr = reg.addr,
        cfg = reg.config.display(),
        pf = pidfile.display()
    );
    let (code, r, err) = gc_config(&reg, &["--restart-command", &cmd]);
    let new_pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let _stop = KillOnDrop(new_pid.trim().to_string());
    assert_eq!(code, 0, "{err}\n{r}");
    assert!(deleted_blobs(&r).contains(&layer), "{r}");
    assert_eq!(r["registry"]["restart"]["exit_code"], 0, "{r}");
    assert_eq!(r["registry"]["restart_needed"], false, "{r}");
    // Asked after the restart at its config's address, it claims nothing swept.
    assert_eq!(
        r["registry"]["probe"]["claimed"].as_array().map(Vec::len),
        Some(0),
        "{r}"
    );
    assert_eq!(head_blob(&reg, "test/app", &layer), 404);
    reg.push(&oci, "x", "test/app:v1");
    reg.pull("test/app:v1")
        .expect("the re-pushed image pulls after the restart");
}

/// Kills a process by its PID text when dropped (the registry the restart command started).
struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = std::process::Command::new("kill").arg(&self.0).status();
        }
    }
}

#[test]
fn an_unreachable_redis_stops_the_sweep_unless_the_risk_is_taken_by_name() {
    let mut redis = Redis::start();
    let mut reg = Registry::start_cached(RegCache::Redis(&redis));
    let (_, img) = push_and_delete(&mut reg, "down-app", "test/app:v1");
    redis.stop();
    let before = blobs_on_disk(&reg.v2());
    let (code, r, err) = gc_config(&reg, &[]);
    assert_eq!(code, 1, "{err}\n{r}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&redis.addr) && err.contains("--risk-stale-cache"),
        "{err}"
    );
    assert!(err.contains("nothing was swept"), "{err}");
    assert_eq!(blobs_on_disk(&reg.v2()), before, "nothing deleted");
    // A dry run needs no cache.
    let (code, _, err) = gc_config(&reg, &["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let (code, r, err) = gc_config(&reg, &["--risk-stale-cache"]);
    assert_eq!(code, 0, "{err}\n{r}");
    assert!(kinds(&r).contains("registry_cache_unreachable"), "{r}");
    assert!(!blobs_on_disk(&reg.v2()).contains(&img.layers[0].digest));
}

#[test]
fn on_s3_with_a_redis_cache_a_re_push_after_the_sweep_pulls() {
    let redis = Redis::start();
    let mut reg = Registry::start_s3_cached(RegCache::Redis(&redis));
    let (oci, img) = push_and_delete(&mut reg, "s3-redis-app", "test/app:v1");
    let layer = img.layers[0].digest.clone();
    assert!(redis.keys("blobs::*").contains(&format!("blobs::{layer}")));
    // S3 keeps whole seconds, and regsweep keeps what was written in its run's first second.
    reg.s3.as_ref().unwrap().next_second();
    let (code, r, err) = gc_config(&reg, &[]);
    assert_eq!(code, 0, "{err}\n{r}");
    assert!(deleted_blobs(&r).contains(&layer), "{r}");
    assert_eq!(r["registry"]["cache"], "redis");
    assert!(!reg.s3.as_ref().unwrap().blobs().contains(&layer));
    assert_eq!(head_blob(&reg, "test/app", &layer), 404);
    reg.push(&oci, "x", "test/app:v1");
    reg.pull("test/app:v1")
        .expect("the re-pushed image pulls from the bucket");
}

#[test]
fn a_delete_that_lands_unanswered_is_not_counted_and_the_cache_forgets_it_all_the_same() {
    let redis = Redis::start();
    let mut reg = Registry::start_s3_cached(RegCache::Redis(&redis));
    let (oci, img) = push_and_delete(&mut reg, "landed-app", "test/app:v1");
    let layer = img.layers[0].digest.clone();
    assert!(redis.keys("blobs::*").contains(&format!("blobs::{layer}")));
    let moto = reg.s3.as_ref().unwrap();
    moto.next_second();
    // regsweep reaches the bucket through a proxy that passes the layer's delete on and then
    // answers nothing: the layer is gone, and regsweep cannot know it.
    let key = format!("blobs/sha256/{}/{}/data", &layer[7..9], &layer[7..]);
    let proxy = crate::servers::S3Proxy::landing_then_stalling(&moto.endpoint, &key);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("through-proxy.yml");
    let yaml = std::fs::read_to_string(&reg.config).unwrap();
    std::fs::write(&config, yaml.replace(&moto.endpoint, &proxy.endpoint)).unwrap();
    let (code, r, err) = gc_config_at(&config, &["--request-timeout", "1s"]);
    assert_eq!(code, 1, "{err}\n{r}");
    assert!(!moto.blobs().contains(&layer), "the delete landed: {r}");
    // The record does not claim it, nor deny it.
    assert!(!deleted_blobs(&r).contains(&layer), "{r}");
    let said = r["errors"].to_string();
    assert!(said.contains("not known to be deleted"), "{r}");
    assert!(!said.contains("not deleted: "), "{r}");
    // The registry's cache forgot it all the same: a re-push uploads it again, and pulls.
    assert!(
        !redis.keys("blobs::*").contains(&format!("blobs::{layer}")),
        "{r}"
    );
    assert_eq!(head_blob(&reg, "test/app", &layer), 404);
    reg.push(&oci, "x", "test/app:v1");
    reg.pull("test/app:v1")
        .expect("the re-pushed image pulls from the bucket");
}

/// `check --format json` on `reg`'s root: its exit code and the kinds of its findings.
fn check_kinds(reg: &Registry) -> (i32, BTreeSet<String>) {
    let out = regsweep(&[
        "check",
        "--root",
        reg.root.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds = (r["findings"].as_array().unwrap().iter())
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect();
    (out.status.code().unwrap(), kinds)
}

#[test]
fn a_run_killed_before_its_eviction_leaves_a_journal_that_the_next_run_completes_first() {
    let redis = Redis::start();
    let mut reg = Registry::start_cached(RegCache::Redis(&redis));
    let (oci, img) = push_and_delete(&mut reg, "journal-app", "test/app:v1");
    let layer = &img.layers[0].digest;
    assert_eq!(head_blob(&reg, "test/app", layer), 200, "cached");
    let journal = reg.root.join(".regsweep.pending-eviction");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args([
            "gc",
            "--config",
            reg.config.to_str().unwrap(),
            "--grace",
            "0",
            "-m",
            "-q",
        ])
        .env("__REGSWEEP_FAULT_KILL_BEFORE_EVICTION", "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    // Swept from storage, still claimed through Redis: what the journal is for.
    let data = reg.v2().join(format!(
        "blobs/sha256/{}/{}/data",
        &layer[7..9],
        &layer[7..]
    ));
    assert!(!data.exists(), "the sweep ran");
    assert_eq!(head_blob(&reg, "test/app", layer), 200, "the stale claim");
    assert!(journal.exists());
    let (code, kinds) = check_kinds(&reg);
    assert_eq!(code, 3, "{kinds:?}");
    assert!(kinds.contains("registry_cache_pending"), "{kinds:?}");
    // Without the registry's config the next sweep cannot evict, so it does nothing.
    let root = reg.root.to_str().unwrap();
    let out = regsweep(&["gc", "--root", root, "--grace", "0", "--break-lock", "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(".regsweep.pending-eviction") && err.contains("--config"),
        "{err}"
    );
    assert!(journal.exists());
    // With it, the eviction is completed first and said so; then the usual run.
    let (code, r, err) = gc_config(&reg, &[]);
    assert_eq!(code, 0, "{err}\n{r}");
    let note = (r["errors"].as_array().unwrap().iter())
        .find(|e| e["kind"] == "registry_cache_pending")
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        note["message"].as_str().unwrap().contains("completed"),
        "{note}"
    );
    assert_eq!(note["severity"], "notice");
    assert!(!journal.exists());
    assert!(r["registry"].get("pending_eviction").is_none(), "{r}");
    assert_eq!(head_blob(&reg, "test/app", layer), 404);
    let (code, kinds) = check_kinds(&reg);
    assert!(
        !kinds.contains("registry_cache_pending"),
        "{code} {kinds:?}"
    );
    reg.push(&oci, "x", "test/app:v1");
    reg.pull("test/app:v1").expect("the re-pushed image pulls");
}

#[test]
fn a_journal_too_long_to_list_has_the_next_run_evict_every_entry() {
    let redis = Redis::start();
    let mut reg = Registry::start_cached(RegCache::Redis(&redis));
    let (oci, img) = push_and_delete(&mut reg, "journal-all-app", "test/app:v1");
    let layer = &img.layers[0].digest;
    let mut keep = reg.new_oci();
    let kept = keep.image(
        &[("journal-all-kept", 300)],
        "amd64",
        "2024-01-01T00:00:00Z",
    );
    keep.tag(&kept.manifest, "v1");
    reg.push(&keep, "v1", "test/keep:v1");
    let kept_key = format!("blobs::{}", kept.layers[0].digest);
    assert!(redis.keys("blobs::*").contains(&kept_key));
    // Killed before its eviction, with a journal too long to list what it swept (past the
    // state file limit, here lowered to 50 bytes).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["gc", "--config", reg.config.to_str().unwrap()])
        .args(["--grace", "0", "-m", "-q"])
        .env("__REGSWEEP_FAULT_KILL_BEFORE_EVICTION", "1")
        .env("__REGSWEEP_FAULT_JOURNAL_LIMIT", "50")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    let journal = reg.root.join(".regsweep.pending-eviction");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&journal).unwrap()).unwrap();
    assert_eq!(j["all"], true, "{j}");
    assert_eq!(head_blob(&reg, "test/app", layer), 200, "the stale claim");
    // The next run evicts every entry first: the stale claim and the kept image's alike.
    let (code, r, err) = gc_config(&reg, &["--break-lock"]);
    assert_eq!(code, 0, "{err}\n{r}");
    let note = (r["errors"].as_array().unwrap().iter())
        .find(|e| e["kind"] == "registry_cache_pending")
        .unwrap_or_else(|| panic!("{r}"));
    let said = note["message"].as_str().unwrap();
    assert!(
        said.contains("every entry") && said.contains("completed"),
        "{note}"
    );
    assert!(!journal.exists());
    assert!(!redis.keys("blobs::*").contains(&kept_key));
    assert_eq!(head_blob(&reg, "test/app", layer), 404);
    reg.pull("test/keep:v1").expect("the kept image pulls");
    reg.push(&oci, "x", "test/app:v1");
    reg.pull("test/app:v1").expect("the re-pushed image pulls");
}
