//! What goes: turns marks and decisions into an ordered list of removals; a pure function.

use crate::gc::planned::{PlannedBlobs, PlannedLinks};
use crate::model::FindingKind;
use crate::model::digest::Digest;
use crate::model::mark::Marks;
use crate::model::paths::Paths;
use crate::model::{Decision, Decisions};
use crate::model::{Finding, Layout, Names, Rules, Severity, Time};
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

pub use crate::gc::planned::{
    BlobRemoval, LinkRemoval, ManifestRemoval, TagRemoval, UploadRemoval,
};

/// Everything a sweep removes, in the order it must go.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub tags: Vec<TagRemoval>,
    pub tag_index: Vec<LinkRemoval>,
    pub manifests: Vec<ManifestRemoval>,
    pub layer_links: PlannedLinks,
    pub blobs: PlannedBlobs,
    pub uploads: Vec<UploadRemoval>,
    /// Link and blob folders with nothing in them, left by earlier deletes.
    pub empty_dirs: Vec<PathBuf>,
    /// What an interrupted sweep had renamed away but not yet deleted.
    pub staging: Vec<PathBuf>,
    /// Blobs and manifests that would go but for something within the grace period.
    pub kept_by_grace: u64,
    /// Why the policy's safety net refuses this run; nothing is swept unless forced.
    pub refused: Vec<String>,
    /// Why some removals were withheld (damage hides what they might be needed for).
    pub withheld: Vec<String>,
    /// Scan findings plus manifests that could not be read, sorted by path.
    pub findings: Vec<Finding>,
    /// What the images in use and the pull ledger protected; `None` when neither was given.
    pub used: Option<crate::model::inuse::UsedSummary>,
    /// What the policy's budget and quotas decided (none without them).
    pub space: Vec<crate::model::space::SpaceState>,
}

impl Plan {
    pub fn bytes_freed(&self) -> u64 {
        self.blobs.bytes()
    }
    pub fn upload_bytes(&self) -> u64 {
        self.uploads.iter().map(|u| u.size).sum()
    }
    /// Keeps the planned blobs that arrived within the grace period, by `arrivals` (parallel to
    /// `blobs`): grace judged by when a blob arrived rather than by its data's mtime.
    pub fn keep_arrived(&mut self, arrivals: &[Time], rules: &Rules) {
        let before = self.blobs.len();
        let mut young = arrivals.iter().map(|&t| rules.is_young(t));
        self.blobs.retain(|_| !young.next().unwrap_or(true));
        self.kept_by_grace += (before - self.blobs.len()) as u64;
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && self.tag_index.is_empty()
            && self.manifests.is_empty()
            && self.layer_links.is_empty()
            && self.blobs.is_empty()
            && self.uploads.is_empty()
            && self.empty_dirs.is_empty()
            && self.staging.is_empty()
    }
}

/// Builds the plan, in the order its parts depend on each other: what damage withholds, then
/// each repository's tags, manifests, links and uploads, then the blobs.
pub fn plan(layout: &Layout, decisions: &Decisions, marks: &Marks, rules: &Rules) -> Plan {
    let paths = Paths::new(layout.v2.clone());
    let mut plan = Plan {
        findings: layout.findings.clone(),
        staging: layout.staging.clone(),
        ..Plan::default()
    };
    let names = layout.repos.iter().map(|r| r.name.clone()).collect();
    plan.layer_links = PlannedLinks::over(layout.blobs.clone(), names);
    let blocked = damage(layout, marks, rules, &paths, &mut plan);
    repository_items(layout, decisions, marks, rules, &blocked, &mut plan);
    blob_items(layout, decisions, marks, rules, blocked.blobs(), &mut plan);
    if !decisions.is_scoped() {
        plan.empty_dirs.extend(
            layout
                .empty_blob_dirs
                .iter()
                .filter(|(_, m)| !rules.is_young(*m))
                .map(|(d, _)| paths.blob_dir(d)),
        );
    }
    plan
}

/// What damage withholds: the repositories where something hides references, or all of them.
struct Blocked {
    repos: Vec<bool>,
    everything: bool,
}

impl Blocked {
    /// No blob goes while anything is blocked.
    fn blobs(&self) -> bool {
        self.everything || self.repos.iter().any(|&b| b)
    }
}

/// Damage: a repository is blocked when something in it hides references (a blocking
/// finding, or a manifest it names that cannot be read). Adds the findings and what is
/// withheld to `plan`.
fn damage(
    layout: &Layout,
    marks: &Marks,
    rules: &Rules,
    paths: &Paths,
    plan: &mut Plan,
) -> Blocked {
    let mut blocked = vec![false; layout.repos.len()];
    let mut everything_blocked = false;
    for f in layout
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Blocking)
    {
        match f
            .repository
            .as_deref()
            .and_then(|n| layout.repos.iter().position(|r| &*r.name == n))
        {
            Some(i) => blocked[i] = true,
            None => everything_blocked = true,
        }
    }
    let mut reported: HashSet<Digest> = HashSet::new();
    for (i, repo) in layout.repos.iter().enumerate() {
        let named = repo
            .revisions
            .iter()
            .map(|l| l.digest)
            .chain(repo.tags.iter().filter_map(|t| t.current.map(|c| c.digest)));
        let unreadable: BTreeSet<Digest> = named
            .chain(marks.repos[i].unreadable.iter().copied())
            .filter(|d| !matches!(layout.manifest(d), Some(Ok(_))))
            .collect();
        for d in unreadable {
            blocked[i] = true;
            if reported.insert(d) {
                let message = match layout.manifest(&d) {
                    Some(Err(e)) => e.to_string(),
                    _ => "manifest blob is missing".to_string(),
                };
                plan.findings.push(Finding {
                    path: paths.blob_data(&d),
                    message: format!("{message} (manifest {d} of {})", repo.name),
                    severity: Severity::Blocking,
                    kind: FindingKind::UnreadableManifest,
                    repository: Some(repo.name.to_string()),
                });
            }
        }
    }
    for (d, problems) in layout.manifests.problems(&layout.blobs) {
        for p in problems {
            plan.findings.push(Finding {
                path: paths.blob_data(&d),
                message: format!("manifest {d}: {p}"),
                severity: Severity::Damage,
                kind: FindingKind::ManifestProblem,
                repository: None,
            });
        }
    }
    plan.findings
        .sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
    if rules.allow_damage {
        blocked.iter_mut().for_each(|b| *b = false);
        everything_blocked = false;
    } else {
        for (i, repo) in layout.repos.iter().enumerate() {
            if blocked[i] {
                plan.withheld.push(format!("{}: damage hides what this repository references; its manifests and layer links are kept (use --allow-damage to sweep anyway)", repo.name));
            }
        }
    }
    let blobs_blocked = everything_blocked || blocked.iter().any(|&b| b);
    if blobs_blocked {
        plan.withheld.push(
            "no blob is deleted while damage hides references (use --allow-damage to sweep anyway)"
                .into(),
        );
    }

    Blocked {
        repos: blocked,
        everything: everything_blocked,
    }
}

/// Each repository of the scope: its tags the decisions delete, its untagged manifests (with
/// -m), its unused layer links and empty link folders, its abandoned uploads.
fn repository_items(
    layout: &Layout,
    decisions: &Decisions,
    marks: &Marks,
    rules: &Rules,
    blocked: &Blocked,
    plan: &mut Plan,
) {
    for (i, repo) in layout.repos.iter().enumerate() {
        if !decisions.in_scope(i) {
            continue; // outside the run's scope: nothing of it goes
        }
        let rm = &marks.repos[i];
        let repo_blocked = blocked.repos[i] || blocked.everything;
        let first_tag = plan.tags.len();
        for (t, tag) in repo.tags.iter().enumerate() {
            if let Some(Decision::Delete { rule }) = decisions.repos.get(i).and_then(|r| r.get(t)) {
                plan.tags.push(TagRemoval {
                    repository: repo.name.clone(),
                    tag: tag.name.clone(),
                    digest: tag.current.map(|c| c.digest),
                    rule: rule.clone(),
                    age_seconds: None,
                });
            }
        }
        let tags_going: Vec<(Digest, String)> = plan.tags[first_tag..]
            .iter()
            .filter_map(|t| t.digest.map(|d| (d, t.tag.clone())))
            .collect();
        if rules.delete_untagged && !repo_blocked {
            untagged_items(layout, decisions, i, rm, &tags_going, plan);
        }
        plan.kept_by_grace += rm.manifests_by_grace as u64;
        if !repo_blocked {
            // By index, as `Layout::layer_links` orders them, without reading the blob list: a
            // link to a blob in the store goes into the plan as the blob's index.
            let present = repo.layers.len();
            for k in (0..present + repo.layers_absent.len()).filter(|&k| !rm.layers[k]) {
                match repo.layers.get(k) {
                    Some(l) => plan.layer_links.push_blob(i, l.blob as usize),
                    None => plan
                        .layer_links
                        .push_digest(i, repo.layers_absent[k - present].digest),
                }
            }
            plan.empty_dirs.extend(
                repo.empty_links
                    .iter()
                    .filter(|(_, m)| !rules.is_young(*m))
                    .map(|(p, _)| p.clone()),
            );
        }
        if let Some(before) = rules.uploads_before {
            for u in repo.uploads.iter().filter(|u| u.started < before) {
                plan.uploads.push(UploadRemoval {
                    repository: repo.name.clone(),
                    id: u.id.clone(),
                    size: u.size,
                });
            }
        }
    }
}

/// With -m: the unmarked revisions of repository `i`, why each goes, and their entries in the
/// history of tags that stay.
fn untagged_items(
    layout: &Layout,
    decisions: &Decisions,
    i: usize,
    rm: &crate::model::mark::RepoMarks,
    tags_going: &[(Digest, String)],
    plan: &mut Plan,
) {
    let repo = &layout.repos[i];
    let mut gone = BTreeSet::new();
    for (k, rev) in repo.revisions.iter().enumerate() {
        if !rm.revisions[k] {
            gone.insert(rev.digest);
        }
    }
    for d in &gone {
        let untag = tags_going
            .iter()
            .filter(|(dg, _)| dg == d)
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>();
        let subject = match layout.manifest(d) {
            Some(Ok(m)) => m.subject(),
            _ => None,
        };
        let reason = match subject {
            _ if !untag.is_empty() => {
                let noun = if untag.len() == 1 { "tag" } else { "tags" };
                format!(
                    "untagged by the policy; {noun} {} deleted",
                    untag.join(", ")
                )
            }
            Some(s) if gone.contains(&s) => {
                format!("untagged; referrer of {s}, which goes too")
            }
            Some(_) => "untagged; its subject is gone".into(),
            _ => "untagged".into(),
        };
        plan.manifests.push(ManifestRemoval {
            repository: repo.name.clone(),
            digest: *d,
            reason,
        });
    }
    for (t, tag) in repo.tags.iter().enumerate() {
        if !decisions.keeps(i, t) {
            continue; // its whole folder goes
        }
        for d in tag.index.iter().filter(|d| gone.contains(d)) {
            plan.tag_index.push(LinkRemoval {
                repository: repo.name.clone(),
                tag: Some(tag.name.clone()),
                digest: *d,
            });
        }
    }
}

/// Every blob no kept image needs and no young item names, with where it was linked from;
/// none while damage withholds (`blocked`).
fn blob_items(
    layout: &Layout,
    decisions: &Decisions,
    marks: &Marks,
    rules: &Rules,
    blobs_blocked: bool,
    plan: &mut Plan,
) {
    // Where each unmarked blob was linked from, for the report: (blob, repository) index
    // pairs in blob order, read off by the loop below as it goes.
    let mut linked: Vec<(u32, u32)> = Vec::new();
    for (r, repo) in layout.repos.iter().enumerate() {
        let revisions = (repo.revisions.iter())
            .filter_map(|l| crate::model::values::position(&layout.blobs, &l.digest).ok());
        for i in repo.layers.iter().map(|l| l.blob as usize).chain(revisions) {
            if !marks.blobs.contains(i) {
                linked.push((i as u32, r as u32));
            }
        }
    }
    linked.sort_unstable();
    linked.dedup();
    let mut at = 0; // where the loop below has read `linked` to
    let touched = decisions
        .is_scoped()
        .then(|| scope_blobs(layout, decisions));
    // Origin r + 1 is repository r alone (most blobs); 0 is none; lists of more are added.
    let origins = std::iter::once(Names::None)
        .chain(layout.repos.iter().map(|r| Names::One(r.name.clone())))
        .collect();
    plan.blobs = PlannedBlobs::over(layout.blobs.clone(), origins);
    for (i, b) in layout.blobs.iter().enumerate() {
        if marks.blobs_without_grace.contains(i) {
            continue;
        }
        if touched.as_ref().is_some_and(|t| !t[i]) {
            continue; // no repository of the scope links or reaches it: not this run's
        }
        if marks.blobs.contains(i) || rules.is_young(b.mtime) {
            plan.kept_by_grace += 1;
        } else if !blobs_blocked {
            // Pairs of blobs passed over (kept) are skipped on the way; this blob's pairs are
            // the run that follows, read in place (no list of its own for the common one).
            at += linked[at..].partition_point(|&(x, _)| (x as usize) < i);
            let n = linked[at..].partition_point(|&(x, _)| x as usize == i);
            let from = &linked[at..at + n];
            at += n;
            let origin = match from {
                [] => 0,
                [(_, r)] => *r as usize + 1,
                _ => plan.blobs.add_origin(Names::from(
                    (from
                        .iter()
                        .map(|&(_, r)| layout.repos[r as usize].name.clone()))
                    .collect::<Vec<_>>(),
                )),
            };
            plan.blobs.push(i, origin);
        }
    }
}

/// By index into `layout.blobs`: the blobs some repository of the scope links or reaches from
/// any of its revisions, the only ones a scoped run may delete.
fn scope_blobs(layout: &Layout, decisions: &Decisions) -> Vec<bool> {
    let mut touched = vec![false; layout.blobs.len()];
    for (i, repo) in layout.repos.iter().enumerate() {
        if !decisions.in_scope(i) {
            continue;
        }
        repo.layers
            .iter()
            .for_each(|l| touched[l.blob as usize] = true);
        let (_, all) = crate::model::mark::tagged_then_all(layout, repo);
        for &r in all.blobs.iter().chain(all.manifests.iter()) {
            if let Some(t) = touched.get_mut(r as usize) {
                *t = true;
            }
        }
    }
    touched
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mark::mark;
    use crate::model::{Blob, Repo, Tag};
    use crate::testutil::*;

    /// Repo "a": tag t -> 10 (blobs 1, 2); untagged 11 (blobs 2, 3). Repo "b": tag u -> 20 (blobs 2, 4).
    /// Blob 5 is dangling; blob 6 is dangling but young. Everything else is old.
    fn world() -> (Layout, Raw) {
        let mut m = Raw::new();
        m.insert(dg(10), Ok(image(&[1, 2])));
        m.insert(dg(11), Ok(image(&[2, 3])));
        m.insert(dg(20), Ok(image(&[2, 4])));
        let a = Repo {
            name: "a".into(),
            tags: vec![Tag {
                name: "t".into(),
                current: Some(link(10, 0)),
                index: vec![dg(10), dg(11)],
            }],
            revisions: vec![link(10, 0), link(11, 0)],
            layers_absent: vec![link(1, 0), link(2, 0), link(3, 0), link(5, 0)],
            ..Repo::default()
        };
        let b = Repo {
            name: "b".into(),
            tags: vec![Tag {
                name: "u".into(),
                current: Some(link(20, 0)),
                index: vec![dg(20)],
            }],
            revisions: vec![link(20, 0)],
            layers_absent: vec![link(2, 0), link(4, 0)],
            ..Repo::default()
        };
        let mut blobs = blobs(&[1, 2, 3, 4, 5, 10, 11, 20]);
        blobs.push(Blob {
            digest: dg(6),
            size: 6,
            mtime: 9999,
        });
        blobs.sort_by_key(|b| b.digest);
        (
            Layout {
                v2: "/r/docker/registry/v2".into(),
                blobs: blobs.into(),
                repos: vec![a, b],
                ..Layout::default()
            },
            m,
        )
    }

    /// -m, everything before 1000 old.
    const UNTAGGED: Rules = Rules {
        delete_untagged: true,
        young_from: Some(1000),
        allow_damage: false,
        uploads_before: None,
        untagged_kept_from: None,
    };

    fn run(layout: &Layout, m: &Raw, delete_untagged: bool, allow_damage: bool) -> Plan {
        let layout = &cat(layout, m);
        let d = Decisions::keep_all(layout);
        let rules = Rules {
            delete_untagged,
            young_from: Some(1000),
            allow_damage,
            uploads_before: None,
            untagged_kept_from: None,
        };
        let marks = mark(layout, &d, &rules);
        plan(layout, &d, &marks, &rules)
    }

    fn blob_ids(p: &Plan) -> Vec<u8> {
        p.blobs.iter().map(|b| b.digest().0[0]).collect()
    }

    /// A -m run limited to the repositories `scope` names, with b's tag deleted by a policy.
    fn scoped(scope: &[&str]) -> Plan {
        let (l, m) = world();
        let mut l = cat(&l, &m);
        // A blob linked from no repository at all.
        l.blobs.make_mut().push(Blob {
            digest: dg(7),
            size: 7,
            mtime: 0,
        });
        l.blobs.make_mut().sort_by_key(|b| b.digest);
        let l = cat(&l, &m);
        let mut d = Decisions::keep_all(&l);
        d.repos[1][0] = Decision::Delete { rule: "old".into() };
        let d = d.with_scope(&l, |name| scope.contains(&name));
        let rules = UNTAGGED;
        let marks = mark(&l, &d, &rules);
        plan(&l, &d, &marks, &rules)
    }

    #[test]
    fn a_scoped_run_leaves_other_repositories_and_their_blobs_alone() {
        // Only b: a's untagged 11 stays with all it reaches (3) and all it links (5). b's tag
        // goes, and its image 20 with it: 4 is b's alone and goes, 2 is a's too and stays.
        let p = scoped(&["b"]);
        assert!(p.manifests.iter().all(|m| &*m.repository == "b"), "{p:?}");
        assert!(p.layer_links.iter().all(|l| &**l.repository == "b"));
        assert_eq!(p.tags.len(), 1);
        assert_eq!(
            blob_ids(&p),
            vec![4, 20],
            "b's own, and not 7 (linked from nowhere)"
        );
        // Only a: b's tag stays though the policy deletes it; a's untagged image goes.
        let p = scoped(&["a"]);
        assert!(p.tags.is_empty(), "b is out of scope: its tag stays");
        assert_eq!(blob_ids(&p), vec![3, 5, 11]);
        assert!(p.empty_dirs.is_empty());
        // Everything in scope: as unscoped, but for the blob linked from nowhere.
        let p = scoped(&["a", "b"]);
        assert_eq!(blob_ids(&p), vec![3, 4, 5, 11, 20]);
    }

    #[test]
    fn plain_mode_deletes_only_dangling_blobs() {
        let (l, m) = world();
        let p = run(&l, &m, false, false);
        assert_eq!(blob_ids(&p), vec![5]);
        assert!(p.manifests.is_empty());
        assert_eq!(
            p.layer_links
                .iter()
                .map(|l| (l.repository.as_ref(), l.digest.0[0]))
                .collect::<Vec<_>>(),
            vec![("a", 5)]
        );
        assert_eq!(p.kept_by_grace, 1, "the young dangling blob");
        assert_eq!(p.bytes_freed(), 5);
    }

    #[test]
    fn untagged_mode_deletes_the_revision_its_index_entry_and_its_own_blobs() {
        let (l, m) = world();
        let p = run(&l, &m, true, false);
        assert_eq!(
            p.manifests
                .iter()
                .map(|x| x.digest.0[0])
                .collect::<Vec<_>>(),
            vec![11]
        );
        assert_eq!(
            p.tag_index
                .iter()
                .map(|x| x.digest.0[0])
                .collect::<Vec<_>>(),
            vec![11]
        );
        // Blob 2 is shared with a kept image and stays; 3 and the manifest 11 go.
        assert_eq!(blob_ids(&p), vec![3, 5, 11]);
        // Each by a layer link or (11) a revision link of "a"; the kept blobs before and
        // between them (1, 2, 4, 10) are not attributed to anything.
        assert!(
            p.blobs.iter().all(|b| *b.linked_from == ["a"]),
            "{:?}",
            p.blobs
        );
        let mut links: Vec<u8> = p.layer_links.iter().map(|x| x.digest.0[0]).collect();
        links.sort();
        assert_eq!(links, vec![3, 5]);
    }

    #[test]
    fn an_unreadable_manifest_withholds_blob_deletion() {
        let (l, mut m) = world();
        m.insert(dg(20), Err("not valid JSON: eof".into()));
        let p = run(&l, &m, true, false);
        assert!(p.blobs.is_empty());
        assert!(p.manifests.iter().all(|x| &*x.repository != "b"));
        assert!(p.layer_links.iter().all(|x| &**x.repository != "b"));
        assert_eq!(p.findings.len(), 1);
        assert!(
            p.findings[0]
                .path
                .ends_with(format!("{}/data", dg(20).hex()))
        );
        assert!(!p.withheld.is_empty());
        // Repository "a" is unaffected in what it may drop of its own links and revisions.
        assert_eq!(p.manifests.len(), 1);

        let p = run(&l, &m, true, true);
        assert!(!p.blobs.is_empty());
        assert!(p.withheld.is_empty());
    }

    #[test]
    fn a_missing_manifest_is_damage_too() {
        let (l, mut m) = world();
        m.remove(&dg(10));
        let p = run(&l, &m, false, false);
        assert!(p.blobs.is_empty());
        assert!(p.findings.iter().any(|f| f.message.contains("missing")));
    }

    #[test]
    fn blocking_scan_findings_withhold_everything() {
        let (mut l, m) = world();
        l.findings.push(Finding {
            path: "/r/docker/registry/v2/repositories".into(),
            message: "cannot list".into(),
            severity: Severity::Blocking,
            kind: FindingKind::Unreadable,
            repository: None,
        });
        let p = run(&l, &m, true, false);
        assert!(p.blobs.is_empty() && p.manifests.is_empty() && p.layer_links.is_empty());
    }

    #[test]
    fn deleted_tags_carry_their_rule_and_are_no_roots() {
        let (l, m) = world();
        let l = cat(&l, &m);
        let mut d = Decisions::keep_all(&l);
        d.repos[1][0] = Decision::Delete { rule: "old".into() };
        let rules = UNTAGGED;
        let marks = mark(&l, &d, &rules);
        let p = plan(&l, &d, &marks, &rules);
        assert_eq!(p.tags.len(), 1);
        assert_eq!(p.tags[0].rule, "old");
        assert!(
            p.manifests
                .iter()
                .any(|x| &*x.repository == "b" && x.digest == dg(20))
        );
        assert!(blob_ids(&p).contains(&4) && blob_ids(&p).contains(&20));
        assert!(!blob_ids(&p).contains(&2));
    }

    #[test]
    fn a_blob_linked_from_several_repositories_names_each_and_the_others_their_own() {
        let (l, m) = world();
        let l = cat(&l, &m);
        let mut d = Decisions::keep_all(&l);
        d.repos[0][0] = Decision::Delete { rule: "old".into() };
        d.repos[1][0] = Decision::Delete { rule: "old".into() };
        let marks = mark(&l, &d, &UNTAGGED);
        let p = plan(&l, &d, &marks, &UNTAGGED);
        let from = |n: u8| {
            let b = p.blobs.iter().find(|b| b.digest() == dg(n));
            b.map(|b| b.linked_from.join(","))
        };
        assert_eq!(from(2).as_deref(), Some("a,b"), "{:?}", p.blobs);
        assert_eq!(from(4).as_deref(), Some("b"));
        assert_eq!(from(1).as_deref(), Some("a"));
    }
}
