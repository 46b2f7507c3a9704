//! Reads the registry's layout from disk into the model, in parallel, never following symlinks.

use crate::catalog;
use crate::digest::Digest;
use crate::dirfd::DirHandle;
use crate::error::{Error, Result};
use crate::layout::{self, Paths};
use crate::manifest::{self, MAX_MANIFEST_BYTES};
use crate::model::{Blob, Finding, Layout, Link, Manifests, Repo, Severity, Tag, Time, Upload};
use crate::progress::Progress;
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::{self, FileType, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

/// The mtime of a path itself (not followed); "now" when it cannot be read, so grace keeps it.
fn path_mtime(path: &Path) -> Time {
    fs::symlink_metadata(path).map_or(Time::MAX, |m| mtime(&m))
}

fn mtime(meta: &Metadata) -> Time {
    match meta.modified() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as Time,
            Err(e) => -(e.duration().as_secs() as Time),
        },
        // No mtime: call it "now" so that grace keeps it rather than guess it old.
        Err(_) => Time::MAX,
    }
}

/// Collects findings, and folders a killed sweep was deleting, from many threads.
#[derive(Default)]
struct Findings(Mutex<Vec<Finding>>, Mutex<Vec<PathBuf>>);

/// The name a sweep gives an item it is deleting: out of the registry's sight at once.
pub const STAGING_PREFIX: &str = ".regsweep-deleting-";

impl Findings {
    fn add(
        &self,
        path: impl Into<PathBuf>,
        severity: Severity,
        repo: Option<&str>,
        message: impl Into<String>,
    ) {
        let f = Finding {
            path: path.into(),
            message: message.into(),
            severity,
            repository: repo.map(str::to_string),
        };
        tracing::debug!(path = %f.path.display(), "{}", f.message);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    }
    fn into_vec(self) -> Vec<Finding> {
        self.0.into_inner().unwrap_or_else(|e| e.into_inner())
    }
    fn staged(&self, path: PathBuf) {
        self.1.lock().unwrap_or_else(|e| e.into_inner()).push(path);
    }
    fn take_staged(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.1.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Lists a folder; a missing folder is empty, other errors become findings.
fn list(dir: &Path, findings: &Findings, repo: Option<&str>) -> Vec<(String, PathBuf, FileType)> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            findings.add(
                dir,
                Severity::Blocking,
                repo,
                format!("cannot list folder: {e}"),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                findings.add(
                    dir,
                    Severity::Blocking,
                    repo,
                    format!("cannot list folder: {e}"),
                );
                continue;
            }
        };
        let path = entry.path();
        if entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(STAGING_PREFIX.as_bytes())
        {
            findings.staged(path);
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            findings.add(
                &path,
                Severity::Notice,
                repo,
                "name is not UTF-8; left alone",
            );
            continue;
        };
        // symlink_metadata: a symlink is reported, never followed.
        // The entry's own type (d_type): no stat per entry, and a symlink is seen as one.
        match entry.file_type() {
            Ok(ft) => out.push((name, path, ft)),
            Err(e) => findings.add(&path, Severity::Blocking, repo, format!("cannot stat: {e}")),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn is_missing(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Reads a link file; `Err` carries what is wrong with it.
fn read_link(path: &Path) -> std::result::Result<Link, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("cannot stat link: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err("link file is a symbolic link; not followed".into());
    }
    if !meta.is_file() {
        return Err("link is not a regular file".into());
    }
    let mut buf = Vec::with_capacity(80);
    fs::File::open(path)
        .and_then(|f| f.take(256).read_to_end(&mut buf))
        .map_err(|e| format!("cannot read link: {e}"))?;
    let text = std::str::from_utf8(&buf).map_err(|_| "link is not text".to_string())?;
    // The registry writes no newline; tolerate one, since what it names is what matters.
    let text = text.trim();
    if text.is_empty() {
        return Err("link file is empty".into());
    }
    let digest =
        Digest::parse(text).ok_or_else(|| format!("link holds {text:?}, not sha256:<hex>"))?;
    Ok(Link {
        digest,
        mtime: mtime(&meta),
    })
}

/// Scans the storage root. Fails only when the root is not a registry layout at all;
/// everything wrong inside it becomes a finding.
pub fn scan(root: &Path, progress: &Progress) -> Result<Layout> {
    scan_with(root, ScanOptions::default(), progress)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Read every layer link and check it names its own folder (gc only needs the folder).
    pub verify_links: bool,
}

/// `scan`, with options.
pub fn scan_with(root: &Path, opts: ScanOptions, progress: &Progress) -> Result<Layout> {
    let meta = fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !meta.is_dir() {
        return Err(Error::NotARegistry {
            path: root.to_path_buf(),
        });
    }
    let v2 = layout::locate_v2(root).ok_or_else(|| Error::NotARegistry {
        path: root.to_path_buf(),
    })?;
    let paths = Paths::new(v2.clone());
    let findings = Findings::default();

    // Blobs first, so that each repository files its layer links by blob index as it is read
    // (16 bytes each instead of 40). Scanning both trees at once was no faster: each walk
    // keeps every worker busy on its own.
    let BlobScan {
        mut blobs,
        empty: empty_blob_dirs,
        allocated: allocated_bytes,
    } = scan_blobs(&paths, &findings, progress);
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
    blobs.par_sort_unstable_by(|a, b| a.digest.cmp(&b.digest));
    let repos = scan_repositories(&paths, &findings, opts, &blobs);
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
    })
}

/// Blobs with data, and blob folders without.
#[derive(Default)]
struct BlobScan {
    blobs: Vec<Blob>,
    empty: Vec<(Digest, Time)>,
    /// Bytes the blobs' data take on disk, in all: the only use of it, so not kept per blob.
    allocated: u64,
}

impl BlobScan {
    fn append(&mut self, other: BlobScan) {
        self.blobs.extend(other.blobs);
        self.empty.extend(other.empty);
        self.allocated += other.allocated;
    }
}

fn scan_blobs(paths: &Paths, findings: &Findings, progress: &Progress) -> BlobScan {
    let blobs_root = paths.v2.join("blobs");
    for (name, path, _) in list(&blobs_root, findings, None) {
        if name != "sha256" {
            findings.add(
                path,
                Severity::Notice,
                None,
                "not a sha256 blob folder; left alone",
            );
        }
    }
    let prefixes = list(&paths.blobs(), findings, None);
    let bar = progress.bar("scanning blobs", prefixes.len() as u64);
    // Every prefix's blobs go into one vector as soon as they are read: a vector per prefix,
    // concatenated at the end, would hold every blob twice at the peak. Growing one large
    // vector costs no copy (realloc of a mapped block remaps it) and its slack is never touched.
    let all: Mutex<BlobScan> = Mutex::default();
    prefixes.par_iter().for_each(|(prefix, path, meta)| {
        let found = scan_prefix(prefix, path, meta, findings);
        all.lock().unwrap_or_else(|e| e.into_inner()).append(found);
        bar.inc(1);
    });
    bar.finish();
    let mut all = all.into_inner().unwrap_or_else(|e| e.into_inner());
    all.blobs.shrink_to_fit();
    all
}

/// The blobs of one `blobs/sha256/xx` folder.
fn scan_prefix(prefix: &str, path: &Path, meta: &FileType, findings: &Findings) -> BlobScan {
    let mut found = BlobScan::default();
    if !meta.is_dir()
        || prefix.len() != 2
        || !prefix
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        findings.add(
            path,
            Severity::Notice,
            None,
            "not a blob prefix folder; left alone",
        );
        return found;
    }
    let handle = match DirHandle::open(path) {
        Ok(h) => h,
        Err(e) => {
            findings.add(
                path,
                Severity::Blocking,
                None,
                format!("cannot open folder: {e}"),
            );
            return found;
        }
    };
    let entries = list(path, findings, None);
    found.blobs.reserve_exact(entries.len());
    for (name, dir, meta) in entries {
        if meta.is_symlink() {
            findings.add(
                dir,
                Severity::Damage,
                None,
                "blob folder is a symbolic link; not followed, left alone",
            );
            continue;
        }
        let digest = match Digest::from_hex(&name) {
            Some(d) if name.starts_with(prefix) && meta.is_dir() => d,
            _ => {
                findings.add(
                    dir,
                    Severity::Notice,
                    None,
                    "not a blob folder (expected a folder named by its sha256); left alone",
                );
                continue;
            }
        };
        let data = dir.join("data");
        let rel = Path::new(&name).join("data");
        match handle.stat(rel.as_os_str()) {
            Ok(m) if m.regular => {
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
                None,
                "blob data is not a regular file (a symlink or folder); left alone",
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                found.empty.push((digest, path_mtime(&dir)))
            }
            Err(e) => findings.add(
                &data,
                Severity::Damage,
                None,
                format!("cannot stat blob data: {e}; left alone"),
            ),
        }
    }
    found
}

/// Finds repository folders (those with `_manifests`), then reads each in parallel.
fn scan_repositories(
    paths: &Paths,
    findings: &Findings,
    opts: ScanOptions,
    blobs: &[Blob],
) -> Vec<Repo> {
    let mut found = Vec::new();
    discover(&paths.repositories(), "", false, findings, &mut found);
    let mut repos: Vec<Repo> = found
        .into_par_iter()
        .map(|(name, dir)| scan_repo(name, &dir, findings, opts, blobs))
        .collect();
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    repos
}

/// Walks the repository tree; returns whether any repository lies at or below `dir`.
/// Folders holding no repository are reported once, at their top.
fn discover(
    dir: &Path,
    prefix: &str,
    is_repo: bool,
    findings: &Findings,
    out: &mut Vec<(String, PathBuf)>,
) -> bool {
    let mut found = is_repo;
    let mut empty = Vec::new();
    for (name, path, meta) in list(dir, findings, None) {
        if name.starts_with('_') {
            if !(is_repo && matches!(name.as_str(), "_manifests" | "_layers" | "_uploads")) {
                findings.add(
                    &path,
                    Severity::Notice,
                    None,
                    "does not belong to the layout (`_` names are the registry's own); left alone",
                );
            }
            continue;
        }
        if meta.is_symlink() {
            findings.add(
                &path,
                Severity::Damage,
                None,
                "symbolic link in the repositories tree; not followed",
            );
            continue;
        }
        if !meta.is_dir() {
            findings.add(
                &path,
                Severity::Notice,
                None,
                "a file among repositories does not belong to the layout; left alone",
            );
            continue;
        }
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if !layout::valid_repo_component(&name) {
            findings.add(
                &path,
                Severity::Notice,
                None,
                "not a valid repository name component; left alone",
            );
            continue;
        }
        let child_is_repo = path.join("_manifests").is_dir();
        if child_is_repo {
            out.push((full.clone(), path.clone()));
        }
        // Repositories nest: `acme` and `acme/app` can both exist.
        if discover(&path, &full, child_is_repo, findings, out) {
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
                None,
                "folder holds no repository (a leftover of a deleted one)",
            );
        }
    }
    found
}

/// Reads one repository, filing its layer links against `blobs` (sorted).
fn scan_repo(
    name: String,
    dir: &Path,
    findings: &Findings,
    opts: ScanOptions,
    blobs: &[Blob],
) -> Repo {
    let r = Some(name.as_str());
    let mut repo = Repo {
        name: name.clone(),
        ..Repo::default()
    };
    let manifests = dir.join("_manifests");

    // Revisions: the digest is the folder's name; the link must agree.
    for (hex, path, meta) in list(&manifests.join("revisions/sha256"), findings, r) {
        let Some(folder_digest) = Digest::from_hex(&hex).filter(|_| meta.is_dir()) else {
            findings.add(
                &path,
                Severity::Notice,
                r,
                "not a revision folder; left alone",
            );
            continue;
        };
        let link = path.join("link");
        if is_missing(&link) {
            let t = path_mtime(&path);
            repo.empty_links.push((path, t));
            continue;
        }
        match read_link(&link) {
            Ok(l) => {
                if l.digest != folder_digest {
                    findings.add(&link, Severity::Damage, r, format!("revision link names {} but sits in the folder of {folder_digest}; both are kept", l.digest));
                    repo.revisions.push(l);
                }
                repo.revisions.push(Link {
                    digest: folder_digest,
                    mtime: l.mtime,
                });
            }
            Err(e) => {
                findings.add(&link, Severity::Blocking, r, e);
                repo.unknown = true;
                // Still a root by its folder name: keeping too much is the safe side.
                repo.revisions.push(Link {
                    digest: folder_digest,
                    mtime: path_mtime(&path),
                });
            }
        }
    }

    for (tag, path, meta) in list(&manifests.join("tags"), findings, r) {
        if !meta.is_dir() {
            findings.add(&path, Severity::Notice, r, "not a tag folder; left alone");
            continue;
        }
        if !layout::valid_tag(&tag) {
            findings.add(
                &path,
                Severity::Notice,
                r,
                "not a valid tag name; kept, never deleted",
            );
        }
        let current_path = path.join("current/link");
        let current = if is_missing(&current_path) {
            findings.add(
                &path,
                Severity::Damage,
                r,
                "tag has no current/link; the registry cannot resolve it",
            );
            None
        } else {
            match read_link(&current_path) {
                Ok(l) => Some(l),
                Err(e) => {
                    findings.add(&current_path, Severity::Blocking, r, e);
                    repo.unknown = true;
                    None
                }
            }
        };
        // The current manifest's entry is left out: a kept tag never loses it, and most tags
        // have no other, so most hold no allocation here.
        let mut index: Vec<Digest> = list(&path.join("index/sha256"), findings, r)
            .into_iter()
            .filter_map(|(hex, _, _)| Digest::from_hex(&hex))
            .filter(|d| current.is_none_or(|c| c.digest != *d))
            .collect();
        index.shrink_to_fit();
        repo.tags.push(Tag {
            name: tag,
            current,
            index,
        });
    }

    let layers_dir = dir.join("_layers/sha256");
    let layers_handle = DirHandle::open(&layers_dir);
    let mut layers = Vec::new();
    for (hex, path, meta) in list(&layers_dir, findings, r) {
        let Some(digest) = Digest::from_hex(&hex).filter(|_| meta.is_dir()) else {
            findings.add(
                &path,
                Severity::Notice,
                r,
                "not a layer link folder; left alone",
            );
            continue;
        };
        let link = path.join("link");
        let stat = match &layers_handle {
            Ok(h) => h.stat(Path::new(&hex).join("link").as_os_str()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        match stat {
            Ok(m) if m.regular => {
                if opts.verify_links {
                    match read_link(&link) {
                        Ok(l) if l.digest != digest => findings.add(
                            &link,
                            Severity::Damage,
                            r,
                            format!("layer link names {} but sits in the folder of {digest}: the registry serves the wrong blob here", l.digest),
                        ),
                        Ok(_) => {}
                        Err(e) => findings.add(
                            &link,
                            Severity::Damage,
                            r,
                            format!("{e}: the registry cannot serve {digest} from this repository"),
                        ),
                    }
                }
                layers.push(Link {
                    digest,
                    mtime: m.mtime,
                })
            }
            Ok(_) => findings.add(
                path.join("link"),
                Severity::Damage,
                r,
                "layer link is not a regular file; left alone",
            ),
            Err(_) => {
                let t = path_mtime(&path);
                repo.empty_links.push((path, t))
            }
        }
    }

    (repo.layers, repo.layers_absent) = crate::model::split_layers(blobs, layers);

    for (id, path, meta) in list(&dir.join("_uploads"), findings, r) {
        if !meta.is_dir() {
            continue;
        }
        let size = walkdir::WalkDir::new(&path)
            .follow_links(false)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        let started = fs::read_to_string(path.join("startedat"))
            .ok()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
            .map(|t| t.timestamp())
            .unwrap_or_else(|| path_mtime(&path));
        repo.uploads.push(Upload { id, size, started });
    }
    // The model lives for the whole run: no growth slack in it.
    repo.tags.shrink_to_fit();
    repo.revisions.shrink_to_fit();
    repo
}

/// Reads and parses the manifest blobs that links name, in parallel; then the children those
/// name, until none is left. Each blob is read once however many repositories share it.
pub fn load_manifests(layout: &Layout, progress: &Progress) -> Manifests {
    let paths = Paths::new(layout.v2.clone());
    // The first round names manifests by blob index where it can: an eighth of the memory of
    // collecting every link's digest. Digests that are no blob (missing manifests) wait apart.
    let mut present: Vec<u32> = Vec::new();
    let mut wanted: Vec<Digest> = Vec::new();
    let named = layout.repos.iter().flat_map(|r| {
        (r.revisions.iter().map(|l| l.digest))
            .chain(r.tags.iter().filter_map(|t| t.current.map(|c| c.digest)))
    });
    for d in named {
        match layout.blobs.binary_search_by(|b| b.digest.cmp(&d)) {
            Ok(i) => present.push(i as u32),
            Err(_) => wanted.push(d),
        }
    }
    present.par_sort_unstable();
    present.dedup();
    present.shrink_to_fit();

    let mut out = catalog::Builder::new(&layout.blobs);
    let bar = progress.bar("reading manifests", present.len() as u64);
    let mut next = Vec::new();
    // In chunks, so that parsed manifests waiting to enter the catalog stay few.
    let load = |chunk: &[Digest], out: &mut catalog::Builder, next: &mut Vec<Digest>| {
        let loaded: Vec<(Vec<Digest>, catalog::Prepared)> = chunk
            .par_iter()
            .map(|d| {
                let r = read_manifest(&paths.blob_data(d)).and_then(|b| manifest::parse(&b));
                bar.inc(1);
                let children = r.as_ref().map_or(Vec::new(), |m| m.children.clone());
                (children, catalog::prepare(&layout.blobs, *d, r))
            })
            .collect();
        for (children, p) in loaded {
            next.extend(children);
            out.add_prepared(p);
        }
    };
    for chunk in present.chunks(4096) {
        let digests: Vec<Digest> = chunk
            .iter()
            .map(|&i| layout.blobs[i as usize].digest)
            .collect();
        load(&digests, &mut out, &mut next);
    }
    drop(present);
    // Then what the links name but the store lacks, and index children, until none is left.
    wanted.append(&mut next);
    while !wanted.is_empty() {
        wanted.par_sort_unstable();
        wanted.dedup();
        wanted.retain(|d| !out.contains(d));
        bar.inc_length(wanted.len() as u64);
        for chunk in wanted.chunks(4096) {
            load(chunk, &mut out, &mut next);
        }
        wanted = std::mem::take(&mut next);
    }
    bar.finish();
    out.finish()
}

fn read_manifest(path: &Path) -> std::result::Result<Vec<u8>, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            "manifest blob is missing".to_string()
        } else {
            format!("cannot stat manifest blob: {e}")
        }
    })?;
    if !meta.is_file() {
        return Err("manifest blob is not a regular file".into());
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(format!("{} bytes: too large to be a manifest", meta.len()));
    }
    fs::read(path).map_err(|e| format!("cannot read manifest blob: {e}"))
}

/// Reads the `created` time of the image config of every manifest that a tag names, for
/// policies that count age from it. Manifests without a config (indexes) have none.
pub fn load_created(layout: &Layout) -> HashMap<Digest, Time> {
    let paths = Paths::new(layout.v2.clone());
    let mut wanted: Vec<(Digest, Digest)> = layout
        .repos
        .iter()
        .flat_map(|r| r.tags.iter().filter_map(|t| t.current))
        .filter_map(|c| match layout.manifest(&c.digest) {
            Some(Ok(m)) => m.config().map(|cfg| (c.digest, cfg)),
            _ => None,
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
        .par_iter()
        .filter_map(|(m, cfg)| {
            let path = paths.blob_data(cfg);
            let meta = fs::symlink_metadata(&path).ok()?;
            // Configs are small; a huge "config" is not one worth reading for a date.
            if !meta.is_file() || meta.len() > MAX_MANIFEST_BYTES {
                return None;
            }
            let bytes = fs::read(&path).ok()?;
            manifest::parse_created(&bytes).map(|t| (*m, t))
        })
        .collect()
}

/// What `--verify-digests` found, and how fast it read.
#[derive(Debug, Default)]
pub struct Verified {
    pub blobs: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub findings: Vec<Finding>,
}

/// Hashes every blob in parallel and compares it with its name.
pub fn verify_digests(layout: &Layout, progress: &Progress) -> Verified {
    use sha2::{Digest as _, Sha256};
    let paths = Paths::new(layout.v2.clone());
    let started = std::time::Instant::now();
    let bar = progress.bytes_bar("verifying digests", layout.total_bytes());
    let findings = Findings::default();
    let bytes = std::sync::atomic::AtomicU64::new(0);
    layout.blobs.par_iter().for_each_init(
        || vec![0u8; 1 << 20],
        |buf, blob| {
            let path = paths.blob_data(&blob.digest);
            let mut hasher = Sha256::new();
            let result = fs::File::open(&path).and_then(|mut f| loop {
                let n = f.read(buf)?;
                if n == 0 {
                    return Ok(());
                }
                hasher.update(&buf[..n]);
                bar.inc(n as u64);
                bytes.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            });
            match result {
                Err(e) => findings.add(&path, Severity::Damage, None, format!("cannot read blob: {e}")),
                Ok(()) => {
                    let got = Digest(hasher.finalize().into());
                    if got != blob.digest {
                        findings.add(
                            &path,
                            Severity::Damage,
                            None,
                            format!("content hashes to {got}, not to its name: pulls of it fail verification"),
                        );
                    }
                }
            }
        },
    );
    bar.finish();
    let mut staging = findings.take_staged();
    staging.sort();
    let mut findings = findings.into_vec();
    findings.sort_by(|a, b| a.path.cmp(&b.path));
    Verified {
        blobs: layout.blobs.len() as u64,
        bytes: bytes.into_inner(),
        seconds: started.elapsed().as_secs_f64(),
        findings,
    }
}
