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
        assert!(err.starts_with("regsweep: error: --s3-endpoint: "), "{err}");
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
