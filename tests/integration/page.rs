//! The report page (issue 32, item 1) in a real browser: Debian's chromium, headless, loads the
//! page made from real runs on the fixture; the DOM must hold every repository with its bytes
//! and every planned tag, no script may fail, and a screenshot is left in target/ to look at.

use crate::fixture::fixture;
use crate::testenv::*;
use std::process::Command;

fn chromium(args: &[&str], page: &std::path::Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium not found: scripts/install-peers.sh installs it (Debian's chromium)")
}

#[test]
fn the_page_shows_every_repository_and_planned_tag_in_a_real_browser() {
    let f = fixture();
    let root = f.root.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let at = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (du, plan, page) = (at("du.json"), at("plan.json"), at("page.html"));
    let out = regsweep(&["du", "--root", root, "--grace", "0", "--format", "json"]);
    std::fs::write(&du, &out.stdout).unwrap();
    let tags = at("tags.json");
    let out = regsweep(&[
        "du", "--root", root, "--grace", "0", "--by", "tag", "acme/app", "--format", "json",
    ]);
    std::fs::write(&tags, &out.stdout).unwrap();
    let policy = at("p.yml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: old\n    tags: ['v1']\n    delete: {}\nprotect:\n  tags: ['v2']\n",
    )
    .unwrap();
    regsweep_ok(&[
        "gc",
        "--root",
        root,
        "--grace",
        "0",
        "-m",
        "--dry-run",
        "--policy",
        &policy,
        "--explain",
        "--format",
        "json",
        "-q",
        "--report",
        &plan,
    ]);
    regsweep_ok(&[
        "report",
        "--du",
        &du,
        "--du-tags",
        &tags,
        "--plan",
        &plan,
        "-o",
        &page,
    ]);
    let out = chromium(&["--dump-dom"], std::path::Path::new(&page));
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(dom.contains("id=\"repositories\""), "{dom}");
    let du: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&du).unwrap()).unwrap();
    for r in du["repositories"].as_array().unwrap() {
        let bytes = regsweep::report::human_bytes(r["bytes"].as_u64().unwrap());
        let row = format!(
            "<td>{}</td><td class=\"n\" data-v=\"{}\">",
            r["name"].as_str().unwrap(),
            r["tags"]
        );
        assert!(
            dom.contains(&row) && dom.contains(&bytes),
            "{} {bytes}: {dom}",
            r["name"]
        );
    }
    // One untagged band in the treemap per repository with untagged bytes.
    let untagged = (du["repositories"].as_array().unwrap().iter())
        .filter(|r| r["untagged_bytes"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(untagged > 0, "the fixture has untagged manifests: {du}");
    assert_eq!(dom.matches("class=\"untagged\"").count(), untagged, "{dom}");
    // acme/app's tags inside it, each holding bytes of its own drawn, and all listed.
    let by_tag: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tags).unwrap()).unwrap();
    let own = (by_tag["tags"].as_array().unwrap().iter())
        .filter(|t| t["exclusive_bytes"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(own > 0, "{by_tag}");
    assert_eq!(dom.matches("<g class=\"tag\">").count(), own, "{dom}");
    for t in by_tag["tags"].as_array().unwrap() {
        assert!(
            dom.contains(&format!("<td>{}</td>", t["tag"].as_str().unwrap())),
            "{t}"
        );
    }
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let tags = plan["tags_deleted"].as_array().unwrap();
    assert!(!tags.is_empty());
    for t in tags {
        let name = format!(
            "{}:{}",
            t["repository"].as_str().unwrap(),
            t["tag"].as_str().unwrap()
        );
        assert!(dom.contains(&name), "{name}");
    }
    assert!(dom.contains(&regsweep::report::human_bytes(
        plan["summary"]["bytes_freed"].as_u64().unwrap()
    )));
    // The protected tag, with its protection.
    assert!(
        dom.contains("id=\"plan-protected\"")
            && dom.contains("<td>acme/app:v2</td><td>protected by protect.tags"),
        "{dom}"
    );
    // Each rule with the bytes its images reach, as the report says them.
    let freed = plan["rules_freed"]
        .as_array()
        .expect("the plan's rules_freed");
    assert_eq!(freed.len(), 1, "{plan}");
    let rule_bytes = freed[0]["bytes"].as_u64().unwrap();
    assert!(rule_bytes > 0, "{plan}");
    assert!(
        dom.contains("id=\"plan-rules\"")
            && dom.contains(&regsweep::report::human_bytes(rule_bytes)),
        "{dom}"
    );
    assert!(
        !log.contains("CONSOLE") && !log.contains("Uncaught"),
        "the page logged: {log}"
    );
    // A screenshot for a person to look at.
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-page.png");
    let out = chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,1400",
        ],
        std::path::Path::new(&page),
    );
    assert!(shot.exists(), "{}", String::from_utf8_lossy(&out.stderr));
}
