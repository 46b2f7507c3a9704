//! The object-store backend of the storage seam: the layout the registry's `s3`, `gcs` and
//! `azure` drivers write in a bucket (AWS S3 and S3-compatible servers, Google Cloud Storage,
//! Azure Blob Storage, and their emulators), read through the `object_store` crate; `root`
//! says how each service is reached, everything else is the same for the three.
//!
//! The bucket holds the same names as the disk, as keys below `<rootdirectory>/docker/registry/v2/`;
//! there are no folder objects and no symlinks. A folder here is a key prefix. The scan asks for
//! whole subtrees (`Folder::whole`): each of the 256 blob prefixes, and the repositories, are
//! listed once, recursively, in pages, and everything below is answered from that listing. A
//! digest is read from a key's name; a link's content is checked against its name by the listed
//! ETag where the service's ETag is the MD5 of a plain upload (S3, GCS), a tag's current link
//! among its history's digests, and read (GET) where that does not settle it (always on Azure).
//! Manifests are read by GET.
//!
//! `object_store` is async; its runtime is private to this file: each call blocks the calling
//! thread (a rayon worker) until its request is done, so the stages above stay as they are.
//! Every HTTP request is counted by kind, and retried by the crate on 5xx, throttling and
//! connection errors (with backoff, for at most 30 s); one that still fails is an error or a
//! finding, never a silent "absent".
//!
//! Changing a bucket: there is no rename, so items go by `remove_many_unless_changed`, a folder
//! of them at a time (a fresh listing of the folder, then deletes in the batches the service
//! offers: 1000 keys on S3, 256 on Azure, one a request on GCS; the guards last); the lock is a
//! create-only object. A trash is refused (it would copy every blob), and with it `restore`.
//! GCS is read only: its lock is refused (see `lock`).

use crate::error::{Error, Result};
use crate::model::Time;
use crate::model::digest::Digest;
use crate::storage::seam::{Capabilities, Folder, Requests, Storage};
use object_store::ObjectStoreExt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod ahead;
mod answers;
mod client;
mod errors;
mod folder;
pub mod gate;
mod remove;
mod root;

use client::*;
use errors::{describe, io_error};
use folder::*;
pub use folder::{BucketFile, BucketFolder};
pub use root::{BucketRoot, ClientSecret, Service};

/// A registry's storage in a bucket, opened: the client and the layout's top prefix.
pub struct BucketStorage {
    inner: Arc<Inner>,
    top: BucketFolder,
    v2: PathBuf,
    service: Service,
}

impl BucketStorage {
    /// Connects and checks that the bucket holds a registry layout under the prefix: a wrong
    /// bucket, refused credentials or an unreachable endpoint fail here, before anything else.
    pub fn open(root: &BucketRoot) -> Result<BucketStorage> {
        let url = root.url();
        let fail = |message: String| Error::ObjectStore {
            url: url.clone(),
            message,
        };
        let counts = Arc::new(Counts::default());
        let concurrency = root.concurrency.unwrap_or(gate::DEFAULT_CONCURRENCY);
        let gate = Arc::new(gate::Gate::new(concurrency, root.max_rps));
        let connector = CountingConnector(counts.clone(), gate.clone());
        let store = root.build(connector, concurrency).map_err(fail)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start the I/O runtime: {e}")))?;
        watch(&rt, counts.clone(), gate.clone());
        let inner = Arc::new(Inner {
            store,
            etag_is_md5: root.service.etag_is_md5(),
            rt,
            counts,
            gate,
            ahead: Ahead::default(),
            url: url.clone(),
            unanswered: Default::default(),
        });
        let v2_prefix = format!("{}docker/registry/v2/", root.key_prefix());
        let top = BucketFolder {
            inner: inner.clone(),
            prefix: v2_prefix.clone(),
            snap: None,
        };
        // One listing of the top: reaches the bucket, proves the credentials, finds the layout.
        let names = top.entries().map_err(|e| fail(describe(&e)))?;
        let has = |n: &str| names.iter().any(|(name, _)| name == n);
        if !crate::model::paths::looks_like_v2(has) {
            return Err(Error::NotARegistry {
                path: PathBuf::from(format!("{url}/docker/registry/v2")),
            });
        }
        Ok(BucketStorage {
            v2: PathBuf::from(format!("{}/docker/registry/v2", inner.url)),
            inner,
            top,
            service: root.service,
        })
    }
}

/// Long bucket runs without a terminal: at `-v`, a line a minute with the requests so far, their
/// rate and how many are in flight; and whatever the verbosity, a warning when a whole minute
/// passed without a request while some are in flight: a stalled run says so.
fn watch(rt: &tokio::runtime::Runtime, counts: Arc<Counts>, gate: Arc<gate::Gate>) {
    rt.spawn(async move {
        let minute = Duration::from_secs(60);
        let mut last = 0;
        loop {
            tokio::time::sleep(minute).await;
            let total = counts.total();
            let in_flight = gate.in_flight();
            let retried = counts.retried.load(std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                requests = total,
                per_second = (total - last) / 60,
                in_flight,
                retried,
                "object store: {total} requests so far, {in_flight} in flight, {retried} retried"
            );
            if total == last && in_flight > 0 {
                tracing::warn!(
                    "object store: no request started in the last minute, {in_flight} in flight: the endpoint is not answering (each request is retried with backoff, then fails the run)"
                );
            }
            last = total;
        }
    });
}

/// The lock object of a bucket's registry, deleted when dropped.
pub struct BucketLock {
    inner: Arc<Inner>,
    key: String,
}

impl Drop for BucketLock {
    fn drop(&mut self) {
        let _ = self.inner.delete(vec![self.key.clone()]);
    }
}

impl BucketStorage {
    /// How many requests this storage has made so far (for the progress bars).
    pub fn request_counter(&self) -> crate::progress::RequestCounter {
        let (counts, gate) = (self.inner.counts.clone(), self.inner.gate.clone());
        Arc::new(move || crate::progress::RequestsNow {
            made: counts.total(),
            in_flight: gate.in_flight() as u64,
            retried: counts.retried.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    fn lock_key(&self) -> String {
        self.root_key(crate::storage::lock::LOCK_FILE)
    }

    /// `<prefix>/<name>`, beside `docker/` as the files of the root are on disk.
    fn root_key(&self, name: &str) -> String {
        let v2 = &self.top.prefix;
        let root = v2.strip_suffix("docker/registry/v2/").unwrap_or("");
        format!("{root}{name}")
    }
}

impl Storage for BucketStorage {
    type Folder = BucketFolder;
    type Lock = BucketLock;

    fn top(&self) -> &BucketFolder {
        &self.top
    }
    fn v2(&self) -> &Path {
        &self.v2
    }
    fn location(&self) -> PathBuf {
        PathBuf::from(&self.inner.url)
    }
    /// A create-only PUT (`If-None-Match: *` on S3 and Azure) of the lock object: one run wins. A bucket cannot
    /// tell a live holder from a dead one, so an existing lock object stops the run until an
    /// operator who knows the holder is gone passes `--break-lock`.
    fn lock(&self, command: &str, break_lock: bool) -> Result<BucketLock> {
        use object_store::{PutMode, PutOptions, PutPayload};
        let key = self.lock_key();
        let url = format!("{}/{}", self.inner.url, crate::storage::lock::LOCK_FILE);
        let held = |message: String| Error::Locked {
            path: PathBuf::from(&url),
            message,
        };
        if !self.service.sweeps() {
            // Refused rather than unproven (see `Service::sweeps`).
            return Err(held(
                "sweeping a gs:// bucket is not supported yet (its lock cannot be proven exclusive); dry runs (gc --dry-run, garbage-collect --dry-run), du, check and policy check work".into(),
            ));
        }
        let lock_path = key_path(&key).map_err(|e| held(e.to_string()))?;
        let text = crate::storage::lock::holder_text(command);
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
                put().map_err(|e| held(format!("cannot take it: {}", describe(&io_error(e)))))?;
            }
            Err(e) => {
                return Err(held(format!("cannot take it: {}", describe(&io_error(e)))));
            }
        }
        Ok(BucketLock {
            inner: self.inner.clone(),
            key,
        })
    }
    fn read_state(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        crate::storage::seam::check_state_name(name)?;
        let path = key_path(&self.root_key(name))?;
        let store = &self.inner.store;
        match self
            .inner
            .block(async { store.get(&path).await?.bytes().await })
        {
            Ok(b) if b.len() as u64 > crate::storage::seam::STATE_LIMIT => {
                Err(io::Error::other(format!("{name}: larger than 1 GiB")))
            }
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }
    fn write_state(&self, name: &str, bytes: Option<&[u8]>) -> io::Result<()> {
        crate::storage::seam::check_state_name(name)?;
        let key = self.root_key(name);
        let Some(bytes) = bytes else {
            return self.inner.delete(vec![key]).map(|_| ());
        };
        let path = key_path(&key)?;
        let payload = object_store::PutPayload::from(bytes.to_vec());
        let store = &self.inner.store;
        (self.inner)
            .block(store.put(&path, payload))
            .map(|_| ())
            .map_err(io_error)
    }
    fn open_outside(&self, _: &Path) -> io::Result<BucketFolder> {
        Err(unsupported())
    }
    /// The registry's s3 driver commits a blob by a server-side copy, which sets the copy's
    /// `LastModified`: the data's listed time is its arrival.
    fn blob_arrivals(&self, blobs: &[(Digest, Time)]) -> Vec<Time> {
        blobs.iter().map(|(_, t)| *t).collect()
    }
    fn unanswered(&self) -> Option<String> {
        self.inner.unanswered.summary()
    }
    fn requests(&self) -> Option<Requests> {
        Some(self.inner.counts.snapshot(&self.inner.gate))
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
    use super::remove::judge;
    use super::*;
    use object_store::ObjectMeta;
    use object_store::path::Path as Key;

    #[test]
    fn a_status_is_read_as_a_status_not_as_digits_in_a_port() {
        let e = |t: &str| io::Error::other(t.to_string());
        let unreachable = "Error performing GET http://127.0.0.1:46403/registry in 892ms, after 5 retries - HTTP error: error sending request";
        assert!(describe(&e(unreachable)).starts_with("cannot reach the endpoint"));
        let refused = "Error performing GET http://127.0.0.1:9000/b - Server returned non-2xx status code: 403 Forbidden: ";
        assert!(describe(&e(refused)).starts_with("access denied"));
    }

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
