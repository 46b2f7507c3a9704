//! What regsweep prints and writes, on copies of the fixture: one vocabulary of flags, logs,
//! completions, the systemd unit, bounded text reports and every documented JSON field.

use crate::fixture::*;
use crate::testenv::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[test]
fn one_vocabulary_of_flags_across_commands() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let before = blobs_on_disk(&f.v2());
    // `-d` is the reference's short dry run; gc takes it too, and deletes nothing.
    let out = regsweep(&["gc", "-d", "--grace", "0", "--root", root]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("dry run"));
    assert_eq!(blobs_on_disk(&f.v2()), before);
    // `text` is what gc and check call the human format; du's table answers to it too.
    let table = regsweep(&["du", "--root", root, "--format", "table"]);
    let text = regsweep(&["du", "--root", root, "--format", "text"]);
    assert_eq!(
        text.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    assert_eq!(text.stdout, table.stdout);
}

#[test]
fn logs_piped_carry_no_colour_codes_and_more_v_says_more() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let log = |v: &str| {
        let out = regsweep(&[
            "gc",
            v,
            "--dry-run",
            "--grace",
            "0",
            "--no-cache",
            "--root",
            root,
        ]);
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let (one, two) = (log("-v"), log("-vv"));
    // The user format, as the error lines: no timestamp, no module path below -vv.
    assert!(
        one.contains("regsweep: info: ") && !one.contains('\x1b') && !one.contains("regsweep::"),
        "{one}"
    );
    assert!(!two.contains('\x1b'), "{two}");
    assert!(
        two.lines().count() > one.lines().count() && two.contains("regsweep: debug: ["),
        "-vv shows more than -v:\n{two}"
    );
}

#[test]
fn completions_and_a_man_page_are_generated() {
    for (shell, needle) in [
        ("bash", "_regsweep()"),
        ("zsh", "#compdef regsweep"),
        ("fish", "complete -c regsweep"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = regsweep(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(needle) && text.contains("garbage-collect"),
            "{shell}: {text}"
        );
    }
    let out = regsweep(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(
        man.contains(".TH regsweep 1") && man.contains("regsweep\\-garbage\\-collect"),
        "{man}"
    );
}

#[test]
fn the_systemd_unit_runs_as_written() {
    let f = fixture();
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/regsweep-gc.service"),
    )
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words: Vec<String> = exec
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    // The unit's paths, pointed at this test's folders; and a dry run.
    let out = f.tmp.path().to_path_buf();
    for w in words.iter_mut() {
        if w == "/etc/docker/registry/config.yml" {
            *w = f.root.to_str().unwrap().into();
        } else if let Some(name) = w.strip_prefix("/var/lib/") {
            *w = out.join(name.replace('/', "-")).to_str().unwrap().into();
        }
    }
    let at = words.iter().position(|w| w == "--config").unwrap();
    words[at] = "--root".into();
    words.push("--dry-run".into());
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    let run = regsweep(&args);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let metrics = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("regsweep.prom"))
        .expect("the metrics file");
    assert!(
        std::fs::read_to_string(metrics)
            .unwrap()
            .contains("regsweep_")
    );
}

#[test]
fn the_text_report_is_bounded_and_json_keeps_everything() {
    let f = fixture();
    let lw = LayoutWriter::new(&f.root);
    for i in 0..30 {
        lw.blob(&bytes_for(&format!("extra{i}"), 64));
    }
    let root = f.root.to_str().unwrap();
    let text = |extra: &[&str]| {
        let mut args = vec!["gc", "--dry-run", "--grace", "0", "--root", root];
        args.extend_from_slice(extra);
        let out = regsweep(&args);
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let blob_lines = |t: &str| t.lines().filter(|l| l.starts_with("  sha256:")).count();
    let bounded = text(&[]);
    assert_eq!(blob_lines(&bounded), 20, "{bounded}");
    assert!(
        bounded.contains("... and 14 more (all of them: --all"),
        "{bounded}"
    );
    assert_eq!(blob_lines(&text(&["--limit", "5"])), 5);
    let all = text(&["--all"]);
    assert_eq!(blob_lines(&all), 34, "{all}");
    assert!(!all.contains("more (all of them"));
    let (_, json) = gc_json(&f.root, &["--dry-run", "--grace", "0"]);
    assert_eq!(json["blobs_deleted"].as_array().unwrap().len(), 34);
}

#[test]
fn the_text_report_says_what_each_repository_loses_largest_first() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let out = regsweep(&["gc", "--dry-run", "--grace", "0", "-m", "--root", root]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("by repository"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        table.join("\n"),
        "\
by repository (to delete; a blob linked from several repositories counts in each):
  REPOSITORY        TAGS  MANIFESTS  LAYER LINKS   BLOBS       BYTES  UPLOADS
  acme/app             0          2            6       8     6.4 KiB        0
  (no repository)      0          0            0       1       557 B        0",
        "{text}"
    );
    // Bounded like every list: one row, then how many more.
    let out = regsweep(&[
        "gc",
        "--dry-run",
        "--grace",
        "0",
        "-m",
        "--limit",
        "1",
        "--root",
        root,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  acme/app ") && !text.contains("  (no repository) "),
        "{text}"
    );
}

/// docs/REPORTS.md, read as the test reads it: per schema, its fields (`summary.x` for those of
/// `summary`) and whether each is optional.
fn documented_schemas() -> BTreeMap<String, Vec<(String, bool)>> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/REPORTS.md"))
            .unwrap();
    let mut out: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            current = h
                .strip_prefix("`regsweep/")
                .and_then(|s| s.strip_suffix('`'))
                .map(|s| format!("regsweep/{s}"));
            if let Some(c) = &current {
                out.insert(c.clone(), Vec::new());
            }
            continue;
        }
        let (Some(schema), Some(row)) = (&current, line.strip_prefix("| `")) else {
            continue;
        };
        let Some((field, rest)) = row.split_once("` |") else {
            continue;
        };
        out.get_mut(schema)
            .unwrap()
            .push((field.to_string(), rest.contains("*optional*")));
    }
    out
}

/// Top-level fields, and `summary.x` for each field of `summary`.
fn fields_of(report: &serde_json::Value) -> BTreeSet<String> {
    let mut f: BTreeSet<String> = report.as_object().unwrap().keys().cloned().collect();
    if let Some(s) = report["summary"].as_object() {
        f.extend(s.keys().map(|k| format!("summary.{k}")));
    }
    f
}

#[test]
fn every_json_report_has_the_documented_fields() {
    let schemas = documented_schemas();
    assert!(schemas.len() >= 6, "{schemas:?}");
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = regsweep(args);
        assert!(
            out.status.code().is_some_and(|c| c == 0 || c == 3),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    let plan = dir.path().join("plan.json");
    let policy = dir.path().join("policy.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: old\n    tags: ['v1*']\n    delete: {}\n",
    )
    .unwrap();
    let (p, trash) = (policy.to_str().unwrap(), dir.path().join("trash"));
    let mut reports = vec![
        json(&[
            "gc",
            "--root",
            root,
            "--dry-run",
            "-m",
            "--format",
            "json",
            "-q",
            "--report",
            "-",
        ]),
        json(&[
            "gc",
            "--root",
            root,
            "--dry-run",
            "--policy",
            p,
            "--explain",
            "--repository",
            "**",
            "--format",
            "json",
            "-q",
            "--report",
            "-",
        ]),
        json(&[
            "du", "--root", root, "--format", "json", "--top", "1", "--policy", p,
        ]),
        json(&[
            "du", "--root", root, "--format", "json", "--by", "tag", "acme/app",
        ]),
        json(&[
            "check",
            "--root",
            root,
            "--format",
            "json",
            "--verify-digests",
        ]),
        json(&["policy", "check", p, "--format", "json"]),
        json(&[
            "policy",
            "check",
            p,
            "--root",
            root,
            "--format",
            "json",
            "--explain",
        ]),
    ];
    let out = regsweep(&[
        "gc",
        "--root",
        root,
        "--dry-run",
        "-m",
        "--format",
        "json",
        "--report",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    reports.push(json(&["apply", plan.to_str().unwrap(), "--format", "json"]));
    let out = regsweep(&[
        "gc",
        "--root",
        root,
        "--purge-uploads",
        "1s",
        "--trash",
        trash.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    reports.push(json(&[
        "trash",
        "list",
        trash.to_str().unwrap(),
        "--format",
        "json",
    ]));
    let t = trash.to_str().unwrap();
    reports.push(json(&[
        "restore", t, "--all", "--root", root, "--format", "json",
    ]));
    reports.push(json(&[
        "trash",
        "empty",
        t,
        "--older-than",
        "0",
        "--format",
        "json",
    ]));
    let log = dir.path().join("registry.log");
    std::fs::write(
        &log,
        "time=\"2026-12-04T10:00:00Z\" level=info msg=\"response completed\" http.request.method=GET http.request.uri=\"/v2/acme/app/manifests/v2\" http.response.status=200\n",
    )
    .unwrap();
    let ledger = dir.path().join("pulls.db");
    reports.push(json(&[
        "pulls",
        "import",
        "--ledger",
        ledger.to_str().unwrap(),
        "--format",
        "json",
        log.to_str().unwrap(),
    ]));
    // Refused before its report (the registry's Redis cache unreachable): the refusal record.
    let fresh = fixture();
    let config = dir.path().join("redis-config.yml");
    std::fs::write(
        &config,
        format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    blobdescriptor: redis\nredis:\n  addr: 127.0.0.1:1\n", fresh.root.display()),
    )
    .unwrap();
    let refused = dir.path().join("refused.json");
    let out = regsweep(&[
        "gc",
        "--config",
        config.to_str().unwrap(),
        "--grace",
        "0",
        "--format",
        "json",
        "--report",
        refused.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    reports.push(serde_json::from_slice(&std::fs::read(&refused).unwrap()).unwrap());
    // Killed mid-sweep: the record it left before sweeping.
    let unfinished = dir.path().join("unfinished.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["gc", "--root", fresh.root.to_str().unwrap(), "--grace", "0"])
        .args(["--format", "json", "--report", unfinished.to_str().unwrap()])
        .env("__REGSWEEP_FAULT_KILL_AFTER", "0")
        .output()
        .unwrap();
    assert!(out.status.code().is_none(), "{out:?}");
    reports.push(serde_json::from_slice(&std::fs::read(&unfinished).unwrap()).unwrap());
    // Not covered (one line, two days old): exit 1, the same report.
    let status = regsweep(&[
        "pulls",
        "status",
        "--ledger",
        ledger.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(status.status.code(), Some(1));
    reports.push(serde_json::from_slice(&status.stdout).unwrap());

    let mut seen = BTreeSet::new();
    for r in &reports {
        let schema = r["schema"].as_str().unwrap().to_string();
        let doc = schemas
            .get(&schema)
            .unwrap_or_else(|| panic!("{schema} is not documented in docs/REPORTS.md"));
        let have = fields_of(r);
        for (field, optional) in doc {
            assert!(
                *optional || have.contains(field),
                "{schema}: documented field {field} is missing\n{r}"
            );
        }
        let documented: BTreeSet<&String> = doc.iter().map(|(f, _)| f).collect();
        for field in &have {
            assert!(
                documented.contains(field),
                "{schema}: field {field} is not documented in docs/REPORTS.md"
            );
        }
        assert_eq!(r["tool"], "regsweep");
        assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
        assert!(r["summary"].is_object() && r.get("root").is_some());
        seen.insert(schema);
    }
    let documented: BTreeSet<String> = schemas.keys().cloned().collect();
    assert_eq!(seen, documented, "every documented schema is tried");
    // Every finding says what it is about, as a documented word.
    let check = &reports[4];
    let kinds: BTreeSet<&str> = (check["findings"].as_array().unwrap().iter())
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains("unused_layer_link"), "{check}");
}

#[test]
fn a_quiet_run_that_cannot_write_its_metrics_says_so_on_stderr() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let missing = f.root.join("no-such-folder/regsweep.prom");
    let out = regsweep(&[
        "gc",
        "--root",
        root,
        "--dry-run",
        "-q",
        "--metrics",
        missing.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains(missing.to_str().unwrap()) && err.contains("cannot write the metrics"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn check_text_is_bounded_like_gc_and_names_each_finding_kind() {
    let f = fixture();
    let lw = LayoutWriter::new(&f.root);
    let layers = f
        .root
        .join("docker/registry/v2/repositories/acme/app/_layers/sha256");
    for i in 0..25 {
        // Linked into the repository, used by no manifest of it: a notice each.
        let d = lw.blob(&bytes_for(&format!("unused{i}"), 64));
        std::fs::create_dir_all(layers.join(&d[7..])).unwrap();
        std::fs::write(layers.join(&d[7..]).join("link"), &d).unwrap();
    }
    let root = f.root.to_str().unwrap();
    let text = |extra: &[&str]| {
        let mut args = vec!["check", "--root", root];
        args.extend_from_slice(extra);
        let out = regsweep(&args);
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = |t: &str| {
        t.lines()
            .filter(|l| l.ends_with("[unused_layer_link]"))
            .count()
    };
    let bounded = text(&[]);
    assert!(
        bounded.contains("  notices   29 leftover or foreign entries"),
        "{bounded}"
    );
    let shown = bounded.lines().filter(|l| l.starts_with("  /")).count();
    assert_eq!(shown, 20, "{bounded}");
    assert!(
        bounded.contains("... and 9 more (all of them: --all"),
        "{bounded}"
    );
    let all = text(&["--all"]);
    assert_eq!(listed(&all), 28, "{all}");
    assert!(all.contains("[abandoned_upload]"), "{all}");
    assert_eq!(listed(&text(&["--limit", "3"])), 3);
}
