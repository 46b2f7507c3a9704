//! Where a registry's storage is (`Location`: a folder, or a bucket and prefix), and the one
//! place a backend is picked for it: [`Location::open`] hands a job the opened storage, on disk
//! or in a bucket, without the job knowing which.

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::storage::bucket::{BucketRoot, BucketStorage, Service};
use crate::storage::fs::FsStorage;
use crate::storage::seam::Storage;
use std::path::{Path, PathBuf};

/// A job that runs on a registry's storage, whichever backend holds it.
pub trait OnStorage {
    type Out;
    fn run<S: Storage>(&self, store: S, progress: &dyn Progress) -> Result<Self::Out>;
}

/// The canonical form of a root the user gave, or an error naming it.
pub fn canonical_root(root: &Path) -> Result<PathBuf> {
    root.canonicalize().map_err(|e| Error::io(root, e))
}

/// Where a registry's storage is: a folder on disk, or a bucket and prefix on an S3-compatible
/// object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Fs(PathBuf),
    Bucket(Box<BucketRoot>),
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Location {
        Location::Fs(p)
    }
}

impl Location {
    /// How reports and messages name it: the path, or `s3://bucket/prefix`.
    pub fn display_path(&self) -> PathBuf {
        match self {
            Location::Fs(p) => p.clone(),
            Location::Bucket(s) => PathBuf::from(s.url()),
        }
    }

    /// `--root`: `s3://BUCKET[/PREFIX]`, `gs://BUCKET[/PREFIX]` or `az://CONTAINER[/PREFIX]` is a
    /// bucket (with `--endpoint`, or the endpoint and credentials of each service's usual
    /// environment), anything else a folder.
    pub fn parse(text: &str, endpoint: Option<String>) -> Result<Location> {
        let service = [Service::S3, Service::Gcs, Service::Azure]
            .into_iter()
            .find_map(|s| Some((s, text.strip_prefix(s.scheme())?.strip_prefix("://")?)));
        let Some((service, rest)) = service else {
            if endpoint.is_some() {
                return Err(Error::Usage(
                    "--endpoint needs a bucket root (s3://, gs:// or az://BUCKET/PREFIX)".into(),
                ));
            }
            return Ok(Location::Fs(PathBuf::from(text)));
        };
        if let Some(e) = &endpoint {
            crate::endpoint::check(e).map_err(|why| Error::Usage(format!("--endpoint: {why}")))?;
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Usage(format!(
                "{text}: no bucket named ({}://BUCKET/PREFIX)",
                service.scheme()
            )));
        }
        Ok(Location::Bucket(Box::new(BucketRoot {
            service,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint,
            ..BucketRoot::default()
        })))
    }
}

impl Location {
    /// The same location with a folder resolved (symlinks, `..`), as reports name it.
    pub fn canonical(&self) -> Result<Location> {
        match self {
            Location::Fs(p) => Ok(Location::Fs(canonical_root(p)?)),
            other => Ok(other.clone()),
        }
    }

    /// Opens the storage (a folder, resolved once; or a bucket, reached and checked) and runs
    /// `job` on it: the only place that picks a backend.
    pub fn open<J: OnStorage>(&self, job: &J, progress: &dyn Progress) -> Result<J::Out> {
        match self {
            Location::Fs(path) => job.run(FsStorage::open(&canonical_root(path)?)?, progress),
            Location::Bucket(s3) => {
                let store = BucketStorage::open(s3)?;
                progress.requests(store.request_counter());
                job.run(store, progress)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_roots() {
        assert_eq!(
            Location::parse("s3://b/p/q/", Some("http://h:1".into())).unwrap(),
            Location::Bucket(Box::new(BucketRoot {
                bucket: "b".into(),
                prefix: "p/q".into(),
                endpoint: Some("http://h:1".into()),
                ..BucketRoot::default()
            }))
        );
        assert_eq!(
            Location::parse("/srv/r", None).unwrap(),
            Location::Fs("/srv/r".into())
        );
        assert!(Location::parse("s3://", None).is_err());
        assert!(Location::parse("/srv/r", Some("http://h".into())).is_err());
        let e = Location::parse("s3://b", Some("127.0.0.1:5070".into())).unwrap_err();
        assert!(e.to_string().starts_with("--endpoint: "), "{e}");
        let gs = Location::parse("gs://b/r", None).unwrap();
        assert!(matches!(&gs, Location::Bucket(r) if r.service == Service::Gcs && r.prefix == "r"));
        let az = Location::parse(
            "az://c",
            Some("http://127.0.0.1:10000/devstoreaccount1".into()),
        );
        assert!(matches!(&az.unwrap(), Location::Bucket(r) if r.service == Service::Azure));
        assert!(Location::parse("gs://", None).is_err());
    }
}
