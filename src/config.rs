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
    /// The registry's storage root (`rootdirectory`).
    pub root: PathBuf,
    pub dry_run: bool,
    pub delete_untagged: bool,
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
        }
    }

    /// A config that only looks: a dry run with no grace, no policy and every option off.
    pub fn planning(root: PathBuf) -> GcConfig {
        GcConfig {
            root,
            dry_run: true,
            delete_untagged: false,
            grace: Span::ZERO,
            allow_damage: false,
            purge_uploads: None,
            report: None,
            format: Format::Json,
            jobs: None,
            progress: false,
            policy: None,
            explain: false,
            force: false,
            metrics: None,
            break_lock: false,
            trash: None,
        }
    }
}

/// The canonical form of a root the user gave, or an error naming it.
pub fn canonical_root(root: &Path) -> Result<PathBuf> {
    root.canonicalize().map_err(|e| Error::io(root, e))
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
    let storage = doc
        .get("storage")
        .ok_or_else(|| bad("no storage section; regsweep needs the filesystem driver".into()))?;
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
    if let Some(dir) = env_override.filter(|s| !s.is_empty()) {
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
