//! The command line (clap derive), turned into a validated config before the core sees it.

mod bars;

use bars::Bars;

use crate::commands::gc;
use crate::config::{self, Format, GcConfig, Location, ReportTarget};
use crate::error::Error;
use crate::error::ExitCode;
use crate::model::duration::Span;
use crate::policy::Policy;
use crate::units::plural;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Parser)]
#[command(name = "regsweep", version, about = "Garbage collection for a registry:2 storage, on disk or in an S3 bucket", long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv every object-store request); RUST_LOG
    /// overrides. Coloured only on a terminal, and never with NO_COLOR set.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
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
    /// Carry out a plan written by `gc --dry-run --format json --report FILE`, re-checking each item.
    Apply(ApplyArgs),
    /// Put back what `gc --trash DIR` moved into DIR.
    Restore(RestoreArgs),
    /// Manage a trash folder.
    #[command(subcommand)]
    Trash(TrashCommand),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `regsweep man > regsweep.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan: a JSON gc report from a dry run.
    pub plan: PathBuf,
    /// Refuse unless the plan is for this storage root (a folder, or s3://BUCKET/PREFIX).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub root: Option<PathBuf>,
    /// Refuse unless the plan is for the storage of this registry config (for a bucket, its
    /// endpoint and keys are used).
    #[arg(long, value_name = "REGISTRY_CONFIG.yml")]
    pub config: Option<PathBuf>,
    /// The S3-compatible endpoint of an s3:// root.
    #[arg(long, value_name = "URL", requires = "root")]
    pub s3_endpoint: Option<String>,
    /// Refuse unless the plan's checksum is this one (printed by the dry run that wrote it):
    /// pins the plan a reviewer read, since anyone can recompute the checksum of an edited plan.
    #[arg(long, value_name = "SHA256")]
    pub checksum: Option<String>,
    /// Move what goes into this folder (same filesystem) instead of deleting it.
    #[arg(long, value_name = "DIR")]
    pub trash: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    /// Remove a stale lock left by a run that died, and go on.
    #[arg(long)]
    pub break_lock: bool,
    /// No progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// After the sweep, ask the live registry at URL whether it still claims what went (as gc).
    #[arg(long, value_name = "URL")]
    pub registry_url: Option<String>,
    /// Sweep even when the registry's Redis cache (read from --config) cannot be reached.
    #[arg(long)]
    pub risk_stale_cache: bool,
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
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Remove a stale lock left by a run that died, and go on.
    #[arg(long)]
    pub break_lock: bool,
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
}

/// Where the storage root comes from.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("storage").required(true).args(["root", "config"])))]
pub struct RootArgs {
    /// The registry's storage root: its `rootdirectory`, or `s3://BUCKET/PREFIX` for the s3
    /// driver's bucket and `rootdirectory` (credentials from the AWS_* environment).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The registry's config file: its storage.filesystem.rootdirectory, or its storage.s3
    /// bucket, endpoint, prefix and keys (with the registry's REGISTRY_STORAGE_* overrides).
    #[arg(long, value_name = "REGISTRY_CONFIG.yml")]
    pub config: Option<PathBuf>,
    /// The S3-compatible endpoint of an s3:// root (MinIO, Ceph RGW, R2...); AWS otherwise.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
}

impl RootArgs {
    fn resolve(self) -> Result<Location, Error> {
        self.resolve_with_cache().map(|(root, _)| root)
    }

    /// The root, and the registry's blob-descriptor cache when a config says it.
    fn resolve_with_cache(self) -> Result<(Location, Option<config::registry::BlobCache>), Error> {
        match (self.root, self.config) {
            (Some(r), None) => match r.to_str() {
                Some(text) => Ok((Location::parse(text, self.s3_endpoint)?, None)),
                None if self.s3_endpoint.is_none() => Ok((Location::Fs(r), None)),
                None => Err(Error::Usage(
                    "--s3-endpoint needs an s3://BUCKET/PREFIX root".into(),
                )),
            },
            (None, Some(c)) => {
                let read = config::registry::read(&c, &|k| std::env::var(k).ok())?;
                let mut root = read.storage;
                if let (Location::S3(s3), Some(e)) = (&mut root, self.s3_endpoint) {
                    crate::endpoint::check(&e)
                        .map_err(|why| Error::Usage(format!("--s3-endpoint: {why}")))?;
                    s3.endpoint = Some(e);
                }
                Ok((root, Some(read.cache)))
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
    /// Keep parsed manifests in FILE (default: one file per root in the user's cache folder,
    /// $XDG_CACHE_HOME/regsweep or ~/.cache/regsweep).
    #[arg(long, value_name = "FILE", conflicts_with = "no_cache")]
    pub cache: Option<PathBuf>,
    /// Read every manifest from storage, and keep no cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache file for `root`, or none.
    fn resolve(self, root: &Location) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache.or_else(|| {
            let key = match root {
                Location::Fs(p) => p.canonicalize().unwrap_or_else(|_| p.clone()),
                Location::S3(s3) => PathBuf::from(format!(
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
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: DuFormatArg,
    /// Show the N largest (the rest summed in one row); default 20 in a table, all otherwise.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Order of rows.
    #[arg(long, value_enum, default_value = "bytes")]
    pub sort: DuSortArg,
    /// Also say what this retention policy would free (with --delete-untagged).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// `--by tag REPO`: one row per tag of REPO, with its size and its exclusive bytes.
    #[arg(long, num_args = 2, value_names = ["tag", "REPO"])]
    pub by: Option<Vec<String>>,
    /// The grace gc would run with, for the reclaimable figures.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub grace: Span,
    /// Write Prometheus metrics to FILE (for node_exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub root: RootArgs,
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
    /// No progress bars.
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
    /// Preview on this registry storage root (a folder, or s3://BUCKET/PREFIX).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub root: Option<PathBuf>,
    /// Preview on the root named by this registry config file.
    #[arg(long, value_name = "REGISTRY_CONFIG.yml")]
    pub config: Option<PathBuf>,
    /// The S3-compatible endpoint of an s3:// root.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// List every tag in the preview, kept or deleted, and why.
    #[arg(long)]
    pub explain: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
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
    /// Report what would be deleted; delete nothing (`-d` as in the reference's command).
    #[arg(long, short = 'n', short_alias = 'd')]
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (index children and referrers of kept ones stay);
    /// with `=AGE`, only those pushed more than AGE ago.
    #[arg(long, short = 'm', value_name = "AGE", num_args = 0..=1, require_equals = true,
        default_missing_value = "0")]
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
    pub jobs: Option<usize>,
    /// No progress bars, and no report on stdout unless --report names it.
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
    #[arg(long, value_name = "DIR")]
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
    /// Set by the `garbage-collect` drop-in: print the reference's lines too.
    #[arg(skip)]
    pub reference_output: bool,
}

#[derive(Debug, Args)]
pub struct DropInArgs {
    /// Report what would be deleted; delete nothing (`--dry-run=false` too, as Go's flags take).
    #[arg(long, short = 'd', num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub dry_run: bool,
    /// Delete manifests that are not currently referenced via tag.
    #[arg(long, short = 'm', num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub delete_untagged: bool,
    /// Silence output.
    #[arg(long, short = 'q', num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub quiet: bool,
    /// The registry's config file.
    pub config: PathBuf,
}

impl GcArgs {
    /// Checks every value and resolves the root.
    pub fn validate(self) -> Result<GcConfig, Error> {
        if self.jobs == Some(0) {
            return Err(Error::Usage("-j/--jobs: must be at least 1".into()));
        }
        let (root, registry_cache) = self.root.resolve_with_cache()?;
        if let Some(url) = &self.registry_url {
            crate::live::probe::check_url(url)
                .map_err(|why| Error::Usage(format!("--registry-url: {why}")))?;
        }
        let live = crate::live::LiveOptions {
            cache: registry_cache,
            registry_url: self.registry_url,
            risk_stale_cache: self.risk_stale_cache,
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
        let delete_untagged = untagged_older_than.is_some();
        Ok(GcConfig {
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
            delete_untagged,
            untagged_older_than,
            grace: self.grace,
            allow_damage: self.allow_damage,
            purge_uploads: self.purge_uploads,
            report,
            format: self.format.into(),
            jobs: self.jobs,
            progress: !self.quiet,
            live,
        })
    }
}

impl DropInArgs {
    /// The reference command's meaning, with regsweep's defaults (grace 1h, damage stops sweeping).
    pub fn into_gc(self) -> GcArgs {
        GcArgs {
            root: RootArgs {
                root: None,
                config: Some(self.config),
                s3_endpoint: None,
            },
            cache: CacheArgs::default(),
            limit: 20,
            all: false,
            dry_run: self.dry_run,
            delete_untagged: self.delete_untagged.then_some(Span::ZERO),
            grace: Span::from_secs(3600),
            allow_damage: false,
            purge_uploads: None,
            report: None,
            format: FormatArg::Text,
            jobs: None,
            quiet: self.quiet,
            policy: None,
            repository: Vec::new(),
            explain: false,
            force: false,
            metrics: None,
            break_lock: false,
            trash: None,
            registry_url: None,
            risk_stale_cache: false,
            // Only printed when not quiet: not built when it would not be.
            reference_output: !self.quiet,
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        // Every object-store request, too.
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("regsweep={default}")));
    // Colour only for a person at a terminal, and never when NO_COLOR is set (no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

/// Parses the process arguments, runs, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            };
        }
    };
    init_logging(cli.verbose);
    install_signal_handlers();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            let code = e
                .downcast_ref::<Error>()
                .map_or(ExitCode::Error, Error::exit_code);
            eprintln!("regsweep: error: {e:#}");
            code
        }
    }
}

/// Set by SIGINT and SIGTERM (through signal-hook, which does only that in the handler).
static STOP: std::sync::LazyLock<std::sync::Arc<AtomicBool>> =
    std::sync::LazyLock::new(Default::default);

/// Sends `sig` to this process (the fault hooks' real signals).
fn raise(sig: rustix::process::Signal) {
    let _ = rustix::process::kill_process(rustix::process::getpid(), sig);
}

/// Fault injection for the test suite, read from the environment (documented in
/// `tests/integration/faults.rs`): a real SIGKILL or SIGTERM to this process once the sweep has
/// asked to go on N times (`REGSWEEP_FAULT_KILL_AFTER`, `REGSWEEP_FAULT_TERM_AFTER`), a SIGKILL
/// right after the Nth item is out of the registry's sight but not yet deleted
/// (`REGSWEEP_FAULT_KILL_STAGED`), and a pause between planning and sweeping
/// (`REGSWEEP_FAULT_PAUSE`). Unset in normal use, they change nothing.
struct Faults {
    kill_after: Option<usize>,
    term_after: Option<usize>,
    kill_staged: Option<usize>,
    asked: std::sync::atomic::AtomicUsize,
    staged: std::sync::atomic::AtomicUsize,
}

impl Faults {
    fn from_env() -> Faults {
        let n = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
        Faults {
            kill_after: n("REGSWEEP_FAULT_KILL_AFTER"),
            term_after: n("REGSWEEP_FAULT_TERM_AFTER"),
            kill_staged: n("REGSWEEP_FAULT_KILL_STAGED"),
            asked: Default::default(),
            staged: Default::default(),
        }
    }

    /// The sweep's "item staged" call: SIGKILL at the chosen one.
    fn staged(&self) {
        if let Some(k) = self.kill_staged
            && self.staged.fetch_add(1, Ordering::SeqCst) == k
        {
            raise(rustix::process::Signal::KILL);
        }
    }

    /// The sweep's `stop` question, with the faults on the way.
    fn stop(&self) -> bool {
        if self.kill_after.is_some() || self.term_after.is_some() {
            let n = self.asked.fetch_add(1, Ordering::SeqCst);
            if self.kill_after == Some(n) {
                raise(rustix::process::Signal::KILL);
            }
            if self.term_after == Some(n) {
                raise(rustix::process::Signal::TERM);
            }
        }
        STOP.load(Ordering::Relaxed)
    }
}

/// With REGSWEEP_FAULT_PAUSE=FILE: announce FILE.ready, then wait until FILE exists.
fn fault_pause() {
    let Some(go) = std::env::var_os("REGSWEEP_FAULT_PAUSE").map(PathBuf::from) else {
        return;
    };
    let mut ready = go.clone().into_os_string();
    ready.push(".ready");
    let _ = std::fs::write(&ready, std::process::id().to_string());
    while !go.exists() && !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// SIGINT and SIGTERM stop a sweep after the items in hand; the report says what was done.
fn install_signal_handlers() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, STOP.clone());
    }
}

/// Worker threads when -j is not given: at least 8, since scanning and sweeping mostly wait on
/// the filesystem, and a deeper queue of stats and renames keeps a cold cache or a slow disk busy.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(8, |n| n.get().max(8))
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    // Each worker thread would get a malloc arena of its own, and freed memory stays in it:
    // two arenas keep peak memory what the model needs, whatever the number of workers. (No
    // crate wraps mallopt: this is the one hand-written unsafe block outside the tests.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter, before any worker thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    // du, check, apply and restore use the global pool; gc builds its own for -j.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(default_jobs())
        .build_global();
    let drop_in = matches!(command, Command::GarbageCollect(_));
    let args = match command {
        Command::Gc(a) => a,
        Command::GarbageCollect(a) => a.into_gc(),
        Command::Policy(PolicyCommand::Check(a)) => return policy_check(a),
        Command::Du(a) => return du(a),
        Command::Restore(a) => return restore(a),
        Command::Apply(a) => return apply(a),
        Command::Trash(TrashCommand::Empty(a)) => return trash_empty(a),
        Command::Trash(TrashCommand::List(a)) => return trash_list(a),
        Command::Check(a) => return check(a),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "regsweep", &mut std::io::stdout());
            return Ok(ExitCode::Ok);
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                // `| head` closing the pipe is no error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => return Ok(ExitCode::Ok),
            }
        }
    };
    let cfg = args.validate()?;
    let faults = Faults::from_env();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.jobs.unwrap_or_else(default_jobs))
        .build()?;
    let hooks = gc::Hooks {
        stop: &|| faults.stop(),
        before_sweep: &fault_pause,
        staged: &|| faults.staged(),
    };
    let (report, code) = pool.install(|| gc::run(&cfg, &hooks, &*Bars::when(cfg.progress)))?;
    gc::write_report(&cfg, &report)?;
    // What was not written goes to stderr too: a quiet, JSON or report-file run would
    // otherwise fail without a word.
    for e in &report.output_errors {
        eprintln!("regsweep: error: {e}");
    }
    let shown = cfg.format == Format::Text && cfg.report == Some(ReportTarget::Stdout);
    if !report.output_errors.is_empty() && report.summary.items_removed > 0 && !shown {
        // The sweep happened: its record must survive the failed output.
        eprintln!("regsweep: the sweep went ahead; what it did:");
        eprint!("{}", report.to_text());
    }
    if drop_in && cfg.report.is_some() {
        // The reference's own lines too, for scripts that grep them.
        print(&report.reference_lines());
    }
    // A plan for review: say the checksum that pins it, for `apply --checksum`.
    if let (true, Format::Json, Some(ReportTarget::File(path))) =
        (cfg.dry_run, cfg.format, &cfg.report)
    {
        let sum = report.checksum();
        eprintln!(
            "plan written to {}\nchecksum {sum}\nafter review: regsweep apply {} --checksum {sum}",
            path.display(),
            path.display()
        );
    }
    if code == ExitCode::Damage && cfg.report.is_none() {
        eprintln!(
            "regsweep: damage found: {} problems (run without --quiet to see them)",
            report.summary.errors
        );
    }
    Ok(code)
}

/// `policy check`: validate, then preview per repository when a root is given.
fn policy_check(a: PolicyCheckArgs) -> anyhow::Result<ExitCode> {
    let started = chrono::Utc::now();
    let policy = Policy::load(&a.file)?;
    let json = matches!(a.format, FormatArg::Json);
    if a.root.is_none() && a.config.is_none() {
        if json {
            let report = crate::report::PolicyFileReport::new(&a.file, &policy, started);
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            let names: Vec<&str> = policy.rules.iter().map(|r| r.name.as_str()).collect();
            let rules = if names.is_empty() {
                "no rules".to_string()
            } else {
                format!(
                    "{} ({})",
                    plural(names.len(), "rule", "rules"),
                    names.join(", ")
                )
            };
            let untagged = match policy.untagged_older_than {
                Some(age) => format!(", untagged manifests go after {age}"),
                None => String::new(),
            };
            println!(
                "{}: valid: {rules}, age_from: {}, {}, {}{untagged}",
                a.file.display(),
                policy.age_from.word(),
                plural(
                    policy
                        .protect_tags
                        .as_ref()
                        .map_or(0, |m| m.patterns().len()),
                    "protected tag pattern",
                    "protected tag patterns"
                ),
                plural(
                    policy.protect_digests.len(),
                    "protected digest",
                    "protected digests"
                )
            );
        }
        return Ok(ExitCode::Ok);
    }
    let root = RootArgs {
        root: a.root,
        config: a.config,
        s3_endpoint: a.s3_endpoint,
    }
    .resolve()?;
    let cfg = GcConfig {
        delete_untagged: policy.untagged_older_than.is_some(),
        untagged_older_than: policy.untagged_older_than,
        policy: Some(policy.clone()),
        ..GcConfig::planning(root.clone())
    };
    let now = chrono::Utc::now().timestamp();
    let job = gc::Preview { cfg: &cfg, now };
    let (v2, plan, explain) = root.open(&job, &crate::progress::Hidden)?;
    let preview =
        crate::report::PolicyPreview::new(&a.file, &policy, started, &v2, &plan, &explain);
    if json {
        let mut v = serde_json::to_value(&preview)?;
        if !a.explain {
            v.as_object_mut().map(|o| o.remove("explain"));
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", preview.to_text(a.explain));
    }
    Ok(if preview.refused.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Error
    })
}

fn print(out: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not worth an error.
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush());
}

fn du(a: DuArgs) -> anyhow::Result<ExitCode> {
    let by_tag = match a.by.as_deref() {
        None => None,
        Some([kind, repo]) if kind == "tag" => Some(repo.clone()),
        Some(other) => {
            return Err(
                Error::Usage(format!("--by: expected `--by tag REPO`, got {other:?}")).into(),
            );
        }
    };
    if a.top == Some(0) {
        return Err(Error::Usage("--top: must be at least 1".into()).into());
    }
    let policy = match &a.policy {
        Some(p) => Some(Policy::load(p)?),
        None => None,
    };
    let root = a.root.resolve()?;
    let cfg = crate::commands::du::DuConfig {
        cache: a.cache.resolve(&root),
        root,
        format: match a.format {
            DuFormatArg::Table => crate::commands::du::DuFormat::Table,
            DuFormatArg::Json => crate::commands::du::DuFormat::Json,
            DuFormatArg::Csv => crate::commands::du::DuFormat::Csv,
        },
        top: a.top,
        sort: match a.sort {
            DuSortArg::Bytes => crate::commands::du::DuSort::Bytes,
            DuSortArg::Exclusive => crate::commands::du::DuSort::Exclusive,
            DuSortArg::Name => crate::commands::du::DuSort::Name,
        },
        policy,
        by_tag,
        grace: a.grace,
        metrics: a.metrics,
        progress: !a.quiet,
    };
    let (out, code) = crate::commands::du::run(&cfg, &*Bars::when(cfg.progress))?;
    print(&out);
    Ok(code)
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::commands::check::CheckConfig {
        root: a.root.resolve()?,
        verify_digests: a.verify_digests,
        format: a.format.into(),
        text_limit: (!a.all).then_some(a.limit),
        metrics: a.metrics,
        progress: !a.quiet,
    };
    let (out, code) = crate::commands::check::run(&cfg, &*Bars::when(cfg.progress))?;
    print(&out);
    Ok(code)
}

fn restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let selection = match &a.tag {
        None => crate::stages::trash::Selection::All,
        Some(t) => {
            let (repository, tag) = t
                .rsplit_once(':')
                .filter(|(r, t)| !r.is_empty() && !t.is_empty())
                .ok_or_else(|| Error::Usage(format!("--tag: expected REPO:TAG, got {t:?}")))?;
            crate::stages::trash::Selection::Tag {
                repository: repository.into(),
                tag: tag.into(),
            }
        }
    };
    let r = crate::stages::trash::restore(&a.dir, &selection, a.break_lock, a.root.as_deref())?;
    let mut out = String::new();
    for i in &r.restored {
        out.push_str(&format!(
            "restored  {:<17}  {}\n",
            i.kind.label(),
            i.path.display()
        ));
    }
    for i in &r.skipped {
        out.push_str(&format!(
            "skipped   {:<17}  {} (present again; the trash keeps its copy)\n",
            i.kind.label(),
            i.path.display()
        ));
    }
    out.push_str(&format!(
        "{} items restored, {} skipped\n",
        r.restored.len(),
        r.skipped.len()
    ));
    print(&out);
    Ok(ExitCode::Ok)
}

fn trash_list(a: TrashListArgs) -> anyhow::Result<ExitCode> {
    let started = chrono::Utc::now();
    let runs = crate::stages::trash::list(&a.dir)?;
    if matches!(a.format, FormatArg::Json) {
        let report = crate::report::TrashListReport::new(&a.dir, started, runs);
        print(&(serde_json::to_string_pretty(&report)? + "\n"));
        return Ok(ExitCode::Ok);
    }
    let mut out = String::new();
    for r in &runs {
        out.push_str(&format!(
            "{}  {}  {:<6} {:>9}  {}  from {}\n",
            r.run
                .file_name()
                .map_or("?".into(), |n| n.to_string_lossy()),
            r.started,
            r.command,
            crate::units::human_bytes(r.bytes),
            plural(r.items, "item", "items"),
            r.registry.display()
        ));
    }
    let bytes: u64 = runs.iter().map(|r| r.bytes).sum();
    out.push_str(&format!(
        "{} in {}: {} (`regsweep trash empty {} --older-than DURATION` frees it)\n",
        plural(runs.len(), "trash run", "trash runs"),
        a.dir.display(),
        crate::units::human_bytes(bytes),
        a.dir.display()
    ));
    print(&out);
    Ok(ExitCode::Ok)
}

fn trash_empty(a: TrashEmptyArgs) -> anyhow::Result<ExitCode> {
    let removed = crate::stages::trash::empty(&a.dir, a.older_than.0)?;
    let mut out = String::new();
    for r in &removed {
        out.push_str(&format!(
            "deleted {} ({}, {})\n",
            r.run.display(),
            plural(r.items, "item", "items"),
            crate::units::human_bytes(r.bytes)
        ));
    }
    let freed: u64 = removed.iter().map(|r| r.bytes).sum();
    out.push_str(&format!(
        "{} deleted for good: {} freed\n",
        plural(removed.len(), "trash run", "trash runs"),
        crate::units::human_bytes(freed)
    ));
    print(&out);
    Ok(ExitCode::Ok)
}

fn apply(a: ApplyArgs) -> anyhow::Result<ExitCode> {
    let (root, registry_cache) = match (a.root, a.config) {
        (None, None) => (None, None),
        (root, config) => {
            let (root, cache) = RootArgs {
                root,
                config,
                s3_endpoint: a.s3_endpoint,
            }
            .resolve_with_cache()?;
            (Some(root), cache)
        }
    };
    if let Some(url) = &a.registry_url {
        crate::live::probe::check_url(url)
            .map_err(|why| Error::Usage(format!("--registry-url: {why}")))?;
    }
    let cfg = crate::commands::apply::ApplyConfig {
        plan: a.plan,
        root,
        trash: a.trash,
        format: a.format.into(),
        break_lock: a.break_lock,
        progress: !a.quiet,
        checksum: a.checksum,
        live: crate::live::LiveOptions {
            cache: registry_cache,
            registry_url: a.registry_url,
            risk_stale_cache: a.risk_stale_cache,
        },
    };
    let faults = Faults::from_env();
    let (out, code) =
        crate::commands::apply::run(&cfg, &|| faults.stop(), &*Bars::when(cfg.progress))?;
    print(&out);
    Ok(code)
}
