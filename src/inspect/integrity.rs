//! Integrity findings: broken images, bad links, leftovers; a pure function of the model.

use crate::model::catalog::Ref;
use crate::model::digest::Digest;
use crate::model::mark;
use crate::model::paths::Paths;
use crate::model::walk;
use crate::model::{Finding, FindingKind, Layout, Repo, Rules, Severity, Time};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// What `check` finds beyond the scan's own findings and unreadable manifests (which the
/// caller already has from the plan). `now` dates abandoned uploads.
pub fn check(layout: &Layout, now: Time) -> Vec<Finding> {
    let paths = Paths::new(layout.v2.clone());
    let mut out = Vec::new();
    for repo in &layout.repos {
        broken_images(layout, &paths, repo, &mut out);
        leftovers(layout, &paths, repo, now, &mut out);
    }
    // A blob folder whose data is gone is one finding: the damage, where something needs it.
    let needed: HashSet<PathBuf> = out.iter().map(|f| f.path.clone()).collect();
    for (d, _) in &layout.empty_blob_dirs {
        if !needed.contains(&paths.blob_data(d)) {
            out.push(notice(
                paths.blob_dir(d),
                FindingKind::EmptyFolder,
                None,
                "blob folder without data (left by an interrupted delete; gc removes it)".into(),
            ));
        }
    }
    out.extend(crate::model::skew::clock_skew(layout, now));
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
    out
}

fn notice(path: PathBuf, kind: FindingKind, repo: Option<&str>, message: String) -> Finding {
    Finding {
        path,
        message,
        severity: Severity::Notice,
        kind,
        repository: repo.map(str::to_string),
    }
}

/// What a pull of each tag needs and the registry would not find: a missing manifest link, a
/// missing blob, a blob not linked into the repository. One finding per missing thing, naming
/// every tag it breaks.
fn broken_images(layout: &Layout, paths: &Paths, repo: &Repo, out: &mut Vec<Finding>) {
    let revisions: HashSet<Digest> = repo.revisions.iter().map(|l| l.digest).collect();
    let layers: HashSet<Digest> = layout.layer_links(repo).map(|l| l.digest).collect();
    // (path, what is wrong) -> tags it breaks
    let mut broken: BTreeMap<(PathBuf, String), Vec<String>> = BTreeMap::new();
    let catalog = mark::ManifestGraph::without_referrers(layout);
    for tag in &repo.tags {
        let Some(current) = tag.current else { continue };
        let mut needs = Needs {
            layout,
            paths,
            repo,
            revisions: &revisions,
            layers: &layers,
            tag: &tag.name,
            seen: HashSet::new(),
            broken: &mut broken,
        };
        match layout.ref_of(&current.digest) {
            Some(r) => walk::walk(&catalog, vec![r], &mut needs),
            // Nothing names it and it is no blob: only its missing link can be said.
            None => needs.manifest_digest(current.digest),
        }
    }
    let reported: HashSet<PathBuf> = broken.keys().map(|(p, _)| p.clone()).collect();
    for ((path, what), mut tags) in broken {
        tags.sort();
        tags.dedup();
        let message = format!(
            "{what}: pulls of {} fail",
            tags.iter()
                .map(|t| format!("{}:{t}", repo.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        out.push(Finding {
            path,
            message,
            severity: Severity::Damage,
            kind: FindingKind::BrokenImage,
            repository: Some(repo.name.to_string()),
        });
    }
    for l in &repo.layers_absent {
        let data = paths.blob_data(&l.digest);
        if !reported.contains(&data) {
            out.push(Finding {
                path: paths.layer_dir(&repo.name, &l.digest).join("link"),
                message: format!(
                    "layer link names {}, which is missing from the store",
                    l.digest
                ),
                severity: Severity::Damage,
                kind: FindingKind::LinkToMissingBlob,
                repository: Some(repo.name.to_string()),
            });
        }
    }
}

/// What a pull of one tag needs, checked manifest by manifest as the walk reaches it.
struct Needs<'a> {
    layout: &'a Layout,
    paths: &'a Paths,
    repo: &'a Repo,
    revisions: &'a HashSet<Digest>,
    layers: &'a HashSet<Digest>,
    tag: &'a str,
    seen: HashSet<Ref>,
    broken: &'a mut BTreeMap<(PathBuf, String), Vec<String>>,
}

impl Needs<'_> {
    fn report(&mut self, path: PathBuf, what: String) {
        self.broken
            .entry((path, what))
            .or_default()
            .push(self.tag.to_string());
    }

    fn manifest_digest(&mut self, d: Digest) {
        if !self.revisions.contains(&d) {
            let what = format!("manifest {d} has no revision link in the repository");
            self.report(
                self.paths.revision_dir(&self.repo.name, &d).join("link"),
                what,
            );
        }
    }
}

impl walk::Visit<Ref> for Needs<'_> {
    fn manifest(&mut self, r: Ref) -> bool {
        if !self.seen.insert(r) {
            return false;
        }
        self.manifest_digest(self.layout.digest(r));
        true
    }
    fn blob(&mut self, r: Ref) {
        let b = self.layout.digest(r);
        // Refs past the blob list name digests the store lacks.
        if r as usize >= self.layout.blobs.len() {
            self.report(
                self.paths.blob_data(&b),
                format!("blob {b} is missing from the store"),
            );
        } else if !self.layers.contains(&b) {
            let what = format!("blob {b} is not linked into the repository");
            self.report(self.paths.layer_dir(&self.repo.name, &b).join("link"), what);
        }
    }
    /// A manifest that could not be read is reported where it was read; its needs are unknown.
    fn unreadable(&mut self, _: Ref) {}
}

fn leftovers(layout: &Layout, paths: &Paths, repo: &Repo, now: Time, out: &mut Vec<Finding>) {
    let r = Some(repo.name.as_ref());
    if repo.tags.is_empty() && repo.revisions.is_empty() {
        out.push(notice(
            paths.repo(&repo.name),
            FindingKind::EmptyRepository,
            r,
            "repository has no tags and no manifests".into(),
        ));
    }
    let (needed, _) = mark::mark_repo(layout, repo, |_| true, &[], &Rules::without_grace(false));
    // Where a manifest cannot be read, what the repository uses is unknown: claim nothing unused.
    let known = needed.unreadable.is_empty() && !repo.unknown;
    for l in repo.layers.iter().filter(|_| known) {
        if !needed.blobs.contains(&l.blob) {
            let d = layout.blobs[l.blob as usize].digest;
            out.push(notice(
                paths.layer_dir(&repo.name, &d).join("link"),
                FindingKind::UnusedLayerLink,
                r,
                format!(
                    "layer link to {d}, which no manifest of the repository uses (gc removes it)"
                ),
            ));
        }
    }
    for u in &repo.uploads {
        let age = crate::units::human_age(now - u.started);
        out.push(notice(
            paths.upload_dir(&repo.name, &u.id),
            FindingKind::AbandonedUpload,
            r,
            format!(
                "upload started {age} ago and never finished, {} (gc --purge-uploads removes it)",
                crate::units::human_bytes(u.size)
            ),
        ));
    }
    for (p, _) in &repo.empty_links {
        out.push(notice(
            p.clone(),
            FindingKind::EmptyFolder,
            r,
            "link folder without a link (left by a delete; gc removes it)".into(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::Manifest;
    use crate::model::{Blob, Tag, Upload};
    use crate::testutil::*;

    /// Tags t and u -> index 10 of 11 (blobs 1, 2); everything linked and present.
    fn world() -> (Layout, Raw) {
        let mut m = Raw::new();
        m.insert(
            dg(10),
            Ok(Manifest {
                blobs: vec![],
                config: None,
                children: vec![dg(11)],
                subject: None,
                problems: vec![],
            }),
        );
        m.insert(
            dg(11),
            Ok(Manifest {
                blobs: vec![dg(1), dg(2)],
                config: Some(dg(1)),
                children: vec![],
                subject: None,
                problems: vec![],
            }),
        );
        let repo = Repo {
            name: "r".into(),
            tags: ["t", "u"]
                .iter()
                .map(|t| Tag {
                    name: t.to_string(),
                    current: Some(link(10, 0)),
                    index: vec![],
                })
                .collect(),
            revisions: vec![link(10, 0), link(11, 0)],
            layers_absent: vec![link(1, 0), link(2, 0)],
            ..Repo::default()
        };
        let blobs = blobs(&[1, 2, 10, 11]);
        (
            Layout {
                v2: "/v2".into(),
                blobs: blobs.into(),
                repos: vec![repo],
                ..Layout::default()
            },
            m,
        )
    }

    #[test]
    fn a_clean_world_has_no_findings() {
        let (l, m) = world();
        assert!(check(&cat(&l, &m), 0).is_empty());
    }

    #[test]
    fn each_kind_of_break_is_found_once_naming_every_tag() {
        let (mut l, m) = world();
        l.blobs.make_mut().retain(|b| b.digest != dg(2));
        let f = check(&cat(&l, &m), 0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].message.contains("missing") && f[0].message.contains("r:t, r:u"),
            "{}",
            f[0].message
        );
        assert_eq!(f[0].severity, Severity::Damage);

        let (mut l, m) = world();
        l.repos[0].layers_absent.retain(|x| x.digest != dg(1));
        let f = check(&cat(&l, &m), 0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("not linked"));

        let (mut l, m) = world();
        l.repos[0].revisions.retain(|x| x.digest != dg(11));
        let f = check(&cat(&l, &m), 0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].path.ends_with("link") && f[0].message.contains("no revision link"));
    }

    #[test]
    fn leftovers_are_notices() {
        let (mut l, m) = world();
        l.repos[0].layers_absent.push(link(3, 0));
        l.blobs.make_mut().push(Blob {
            digest: dg(3),
            size: 1,
            mtime: 0,
        });
        l.blobs.make_mut().sort_by_key(|b| b.digest);
        l.repos[0].uploads.push(Upload {
            id: "u1".into(),
            size: 2048,
            started: -86_400 * 3,
        });
        l.repos[0].layers_absent.push(link(4, 0)); // names a blob that is not there: damage
        let f = check(&cat(&l, &m), 0);
        let kinds: Vec<(Severity, bool)> = f
            .iter()
            .map(|f| (f.severity, f.message.contains("upload started 3d ago")))
            .collect();
        assert_eq!(f.len(), 3, "{f:?}");
        assert_eq!(kinds.iter().filter(|k| k.0 == Severity::Notice).count(), 2);
        assert!(kinds.iter().any(|k| k.1));
        assert!(
            f.iter()
                .any(|f| f.severity == Severity::Damage && f.message.contains("layer link names"))
        );
    }
}
