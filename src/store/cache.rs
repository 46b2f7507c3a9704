//! regsweep's local cache of parsed manifests: what each manifest digest references.
//!
//! A manifest is content-addressed and immutable, so what manifest `D` references never
//! changes; a run that has parsed it once need not read it again, which on a bucket saves a GET
//! per manifest. The cache is only ever asked about a digest whose blob the scan just found in
//! the store, and a digest it does not hold is read from storage: an entry can never make a
//! blob look unreferenced. Only manifests that parsed cleanly are kept.
//!
//! The file is binary: a header (magic, format, regsweep's version), the entries sorted by
//! digest, and the SHA-256 of everything before it. It is written whole by rename; one that is
//! damaged, truncated, or from another version is ignored (and rebuilt by the run). It holds
//! the entries the run used or added, so it follows the registry rather than growing forever.

use crate::model::digest::Digest;
use crate::model::manifest::Manifest;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"RSWMANC\x01";
/// The parser's and this format's version: a cache from any other build is not trusted.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "/manifest-refs-1");
/// A cache larger than this is not one of ours (about 50 million references).
const MAX_FILE: u64 = 2 << 30;

/// The cache a run reads from and adds to.
pub struct Cache {
    path: PathBuf,
    known: HashMap<Digest, Manifest>,
    used: Mutex<Vec<Digest>>,
    added: Mutex<Vec<(Digest, Manifest)>>,
    hits: AtomicU64,
    /// Why the file on disk was not used, when it was there.
    pub ignored: Option<String>,
}

impl Cache {
    /// Reads the cache at `path`; an absent, damaged or foreign file gives an empty cache.
    pub fn open(path: &Path) -> Cache {
        let (known, ignored) = match std::fs::metadata(path) {
            Err(_) => (HashMap::new(), None),
            Ok(m) if m.len() > MAX_FILE => (HashMap::new(), Some("too large".to_string())),
            Ok(_) => match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| decode(&b))
            {
                Ok(map) => (map, None),
                Err(why) => (HashMap::new(), Some(why)),
            },
        };
        if let Some(why) = &ignored {
            tracing::warn!(path = %path.display(), "manifest cache ignored ({why}); rebuilding it");
        }
        Cache {
            path: path.to_path_buf(),
            known,
            used: Mutex::default(),
            added: Mutex::default(),
            hits: AtomicU64::new(0),
            ignored,
        }
    }

    /// What manifest `d` references, when the cache holds it.
    pub fn get(&self, d: &Digest) -> Option<Manifest> {
        let m = self.known.get(d)?.clone();
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.used.lock().unwrap_or_else(|e| e.into_inner()).push(*d);
        Some(m)
    }

    /// Adds a manifest read from storage (clean parses only).
    pub fn add(&self, d: Digest, m: &Manifest) {
        if m.problems.is_empty() {
            self.added
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((d, m.clone()));
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Writes what this run used and added, whole, by rename beside the file. A failure is
    /// reported, never fatal: the cache only saves reads.
    pub fn save(self) {
        let used = self.used.into_inner().unwrap_or_else(|e| e.into_inner());
        let added = self.added.into_inner().unwrap_or_else(|e| e.into_inner());
        if added.is_empty() && used.len() == self.known.len() {
            return; // nothing new, nothing dropped
        }
        let mut known = self.known;
        let mut keep: HashMap<Digest, Manifest> = used
            .into_iter()
            .filter_map(|d| known.remove_entry(&d))
            .collect();
        keep.extend(added);
        let bytes = encode(&keep);
        let written = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| {
                let tmp = crate::output::temp_beside(&self.path);
                std::fs::write(&tmp, &bytes)
                    .and_then(|_| std::fs::rename(&tmp, &self.path))
                    .inspect_err(|_| {
                        let _ = std::fs::remove_file(&tmp);
                    })
            });
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), "cannot write the manifest cache: {e}");
        }
    }
}

/// The default cache file of a root: in the user's cache folder, one per root.
pub fn default_path(root: &Path) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let id = Sha256::digest(root.as_os_str().as_encoded_bytes());
    let id: String = id[..8].iter().map(|b| format!("{b:02x}")).collect();
    Some(base.join("regsweep").join(format!("manifests-{id}.bin")))
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

fn encode(map: &HashMap<Digest, Manifest>) -> Vec<u8> {
    let mut entries: Vec<(&Digest, &Manifest)> = map.iter().collect();
    entries.sort_by_key(|(d, _)| **d);
    let mut out = Vec::with_capacity(64 + entries.len() * 200);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(VERSION.len() as u32).to_le_bytes());
    out.extend_from_slice(VERSION.as_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (d, m) in entries {
        out.extend_from_slice(&d.0);
        put_list(&mut out, &m.blobs);
        put_list(&mut out, &m.children);
        put_opt(&mut out, &m.config);
        put_opt(&mut out, &m.subject);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
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

fn decode(bytes: &[u8]) -> Result<HashMap<Digest, Manifest>, String> {
    if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a regsweep manifest cache".into());
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body)[..] != *sum {
        return Err("checksum does not match (damaged)".into());
    }
    let mut r = Reader(&body[MAGIC.len()..]);
    let vlen = r.u32()? as usize;
    let version = r.take(vlen)?;
    if version != VERSION.as_bytes() {
        return Err(format!(
            "written by {}, not {VERSION}",
            String::from_utf8_lossy(version)
        ));
    }
    let n = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
    if n > (body.len() / 32) as u64 {
        return Err("more entries than the file holds".into());
    }
    let mut map = HashMap::with_capacity(n as usize);
    for _ in 0..n {
        let d = r.digest()?;
        let blobs = r.list()?;
        let children = r.list()?;
        let config = r.opt()?;
        let subject = r.opt()?;
        map.insert(
            d,
            Manifest {
                blobs,
                config,
                children,
                subject,
                problems: Vec::new(),
            },
        );
    }
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: u8) -> Manifest {
        Manifest {
            blobs: vec![Digest([i; 32]), Digest([i + 1; 32])],
            config: Some(Digest([i; 32])),
            children: vec![Digest([i + 2; 32])],
            subject: i.is_multiple_of(2).then_some(Digest([9; 32])),
            problems: Vec::new(),
        }
    }

    #[test]
    fn round_trips_and_keeps_what_the_run_used_or_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cache.bin");
        let c = Cache::open(&path);
        assert!(c.get(&Digest([1; 32])).is_none() && c.ignored.is_none());
        c.add(Digest([1; 32]), &m(1));
        c.add(Digest([2; 32]), &m(2));
        // A manifest with problems is read again next time.
        let mut bad = m(3);
        bad.problems.push("md5:x".into());
        c.add(Digest([3; 32]), &bad);
        c.save();
        let c = Cache::open(&path);
        assert_eq!(c.get(&Digest([1; 32])), Some(m(1)));
        assert!(c.get(&Digest([3; 32])).is_none());
        assert_eq!(c.hits(), 1);
        c.save();
        // Only the entry that run used is left.
        let c = Cache::open(&path);
        assert!(c.get(&Digest([2; 32])).is_none());
        assert_eq!(c.get(&Digest([1; 32])), Some(m(1)));
    }

    #[test]
    fn a_damaged_truncated_or_foreign_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.bin");
        let mut map = HashMap::new();
        map.insert(Digest([1; 32]), m(1));
        let good = encode(&map);
        for (bytes, why) in [
            (
                {
                    let mut b = good.clone();
                    b[20] ^= 1;
                    b
                },
                "checksum",
            ),
            (good[..good.len() - 5].to_vec(), "checksum"),
            (b"hello".to_vec(), "not a regsweep"),
            (
                {
                    let mut b = good.clone();
                    let at = MAGIC.len() + 4;
                    b[at] ^= 1; // another version, with a valid checksum
                    let n = b.len() - 32;
                    let sum = Sha256::digest(&b[..n]);
                    b[n..].copy_from_slice(&sum);
                    b
                },
                "written by",
            ),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let c = Cache::open(&path);
            assert!(c.get(&Digest([1; 32])).is_none());
            assert!(
                c.ignored.as_deref().unwrap().contains(why),
                "{:?}",
                c.ignored
            );
        }
    }
}
