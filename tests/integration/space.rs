//! Managing space (issue 30): a budget on a real small filesystem (a tmpfs of 16 MiB) filled by
//! the real registry through skopeo, brought under its low watermark by one gc.

use crate::retention::set_tag_age;
use crate::testenv::*;
use std::path::Path;
use std::process::Command;

/// A tmpfs of `size` at `at`, unmounted when dropped. Needs root (CI and the test machines run
/// as root); `None` elsewhere.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }

    /// Its usage as `df` counts it: a share of what is used plus what is available.
    fn percent(&self) -> f64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%b %f %a %S"])
            .arg(&self.0)
            .output()
            .unwrap();
        let v: Vec<u64> = (String::from_utf8_lossy(&out.stdout).split_whitespace())
            .map(|x| x.parse().unwrap())
            .collect();
        let used = (v[0] - v[1]) * v[3];
        used as f64 * 100.0 / (used + v[2] * v[3]) as f64
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn over_high_one_gc_brings_a_small_disk_under_low_taking_the_least_valuable_first() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&tmp.path().join("disk"), "16m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let root = disk.0.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut reg = Registry::serve(&root);
    let mut oci = reg.new_oci();
    // Eight images of about 1.2 MiB each, over one shared base layer.
    for i in 1..=8 {
        let img = oci.image(
            &[("space-base", 100_000), (&format!("space-{i}"), 1_200_000)],
            "amd64",
            "2026-01-01T00:00:00Z",
        );
        oci.tag(&img.manifest, &format!("v{i}"));
        reg.push(&oci, &format!("v{i}"), &format!("space/app:v{i}"));
    }
    // Pushed a day apart, v1 the oldest; v1 is protected and v8 kept by a rule.
    for i in 1..=8u64 {
        set_tag_age(&root, "space/app", &format!("v{i}"), 10 - i);
    }
    let before = disk.percent();
    let (high, low) = (before - 5.0, before - 25.0);
    assert!(low > 10.0, "the pushes fill the disk: {before:.1}%");
    let policy = tmp.path().join("p.yml");
    std::fs::write(
        &policy,
        format!(
            "version: 1\nrules:\n  - name: latest\n    tags: [v8]\n    keep: {{always: true}}\nprotect:\n  tags: [v1]\nbudget:\n  high: {high:.1}%\n  low: {low:.1}%\n  order: [pushed]\n"
        ),
    )
    .unwrap();
    let r = root.to_str().unwrap();
    let p = policy.to_str().unwrap();
    let args = ["gc", "--root", r, "--grace", "0", "-m", "--policy", p];
    let (code, plan) = gc_json(&root, &["--grace", "0", "-m", "--policy", p, "--dry-run"]);
    assert_eq!(code, 0, "{plan}");
    let budget = &plan["space"][0];
    assert_eq!(budget["over"], true, "{budget}");
    assert_eq!(budget["reached"], true, "{budget}");
    // The least valuable by push time, v1 excepted: v2, v3, ... as many as needed, no more.
    let taken = deleted_tags(&plan);
    let n = taken.len();
    let expected: std::collections::BTreeSet<String> =
        (2..2 + n).map(|i| format!("space/app:v{i}")).collect();
    assert_eq!(taken, expected, "{budget}");
    assert!((2..=6).contains(&n), "{budget}");
    let text = regsweep(&[&args[..], &["--dry-run"]].concat());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "used, high {high:.1}%, low {low:.1}%: would delete {n} tags for it"
        )),
        "{text}"
    );
    // One run: under low on the real disk, every kept tag pulls, nothing left for the
    // reference GC.
    regsweep_ok(&args);
    assert!(
        disk.percent() <= low,
        "{:.1}% after, low {low:.1}%",
        disk.percent()
    );
    for i in (1..=8).filter(|i| !(2..2 + n).contains(i)) {
        reg.pull(&format!("space/app:v{i}"))
            .expect("a kept tag pulls");
    }
    assert!(reg.reference_gc_dry_run().is_empty());
    // Now under high: the next run deletes nothing for the budget.
    let (code, again) = gc_json(&root, &["--grace", "0", "-m", "--policy", p, "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(again["space"][0]["over"], false, "{again}");
    assert_eq!(deleted_tags(&again).len(), 0);
}
