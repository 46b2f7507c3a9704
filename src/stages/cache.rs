//! regsweep's local cache of parsed manifests: what each manifest digest references.
//!
//! A manifest is content-addressed and immutable, so what manifest `D` references never
//! changes; a run that has parsed it once need not read it again, which on a bucket saves a GET
//! per manifest. The cache is only ever asked about a digest whose blob the scan just found in
//! the store, and a digest it does not hold is read from storage: an entry can never make a
//! blob look unreferenced. Only manifests that parsed cleanly are kept.
//!
//! The file is binary: a header (magic, format, regsweep's version and the parser's schema
//! number), the entries sorted by digest, and the SHA-256 of everything before it. It is written
//! whole by rename; one that is damaged, truncated, or from another version or parser is ignored
//! (and rebuilt by the run). It holds the entries the run used or added, so it follows the
//! registry rather than growing forever.
//!
//! An entry decides what a manifest keeps, so the file is treated as ssh treats its keys: it
//! must be a regular file owned by the running user and writable by no one else, in a folder
//! others cannot write (the default folder is made 0700); it is opened without following a
//! symbolic link and without blocking (a FIFO there is refused, never waited on), and anything
//! there that is not a regsweep cache is refused, never replaced. The trailer is a checksum,
//! not a signature: whoever can write the file as the user could delete the registry anyway.
//! Before a sweep, the run re-reads a random sample of the entries it used from storage
//! (`sample_used`; 64, or 1% of them); one mismatch and the whole cache is dropped and every
//! manifest is read again.
//!
//! The file is not held in memory: it is read once, as a stream, to check it and to note where
//! each entry lies (its digest, its span and a hash of its bytes, 56 bytes an entry). An entry is
//! read again from the open file when asked for, and its bytes must hash as they did when the
//! file was checked, or it counts as absent and the manifest is read from storage. The entries
//! this run used are copied the same way when the cache is written again. New entries are kept
//! encoded in memory.

use crate::error::{Error, Result};
use crate::model::digest::Digest;
use crate::model::manifest::Manifest;
use sha2::{Digest as _, Sha256};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[path = "cache_file.rs"]
mod file;
use file::{Known, Undecodable, decode, entry_sum, put_entry, read_entry, write_file};

/// A cache larger than this is not one of ours (about 50 million references).
const MAX_FILE: u64 = 2 << 30;

/// Entries this run added, encoded: their bytes, and each one's span in them.
#[derive(Default)]
struct Added {
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
}

impl Added {
    fn digest(&self, (start, _): (u32, u32)) -> &[u8] {
        &self.bytes[start as usize..start as usize + 32]
    }
    fn entry(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.bytes[start as usize..end as usize]
    }
}

/// The file this run opened, and its entries sorted by digest.
#[derive(Default)]
struct Entries {
    file: Option<std::fs::File>,
    known: Vec<Known>,
}

impl Entries {
    fn find(&self, d: &Digest) -> Option<usize> {
        self.known.binary_search_by(|k| k.digest.cmp(d)).ok()
    }
    /// The bytes of entry `i`, read again from the file; `None` when they are no longer what
    /// was checked (the file was written in place since).
    fn read(&self, i: usize) -> Option<Vec<u8>> {
        let (k, file) = (&self.known[i], self.file.as_ref()?);
        let mut bytes = vec![0; k.len as usize];
        file.read_exact_at(&mut bytes, k.at.into()).ok()?;
        (entry_sum(&bytes) == k.sum).then_some(bytes)
    }
}

/// The cache a run reads from and adds to.
pub struct Cache {
    path: PathBuf,
    known: Entries,
    /// Parallel to `known.known`: the run asked for it.
    used: Vec<AtomicBool>,
    added: Mutex<Added>,
    hits: AtomicU64,
    /// An entry read again did not hash as it did when the file was checked.
    changed: AtomicBool,
    /// Why the file on disk was not used, when it was there.
    pub ignored: Option<String>,
}

impl Cache {
    /// Reads the cache at `path`: absent, damaged or from another build, an empty cache (the
    /// run rebuilds it); a file that is not safe to trust or not a regsweep cache at all (a
    /// FIFO, a device, a symbolic link, another user's or a group-writable file, a text file) is
    /// refused with the reason, and left as it is.
    pub fn open(path: &Path) -> Result<Cache> {
        let refuse = |why: String| Error::Cache {
            path: path.to_path_buf(),
            message: format!("{why}; give another --cache FILE, remove it, or run with --no-cache"),
        };
        check_folder(path).map_err(refuse)?;
        let (known, ignored) = match open_file(path).map_err(refuse)? {
            None => (Entries::default(), None),
            Some((file, len)) => match decode(&file, len) {
                Ok(known) => (
                    Entries {
                        file: Some(file),
                        known,
                    },
                    None,
                ),
                Err(Undecodable::Foreign) => {
                    return Err(refuse("exists and is not a regsweep manifest cache".into()));
                }
                Err(Undecodable::Stale(why)) => (Entries::default(), Some(why)),
            },
        };
        if let Some(why) = &ignored {
            tracing::warn!(
                "{}: manifest cache ignored ({why}); rebuilding it",
                path.display()
            );
        }
        Ok(Cache {
            path: path.to_path_buf(),
            used: (0..known.known.len())
                .map(|_| AtomicBool::new(false))
                .collect(),
            known,
            added: Mutex::default(),
            hits: AtomicU64::new(0),
            changed: AtomicBool::new(false),
            ignored,
        })
    }

    /// Up to `n` digests, drawn at random, of the entries this run took from the file.
    pub fn sample_used(&self, n: usize) -> Vec<Digest> {
        let used: Vec<usize> = (0..self.used.len())
            .filter(|&i| self.used[i].load(Ordering::Relaxed))
            .collect();
        let mut seed = random_seed();
        let mut picked: Vec<usize> = if used.len() <= n {
            used
        } else {
            // Floyd's sampling: n distinct positions, each equally likely.
            let mut chosen = std::collections::BTreeSet::new();
            for j in used.len() - n..used.len() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let t = (seed % (j as u64 + 1)) as usize;
                if !chosen.insert(used[t]) {
                    chosen.insert(used[j]);
                }
            }
            chosen.into_iter().collect()
        };
        picked.sort_unstable();
        (picked.into_iter())
            .map(|i| self.known.known[i].digest)
            .collect()
    }

    /// Entry `i` of the file, decoded; `None` (noted) when its bytes changed since the check.
    fn decoded(&self, i: usize) -> Option<Manifest> {
        let bytes = self.known.read(i);
        if bytes.is_none() && !self.changed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{}: the manifest cache no longer reads as it did when checked (written to since, or unreadable); what it no longer says is read from storage",
                self.path.display()
            );
        }
        // Checked whole when the file was read, and the same bytes now: this cannot fail.
        read_entry(&bytes?).ok().map(|(_, m, _)| m)
    }

    /// What the file says of `d` (whether or not the run asked for it).
    pub fn entry(&self, d: &Digest) -> Option<Manifest> {
        self.decoded(self.known.find(d)?)
    }

    /// Drops the file: one of its entries disagreed with storage, so none is trusted.
    pub fn discard(self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(
                "{}: cannot remove the manifest cache: {e}",
                self.path.display()
            );
        }
    }

    /// Whether the file holds `d` (without counting it as used).
    pub fn holds(&self, d: &Digest) -> bool {
        self.known.find(d).is_some()
    }

    /// What manifest `d` references, when the cache holds it.
    pub fn get(&self, d: &Digest) -> Option<Manifest> {
        let i = self.known.find(d)?;
        let m = self.decoded(i)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.used[i].store(true, Ordering::Relaxed);
        Some(m)
    }

    /// Adds a manifest read from storage (clean parses only).
    pub fn add(&self, d: Digest, m: &Manifest) {
        if m.problems.is_empty() {
            let mut added = self.added.lock().unwrap_or_else(|e| e.into_inner());
            let start = added.bytes.len() as u32;
            put_entry(&mut added.bytes, &d, m);
            let end = added.bytes.len() as u32;
            added.spans.push((start, end));
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Writes what this run used and added, whole, by rename beside the file. A failure is
    /// reported, never fatal: the cache only saves reads.
    pub fn save(self) {
        let mut added = self.added.into_inner().unwrap_or_else(|e| e.into_inner());
        let used: Vec<usize> = (0..self.used.len())
            .filter(|&i| self.used[i].load(Ordering::Relaxed))
            .collect();
        if added.spans.is_empty() && used.len() == self.known.known.len() {
            return; // nothing new, nothing dropped
        }
        let mut spans = std::mem::take(&mut added.spans);
        spans.sort_by(|x, y| added.digest(*x).cmp(added.digest(*y)));
        added.spans = spans;
        let all = merge(&self.known, &used, &added);
        let entry = |e: &Source| match *e {
            Source::Known(i) => self
                .known
                .read(i)
                .map(std::borrow::Cow::Owned)
                .ok_or_else(|| std::io::Error::other("the file changed while this run read it")),
            Source::Added(n) => Ok(std::borrow::Cow::Borrowed(added.entry(n))),
        };
        let written = make_folder(&self.path).and_then(|_| {
            crate::output::write_with(&self.path, |f| {
                write_file(f, all.len(), all.iter().map(entry))
            })
        });
        if let Err(e) = written {
            // Once a run (save is its last step): the run itself is whole, only later ones
            // read more.
            tracing::warn!(
                "{}: cannot write the manifest cache ({}); later runs read every manifest again: give --cache FILE in a folder you can write, or --no-cache",
                self.path.display(),
                crate::error::io_cause(&e)
            );
        }
    }
}

/// Where an entry of the next file comes from.
enum Source {
    Known(usize),
    Added((u32, u32)),
}

/// The entries the run used (positions in the file, sorted) and added (sorted), merged in
/// order, each digest once: a manifest read anew is the same entry as the file's.
fn merge(known: &Entries, used: &[usize], added: &Added) -> Vec<Source> {
    let mut all: Vec<Source> = Vec::with_capacity(used.len() + added.spans.len());
    let last = |all: &[Source]| match all.last() {
        Some(Source::Known(i)) => Some(&known.known[*i].digest.0[..]),
        Some(Source::Added(n)) => Some(added.digest(*n)),
        None => None,
    };
    let (mut i, mut j) = (0, 0);
    while i < used.len() || j < added.spans.len() {
        let take_used = match (used.get(i), added.spans.get(j)) {
            (Some(&u), Some(&n)) => match known.known[u].digest.0[..].cmp(added.digest(n)) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => {
                    j += 1; // the same manifest: the same entry
                    true
                }
            },
            (Some(_), None) => true,
            _ => false,
        };
        if take_used {
            all.push(Source::Known(used[i]));
            i += 1;
        } else {
            let n = added.spans[j];
            if last(&all) != Some(added.digest(n)) {
                all.push(Source::Added(n));
            }
            j += 1;
        }
    }
    all
}

/// A cache file's folder must be writable by its owner alone (or sticky, as /tmp): otherwise
/// another user could put a file of their choosing in its place between two runs.
fn check_folder(path: &Path) -> std::result::Result<(), String> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match std::fs::metadata(parent) {
        Err(_) => Ok(()), // made 0700 when the cache is first written
        Ok(m) if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 => Err(format!(
            "its folder {} is writable by other users",
            parent.display()
        )),
        Ok(_) => Ok(()),
    }
}

/// Creates the folder of a cache file (mode 0700) where it is missing.
fn make_folder(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() && !p.exists() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p),
        _ => Ok(()),
    }
}

/// The file, open, and its length; `None` when there is none. Opened without following a symbolic link
/// and without blocking, then checked on the open handle: a regular file, owned by this user,
/// writable by no one else, and not larger than a cache can be.
fn open_file(path: &Path) -> std::result::Result<Option<(std::fs::File, u64)>, String> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err("is a symbolic link, not a regular file".into());
        }
        Err(e) => return Err(format!("cannot be opened ({e})")),
    };
    let m = file
        .metadata()
        .map_err(|e| format!("cannot be read ({e})"))?;
    if !m.file_type().is_file() {
        return Err("is not a regular file (a FIFO, device or folder)".into());
    }
    let me = rustix::process::geteuid().as_raw();
    if m.uid() != me {
        return Err(format!(
            "is owned by uid {}, not by the user running regsweep (uid {me})",
            m.uid()
        ));
    }
    if m.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "is writable by group or others (mode {:o}); chmod go-w it",
            m.permissions().mode() & 0o7777
        ));
    }
    if m.len() > MAX_FILE {
        return Err("is larger than a manifest cache can be".into());
    }
    Ok(Some((file, m.len())))
}

/// A seed for sampling, different from run to run.
fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let h = Sha256::digest(format!("{t} {}", std::process::id()));
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) | 1
}

/// The default cache file of a root: in the user's cache folder, one per root.
pub fn default_path(root: &Path) -> Option<PathBuf> {
    let id = Sha256::digest(root.as_os_str().as_encoded_bytes());
    let id: String = id[..8].iter().map(|b| format!("{b:02x}")).collect();
    let file = format!("manifests-{id}.bin");
    // systemd's CacheDirectory= (the folder itself, the first of a list): a unit under
    // ProtectSystem=strict keeps its cache there.
    let unit = std::env::var("CACHE_DIRECTORY").ok();
    if let Some(dir) = unit.as_deref().and_then(|v| v.split(':').next())
        && !dir.is_empty()
    {
        return Some(Path::new(dir).join(file));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("regsweep").join(file))
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
