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
//! In memory the file stays as its bytes, with the span of each entry (8 bytes an entry): an
//! entry is decoded when asked for, and copied as it is when the cache is written again. New
//! entries are kept encoded too. So the cache costs about its file's size beside the catalog,
//! not a second catalog.

use crate::error::{Error, Result};
use crate::model::digest::Digest;
use crate::model::manifest::Manifest;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"RSWMANC\x01";

/// This build's and its parser's version: a cache from any other is not trusted.
fn version() -> String {
    format!(
        "{}/manifest-refs-{}",
        env!("CARGO_PKG_VERSION"),
        crate::model::manifest::SCHEMA
    )
}
/// A cache larger than this is not one of ours (about 50 million references).
const MAX_FILE: u64 = 2 << 30;

/// Encoded entries: their bytes, and each one's span in them, sorted by digest (the first 32
/// bytes of an entry).
#[derive(Default)]
struct Entries {
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
}

impl Entries {
    fn digest(&self, (start, _): (u32, u32)) -> &[u8] {
        &self.bytes[start as usize..start as usize + 32]
    }
    fn entry(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.bytes[start as usize..end as usize]
    }
    fn find(&self, d: &Digest) -> Option<usize> {
        self.spans
            .binary_search_by(|&s| self.digest(s).cmp(&d.0[..]))
            .ok()
    }
}

/// The cache a run reads from and adds to.
pub struct Cache {
    path: PathBuf,
    known: Entries,
    /// Parallel to `known.spans`: the run asked for it.
    used: Vec<AtomicBool>,
    added: Mutex<Entries>,
    hits: AtomicU64,
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
        let (known, ignored) = match read_file(path).map_err(refuse)? {
            None => (Entries::default(), None),
            Some(bytes) => match decode(bytes) {
                Ok(entries) => (entries, None),
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
            used: (0..known.spans.len())
                .map(|_| AtomicBool::new(false))
                .collect(),
            known,
            added: Mutex::default(),
            hits: AtomicU64::new(0),
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
        picked
            .into_iter()
            .map(|i| {
                Digest(
                    self.known
                        .digest(self.known.spans[i])
                        .try_into()
                        .expect("32 bytes"),
                )
            })
            .collect()
    }

    /// What the file says of `d` (whether or not the run asked for it).
    pub fn entry(&self, d: &Digest) -> Option<Manifest> {
        let i = self.known.find(d)?;
        read_entry(self.known.entry(self.known.spans[i]))
            .ok()
            .map(|(_, m, _)| m)
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
        // Checked whole when the file was read: this cannot fail.
        let m = read_entry(self.known.entry(self.known.spans[i])).ok()?.1;
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
        let used: Vec<(u32, u32)> = (self.known.spans.iter().zip(&self.used))
            .filter(|(_, u)| u.load(Ordering::Relaxed))
            .map(|(s, _)| *s)
            .collect();
        if added.spans.is_empty() && used.len() == self.known.spans.len() {
            return; // nothing new, nothing dropped
        }
        let mut spans = std::mem::take(&mut added.spans);
        spans.sort_by(|x, y| added.digest(*x).cmp(added.digest(*y)));
        added.spans = spans;
        // Both lists are sorted: merge them, an entry once.
        let mut all: Vec<&[u8]> = Vec::with_capacity(used.len() + added.spans.len());
        let (mut i, mut j) = (0, 0);
        while i < used.len() || j < added.spans.len() {
            let take_used = match (used.get(i), added.spans.get(j)) {
                (Some(&u), Some(&n)) => match self.known.digest(u).cmp(added.digest(n)) {
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
                all.push(self.known.entry(used[i]));
                i += 1;
            } else {
                let n = added.spans[j];
                if all.last().is_none_or(|l| l[..32] != *added.digest(n)) {
                    all.push(added.entry(n));
                }
                j += 1;
            }
        }
        let written = make_folder(&self.path)
            .and_then(|_| crate::output::write_with(&self.path, |f| write_file(f, &all)));
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

/// The file's bytes, or `None` when there is none. Opened without following a symbolic link
/// and without blocking, then checked on the open handle: a regular file, owned by this user,
/// writable by no one else, and not larger than a cache can be.
fn read_file(path: &Path) -> std::result::Result<Option<Vec<u8>>, String> {
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
    let mut bytes = Vec::with_capacity(m.len() as usize);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read ({e})"))?;
    Ok(Some(bytes))
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

fn put_list(out: &mut Vec<u8>, ds: &[Digest]) {
    out.extend_from_slice(&(ds.len() as u32).to_le_bytes());
    for d in ds {
        out.extend_from_slice(&d.0);
    }
}

fn put_opt(out: &mut Vec<u8>, d: &Option<Digest>) {
    match d {
        Some(d) => {
            out.push(1);
            out.extend_from_slice(&d.0);
        }
        None => out.push(0),
    }
}

fn put_entry(out: &mut Vec<u8>, d: &Digest, m: &Manifest) {
    out.extend_from_slice(&d.0);
    put_list(out, &m.blobs);
    put_list(out, &m.children);
    put_opt(out, &m.config);
    put_opt(out, &m.subject);
}

/// Writes the header, `entries` (sorted, encoded) and the checksum of all that, streamed.
fn write_file(file: &mut std::fs::File, entries: &[&[u8]]) -> std::io::Result<()> {
    struct Hashing<W: Write>(W, Sha256);
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.0.write(b)?;
            self.1.update(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    let mut w = Hashing(std::io::BufWriter::new(file), Sha256::new());
    w.write_all(MAGIC)?;
    let version = version();
    w.write_all(&(version.len() as u32).to_le_bytes())?;
    w.write_all(version.as_bytes())?;
    w.write_all(&(entries.len() as u64).to_le_bytes())?;
    for e in entries {
        w.write_all(e)?;
    }
    let Hashing(mut out, hasher) = w;
    out.write_all(&hasher.finalize())?;
    out.flush()
}

/// A cursor over the file's bytes; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn digest(&mut self) -> Result<Digest, String> {
        Ok(Digest(self.take(32)?.try_into().expect("32 bytes")))
    }
    fn list(&mut self) -> Result<Vec<Digest>, String> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 32 {
            return Err("a list longer than the file".into());
        }
        (0..n).map(|_| self.digest()).collect()
    }
    fn opt(&mut self) -> Result<Option<Digest>, String> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => self.digest().map(Some),
            _ => Err("bad flag".into()),
        }
    }
}

/// One entry at the start of `bytes`: its digest and manifest, and the bytes it took.
fn read_entry(bytes: &[u8]) -> Result<(Digest, Manifest, usize), String> {
    let mut r = Reader(bytes);
    let d = r.digest()?;
    let blobs = r.list()?;
    let children = r.list()?;
    let config = r.opt()?;
    let subject = r.opt()?;
    let m = Manifest {
        blobs,
        config,
        children,
        subject,
        problems: Vec::new(),
    };
    Ok((d, m, bytes.len() - r.0.len()))
}

/// Why a file's entries cannot be used.
#[derive(Debug)]
enum Undecodable {
    /// Not a regsweep cache at all: never replaced.
    Foreign,
    /// A regsweep cache that is damaged or from another build: rebuilt.
    Stale(String),
}

impl From<String> for Undecodable {
    fn from(why: String) -> Undecodable {
        Undecodable::Stale(why)
    }
}

/// Checks a whole file and finds its entries' spans; the bytes are kept as they are.
fn decode(bytes: Vec<u8>) -> std::result::Result<Entries, Undecodable> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Undecodable::Foreign);
    }
    if bytes.len() < MAGIC.len() + 32 {
        return Err(Undecodable::Stale("truncated".into()));
    }
    let body_len = bytes.len() - 32;
    let (body, sum) = bytes.split_at(body_len);
    if Sha256::digest(body)[..] != *sum {
        return Err(Undecodable::Stale(
            "checksum does not match (damaged)".into(),
        ));
    }
    if body_len > u32::MAX as usize {
        return Err(Undecodable::Stale("too large".into()));
    }
    let mut r = Reader(&body[MAGIC.len()..]);
    let vlen = r.u32()? as usize;
    let version = r.take(vlen)?;
    let ours = self::version();
    if version != ours.as_bytes() {
        return Err(Undecodable::Stale(format!(
            "written by {}, not {ours}",
            String::from_utf8_lossy(version)
        )));
    }
    let n = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
    if n > (body.len() / 32) as u64 {
        return Err(Undecodable::Stale(
            "more entries than the file holds".into(),
        ));
    }
    let mut at = body_len - r.0.len();
    let mut spans = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (_, _, len) = read_entry(&body[at..])?;
        spans.push((at as u32, (at + len) as u32));
        at += len;
    }
    if at != body_len {
        return Err(Undecodable::Stale("trailing bytes".into()));
    }
    let entries = Entries { bytes, spans };
    // Sorted and distinct, or lookups would miss: a file that is not is not ours.
    if entries
        .spans
        .windows(2)
        .any(|w| entries.digest(w[0]) >= entries.digest(w[1]))
    {
        return Err(Undecodable::Stale("entries out of order".into()));
    }
    Ok(entries)
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
