//! What changed during the run: the links written since it began, re-read right before the
//! sweep's layer link and blob stages so that a push that reused a planned blob keeps it.

use super::manifests::read_manifest;
use super::read::{Findings, link_problem, list, open_sub, read_link};
use super::scan::discover_repositories;
use crate::model::FindingKind;
use crate::model::Severity;
use crate::model::digest::Digest;
use crate::model::manifest::{self};
use crate::model::paths::{LAYERS, LINK, Paths, REVISIONS, TAG_CURRENT, TAG_INDEX, TAGS};
use crate::storage::seam::{Folder, Storage};
use rayon::prelude::*;
use std::collections::HashSet;
use std::path::PathBuf;

/// What links written since a moment name: the blobs a push during the run relies on.
#[derive(Debug, Default)]
pub struct Fresh {
    /// Blobs and manifests that such links name, with everything those manifests reference.
    pub digests: HashSet<Digest>,
    /// Why the set may be incomplete (a manifest that cannot be read, a folder that cannot be
    /// listed): while any, no blob is safe to delete.
    pub unknown: Vec<String>,
}

/// Re-reads every repository's links (never the blob store's listing) and collects the digests
/// that links modified at or after `since_ns` name, with what the manifests among them
/// reference. Sweep calls it right before the layer link and blob stages: a push that reused a
/// blob the plan had found unreferenced writes such a link, and the blob is then kept.
pub fn links_written_since<S: Storage>(store: &S, since_ns: i128) -> Fresh {
    let mut fresh = Fresh::default();
    let v2h = store.top();
    let paths = Paths::new(store.v2().to_path_buf());
    let findings = Findings::default();
    let (names, repos_dir) = discover_repositories(v2h, &paths, &findings);
    let per_repo: Vec<(Vec<Digest>, Vec<Digest>)> = match &repos_dir {
        Some(dir) => names
            .par_iter()
            .map(|name| fresh_in_repo(dir, &paths, name, since_ns, &findings))
            .collect(),
        None => Vec::new(),
    };
    let mut manifests = Vec::new();
    for (blobs, m) in per_repo {
        fresh.digests.extend(blobs);
        manifests.extend(m);
    }
    // What the fresh manifests reference, through index children.
    let rel = Paths::new(PathBuf::new());
    while !manifests.is_empty() {
        manifests.retain(|d| fresh.digests.insert(*d));
        let read: Vec<(Digest, std::result::Result<manifest::Manifest, String>)> = manifests
            .par_iter()
            .map(|d| {
                let m = read_manifest(v2h, &rel, d).and_then(|b| manifest::parse(&b));
                (*d, m)
            })
            .collect();
        manifests = Vec::new();
        for (d, m) in read {
            match m {
                Ok(m) => {
                    fresh.digests.extend(m.blobs.iter().copied());
                    manifests.extend(m.children.iter().copied());
                }
                Err(e) => fresh
                    .unknown
                    .push(format!("manifest {d}, written during the run: {e}")),
            }
        }
    }
    fresh.unknown.extend(
        findings
            .into_vec()
            .into_iter()
            .filter(|f| f.severity == Severity::Blocking)
            .map(|f| format!("{}: {}", f.path.display(), f.message)),
    );
    fresh
}

/// The layer links (blobs) and manifest links (revisions, tags, tag history) of one repository
/// modified at or after `since_ns`.
pub(super) fn fresh_in_repo<F: Folder>(
    repos_dir: &F,
    paths: &Paths,
    name: &str,
    since_ns: i128,
    findings: &Findings,
) -> (Vec<Digest>, Vec<Digest>) {
    let r = Some(name);
    let (mut blobs, mut manifests) = (Vec::new(), Vec::new());
    let dir_path = paths.repo(name);
    let Some(rdir) = open_sub(repos_dir, name, &dir_path, findings, r) else {
        return (blobs, manifests);
    };
    let new = |d: &F, rel: &str| d.stat(rel).is_ok_and(|s| s.mtime_ns() >= since_ns);
    let folder_links = |sub: &str, out: &mut Vec<Digest>| {
        let p = dir_path.join(sub);
        if let Some(d) = open_sub(&rdir, sub, &p, findings, r) {
            for (hex, _, _) in list(&d, &p, findings, r) {
                if let Some(dg) = Digest::from_hex(&hex)
                    && new(&d, &format!("{hex}/{LINK}"))
                {
                    out.push(dg);
                }
            }
        }
    };
    folder_links(LAYERS, &mut blobs);
    folder_links(REVISIONS, &mut manifests);
    let tags_path = dir_path.join(TAGS);
    if let Some(tags) = open_sub(&rdir, TAGS, &tags_path, findings, r) {
        for (tag, path, _) in list(&tags, &tags_path, findings, r) {
            let current = format!("{tag}/{TAG_CURRENT}");
            if new(&tags, &current) {
                match read_link(&tags, &current) {
                    Ok(l) => manifests.push(l.digest),
                    Err(e) => findings.add(
                        &path,
                        Severity::Blocking,
                        FindingKind::BadLink,
                        r,
                        link_problem(&e),
                    ),
                }
            }
            let index_path = path.join(TAG_INDEX);
            if let Some(index) = open_sub(
                &tags,
                &format!("{tag}/{TAG_INDEX}"),
                &index_path,
                findings,
                r,
            ) {
                for (hex, _, _) in list(&index, &index_path, findings, r) {
                    if let Some(dg) = Digest::from_hex(&hex)
                        && new(&index, &format!("{hex}/{LINK}"))
                    {
                        manifests.push(dg);
                    }
                }
            }
        }
    }
    (blobs, manifests)
}
