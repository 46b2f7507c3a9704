//! Reading the layout's pieces the same careful way everywhere: findings collected from many
//! threads, sub-folders opened and listed, links read and judged, symbolic links reported.

use crate::model::FindingKind;
use crate::model::digest::Digest;
use crate::model::paths::STAGING_PREFIX;
use crate::model::{Finding, Link, Severity};
use crate::storage::dirfd;
use crate::storage::seam::{Folder, Kind, ReadError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A link file is 71 bytes (`sha256:` and 64 hex digits); anything much larger is not one.
pub(super) const MAX_LINK_BYTES: u64 = 1024;
/// `startedat` holds one RFC 3339 time.
pub(super) const MAX_STARTEDAT_BYTES: u64 = 1024;

/// Collects findings, and folders a killed sweep was deleting, from many threads.
#[derive(Default)]
pub(super) struct Findings {
    found: Mutex<Vec<Finding>>,
    /// Items a killed sweep had moved into the staging folder and not yet deleted.
    staged: Mutex<Vec<PathBuf>>,
}

impl Findings {
    pub(super) fn add(
        &self,
        path: impl Into<PathBuf>,
        severity: Severity,
        kind: FindingKind,
        repo: Option<&str>,
        message: impl Into<String>,
    ) {
        let f = Finding {
            path: path.into(),
            message: message.into(),
            severity,
            kind,
            repository: repo.map(str::to_string),
        };
        tracing::debug!(path = %f.path.display(), "{}", f.message);
        self.found.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    }
    pub(super) fn into_vec(self) -> Vec<Finding> {
        self.found.into_inner().unwrap_or_else(|e| e.into_inner())
    }
    pub(super) fn staged(&self, path: PathBuf) {
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path);
    }
    pub(super) fn take_staged(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.staged.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Opens the folder `rel` below `base`: `None` when it is absent; a symlink on the way (which
/// the registry would follow and regsweep does not) or any other error is a blocking finding,
/// since what lies behind it is unknown.
pub(super) fn open_sub<F: Folder>(
    base: &F,
    rel: &str,
    path: &Path,
    findings: &Findings,
    repo: Option<&str>,
) -> Option<F> {
    match base.open_dir(rel) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) if dirfd::is_symlink_error(&e) => {
            findings.add(
                path,
                Severity::Blocking, FindingKind::Symlink,
                repo,
                "a symbolic link (or one on the way): the registry follows it and serves what lies there; regsweep does not, so no blob is deleted while it is there",
            );
            None
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            findings.add(
                path,
                Severity::Blocking,
                FindingKind::NotAFolder,
                repo,
                "not a folder where the layout has one",
            );
            None
        }
        Err(e) => {
            findings.add(
                path,
                Severity::Blocking,
                FindingKind::Unreadable,
                repo,
                format!("cannot open folder: {e}"),
            );
            None
        }
    }
}

/// Lists an open folder by name and kind; errors become blocking findings. Names an older
/// sweep staged are set aside to be finished.
pub(super) fn list<F: Folder>(
    dir: &F,
    path: &Path,
    findings: &Findings,
    repo: Option<&str>,
) -> Vec<(String, PathBuf, Kind)> {
    let entries = match dir.entries() {
        Ok(e) => e,
        Err(e) => {
            findings.add(
                path,
                Severity::Blocking,
                FindingKind::Unreadable,
                repo,
                format!("cannot list folder: {e}"),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    for (name, kind) in entries {
        let full = path.join(&name);
        if name
            .as_encoded_bytes()
            .starts_with(STAGING_PREFIX.as_bytes())
        {
            findings.staged(full);
            continue;
        }
        match name.into_string() {
            Ok(name) => out.push((name, full, kind)),
            Err(_) => findings.add(
                &full,
                Severity::Notice,
                FindingKind::Foreign,
                repo,
                "name is not UTF-8; left alone",
            ),
        }
    }
    out
}

/// Reads a link file below `dir`; `Err` carries what is wrong with it (`Missing` apart).
pub(super) fn read_link<F: Folder>(dir: &F, rel: &str) -> std::result::Result<Link, ReadError> {
    let (mut buf, mut st) = dir.read_with_stat(rel, MAX_LINK_BYTES)?;
    // The registry's filesystem driver writes a link in place (create, truncate, write): an
    // empty link is most likely one it is writing now. It is read again a moment later (the
    // truncate may not have dated the file yet), and while it is empty and was modified in the
    // last minute it gets about a second to finish before it counts as damaged.
    let mut wait = std::time::Duration::from_millis(1);
    while buf.is_empty()
        && (wait == std::time::Duration::from_millis(1) || just_modified(st.mtime))
        && wait < LINK_WRITE_WAIT
        && waited(wait)
    {
        std::thread::sleep(wait);
        wait *= 2;
        (buf, st) = dir.read_with_stat(rel, MAX_LINK_BYTES)?;
    }
    let bad = |m: String| ReadError::Io(io::Error::new(io::ErrorKind::InvalidData, m));
    let text = std::str::from_utf8(&buf).map_err(|_| bad("link is not text".into()))?;
    // The registry writes no newline; tolerate one, since what it names is what matters.
    let text = text.trim();
    if text.is_empty() {
        return Err(bad("link file is empty".into()));
    }
    let digest =
        Digest::parse(text).ok_or_else(|| bad(format!("link holds {text:?}, not sha256:<hex>")))?;
    Ok(Link {
        digest,
        mtime: st.mtime,
    })
}

/// How long, in all, an empty link modified a moment ago is waited for.
const LINK_WRITE_WAIT: std::time::Duration = std::time::Duration::from_millis(1024);

/// What the whole run may spend waiting for links to be written, in milliseconds: a layout
/// with many empty links, kept fresh on purpose, must not stall the run for a second each.
const LINK_WAIT_BUDGET_MS: i64 = 10_000;
static LINK_WAIT_LEFT_MS: std::sync::atomic::AtomicI64 =
    std::sync::atomic::AtomicI64::new(LINK_WAIT_BUDGET_MS);

/// A run's scan starts with the whole budget (a process may scan more than once).
pub(super) fn new_link_wait_budget() {
    LINK_WAIT_LEFT_MS.store(LINK_WAIT_BUDGET_MS, std::sync::atomic::Ordering::Relaxed);
}

/// Takes `wait` from the run's budget; false once it is spent (the link is then read as it is).
fn waited(wait: std::time::Duration) -> bool {
    let ms = wait.as_millis() as i64;
    LINK_WAIT_LEFT_MS.fetch_sub(ms, std::sync::atomic::Ordering::Relaxed) >= ms
}

/// Modified within the last minute (or dated ahead of this clock): possibly still being written.
fn just_modified(mtime: crate::model::Time) -> bool {
    mtime >= chrono::Utc::now().timestamp() - 60
}

pub(super) fn link_problem(e: &ReadError) -> String {
    match e {
        ReadError::Missing => "link file is missing".into(),
        ReadError::Io(e) if e.kind() == io::ErrorKind::InvalidData => e.to_string(),
        other => format!("link file {other}"),
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Read every layer link and check it names its own folder (gc only needs the folder).
    pub verify_links: bool,
    /// How much the run may hold in memory (the bounded mode spills the rest).
    pub memory: crate::spill::Bound,
    /// A tag left without `current/link` and modified at or after this moment is taken for a
    /// push in flight (a notice), not for damage; `None`: every such tag is damage.
    pub in_flight_from: Option<crate::model::Time>,
}

pub(super) fn symlink_finding(findings: &Findings, path: &Path, repo: Option<&str>, what: &str) {
    findings.add(
        path,
        Severity::Blocking, FindingKind::Symlink,
        repo,
        format!("{what} is a symbolic link: the registry follows it, regsweep does not; nothing of this repository is swept and no blob is deleted while it is there"),
    );
}
