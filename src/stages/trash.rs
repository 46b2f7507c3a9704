//! The trash: what a sweep moved aside instead of deleting, and putting it back.
//!
//! Each run moves its items into `DIR/<run>/v2/...`, mirroring the layout, by rename on the same
//! filesystem (instant, and no space is used until the trash is emptied). `DIR/<run>/run.json`
//! says where they came from. Restoring moves items back in the reverse of the sweep's order
//! (blobs, layer links, revisions, tag history, tags, uploads), so the registry never sees a tag
//! before the content it needs.

use crate::error::{Error, Result};
use crate::model::digest::Digest;
use crate::model::manifest;
use crate::model::paths::{self, Paths, Place};
use crate::model::walk;
use crate::storage::dirfd::{self, Dir};
use crate::storage::fs::FsStorage;
use crate::storage::lock::Lock;
use crate::storage::seam::{Folder, Storage};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const RUN_FILE: &str = "run.json";
/// The time a run's folder is named by, before its pid.
const RUN_TIME: &str = "%Y%m%dT%H%M%SZ";

#[derive(Debug, Serialize, Deserialize)]
struct RunInfo {
    schema: String,
    /// The `docker/registry/v2` folder the items came from.
    v2: PathBuf,
    started: String,
    command: String,
}

/// `path` with symlinks resolved as far as it exists, the rest appended as given.
fn resolve_partly(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            return rest.iter().rev().fold(c, |p, part| p.join(part));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return abs,
        }
    }
}

/// Refuses a trash folder inside the layout `v2`: the registry would see what moves there (a
/// trash below `_manifests/tags` becomes a tag). Checked before anything is created.
pub fn check_place(dir: &Path, v2: &Path) -> Result<()> {
    let resolved = resolve_partly(dir);
    if resolved.starts_with(v2) {
        return Err(Error::Usage(format!(
            "--trash {}: inside the registry's layout {}; the registry would see what moves there. Give a folder outside docker/registry/v2, on the same filesystem",
            dir.display(),
            v2.display()
        )));
    }
    Ok(())
}

/// Creates `DIR/<run>` for one run, after checking DIR lies outside the layout and shares its
/// filesystem.
pub fn create_run(dir: &Path, v2: &Path, command: &str) -> Result<PathBuf> {
    check_place(dir, v2)?;
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let dev = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.dev())
            .map_err(|e| Error::io(p, e))
    };
    if dev(dir)? != dev(v2)? {
        return Err(Error::Usage(format!(
            "--trash {}: not on the registry's filesystem; moving there would copy every byte. Give a folder on the same filesystem as {}",
            dir.display(),
            v2.display()
        )));
    }
    let now = chrono::Utc::now();
    let run = dir.join(format!("{}-{}", now.format(RUN_TIME), std::process::id()));
    fs::create_dir_all(run.join("v2")).map_err(|e| Error::io(&run, e))?;
    let info = RunInfo {
        schema: "regsweep/trash-run/v1".into(),
        v2: v2.to_path_buf(),
        started: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: command.into(),
    };
    let text = serde_json::to_string_pretty(&info).unwrap_or_default();
    fs::write(run.join(RUN_FILE), text).map_err(|e| Error::io(run.join(RUN_FILE), e))?;
    Ok(run)
}

/// `20261204T101500Z-1234`: the name `create_run` gives a run's folder (its time, its pid).
fn is_run_name(name: &str) -> bool {
    name.split_once('-').is_some_and(|(time, pid)| {
        chrono::NaiveDateTime::parse_from_str(time, RUN_TIME).is_ok()
            && !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The runs in a trash, newest first.
fn runs(dir: &Path) -> Result<Vec<(PathBuf, RunInfo)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir || !is_run_name(&entry.file_name().to_string_lossy()) {
            // Refused whole: `trash empty` must never delete what no run put there.
            return Err(Error::Trash {
                path: dir.to_path_buf(),
                message: format!(
                    "not a trash folder: it holds {:?}, which no `gc --trash` run wrote (a trash holds only run folders such as 20261204T101500Z-1234)",
                    entry.file_name()
                ),
            });
        }
        let file = path.join(RUN_FILE);
        let text = match dirfd::read_path(&file, 1 << 20) {
            Ok(t) => t,
            Err(dirfd::ReadError::Missing) => continue,
            Err(e) => {
                return Err(Error::Trash {
                    path: file,
                    message: format!("trash run record {e}"),
                });
            }
        };
        let info: RunInfo = serde_json::from_slice(&text).map_err(|e| Error::Trash {
            path: file.clone(),
            message: format!("not a trash run record: {e}"),
        })?;
        out.push((path, info));
    }
    out.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(out)
}

/// The kinds of item a trash holds, in the order they go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Blob,
    LayerLink,
    Revision,
    TagIndex,
    Tag,
    Upload,
}

impl Kind {
    /// What the README and reports call it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Blob => "blob",
            Kind::LayerLink => "layer link",
            Kind::Revision => "manifest",
            Kind::TagIndex => "tag index entry",
            Kind::Tag => "tag",
            Kind::Upload => "upload",
        }
    }
}

/// One item of a trash run: where it lies, where it goes back to.
#[derive(Debug, Clone)]
struct Item {
    kind: Kind,
    place: Place,
    from: PathBuf,
    /// Relative to v2.
    rel: PathBuf,
}

/// Classifies the item folders below `run/v2` by their place in the layout.
fn items(run: &Path) -> Vec<Item> {
    let base = run.join("v2");
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&base)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if !entry.file_type().is_dir() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(&base) else {
            continue;
        };
        let Some(place) = paths::classify(rel) else {
            continue;
        };
        let kind = match &place {
            Place::Blob(_) => Some(Kind::Blob),
            Place::LayerLink { .. } => Some(Kind::LayerLink),
            Place::Revision { .. } => Some(Kind::Revision),
            // An index entry only counts alone: inside a whole tag it goes back with the tag.
            Place::TagIndex { .. } => base
                .join(rel)
                .ancestors()
                .nth(3)
                .filter(|tag| !tag.join(paths::TAG_CURRENT).exists())
                .map(|_| Kind::TagIndex),
            Place::Tag { .. } => entry
                .path()
                .join(paths::TAG_CURRENT)
                .exists()
                .then_some(Kind::Tag),
            Place::Upload { .. } => Some(Kind::Upload),
        };
        if let Some(kind) = kind {
            out.push(Item {
                kind,
                place,
                from: entry.path().to_path_buf(),
                rel: rel.to_path_buf(),
            });
        }
    }
    out.sort_by(|a, b| a.kind.cmp(&b.kind).then(a.rel.cmp(&b.rel)));
    out
}

/// What to restore.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    /// One tag, with every manifest, link and blob its image needs.
    Tag {
        repository: String,
        tag: String,
    },
}

#[derive(Debug, Default, Serialize)]
pub struct Restored {
    pub restored: Vec<RestoredItem>,
    /// Items left in the trash because their place is taken again.
    pub skipped: Vec<RestoredItem>,
}

#[derive(Debug, Serialize)]
pub struct RestoredItem {
    pub kind: Kind,
    pub path: PathBuf,
}

/// The layout a run's items go back into: the given root's, which the record must name, or
/// without one the record's own after checking it is a real layout (canonical, so no symlink on
/// the way; shaped like one; on the trash's filesystem, as a rename into the trash requires).
/// An edited record can then name no folder that is not a registry layout.
fn target_v2(run: &Path, info: &RunInfo, given: Option<&Path>) -> Result<PathBuf> {
    let bad = |message: String| Error::Trash {
        path: run.join(RUN_FILE),
        message,
    };
    if let Some(given) = given {
        if info.v2 != given {
            return Err(bad(format!(
                "records the registry {}, not the given root's {}; refused",
                info.v2.display(),
                given.display()
            )));
        }
        return Ok(given.to_path_buf());
    }
    let v2 = &info.v2;
    let canonical = v2.canonicalize().ok();
    let shaped = v2.ends_with("docker/registry/v2")
        && crate::model::paths::looks_like_v2(|n| v2.join(n).is_dir());
    if !v2.is_absolute() || canonical.as_deref() != Some(v2.as_path()) || !shaped {
        return Err(bad(format!(
            "records {} as its registry, which is not a registry layout (or lies behind a symbolic link); refused. Give the registry with --root",
            v2.display()
        )));
    }
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
    if dev(v2) != dev(run) {
        return Err(bad(format!(
            "records {} as its registry, which is not on the trash's filesystem; refused",
            v2.display()
        )));
    }
    Ok(v2.clone())
}

/// Moves items back, into the registry `root` when given. Returns an error when the selection
/// names nothing in the trash. Items move through folder handles, never through a symlink, and
/// only to places of the layout (what `items` classifies).
pub fn restore(
    dir: &Path,
    selection: &Selection,
    break_lock: bool,
    root: Option<&Path>,
    progress: &dyn crate::progress::Progress,
) -> Result<Restored> {
    let given = match root {
        Some(r) => Some(FsStorage::open(r)?.v2().to_path_buf()),
        None => None,
    };
    let mut runs = runs(dir)?;
    for (run, info) in &mut runs {
        info.v2 = target_v2(run, info, given.as_deref())?;
    }
    // Restoring changes the registry's root: take its lock, as gc does.
    let mut roots: Vec<PathBuf> = runs.iter().map(|(_, i)| i.v2.clone()).collect();
    roots.sort();
    roots.dedup();
    let mut stores: HashMap<PathBuf, (FsStorage, Lock)> = HashMap::new();
    for v2 in roots {
        let store = FsStorage::open(&v2)?;
        let lock = store.lock("restore", break_lock)?;
        stores.insert(v2, (store, lock));
    }
    let mut all: Vec<(Item, PathBuf)> = Vec::new();
    for (run, info) in &runs {
        all.extend(items(run).into_iter().map(|i| (i, info.v2.clone())));
    }
    let chosen: Vec<(Item, PathBuf)> = match selection {
        Selection::All => all,
        Selection::Tag { repository, tag } => select_tag(&all, repository, tag)?,
    };
    if chosen.is_empty() {
        return Err(Error::Usage(format!(
            "{}: nothing to restore",
            dir.display()
        )));
    }
    let mut chosen = chosen;
    chosen.sort_by(|a, b| a.0.kind.cmp(&b.0.kind).then(a.0.rel.cmp(&b.0.rel)));
    let mut out = Restored::default();
    let mut done: HashSet<PathBuf> = HashSet::new();
    let bar = progress.bar("restoring", chosen.len() as u64);
    for (item, v2) in chosen {
        bar.inc(1);
        let dest = v2.join(&item.rel);
        let record = RestoredItem {
            kind: item.kind,
            path: dest.clone(),
        };
        let Some((store, _)) = stores.get(&v2) else {
            continue;
        };
        let v2h = store.top();
        // The newest run's copy wins; an older copy of the same item stays in the trash.
        if done.contains(&dest)
            || !matches!(v2h.stat(&item.rel), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        {
            out.skipped.push(record);
            continue;
        }
        let (Some(rel_parent), Some(name)) = (item.rel.parent(), item.rel.file_name()) else {
            continue;
        };
        let from_parent = item.from.parent().unwrap_or(Path::new("/"));
        let moved = Dir::open(from_parent).and_then(|src| {
            let to = v2h.make_dirs(rel_parent)?;
            src.rename_to(name, &to, name)
        });
        moved.map_err(|e| Error::io(&item.from, e))?;
        done.insert(dest);
        out.restored.push(record);
    }
    bar.finish();
    for (run, _) in &runs {
        prune(&run.join("v2"));
        if !run.join("v2").exists() {
            let _ = fs::remove_file(run.join(RUN_FILE));
            let _ = fs::remove_dir(run);
        }
    }
    Ok(out)
}

/// The tag, and what its image needs from the trash: its manifests (with index children),
/// their revision links, the blobs and the layer links of the repository.
fn select_tag(
    all: &[(Item, PathBuf)],
    repository: &str,
    tag: &str,
) -> Result<Vec<(Item, PathBuf)>> {
    let is_tag = |i: &Item, name: &str| matches!(&i.place, Place::Tag { repo, tag } if repo == repository && tag == name);
    let Some((tag_item, v2)) = all
        .iter()
        .find(|(i, _)| i.kind == Kind::Tag && is_tag(i, tag))
    else {
        return Err(Error::Usage(format!(
            "{repository}:{tag} is not in the trash"
        )));
    };
    let graph = TrashGraph::new(all, v2, repository);
    let mut wanted = Wanted {
        repository: repository.to_string(),
        rels: HashSet::from([tag_item.rel.clone()]),
        seen: HashSet::new(),
    };
    let mut roots = vec![current_of(tag_item)?];
    // The cosign tags (`sha256-<hex>.sig`, `.att`, `.sbom`) that gc trashed with an image come
    // back with it, and so does what they need; until no new one is found.
    let mut tags_done: HashSet<PathBuf> = HashSet::from([tag_item.rel.clone()]);
    while !roots.is_empty() {
        walk::walk(&graph, std::mem::take(&mut roots), &mut wanted);
        for (item, _) in all.iter().filter(|(i, _)| i.kind == Kind::Tag) {
            let Place::Tag { repo, tag: name } = &item.place else {
                continue;
            };
            if repo != repository {
                continue;
            }
            let follows = wanted.seen.iter().any(|d| {
                [".sig", ".att", ".sbom"]
                    .iter()
                    .any(|ext| *name == format!("sha256-{}{ext}", d.hex()))
            });
            if follows && tags_done.insert(item.rel.clone()) {
                wanted.rels.insert(item.rel.clone());
                roots.push(current_of(item)?);
            }
        }
    }
    Ok(all
        .iter()
        .filter(|(i, _)| wanted.rels.contains(&i.rel))
        .cloned()
        .collect())
}

/// The digest a trashed tag's `current/link` names.
fn current_of(tag_item: &Item) -> Result<Digest> {
    let link_path = tag_item.from.join(paths::TAG_CURRENT);
    let link = dirfd::read_path(&link_path, 1024).map_err(|e| Error::Trash {
        path: link_path.clone(),
        message: format!("tag link {e}"),
    })?;
    let link = String::from_utf8_lossy(&link);
    Digest::parse(link.trim()).ok_or_else(|| Error::Trash {
        path: link_path.clone(),
        message: format!("link holds {link:?}, not sha256:<hex>"),
    })
}

/// The trash and the store together, as a graph for [`walk`]: a manifest is read from wherever
/// its blob is, and the repository's trashed revisions are the referrers that can come back.
struct TrashGraph<'a> {
    all: &'a [(Item, PathBuf)],
    paths: Paths,
    referrers: HashMap<Digest, Vec<Digest>>,
}

impl<'a> TrashGraph<'a> {
    fn new(all: &'a [(Item, PathBuf)], v2: &Path, repository: &str) -> TrashGraph<'a> {
        let mut g = TrashGraph {
            all,
            paths: Paths::new(v2.to_path_buf()),
            referrers: HashMap::new(),
        };
        for (item, _) in all.iter() {
            let d = match &item.place {
                Place::Revision { repo, digest } if repo == repository => *digest,
                _ => continue,
            };
            if let Some(subject) = g.read(&d).and_then(|m| m.subject) {
                g.referrers.entry(subject).or_default().push(d);
            }
        }
        g
    }

    /// Manifest `d`, from the store or the trash.
    fn read(&self, d: &Digest) -> Option<manifest::Manifest> {
        let store = self.paths.blob_data(d);
        let path = if fs::symlink_metadata(&store).is_ok_and(|m| m.is_file()) {
            store
        } else {
            let rel = blob_rel(d);
            self.all
                .iter()
                .find(|(i, _)| i.kind == Kind::Blob && i.rel == rel)
                .map(|(i, _)| i.from.join(paths::DATA))?
        };
        let bytes = dirfd::read_path(&path, manifest::MAX_MANIFEST_BYTES).ok()?;
        manifest::parse(&bytes).ok()
    }
}

impl walk::Graph for TrashGraph<'_> {
    type Id = Digest;
    fn manifest(&self, d: Digest) -> Option<walk::Node<'_, Digest>> {
        self.read(&d).map(|m| walk::Node {
            blobs: Cow::Owned(m.blobs),
            children: Cow::Owned(m.children),
        })
    }
    fn referrers(&self, d: Digest) -> Cow<'_, [Digest]> {
        self.referrers
            .get(&d)
            .map_or(Cow::Borrowed(&[][..]), |v| Cow::Borrowed(&v[..]))
    }
}

/// The trash items (by their place in the layout) an image needs, filled by a walk.
struct Wanted {
    repository: String,
    rels: HashSet<PathBuf>,
    seen: HashSet<Digest>,
}

impl walk::Visit<Digest> for Wanted {
    fn manifest(&mut self, d: Digest) -> bool {
        if !self.seen.insert(d) {
            return false;
        }
        self.rels.insert(blob_rel(&d));
        self.rels.insert(rel().revision_dir(&self.repository, &d));
        true
    }
    fn blob(&mut self, b: Digest) {
        self.rels.insert(blob_rel(&b));
        self.rels.insert(rel().layer_dir(&self.repository, &b));
    }
    /// Its blob is neither in the store nor in the trash: nothing more to bring back.
    fn unreadable(&mut self, _: Digest) {}
}

/// Layout paths relative to `docker/registry/v2`.
fn rel() -> Paths {
    Paths::new(PathBuf::new())
}

/// A blob's folder relative to `docker/registry/v2`.
fn blob_rel(d: &Digest) -> PathBuf {
    rel().blob_dir(d)
}

/// Removes empty folders below and including `dir`, deepest first.
pub fn prune(dir: &Path) {
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = fs::remove_dir(d);
    }
}

/// Deletes for good the runs older than `older_than`; the runs removed.
/// One trash run, as `trash list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub run: PathBuf,
    pub started: String,
    pub command: String,
    /// The `docker/registry/v2` its items came from.
    pub registry: PathBuf,
    /// Items it holds (tags, manifests, layer links, blobs, uploads).
    pub items: usize,
    /// Bytes of the files it holds: what emptying it frees.
    pub bytes: u64,
}

/// Bytes of the regular files below `dir`, never following a symlink.
fn bytes_below(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The runs in the trash folder `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<RunSummary>> {
    Ok(runs(dir)?
        .into_iter()
        .map(|(run, info)| RunSummary {
            items: items(&run).len(),
            bytes: bytes_below(&run),
            started: info.started,
            command: info.command,
            registry: info.v2,
            run,
        })
        .collect())
}

/// Deletes for good the runs older than `older_than`; what each was (with the bytes it freed).
pub fn empty(
    dir: &Path,
    older_than: std::time::Duration,
    progress: &dyn crate::progress::Progress,
) -> Result<Vec<RunSummary>> {
    let cutoff = chrono::Utc::now() - chrono::Duration::seconds(older_than.as_secs() as i64);
    let mut removed = Vec::new();
    let runs = runs(dir)?;
    let bar = progress.bar("trash runs", runs.len() as u64);
    for (run, info) in runs {
        bar.inc(1);
        let started =
            chrono::DateTime::parse_from_rfc3339(&info.started).map_err(|e| Error::Trash {
                path: run.join(RUN_FILE),
                message: format!("bad start time {:?}: {e}", info.started),
            })?;
        if started < cutoff {
            let summary = RunSummary {
                items: items(&run).len(),
                bytes: bytes_below(&run),
                started: info.started.clone(),
                command: info.command.clone(),
                registry: info.v2.clone(),
                run: run.clone(),
            };
            fs::remove_dir_all(&run).map_err(|e| Error::io(&run, e))?;
            removed.push(summary);
        }
    }
    bar.finish();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_folders_are_told_by_the_name_create_run_gives() {
        let made = format!("{}-42", chrono::Utc::now().format(super::RUN_TIME));
        assert!(super::is_run_name(&made));
        for other in [
            "gen.py",
            "20261304T101500Z-1",
            "20261204T101500Z-",
            "20261204T101500Z",
        ] {
            assert!(!super::is_run_name(other), "{other}");
        }
    }
}
