//! The validated configuration the core runs with; `registry` reads the registry's own config file.

pub mod registry;

use crate::error::{Error, Result};
use crate::model::duration::Span;
use crate::model::{Rules, Time};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTarget {
    Stdout,
    File(PathBuf),
}

/// Everything `gc` needs, already checked.
#[derive(Debug, Clone)]
pub struct GcConfig {
    /// The registry's storage: its `rootdirectory`, or a bucket.
    pub root: Root,
    /// The manifest cache file (`--cache`, or the default per root); `None` with `--no-cache`.
    pub cache: Option<PathBuf>,
    /// Items of each list the text report shows; `None` shows all.
    pub text_limit: Option<usize>,
    pub dry_run: bool,
    pub delete_untagged: bool,
    /// With `delete_untagged`: only untagged manifests pushed more than this long ago go;
    /// `None` (or zero): every one.
    pub untagged_older_than: Option<Span>,
    pub grace: Span,
    pub allow_damage: bool,
    /// Abandoned uploads older than this go; `None` keeps uploads.
    pub purge_uploads: Option<Span>,
    /// Where the report goes; `None` writes none (quiet without --report).
    pub report: Option<ReportTarget>,
    pub format: Format,
    /// Worker threads; `None` uses one per core.
    pub jobs: Option<usize>,
    /// Draw progress bars (only ever on a terminal).
    pub progress: bool,
    /// Retention policy deciding which tags go.
    pub policy: Option<crate::policy::Policy>,
    /// `--repository` patterns: the run touches only the repositories they match (`None`: all).
    pub scope: Option<crate::policy::Matcher>,
    /// Report every tag decision and its reasons.
    pub explain: bool,
    /// Apply the policy even where its safety net refuses.
    pub force: bool,
    /// Prometheus metrics file to write.
    pub metrics: Option<PathBuf>,
    /// Remove a stale lock and go on.
    pub break_lock: bool,
    /// Move what goes into this trash folder instead of deleting it.
    pub trash: Option<PathBuf>,
    /// The `garbage-collect` drop-in: also print the reference's own lines.
    pub reference_output: bool,
    /// The live registry's cache (from `--config`), `--registry-url`, `--risk-stale-cache`.
    pub live: crate::live::LiveOptions,
}

impl GcConfig {
    /// The rules this config gives at `now`: the grace period ends where "young" starts.
    pub fn rules(&self, now: Time) -> Rules {
        Rules {
            delete_untagged: self.delete_untagged,
            young_from: Rules::young_from(self.grace, now),
            allow_damage: self.allow_damage,
            uploads_before: self
                .purge_uploads
                .map(|a| now.saturating_sub(a.as_secs() as i64)),
            untagged_kept_from: (self.untagged_older_than)
                .filter(|a| !a.is_zero())
                .map(|a| now.saturating_sub(a.as_secs() as i64)),
        }
    }

    /// A config that only looks: a dry run with no grace, no policy and every option off.
    pub fn planning(root: impl Into<Root>) -> GcConfig {
        GcConfig {
            root: root.into(),
            cache: None,
            text_limit: None,
            dry_run: true,
            delete_untagged: false,
            untagged_older_than: None,
            grace: Span::ZERO,
            allow_damage: false,
            purge_uploads: None,
            report: None,
            format: Format::Json,
            jobs: None,
            progress: false,
            policy: None,
            scope: None,
            explain: false,
            force: false,
            metrics: None,
            break_lock: false,
            trash: None,
            reference_output: false,
            live: crate::live::LiveOptions::default(),
        }
    }
}

/// The canonical form of a root the user gave, or an error naming it.
pub fn canonical_root(root: &Path) -> Result<PathBuf> {
    root.canonicalize().map_err(|e| Error::io(root, e))
}

/// Where a registry's storage is: a folder on disk, or a bucket and prefix on an S3-compatible
/// object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    Fs(PathBuf),
    S3(S3Root),
}

impl From<PathBuf> for Root {
    fn from(p: PathBuf) -> Root {
        Root::Fs(p)
    }
}

impl Root {
    /// How reports and messages name it: the path, or `s3://bucket/prefix`.
    pub fn display_path(&self) -> PathBuf {
        match self {
            Root::Fs(p) => p.clone(),
            Root::S3(s) => PathBuf::from(s.url()),
        }
    }

    /// The folder, for the commands that work on disk only.
    pub fn into_fs(self, command: &str) -> Result<PathBuf> {
        match self {
            Root::Fs(p) => Ok(p),
            Root::S3(s) => Err(Error::Usage(format!(
                "{}: `{command}` works on a filesystem root only; on an object store, regsweep runs gc --dry-run, du, check and policy check",
                s.url()
            ))),
        }
    }

    /// `--root`: `s3://BUCKET[/PREFIX]` is a bucket (with `--s3-endpoint`, or the endpoint and
    /// credentials of the usual `AWS_*` environment), anything else a folder.
    pub fn parse(text: &str, endpoint: Option<String>) -> Result<Root> {
        let Some(rest) = text.strip_prefix("s3://") else {
            if endpoint.is_some() {
                return Err(Error::Usage(
                    "--s3-endpoint needs an s3://BUCKET/PREFIX root".into(),
                ));
            }
            return Ok(Root::Fs(PathBuf::from(text)));
        };
        if let Some(e) = &endpoint {
            crate::endpoint::check(e)
                .map_err(|why| Error::Usage(format!("--s3-endpoint: {why}")))?;
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Usage(format!(
                "{text}: no bucket named (s3://BUCKET/PREFIX)"
            )));
        }
        Ok(Root::S3(S3Root {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint,
            ..S3Root::default()
        }))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_roots() {
        assert_eq!(
            Root::parse("s3://b/p/q/", Some("http://h:1".into())).unwrap(),
            Root::S3(S3Root {
                bucket: "b".into(),
                prefix: "p/q".into(),
                endpoint: Some("http://h:1".into()),
                ..S3Root::default()
            })
        );
        assert_eq!(
            Root::parse("/srv/r", None).unwrap(),
            Root::Fs("/srv/r".into())
        );
        assert!(Root::parse("s3://", None).is_err());
        assert!(Root::parse("/srv/r", Some("http://h".into())).is_err());
        let e = Root::parse("s3://b", Some("127.0.0.1:5070".into())).unwrap_err();
        assert!(e.to_string().starts_with("--s3-endpoint: "), "{e}");
    }
}
