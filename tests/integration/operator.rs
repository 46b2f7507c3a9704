//! An operator's first month (#22): messages that name the cause and the next step, one
//! meaning per flag, the drop-in's bool forms against the reference's, man pages and units.

use crate::fixture::fixture;
use crate::testenv::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs regsweep as an unprivileged user (nobody, when the tests run as root), with HOME set.
fn unprivileged(args: &[&str], home: &Path) -> Output {
    let root = Command::new("id").arg("-u").output().unwrap();
    let mut cmd = if text(&root.stdout).trim() == "0" {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        c.arg(env!("CARGO_BIN_EXE_regsweep"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_regsweep"))
    };
    cmd.args(args)
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("CACHE_DIRECTORY")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Opens every folder of the tree to everyone (read and enter) and the files to reading.
fn open_to_all(p: &Path) {
    for e in walkdir::WalkDir::new(p) {
        let e = e.unwrap();
        chmod(e.path(), if e.file_type().is_dir() { 0o755 } else { 0o644 });
    }
}

fn fs_config(dir: &Path, root: &Path) -> std::path::PathBuf {
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            root.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn unreadable_is_said_to_be_unreadable_and_du_exits_as_check() {
    let f = fixture();
    open_to_all(f.tmp.path());
    let home = f.tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    chmod(&home, 0o777);
    let root = f.root.to_str().unwrap();

    // A root of mode 700 read by another user: permission denied, not "not a registry".
    chmod(&f.root, 0o700);
    let out = unprivileged(&["du", "--root", root], &home);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("permission denied") && !err.contains("not a registry"),
        "{err}"
    );
    chmod(&f.root, 0o755);

    // Its lock cannot be written: said so, with no advice to remove a file that is not there.
    let out = unprivileged(&["gc", "--root", root, "--no-cache"], &home);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot open the lock file: permission denied;") && !err.contains("remove"),
        "{err}"
    );

    // One unreadable repository: du and check name the same damage and both exit 3.
    chmod(&f.repo("acme"), 0o700);
    let du = unprivileged(&["du", "--root", root, "--format", "json"], &home);
    let check = unprivileged(&["check", "--root", root, "--format", "json"], &home);
    assert_eq!(du.status.code(), Some(3), "{}", text(&du.stderr));
    assert_eq!(check.status.code(), Some(3), "{}", text(&check.stderr));
    let du: serde_json::Value = serde_json::from_slice(&du.stdout).unwrap();
    let check: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(du["summary"]["damage_findings"], 1, "{du}");
    assert_eq!(check["summary"]["damage"], 1, "{check}");
    let table = unprivileged(&["du", "--root", root], &home);
    assert!(
        text(&table.stdout).contains("damage     1 finding: "),
        "{}",
        text(&table.stdout)
    );
}

#[test]
fn a_cache_that_cannot_be_written_is_one_warning_in_the_user_format() {
    let f = fixture();
    open_to_all(f.tmp.path());
    let home = f.tmp.path().join("home");
    std::fs::create_dir_all(home.join(".cache/regsweep")).unwrap();
    chmod(&home, 0o777);
    chmod(&home.join(".cache"), 0o777);
    // The cache folder exists and is not the user's to write.
    chmod(&home.join(".cache/regsweep"), 0o555);
    let out = unprivileged(&["du", "--root", f.root.to_str().unwrap()], &home);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "once: {err}");
    assert!(
        lines[0].starts_with("regsweep: warning: ")
            && lines[0].contains(".cache/regsweep/manifests-")
            && lines[0].contains("cannot write the manifest cache (Permission denied)")
            && lines[0].contains("--cache FILE")
            && lines[0].contains("--no-cache"),
        "{err}"
    );
    assert!(
        !err.contains("WARN") && !err.contains("regsweep::"),
        "{err}"
    );
}

#[test]
fn quiet_means_nothing_on_stdout_for_every_command() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let m = f.tmp.path().join("m.prom");
    let plan = f.tmp.path().join("plan.json");
    let made = regsweep(&[
        "gc",
        "--root",
        root,
        "-n",
        "--format",
        "json",
        "--report",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(made.status.code(), Some(0));
    let cfg = fs_config(f.tmp.path(), &f.root);
    for args in [
        vec!["gc", "-n", "--root", root, "--quiet"],
        vec![
            "du",
            "--root",
            root,
            "--quiet",
            "--metrics",
            m.to_str().unwrap(),
        ],
        vec!["du", "--root", root, "-q", "--format", "json"],
        vec!["check", "--root", root, "--quiet"],
        vec!["apply", plan.to_str().unwrap(), "--quiet"],
        vec![
            "garbage-collect",
            "--dry-run",
            "--quiet",
            cfg.to_str().unwrap(),
        ],
    ] {
        let out = regsweep(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
    // What a file was asked for is still written.
    assert!(std::fs::read_to_string(&m).unwrap().contains("regsweep_"));
}

#[test]
fn the_drop_in_takes_the_bool_forms_the_reference_takes() {
    let f = fixture();
    let cfg = fs_config(f.tmp.path(), &f.root);
    let cfg = cfg.to_str().unwrap();
    let truthy = ["1", "t", "T", "TRUE", "true", "True"];
    let falsy = ["0", "f", "F", "FALSE", "false", "False"];
    let bad = ["yes", "2", "tRUE", "on"];
    // `--dry-run` with its true forms only (false would sweep); the others beside a dry run.
    let mut cases: Vec<String> = Vec::new();
    for v in truthy.iter().chain(&bad) {
        cases.push(format!("--dry-run={v}"));
    }
    for v in truthy.iter().chain(&falsy).chain(&bad) {
        cases.push(format!("--delete-untagged={v}"));
    }
    for case in &cases {
        let mut args = vec!["garbage-collect", case.as_str(), cfg];
        if !case.starts_with("--dry-run") {
            args.insert(1, "--dry-run");
        }
        let reference = Command::new("docker-registry")
            .args(&args)
            .output()
            .unwrap();
        // The reference prints why and does nothing (its exit code says nothing: 0).
        let all = text(&reference.stdout) + &text(&reference.stderr);
        let reference_takes = !all.contains("invalid argument");
        let ours = regsweep(&args);
        assert_eq!(
            ours.status.code() == Some(0),
            reference_takes,
            "{case}: reference said {all}; regsweep said {}",
            text(&ours.stderr)
        );
        if !reference_takes {
            assert_eq!(ours.status.code(), Some(2), "{case}");
            assert!(text(&ours.stderr).contains("give 1, t, T, TRUE"), "{case}");
        }
    }
    // Debian's 2.8 has no --quiet (3.x does): the same forms, for the same parser.
    for v in truthy.iter().chain(&falsy) {
        let q = format!("--quiet={v}");
        let out = regsweep(&["garbage-collect", "--dry-run", &q, cfg]);
        assert_eq!(out.status.code(), Some(0), "{q}: {}", text(&out.stderr));
        assert_eq!(out.stdout.is_empty(), truthy.contains(v), "{q}");
    }
    assert_eq!(
        regsweep(&["garbage-collect", "--quiet=yes", cfg])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn values_take_the_forms_people_type_and_errors_show_the_accepted_ones() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let options = |extra: &[&str]| {
        let (code, r) = gc_json(&f.root, &[&["--dry-run"], extra].concat());
        assert_eq!(code, 0, "{extra:?}: {r}");
        r["options"].clone()
    };
    let want = options(&["--delete-untagged=7d"]);
    assert_eq!(want["delete_untagged_older_than"], "7d");
    for form in [&["-m", "7d"][..], &["-m7d"], &["--delete-untagged", "7d"]] {
        assert_eq!(options(form), want, "{form:?}");
    }
    // Bare -m still means every untagged manifest.
    assert_eq!(options(&["-m"])["delete_untagged"], true);
    assert_eq!(options(&["--grace", "1 hour"])["grace"], "1h");
    assert_eq!(options(&["--grace", "1h 30m"])["grace"], "1h30m");

    let fails = |args: &[&str]| {
        let out = regsweep(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        text(&out.stderr)
    };
    let err = fails(&["gc", "-n", "--root", root, "--grace", "1 fortnight"]);
    assert!(
        err.contains(r#"unknown unit "fortnight"; write e.g. 90s, 30m, 12h, 1h30m, 7d"#),
        "{err}"
    );
    let err = fails(&["du", "--root", root, "--by", "repo", "acme/app"]);
    assert!(
        err.contains("--by repo acme/app: the only grouping is `--by tag REPO`"),
        "{err}"
    );
    assert!(!err.contains("[\""), "{err}");
    let err = fails(&["man", "nope"]);
    assert!(err.contains("no such command; pages exist for gc"), "{err}");
}

#[test]
fn trash_commands_refuse_a_folder_that_is_not_a_trash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gen.py"), "print()").unwrap();
    let d = dir.path().to_str().unwrap();
    for args in [
        vec!["trash", "list", d],
        vec!["trash", "empty", d, "--older-than", "0"],
    ] {
        let out = regsweep(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("not a trash folder: it holds \"gen.py\"") && !err.contains("os error"),
            "{err}"
        );
    }
    assert!(dir.path().join("gen.py").exists(), "nothing deleted");
}

#[test]
fn apply_removes_what_gc_removes_and_says_what_a_trash_did() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    // What an API delete leaves: a revision folder with no link in it.
    let empty = f
        .repo("acme/app")
        .join("_manifests/revisions/sha256")
        .join("ab".repeat(32));
    std::fs::create_dir_all(&empty).unwrap();
    age_tree(
        &f.repo("acme/app"),
        std::time::Duration::from_secs(2 * 86_400),
    );
    let plan = f.tmp.path().join("plan.json");
    let out = regsweep(&[
        "gc",
        "--root",
        root,
        "-n",
        "-m",
        "--format",
        "json",
        "--report",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    assert_eq!(
        doc["empty_folders_removed"],
        serde_json::json!([empty.to_str().unwrap()]),
        "the plan lists the folder gc would remove"
    );
    let trash = f.tmp.path().join("trash");
    let out = regsweep(&[
        "apply",
        plan.to_str().unwrap(),
        "--trash",
        trash.to_str().unwrap(),
    ]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !empty.exists(),
        "apply removed the empty folder, as gc does"
    );
    assert!(
        said.contains(" moved to ") && said.contains("nothing freed until `regsweep trash empty`"),
        "{said}"
    );
    assert!(!said.contains("of blobs freed"), "{said}");
    // Nothing left for check to call an empty folder.
    let check = regsweep(&["check", "--root", root, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(
        !v["findings"].to_string().contains("empty_folder"),
        "{}",
        v["findings"]
    );
    // restore reads the root from the registry's config, as every other command does.
    let cfg = fs_config(f.tmp.path(), &f.root);
    let out = regsweep(&[
        "restore",
        trash.to_str().unwrap(),
        "--all",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn the_printed_apply_line_names_the_config_and_works() {
    let f = fixture();
    let cfg = fs_config(f.tmp.path(), &f.root);
    let plan = f.tmp.path().join("my plan.json");
    let out = regsweep(&[
        "gc",
        "--config",
        cfg.to_str().unwrap(),
        "--dry-run",
        "-m",
        "--format",
        "json",
        "--report",
        plan.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    let line = (err.lines())
        .find_map(|l| l.strip_prefix("after review: "))
        .unwrap_or_else(|| panic!("{err}"));
    // Through a shell, as a person pastes it (the plan's name has a space).
    assert!(
        line.contains(&format!("--config {}", cfg.display())),
        "{line}"
    );
    let line = line.replacen("regsweep", env!("CARGO_BIN_EXE_regsweep"), 1);
    let run = Command::new("sh").args(["-c", &line]).output().unwrap();
    assert_eq!(run.status.code(), Some(0), "{line}: {}", text(&run.stderr));
}

#[test]
fn s3_errors_say_the_store_s_code_and_the_connection_s_cause() {
    let moto = Moto::start_enforcing_auth();
    let s3 = |endpoint: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
            .args([
                "du",
                "--root",
                "s3://registry/regroot",
                "--s3-endpoint",
                endpoint,
            ])
            .env("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY")
            .env("AWS_SECRET_ACCESS_KEY", "wrong")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        text(&out.stderr)
    };
    let err = s3(&moto.endpoint);
    assert!(
        err.contains("access denied") && err.contains("InvalidAccessKeyId (HTTP 403): "),
        "{err}"
    );
    assert!(!err.contains("<?xml"), "{err}");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let err = s3(&closed);
    // The line names where it tried.
    assert!(
        err.contains(&format!(
            "cannot reach the endpoint {closed}: Connection refused"
        )),
        "{err}"
    );
}

#[test]
fn man_pages_for_every_command_and_the_units_verify() {
    let out = regsweep(&["man", "gc"]);
    let page = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for needle in [
        ".TH regsweep-gc 1",
        ".SH \"EXIT STATUS\"",
        "\\-\\-delete\\-untagged",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = regsweep(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for page in [
        "regsweep.1",
        "regsweep-gc.1",
        "regsweep-policy-check.1",
        "regsweep-restore.1",
    ] {
        assert!(dir.path().join(page).is_file(), "{page}");
    }
    // The shipped release profile carries no debug info (line tables live in `profiling`).
    let cargo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let release = cargo.split("[profile.release]").nth(1).unwrap();
    let release = release.split("\n[").next().unwrap();
    assert!(!release.contains("debug"), "{release}");

    // The units, as systemd reads them, where systemd-analyze is installed.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: units not verified");
        return;
    }
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let units = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for e in std::fs::read_dir(&contrib).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".service") || name.ends_with(".timer") {
            let unit = std::fs::read_to_string(&p).unwrap();
            if name.ends_with(".service") {
                assert!(
                    unit.contains("/usr/local/bin/regsweep "),
                    "{name}: the README's path"
                );
            }
            // The binary where the README installs it is this build's.
            let unit = unit.replace("/usr/local/bin/regsweep", env!("CARGO_BIN_EXE_regsweep"));
            std::fs::write(units.path().join(&name), unit).unwrap();
            names.push(units.path().join(&name));
        }
    }
    let gc = std::fs::read_to_string(contrib.join("regsweep-gc.service")).unwrap();
    assert!(
        gc.contains("\nCacheDirectory=regsweep\n"),
        "the gc unit keeps its cache"
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_completions_and_lists_read_cleanly() {
    // -v comes after the command's own options, not between --root and --config.
    let help = text(&regsweep(&["gc", "--help"]).stdout);
    let at = |needle: &str| {
        help.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {help}"))
    };
    assert!(at("--verbose") > at("--config") && at("--verbose") > at("--ledger-lag"));
    // Completion offers folders for --root, and no file names for --by.
    let bash = text(&regsweep(&["completions", "bash"]).stdout);
    let case = |opt: &str| {
        let start = bash.find(&format!("{opt})")).unwrap();
        bash[start..start + bash[start..].find(";;").unwrap()].to_string()
    };
    assert!(case("--root").contains("plusdirs") && !case("--root").contains("compgen -f"));
    assert!(!case("--by").contains("compgen -f"), "{}", case("--by"));

    // A policy that deletes a tag in each repository: its manifests are named without nested
    // parentheses, and each list's columns line up across repositories of other lengths.
    let f = fixture();
    let policy = f.tmp.path().join("p.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: all\n    delete: {}\n",
    )
    .unwrap();
    let out = regsweep(&[
        "gc",
        "--root",
        f.root.to_str().unwrap(),
        "-n",
        "-m",
        "--grace",
        "0",
        "--policy",
        policy.to_str().unwrap(),
        "--force",
        "--all",
    ]);
    let report = text(&out.stdout);
    assert!(report.contains("(untagged by the policy; tag "), "{report}");
    assert!(!report.contains("deleted))"), "{report}");
    for heading in ["layer links to delete:", "tags to delete:"] {
        let section = report
            .split(heading)
            .nth(1)
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap();
        let columns: BTreeSet<usize> = section.lines().filter_map(|l| l.find("sha256:")).collect();
        let names: BTreeSet<usize> = section
            .lines()
            .filter_map(|l| Some(l.split_whitespace().next()?.len()))
            .collect();
        assert!(
            names.len() > 1,
            "repositories of different lengths: {section}"
        );
        assert_eq!(columns.len(), 1, "{heading} aligned:\n{section}");
    }
}
