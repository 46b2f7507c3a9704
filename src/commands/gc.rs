//! The gc command: the pipeline for a validated config (open, decide, sweep), then its report
//! and metrics.

use crate::config::{GcConfig, ReportTarget};
use crate::error::ExitCode;
use crate::error::{Error, Result};
use crate::gc::plan::Plan;
use crate::model::{Layout, Time};
use crate::pipeline::{self, Open, Session};
use crate::policy::TagExplain;
use crate::progress::Progress;
use crate::report::metrics::Metrics;
use crate::report::{self, GcReport, Report};
use crate::stages::sweep;
use crate::stages::trash;
use crate::storage::fs::FsStorage;
use crate::storage::location::OnStorage;
use crate::storage::seam::Storage;
use std::io::Write;
use std::time::Instant;

/// What gc decided, before anything is deleted, with the storage it read (kept open for the
/// sweep) and the lock when the run may change it.
pub struct Analysis<S: Storage = FsStorage> {
    /// The storage, kept open for the sweep, with its lock and model.
    pub session: Session<S>,
    pub plan: Plan,
    /// Every tag decision with its reasons, when a policy was given.
    pub explain: Vec<TagExplain>,
    /// On a pull-through cache's root: its scheduler state and what expired.
    pub proxy: Option<super::proxy::ProxyRun>,
}

/// Scans and plans on storage already opened: everything gc does short of deleting. The lock is
/// taken first unless the run is dry (dry runs change nothing, so audits may run beside a sweep).
pub fn analyse<S: Storage>(
    store: S,
    cfg: &GcConfig,
    now: Time,
    progress: &dyn Progress,
) -> Result<Analysis<S>> {
    let lock = (!cfg.dry_run).then_some(("gc", cfg.break_lock));
    let settle =
        |path: &std::path::Path, journal: &[u8]| super::live::settle(&cfg.live, path, journal);
    let how = Open {
        lock,
        cache: cfg.cache.as_deref(),
        settle: Some(pipeline::Settle(&settle)),
        scan: crate::stages::scan::ScanOptions {
            memory: cfg.memory,
            in_flight_from: crate::model::Rules::young_from(cfg.options.grace, now),
            ..Default::default()
        },
    };
    let session = Session::open(store, how, cfg.policy.as_ref(), progress)?;
    let proxy = match &cfg.proxy {
        Some(p) => Some(super::proxy::read(&session.store, p, now)?),
        None => None,
    };
    let how = pipeline::Decide {
        expired: proxy.as_ref().map(|p| &p.expired),
        ..decide(cfg)
    };
    let (plan, explain) = session.plan(&how, &cfg.rules(now), now);
    Ok(Analysis {
        session,
        plan,
        explain,
        proxy,
    })
}

/// What decides the tags: the policy, what is used (when anything is), the scope.
pub fn decide(cfg: &GcConfig) -> pipeline::Decide<'_> {
    let policy_uses =
        (cfg.policy.as_ref()).is_some_and(|p| !p.protect_images.is_empty() || p.uses_pulls());
    pipeline::Decide {
        policy: cfg.policy.as_ref(),
        used: (!cfg.used.is_empty() || policy_uses).then_some(&cfg.used),
        scope: cfg.scope.as_ref(),
        fs: None,
        expired: None,
    }
}

/// How the caller steers a run that sweeps.
pub struct Hooks<'a> {
    /// Asked before each removal; once it says yes, the sweep ends after the items in hand.
    pub stop: &'a (dyn Fn() -> bool + Sync),
    /// Called between planning and sweeping (the test suite's fault injection waits there).
    pub before_sweep: &'a (dyn Fn() + Sync),
    /// Called once each item is out of the registry's sight, before it is deleted.
    pub staged: &'a (dyn Fn() + Sync),
    /// Called after the sweep, before the registry's cache is told what went.
    pub before_eviction: &'a (dyn Fn() + Sync),
}

/// Runs gc and returns the report with the exit code it calls for.
pub fn run(cfg: &GcConfig, hooks: &Hooks, progress: &dyn Progress) -> Result<GcReport> {
    // Reports and plans name the root as the operator gave it, resolved.
    let cfg = &GcConfig {
        root: cfg.root.canonical()?,
        ..cfg.clone()
    };
    cfg.root.open(&GcJob { cfg, hooks }, progress)
}

/// gc on whichever storage the config names.
struct GcJob<'a> {
    cfg: &'a GcConfig,
    hooks: &'a Hooks<'a>,
}

impl OnStorage for GcJob<'_> {
    type Out = GcReport;
    fn run<S: Storage>(&self, store: S, progress: &dyn Progress) -> Result<Self::Out> {
        if let Some(dir) = &self.cfg.trash {
            if !store.capabilities().rename {
                return Err(Error::Usage(format!(
                    "{}: --trash is not supported on an object store (a bucket has no rename: a trash would copy every blob); keep deleted objects with the bucket's versioning instead",
                    store.location().display()
                )));
            }
            trash::check_place(dir, store.v2())?;
        }
        run_in(store, self.cfg, self.hooks, progress)
    }
}

/// What a policy would do, on whichever storage the config names: the layout's top, the plan
/// and every tag decision (`policy check` with a root).
pub struct Preview<'a> {
    pub cfg: &'a GcConfig,
    pub now: Time,
}

impl OnStorage for Preview<'_> {
    type Out = (std::path::PathBuf, Plan, Vec<TagExplain>);
    fn run<S: Storage>(&self, store: S, progress: &dyn Progress) -> Result<Self::Out> {
        let a = analyse(store, self.cfg, self.now, progress)?;
        Ok((a.session.layout.v2, a.plan, a.explain))
    }
}

/// `run`, on storage already opened.
fn run_in<S: Storage>(
    store: S,
    cfg: &GcConfig,
    hooks: &Hooks,
    progress: &dyn Progress,
) -> Result<GcReport> {
    let stop = hooks.stop;
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    // Before anything is deleted: the record of what goes must have somewhere to go.
    if !cfg.dry_run {
        probe_outputs(cfg)?;
    }
    let Analysis {
        session,
        plan,
        explain,
        proxy,
    } = analyse(store, cfg, started_at.timestamp(), progress)?;
    let (store, layout) = (&session.store, &session.layout);
    let refused = !plan.refused.is_empty() && !cfg.force;
    if !cfg.dry_run {
        (hooks.before_sweep)();
    }
    let untagged_more = untagged_would_free(cfg, layout, &plan, started_at.timestamp());
    // The live registry's Redis cache must be reachable before anything goes (or the risk
    // taken by name): what the sweep removes is evicted from it afterwards.
    let mut live_notes = Vec::new();
    let sweeps = !cfg.dry_run && !refused;
    let redis = if sweeps {
        super::live::before_sweep(&cfg.live, !plan.is_empty(), &mut live_notes)?
    } else {
        None
    };
    let mut trash = None;
    let journaled = match sweeps && !plan.is_empty() {
        true => super::live::write_journal(store, &cfg.live, "gc", || planned_swept(&plan))?,
        false => false,
    };
    let mut killed = super::killed::notes(&session);
    let outcome = if cfg.dry_run || refused || plan.is_empty() {
        None
    } else {
        write_unfinished(cfg, &plan, started_at);
        trash = match &cfg.trash {
            Some(dir) => Some(trash::create_run(dir, &layout.v2, "gc")?),
            None => None,
        };
        session.begin_sweep("gc", &plan)?;
        Some(session.sweep(
            &plan,
            progress,
            &sweep::SweepOptions {
                stop,
                trash: trash.as_deref(),
                since_ns: pipeline::since_ns(started_at),
                staged: hooks.staged,
            },
        ))
    };
    if !cfg.dry_run {
        super::killed::end(&session, &mut killed);
    }
    let code = sweep_code(refused, outcome.as_ref(), &plan);
    let ctx = context(cfg, started_at, started.elapsed().as_secs_f64());
    // A bucket's delete whose answer was lost may have landed: the registry's cache forgets
    // it too.
    let unsure = (outcome.as_ref())
        .map(|o| report::what_may_have_gone(&plan, &layout.v2, o))
        .unwrap_or_default();
    let mut report = GcReport::new(ctx, layout, plan, outcome.as_ref());
    if refused {
        report.mark_refused();
    }
    report.settings_from_env = cfg.settings_from_env.clone();
    report.summary.errors += killed.len();
    report.errors.extend(killed);
    // Listed only under the lock, which proves those runs dead (a dry run's notice says so).
    if session.lock.is_some() {
        report.killed_runs = session.killed.clone();
    }
    report.trash = trash;
    report.delete_untagged_would_free = untagged_more;
    if cfg.reference_output {
        report.reference_marking = Some(report::reference_marking(
            layout,
            &report.plan.manifests_deleted,
        ));
    }
    if let Some(said) = &session.settled {
        report.summary.errors += 1;
        report.errors.push(super::live::settled_note(said));
    }
    if sweeps {
        (hooks.before_eviction)();
        report.summary.errors += live_notes.len();
        report.errors.extend(live_notes);
        super::live::after_sweep(
            &cfg.live,
            redis,
            store,
            layout,
            journaled,
            &unsure,
            &mut report,
        );
    }
    if let Some(mut run) = proxy {
        run.report.tags_expired = (report.plan.tags_deleted.iter())
            .filter(|t| t.rule == pipeline::PROXY_RULE)
            .count();
        if sweeps {
            let p = &report.plan;
            let swept = crate::live::Swept::new(
                &p.blobs_deleted,
                &p.layer_links_deleted,
                &p.manifests_deleted,
            );
            let present = crate::live::Present::new(layout, &swept);
            report.proxy = Some(super::proxy::write_back(store, run, &present));
        } else {
            report.proxy = Some(run.report);
        }
    }
    let code = live_code(&report, code);
    report.summary.requests = store.requests();
    report.summary.repositories_in_scope =
        (cfg.scope.as_ref()).map(|m| layout.repos.iter().filter(|r| m.is_match(&r.name)).count());
    if cfg.explain {
        report.explain = Some(explain);
    }
    if let Some(path) = &cfg.metrics
        && let Err(e) = metrics(&report, started_at.timestamp()).write(path)
    {
        // The report is still written: losing it with the metrics would lose the record.
        report.output_errors.push(e.to_string());
    }
    let code = if report.output_errors.is_empty() {
        code
    } else {
        ExitCode::Error
    };
    report.exit_code = code;
    Ok(report)
}

/// What the plan would take, as the registry's cache keys it: what its journal lists.
fn planned_swept(plan: &Plan) -> crate::live::Swept {
    crate::live::Swept::new(&plan.blobs, &plan.layer_links, &plan.manifests)
}

/// Without -m a policy's untagged manifests stay: what -m would free too (with a policy and
/// without -m only).
fn untagged_would_free(cfg: &GcConfig, layout: &Layout, plan: &Plan, now: Time) -> Option<u64> {
    (cfg.policy.is_some() && !cfg.options.delete_untagged).then(|| {
        let rules = crate::model::Rules {
            delete_untagged: true,
            ..cfg.rules(now)
        };
        let (with_m, _) = pipeline::decide_scoped(layout, &decide(cfg), &rules, now);
        with_m.bytes_freed().saturating_sub(plan.bytes_freed())
    })
}

/// The exit code of the sweep (before the live registry is asked): a refusal, a failed
/// removal or an interruption is an error; damage found is 3.
fn sweep_code(
    refused: bool,
    outcome: Option<&crate::gc::outcome::Outcome>,
    plan: &Plan,
) -> ExitCode {
    if refused || outcome.is_some_and(|o| !o.failures.is_empty() || o.interrupted) {
        ExitCode::Error
    } else if plan
        .findings
        .iter()
        .any(|f| f.severity != crate::model::Severity::Notice)
    {
        ExitCode::Damage
    } else {
        ExitCode::Ok
    }
}

/// Where and how the run planned, as its report (and the plan it carries) says.
fn context(
    cfg: &GcConfig,
    started_at: chrono::DateTime<chrono::Utc>,
    seconds: f64,
) -> report::Context {
    report::Context {
        root: cfg.root.display_path(),
        dry_run: cfg.dry_run,
        started_at,
        duration_seconds: seconds,
        options: cfg.options.clone(),
    }
}

/// The exit code once the live registry has been asked: it still claiming what went is exit 4
/// (unless the sweep itself failed); a failed eviction or probe is an error.
fn live_code(report: &GcReport, code: ExitCode) -> ExitCode {
    let registry = |e: &&crate::report::ErrorEntry| e.kind.is_registry();
    let mut live = report.errors.iter().filter(registry);
    if code == ExitCode::Error {
        code
    } else if live
        .clone()
        .any(|e| e.kind == crate::model::FindingKind::RegistryClaimsSwept)
    {
        ExitCode::StaleRegistry
    } else if live.any(|e| e.severity == crate::model::Severity::Error) {
        ExitCode::Error
    } else {
        code
    }
}

/// Checks that the report and metrics files can be written, by creating (and removing) a file
/// beside each, so that a run never deletes and then fails to say what it deleted.
pub fn probe_outputs(cfg: &GcConfig) -> Result<()> {
    let report = match &cfg.report {
        Some(ReportTarget::File(p)) => Some(p),
        _ => None,
    };
    for path in report.into_iter().chain(cfg.metrics.as_ref()) {
        // Written and synced for real: on a full disk an empty file can still be created.
        crate::output::probe(path, 64 * 1024).map_err(|cause| Error::Report {
            path: path.clone(),
            what: if Some(path) == report {
                "the report"
            } else {
                "the metrics"
            },
            cause,
        })?;
    }
    Ok(())
}

/// Writes the report where the config says; a file is replaced whole, never left half-written.
pub fn write_report(cfg: &GcConfig, report: &GcReport) -> Result<()> {
    let Some(target) = &cfg.report else {
        return Ok(());
    };
    // JSON is streamed: it lists every item, and would otherwise be held whole.
    let write = |w: &mut dyn Write| match cfg.format {
        crate::config::Format::Json => report.write_json(w),
        crate::config::Format::Text => w.write_all(report.text(cfg.text_limit).as_bytes()),
    };
    match target {
        ReportTarget::Stdout => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not worth an error.
            let _ = write(&mut out).and_then(|_| out.flush());
            Ok(())
        }
        ReportTarget::File(path) => {
            if let Err(cause) = crate::output::write_with(path, |f| write(f)) {
                // The record of what went must not be lost with the file: stderr gets it.
                let _ = write(&mut std::io::stderr().lock());
                return Err(Error::Report {
                    path: path.clone(),
                    what: "the report (printed to stderr instead)",
                    cause,
                });
            }
            Ok(())
        }
    }
}

/// A run refused before its report (the lock held, Redis unreachable, a live in-memory cache):
/// the files `--report` and `--metrics` name say so, so that a previous run's record is never
/// read as this one's. Written whole; a failure to write is said on stderr.
pub fn write_refusal(cfg: &GcConfig, error: &Error, started: chrono::DateTime<chrono::Utc>) {
    let summary = serde_json::json!({
        "refused": true,
        "error": format!("{error:#}"),
        "exit_code": error.exit_code().code(),
    });
    let line = format!("refused, nothing deleted: {error:#}");
    write_record(
        cfg,
        started,
        (REFUSED_SCHEMA, summary, &line),
        (
            "run_refused",
            "1 when the run was refused before it could sweep.",
        ),
    );
}

/// Just before a sweep: the record a run leaves at `--report` (and in `--metrics`) should it
/// die before it can write its own (SIGKILL, a power cut), so that no earlier run's record is
/// read as this one's. The finished run replaces both.
fn write_unfinished(cfg: &GcConfig, plan: &Plan, started: chrono::DateTime<chrono::Utc>) {
    let summary = serde_json::json!({
        "unfinished": true,
        "pid": std::process::id(),
        "planned": {
            "tags": plan.tags.len(),
            "manifests": plan.manifests.len(),
            "blobs": plan.blobs.len(),
            "bytes": plan.bytes_freed(),
        },
    });
    let line = format!(
        "started sweeping (pid {}, {} blobs, {} planned) and did not finish: what went is at most the plan; the next gc completes what was left, and its report says what is there",
        std::process::id(),
        plan.blobs.len(),
        report::human_bytes(plan.bytes_freed())
    );
    write_record(
        cfg,
        started,
        (UNFINISHED_SCHEMA, summary, &line),
        (
            "run_unfinished",
            "1 while a sweep runs, and after one that died before it could write its record.",
        ),
    );
}

/// A record of a run that has none of its own: `(schema, summary, text line)` at `--report`
/// FILE, and the `(gauge, help)` set to 1 in `--metrics`.
fn write_record(
    cfg: &GcConfig,
    started: chrono::DateTime<chrono::Utc>,
    (schema, summary, line): (&'static str, serde_json::Value, &str),
    (gauge, help): (&'static str, &'static str),
) {
    let root = cfg.root.display_path().display().to_string();
    if let Some(ReportTarget::File(path)) = &cfg.report {
        let text = match cfg.format {
            crate::config::Format::Json => {
                let mut v = serde_json::to_value(report::Envelope::new(schema, started))
                    .unwrap_or_default();
                v["root"] = root.clone().into();
                v["summary"] = summary;
                report::pretty(&v)
            }
            _ => format!("regsweep gc on {root}: {line}\n"),
        };
        if let Err(e) = crate::output::write_whole(path, text.as_bytes()) {
            eprintln!(
                "regsweep: error: {}: the record could not be written: {e}",
                path.display()
            );
        }
    }
    if let Some(path) = &cfg.metrics {
        let mut m = Metrics::new("gc");
        m.gauge(
            "last_run_timestamp_seconds",
            "When the run started (Unix time).",
            &[],
            started.timestamp() as f64,
        );
        m.gauge(gauge, help, &[], 1.0);
        if let Err(e) = m.write(path) {
            eprintln!("regsweep: error: {e}");
        }
    }
}

/// The schema of the record a run that died mid-sweep leaves at `--report`.
pub const UNFINISHED_SCHEMA: &str = "regsweep/gc-unfinished/v1";

/// The schema of the record a refused run leaves at `--report`.
pub const REFUSED_SCHEMA: &str = "regsweep/gc-refused/v1";

fn metrics(r: &GcReport, started_at: i64) -> Metrics {
    let mut m = Metrics::new("gc");
    m.gauge(
        "run_refused",
        "1 when the run was refused before it could sweep.",
        &[],
        0.0,
    );
    m.gauge(
        "run_unfinished",
        "1 while a sweep runs, and after one that died before it could write its record.",
        &[],
        0.0,
    );
    let damage = r.errors.iter().filter(|e| e.severity.is_damage()).count();
    let notices = r
        .errors
        .iter()
        .filter(|e| e.severity == crate::model::Severity::Notice)
        .count();
    m.run(started_at, r.duration_seconds, damage, notices);
    m.requests(r.summary.requests.as_ref());
    let s = &r.summary;
    let verb = "Items deleted (planned, on a dry run).";
    for (kind, n) in [
        ("tags", s.tags_deleted),
        ("manifests", s.manifests_deleted),
        ("layer_links", s.layer_links_deleted),
        ("blobs", s.blobs_deleted),
        ("uploads", s.uploads_deleted),
    ] {
        m.gauge("deleted", verb, &[("kind", kind)], n as f64);
    }
    m.gauge(
        "bytes_freed",
        "Blob bytes deleted (planned, on a dry run).",
        &[],
        s.bytes_freed as f64,
    );
    // What the plan held, whether or not it was carried out (a refused run deletes nothing).
    let p = r.planned();
    for (kind, n) in [
        ("tags", p.tags),
        ("manifests", p.manifests),
        ("layer_links", p.layer_links),
        ("blobs", p.blobs),
        ("uploads", p.uploads),
    ] {
        m.gauge(
            "planned",
            "Items the run planned to delete.",
            &[("kind", kind)],
            n as f64,
        );
    }
    m.gauge(
        "planned_bytes",
        "Blob bytes the run planned to free.",
        &[],
        p.bytes as f64,
    );
    m.gauge(
        "kept_by_grace",
        "Items kept only by the grace period.",
        &[],
        s.kept_by_grace as f64,
    );
    m.gauge("store_blobs", "Blobs in the store.", &[], s.blobs as f64);
    m.gauge(
        "store_bytes",
        "Apparent bytes of every blob in the store.",
        &[],
        s.bytes as f64,
    );
    m.gauge(
        "dry_run",
        "1 when the run deleted nothing by request.",
        &[],
        f64::from(u8::from(r.dry_run)),
    );
    m.gauge(
        "sweep_failures",
        "Removals that failed.",
        &[],
        s.sweep_failures as f64,
    );
    m.gauge(
        "refused",
        "1 when the policy's safety net refused the run.",
        &[],
        f64::from(u8::from(r.refused_by_safety_net)),
    );
    if let Some(live) = &r.registry {
        m.gauge(
            "registry_cache_evictions",
            "Entries evicted from the registry's Redis blob-descriptor cache.",
            &[],
            live.evicted as f64,
        );
        m.gauge(
            "registry_restart_needed",
            "1 when the registry must be restarted before the next push (an in-memory cache).",
            &[],
            f64::from(u8::from(live.restart_needed)),
        );
        if let Some(p) = &live.probe {
            m.gauge(
                "registry_stale_claims",
                "Swept items the live registry still claims (--registry-url).",
                &[],
                p.claimed.len() as f64,
            );
        }
    }
    m
}
