//! A folder of the S3 backend: a key prefix, answered from one listing of its whole subtree
//! where it can, with links read by their ETags.

use super::client::*;
use crate::model::digest::Digest;
use crate::storage::seam::{Folder, Kind, ReadError, Stat};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::{ObjectStore, ObjectStoreExt};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

/// A key prefix (empty, or ending in `/`), with the listing of its whole subtree once asked for.
pub struct BucketFolder {
    pub(super) inner: Arc<Inner>,
    pub(super) prefix: String,
    /// Every object below `prefix`, sorted by key, when the subtree was listed whole (or a
    /// listing above it was).
    pub(super) snap: Option<Arc<Vec<Obj>>>,
}

impl BucketFolder {
    fn key(&self, rel: &Path) -> io::Result<String> {
        Ok(format!("{}{}", self.prefix, check_rel(rel)?))
    }

    fn listed(&self, key: &str) -> Option<Option<&Obj>> {
        let snap = self.snap.as_ref()?;
        let i = snap.partition_point(|o| o.key.as_str() < key);
        Some(snap.get(i).filter(|o| o.key == key))
    }

    /// A GET of `key`, as a stream.
    fn get(&self, key: &str) -> std::result::Result<(BucketFile, Stat), ReadError> {
        let inner = self.inner.clone();
        let got = inner
            .block(inner.store.get(&key_path(key)?))
            .map_err(|e| ReadError::from(inner.failed(e)))?;
        let meta = Obj::from(got.meta.clone());
        let st = stat_of(meta.size, meta.mtime_ns, Kind::File);
        Ok((
            BucketFile {
                inner: self.inner.clone(),
                stream: got.into_stream(),
                buf: Bytes::new(),
            },
            st,
        ))
    }
}

impl BucketFolder {
    /// A tag's `current/link`, named by its listed ETag among the digests of the tag's own
    /// history (`index/sha256/<hex>/link`, listed beside it): the registry writes the current
    /// digest into both, so a GET is needed only when none matches.
    fn current_by_etag(&self, key: &str, o: &Obj) -> Option<Vec<u8>> {
        let tag_dir = key.strip_suffix("current/link")?;
        let snap = self.snap.as_ref()?;
        let index = format!("{tag_dir}index/sha256/");
        below(snap, &index)
            .iter()
            .filter_map(|entry| entry.key[index.len()..].strip_suffix("/link"))
            .find_map(|hex| {
                let candidate = Obj {
                    key: format!("{index}{hex}/link"),
                    ..o.clone()
                };
                link_by_etag(&candidate.key, &candidate)
            })
    }
}

/// An object being read, as a stream of chunks.
pub struct BucketFile {
    pub(super) inner: Arc<Inner>,
    pub(super) stream: BoxStream<'static, object_store::Result<Bytes>>,
    pub(super) buf: Bytes,
}

impl Read for BucketFile {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.inner.block(self.stream.next()) {
                Some(chunk) => self.buf = chunk.map_err(|e| self.inner.failed(e))?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

pub(super) fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "an object store has no rename: items go by remove_many_unless_changed",
    )
}

impl Folder for BucketFolder {
    type File = BucketFile;

    fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<BucketFolder> {
        let rel = check_rel(rel.as_ref())?;
        let prefix = if rel.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{rel}/", self.prefix)
        };
        // Within a listing, a prefix with no key below it is absent; outside one it is simply
        // empty until listed (a bucket has no empty folders either way).
        if let Some(snap) = &self.snap
            && below(snap, &prefix).is_empty()
        {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(BucketFolder {
            inner: self.inner.clone(),
            prefix,
            snap: self.snap.clone(),
        })
    }

    fn entries(&self) -> io::Result<Vec<(OsString, Kind)>> {
        let mut out: Vec<(OsString, Kind)> = Vec::new();
        let mut push = |name: &str, kind: Kind| {
            if out.last().is_none_or(|(n, _)| n != name) {
                out.push((OsString::from(name), kind));
            }
        };
        match &self.snap {
            Some(snap) => {
                for o in below(snap, &self.prefix) {
                    let rest = &o.key[self.prefix.len()..];
                    match rest.split_once('/') {
                        Some((dir, _)) => push(dir, Kind::Dir),
                        None => push(rest, Kind::File),
                    }
                }
            }
            None => {
                let key = key_path(self.prefix.trim_end_matches('/'))?;
                let listed = self
                    .inner
                    .block(self.inner.store.list_with_delimiter(Some(&key)))
                    .map_err(|e| self.inner.failed(e))?;
                let mut names: Vec<(String, Kind)> = listed
                    .common_prefixes
                    .iter()
                    .map(|p| (p.filename().unwrap_or_default().to_string(), Kind::Dir))
                    .chain(listed.objects.iter().map(|o| {
                        (
                            o.location.filename().unwrap_or_default().to_string(),
                            Kind::File,
                        )
                    }))
                    .collect();
                names.sort_by(|a, b| a.0.cmp(&b.0));
                for (n, k) in names {
                    push(&n, k);
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn stat(&self, rel: impl AsRef<Path>) -> io::Result<Stat> {
        let key = self.key(rel.as_ref())?;
        if let Some(found) = self.listed(&key) {
            if let Some(o) = found {
                return Ok(stat_of(o.size, o.mtime_ns, Kind::File));
            }
            // A "folder": its newest key is its mtime, as a folder's changes with its entries.
            let snap = self.snap.as_ref().expect("listed");
            let below = below(snap, &format!("{key}/"));
            return match below.iter().map(|o| o.mtime_ns).max() {
                Some(t) => Ok(stat_of(0, t, Kind::Dir)),
                None => Err(io::Error::from(io::ErrorKind::NotFound)),
            };
        }
        match self.inner.block(self.inner.store.head(&key_path(&key)?)) {
            Ok(m) => {
                let o = Obj::from(m);
                Ok(stat_of(o.size, o.mtime_ns, Kind::File))
            }
            Err(object_store::Error::NotFound { .. }) => {
                let below = self.inner.list_all(&format!("{key}/"))?;
                match below.iter().map(|o| o.mtime_ns).max() {
                    Some(t) => Ok(stat_of(0, t, Kind::Dir)),
                    None => Err(io::Error::from(io::ErrorKind::NotFound)),
                }
            }
            Err(e) => Err(self.inner.failed(e)),
        }
    }

    fn open_file(
        &self,
        rel: impl AsRef<Path>,
    ) -> std::result::Result<(BucketFile, Stat), ReadError> {
        let key = self.key(rel.as_ref())?;
        if let Some(None) = self.listed(&key) {
            return Err(ReadError::Missing);
        }
        if let Some(got) = self.inner.ahead.take_file(&key) {
            let (bytes, o) = got.map_err(|m| m.into_read_error())?;
            let file = BucketFile {
                inner: self.inner.clone(),
                stream: futures_util::stream::empty().boxed(),
                buf: bytes,
            };
            return Ok((file, stat_of(o.size, o.mtime_ns, Kind::File)));
        }
        self.get(&key)
    }

    fn read_with_stat(
        &self,
        rel: impl AsRef<Path>,
        limit: u64,
    ) -> std::result::Result<(Vec<u8>, Stat), ReadError> {
        let key = self.key(rel.as_ref())?;
        match self.listed(&key) {
            Some(None) => return Err(ReadError::Missing),
            Some(Some(o)) if o.size > limit => return Err(ReadError::TooLarge(o.size)),
            // A link whose listed ETag is the MD5 of the link its name calls for holds exactly
            // that: no GET needed.
            // Only where the service's ETag is an MD5 (not Azure's).
            Some(Some(o)) if self.inner.etag_is_md5 => {
                if let Some(bytes) = link_by_etag(&key, o).or_else(|| self.current_by_etag(&key, o))
                {
                    return Ok((bytes, stat_of(o.size, o.mtime_ns, Kind::File)));
                }
            }
            Some(Some(_)) | None => {}
        }
        let (f, st) = self.open_file(rel)?;
        crate::storage::seam::read_bounded(f, st.size, limit).map(|buf| (buf, st))
    }

    fn tree_size(&self, name: &OsStr) -> u64 {
        let Ok(key) = self.key(Path::new(name)) else {
            return 0;
        };
        let prefix = format!("{key}/");
        match &self.snap {
            Some(snap) => below(snap, &prefix).iter().map(|o| o.size).sum(),
            None => self
                .inner
                .list_all(&prefix)
                .map_or(0, |v| v.iter().map(|o| o.size).sum()),
        }
    }

    /// No rename on an object store: the sweep uses `remove_many_unless_changed` instead.
    fn rename_to(&self, _: &OsStr, _: &BucketFolder, _: &OsStr) -> io::Result<()> {
        Err(unsupported())
    }

    fn unlink(&self, name: &OsStr, dir: bool) -> io::Result<()> {
        let key = self.key(Path::new(name))?;
        if dir {
            // A prefix with no key below it does not exist: nothing to remove.
            return Ok(());
        }
        self.inner.delete(vec![key])
    }

    fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        let key = self.key(Path::new(name))?;
        let mut keys: Vec<String> = self
            .inner
            .list_all(&format!("{key}/"))?
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.push(key);
        self.inner.delete(keys)
    }

    fn make_dir(&self, name: &OsStr) -> io::Result<BucketFolder> {
        self.make_dirs(Path::new(name))
    }

    /// Prefixes exist by their keys: nothing to create.
    fn make_dirs(&self, rel: &Path) -> io::Result<BucketFolder> {
        let rel = check_rel(rel)?;
        Ok(BucketFolder {
            inner: self.inner.clone(),
            prefix: format!("{}{rel}/", self.prefix),
            snap: None,
        })
    }

    fn remove_many_unless_changed(
        &self,
        names: &[String],
        guard: &[&str],
        since_ns: i128,
        between: &(dyn Fn() + Sync),
    ) -> Vec<io::Result<bool>> {
        let judged = super::remove::Judged { guard, since_ns };
        (self.inner).block(super::remove::remove_in(
            &self.inner,
            &self.prefix,
            names,
            judged,
            between,
        ))
    }

    fn remove_groups(
        &self,
        groups: &[(std::path::PathBuf, Vec<String>)],
        guard: &[&str],
        since_ns: i128,
        between: &(dyn Fn() + Sync),
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Vec<Option<io::Result<Vec<io::Result<bool>>>>> {
        let judged = super::remove::Judged { guard, since_ns };
        super::remove::groups(&self.inner, &self.prefix, groups, judged, between, stop)
    }

    fn whole(self) -> io::Result<BucketFolder> {
        if self.snap.is_some() {
            return Ok(self);
        }
        let snap = match self.inner.ahead.take_listing(&self.prefix) {
            Some(listed) => listed?,
            None => Arc::new(self.inner.list_wide(&self.prefix)?),
        };
        Ok(BucketFolder {
            snap: Some(snap),
            ..self
        })
    }

    fn prefetch_files(&self, rels: &[String], limit: u64) {
        let keys: Vec<String> = (rels.iter())
            .filter_map(|r| self.key(Path::new(r)).ok())
            .filter(|k| self.listed(k).is_none_or(|o| o.is_some()))
            .collect();
        self.inner.fetch_files(keys, limit);
    }

    fn prefetch_listings(&self, rels: &[String]) {
        if self.snap.is_some() {
            return;
        }
        let prefixes = (rels.iter())
            .filter_map(|r| check_rel(Path::new(r)).ok())
            .map(|r| format!("{}{r}/", self.prefix))
            .collect();
        self.inner.fetch_listings(prefixes);
    }
}

/// The content of the link at `key` when its listed ETag proves it: the registry writes a
/// link as `sha256:<hex>` of the digest its folder is named by, in one plain PUT, whose ETag is
/// the MD5 of those bytes. Anything else (another content, a multipart or encrypted upload's
/// ETag) is read instead.
pub(super) fn link_by_etag(key: &str, o: &Obj) -> Option<Vec<u8>> {
    use md5::Digest as _;
    let etag = o.etag.as_deref()?.trim_matches('"');
    let mut parts = key.rsplit('/');
    let (file, hex) = (parts.next()?, parts.next()?);
    // `.../<hex>/link`, or a tag's `.../current/link` (whose digest is not in its key).
    if file != "link" || Digest::from_hex(hex).is_none() {
        return None;
    }
    let want = format!("sha256:{hex}");
    let md5 = md5::Md5::digest(want.as_bytes());
    let md5: String = md5.iter().map(|b| format!("{b:02x}")).collect();
    (etag == md5).then(|| want.into_bytes())
}
