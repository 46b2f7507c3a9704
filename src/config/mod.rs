//! The validated configuration the core runs with; `registry` reads the registry's own config file.

pub mod registry;

pub use crate::storage::bucket::BucketRoot;
pub use crate::storage::location::{Location, canonical_root};

use crate::model::{Rules, Time};
use std::path::PathBuf;

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
    pub root: Location,
    /// The storage options as given (` --config FILE`...), for the printed `apply` line.
    pub storage_args: String,
    /// The registry's `REGISTRY_*` environment variables its config was read with (the root
    /// from REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY, say): named in the report.
    pub settings_from_env: Vec<String>,
    /// The manifest cache file (`--cache`, or the default per root); `None` with `--no-cache`.
    pub cache: Option<PathBuf>,
    /// Items of each list the text report shows; `None` shows all.
    pub text_limit: Option<usize>,
    pub dry_run: bool,
    /// What the run plans with (-m and its age, grace, damage, uploads, the `--repository`
    /// patterns): the same type the plan file carries to `apply`.
    pub options: crate::gc::planfile::Options,
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
    pub live: LiveOptions,
    /// A pull-through cache (its config's `proxy`, or `--proxy-ttl`): expire what its TTL let go.
    pub proxy: Option<ProxyOptions>,
    /// `--keep-images`, `--registry-host`, `--ledger`, `--ledger-lag`.
    pub used: crate::policy::used::Used,
    /// `--memory-limit`: how much the run may hold (the bounded mode spills the rest).
    pub memory: crate::spill::Bound,
}

impl GcConfig {
    /// The rules this config gives at `now`.
    pub fn rules(&self, now: Time) -> Rules {
        self.options.rules(now)
    }

    /// A config that only looks: a dry run with no grace, no policy and every option off.
    pub fn planning(root: impl Into<Location>) -> GcConfig {
        GcConfig {
            root: root.into(),
            storage_args: String::new(),
            settings_from_env: Vec::new(),
            cache: None,
            text_limit: None,
            dry_run: true,
            options: crate::gc::planfile::Options::default(),
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
            live: LiveOptions::default(),
            used: crate::policy::used::Used::default(),
            proxy: None,
            memory: crate::spill::Bound::default(),
        }
    }
}

/// A pull-through cache's root: how long what it cached stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyOptions {
    /// The registry's TTL (`proxy.ttl`, 7 days in 2.8): what `ExpiryData` was counted with.
    pub ttl: std::time::Duration,
    /// `--proxy-ttl`: expire this long after caching instead.
    pub instead: Option<std::time::Duration>,
}

impl ProxyOptions {
    /// From the registry's config (a `proxy` section) and `--proxy-ttl`; `None` for a root
    /// that is no pull-through cache.
    pub fn of(
        config: Option<&registry::RegistryConfig>,
        proxy_ttl: Option<crate::model::duration::Span>,
    ) -> crate::error::Result<Option<ProxyOptions>> {
        let ttl = config.and_then(|c| c.proxy.as_ref()).map(|p| p.ttl);
        Ok(match (ttl, proxy_ttl) {
            (None, None) => None,
            (ttl, instead) => Some(ProxyOptions {
                ttl: ttl.unwrap_or(registry::PROXY_TTL),
                instead: instead.map(|s| std::time::Duration::from_secs(s.as_secs())),
            }),
        })
    }
}

/// What the run knows of the registry's cache, and what it may risk.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// From `--config`; `None` when only `--root` was given (the cache is unknown).
    pub cache: Option<registry::BlobCache>,
    /// `--registry-url`: ask the registry about what was swept.
    pub registry_url: Option<String>,
    /// `--risk-stale-cache`: sweep even when the Redis cache cannot be reached.
    pub risk_stale_cache: bool,
    /// `--restart-command`: run after a sweep so that an in-memory cache forgets.
    pub restart_command: Option<String>,
    /// `--registry-stopped`: the operator says the registry is not serving (or is read-only
    /// and restarted after): an in-memory cache cannot outlive the sweep.
    pub registry_stopped: bool,
    /// The longest pending-eviction journal that lists what it evicts (default: the state
    /// file limit); the fault hook `__REGSWEEP_FAULT_JOURNAL_LIMIT` lowers it in tests.
    pub journal_limit: Option<u64>,
}

impl LiveOptions {
    /// Whether the registry is told or asked what a sweep removed (a Redis cache, the probe,
    /// a restart and the probe after it): only then is a list of what went made.
    pub fn wants_swept(&self, redis: bool) -> bool {
        redis || self.registry_url.is_some() || self.restart_command.is_some()
    }
}
