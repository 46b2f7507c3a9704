//! du and check against independent computations, planted damage, and output snapshots.

use crate::fixture::fixture;
use crate::testenv::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

fn du_json(root: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["du", "--root", root.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    let out = regsweep(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A tiny deterministic generator, so the layout is the same every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn du_sizes_match_an_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let w = LayoutWriter::new(&root);
    let mut rng = Lcg(7);
    // A pool of shared base layers; each image takes some of them and one layer of its own.
    let pool: Vec<Vec<u8>> = (0..6)
        .map(|i| bytes_for(&format!("base{i}"), 1000 + 100 * i))
        .collect();
    let repos = ["acme/api", "acme/web", "tools/ci", "solo"];
    // repo -> (every blob its revisions reach, blobs its tags reach)
    let mut all: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let mut tagged: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut n = 0;
    for repo in repos {
        for i in 0..5 {
            n += 1;
            let mut layers: Vec<Vec<u8>> = (0..2)
                .map(|_| pool[rng.next(pool.len() as u64) as usize].clone())
                .collect();
            if repo == "solo" {
                layers.clear();
            }
            layers.push(bytes_for(&format!("own{n}"), 500 + 10 * n));
            layers.dedup();
            let tag = (i % 2 == 0).then(|| format!("t{i}"));
            let img = w.image(repo, tag.as_deref(), &layers);
            all.entry(repo)
                .or_default()
                .extend(img.blobs.iter().cloned());
            if tag.is_some() {
                tagged
                    .entry(repo)
                    .or_default()
                    .extend(img.blobs.iter().map(|(d, _)| d.clone()));
            }
        }
    }
    let dangling = w.blob(&bytes_for("dangling", 4321));
    age_tree(&root, Duration::from_secs(3 * 86_400));

    let report = du_json(&root, &["--sort", "name"]);
    let rows = report["repositories"].as_array().unwrap();
    assert_eq!(rows.len(), repos.len());
    let tagged_anywhere: BTreeSet<&String> = tagged.values().flatten().collect();
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let mine = &all[name];
        let others: BTreeSet<&String> = all
            .iter()
            .filter(|(r, _)| **r != name)
            .flat_map(|(_, b)| b.keys())
            .collect();
        let bytes: u64 = mine.values().sum();
        let exclusive: u64 = mine
            .iter()
            .filter(|(d, _)| !others.contains(d))
            .map(|(_, s)| s)
            .sum();
        let untagged: u64 = mine
            .iter()
            .filter(|(d, _)| !tagged_anywhere.contains(d))
            .map(|(_, s)| s)
            .sum();
        assert_eq!(row["blobs"], mine.len(), "{name}");
        assert_eq!(row["bytes"], bytes, "{name}");
        assert_eq!(row["exclusive_bytes"], exclusive, "{name}");
        assert_eq!(row["shared_bytes"], bytes - exclusive, "{name}");
        assert_eq!(row["untagged_bytes"], untagged, "{name}");
        assert_eq!(row["tags"], 3);
        assert_eq!(row["manifests"], 5);
    }
    let store: BTreeMap<&String, u64> = all.values().flatten().map(|(d, s)| (d, *s)).collect();
    let total = &report["summary"];
    assert_eq!(total["blobs"], store.len() + 1);
    assert_eq!(total["bytes"], store.values().sum::<u64>() + 4321);
    assert_eq!(
        total["reclaimable_bytes"], 4321,
        "only the dangling blob {dangling}"
    );
    let untagged_total: u64 = store
        .iter()
        .filter(|(d, _)| !tagged_anywhere.contains(*d))
        .map(|(_, s)| s)
        .sum();
    assert_eq!(total["reclaimable_untagged_bytes"], untagged_total + 4321);
    assert!(total["allocated_bytes"].as_u64().unwrap() >= total["bytes"].as_u64().unwrap() / 2);

    // The generated layout is one the registry serves, and its own GC agrees on the garbage.
    let reg = Registry::serve(&root);
    for repo in repos {
        reg.pull(&format!("{repo}:t0"))
            .unwrap_or_else(|e| panic!("{repo}:t0: {e}"));
    }
    assert_eq!(reg.reference_gc_dry_run(), [dangling].into_iter().collect());
}

#[test]
fn du_by_tag_counts_exclusive_bytes_within_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let w = LayoutWriter::new(&tmp.path().join("root"));
    let base = bytes_for("base", 3000);
    let a = w.image("r", Some("a"), &[base.clone(), bytes_for("a", 100)]);
    let b = w.image("r", Some("b"), &[base.clone(), bytes_for("b", 200)]);
    let report = du_json(
        &tmp.path().join("root"),
        &["--by", "tag", "r", "--sort", "name"],
    );
    let tags = report["tags"].as_array().unwrap();
    let sum = |x: &Written| x.blobs.iter().map(|(_, s)| s).sum::<u64>();
    assert_eq!(tags[0]["tag"], "a");
    assert_eq!(tags[0]["bytes"], sum(&a));
    assert_eq!(tags[0]["exclusive_bytes"], sum(&a) - 3000);
    assert_eq!(tags[1]["bytes"], sum(&b));
    assert_eq!(tags[1]["exclusive_bytes"], sum(&b) - 3000);
    let out = regsweep(&[
        "du",
        "--root",
        tmp.path().join("root").to_str().unwrap(),
        "--by",
        "tag",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

/// Every finding of `check --format json` as (severity, path).
fn findings(root: &Path, extra: &[&str]) -> (i32, BTreeSet<(String, String)>) {
    let mut args = vec![
        "check",
        "--root",
        root.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = regsweep(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let set = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (out.status.code().unwrap(), set)
}

#[test]
fn check_finds_each_planted_damage_exactly_once() {
    let clean = fixture();
    let (code, baseline) = findings(&clean.root, &["--verify-digests"]);
    assert_eq!(code, 0, "{baseline:?}");
    assert!(baseline.iter().all(|(s, _)| s == "notice"), "{baseline:?}");
    assert_eq!(
        baseline.len(),
        4,
        "3 unused layer links and an upload: {baseline:?}"
    );

    type Plant = Box<dyn Fn(&crate::fixture::Fixture) -> std::path::PathBuf>;
    let cli_layer = |f: &crate::fixture::Fixture| {
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(f.blob_data(&f.tag_target("acme/tools/cli", "1.0"))).unwrap(),
        )
        .unwrap();
        m["layers"][1]["digest"].as_str().unwrap().to_string()
    };
    let plants: Vec<(&str, &str, Plant)> = vec![
        (
            "a layer's data is gone",
            "damage",
            Box::new(move |f| {
                let p = f.blob_data(&cli_layer(f));
                std::fs::remove_file(&p).unwrap();
                p
            }),
        ),
        (
            "a layer link is gone",
            "damage",
            Box::new(move |f| {
                let d = cli_layer(f);
                let dir = f.repo("acme/tools/cli/_layers/sha256").join(&d[7..]);
                std::fs::remove_dir_all(&dir).unwrap();
                dir.join("link")
            }),
        ),
        (
            "an index child has no revision link",
            "damage",
            Box::new(|f| {
                let index: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(f.blob_data(&f.tag_target("library/multi", "latest"))).unwrap(),
                )
                .unwrap();
                let child = index["manifests"][0]["digest"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let dir = f
                    .repo("library/multi/_manifests/revisions/sha256")
                    .join(&child[7..]);
                std::fs::remove_file(dir.join("link")).unwrap();
                std::fs::remove_dir(&dir).unwrap();
                dir.join("link")
            }),
        ),
        (
            "an empty tag link",
            "blocking",
            Box::new(|f| {
                let p = f.repo("acme/tools/cli/_manifests/tags/1.0/current/link");
                std::fs::write(&p, "").unwrap();
                p
            }),
        ),
        (
            "a garbage layer link",
            "damage",
            Box::new(move |f| {
                let d = cli_layer(f);
                let p = f
                    .repo("acme/tools/cli/_layers/sha256")
                    .join(&d[7..])
                    .join("link");
                std::fs::write(&p, "sha256:xyz").unwrap();
                p
            }),
        ),
        (
            "a manifest that is not JSON",
            "blocking",
            Box::new(|f| {
                let p = f.blob_data(&f.tag_target("acme/tools/cli", "1.0"));
                // Same bytes but one: still not JSON, and --verify-digests reports it once more.
                std::fs::write(&p, "{").unwrap();
                p
            }),
        ),
        (
            "a blob whose content does not match its name",
            "damage",
            Box::new(move |f| {
                let p = f.blob_data(&cli_layer(f));
                let mut bytes = std::fs::read(&p).unwrap();
                bytes[100] ^= 1;
                std::fs::write(&p, bytes).unwrap();
                p
            }),
        ),
        (
            "a file foreign to the layout",
            "notice",
            Box::new(|f| {
                let p = f.v2().join("repositories/README.txt");
                std::fs::write(&p, "hello").unwrap();
                p
            }),
        ),
        (
            "an empty repository folder",
            "notice",
            Box::new(|f| {
                let p = f.v2().join("repositories/old");
                std::fs::create_dir_all(p.join("team/app")).unwrap();
                p
            }),
        ),
    ];
    for (what, severity, plant) in plants {
        let f = fixture();
        let path = plant(&f);
        let (code, found) = findings(&f.root, &["--verify-digests"]);
        let clean_paths: BTreeSet<(String, String)> = baseline
            .iter()
            .map(|(s, p)| {
                (
                    s.clone(),
                    p.replace(clean.root.to_str().unwrap(), f.root.to_str().unwrap()),
                )
            })
            .collect();
        let mut new: Vec<_> = found.difference(&clean_paths).cloned().collect();
        if what == "a manifest that is not JSON" {
            // The same file also fails its digest: one finding per check, on the one path.
            new.dedup_by(|a, b| a.1 == b.1);
        }
        assert_eq!(
            new,
            vec![(severity.to_string(), path.to_str().unwrap().to_string())],
            "{what}: {found:?}"
        );
        assert_eq!(code, if severity == "notice" { 0 } else { 3 }, "{what}");
        // Quiet, as from cron: nothing on stdout, and damage still gets its one line.
        for cmd in ["check", "du"] {
            let mut args = vec![cmd, "--quiet", "--root", f.root.to_str().unwrap()];
            if cmd == "check" {
                args.push("--verify-digests");
            }
            let out = regsweep(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.stdout.is_empty(), "{cmd} {what}");
            if cmd == "check" || severity == "notice" {
                assert_eq!(out.status.code(), Some(code), "{cmd} {what}");
            }
            let said = err.lines().filter(|l| l.contains("damage found")).count();
            assert_eq!(
                said,
                usize::from(out.status.code() == Some(3)),
                "{cmd} {what}: {err}"
            );
        }
    }
}

fn normalize(text: &str, root: &Path) -> String {
    let mut out = text.replace(root.to_str().unwrap(), "<root>");
    // Allocation depends on the filesystem; everything else in these outputs is fixed.
    let re =
        regex::Regex::new(r#"\([0-9.]+ [KMG]?i?B on disk\)|"allocated_bytes": [0-9]+"#).unwrap();
    out = re.replace_all(&out, "<allocated>").into_owned();
    // So do the run's times and the tool's version.
    let re = regex::Regex::new(r#""(started_at|finished_at|version)": "[^"]*""#).unwrap();
    re.replace_all(&out, r#""$1": "<$1>""#).into_owned()
}

/// Compares with `tests/snapshots/NAME`; `UPDATE_SNAPSHOTS=1` rewrites it.
fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
    assert_eq!(
        actual, expected,
        "{name} changed; UPDATE_SNAPSHOTS=1 rewrites it after review"
    );
}

#[test]
fn du_output_snapshots() {
    let f = fixture();
    let table = regsweep(&["du", "--root", f.root.to_str().unwrap()]);
    snapshot(
        "du-table.txt",
        &normalize(&String::from_utf8_lossy(&table.stdout), &f.root),
    );
    let json = regsweep(&["du", "--root", f.root.to_str().unwrap(), "--format", "json"]);
    snapshot(
        "du.json",
        &normalize(&String::from_utf8_lossy(&json.stdout), &f.root),
    );
    let csv = regsweep(&[
        "du",
        "--root",
        f.root.to_str().unwrap(),
        "--format",
        "csv",
        "--top",
        "2",
    ]);
    snapshot("du.csv", &String::from_utf8_lossy(&csv.stdout));
    // --top in JSON too: the first N, and the rest summed apart, so totals still add up.
    let top_json = regsweep(&[
        "du",
        "--root",
        f.root.to_str().unwrap(),
        "--format",
        "json",
        "--top",
        "1",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&top_json.stdout).unwrap();
    assert_eq!(v["repositories"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["others"]["name"], "(2 more)", "{v}");
    let all: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let sum: u64 = all["repositories"].as_array().unwrap()[1..]
        .iter()
        .map(|r| r["exclusive_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(v["others"]["exclusive_bytes"], sum, "{v}");
    let top = regsweep(&[
        "du",
        "--root",
        f.root.to_str().unwrap(),
        "--top",
        "1",
        "--sort",
        "exclusive",
    ]);
    snapshot(
        "du-top1.txt",
        &normalize(&String::from_utf8_lossy(&top.stdout), &f.root),
    );
}

#[test]
fn metrics_files_for_the_textfile_collector() {
    let f = fixture();
    let m = f.tmp.path().join("regsweep.prom");
    for args in [
        vec!["du", "--metrics"],
        vec!["check", "--metrics"],
        vec!["gc", "--dry-run", "--quiet", "--metrics"],
    ] {
        let mut a = args.clone();
        a.push(m.to_str().unwrap());
        a.extend_from_slice(&["--root", f.root.to_str().unwrap()]);
        let out = regsweep(&a);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&m).unwrap();
        let cmd = args[0];
        assert!(
            text.contains(&format!(
                "regsweep_last_run_timestamp_seconds{{command=\"{cmd}\"}}"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("regsweep_damage_findings{{command=\"{cmd}\"}} 0")),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("not a sample: {line}"));
        }
    }
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(
        text.contains("regsweep_deleted{command=\"gc\",kind=\"blobs\"} 4"),
        "{text}"
    );
    let out = regsweep(&[
        "du",
        "--metrics",
        m.to_str().unwrap(),
        "--root",
        f.root.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(
        text.contains("regsweep_repository_bytes{command=\"du\",repository=\"acme/app\"}"),
        "{text}"
    );
    assert!(
        text.contains("regsweep_reclaimable_bytes{command=\"du\",mode=\"gc\"} 3637"),
        "{text}"
    );
}
