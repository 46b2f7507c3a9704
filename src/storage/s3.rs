//! The object-store backend of the storage seam: the layout the registry's `s3` driver writes in
//! an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2, moto), read through the `object_store`
//! crate.
//!
//! The bucket holds the same names as the disk, as keys below `<rootdirectory>/docker/registry/v2/`;
//! there are no folder objects and no symlinks. A folder here is a key prefix. The scan asks for
//! whole subtrees (`Folder::whole`): each of the 256 blob prefixes, and the repositories, are
//! listed once, recursively, in pages of 1000 keys, and everything below is answered from that
//! listing. A digest is read from a key's name; a link's content is checked against its name by
//! the listed ETag (the MD5 of a plain upload), a tag's current link among its history's
//! digests, and read (GET) only where that does not settle it. Manifests are read by GET.
//!
//! `object_store` is async; its runtime is private to this file: each call blocks the calling
//! thread (a rayon worker) until its request is done, so the stages above stay as they are.
//! Every HTTP request is counted by kind, and retried by the crate on 5xx, throttling and
//! connection errors (with backoff, for at most 30 s); one that still fails is an error or a
//! finding, never a silent "absent".
//!
//! Changing a bucket: there is no rename, so items go by `remove_many_unless_changed`, a folder
//! of them at a time (a fresh listing of the folder, then deletes in batches of up to 1000 keys,
//! the guards last); the lock is a create-only object. A trash is refused (it would copy
//! every blob), and with it `restore`.

use crate::error::{Error, Result};
use crate::model::Time;
use crate::model::digest::Digest;
use crate::storage::seam::{Capabilities, Folder, Kind, ReadError, Requests, Stat, Storage};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse};
use object_store::client::{HttpService, ReqwestConnector};
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A registry's storage in a bucket: what its `s3` driver config says (or `--root s3://...`).
/// Credentials left out here come from the `AWS_*` environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Root {
    pub bucket: String,
    /// The driver's `rootdirectory` without its slashes: keys start with `<prefix>/docker/`.
    pub prefix: String,
    /// The driver's `regionendpoint` (an S3-compatible server; path-style requests).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
}

impl S3Root {
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The key prefix of the storage root: empty, or `prefix/`.
    pub fn key_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }
}

/// Requests made, by kind, counted at the HTTP layer (so list pages and retries count too).
#[derive(Debug, Default)]
struct Counts {
    list: AtomicU64,
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    copy: AtomicU64,
    delete: AtomicU64,
}

impl Counts {
    fn count(&self, req: &HttpRequest) {
        let query = req.uri().query().unwrap_or("");
        let counter = match *req.method() {
            http::Method::GET if query.contains("list-type=") || query.contains("delimiter=") => {
                &self.list
            }
            http::Method::GET if req.uri().path().trim_matches('/').contains('/') => &self.get,
            // A GET of the bucket itself is a listing (ListObjects v1).
            http::Method::GET => &self.list,
            http::Method::HEAD => &self.head,
            http::Method::DELETE => &self.delete,
            http::Method::POST if query.contains("delete") => &self.delete,
            http::Method::PUT if req.headers().contains_key("x-amz-copy-source") => &self.copy,
            _ => &self.put,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(method = %req.method(), uri = %req.uri(), "s3 request");
    }

    fn snapshot(&self) -> Requests {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Requests {
            list: n(&self.list),
            get: n(&self.get),
            head: n(&self.head),
            put: n(&self.put),
            copy: n(&self.copy),
            delete: n(&self.delete),
        }
    }
}

/// The crate's own HTTP client, with every request counted on its way out.
#[derive(Debug)]
struct Counted {
    inner: HttpClient,
    counts: Arc<Counts>,
}

#[async_trait::async_trait]
impl HttpService for Counted {
    async fn call(&self, req: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        self.counts.count(&req);
        self.inner.execute(req).await
    }
}

#[derive(Debug)]
struct CountingConnector(Arc<Counts>);

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Counted {
            inner,
            counts: self.0.clone(),
        }))
    }
}

/// The client, its private runtime and the request counts, shared by every folder.
struct Inner {
    store: AmazonS3,
    rt: tokio::runtime::Runtime,
    counts: Arc<Counts>,
    /// `s3://bucket/prefix`, for messages.
    url: String,
}

impl Inner {
    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Deletes `keys`, in batches of up to 1000 per request; a key already gone is no error.
    fn delete(&self, keys: Vec<String>) -> io::Result<()> {
        let keys: Vec<Key> = keys
            .iter()
            .map(|k| key_path(k))
            .collect::<io::Result<_>>()?;
        let paths = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
        self.block(async {
            let mut results = self.store.delete_stream(paths);
            while let Some(r) = results.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(io_error(e)),
                }
            }
            Ok(())
        })
    }

    /// Deletes `rest`, calls `between`, then deletes `guards`: the registry serves an item whole
    /// until its guard goes.
    fn delete_guard_last(
        &self,
        rest: Vec<String>,
        guards: Vec<String>,
        between: &dyn Fn(),
    ) -> io::Result<()> {
        if !rest.is_empty() {
            self.delete(rest)?;
        }
        between();
        if !guards.is_empty() {
            self.delete(guards)?;
        }
        Ok(())
    }

    /// Every object below `prefix` (a key prefix ending in `/`), sorted by key.
    fn list_all(&self, prefix: &str) -> io::Result<Vec<Obj>> {
        let key = key_path(prefix.trim_end_matches('/'))?;
        let mut out: Vec<Obj> = self.block(async {
            let mut stream = self.store.list(Some(&key));
            let mut out = Vec::new();
            while let Some(meta) = stream.next().await {
                out.push(Obj::from(meta.map_err(io_error)?));
            }
            Ok::<_, io::Error>(out)
        })?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// What a listing says of one object.
#[derive(Debug, Clone)]
struct Obj {
    key: String,
    size: u64,
    mtime_ns: i128,
    etag: Option<String>,
}

impl From<ObjectMeta> for Obj {
    fn from(m: ObjectMeta) -> Obj {
        Obj {
            key: m.location.to_string(),
            size: m.size,
            // S3 gives LastModified to the second: taken as the end of that second, so that
            // "written since the run began" errs towards keeping when both fall in one second.
            mtime_ns: i128::from(m.last_modified.timestamp()) * 1_000_000_000 + 999_999_999,
            etag: m.e_tag,
        }
    }
}

fn stat_of(size: u64, mtime_ns: i128, kind: Kind) -> Stat {
    Stat {
        kind,
        size,
        mtime: (mtime_ns.div_euclid(1_000_000_000)) as i64,
        mtime_nsec: (mtime_ns.rem_euclid(1_000_000_000)) as i64,
        allocated: size,
        dev: 0,
        ino: 0,
    }
}

fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            io::Error::new(io::ErrorKind::PermissionDenied, e)
        }
        other => io::Error::other(other),
    }
}

/// The crate's path for a key exactly as listed or built: `Key::from` would percent-encode
/// `%` and non-ASCII bytes a second time, and so ask for another key than the listing named.
fn key_path(key: &str) -> io::Result<Key> {
    Key::parse(key).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{key:?}: not a key regsweep can address ({e})"),
        )
    })
}

/// A relative name below a folder: plain components only, as on disk.
fn check_rel(rel: &Path) -> io::Result<String> {
    let text = rel
        .to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "name is not UTF-8"))?;
    if text.is_empty() {
        return Ok(String::new());
    }
    if text
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{text:?}: not a plain relative name"),
        ));
    }
    Ok(text.to_string())
}

/// A key prefix (empty, or ending in `/`), with the listing of its whole subtree once asked for.
pub struct S3Folder {
    inner: Arc<Inner>,
    prefix: String,
    /// Every object below `prefix`, sorted by key, when the subtree was listed whole (or a
    /// listing above it was).
    snap: Option<Arc<Vec<Obj>>>,
}

impl S3Folder {
    fn key(&self, rel: &Path) -> io::Result<String> {
        Ok(format!("{}{}", self.prefix, check_rel(rel)?))
    }

    /// The listed objects below `prefix` (which must lie below this folder's).
    fn below<'a>(snap: &'a [Obj], prefix: &str) -> &'a [Obj] {
        let start = snap.partition_point(|o| o.key.as_str() < prefix);
        let end = start + snap[start..].partition_point(|o| o.key.starts_with(prefix));
        &snap[start..end]
    }

    fn listed(&self, key: &str) -> Option<Option<&Obj>> {
        let snap = self.snap.as_ref()?;
        let i = snap.partition_point(|o| o.key.as_str() < key);
        Some(snap.get(i).filter(|o| o.key == key))
    }

    /// A GET of `key`, as a stream.
    fn get(&self, key: &str) -> std::result::Result<(S3File, Stat), ReadError> {
        let inner = self.inner.clone();
        let got = inner
            .block(inner.store.get(&key_path(key)?))
            .map_err(|e| ReadError::from(io_error(e)))?;
        let meta = Obj::from(got.meta.clone());
        let st = stat_of(meta.size, meta.mtime_ns, Kind::File);
        Ok((
            S3File {
                inner: self.inner.clone(),
                stream: got.into_stream(),
                buf: Bytes::new(),
            },
            st,
        ))
    }
}

impl S3Folder {
    /// A tag's `current/link`, named by its listed ETag among the digests of the tag's own
    /// history (`index/sha256/<hex>/link`, listed beside it): the registry writes the current
    /// digest into both, so a GET is needed only when none matches.
    fn current_by_etag(&self, key: &str, o: &Obj) -> Option<Vec<u8>> {
        let tag_dir = key.strip_suffix("current/link")?;
        let snap = self.snap.as_ref()?;
        let index = format!("{tag_dir}index/sha256/");
        S3Folder::below(snap, &index)
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
pub struct S3File {
    inner: Arc<Inner>,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    buf: Bytes,
}

impl Read for S3File {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.inner.block(self.stream.next()) {
                Some(chunk) => self.buf = chunk.map_err(io_error)?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "an object store has no rename: items go by remove_many_unless_changed",
    )
}

impl Folder for S3Folder {
    type File = S3File;

    fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<S3Folder> {
        let rel = check_rel(rel.as_ref())?;
        let prefix = if rel.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{rel}/", self.prefix)
        };
        // Within a listing, a prefix with no key below it is absent; outside one it is simply
        // empty until listed (a bucket has no empty folders either way).
        if let Some(snap) = &self.snap
            && S3Folder::below(snap, &prefix).is_empty()
        {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(S3Folder {
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
                for o in S3Folder::below(snap, &self.prefix) {
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
                    .map_err(io_error)?;
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
            let below = S3Folder::below(snap, &format!("{key}/"));
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
            Err(e) => Err(io_error(e)),
        }
    }

    fn open_file(&self, rel: impl AsRef<Path>) -> std::result::Result<(S3File, Stat), ReadError> {
        let key = self.key(rel.as_ref())?;
        if let Some(None) = self.listed(&key) {
            return Err(ReadError::Missing);
        }
        self.get(&key)
    }

    fn read_small(
        &self,
        rel: impl AsRef<Path>,
        limit: u64,
    ) -> std::result::Result<Vec<u8>, ReadError> {
        self.read_with_stat(rel, limit).map(|(bytes, _)| bytes)
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
            Some(Some(o)) => {
                if let Some(bytes) = link_by_etag(&key, o).or_else(|| self.current_by_etag(&key, o))
                {
                    return Ok((bytes, stat_of(o.size, o.mtime_ns, Kind::File)));
                }
            }
            None => {}
        }
        let (f, st) = self.get(&key)?;
        if st.size > limit {
            return Err(ReadError::TooLarge(st.size));
        }
        let mut buf = Vec::with_capacity(st.size as usize);
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(ReadError::Io)?;
        if buf.len() as u64 > limit {
            return Err(ReadError::TooLarge(buf.len() as u64));
        }
        Ok((buf, st))
    }

    fn tree_size(&self, name: &OsStr) -> u64 {
        let Ok(key) = self.key(Path::new(name)) else {
            return 0;
        };
        let prefix = format!("{key}/");
        match &self.snap {
            Some(snap) => S3Folder::below(snap, &prefix).iter().map(|o| o.size).sum(),
            None => self
                .inner
                .list_all(&prefix)
                .map_or(0, |v| v.iter().map(|o| o.size).sum()),
        }
    }

    /// No rename on an object store: the sweep uses `remove_many_unless_changed` instead.
    fn rename_to(&self, _: &OsStr, _: &S3Folder, _: &OsStr) -> io::Result<()> {
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

    fn make_dir(&self, name: &OsStr) -> io::Result<S3Folder> {
        self.make_dirs(Path::new(name))
    }

    /// Prefixes exist by their keys: nothing to create.
    fn make_dirs(&self, rel: &Path) -> io::Result<S3Folder> {
        let rel = check_rel(rel)?;
        Ok(S3Folder {
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
        between: &dyn Fn(),
    ) -> Vec<io::Result<bool>> {
        // Listed now, not from the scan: what a push wrote since must be seen. One fresh
        // listing of the folder stands for one per item.
        let listed = match self.inner.list_all(&self.prefix) {
            Ok(l) => l,
            Err(e) => {
                let why = e.to_string();
                return names
                    .iter()
                    .map(|_| Err(io::Error::other(why.clone())))
                    .collect();
            }
        };
        let (mut rest, mut guards) = (Vec::new(), Vec::new());
        let mut results: Vec<io::Result<bool>> = names
            .iter()
            .map(|name| {
                let item = format!("{}{name}/", self.prefix);
                let keys = S3Folder::below(&listed, &item);
                judge(keys, &item, guard, since_ns, &mut rest, &mut guards)
            })
            .collect();
        if let Err(e) = self.inner.delete_guard_last(rest, guards, between) {
            // Which of the batch went is unknown: none is reported removed.
            let why = e.to_string();
            for r in results.iter_mut().filter(|r| matches!(r, Ok(true))) {
                *r = Err(io::Error::other(why.clone()));
            }
        }
        results
    }

    fn whole(self) -> io::Result<S3Folder> {
        if self.snap.is_some() {
            return Ok(self);
        }
        let snap = self.inner.list_all(&self.prefix)?;
        Ok(S3Folder {
            snap: Some(Arc::new(snap)),
            ..self
        })
    }
}

/// Whether the item whose keys (listed just now, below `item`) are `keys` goes: not when any
/// was written since the run began; `NotFound` when it has none. When it goes, its keys are
/// added to `rest` and `guards` (its `guard` files).
fn judge(
    keys: &[Obj],
    item: &str,
    guard: &[&str],
    since_ns: i128,
    rest: &mut Vec<String>,
    guards: &mut Vec<String>,
) -> io::Result<bool> {
    if keys.is_empty() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    if keys.iter().any(|o| o.mtime_ns >= since_ns) {
        return Ok(false);
    }
    for o in keys {
        if guard.iter().any(|g| o.key[item.len()..] == **g) {
            guards.push(o.key.clone());
        } else {
            rest.push(o.key.clone());
        }
    }
    Ok(true)
}

/// The content of the link at `key` when its listed ETag proves it: the registry writes a
/// link as `sha256:<hex>` of the digest its folder is named by, in one plain PUT, whose ETag is
/// the MD5 of those bytes. Anything else (another content, a multipart or encrypted upload's
/// ETag) is read instead.
fn link_by_etag(key: &str, o: &Obj) -> Option<Vec<u8>> {
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

/// A registry's storage in a bucket, opened: the client and the layout's top prefix.
pub struct S3Storage {
    inner: Arc<Inner>,
    top: S3Folder,
    v2: PathBuf,
    bucket: String,
}

impl S3Storage {
    /// Connects and checks that the bucket holds a registry layout under the prefix: a wrong
    /// bucket, refused credentials or an unreachable endpoint fail here, before anything else.
    pub fn open(root: &S3Root) -> Result<S3Storage> {
        let url = root.url();
        let fail = |message: String| Error::ObjectStore {
            url: url.clone(),
            message,
        };
        let counts = Arc::new(Counts::default());
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&root.bucket)
            .with_http_connector(CountingConnector(counts.clone()))
            .with_retry(RetryConfig {
                max_retries: 5,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(e) = &root.endpoint {
            // The registry's `regionendpoint`: path-style requests, as the registry makes them.
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(r) = &root.region {
            b = b.with_region(r);
        }
        if let (Some(k), Some(s)) = (&root.access_key, &root.secret_key) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
        }
        if let Some(t) = &root.session_token {
            b = b.with_token(t);
        }
        // The endpoint may come from AWS_ENDPOINT too: checked whichever way it came, since the
        // crate panics on one it cannot build a request from.
        if let Some(e) = b.get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint) {
            crate::endpoint::check(&e).map_err(|why| fail(format!("endpoint {why}")))?;
        }
        let store = b.build().map_err(|e| fail(first_line(&e.to_string())))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start the I/O runtime: {e}")))?;
        let inner = Arc::new(Inner {
            store,
            rt,
            counts,
            url: url.clone(),
        });
        let v2_prefix = format!("{}docker/registry/v2/", root.key_prefix());
        let top = S3Folder {
            inner: inner.clone(),
            prefix: v2_prefix.clone(),
            snap: None,
        };
        // One listing of the top: reaches the bucket, proves the credentials, finds the layout.
        let names = top.entries().map_err(|e| fail(describe(&e)))?;
        let has = |n: &str| names.iter().any(|(name, _)| name == n);
        if !has("blobs") && !has("repositories") {
            return Err(Error::NotARegistry {
                path: PathBuf::from(format!("{url}/docker/registry/v2")),
            });
        }
        Ok(S3Storage {
            v2: PathBuf::from(format!("{}/docker/registry/v2", inner.url)),
            inner,
            top,
            bucket: root.bucket.clone(),
        })
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

/// One line on why a request failed, in the operator's words where the cause is known.
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    let lower = text.to_lowercase();
    // Without keys the crate asks the instance metadata service (IMDS), wherever it is.
    let metadata = ["169.254.169.254", "/latest/api/token", "/latest/meta-data"];
    if metadata.iter().any(|m| lower.contains(m)) || lower.contains("credential") {
        format!(
            "no usable credentials (give the config's accesskey/secretkey, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a web identity or instance metadata): {}",
            first_line(&text)
        )
    } else if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
        "no such bucket".into()
    } else if e.kind() == io::ErrorKind::PermissionDenied
        || lower.contains("accessdenied")
        // The status as the crate words it: a bare "403" also matches a port or a time.
        || lower.contains("403 forbidden")
    {
        format!(
            "access denied (check the credentials and the bucket policy): {}",
            first_line(&text)
        )
    } else if lower.contains("connect")
        || lower.contains("dns")
        || lower.contains("error sending request")
    {
        format!("cannot reach the endpoint: {}", first_line(&text))
    } else {
        first_line(&text)
    }
}

/// The lock object of a bucket's registry, deleted when dropped.
pub struct S3Lock {
    inner: Arc<Inner>,
    key: String,
}

impl Drop for S3Lock {
    fn drop(&mut self) {
        let _ = self.inner.delete(vec![self.key.clone()]);
    }
}

impl S3Storage {
    fn lock_key(&self) -> String {
        let v2 = &self.top.prefix;
        // `<prefix>/.regsweep.lock`, beside `docker/` as the file lock is on disk.
        let root = v2.strip_suffix("docker/registry/v2/").unwrap_or("");
        format!("{root}{}", crate::storage::lock::LOCK_FILE)
    }
}

impl Storage for S3Storage {
    type Folder = S3Folder;
    type Lock = S3Lock;

    fn top(&self) -> &S3Folder {
        &self.top
    }
    fn v2(&self) -> &Path {
        &self.v2
    }
    fn location(&self) -> PathBuf {
        PathBuf::from(&self.inner.url)
    }
    /// A create-only PUT (`If-None-Match: *`) of the lock object: one run wins. A bucket cannot
    /// tell a live holder from a dead one, so an existing lock object stops the run until an
    /// operator who knows the holder is gone passes `--break-lock`.
    fn lock(&self, command: &str, break_lock: bool) -> Result<S3Lock> {
        use object_store::{PutMode, PutOptions, PutPayload};
        let key = self.lock_key();
        let url = format!("s3://{}/{key}", self.bucket);
        let held = |message: String| Error::Locked {
            path: PathBuf::from(&url),
            message,
        };
        let lock_path = key_path(&key).map_err(|e| held(e.to_string()))?;
        let text = format!(
            "pid={}\nhost={}\nstarted={}\ncommand={command}\n",
            std::process::id(),
            crate::storage::lock::hostname(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let put = || {
            self.inner.block(self.inner.store.put_opts(
                &lock_path,
                PutPayload::from(text.clone().into_bytes()),
                PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                },
            ))
        };
        match put() {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let previous = self
                    .inner
                    .block(async { self.inner.store.get(&lock_path).await?.bytes().await })
                    .map(|b| {
                        String::from_utf8_lossy(&b)
                            .replace('\n', " ")
                            .trim()
                            .to_string()
                    })
                    .unwrap_or_default();
                if !break_lock {
                    return Err(held(format!(
                        "held by another run, or left by one that died ({previous}); a bucket cannot tell which: once that run is gone, run again with --break-lock"
                    )));
                }
                tracing::warn!("breaking the lock of {previous}");
                self.inner
                    .delete(vec![key.clone()])
                    .map_err(|e| held(e.to_string()))?;
                put()
                    .map_err(|e| held(format!("cannot take it: {}", first_line(&e.to_string()))))?;
            }
            Err(e) => {
                return Err(held(format!(
                    "cannot take it: {}",
                    first_line(&e.to_string())
                )));
            }
        }
        Ok(S3Lock {
            inner: self.inner.clone(),
            key,
        })
    }
    fn open_outside(&self, _: &Path) -> io::Result<S3Folder> {
        Err(unsupported())
    }
    /// The registry's s3 driver commits a blob by a server-side copy, which sets the copy's
    /// `LastModified`: the data's listed time is its arrival.
    fn blob_arrivals(&self, blobs: &[(Digest, Time)]) -> Vec<Time> {
        blobs.iter().map(|(_, t)| *t).collect()
    }
    fn requests(&self) -> Option<Requests> {
        Some(self.inner.counts.snapshot())
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            rename: false,
            max_batch: 1000,
            symlinks: false,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_status_is_read_as_a_status_not_as_digits_in_a_port() {
        let e = |t: &str| io::Error::other(t.to_string());
        let unreachable = "Error performing GET http://127.0.0.1:46403/registry in 892ms, after 5 retries - HTTP error: error sending request";
        assert!(describe(&e(unreachable)).starts_with("cannot reach the endpoint"));
        let refused = "Error performing GET http://127.0.0.1:9000/b - Server returned non-2xx status code: 403 Forbidden: ";
        assert!(describe(&e(refused)).starts_with("access denied"));
    }
    use super::*;

    fn obj(key: &str, at: &str, etag: Option<&str>) -> Obj {
        Obj::from(ObjectMeta {
            location: Key::from(key),
            last_modified: chrono::DateTime::parse_from_rfc3339(at).unwrap().into(),
            size: 71,
            e_tag: etag.map(str::to_string),
            version: None,
        })
    }

    #[test]
    fn a_write_in_the_second_the_run_began_counts_as_since() {
        // The run began at .700 of a second; a link written later in that same second is
        // listed with the whole second only: it must still count as written since.
        let since = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00.700Z")
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap();
        let o = obj("r/_layers/sha256/x/link", "2026-01-01T00:00:00Z", None);
        let (mut rest, mut guards) = (Vec::new(), Vec::new());
        let goes = judge(
            &[o],
            "r/_layers/sha256/x/",
            &["link"],
            i128::from(since),
            &mut rest,
            &mut guards,
        );
        assert!(!goes.unwrap(), "kept");
        let older = obj("r/_layers/sha256/x/link", "2025-12-31T23:59:59Z", None);
        let goes = judge(
            &[older],
            "r/_layers/sha256/x/",
            &["link"],
            i128::from(since),
            &mut rest,
            &mut guards,
        );
        assert!(goes.unwrap());
        assert_eq!(guards, vec!["r/_layers/sha256/x/link".to_string()]);
    }

    #[test]
    fn a_link_is_read_from_its_etag_only_when_the_etag_proves_it() {
        let hex = "ab".repeat(32);
        let key = format!("r/_layers/sha256/{hex}/link");
        let md5: String = {
            use md5::Digest as _;
            md5::Md5::digest(format!("sha256:{hex}").as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let good = obj(&key, "2026-01-01T00:00:00Z", Some(&format!("\"{md5}\"")));
        assert_eq!(
            link_by_etag(&key, &good),
            Some(format!("sha256:{hex}").into_bytes())
        );
        // A multipart or encrypted upload's ETag, or a link that names something else: read it.
        let multipart = obj(&key, "2026-01-01T00:00:00Z", Some(&format!("\"{md5}-2\"")));
        assert_eq!(link_by_etag(&key, &multipart), None);
        let other = obj(
            &key,
            "2026-01-01T00:00:00Z",
            Some("\"00000000000000000000000000000000\""),
        );
        assert_eq!(link_by_etag(&key, &other), None);
        // A tag's current link has no digest in its key.
        let current = "r/_manifests/tags/v1/current/link";
        assert_eq!(link_by_etag(current, &good), None);
    }
}
