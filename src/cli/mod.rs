//! The command line (clap derive), turned into a validated config before the core sees it.

mod args;
mod bars;
mod dropin;
mod faults;
mod log;
mod man;
mod memory;
mod used;

pub use args::*;
use faults::{Faults, fault_pause, install_signal_handlers};
pub use used::{ImportArgs, ListenArgs, PullsCommand, StatusArgs, UsedArgs};

use bars::Bars;

use crate::commands::gc;
use crate::config::{self, Format, ReportTarget};
use crate::error::Error;
use crate::error::ExitCode;
use crate::policy::Policy;
use crate::report::Report;
use clap::Parser;

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
    log::init(cli.verbose);
    crate::endpoint::install_tls();
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

/// Worker threads when -j is not given: at least 8, since scanning and sweeping mostly wait on
/// the filesystem, and a deeper queue of stats and renames keeps a cold cache or a slow disk busy.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(8, |n| n.get().max(8))
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    // Each worker thread would get a malloc arena of its own, and freed memory stays in it:
    // two arenas keep peak memory what the model needs, whatever the number of workers. (No
    // crate wraps mallopt; this and spill.rs's mapping are the hand-written unsafe code.)
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
        Command::Pulls(c) => return used::pulls(c),
        Command::Report(a) => {
            let cfg = crate::commands::page::PageConfig {
                du: a.du,
                plan: a.plan,
                pulls: a.pulls,
                du_tags: a.du_tags,
                out: a.out,
            };
            let w = crate::commands::page::run(&cfg)?;
            println!(
                "wrote {} ({})",
                w.out.display(),
                crate::units::human_bytes(w.bytes as u64)
            );
            return Ok(ExitCode::Ok);
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "regsweep", &mut std::io::stdout());
            return Ok(ExitCode::Ok);
        }
        Command::Man { command, out_dir } => return man::run(&command, out_dir.as_deref()),
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
        before_eviction: &faults::before_eviction,
    };
    let started = chrono::Utc::now();
    let report = match pool.install(|| gc::run(&cfg, &hooks, &*Bars::when(cfg.progress))) {
        Ok(r) => r,
        Err(e) => {
            gc::write_refusal(&cfg, &e, started);
            return Err(e.into());
        }
    };
    let code = report.exit_code();
    gc::write_report(&cfg, &report)?;
    // What was not written goes to stderr too: a quiet, JSON or report-file run would
    // otherwise fail without a word.
    for e in &report.output_errors {
        eprintln!("regsweep: error: {e}");
    }
    let shown = cfg.format == Format::Text && cfg.report == Some(ReportTarget::Stdout);
    // What needs the operator's hand (a restart, a cache that could not be evicted) reaches
    // stderr whenever stdout does not show it: cron mails it, --quiet or not.
    if !shown {
        for e in report.errors.iter().filter(|e| e.kind.is_registry()) {
            eprintln!("regsweep: {}: {}", e.severity, e.message);
        }
    }
    if !report.output_errors.is_empty() && report.summary.items_removed > 0 && !shown {
        // The sweep happened: its record must survive the failed output.
        eprintln!("regsweep: the sweep went ahead; what it did:");
        eprint!("{}", report.text(cfg.text_limit));
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
        eprintln!("plan written to {}\nchecksum {sum}", path.display());
        let unsweepable = matches!(&cfg.root, config::Location::Bucket(b) if !b.service.sweeps());
        if report.refused_by_safety_net {
            eprintln!(
                "the policy's safety net refused this plan: it holds nothing to apply (fix the policy, or plan again with --force)"
            );
        } else if unsweepable {
            // No line that would fail: apply takes the lock a gs:// bucket cannot have yet.
            eprintln!("a gs:// bucket cannot be swept yet: this plan is for review only");
        } else {
            eprintln!(
                "after review: regsweep apply {}{} --checksum {sum}",
                shell_word(&path.to_string_lossy()),
                cfg.storage_args,
            );
        }
    }
    if cfg.report.is_none() {
        let n = report.summary.errors;
        return Ok(quiet_damage(code, n, "run without --quiet to see them"));
    }
    Ok(code)
}

fn policy_check(a: PolicyCheckArgs) -> anyhow::Result<ExitCode> {
    let root = a.root.map(RootArgs::resolve).transpose()?;
    let cfg = crate::commands::policy::PolicyCheckConfig {
        file: a.file,
        root,
        used: a.used.read(None)?,
        explain: a.explain,
        format: a.format.into(),
    };
    let report = crate::commands::policy::run(&cfg)?;
    Ok(emit(&report, cfg.format, None))
}

/// Exit 3 under --quiet still gets one line on stderr (stdout stays empty), as cron mails it.
fn quiet_damage(code: ExitCode, problems: usize, see: &str) -> ExitCode {
    if code == ExitCode::Damage {
        eprintln!("regsweep: damage found: {problems} problems ({see})");
    }
    code
}

/// Prints a command's report in `format` and returns the exit code it calls for.
fn emit(report: &impl Report, format: Format, limit: Option<usize>) -> ExitCode {
    print(&report.render(format, limit));
    report.exit_code()
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
            return Err(Error::Usage(format!(
                "--by {}: the only grouping is `--by tag REPO` (one row per tag of REPO); without --by, du shows one row per repository",
                other.join(" ")
            ))
            .into());
        }
    };
    let policy = match &a.policy {
        Some(p) => Some(Policy::load(p)?),
        None => None,
    };
    let root = a.root.resolve()?;
    let used = a.used.read(None)?;
    let cfg = crate::commands::du::DuConfig {
        used,
        cache: a.cache.resolve(&root),
        root,
        format: match a.format {
            DuFormatArg::Table => crate::commands::du::DuFormat::Table,
            DuFormatArg::Json => crate::commands::du::DuFormat::Json,
            DuFormatArg::Csv => crate::commands::du::DuFormat::Csv,
        },
        top: a.top.map(std::num::NonZeroUsize::get),
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
        memory: a.memory.bound(),
    };
    let report = crate::commands::du::run(&cfg, &*Bars::when(cfg.progress))?;
    if a.quiet {
        let n = report.summary.damage_findings;
        return Ok(quiet_damage(
            report.exit_code(),
            n,
            "regsweep check lists them",
        ));
    }
    let out = match cfg.format {
        crate::commands::du::DuFormat::Table => report.text(None),
        crate::commands::du::DuFormat::Json => report.json(),
        crate::commands::du::DuFormat::Csv => report.csv(),
    };
    print(&out);
    Ok(report.exit_code())
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::commands::check::CheckConfig {
        root: a.root.resolve()?,
        verify_digests: a.verify_digests,
        format: a.format.into(),
        text_limit: (!a.all).then_some(a.limit),
        metrics: a.metrics,
        progress: !a.quiet,
        memory: a.memory.bound(),
    };
    let report = crate::commands::check::run(&cfg, &*Bars::when(cfg.progress))?;
    if a.quiet {
        let n = report.summary.damage;
        return Ok(quiet_damage(
            report.exit_code(),
            n,
            "run without --quiet to see them",
        ));
    }
    Ok(emit(&report, cfg.format, cfg.text_limit))
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
    let root = match a.config {
        None => a.root,
        Some(config) => {
            match config::registry::read(&config, &|k| std::env::var(k).ok())?.storage {
                crate::config::Location::Fs(root) => Some(root),
                other => {
                    return Err(Error::Usage(format!(
                    "{}: restore puts back what `gc --trash` moved on a filesystem; this config stores in {}",
                    config.display(),
                    other.display_path().display()
                ))
                .into());
                }
            }
        }
    };
    let cfg = crate::commands::trash::RestoreConfig {
        dir: a.dir,
        selection,
        break_lock: a.break_lock,
        root,
    };
    // Bars draw only on a terminal.
    let report = crate::commands::trash::restore(&cfg, &*Bars::when(true))?;
    Ok(emit(&report, a.format.into(), None))
}

fn trash_list(a: TrashListArgs) -> anyhow::Result<ExitCode> {
    let report = crate::commands::trash::list(&a.dir)?;
    Ok(emit(&report, a.format.into(), None))
}

fn trash_empty(a: TrashEmptyArgs) -> anyhow::Result<ExitCode> {
    let report = crate::commands::trash::empty(&a.dir, a.older_than, &*Bars::when(true))?;
    Ok(emit(&report, a.format.into(), None))
}

fn apply(a: ApplyArgs) -> anyhow::Result<ExitCode> {
    let (root, registry_cache) = match a.root {
        None => (None, None),
        Some(r) => {
            let (root, cache) = r.resolve_with_cache()?;
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
            restart_command: a.restart_command,
            registry_stopped: a.registry_stopped,
            journal_limit: faults::journal_limit(),
        },
        memory: a.memory.bound(),
    };
    let faults = Faults::from_env();
    let report = crate::commands::apply::run(&cfg, &|| faults.stop(), &*Bars::when(cfg.progress))?;
    if a.quiet {
        return Ok(report.exit_code());
    }
    Ok(emit(&report, cfg.format, None))
}
