//! The command line's arguments (clap derive), and how each is checked and turned into a
//! validated config before the core sees it.

pub use super::dropin::DropInArgs;
use super::memory::MemoryArgs;
use crate::config::{self, Format, GcConfig, Location, ReportTarget};
use crate::error::Error;
use crate::model::duration::Span;
use crate::policy::Policy;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "regsweep", version, about = "Garbage collection for a registry:2 storage, on disk or in a bucket (S3, Azure, GCS)", long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv every object-store request); RUST_LOG
    /// overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, display_order = 900)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mark what kept images need and sweep the rest.
    Gc(GcArgs),
    /// Drop-in for `registry garbage-collect CONFIG.yml`: the same arguments, regsweep's safety.
    #[command(name = "garbage-collect")]
    GarbageCollect(DropInArgs),
    /// Where the disk went: sizes per repository or tag, and what gc would free.
    Du(DuArgs),
    /// Find damage and leftovers, changing nothing.
    Check(CheckArgs),
    /// Retention policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The pull ledger: record the registry's pulls (its webhook, its logs) for pull rules.
    #[command(subcommand)]
    Pulls(super::PullsCommand),
    /// Carry out a plan written by `gc --dry-run --format json --report FILE`, re-checking each item.
    Apply(ApplyArgs),
    /// Put back what `gc --trash DIR` moved into DIR.
    Restore(RestoreArgs),
    /// Manage a trash folder.
    #[command(subcommand)]
    Trash(TrashCommand),
    /// One self-contained HTML page from the JSON of du, gc --dry-run and pulls status.
    Report(PageArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `regsweep man gc > regsweep-gc.1`; or write every page with
    /// --out-dir.
    Man {
        /// The command whose page to print (`gc`, `policy check`); none for regsweep(1).
        command: Vec<String>,
        /// Write every page (regsweep.1, regsweep-gc.1, ...) into DIR instead.
        #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath, conflicts_with = "command")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct PageArgs {
    /// `regsweep du --format json` output: where the space is.
    #[arg(long, value_name = "FILE")]
    pub du: Option<PathBuf>,
    /// `regsweep gc --dry-run --format json --report FILE` output: what goes and why.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// `regsweep pulls status --format json` output: what the ledger covers.
    #[arg(long, value_name = "FILE")]
    pub pulls: Option<PathBuf>,
    /// `regsweep du --by tag REPO --format json` output (repeatable): that repository's tags
    /// drawn inside it in the treemap, and listed.
    #[arg(long, value_name = "FILE")]
    pub du_tags: Vec<PathBuf>,
    /// The page to write (replaced whole).
    #[arg(long, short = 'o', value_name = "FILE.html")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan: a JSON gc report from a dry run.
    pub plan: PathBuf,
    /// With --root or --config: refuse unless the plan is for that storage (for a bucket, the
    /// config's endpoint and keys are used).
    #[command(flatten)]
    pub root: Option<RootArgs>,
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Refuse unless the plan's checksum is this one (printed by the dry run that wrote it):
    /// pins the plan a reviewer read, since anyone can recompute the checksum of an edited plan.
    #[arg(long, value_name = "SHA256")]
    pub checksum: Option<String>,
    /// Move what goes into this folder (same filesystem) instead of deleting it.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub trash: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    /// Remove a stale lock left by a run that died, and go on.
    #[arg(long)]
    pub break_lock: bool,
    /// Nothing on stdout and no progress bars, the same for every command: the exit code,
    /// stderr's warnings and errors, and the files --report and --metrics name still say
    /// what happened.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// After the sweep, ask the live registry at URL whether it still claims what went (as gc).
    #[arg(long, value_name = "URL")]
    pub registry_url: Option<String>,
    /// Sweep even when the registry's Redis cache (read from --config) cannot be reached.
    #[arg(long)]
    pub risk_stale_cache: bool,
    /// After the sweep, run CMD (`sh -c`) to restart a registry with an in-memory cache (as gc).
    #[arg(long, value_name = "CMD")]
    pub restart_command: Option<String>,
    /// The registry is stopped or read-only (as gc).
    #[arg(long)]
    pub registry_stopped: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("selection").required(true).args(["tag", "all"])))]
pub struct RestoreArgs {
    /// The trash folder given to gc.
    pub dir: PathBuf,
    /// Restore one tag and everything its image needs (REPO:TAG).
    #[arg(long, value_name = "REPO:TAG")]
    pub tag: Option<String>,
    /// Restore everything in the trash.
    #[arg(long)]
    pub all: bool,
    /// The registry's storage root: restore refuses a trash whose runs came from another.
    /// Without it, the root each run recorded is used once checked to be a registry layout.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath, conflicts_with = "config")]
    pub root: Option<PathBuf>,
    /// The registry's config file, for its storage.filesystem.rootdirectory (as --root).
    #[arg(long, value_name = "REGISTRY_CONFIG.yml", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// Remove a stale lock left by a run that died, and go on.
    #[arg(long)]
    pub break_lock: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
}

#[derive(Debug, Subcommand)]
pub enum TrashCommand {
    /// The runs in a trash folder: when, by which command, from which registry, items and bytes.
    List(TrashListArgs),
    /// Delete for good what has been in the trash longer than --older-than.
    Empty(TrashEmptyArgs),
}

#[derive(Debug, Args)]
pub struct TrashListArgs {
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
}

#[derive(Debug, Args)]
pub struct TrashEmptyArgs {
    pub dir: PathBuf,
    /// Only runs older than this (e.g. 7d); `0` empties everything.
    #[arg(long, value_name = "DURATION")]
    pub older_than: Span,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
}

/// Where the storage root comes from.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("storage").args(["root", "config"])))]
pub struct RootArgs {
    /// The registry's storage root: its `rootdirectory`; or a bucket and its `rootdirectory`:
    /// `s3://BUCKET/PREFIX` (credentials from the AWS_* environment), `az://CONTAINER/PREFIX`
    /// (AZURE_STORAGE_*), `gs://BUCKET/PREFIX` (GOOGLE_APPLICATION_CREDENTIALS; read only).
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub root: Option<PathBuf>,
    /// The registry's config file: its storage.filesystem.rootdirectory, or its storage.s3,
    /// storage.azure or storage.gcs bucket, root and credentials (with the registry's
    /// REGISTRY_STORAGE_* overrides).
    #[arg(long, value_name = "REGISTRY_CONFIG.yml", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// The endpoint of a bucket root, for an emulator or a private endpoint: an S3-compatible
    /// server (MinIO, Ceph RGW, R2...), GCS's base URL, Azure's account URL (serviceurl).
    #[arg(long = "endpoint", visible_alias = "s3-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,
    /// On a bucket: requests in flight at most (default 256; fewer for a while whenever the
    /// store answers 503 SlowDown).
    #[arg(long, value_name = "N")]
    pub s3_concurrency: Option<std::num::NonZeroUsize>,
    /// On a bucket: requests a second at most, for a bucket shared with production traffic.
    #[arg(long, value_name = "N")]
    pub max_requests_per_second: Option<std::num::NonZeroU32>,
    /// On a bucket: how long one request may take; it is retried with backoff for up to three
    /// times as long, then the run fails naming the endpoint, before it plans (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<crate::model::duration::Span>,
}

/// `text` as one shell word: left bare when it is plain, single-quoted otherwise.
pub(super) fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._:=@+-,%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A storage as the options name it: where it is, the registry's config when one was read,
/// and the `REGISTRY_*` variables that config was completed from.
type Resolved = (
    Location,
    Option<config::registry::RegistryConfig>,
    Vec<String>,
);

impl RootArgs {
    /// The storage options as given, for a printed command line that reaches the same storage
    /// (an s3:// plan's endpoint and keys come from them, not from the plan).
    pub(super) fn replay(&self) -> String {
        let mut out = String::new();
        // A bucket root with its endpoint: `--endpoint` alone is no storage option apply takes.
        if let Some(r) = &self.root
            && self.endpoint.is_some()
        {
            out += &format!(" --root {}", shell_word(&r.to_string_lossy()));
        }
        if let Some(c) = &self.config {
            out += &format!(" --config {}", shell_word(&c.to_string_lossy()));
        }
        if let Some(e) = &self.endpoint {
            out += &format!(" --endpoint {}", shell_word(e));
        }
        out
    }

    pub(super) fn resolve(self) -> Result<Location, Error> {
        self.resolve_with_cache().map(|(root, _)| root)
    }

    /// The root, and the registry's blob-descriptor cache when a config says it.
    pub(super) fn resolve_with_cache(
        self,
    ) -> Result<(Location, Option<config::registry::BlobCache>), Error> {
        self.resolve_with_env()
            .map(|(root, read, _)| (root, read.map(|r| r.cache)))
    }

    /// `resolve_with_cache`, with the names of the environment variables the registry's config
    /// was completed from.
    pub(super) fn resolve_with_env(self) -> Result<Resolved, Error> {
        let (concurrency, rate) = (self.s3_concurrency, self.max_requests_per_second);
        let timeout = self.request_timeout;
        let (mut root, cache, from_env) = self.location()?;
        match &mut root {
            Location::Bucket(s3) => {
                s3.concurrency = concurrency.map(std::num::NonZeroUsize::get);
                s3.max_rps = rate.map(std::num::NonZeroU32::get);
                s3.timeout = timeout.map(|t| t.0);
            }
            Location::Fs(_) if concurrency.is_some() || rate.is_some() || timeout.is_some() => {
                return Err(Error::Usage(
                    "--s3-concurrency, --max-requests-per-second and --request-timeout apply to a bucket (an s3://, az:// or gs:// root, or a config with a bucket driver)".into(),
                ));
            }
            Location::Fs(_) => {}
        }
        Ok((root, cache, from_env))
    }

    fn location(self) -> Result<Resolved, Error> {
        match (self.root, self.config) {
            (Some(r), None) => match r.to_str() {
                Some(text) => Ok((Location::parse(text, self.endpoint)?, None, Vec::new())),
                None if self.endpoint.is_none() => Ok((Location::Fs(r), None, Vec::new())),
                None => Err(Error::Usage(
                    "--endpoint needs a bucket root (s3://, gs:// or az://BUCKET/PREFIX)".into(),
                )),
            },
            (None, Some(c)) => {
                // The registry completes its config from REGISTRY_* variables: each one used is
                // said (at -v, and in the report), so that a root from the environment is seen.
                let used = std::cell::RefCell::new(std::collections::BTreeSet::new());
                let env = |k: &str| {
                    let v = std::env::var(k).ok().filter(|v| !v.is_empty());
                    if v.is_some() && used.borrow_mut().insert(k.to_string()) {
                        tracing::info!("{}: {k} from the environment", c.display());
                    }
                    v
                };
                let read = config::registry::read(&c, &env)?;
                let mut root = read.storage.clone();
                if let (Location::Bucket(s3), Some(e)) = (&mut root, self.endpoint) {
                    crate::endpoint::check(&e)
                        .map_err(|why| Error::Usage(format!("--endpoint: {why}")))?;
                    s3.endpoint = Some(e);
                }
                Ok((root, Some(read), used.into_inner().into_iter().collect()))
            }
            _ => Err(Error::Usage(
                "give exactly one of --root DIR or --config FILE".into(),
            )),
        }
    }
}

/// The manifest cache: parsed manifests kept between runs, so that a run reads only the
/// manifests pushed since the last one.
#[derive(Debug, Args, Default)]
pub struct CacheArgs {
    /// Keep parsed manifests in FILE (default: one file per root in $CACHE_DIRECTORY, which
    /// systemd's CacheDirectory= sets, or in $XDG_CACHE_HOME/regsweep or ~/.cache/regsweep).
    #[arg(long, value_name = "FILE", conflicts_with = "no_cache")]
    pub cache: Option<PathBuf>,
    /// Read every manifest from storage, and keep no cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache file for `root`, or none.
    pub(super) fn resolve(self, root: &Location) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache.or_else(|| {
            let key = match root {
                Location::Fs(p) => p.canonicalize().unwrap_or_else(|_| p.clone()),
                Location::Bucket(s3) => PathBuf::from(format!(
                    "{} {}",
                    s3.url(),
                    s3.endpoint.as_deref().unwrap_or("")
                )),
            };
            crate::stages::cache::default_path(&key)
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DuFormatArg {
    /// The table (also `text`, the name gc and check use).
    #[value(alias = "text")]
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DuSortArg {
    Bytes,
    Exclusive,
    Name,
}

#[derive(Debug, Args)]
pub struct DuArgs {
    #[command(flatten)]
    pub root: RootArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: DuFormatArg,
    /// Show the N largest (the rest summed in one row); default 20 in a table, all otherwise.
    #[arg(long, value_name = "N")]
    pub top: Option<std::num::NonZeroUsize>,
    /// Order of rows.
    #[arg(long, value_enum, default_value = "bytes")]
    pub sort: DuSortArg,
    /// Also say what this retention policy would free (with --delete-untagged).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// With --ledger: the latest pull per repository, and per tag with --by tag.
    #[command(flatten)]
    pub used: super::UsedArgs,
    /// `--by tag REPO`: one row per tag of REPO, with its size and its exclusive bytes.
    #[arg(long, num_args = 2, value_names = ["tag", "REPO"], value_hint = clap::ValueHint::Other)]
    pub by: Option<Vec<String>>,
    /// The grace gc would run with (for the reclaimable figures).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub grace: Span,
    /// Write Prometheus metrics to FILE (for node_exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Nothing on stdout and no progress bars, the same for every command: the exit code,
    /// stderr's warnings and errors, and the files --report and --metrics name still say
    /// what happened.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub root: RootArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Hash every blob and compare it with its name.
    #[arg(long)]
    pub verify_digests: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    /// The text lists the first N findings of each kind of list, then how many more (JSON keeps
    /// them all).
    #[arg(long, value_name = "N", default_value_t = 20, conflicts_with = "all")]
    pub limit: usize,
    /// The text lists every finding.
    #[arg(long)]
    pub all: bool,
    /// Write Prometheus metrics to FILE (for node_exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Nothing on stdout and no progress bars, the same for every command: the exit code,
    /// stderr's warnings and errors, and the files --report and --metrics name still say
    /// what happened.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and, with --root or --config, preview what it would delete.
    Check(PolicyCheckArgs),
}

#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The policy file.
    pub file: PathBuf,
    /// With --root or --config: preview what the policy would delete there.
    #[command(flatten)]
    pub root: Option<RootArgs>,
    /// List every tag in the preview, kept or deleted, and why.
    #[arg(long)]
    pub explain: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    #[command(flatten)]
    pub used: super::UsedArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Text,
    Json,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
        }
    }
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub root: RootArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Report what would be deleted; delete nothing (`-d` as in the reference's command).
    #[arg(long, short = 'n', short_alias = 'd')]
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (index children and referrers of kept ones stay);
    /// with AGE (`-m 7d`, `-m7d`, `--delete-untagged=7d`), only those pushed more than AGE ago.
    // gc takes no positional argument, so a value after a space is unambiguous, as for
    // --purge-uploads.
    #[arg(long, short = 'm', value_name = "AGE", num_args = 0..=1, default_missing_value = "0")]
    pub delete_untagged: Option<Span>,
    /// Keep anything modified within this long (`0` turns it off).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub grace: Span,
    /// Sweep even where damaged objects hide what they reference.
    #[arg(long)]
    pub allow_damage: bool,
    /// Delete abandoned uploads started more than AGE ago (168h when given without a value).
    #[arg(long, value_name = "AGE", num_args = 0..=1, default_missing_value = "168h")]
    pub purge_uploads: Option<Span>,
    /// Write the report to FILE (`-` for stdout) instead of stdout.
    #[arg(long, value_name = "FILE|-")]
    pub report: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    /// The text report shows the first N items of each list, then how many more (JSON keeps
    /// them all).
    #[arg(long, value_name = "N", default_value_t = 20, conflicts_with = "all")]
    pub limit: usize,
    /// The text report shows every item.
    #[arg(long)]
    pub all: bool,
    /// Worker threads (default: 8, or one per core where there are more).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<std::num::NonZeroUsize>,
    /// Nothing on stdout and no progress bars, the same for every command: the exit code,
    /// stderr's warnings and errors, and the files --report and --metrics name still say
    /// what happened.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Retention policy (YAML) deciding which tags are deleted; see docs/POLICY.md.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Collect only the repositories matching GLOB (repeatable; `!GLOB` excludes; `*` stays
    /// within a path segment, `**` crosses). Others keep everything, and every blob they link
    /// or reach stays; blobs linked from no repository are left to an unscoped run.
    #[arg(long, value_name = "GLOB")]
    pub repository: Vec<String>,
    /// With --policy: report every tag, kept or deleted, and why.
    #[arg(long, requires = "policy")]
    pub explain: bool,
    /// With --policy: apply it even where its safety net refuses.
    #[arg(long, requires = "policy")]
    pub force: bool,
    /// Write Prometheus metrics to FILE (for node_exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Remove a stale lock left by a run that died, and go on.
    #[arg(long)]
    pub break_lock: bool,
    /// Move what goes into this folder (same filesystem) instead of deleting it; see `restore`.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub trash: Option<PathBuf>,
    /// After a sweep, ask the live registry at URL (HEAD requests, a sample of 1000 at most)
    /// whether it still claims what went; exit 4 if it does. Basic auth from
    /// REGSWEEP_REGISTRY_USERNAME and REGSWEEP_REGISTRY_PASSWORD.
    #[arg(long, value_name = "URL")]
    pub registry_url: Option<String>,
    /// Sweep even when the registry's Redis cache (read from --config) cannot be reached to
    /// evict what goes: the registry then claims swept blobs until it is restarted.
    #[arg(long)]
    pub risk_stale_cache: bool,
    /// After a sweep, run CMD (through `sh -c`) to restart a registry whose blob-descriptor
    /// cache is in memory (killed after 5 min); its exit status and the registry's answers
    /// after it are reported.
    #[arg(long, value_name = "CMD")]
    pub restart_command: Option<String>,
    /// The registry is stopped (or read-only, and restarted after the sweep): a sweep beside
    /// a running registry with an in-memory cache is refused without this or --restart-command.
    #[arg(long)]
    pub registry_stopped: bool,
    /// A pull-through cache: what it cached expires this long after it was cached.
    #[arg(long, value_name = "DURATION")]
    pub proxy_ttl: Option<Span>,
    #[command(flatten)]
    pub used: super::UsedArgs,
    /// Set by the `garbage-collect` drop-in: print the reference's lines too.
    #[arg(skip)]
    pub reference_output: bool,
}

impl GcArgs {
    /// Checks every value and resolves the root.
    pub fn validate(self) -> Result<GcConfig, Error> {
        let storage_args = self.root.replay();
        let (root, registry, settings_from_env) = self.root.resolve_with_env()?;
        let proxy = crate::config::ProxyOptions::of(registry.as_ref(), self.proxy_ttl)?;
        let registry_cache = registry.map(|r| r.cache);
        if let Some(url) = &self.registry_url {
            crate::live::probe::check_url(url)
                .map_err(|why| Error::Usage(format!("--registry-url: {why}")))?;
        }
        let live = crate::live::LiveOptions {
            cache: registry_cache,
            registry_url: self.registry_url,
            risk_stale_cache: self.risk_stale_cache,
            restart_command: self.restart_command,
            registry_stopped: self.registry_stopped,
            journal_limit: super::faults::journal_limit(),
        };
        let cache = self.cache.resolve(&root);
        let report = match self.report.as_deref() {
            Some("-") => Some(ReportTarget::Stdout),
            Some("") => return Err(Error::Usage("--report: empty file name".into())),
            Some(p) => Some(ReportTarget::File(PathBuf::from(p))),
            None if self.quiet => None,
            None => Some(ReportTarget::Stdout),
        };
        let policy = match &self.policy {
            Some(p) => Some(Policy::load(p)?),
            None => None,
        };
        let evidence = evidence(&self.used, policy.as_ref());
        let used = self.used.read(policy.as_ref())?;
        let scope = if self.repository.is_empty() {
            None
        } else {
            Some(
                crate::policy::Matcher::compile(&self.repository)
                    .map_err(|e| Error::Usage(format!("--repository: {e}")))?,
            )
        };
        // The command line's -m wins over the policy's `untagged:`.
        let untagged_older_than = self
            .delete_untagged
            .or_else(|| policy.as_ref().and_then(|p| p.untagged_older_than));
        let options = crate::gc::planfile::Options {
            delete_untagged: untagged_older_than.is_some(),
            delete_untagged_older_than: untagged_older_than.filter(|a| !a.is_zero()),
            grace: self.grace,
            allow_damage: self.allow_damage,
            purge_uploads: self.purge_uploads,
            repositories: self.repository.clone(),
            evidence,
        };
        let memory = self.memory.bound();
        Ok(GcConfig {
            memory,
            storage_args,
            settings_from_env,
            policy,
            scope,
            explain: self.explain,
            force: self.force,
            metrics: self.metrics,
            break_lock: self.break_lock,
            trash: self.trash,
            reference_output: self.reference_output,
            root,
            cache,
            text_limit: (!self.all).then_some(self.limit),
            dry_run: self.dry_run,
            options,
            report,
            format: self.format.into(),
            jobs: self.jobs.map(std::num::NonZeroUsize::get),
            progress: !self.quiet,
            live,
            used,
            proxy,
        })
    }
}

/// The files of use a run reads, for its plan (`apply` reads them again).
fn evidence(u: &super::UsedArgs, policy: Option<&Policy>) -> Option<crate::gc::planfile::Evidence> {
    {
        let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        let mut files: Vec<PathBuf> = (u.keep_images.iter())
            .filter(|f| f.as_os_str() != "-")
            .map(abs)
            .collect();
        files.extend(policy.and_then(|p| p.protect_images_file.as_ref()).map(abs));
        if files.is_empty() && u.ledger.is_none() {
            return None;
        }
        Some(crate::gc::planfile::Evidence {
            read_at: chrono::Utc::now().timestamp(),
            images_files: files,
            images_empty_ok: u.keep_images_empty_ok,
            registry_hosts: u.registry_host.clone(),
            ledger: u.ledger.as_ref().map(abs),
        })
    }
}
