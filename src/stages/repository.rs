//! One repository of the layout read into the model: its revisions, tags, layer links and
//! uploads, each finding reported at its place.

use super::read::{
    Findings, MAX_STARTEDAT_BYTES, ScanOptions, link_problem, list, open_sub, read_link,
    symlink_finding,
};
use crate::model::FindingKind;
use crate::model::digest::Digest;
use crate::model::paths::{
    self as layout, LAYERS, LINK, MANIFESTS, Paths, REVISIONS, STARTED_AT, TAG_CURRENT, TAG_INDEX,
    TAGS, UPLOADS,
};
use crate::model::{Blob, Link, Repo, Severity, Tag, Time, Upload};
use crate::storage::seam::{Folder, Kind, ReadError};
use std::ffi::OsStr;
use std::io;
use std::path::Path;

/// Reads one repository, filing its layer links against `blobs` (sorted): its revisions, its
/// tags, its layer links and its uploads, in that order.
pub(super) fn scan_repo<F: Folder>(
    repos_dir: &F,
    paths: &Paths,
    name: String,
    findings: &Findings,
    opts: ScanOptions,
    blobs: &[Blob],
) -> Repo {
    let r = Some(name.as_str());
    let mut repo = Repo {
        name: name.as_str().into(),
        ..Repo::default()
    };
    let dir_path = paths.repo(&name);
    let Some(rdir) = open_sub(repos_dir, &name, &dir_path, findings, r) else {
        repo.unknown = true;
        return repo;
    };
    // Opened first so that a symlinked or damaged `_manifests` is reported once, at its place.
    let man = open_sub(&rdir, MANIFESTS, &dir_path.join(MANIFESTS), findings, r);
    let at = Place {
        dir: &rdir,
        path: &dir_path,
        findings,
        r,
    };
    read_revisions(&at, &man, &mut repo);
    read_tags(&at, &man, opts.in_flight_from, &mut repo);
    let layers = read_layers(&at, opts, &mut repo);
    let (present, absent) = crate::model::split_layers(blobs, layers);
    (repo.layers, repo.layers_absent) = (present.into(), absent);
    read_uploads(&at, &mut repo);
    // The model lives for the whole run: no growth slack in it.
    repo.tags.shrink_to_fit();
    repo.revisions.shrink_to_fit();
    repo
}

/// A repository's folder, where it is, and where its findings go.
struct Place<'a, F: Folder> {
    dir: &'a F,
    path: &'a Path,
    findings: &'a Findings,
    r: Option<&'a str>,
}

/// Revisions: the digest is the folder's name; the link must agree.
fn read_revisions<F: Folder>(at: &Place<F>, man: &Option<F>, repo: &mut Repo) {
    let (rdir, dir_path, findings, r) = (at.dir, at.path, at.findings, at.r);
    let rev_path = dir_path.join(REVISIONS);
    let revs = man
        .as_ref()
        .and_then(|_| open_sub(rdir, REVISIONS, &rev_path, findings, r));
    for (hex, path, kind) in revs.iter().flat_map(|d| list(d, &rev_path, findings, r)) {
        let revs = revs.as_ref().expect("listed");
        let digest = Digest::from_hex(&hex);
        if kind == Kind::Symlink {
            symlink_finding(findings, &path, r, "revision folder");
            repo.unknown = true;
            // Still a root by its name, and young: keeping too much is the safe side.
            if let Some(d) = digest {
                repo.revisions.push(Link {
                    digest: d,
                    mtime: Time::MAX,
                });
            }
            continue;
        }
        let Some(folder_digest) = digest.filter(|_| kind == Kind::Dir) else {
            findings.add(
                &path,
                Severity::Notice,
                FindingKind::Foreign,
                r,
                "not a revision folder; left alone",
            );
            continue;
        };
        let link = path.join(LINK);
        match read_link(revs, &format!("{hex}/{LINK}")) {
            Ok(l) => {
                if l.digest != folder_digest {
                    findings.add(&link, Severity::Damage, FindingKind::LinkMismatch, r, format!("revision link names {} but sits in the folder of {folder_digest}; both are kept", l.digest));
                    repo.revisions.push(l);
                }
                repo.revisions.push(Link {
                    digest: folder_digest,
                    mtime: l.mtime,
                });
            }
            Err(ReadError::Missing) => {
                let t = revs.stat(&hex).map_or(Time::MAX, |s| s.mtime);
                repo.empty_links.push((path, t));
            }
            Err(e) => {
                findings.add(
                    &link,
                    Severity::Blocking,
                    FindingKind::BadLink,
                    r,
                    link_problem(&e),
                );
                repo.unknown = true;
                // Still a root by its folder name: keeping too much is the safe side.
                repo.revisions.push(Link {
                    digest: folder_digest,
                    mtime: revs.stat(&hex).map_or(Time::MAX, |s| s.mtime),
                });
            }
        }
    }
}

/// Tags: each one's current link and history.
fn read_tags<F: Folder>(
    at: &Place<F>,
    man: &Option<F>,
    in_flight_from: Option<Time>,
    repo: &mut Repo,
) {
    let (rdir, dir_path, findings, r) = (at.dir, at.path, at.findings, at.r);
    let tags_path = dir_path.join(TAGS);
    let tags = man
        .as_ref()
        .and_then(|_| open_sub(rdir, TAGS, &tags_path, findings, r));
    for (tag, path, kind) in tags.iter().flat_map(|d| list(d, &tags_path, findings, r)) {
        let tags = tags.as_ref().expect("listed");
        if kind == Kind::Symlink {
            symlink_finding(findings, &path, r, "tag folder");
            repo.unknown = true;
            continue;
        }
        if kind != Kind::Dir {
            findings.add(
                &path,
                Severity::Notice,
                FindingKind::Foreign,
                r,
                "not a tag folder; left alone",
            );
            continue;
        }
        if !layout::valid_tag(&tag) {
            findings.add(
                &path,
                Severity::Notice,
                FindingKind::InvalidTagName,
                r,
                "not a valid tag name; kept, never deleted",
            );
        }
        let current_path = path.join(TAG_CURRENT);
        let rel_current = format!("{tag}/{TAG_CURRENT}");
        let mut current = read_link(tags, &rel_current);
        // The current manifest's entry is left out: a kept tag never loses it, and most tags
        // have no other, so most hold no allocation here.
        let index_path = path.join(TAG_INDEX);
        let index: Vec<Digest> = open_sub(
            tags,
            &format!("{tag}/{TAG_INDEX}"),
            &index_path,
            findings,
            r,
        )
        .map(|d| list(&d, &index_path, findings, r))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(hex, _, _)| Digest::from_hex(&hex))
        .collect();
        if matches!(current, Err(ReadError::Missing)) {
            // The registry links a tag into its index first and writes `current/link` right
            // after: read once more, now that the index has been listed.
            current = read_link(tags, &rel_current);
        }
        let current = match current {
            Ok(l) => Some(l),
            Err(ReadError::Missing) => {
                // The tag folder, or its `current` folder, changes as the registry writes.
                let current_dir = Path::new(&rel_current).parent().unwrap_or(Path::new(""));
                let written = [Path::new(&tag), current_dir]
                    .iter()
                    .filter_map(|rel| tags.stat(rel).ok().map(|s| s.mtime))
                    .max();
                without_current(findings, &path, r, written, in_flight_from);
                None
            }
            Err(e) => {
                findings.add(
                    &current_path,
                    Severity::Blocking,
                    FindingKind::BadLink,
                    r,
                    link_problem(&e),
                );
                repo.unknown = true;
                None
            }
        };
        let mut index: Vec<Digest> = index
            .into_iter()
            .filter(|d| current.is_none_or(|c| c.digest != *d))
            .collect();
        index.shrink_to_fit();
        repo.tags.push(Tag {
            name: tag,
            current,
            index,
        });
    }
}

/// A tag without `current/link`: damage, unless it was written since `in_flight_from` (the
/// registry is most likely between the tag's two links, or was killed there a moment ago).
fn without_current(
    findings: &Findings,
    path: &Path,
    r: Option<&str>,
    written: Option<Time>,
    in_flight_from: Option<Time>,
) {
    match (written, in_flight_from) {
        (Some(at), Some(from)) if at >= from => findings.add(
            path,
            Severity::Notice,
            FindingKind::TagWithoutCurrent,
            r,
            format!(
                "tag has no current/link yet (modified {}): most likely a push in flight; the registry cannot resolve it until the link is written, and it is damage once older than the grace",
                chrono::DateTime::from_timestamp(at, 0).map_or(at.to_string(), |t| t.to_rfc3339())
            ),
        ),
        _ => findings.add(
            path,
            Severity::Damage,
            FindingKind::TagWithoutCurrent,
            r,
            "tag has no current/link; the registry cannot resolve it",
        ),
    }
}

/// Layer links: by their folders' names (and contents, with `verify_links`).
fn read_layers<F: Folder>(at: &Place<F>, opts: ScanOptions, repo: &mut Repo) -> Vec<Link> {
    let (rdir, dir_path, findings, r) = (at.dir, at.path, at.findings, at.r);
    let layers_path = dir_path.join(LAYERS);
    let mut layers = Vec::new();
    if let Some(lay) = open_sub(rdir, LAYERS, &layers_path, findings, r) {
        for (hex, path, kind) in list(&lay, &layers_path, findings, r) {
            if kind == Kind::Symlink {
                symlink_finding(findings, &path, r, "layer link folder");
                repo.unknown = true;
                continue;
            }
            let Some(digest) = Digest::from_hex(&hex).filter(|_| kind == Kind::Dir) else {
                findings.add(
                    &path,
                    Severity::Notice,
                    FindingKind::Foreign,
                    r,
                    "not a layer link folder; left alone",
                );
                continue;
            };
            let link = path.join(LINK);
            match lay.stat(format!("{hex}/{LINK}")) {
                Ok(m) if m.is_file() => {
                    if opts.verify_links {
                        match read_link(&lay, &format!("{hex}/{LINK}")) {
                            Ok(l) if l.digest != digest => findings.add(
                                &link,
                                Severity::Damage, FindingKind::LinkMismatch,
                                r,
                                format!("layer link names {} but sits in the folder of {digest}: the registry serves the wrong blob here", l.digest),
                            ),
                            Ok(_) => {}
                            Err(e) => findings.add(
                                &link,
                                Severity::Damage, FindingKind::BadLink,
                                r,
                                format!("{}: the registry cannot serve {digest} from this repository", link_problem(&e)),
                            ),
                        }
                    }
                    layers.push(Link {
                        digest,
                        mtime: m.mtime,
                    })
                }
                Ok(m) if m.is_symlink() => {
                    symlink_finding(findings, &link, r, "layer link");
                    repo.unknown = true;
                }
                Ok(_) => findings.add(
                    &link,
                    Severity::Damage,
                    FindingKind::NotARegularFile,
                    r,
                    "layer link is not a regular file (a folder, FIFO or device); left alone",
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let t = lay.stat(&hex).map_or(Time::MAX, |s| s.mtime);
                    repo.empty_links.push((path, t))
                }
                Err(e) => {
                    findings.add(
                        &link,
                        Severity::Blocking,
                        FindingKind::Unreadable,
                        r,
                        format!("cannot stat link: {e}"),
                    );
                    repo.unknown = true;
                }
            }
        }
    }

    layers
}

/// Uploads: their sizes and when they started.
fn read_uploads<F: Folder>(at: &Place<F>, repo: &mut Repo) {
    let (rdir, dir_path, findings, r) = (at.dir, at.path, at.findings, at.r);
    let uploads_path = dir_path.join(UPLOADS);
    if let Some(up) = open_sub(rdir, UPLOADS, &uploads_path, findings, r) {
        for (id, path, kind) in list(&up, &uploads_path, findings, r) {
            if kind != Kind::Dir {
                continue;
            }
            let size = up.tree_size(OsStr::new(&id));
            let started = match up.read_small(format!("{id}/{STARTED_AT}"), MAX_STARTEDAT_BYTES) {
                Ok(b) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
                    .map(|t| t.timestamp()),
                Err(ReadError::Missing) => None,
                Err(e) => {
                    findings.add(
                        path.join(STARTED_AT),
                        Severity::Damage,
                        FindingKind::BadStartedAt,
                        r,
                        format!("startedat {e}; the upload's age is taken from its folder"),
                    );
                    None
                }
            };
            let started = started.unwrap_or_else(|| up.stat(&id).map_or(Time::MAX, |s| s.mtime));
            repo.uploads.push(Upload { id, size, started });
        }
    }
}
