//! The object-store client under the S3 backend: every request counted by kind, the runtime
//! the async crate needs, listings, batched deletes, and keys addressed exactly as listed.

use crate::storage::seam::{Kind, Requests, Stat};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse};
use object_store::client::{HttpService, ReqwestConnector};
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectMeta, ObjectStore};
use std::collections::HashMap;
use std::io::{self};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) use super::errors::io_error;
use super::gate::Gate;

/// Requests made, by kind, counted at the HTTP layer (so list pages and retries count too).
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) list: AtomicU64,
    pub(super) get: AtomicU64,
    pub(super) head: AtomicU64,
    pub(super) put: AtomicU64,
    pub(super) copy: AtomicU64,
    pub(super) delete: AtomicU64,
    /// Attempts answered 5xx or 429, or whose connection failed (each retried, or the last).
    pub(super) retried: AtomicU64,
}

impl Counts {
    pub(super) fn count(&self, req: &HttpRequest) {
        let query = req.uri().query().unwrap_or("");
        let counter = match *req.method() {
            // S3's and GCS's ListObjectsV2, Azure's List Blobs.
            http::Method::GET
                if query.contains("list-type=")
                    || query.contains("delimiter=")
                    || query.contains("comp=list") =>
            {
                &self.list
            }
            http::Method::GET if req.uri().path().trim_matches('/').contains('/') => &self.get,
            // A GET of the bucket itself is a listing (ListObjects v1).
            http::Method::GET => &self.list,
            http::Method::HEAD => &self.head,
            http::Method::DELETE => &self.delete,
            // S3's DeleteObjects; Azure's blob batch (of deletes: regsweep sends no other).
            http::Method::POST if query.contains("delete") || query.contains("comp=batch") => {
                &self.delete
            }
            http::Method::PUT
                if [
                    "x-amz-copy-source",
                    "x-ms-copy-source",
                    "x-goog-copy-source",
                ]
                .iter()
                .any(|h| req.headers().contains_key(*h)) =>
            {
                &self.copy
            }
            _ => &self.put,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(method = %req.method(), uri = %req.uri(), "object store request");
    }

    pub(super) fn total(&self) -> u64 {
        [
            &self.list,
            &self.get,
            &self.head,
            &self.put,
            &self.copy,
            &self.delete,
        ]
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum()
    }

    pub(super) fn snapshot(&self, gate: &Gate) -> Requests {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Requests {
            list: n(&self.list),
            get: n(&self.get),
            head: n(&self.head),
            put: n(&self.put),
            copy: n(&self.copy),
            delete: n(&self.delete),
            throttled: n(&gate.throttled),
            retried: n(&self.retried),
            peak_in_flight: gate.peak.load(Ordering::Relaxed) as u64,
            lowest_in_flight: gate.lowest.load(Ordering::Relaxed) as u64,
        }
    }
}

/// The crate's own HTTP client, with every request through the gate and counted on its way out.
pub(super) struct Counted {
    pub(super) inner: HttpClient,
    pub(super) counts: Arc<Counts>,
    pub(super) gate: Arc<Gate>,
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counted")
    }
}

#[async_trait::async_trait]
impl HttpService for Counted {
    async fn call(&self, req: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let place = self.gate.enter().await;
        self.counts.count(&req);
        let batch = super::answers::batch_of(&req);
        let r = self.inner.execute(req).await;
        // SlowDown is a 503 on S3 (some S3-compatible stores say 429). A connection that fails
        // is also a store (or a proxy before it) taking less than asked: fewer in flight too.
        let slow = match &r {
            Ok(resp) if resp.status() == 503 || resp.status() == 429 => Some(true),
            Ok(_) => None,
            Err(_) => Some(false),
        };
        let failed = match &r {
            Ok(resp) => resp.status().is_server_error() || resp.status() == 429,
            Err(_) => true,
        };
        if failed {
            self.counts.retried.fetch_add(1, Ordering::Relaxed);
        }
        place.ended(slow);
        // Read as any answer is, after the gate: a refused one is no sign of a store in trouble.
        match (batch, r) {
            (Some(batch), Ok(resp)) => super::answers::checked(batch, resp).await,
            (_, r) => r,
        }
    }
}

pub(super) struct CountingConnector(pub(super) Arc<Counts>, pub(super) Arc<Gate>);

impl std::fmt::Debug for CountingConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountingConnector")
    }
}

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Counted {
            inner,
            counts: self.0.clone(),
            gate: self.1.clone(),
        }))
    }
}

/// The client, its private runtime and the request counts, shared by every folder.
pub(super) struct Inner {
    pub(super) store: Arc<dyn ObjectStore>,
    /// A listed ETag is the MD5 of a plain upload (see `Service::etag_is_md5`).
    pub(super) etag_is_md5: bool,
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) counts: Arc<Counts>,
    pub(super) gate: Arc<Gate>,
    /// Files fetched and folders listed ahead of the stages.
    pub(super) ahead: Ahead,
    /// `s3://bucket/prefix`, for messages.
    pub(super) url: String,
    /// Reads the store did not answer: the run fails on them before it plans.
    pub(super) unanswered: super::errors::Unanswered,
}

impl Inner {
    /// A read's error as an I/O error, noted when the store gave no answer about the object.
    pub(super) fn failed(&self, e: object_store::Error) -> io::Error {
        self.unanswered.note(e)
    }

    pub(super) fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Deletes `keys`, in batches of up to 1000 per request; a key already gone is no error.
    pub(super) fn delete(&self, keys: Vec<String>) -> io::Result<()> {
        self.block(self.delete_async(keys))
    }

    pub(super) async fn delete_async(&self, keys: Vec<String>) -> io::Result<()> {
        let keys: Vec<Key> = keys
            .iter()
            .map(|k| key_path(k))
            .collect::<io::Result<_>>()?;
        let paths = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(paths);
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(())
    }

    /// Deletes `rest`, calls `between`, then deletes `guards`: the registry serves an item whole
    /// until its guard goes.
    pub(super) async fn delete_guard_last(
        &self,
        rest: Vec<String>,
        guards: Vec<String>,
        between: &(dyn Fn() + Sync),
    ) -> io::Result<()> {
        if !rest.is_empty() {
            self.delete_async(rest).await?;
        }
        between();
        if !guards.is_empty() {
            self.delete_async(guards).await?;
        }
        Ok(())
    }

    /// Every object below `prefix` (a key prefix ending in `/`), sorted by key.
    pub(super) fn list_all(&self, prefix: &str) -> io::Result<Vec<Obj>> {
        self.block(self.list_all_async(prefix))
    }
}

/// The listed objects of `snap` (sorted by key) below `prefix`.
pub(super) fn below<'a>(snap: &'a [Obj], prefix: &str) -> &'a [Obj] {
    let start = snap.partition_point(|o| o.key.as_str() < prefix);
    let end = start + snap[start..].partition_point(|o| o.key.starts_with(prefix));
    &snap[start..end]
}

/// What a listing says of one object.
#[derive(Debug, Clone)]
pub(super) struct Obj {
    pub(super) key: String,
    pub(super) size: u64,
    pub(super) mtime_ns: i128,
    pub(super) etag: Option<String>,
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

pub(super) fn stat_of(size: u64, mtime_ns: i128, kind: Kind) -> Stat {
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

/// The crate's path for a key exactly as listed or built: `Key::from` would percent-encode
/// `%` and non-ASCII bytes a second time, and so ask for another key than the listing named.
pub(super) fn key_path(key: &str) -> io::Result<Key> {
    Key::parse(key).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{key:?}: not a key regsweep can address ({e})"),
        )
    })
}

/// A relative name below a folder: plain components only, as on disk.
pub(super) fn check_rel(rel: &Path) -> io::Result<String> {
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

/// Why a file fetched ahead cannot be read (kept to be answered when the stage reads it).
#[derive(Debug, Clone)]
pub(super) enum Miss {
    Missing,
    TooLarge(u64),
    Failed(io::ErrorKind, String),
}

impl Miss {
    pub(super) fn into_read_error(self) -> crate::storage::seam::ReadError {
        use crate::storage::seam::ReadError;
        match self {
            Miss::Missing => ReadError::Missing,
            Miss::TooLarge(n) => ReadError::TooLarge(n),
            Miss::Failed(kind, why) => ReadError::Io(io::Error::new(kind, why)),
        }
    }
}

/// A file fetched ahead: its bytes and what the store said of it, or why not.
pub(super) type Fetched = Result<(Bytes, Obj), Miss>;
/// A folder listed ahead, or why not.
pub(super) type Listed = Result<Arc<Vec<Obj>>, (io::ErrorKind, String)>;

/// What was fetched and listed ahead, until the stages take it.
#[derive(Default)]
pub(super) struct Ahead {
    pub(super) files: Mutex<HashMap<String, Fetched>>,
    pub(super) listings: Mutex<HashMap<String, Listed>>,
    /// Bytes of files held: fetching stops adding past `BUDGET`.
    pub(super) held: AtomicU64,
}

/// The most bytes of fetched files held at once; past it, files are read when asked.
pub(super) const BUDGET: u64 = 256 << 20;

impl Ahead {
    pub(super) fn take_file(&self, key: &str) -> Option<Fetched> {
        let got = self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)?;
        if let Ok((b, _)) = &got {
            self.held.fetch_sub(b.len() as u64, Ordering::Relaxed);
        }
        Some(got)
    }

    pub(super) fn take_listing(&self, prefix: &str) -> Option<io::Result<Arc<Vec<Obj>>>> {
        let got = self
            .listings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(prefix)?;
        Some(got.map_err(|(kind, why)| io::Error::new(kind, why)))
    }
}
