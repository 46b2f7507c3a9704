//! The manual's real runs stay real: every ```console block of the README and docs/ is run
//! again on a fresh copy of `fixtures/registry`, and what it prints must be what the page shows.

use crate::layout::copy_tree;
use std::path::Path;
use std::process::Command;

/// The `$ regsweep ...` commands of each console block, with the lines shown after each (up
/// to a `...` line, which marks the rest as left out).
fn console_blocks(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for block in text.split("```console\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        let mut current: Option<(String, Vec<String>)> = None;
        let mut cut = false;
        for line in block.lines() {
            if let Some(cmd) = line.strip_prefix("$ ") {
                out.extend(current.take());
                current = Some((cmd.to_string(), Vec::new()));
                cut = false;
            } else if line == "..." {
                cut = true;
            } else if let Some((_, lines)) = current.as_mut().filter(|_| !cut) {
                lines.push(line.to_string());
            }
        }
        out.extend(current);
    }
    out
}

/// What changes from run to run: the times a run took, the rates it read at, and ages counted
/// from dates the fixture holds (an upload's `startedat`: "7d ago" grows with the calendar).
fn steady(line: &str) -> String {
    let t = line.trim_start();
    if t.starts_with("took ") || t.starts_with("verified ") {
        return t.split_whitespace().next().unwrap_or_default().to_string();
    }
    let words: Vec<&str> = line.trim_end().split(' ').collect();
    let age = |w: &str| {
        w.len() > 1 && w[..w.len() - 1].chars().all(|c| c.is_ascii_digit()) && w.ends_with('d')
    };
    (words.iter().enumerate())
        .map(|(i, w)| match words.get(i + 1) {
            Some(&"ago") if age(w) => "Nd",
            _ => w,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_console_block_of_the_manual_is_what_a_run_prints() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![repo.join("README.md")];
    for e in std::fs::read_dir(repo.join("docs")).unwrap() {
        pages.push(e.unwrap().path());
    }
    pages.sort();
    let mut ran = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for (cmd, shown) in console_blocks(&text) {
            assert!(
                cmd.starts_with("regsweep "),
                "{}: {cmd}: only regsweep runs",
                page.display()
            );
            // A fresh copy, as a checkout is: every file new.
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("fixtures/registry");
            copy_tree(&repo.join("fixtures/registry"), &root);
            touch_files(&root);
            // Through the shell, as the reader types it (quotes and all), this build first.
            let bin = Path::new(env!("CARGO_BIN_EXE_regsweep")).parent().unwrap();
            let path = format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let out = Command::new("sh")
                .args(["-c", &cmd])
                .env("PATH", path)
                .current_dir(tmp.path())
                .env_remove("RUST_LOG")
                .output()
                .unwrap();
            let at = tmp.path().canonicalize().unwrap();
            let printed = String::from_utf8_lossy(&out.stdout)
                .replace(&at.to_string_lossy().into_owned(), "/tmp/clone");
            let printed: Vec<String> = printed.lines().map(steady).collect();
            let shown: Vec<String> = shown.iter().map(|l| steady(l)).collect();
            assert!(
                printed.len() >= shown.len() && printed[..shown.len()] == shown[..],
                "{}: `{cmd}` prints\n{}\nnot what the page shows:\n{}",
                page.display(),
                printed.join("\n"),
                shown.join("\n")
            );
            ran += 1;
        }
    }
    assert!(ran >= 4, "only {ran} console blocks found");
}

/// Every file below `dir` modified now, as a checkout leaves them.
fn touch_files(dir: &Path) {
    let now = std::time::SystemTime::now();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            touch_files(&e.path());
        } else {
            let f = std::fs::File::options().write(true).open(e.path()).unwrap();
            f.set_modified(now).unwrap();
        }
    }
}
