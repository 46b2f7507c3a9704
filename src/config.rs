//! The validated configuration the core runs with, and reading the registry's own config file.

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

/// Reads a registry config file's storage as the registry would, for either driver: the
/// filesystem's `rootdirectory`, or the s3 driver's bucket, prefix, endpoint, region and keys,
/// each overridden by the registry's own environment variables (`REGISTRY_STORAGE_S3_BUCKET`,
/// `..._ROOTDIRECTORY`, `..._REGIONENDPOINT`, `..._REGION`, `..._ACCESSKEY`, `..._SECRETKEY`,
/// `..._SESSIONTOKEN`), as `env` answers them.
pub fn storage_from_registry_config(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Root> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| Error::RegistryConfig {
            path: path.to_path_buf(),
            message: format!("not valid YAML: {e}"),
        })?;
    let Some(s3) = doc.get("storage").and_then(|s| s.get("s3")) else {
        return root_from_registry_config(path, env(ROOT_ENV)).map(Root::Fs);
    };
    let key = |name: &str| -> Option<String> {
        env(&format!("REGISTRY_STORAGE_S3_{}", name.to_uppercase()))
            .filter(|v| !v.is_empty())
            .or_else(|| match s3.get(name)? {
                serde_yaml::Value::String(v) => Some(v.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                serde_yaml::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .filter(|v| !v.is_empty())
    };
    let bucket = key("bucket").ok_or_else(|| Error::RegistryConfig {
        path: path.to_path_buf(),
        message: "storage.s3.bucket is not set".into(),
    })?;
    Ok(Root::S3(S3Root {
        bucket,
        prefix: key("rootdirectory")
            .unwrap_or_default()
            .trim_matches('/')
            .to_string(),
        endpoint: key("regionendpoint"),
        region: key("region"),
        access_key: key("accesskey"),
        secret_key: key("secretkey"),
        session_token: key("sessiontoken"),
    }))
}

/// The name the registry gives the environment override of its root directory.
pub const ROOT_ENV: &str = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY";

/// Reads `storage.filesystem.rootdirectory` from a registry config file, as the registry
/// would: its environment override wins, and the driver's default applies when unset.
pub fn root_from_registry_config(path: &Path, env_override: Option<String>) -> Result<PathBuf> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: String| Error::RegistryConfig {
        path: path.to_path_buf(),
        message,
    };
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    let env_override = env_override.filter(|s| !s.is_empty());
    let Some(storage) = doc.get("storage") else {
        // The registry completes a config from its environment: a root given there is enough.
        return env_override.map(PathBuf::from).ok_or_else(|| {
            bad(format!(
                "no storage section, and {ROOT_ENV} is not set; regsweep needs the filesystem or s3 driver"
            ))
        });
    };
    let Some(fs) = storage.get("filesystem") else {
        let drivers: Vec<String> = storage
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .filter(|k| {
                        !matches!(
                            k.as_str(),
                            "delete" | "maintenance" | "cache" | "redirect" | "tag"
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Err(bad(format!(
            "storage driver is {}, not filesystem; regsweep only works on the filesystem driver's layout",
            if drivers.is_empty() {
                "not set".to_string()
            } else {
                drivers.join(", ")
            }
        )));
    };
    if let Some(dir) = env_override {
        return Ok(PathBuf::from(dir));
    }
    match fs.get("rootdirectory") {
        None => Ok(PathBuf::from("/var/lib/registry")),
        Some(v) => match v.as_str() {
            Some(s) if !s.is_empty() => Ok(PathBuf::from(s)),
            _ => Err(bad("storage.filesystem.rootdirectory is not a path".into())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str, env: Option<&str>) -> Result<PathBuf> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yml");
        std::fs::write(&p, text).unwrap();
        root_from_registry_config(&p, env.map(str::to_string))
    }

    #[test]
    fn reads_rootdirectory() {
        let y = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/reg\n  delete:\n    enabled: true\n";
        assert_eq!(with(y, None).unwrap(), PathBuf::from("/srv/reg"));
        assert_eq!(
            with(y, Some("/env/root")).unwrap(),
            PathBuf::from("/env/root")
        );
        assert_eq!(
            with("storage:\n  filesystem: {}\n", None).unwrap(),
            PathBuf::from("/var/lib/registry")
        );
    }

    #[test]
    fn reads_the_s3_driver_with_its_environment_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yml");
        std::fs::write(
            &p,
            "storage:\n  s3:\n    bucket: reg\n    region: eu-west-1\n    regionendpoint: http://127.0.0.1:9000\n    rootdirectory: /regroot/\n    accesskey: AK\n    secretkey: SK\n",
        )
        .unwrap();
        let none = |_: &str| None;
        let Root::S3(s3) = storage_from_registry_config(&p, &none).unwrap() else {
            panic!("not s3")
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str(), s3.url()),
            ("reg", "regroot", "s3://reg/regroot".to_string())
        );
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            (s3.access_key.as_deref(), s3.secret_key.as_deref()),
            (Some("AK"), Some("SK"))
        );
        let env = |k: &str| (k == "REGISTRY_STORAGE_S3_BUCKET").then(|| "other".to_string());
        let Root::S3(s3) = storage_from_registry_config(&p, &env).unwrap() else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket, "other");
        std::fs::write(&p, "storage:\n  s3:\n    region: x\n").unwrap();
        let e = storage_from_registry_config(&p, &none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bucket") && e.contains("config.yml"), "{e}");
        // The filesystem driver still reads as before.
        std::fs::write(&p, "storage:\n  filesystem:\n    rootdirectory: /srv/r\n").unwrap();
        assert_eq!(
            storage_from_registry_config(&p, &none).unwrap(),
            Root::Fs(PathBuf::from("/srv/r"))
        );
    }

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
    }

    #[test]
    fn rejects_other_drivers_and_garbage() {
        let e = with(
            "storage:\n  s3:\n    bucket: x\n  delete: {enabled: true}\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("s3") && e.contains("config.yml"), "{e}");
        assert!(
            with("version: 0.1\n", None)
                .unwrap_err()
                .to_string()
                .contains("no storage")
        );
        assert!(
            with("storage: [\n", None)
                .unwrap_err()
                .to_string()
                .contains("YAML")
        );
        assert!(with("storage:\n  filesystem:\n    rootdirectory: [1]\n", None).is_err());
        let missing = root_from_registry_config(Path::new("/nonexistent/x.yml"), None).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/x.yml"));
    }
}
