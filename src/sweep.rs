//! Carries out a plan on disk, in an order that leaves a valid layout wherever it is stopped.
//!
//! Tags go first, then revision links, then layer links, then blob data: at every instant a
//! remaining tag names a manifest that is still there, and every blob a remaining manifest
//! names is still there. Each item is removed by deleting its one file first (link or data),
//! so an item is either whole or gone; the folder is removed after.

use crate::dirfd::DirHandle;
use crate::layout::Paths;
use crate::plan::{BlobRemoval, Plan};
use crate::progress::Progress;
use crate::scan::STAGING_PREFIX;
use rayon::prelude::*;
use serde::Serialize;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A removal that failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub removed: u64,
    pub failures: Vec<Failure>,
    /// The sweep stopped early on request; a later run finishes the job.
    pub interrupted: bool,
}

struct Sweeper<'a> {
    paths: &'a Paths,
    stop: &'a (dyn Fn() -> bool + Sync),
    /// The trash run folder removals move into, if any.
    trash: Option<&'a Path>,
    removed: AtomicU64,
    /// `stop` said yes: items were left for a later run.
    stopped: AtomicBool,
    failures: Mutex<Vec<Failure>>,
}

impl Sweeper<'_> {
    fn should_stop(&self) -> bool {
        let stop = (self.stop)();
        if stop {
            self.stopped.store(true, Ordering::Relaxed);
        }
        stop
    }

    fn fail(&self, path: &Path, message: String) {
        tracing::warn!(path = %path.display(), "{message}");
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Failure {
                path: path.to_path_buf(),
                message,
            });
    }

    /// Takes the item folder `dir` (whose one file is `key`, if it has just one) out of the layout with one rename, so the registry sees it
    /// whole or not at all: into the trash when there is one, else to a staging name beside
    /// it, deleted right after (a later run deletes what a killed one left there).
    fn remove_item(&self, dir: &Path, key: &str) {
        if self.should_stop() {
            return;
        }
        if !self.paths.contains(dir) {
            self.fail(dir, "outside the registry layout; refused".into());
            return;
        }
        match fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => {
                self.fail(dir, "is a symbolic link; left alone".into());
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return, // already gone: a re-run
            _ => {}
        }
        if let Some(trash) = self.trash {
            let dest = match dir.strip_prefix(&self.paths.v2) {
                Ok(rel) => trash.join("v2").join(rel),
                Err(_) => return self.fail(dir, "outside the registry layout; refused".into()),
            };
            let moved = dest
                .parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|_| fs::rename(dir, &dest));
            match moved {
                Ok(()) => {
                    self.removed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.fail(dir, format!("cannot move into the trash: {e}")),
            }
            return;
        }
        let Some(name) = dir.file_name() else { return };
        let mut staged_name = std::ffi::OsString::from(STAGING_PREFIX);
        staged_name.push(name);
        let staged = dir.with_file_name(staged_name);
        if let Err(e) = fs::rename(dir, &staged) {
            self.fail(dir, format!("cannot delete: {e}"));
            return;
        }
        self.removed.fetch_add(1, Ordering::Relaxed);
        // Most items are one file in one folder: two unlinks beat a recursive walk. Anything
        // more (a tag's history, an upload) takes the walk, which never follows symlinks.
        let simple = !key.is_empty()
            && fs::remove_file(staged.join(key)).is_ok()
            && fs::remove_dir(&staged).is_ok();
        if simple {
            return;
        }
        if let Err(e) = fs::remove_dir_all(&staged) {
            self.fail(
                &staged,
                format!("taken out of the registry's sight, but not deleted yet: {e}"),
            );
        }
    }

    /// Blobs, folder by folder: each `blobs/sha256/xx` is opened once and its items leave by the
    /// same steps as in `remove_item`, named relative to it (a sweep's bulk, so this is where
    /// walking every path from `/` would cost most).
    fn remove_blobs(&self, progress: &Progress, blobs: &[BlobRemoval]) {
        if self.trash.is_some() || blobs.is_empty() {
            return self.stage(progress, "deleting blobs", blobs, |b| {
                self.remove_item(&self.paths.blob_dir(&b.digest), "data")
            });
        }
        let groups: Vec<&[BlobRemoval]> = blobs
            .chunk_by(|a, b| a.digest.0[0] == b.digest.0[0])
            .collect();
        let bar = progress.bar("deleting blobs", blobs.len() as u64);
        groups.par_iter().for_each(|group| {
            let item = self.paths.blob_dir(&group[0].digest);
            let handle = item
                .parent()
                .filter(|dir| self.paths.contains(dir))
                .map(|dir| (dir, DirHandle::open(dir)));
            for b in group.iter() {
                match &handle {
                    Some((dir, Ok(h))) => self.remove_in(h, dir, &b.digest.hex(), "data"),
                    // The folder cannot be opened: item by item, each failure reported.
                    _ => self.remove_item(&self.paths.blob_dir(&b.digest), "data"),
                }
                bar.inc(1);
            }
        });
        bar.finish();
    }

    /// `remove_item` for the item `name` of the open folder `dir`.
    fn remove_in(&self, h: &DirHandle, dir: &Path, name: &str, key: &str) {
        if self.should_stop() {
            return;
        }
        match h.stat(name.as_ref()) {
            Ok(s) if s.symlink => {
                return self.fail(&dir.join(name), "is a symbolic link; left alone".into());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return, // already gone: a re-run
            _ => {}
        }
        let staged = format!("{STAGING_PREFIX}{name}");
        if let Err(e) = h.rename(name.as_ref(), staged.as_ref()) {
            return self.fail(&dir.join(name), format!("cannot delete: {e}"));
        }
        self.removed.fetch_add(1, Ordering::Relaxed);
        let simple = h.unlink(format!("{staged}/{key}").as_ref(), false).is_ok()
            && h.unlink(staged.as_ref(), true).is_ok();
        if !simple && let Err(e) = fs::remove_dir_all(dir.join(&staged)) {
            self.fail(
                &dir.join(&staged),
                format!("taken out of the registry's sight, but not deleted yet: {e}"),
            );
        }
    }

    fn stage<T: Sync>(
        &self,
        progress: &Progress,
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
}

/// Sweeps the plan. `stop` is asked before each item; once it says yes, the sweep ends after
/// the items in hand. With `trash` (a run folder of a trash), items move there instead.
pub fn sweep(
    paths: &Paths,
    plan: &Plan,
    progress: &Progress,
    stop: &(dyn Fn() -> bool + Sync),
    trash: Option<&Path>,
) -> Outcome {
    let s = Sweeper {
        paths,
        stop,
        trash,
        removed: AtomicU64::new(0),
        stopped: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
    };
    // Each stage completes before the next starts: that is what keeps the layout valid.
    s.stage(progress, "deleting tags", &plan.tags, |t| {
        s.remove_item(&paths.tag_dir(&t.repository, &t.tag), "")
    });
    s.stage(progress, "deleting tag history", &plan.tag_index, |l| {
        if let Some(tag) = &l.tag {
            s.remove_item(&paths.tag_index_dir(&l.repository, tag, &l.digest), "link")
        }
    });
    s.stage(progress, "deleting manifests", &plan.manifests, |m| {
        s.remove_item(&paths.revision_dir(&m.repository, &m.digest), "link")
    });
    s.stage(progress, "deleting layer links", &plan.layer_links, |l| {
        s.remove_item(&paths.layer_dir(&l.repository, &l.digest), "link")
    });
    s.remove_blobs(progress, &plan.blobs);
    s.stage(progress, "deleting uploads", &plan.uploads, |u| {
        s.remove_item(&paths.upload_dir(&u.repository, &u.id), "")
    });
    s.stage(progress, "finishing deletes", &plan.staging, |d| {
        if s.should_stop() || !paths.contains(d) {
            return;
        }
        match fs::remove_dir_all(d) {
            Ok(()) => {
                s.removed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => s.fail(d, format!("cannot finish deleting: {e}")),
        }
    });
    s.stage(progress, "removing empty folders", &plan.empty_dirs, |d| {
        if s.should_stop() || !paths.contains(d) {
            return;
        }
        // Non-recursive: a folder that gained content since the scan stays.
        match fs::remove_dir(d) {
            Ok(()) => {
                s.removed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) => s.fail(d, format!("cannot remove empty folder: {e}")),
        }
    });
    let mut failures = s.failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort_by(|a, b| a.path.cmp(&b.path));
    Outcome {
        removed: s.removed.into_inner(),
        failures,
        interrupted: s.stopped.into_inner(),
    }
}
