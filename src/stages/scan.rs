//! Reads the registry's layout from disk into the model, in parallel, through folder handles that
//! never follow a symlink (see `dirfd`).

pub use super::read::ScanOptions;
use super::read::*;
use super::repository::scan_repo;
use super::spilled::spill_error;
use crate::error::{Error, Result};
use crate::model::FindingKind;
use crate::model::digest::Digest;
use crate::model::paths::{self as layout, DATA, Paths, REPO_MARKERS, REPOSITORIES, STAGING_DIR};
use crate::model::{Blob, Layout, Repo, Severity, Time};
use crate::progress::Progress;
use crate::storage::seam::{Folder, Kind, Storage};
use rayon::prelude::*;
use std::io;
use std::path::Path;
use std::sync::Mutex;

/// Scans the storage. Fails only when it is not a registry layout at all; everything wrong
/// inside it becomes a finding.
pub fn scan<S: Storage>(store: &S, opts: ScanOptions, progress: &dyn Progress) -> Result<Layout> {
    let (v2, v2h) = (store.v2().to_path_buf(), store.top());
    let paths = Paths::new(v2.clone());
    let findings = Findings::default();
    super::read::new_link_wait_budget();

    // Blobs first, so that each repository files its layer links by blob index as it is read
    // (16 bytes each instead of 40). Scanning both trees at once was no faster: each walk
    // keeps every worker busy on its own.
    // An object store lists the repositories while the blob store is scanned.
    let started = std::time::Instant::now();
    let (scanned, ()) = rayon::join(
        || scan_blobs(v2h, &paths, &findings, opts.memory, progress),
        || v2h.prefetch_listings(&[REPOSITORIES.to_string()]),
    );
    let Sorted {
        blobs,
        empty: empty_blob_dirs,
        allocated: allocated_bytes,
    } = scanned?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "blob store scanned"
    );
    // Refs are 4-byte indices into the blob list, with room past its end for digests that
    // manifests name but the store lacks: refuse, rather than let an index wrap.
    const MAX_BLOBS: usize = 1 << 31;
    if blobs.len() >= MAX_BLOBS {
        return Err(Error::TooLarge {
            path: paths.blobs(),
            message: format!(
                "{} blobs; regsweep handles at most {MAX_BLOBS} (split the store)",
                blobs.len()
            ),
        });
    }
    let repos = scan_repositories(v2h, &paths, &findings, opts, &blobs)?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "repositories scanned"
    );
    if let Some(staging) = open_sub(v2h, STAGING_DIR, &v2.join(STAGING_DIR), &findings, None) {
        for (_, path, _) in list(&staging, &v2.join(STAGING_DIR), &findings, None) {
            findings.staged(path);
        }
    }
    let mut staging = findings.take_staged();
    staging.sort();
    let mut findings = findings.into_vec();
    findings.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Layout {
        v2,
        blobs,
        empty_blob_dirs,
        allocated_bytes,
        repos,
        findings,
        staging,
        // Read next, by load_manifests: they are blobs too, found by the links just scanned.
        manifests: Default::default(),
        created: Default::default(),
    })
}

/// Blobs with data, and blob folders without.
#[derive(Default)]
pub(super) struct BlobScan {
    blobs: Vec<Blob>,
    empty: Vec<(Digest, Time)>,
    /// Bytes the blobs' data take on disk, in all: the only use of it, so not kept per blob.
    allocated: u64,
}

/// The blob store as scanned: the blobs sorted by digest, held or spilled.
pub(super) struct Sorted {
    pub(super) blobs: crate::model::BlobList,
    empty: Vec<(Digest, Time)>,
    allocated: u64,
}

pub(super) fn scan_blobs<F: Folder>(
    v2h: &F,
    paths: &Paths,
    findings: &Findings,
    bound: crate::spill::Bound,
    progress: &dyn Progress,
) -> Result<Sorted> {
    let blobs_root = paths.v2.join("blobs");
    let none = || Sink::default().finish();
    let Some(blobs_dir) = open_sub(v2h, "blobs", &blobs_root, findings, None) else {
        return none();
    };
    for (name, path, _) in list(&blobs_dir, &blobs_root, findings, None) {
        if name != "sha256" {
            findings.add(
                path,
                Severity::Notice,
                FindingKind::Foreign,
                None,
                "not a sha256 blob folder; left alone",
            );
        }
    }
    let Some(sha) = open_sub(&blobs_dir, "sha256", &paths.blobs(), findings, None) else {
        return none();
    };
    let prefixes = list(&sha, &paths.blobs(), findings, None);
    let bar = progress.bar("blob prefixes", prefixes.len() as u64);
    // In waves: an object store lists the next wave's prefixes, all at once, while this
    // wave's are scanned; memory holds two waves' listings at most.
    let waves: Vec<&[(String, std::path::PathBuf, Kind)]> = prefixes.chunks(PREFIX_WAVE).collect();
    let names = |wave: &[(String, std::path::PathBuf, Kind)]| -> Vec<String> {
        (wave.iter())
            .filter(|(_, _, k)| *k == Kind::Dir)
            .map(|(n, _, _)| n.clone())
            .collect()
    };
    if let Some(first) = waves.first() {
        sha.prefetch_listings(&names(first));
    }
    let mut all = Sink::default();
    for (i, wave) in waves.iter().enumerate() {
        let mut wave = *wave;
        if i == 0 {
            // The first prefix that holds blobs, alone: its size, times the prefix folders,
            // says whether the blob list is held or spilled. A foreign file, a symlinked or an
            // empty prefix before it holds none and would make any store look empty.
            let folders = prefixes.iter().filter(|(_, _, k)| *k == Kind::Dir).count();
            let mut probed = Vec::new();
            for (prefix, path, kind) in wave.iter().take(PROBE_PREFIXES) {
                probed.push(scan_prefix(&sha, prefix, path, *kind, findings));
                if probed.last().is_some_and(|f| !f.blobs.is_empty()) {
                    break;
                }
            }
            let per = probed.last().map_or(0, |f| f.blobs.len() as u64);
            all = Sink::for_store(bound, per.saturating_mul(folders as u64))?;
            wave = &wave[probed.len()..];
            for found in probed {
                all.put(found);
                bar.inc(1);
            }
        }
        let ahead = || {
            if let Some(next) = waves.get(i + 1) {
                sha.prefetch_listings(&names(next));
            }
        };
        let spilling = all.spill.is_some();
        let sink = Mutex::new(&mut all);
        let scan = || {
            wave.par_iter().for_each(|(prefix, path, kind)| {
                let mut found = scan_prefix(&sha, prefix, path, *kind, findings);
                if spilling {
                    // Sorted here, in the worker, not under the lock `put` is called in.
                    found.blobs.sort_unstable_by_key(|b| b.digest);
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).put(found);
                bar.inc(1);
            })
        };
        rayon::join(ahead, scan);
    }
    bar.finish();
    all.finish()
}

/// At most this many leading entries of `blobs/sha256` are read, one at a time, for the first
/// that holds blobs (the automatic choice's estimate).
const PROBE_PREFIXES: usize = 16;

/// A prefix's blobs in a spill file: its first byte, where they start, how many.
type Run = (u8, u64, usize);

/// Where the blobs go as each prefix is read: one vector (a vector per prefix, concatenated at
/// the end, would hold every blob twice at the peak; growing one large vector costs no copy, as
/// realloc of a mapped block remaps it), or, in the bounded mode, a spill file of sorted runs.
#[derive(Default)]
struct Sink {
    held: Vec<Blob>,
    spill: Option<(crate::spill::SpillFile, Vec<Run>)>,
    failed: Option<std::io::Error>,
    empty: Vec<(Digest, Time)>,
    allocated: u64,
}

impl Sink {
    /// Held, or spilled when `bound` says a store of `estimate` blobs is to be.
    fn for_store(bound: crate::spill::Bound, estimate: u64) -> Result<Sink> {
        let mut sink = Sink::default();
        let available = bound.available.or_else(crate::spill::available_memory);
        let Some(why) = bound.spills(estimate, available) else {
            return Ok(sink);
        };
        let dir = crate::spill::dir();
        tracing::info!(estimate, dir = %dir.display(), "the blob list spills to disk ({why})");
        if crate::spill::in_memory(&dir) {
            tracing::warn!(
                "{}: the bounded mode's spill files go to a tmpfs, which keeps them in memory: set TMPDIR to a folder on disk",
                dir.display()
            );
        }
        let file = crate::spill::SpillFile::create(&dir, bound.disk_cap)
            .map_err(|e| spill_error(&dir, e))?;
        sink.spill = Some((file, Vec::new()));
        Ok(sink)
    }

    fn put(&mut self, found: BlobScan) {
        self.empty.extend(found.empty);
        self.allocated += found.allocated;
        let Some((file, runs)) = &mut self.spill else {
            self.held.extend(found.blobs);
            return;
        };
        let mut run = found.blobs;
        // One prefix's blobs share their first byte, so the runs in prefix order are sorted.
        let Some(first) = run.first() else { return };
        let prefix = first.digest.0[0];
        if !run.is_sorted_by_key(|b| b.digest) {
            run.sort_unstable_by_key(|b| b.digest);
        }
        if self.failed.is_none() {
            match file.append(&run) {
                Ok(start) => runs.push((prefix, start, run.len())),
                Err(e) => self.failed = Some(e),
            }
        }
    }

    fn finish(self) -> Result<Sorted> {
        let Some((file, mut runs)) = self.spill else {
            let mut blobs = self.held;
            blobs.par_sort_unstable_by(|a, b| a.digest.cmp(&b.digest));
            blobs.shrink_to_fit();
            return Ok(Sorted {
                blobs: blobs.into(),
                empty: self.empty,
                allocated: self.allocated,
            });
        };
        let dir = file.dir().to_path_buf();
        if let Some(e) = self.failed {
            return Err(spill_error(&dir, e));
        }
        // The runs were written as their prefixes were read; copied in prefix order, they are
        // the sorted list.
        runs.sort_unstable_by_key(|r| r.0);
        // One run a prefix folder, so none share a first byte; two that did (a listing that
        // named a folder twice) would not concatenate sorted.
        if let Some(w) = runs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::Io {
                path: dir,
                cause: std::io::Error::other(format!(
                    "blob prefix {:02x} was listed twice; nothing was planned or deleted: run again",
                    w[0].0
                )),
            });
        }
        let sorted = (|| {
            let mut out = crate::spill::SpillFile::create(&dir, None)?;
            let size = std::mem::size_of::<Blob>() as u64;
            for &(_, start, len) in &runs {
                out.copy_from(&file, start, len as u64 * size)?;
            }
            drop(file);
            out.map()
        })()
        .map_err(|e| spill_error(&dir, e))?;
        let len = runs.iter().map(|r| r.2).sum();
        let blobs = crate::spill::list(sorted.as_ref(), 0, len);
        Ok(Sorted {
            blobs: blobs.into(),
            empty: self.empty,
            allocated: self.allocated,
        })
    }
}

/// Blob prefixes listed ahead at once (a quarter of the 256).
const PREFIX_WAVE: usize = 64;

/// The blobs of one `blobs/sha256/xx` folder.
pub(super) fn scan_prefix<F: Folder>(
    sha: &F,
    prefix: &str,
    path: &Path,
    kind: Kind,
    findings: &Findings,
) -> BlobScan {
    let mut found = BlobScan::default();
    let hex_prefix = prefix.len() == 2
        && prefix
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    if kind == Kind::Symlink && hex_prefix {
        // The registry serves blobs through it; regsweep neither reads nor deletes there.
        findings.add(
            path,
            Severity::Damage,
            FindingKind::Symlink,
            None,
            "blob prefix folder is a symbolic link; not followed, nothing below it is deleted",
        );
        return found;
    }
    if kind != Kind::Dir || !hex_prefix {
        findings.add(
            path,
            Severity::Notice,
            FindingKind::Foreign,
            None,
            "not a blob prefix folder; left alone",
        );
        return found;
    }
    let Some(handle) = open_sub(sha, prefix, path, findings, None) else {
        return found;
    };
    // Everything below is read now: an object store lists the prefix in one go.
    let handle = match handle.whole() {
        Ok(h) => h,
        Err(e) => {
            findings.add(
                path,
                Severity::Blocking,
                FindingKind::Unreadable,
                None,
                format!("cannot list: {e}"),
            );
            return found;
        }
    };
    let entries = list(&handle, path, findings, None);
    found.blobs.reserve_exact(entries.len());
    for (name, dir, kind) in entries {
        if kind == Kind::Symlink {
            findings.add(
                dir,
                Severity::Damage,
                FindingKind::Symlink,
                None,
                "blob folder is a symbolic link; not followed, left alone",
            );
            continue;
        }
        let digest = match Digest::from_hex(&name) {
            Some(d) if name.starts_with(prefix) && kind == Kind::Dir => d,
            _ => {
                findings.add(
                    dir,
                    Severity::Notice,
                    FindingKind::Foreign,
                    None,
                    "not a blob folder (expected a folder named by its sha256); left alone",
                );
                continue;
            }
        };
        let data = dir.join(DATA);
        match handle.stat(Path::new(&name).join(DATA)) {
            Ok(m) if m.is_file() => {
                found.blobs.push(Blob {
                    digest,
                    size: m.size,
                    mtime: m.mtime,
                });
                found.allocated += m.allocated;
            }
            Ok(_) => findings.add(
                &data,
                Severity::Damage,
                FindingKind::NotARegularFile,
                None,
                "blob data is not a regular file (a symlink, folder, FIFO or device); left alone",
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Now: grace keeps a folder whose age cannot be read.
                let t = handle.stat(&name).map_or(Time::MAX, |s| s.mtime);
                found.empty.push((digest, t))
            }
            Err(e) => findings.add(
                &data,
                Severity::Damage,
                FindingKind::Unreadable,
                None,
                format!("cannot stat blob data: {e}; left alone"),
            ),
        }
    }
    found
}

/// Finds repository folders, then reads each in parallel (spilling their layer links when the
/// blob list is spilled).
pub(super) fn scan_repositories<F: Folder>(
    v2h: &F,
    paths: &Paths,
    findings: &Findings,
    opts: ScanOptions,
    blobs: &crate::model::BlobList,
) -> Result<Vec<Repo>> {
    let (names, Some(repos_dir)) = discover_repositories(v2h, paths, findings) else {
        return Ok(Vec::new());
    };
    if blobs.is_spilled() {
        let at = super::spilled::At {
            repos_dir: &repos_dir,
            paths,
            findings,
            opts,
            blobs,
        };
        return super::spilled::scan_repositories(&at, names);
    }
    let mut repos: Vec<Repo> = names
        .into_par_iter()
        .map(|name| scan_repo(&repos_dir, paths, name, findings, opts, blobs))
        .collect();
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(repos)
}

/// The repositories' names, with the `repositories` folder they lie in (listed whole: an object
/// store reads every repository's keys in one listing).
pub(super) fn discover_repositories<F: Folder>(
    v2h: &F,
    paths: &Paths,
    findings: &Findings,
) -> (Vec<String>, Option<F>) {
    let top = paths.repositories();
    let mut out = Vec::new();
    let dir = open_sub(v2h, REPOSITORIES, &top, findings, None).and_then(|d| match d.whole() {
        Ok(d) => Some(d),
        Err(e) => {
            findings.add(
                &top,
                Severity::Blocking,
                FindingKind::Unreadable,
                None,
                format!("cannot list: {e}"),
            );
            None
        }
    });
    if let Some(dir) = &dir {
        discover(dir, &top, "", findings, &mut out);
    }
    (out, dir)
}

/// Walks the repository tree below the open folder `dir` (the repository `prefix`, or the top
/// when empty); returns whether any repository lies at or below it. Folders holding no
/// repository are reported once, at their top.
pub(super) fn discover<F: Folder>(
    dir: &F,
    path: &Path,
    prefix: &str,
    findings: &Findings,
    out: &mut Vec<String>,
) -> bool {
    let entries = list(dir, path, findings, None);
    let is_repo = !prefix.is_empty()
        && entries
            .iter()
            .any(|(n, _, _)| REPO_MARKERS.contains(&n.as_str()));
    if is_repo {
        out.push(prefix.to_string());
    }
    let mut found = is_repo;
    let mut empty = Vec::new();
    for (name, path, kind) in entries {
        if name.starts_with('_') {
            if !(is_repo && REPO_MARKERS.contains(&name.as_str())) {
                findings.add(
                    &path,
                    Severity::Notice,
                    FindingKind::Foreign,
                    None,
                    "does not belong to the layout (`_` names are the registry's own); left alone",
                );
            }
            continue;
        }
        if kind == Kind::Symlink {
            findings.add(
                &path,
                Severity::Blocking, FindingKind::Symlink,
                None,
                "symbolic link in the repositories tree: the registry follows it and serves the repositories behind it; regsweep does not, so no blob is deleted while it is there",
            );
            continue;
        }
        if kind != Kind::Dir {
            findings.add(
                &path,
                Severity::Notice,
                FindingKind::Foreign,
                None,
                "a file among repositories does not belong to the layout; left alone",
            );
            continue;
        }
        if !layout::valid_repo_component(&name) {
            findings.add(
                &path,
                Severity::Notice,
                FindingKind::Foreign,
                None,
                "not a valid repository name component; left alone",
            );
            continue;
        }
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let Some(child) = open_sub(dir, &name, &path, findings, None) else {
            continue;
        };
        // Repositories nest: `acme` and `acme/app` can both exist.
        if discover(&child, &path, &full, findings, out) {
            found = true;
        } else {
            empty.push(path);
        }
    }
    if found || prefix.is_empty() {
        for path in empty {
            findings.add(
                &path,
                Severity::Notice,
                FindingKind::EmptyRepository,
                None,
                "folder holds no repository (a leftover of a deleted one)",
            );
        }
    }
    found
}
