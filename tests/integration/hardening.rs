//! The second round of data safety: configs judged as the registry judges them, the manifest
//! cache as an attack surface, odd keys on a bucket, and a record that says what happened.

use crate::fixture::fixture;
use crate::testenv::*;
use std::process::Command;

/// Runs the reference `garbage-collect --dry-run` on a config: does the registry accept it?
fn registry_accepts(config: &std::path::Path) -> bool {
    Command::new("docker-registry")
        .args(["garbage-collect", "--dry-run"])
        .arg(config)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("docker-registry not found: run scripts/test.sh")
        .status
        .success()
}

#[test]
fn configs_are_refused_exactly_where_the_registry_refuses_them() {
    let f = fixture();
    let root = f.root.display().to_string();
    let other = f.tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let cases: Vec<(&str, String)> = vec![
        (
            "valid",
            format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"),
        ),
        (
            "with a cache and delete",
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  cache:\n    blobdescriptor: inmemory\n  delete:\n    enabled: true\n"
            ),
        ),
        (
            "rootdirectory one level too shallow",
            format!("version: 0.1\nstorage:\n  filesystem:\n  rootdirectory: {root}\n"),
        ),
        (
            "two drivers",
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  s3:\n    bucket: b\n    region: us-east-1\n"
            ),
        ),
        (
            "an unknown driver",
            "version: 0.1\nstorage:\n  filesytem:\n    rootdirectory: /srv\n".to_string(),
        ),
        (
            "no version",
            format!("storage:\n  filesystem:\n    rootdirectory: {root}\n"),
        ),
        (
            "another version",
            format!("version: 0.2\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"),
        ),
        (
            "no storage",
            "version: 0.1\nhttp:\n  addr: :5000\n".to_string(),
        ),
        (
            "a list as the storage",
            "version: 0.1\nstorage: [filesystem]\n".to_string(),
        ),
    ];
    let config = f.tmp.path().join("config.yml");
    for (what, text) in &cases {
        std::fs::write(&config, text).unwrap();
        let verdict = registry_accepts(&config);
        let out = regsweep(&[
            "gc",
            "--dry-run",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.success(),
            verdict,
            "{what}: the registry {} it, regsweep exited {:?}: {err}",
            if verdict { "accepts" } else { "refuses" },
            out.status.code()
        );
        if !verdict {
            assert_eq!(out.status.code(), Some(1), "{what}: {err}");
            assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
            assert!(err.contains(config.to_str().unwrap()), "{what}: {err}");
            assert!(!err.contains("panicked"), "{what}: {err}");
        }
    }
}

#[test]
fn endpoints_without_a_scheme_are_refused_in_one_line_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    for endpoint in [
        "127.0.0.1:5070",
        "http://h:99999",
        "http://[::1",
        "http:// h",
        "ftp://h",
    ] {
        let out = regsweep(&[
            "gc",
            "--dry-run",
            "--root",
            "s3://b/p",
            "--s3-endpoint",
            endpoint,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{endpoint}: {err}");
        // The flag is --endpoint now; --s3-endpoint is its alias.
        assert!(err.starts_with("regsweep: error: --endpoint: "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        std::fs::write(
            &config,
            format!("version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: us-east-1\n    regionendpoint: \"{endpoint}\"\n"),
        )
        .unwrap();
        let out = regsweep(&["du", "--config", config.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{endpoint}: {err}");
        assert!(
            err.contains("regionendpoint") && err.contains("config.yml"),
            "{err}"
        );
        // The crate's own environment variable is checked too.
        let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
            .args(["check", "--root", "s3://b/p"])
            .env("AWS_ENDPOINT", endpoint)
            .env("AWS_ACCESS_KEY_ID", "k")
            .env("AWS_SECRET_ACCESS_KEY", "s")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{endpoint}: {err}");
        assert!(
            err.contains("endpoint") && !err.contains("panicked"),
            "{err}"
        );
    }
}

/// Rewrites the cache file's entry for `target` to reference nothing, with a valid trailer:
/// what anyone who can write the file could do.
fn forge_cache(path: &std::path::Path, target: &str) {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).unwrap();
    let body = &bytes[..bytes.len() - 32];
    let vlen = u32::from_le_bytes(body[8..12].try_into().unwrap()) as usize;
    let head_len = 12 + vlen + 8;
    let n = u64::from_le_bytes(body[12 + vlen..head_len].try_into().unwrap());
    let target = hex_bytes(target.strip_prefix("sha256:").unwrap());
    let mut out = body[..head_len].to_vec();
    let mut at = head_len;
    let mut forged = false;
    for _ in 0..n {
        let start = at;
        at += 32;
        for _ in 0..2 {
            let k = u32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as usize;
            at += 4 + 32 * k;
        }
        for _ in 0..2 {
            at += if body[at] == 1 { 33 } else { 1 };
        }
        if body[start..start + 32] == target[..] {
            out.extend_from_slice(&body[start..start + 32]);
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            forged = true;
        } else {
            out.extend_from_slice(&body[start..at]);
        }
    }
    assert!(forged, "the entry is in the cache");
    let sum = sha2::Sha256::digest(&out);
    out.extend_from_slice(&sum);
    std::fs::write(path, out).unwrap();
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_forged_manifest_cache_entry_is_caught_and_deletes_nothing_kept() {
    let f = fixture();
    let cache = f.tmp.path().join("cache/manifests.bin");
    let cache_arg = cache.to_str().unwrap();
    let (code, honest) = gc_json(
        &f.root,
        &["--dry-run", "--grace", "0", "--cache", cache_arg],
    );
    assert_eq!(code, 0, "{honest}");
    let tag = f
        .root
        .join("docker/registry/v2/repositories/acme/app/_manifests/tags/v2/current/link");
    let target = std::fs::read_to_string(tag).unwrap();
    forge_cache(&cache, target.trim());
    let (code, real) = gc_json(&f.root, &["--grace", "0", "--cache", cache_arg]);
    assert_eq!(code, 0, "{real}");
    assert_eq!(
        deleted_blobs(&real),
        deleted_blobs(&honest),
        "the forgery changed nothing"
    );
    let on_disk = blobs_on_disk(&f.v2());
    assert!(f.kept.is_subset(&on_disk), "every kept blob is still there");
    // Rebuilt honestly by that run (or dropped): a new run trusts it and plans the same.
    let (_, again) = gc_json(
        &f.root,
        &["--dry-run", "--grace", "0", "--cache", cache_arg],
    );
    assert!(deleted_blobs(&again).is_empty(), "{again}");
}

#[test]
fn a_cache_path_that_is_not_a_regsweep_cache_is_refused_and_left_alone() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let notes = f.tmp.path().join("notes.txt");
    std::fs::write(&notes, "not a cache").unwrap();
    let fifo = f.tmp.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (path, why) in [
        (notes.as_path(), "not a regsweep manifest cache"),
        (std::path::Path::new("/dev/zero"), "not a regular file"),
        (fifo.as_path(), "not a regular file"),
    ] {
        // A FIFO would block an open that waits for a writer: the run must end by itself.
        let out = regsweep(&[
            "gc",
            "--dry-run",
            "--root",
            root,
            "--cache",
            path.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", path.display());
        assert!(
            err.contains(why) && err.contains(path.to_str().unwrap()),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(std::fs::read(&notes).unwrap(), b"not a cache");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata("/dev/zero")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn a_run_the_safety_net_refused_reports_zero_deleted_and_what_it_would_have() {
    let f = fixture();
    let policy = f.tmp.path().join("all.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules: [{name: all, tags: [\"*\"], delete: {}}]\n",
    )
    .unwrap();
    let metrics = f.tmp.path().join("m.prom");
    let before = blobs_on_disk(&f.v2());
    let (code, r) = gc_json(
        &f.root,
        &[
            "-m",
            "--grace",
            "0",
            "--policy",
            policy.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{r}");
    assert_eq!(blobs_on_disk(&f.v2()), before, "nothing deleted");
    let s = &r["summary"];
    assert_eq!(r["refused_by_safety_net"], true);
    for field in [
        "tags_deleted",
        "manifests_deleted",
        "layer_links_deleted",
        "blobs_deleted",
        "bytes_freed",
        "items_removed",
    ] {
        assert_eq!(s[field], 0, "{field}: {s}");
    }
    assert_eq!(s["would_delete"]["tags"], 5, "{s}");
    assert_eq!(
        s["would_delete"]["blobs"].as_u64(),
        Some(before.len() as u64),
        "{s}"
    );
    let m = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        m.contains("regsweep_bytes_freed{command=\"gc\"} 0\n"),
        "{m}"
    );
    assert!(
        m.contains("regsweep_deleted{command=\"gc\",kind=\"blobs\"} 0\n"),
        "{m}"
    );
    assert!(m.contains("regsweep_refused{command=\"gc\"} 1\n"), "{m}");
    assert!(
        m.contains(&format!(
            "regsweep_planned{{command=\"gc\",kind=\"blobs\"}} {}\n",
            before.len()
        )),
        "{m}"
    );
    let out = regsweep(&[
        "gc",
        "-m",
        "--grace",
        "0",
        "--root",
        f.root.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("regsweep gc (refused by the policy's safety net: nothing deleted)"),
        "{text}"
    );
    assert!(
        text.contains("  would delete   5 tags,") && !text.contains("  deleted  "),
        "{text}"
    );
}

/// A tmpfs of 64 KiB, filled: as full as a disk gets. Needs root (CI and the test machines run
/// as root); `None` elsewhere.
struct FullDisk(std::path::PathBuf);

impl FullDisk {
    fn mount(at: &std::path::Path) -> Option<FullDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| FullDisk(at.to_path_buf()))
    }

    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", self.0.join("fill").display()))
            .output();
    }

    fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n != "fill")
            .collect()
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn metrics_on_a_full_disk_fail_aloud_leave_no_temp_file_and_never_hide_a_sweep() {
    let f = fixture();
    let Some(full) = FullDisk::mount(&f.tmp.path().join("full")) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    full.fill();
    let prom = full.0.join("m.prom");
    let root = f.root.to_str().unwrap();
    let before = blobs_on_disk(&f.v2());
    // A dry run: says why on stderr, exit 1, no temporary file left.
    let out = regsweep(&[
        "gc",
        "--dry-run",
        "--quiet",
        "--root",
        root,
        "--metrics",
        prom.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write the metrics") && err.contains("m.prom"),
        "{err}"
    );
    assert_eq!(full.leftovers(), Vec::<String>::new());
    // A real run: refused before anything is deleted (an empty file could still be created).
    let out = regsweep(&[
        "gc",
        "-m",
        "--grace",
        "0",
        "--quiet",
        "--root",
        root,
        "--metrics",
        prom.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("m.prom"), "{err}");
    assert_eq!(blobs_on_disk(&f.v2()), before, "nothing deleted");
    assert_eq!(full.leftovers(), Vec::<String>::new());
    // The disk fills between the check and the sweep: the sweep's record goes to stderr.
    std::fs::remove_file(full.0.join("fill")).unwrap();
    let go = f.tmp.path().join("go");
    let mut child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args([
            "gc",
            "--grace",
            "0",
            "--quiet",
            "--root",
            root,
            "--metrics",
            prom.to_str().unwrap(),
        ])
        .env("__REGSWEEP_FAULT_PAUSE", &go)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ready = f.tmp.path().join("go.ready");
    while !ready.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "gc ended before its pause"
        );
        std::thread::yield_now();
    }
    full.fill();
    std::fs::write(&go, "").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write the metrics"), "{err}");
    assert!(
        err.contains("the sweep went ahead") && err.contains("blobs deleted:"),
        "{err}"
    );
    assert!(blobs_on_disk(&f.v2()).len() < before.len(), "it did sweep");
    assert_eq!(full.leftovers(), Vec::<String>::new());
}

#[test]
fn keys_with_percent_or_non_ascii_names_are_read_under_exactly_that_name() {
    let mut reg = Registry::start_s3();
    let mut oci = reg.new_oci();
    let img = oci.image(&[("odd-keys", 400)], "amd64", "2024-01-01T00:00:00Z");
    oci.tag(&img.manifest, "v1");
    reg.push(&oci, "v1", "test/app:v1");
    let tags = format!("{S3_PREFIX}/docker/registry/v2/repositories/test/app/_manifests/tags");
    for name in ["pct%2Ftag", "uni\u{fc}"] {
        (reg.s3.as_ref().unwrap()).put(
            &format!("{tags}/{name}/current/link"),
            img.manifest.digest.as_bytes(),
        );
    }
    let keys = reg.s3.as_ref().unwrap().keys(&format!("{tags}/"));
    assert!(
        keys.contains(&format!("{tags}/pct%2Ftag/current/link")),
        "{keys:?}"
    );
    let out = regsweep(&[
        "check",
        "--config",
        reg.config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let findings = report["findings"].as_array().unwrap();
    let about = |name: &str| -> Vec<&serde_json::Value> {
        findings
            .iter()
            .filter(|f| f["path"].as_str().unwrap_or("").contains(name))
            .collect()
    };
    for f in findings {
        let m = f["message"].as_str().unwrap_or("");
        assert!(
            !m.contains("404")
                && !m.contains("NoSuchKey")
                && !m.contains("%25")
                && !m.contains("%C3"),
            "read under another name: {f}"
        );
    }
    // The names the registry would not write are reported as such, under the listed name.
    assert!(!about("pct%2Ftag").is_empty(), "{report}");
    assert!(!about("uni\u{fc}").is_empty(), "{report}");
    for name in ["pct%2Ftag", "uni\u{fc}"] {
        assert!(
            about(name).iter().all(|f| f["kind"] == "invalid_tag_name"),
            "{name}: {report}"
        );
    }
    // And a gc leaves them (and the image) alone.
    let (code, r) = gc_json_config(&reg, &["-m", "--grace", "0"]);
    assert_eq!(code, 0, "{r}");
    reg.pull("test/app:v1").expect("pulls");
    assert_eq!(reg.s3.as_ref().unwrap().keys(&format!("{tags}/")), keys);
}

fn gc_json_config(reg: &Registry, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec![
        "gc",
        "--config",
        reg.config.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
        "--report",
        "-",
    ];
    args.extend_from_slice(extra);
    let out = regsweep(&args);
    let code = out.status.code().unwrap_or(-1);
    (
        code,
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr))),
    )
}

#[test]
fn a_sweep_given_only_a_root_says_the_registry_cache_may_need_a_restart() {
    let f = fixture();
    let (code, r) = gc_json(&f.root, &["--grace", "0"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["registry"]["cache"], "unknown", "{r}");
    let notice = (r["errors"].as_array().unwrap().iter())
        .find(|e| e["kind"] == "registry_cache_unknown")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(notice["severity"], "notice");
    assert!(
        notice["message"].as_str().unwrap().contains("restart"),
        "{notice}"
    );
    // Nothing swept, nothing to say.
    let (_, again) = gc_json(&f.root, &["--grace", "0"]);
    assert!(
        !again.to_string().contains("registry_cache_unknown"),
        "{again}"
    );
}
