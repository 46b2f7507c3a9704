//! Carries out a plan on disk, in an order that leaves a valid layout wherever it is stopped.
//!
//! Tags go first, then revision links, then layer links, then blob data: at every instant a
//! remaining tag names a manifest that is still there, and every blob a remaining manifest
//! names is still there. Each item leaves the registry's sight whole, by one rename of its
//! folder into the staging folder (or the trash), and is deleted there.
//!
//! Every rename and removal goes through folder handles opened from the layout's root down with
//! no symlink followed (`dirfd`): a folder swapped for a symlink after the plan fails its item,
//! and nothing outside the root is touched. An item modified since the run began (a push landed
//! on it) is kept; and right before the layer link stage, and again right before the blob stage,
//! the repositories' links are read again, so that a blob a push reused during the run is kept
//! with its links.

use crate::gc::outcome::{ItemNote, Outcome};
use crate::gc::plan::Plan;
use crate::gc::planned::{PlannedBlob, PlannedLink};
use crate::model::digest::Digest;
use crate::model::paths::Paths;
use crate::model::paths::{DATA, LINK, STAGING_DIR, TAG_CURRENT};
use crate::progress::Progress;
use crate::storage::seam::{Folder, NotDeleted, Storage};
use rayon::prelude::*;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How a sweep runs.
pub struct SweepOptions<'a> {
    /// Asked before each item; once it says yes, the sweep ends after the items in hand.
    pub stop: &'a (dyn Fn() -> bool + Sync),
    /// A trash run folder (`DIR/<run>`): items move into its `v2/` instead of being deleted.
    pub trash: Option<&'a Path>,
    /// When the run began (nanoseconds since the epoch): an item modified since is kept.
    pub since_ns: i128,
    /// Called once an item is out of the registry's sight and before it is deleted (the test
    /// suite's fault injection kills the process there).
    pub staged: &'a (dyn Fn() + Sync),
}

/// What a sweep moves items into: a trash run, or the staging folder it deletes them from.
enum Dest<F> {
    Trash(F),
    Staging(F),
}

struct Sweeper<'a, S: Storage> {
    v2: &'a Path,
    store: &'a S,
    root: &'a S::Folder,
    dest: Dest<S::Folder>,
    since_ns: i128,
    stop: &'a (dyn Fn() -> bool + Sync),
    staged: &'a (dyn Fn() + Sync),
    removed: AtomicU64,
    /// Names items get in the staging folder.
    seq: AtomicU64,
    /// `stop` said yes: items were left for a later run.
    stopped: AtomicBool,
    failures: Mutex<Vec<ItemNote>>,
    kept: Mutex<Vec<ItemNote>>,
    unreached: Mutex<Vec<PathBuf>>,
    unconfirmed: Mutex<Vec<PathBuf>>,
}

/// Layout paths relative to `docker/registry/v2`, for handles opened from its root.
fn relative_paths() -> Paths {
    Paths::new(PathBuf::new())
}

impl<S: Storage> Sweeper<'_, S> {
    /// A stage's name on its bar: what happens to the items, deleted or moved.
    fn label(&self, deleting: &'static str, moving: &'static str) -> &'static str {
        match self.dest {
            Dest::Trash(_) => moving,
            _ => deleting,
        }
    }

    fn should_stop(&self) -> bool {
        let stop = (self.stop)();
        if stop {
            self.stopped.store(true, Ordering::Relaxed);
        }
        stop
    }

    fn fail(&self, path: &Path, message: String) {
        tracing::warn!("{}: {message}", path.display());
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ItemNote {
                path: path.to_path_buf(),
                message,
            });
    }

    /// An item the sweep stopped before: the record must not list it as deleted.
    fn not_reached(&self, path: &Path) {
        (self.unreached.lock().unwrap_or_else(|e| e.into_inner())).push(path.to_path_buf());
    }

    fn keep(&self, path: &Path, message: String) {
        tracing::info!(path = %path.display(), "{message}");
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ItemNote {
                path: path.to_path_buf(),
                message,
            });
    }

    /// Opens the folder holding item `rel_item` (relative to v2); `None` when the item is gone
    /// with its folder, or after reporting why it cannot be reached.
    fn open_parent(&self, rel_item: &Path) -> Option<(S::Folder, PathBuf, String)> {
        let full = self.v2.join(rel_item);
        let (Some(parent), Some(name)) = (rel_item.parent(), rel_item.file_name()) else {
            self.fail(&full, "not an item of the layout; refused".into());
            return None;
        };
        let Some(name) = name.to_str() else {
            self.fail(&full, "name is not UTF-8; refused".into());
            return None;
        };
        match self.root.open_dir(parent) {
            Ok(d) => Some((d, self.v2.join(parent), name.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None, // gone already: a re-run
            Err(e) if crate::storage::dirfd::is_symlink_error(&e) => {
                self.fail(
                    &full,
                    "a folder on the way is a symbolic link; left alone".into(),
                );
                None
            }
            Err(e) => {
                self.fail(&full, format!("cannot open its folder: {e}"));
                None
            }
        }
    }

    /// Removes the item `rel_item` (relative to v2), guarded by the files `guard` inside it.
    /// `stop` is asked once per item: here, or by the caller of `remove_in`.
    fn remove_item(&self, rel_item: &Path, guard: &[&str]) {
        if self.should_stop() {
            return self.not_reached(&self.v2.join(rel_item));
        }
        if let Some((parent, parent_path, name)) = self.open_parent(rel_item) {
            self.remove_in(&parent, &parent_path, &name, guard);
        }
    }

    /// Takes the item folder `name` of the open folder `parent` out of the layout with one
    /// rename, so the registry sees it whole or not at all: into the trash when there is one,
    /// else into the staging folder, and deletes it there (a later run deletes what a killed one
    /// left). Kept when it, or one of the `guard` files in it, was modified since the run began.
    fn remove_in(&self, parent: &S::Folder, parent_path: &Path, name: &str, guard: &[&str]) {
        let path = parent_path.join(name);
        if !self.store.capabilities().rename {
            // Not reached: such stores remove items by `remove_group`. Refuse rather than guess.
            return self.fail(&path, "this storage cannot move items; kept".into());
        }
        let st = match parent.stat(name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return, // already gone: a re-run
            Err(e) => return self.fail(&path, format!("cannot stat: {e}")),
        };
        if st.is_symlink() {
            return self.fail(&path, "is a symbolic link; left alone".into());
        }
        let changed = st.mtime_ns() >= self.since_ns
            || guard.iter().any(|key| {
                parent
                    .stat(format!("{name}/{key}"))
                    .is_ok_and(|s| s.mtime_ns() >= self.since_ns)
            });
        if changed {
            return self.keep(
                &path,
                "modified since this run began (a push landed on it); kept".into(),
            );
        }
        let os = OsStr::new(name);
        match &self.dest {
            Dest::Trash(trash) => {
                let rel_parent = parent_path.strip_prefix(self.v2).unwrap_or(Path::new(""));
                let moved = trash
                    .make_dirs(rel_parent)
                    .and_then(|dest| parent.rename_to(os, &dest, os));
                match moved {
                    Ok(()) => {
                        self.removed.fetch_add(1, Ordering::Relaxed);
                        (self.staged)();
                    }
                    Err(e) => self.fail(&path, format!("cannot move into the trash: {e}")),
                }
            }
            Dest::Staging(staging) => {
                let staged = format!(
                    "{}-{}",
                    std::process::id(),
                    self.seq.fetch_add(1, Ordering::Relaxed)
                );
                let staged = OsStr::new(&staged);
                if let Err(e) = parent.rename_to(os, staging, staged) {
                    return self.fail(&path, format!("cannot delete: {e}"));
                }
                self.removed.fetch_add(1, Ordering::Relaxed);
                (self.staged)();
                if let Err(e) = delete_staged(staging, staged, guard) {
                    self.fail(
                        &self.v2.join(STAGING_DIR).join(staged),
                        format!("taken out of the registry's sight, but not deleted yet: {e}"),
                    );
                }
            }
        }
    }

    /// Blobs, folder by folder: each `blobs/sha256/xx` is opened once and its items leave by the
    /// same steps as in `remove_item` (a sweep's bulk, so this is where opening every parent
    /// from the root would cost most).
    fn remove_blobs(&self, progress: &dyn Progress, blobs: &[PlannedBlob<'_>]) {
        if blobs.is_empty() {
            return;
        }
        let groups: Vec<&[PlannedBlob<'_>]> = blobs
            .chunk_by(|a, b| a.blob.digest.0[0] == b.blob.digest.0[0])
            .collect();
        let bar = progress.bar(
            self.label("deleting blobs", "moving blobs to the trash"),
            blobs.len() as u64,
        );
        if !self.store.capabilities().rename {
            let folders: Vec<(PathBuf, Vec<String>)> = (groups.iter())
                .filter_map(|group| {
                    let names = group.iter().map(|b| b.blob.digest.hex()).collect();
                    let first = relative_paths().blob_dir(&group[0].blob.digest);
                    first.parent().map(|p| (p.to_path_buf(), names))
                })
                .collect();
            self.remove_folders(&folders, &[DATA], &*bar);
            return bar.finish();
        }
        groups.par_iter().for_each(|group| {
            if let Some((dir, dir_path, _)) =
                self.open_parent(&relative_paths().blob_dir(&group[0].blob.digest))
            {
                for (k, b) in group.iter().enumerate() {
                    if self.should_stop() {
                        for b in &group[k..] {
                            self.not_reached(&dir_path.join(b.blob.digest.hex()));
                        }
                        return;
                    }
                    self.remove_in(&dir, &dir_path, &b.blob.digest.hex(), &[DATA]);
                    bar.inc(1);
                }
            }
        });
        bar.finish();
    }

    /// A stage of items (paths relative to v2), each guarded by its `guard` files. On disk, item
    /// by item; on a store without rename (a bucket), the items of one folder together (one
    /// fresh listing, batched deletes), which is what keeps a run's requests near one per
    /// thousand keys instead of two per item.
    fn remove_stage(
        &self,
        progress: &dyn Progress,
        label: &'static str,
        items: Vec<PathBuf>,
        guard: &[&str],
    ) {
        if self.store.capabilities().rename {
            return self.stage(progress, label, &items, |it| self.remove_item(it, guard));
        }
        if items.is_empty() {
            return;
        }
        let bar = progress.bar(label, items.len() as u64);
        let mut groups: std::collections::BTreeMap<PathBuf, Vec<String>> = Default::default();
        for it in &items {
            let (Some(parent), Some(name)) = (it.parent(), it.file_name().and_then(|n| n.to_str()))
            else {
                self.fail(
                    &self.v2.join(it),
                    "not an item of the layout; refused".into(),
                );
                bar.inc(1);
                continue;
            };
            groups
                .entry(parent.to_path_buf())
                .or_default()
                .push(name.to_string());
        }
        let groups: Vec<(PathBuf, Vec<String>)> = groups.into_iter().collect();
        self.remove_folders(&groups, guard, &*bar);
        bar.finish();
    }

    /// On a store without rename: the items of each folder (relative to v2) judged on one
    /// fresh listing of it and deleted in batches, each item's guard keys last; the store works
    /// on many folders at once, and begins none once the run is asked to stop.
    fn remove_folders(
        &self,
        folders: &[(PathBuf, Vec<String>)],
        guard: &[&str],
        bar: &dyn crate::progress::Bar,
    ) {
        if matches!(self.dest, Dest::Trash(_)) {
            for (dir, names) in folders {
                for n in names {
                    self.fail(
                        &self.v2.join(dir).join(n),
                        "a trash is not supported on this storage; kept".into(),
                    );
                }
                bar.inc(names.len() as u64);
            }
            return;
        }
        let stop = || self.should_stop();
        let done = (self.root).remove_groups(folders, guard, self.since_ns, self.staged, &stop);
        for ((dir, names), outcome) in folders.iter().zip(done) {
            let dir_path = self.v2.join(dir);
            let results = match outcome {
                None => {
                    names
                        .iter()
                        .for_each(|n| self.not_reached(&dir_path.join(n)));
                    continue;
                }
                Some(Ok(results)) => results,
                // Gone already (a re-run): nothing of it to remove.
                Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Some(Err(e)) => {
                    for n in names {
                        self.fail(&dir_path.join(n), format!("cannot open its folder: {e}"));
                    }
                    Vec::new()
                }
            };
            for (name, r) in names.iter().zip(results) {
                let path = dir_path.join(name);
                match r {
                    Ok(true) => {
                        self.removed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => self.keep(
                        &path,
                        "modified since this run began (a push landed on it); kept".into(),
                    ),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => match e.get_ref().and_then(|i| i.downcast_ref::<NotDeleted>()) {
                        // The store's own account of a delete it sent.
                        Some(n) => {
                            if !n.seen {
                                (self.unconfirmed.lock().unwrap_or_else(|e| e.into_inner()))
                                    .push(path.clone());
                            }
                            self.fail(&path, n.to_string())
                        }
                        None => self.fail(&path, format!("cannot delete: {e}")),
                    },
                }
            }
            bar.inc(names.len() as u64);
        }
    }

    fn stage<T: Sync>(
        &self,
        progress: &dyn Progress,
        label: &'static str,
        items: &[T],
        f: impl Fn(&T) + Sync + Send,
    ) {
        if items.is_empty() {
            return;
        }
        let bar = progress.bar(label, items.len() as u64);
        items.par_iter().for_each(|it| {
            f(it);
            bar.inc(1);
        });
        bar.finish();
    }

    /// Drops from the layer link and blob stages what links written during the run name, so a
    /// push that reused an unreferenced blob keeps it; while that cannot be known, both stages
    /// are withheld.
    fn recheck(&self, layer_links: &mut Vec<PlannedLink<'_>>, blobs: &mut Vec<PlannedBlob<'_>>) {
        if layer_links.is_empty() && blobs.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let fresh = crate::stages::freshness::links_written_since(self.store, self.since_ns);
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            named = fresh.digests.len(),
            "re-read the repositories' links before the layer link and blob stages"
        );
        if !fresh.unknown.is_empty() {
            let why = format!(
                "not deleted: links written during the run cannot all be read ({})",
                fresh.unknown.join("; ")
            );
            for l in layer_links.drain(..) {
                self.keep(
                    &self
                        .v2
                        .join(relative_paths().layer_dir(l.repository, l.digest)),
                    why.clone(),
                );
            }
            for b in blobs.drain(..) {
                self.keep(
                    &self.v2.join(relative_paths().blob_dir(&b.blob.digest)),
                    why.clone(),
                );
            }
            return;
        }
        let named = |d: &Digest| fresh.digests.contains(d);
        let why = "named by a link written during this run (a push reused it); kept";
        layer_links.retain(|l| {
            let go = !named(l.digest);
            if !go {
                self.keep(
                    &self
                        .v2
                        .join(relative_paths().layer_dir(l.repository, l.digest)),
                    why.into(),
                );
            }
            go
        });
        blobs.retain(|b| {
            let go = !named(&b.blob.digest);
            if !go {
                self.keep(
                    &self.v2.join(relative_paths().blob_dir(&b.blob.digest)),
                    why.into(),
                );
            }
            go
        });
    }
}

/// Deletes an item moved into the staging folder: its one file and its folder where that is
/// all it holds (most items), else the whole tree; never through a symlink.
fn delete_staged<F: Folder>(staging: &F, staged: &OsStr, guard: &[&str]) -> io::Result<()> {
    if let [key] = guard
        && !key.contains('/')
        && let Ok(item) = staging.open_dir(Path::new(staged))
        && item.unlink(OsStr::new(key), false).is_ok()
        && staging.unlink(staged, true).is_ok()
    {
        return Ok(());
    }
    staging.remove_tree(staged)
}

impl<S: Storage> Sweeper<'_, S> {
    /// What an interrupted sweep had staged and not yet deleted, deleted now.
    fn finish_staged(&self, progress: &dyn Progress, staging: &[PathBuf]) {
        self.stage(progress, "finishing deletes", staging, |d| {
            if self.should_stop() {
                return;
            }
            let Ok(rel_item) = d.strip_prefix(self.v2) else {
                return self.fail(d, "outside the registry layout; refused".into());
            };
            if let Some((parent, _, name)) = self.open_parent(rel_item) {
                match parent.remove_tree(OsStr::new(&name)) {
                    Ok(()) => {
                        self.removed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => self.fail(d, format!("cannot finish deleting: {e}")),
                }
            }
        });
    }

    /// Link and blob folders left empty by earlier deletes; a folder that gained content since the scan stays.
    fn remove_empty(&self, progress: &dyn Progress, empty_dirs: &[PathBuf]) {
        self.stage(progress, "removing empty folders", empty_dirs, |d| {
            if self.should_stop() {
                return;
            }
            let Ok(rel_item) = d.strip_prefix(self.v2) else {
                return self.fail(d, "outside the registry layout; refused".into());
            };
            let Some((parent, _, name)) = self.open_parent(rel_item) else {
                return;
            };
            // Non-recursive: a folder that gained content since the scan stays.
            match parent.unlink(OsStr::new(&name), true) {
                Ok(()) => {
                    self.removed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => self.fail(d, format!("cannot remove empty folder: {e}")),
            }
        });
    }
}

/// Sweeps the plan in the storage.
pub fn sweep<S: Storage>(
    store: &S,
    plan: &Plan,
    progress: &dyn Progress,
    opts: &SweepOptions,
) -> Outcome {
    let mut outcome = Outcome::default();
    let (v2, root) = (store.v2(), store.top());
    let dest = match opts.trash {
        Some(run) => store
            .open_outside(run)
            .and_then(|r| r.make_dir(OsStr::new("v2")))
            .map(Dest::Trash),
        None => root.make_dir(OsStr::new(STAGING_DIR)).map(Dest::Staging),
    };
    let dest = match dest {
        Ok(d) => d,
        Err(e) => {
            let where_ = opts.trash.map_or(v2.join(STAGING_DIR), |t| t.join("v2"));
            outcome.failures.push(ItemNote {
                path: where_,
                message: format!("cannot open the folder items move into: {e}; nothing deleted"),
            });
            return outcome;
        }
    };
    let s = Sweeper {
        v2,
        store,
        root,
        dest,
        since_ns: opts.since_ns,
        stop: opts.stop,
        staged: opts.staged,
        removed: AtomicU64::new(0),
        seq: AtomicU64::new(0),
        stopped: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        kept: Mutex::new(Vec::new()),
        unreached: Mutex::new(Vec::new()),
        unconfirmed: Mutex::new(Vec::new()),
    };
    let r = relative_paths();
    // Each stage completes before the next starts: that is what keeps the layout valid.
    s.remove_stage(
        progress,
        s.label("deleting tags", "moving tags to the trash"),
        plan.tags
            .iter()
            .map(|t| r.tag_dir(&t.repository, &t.tag))
            .collect(),
        &[TAG_CURRENT],
    );
    s.remove_stage(
        progress,
        s.label(
            "deleting tag index entries",
            "moving tag index entries to the trash",
        ),
        plan.tag_index
            .iter()
            .filter_map(|l| Some(r.tag_index_dir(&l.repository, l.tag.as_ref()?, &l.digest)))
            .collect(),
        &[LINK],
    );
    s.remove_stage(
        progress,
        s.label("deleting manifests", "moving manifests to the trash"),
        plan.manifests
            .iter()
            .map(|m| r.revision_dir(&m.repository, &m.digest))
            .collect(),
        &[LINK],
    );
    // By reference: the sweep's own lists drop what the re-read keeps, without a second copy of
    // the plan's largest parts.
    let mut layer_links: Vec<PlannedLink<'_>> = plan.layer_links.iter().collect();
    let mut blobs: Vec<PlannedBlob<'_>> = plan.blobs.iter().collect();
    if !s.stopped.load(Ordering::Relaxed) {
        s.recheck(&mut layer_links, &mut blobs);
    }
    s.remove_stage(
        progress,
        s.label("deleting layer links", "moving layer links to the trash"),
        layer_links
            .iter()
            .map(|l| r.layer_dir(l.repository, l.digest))
            .collect(),
        &[LINK],
    );
    // Once more right before the blob stage, so that what is left open is only the blob
    // stage itself: a push that links a planned blob after this read and before its removal.
    if !s.stopped.load(Ordering::Relaxed) && !layer_links.is_empty() {
        s.recheck(&mut Vec::new(), &mut blobs);
    }
    s.remove_blobs(progress, &blobs);
    s.remove_stage(
        progress,
        s.label("deleting uploads", "moving uploads to the trash"),
        plan.uploads
            .iter()
            .map(|u| r.upload_dir(&u.repository, &u.id))
            .collect(),
        &[DATA],
    );
    s.finish_staged(progress, &plan.staging);
    s.remove_empty(progress, &plan.empty_dirs);
    let mut failures = s.failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort_by(|a, b| a.path.cmp(&b.path));
    let mut kept = s.kept.into_inner().unwrap_or_else(|e| e.into_inner());
    kept.sort_by(|a, b| a.path.cmp(&b.path));
    Outcome {
        removed: s.removed.into_inner(),
        failures,
        kept,
        interrupted: s.stopped.into_inner(),
        not_reached: s.unreached.into_inner().unwrap_or_else(|e| e.into_inner()),
        unconfirmed: s
            .unconfirmed
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
    }
}
