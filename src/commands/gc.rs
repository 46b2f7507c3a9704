//! Runs the whole gc pipeline for a validated config: scan, manifests, policy, mark, plan, sweep, report.

use crate::cli::config::{Format, GcConfig, ReportTarget};
use crate::error::ExitCode;
use crate::error::{Error, Result};
use crate::gc::mark;
use crate::gc::plan::{self, Plan};

use crate::model::{Layout, Rules, Time};
use crate::policy::{self, AgeFrom, Decisions, TagExplain};
use crate::progress::Progress;
use crate::report::metrics::Metrics;
use crate::report::{self, GcReport};
use crate::store::lock::Lock;
use crate::store::scan;
use crate::store::sweep;
use crate::store::trash;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What gc decided, before anything is deleted.
pub struct Analysis {
    pub layout: Layout,
    pub plan: Plan,
    /// Every tag decision with its reasons, when a policy was given.
    pub explain: Vec<TagExplain>,
}

/// Scans and plans: everything gc does short of deleting.
pub fn analyse(cfg: &GcConfig, now: Time, progress: &Progress) -> Result<Analysis> {
    let mut layout = load(&cfg.root, progress)?;
    load_dates(&mut layout, cfg.policy.as_ref());
    let (mut plan, explain) = decide(cfg, &layout, now);
    settle_arrivals(&layout, &mut plan, &rules(cfg, now));
    Ok(Analysis {
        layout,
        plan,
        explain,
    })
}

/// The scan stages: the layout with every manifest its links name.
pub fn load(root: &Path, progress: &Progress) -> Result<Layout> {
    let mut layout = scan::scan(root, progress)?;
    tracing::info!(
        blobs = layout.blobs.len(),
        repositories = layout.repos.len(),
        "scanned"
    );
    layout.manifests = scan::load_manifests(&layout, progress);
    Ok(layout)
}

/// Reads the image configs' `created` dates into the layout where the policy counts ages from
/// them: a storage read, done here so that `decide` reads nothing.
pub fn load_dates(layout: &mut Layout, policy: Option<&policy::Policy>) {
    if policy.is_some_and(|p| p.age_from == AgeFrom::Created) && layout.created.is_empty() {
        layout.created = scan::load_created(layout);
    }
}

/// The pure stages: policy, mark and plan, for one set of options.
pub fn decide(cfg: &GcConfig, layout: &Layout, now: Time) -> (Plan, Vec<TagExplain>) {
    let (decisions, explain, refused) = match &cfg.policy {
        None => (Decisions::keep_all(layout), Vec::new(), Vec::new()),
        Some(policy) => {
            let ev = policy::evaluate(policy, layout, &layout.created, now);
            (ev.decisions, ev.explain, ev.refusals)
        }
    };
    let mut plan = plan_with(cfg, layout, &decisions, now);
    let ages: HashMap<(&str, &str), Option<i64>> = explain
        .iter()
        .map(|e| ((e.repository.as_str(), e.tag.as_str()), e.age_seconds))
        .collect();
    for t in &mut plan.tags {
        t.age_seconds = ages
            .get(&(t.repository.as_str(), t.tag.as_str()))
            .copied()
            .flatten();
    }
    plan.refused = refused;
    (plan, explain)
}

/// The rules a config gives at `now`: the grace period ends where "young" starts.
pub fn rules(cfg: &GcConfig, now: Time) -> Rules {
    Rules {
        delete_untagged: cfg.delete_untagged,
        young_from: (!cfg.grace.is_zero()).then(|| now.saturating_sub(cfg.grace.as_secs() as i64)),
        allow_damage: cfg.allow_damage,
        uploads_before: cfg
            .purge_uploads
            .map(|a| now.saturating_sub(a.as_secs() as i64)),
    }
}

/// Keeps the planned blobs that arrived within the grace period: a blob committed by rename
/// keeps its upload's data mtime, so its arrival is read (for planned blobs only) from its folder.
pub fn settle_arrivals(layout: &Layout, plan: &mut Plan, rules: &Rules) {
    if rules.young_from.is_none() || plan.blobs.is_empty() {
        return;
    }
    let digests: Vec<crate::Digest> = plan.blobs.iter().map(|b| b.digest).collect();
    let arrivals = scan::blob_arrivals(&layout.v2, &digests);
    plan.keep_arrived(&arrivals, rules);
}

/// Mark and plan for given tag decisions.
pub fn plan_with(cfg: &GcConfig, layout: &Layout, decisions: &Decisions, now: Time) -> Plan {
    let rules = rules(cfg, now);
    let marks = mark::mark(layout, decisions, &rules);
    plan::plan(layout, decisions, &marks, &rules)
}

/// How the caller steers a run that sweeps.
pub struct Hooks<'a> {
    /// Asked before each removal; once it says yes, the sweep ends after the items in hand.
    pub stop: &'a (dyn Fn() -> bool + Sync),
    /// Called between planning and sweeping (the test suite's fault injection waits there).
    pub before_sweep: &'a (dyn Fn() + Sync),
    /// Called once each item is out of the registry's sight, before it is deleted.
    pub staged: &'a (dyn Fn() + Sync),
}

/// Runs gc and returns the report with the exit code it calls for.
pub fn run(cfg: &GcConfig, hooks: &Hooks) -> Result<(GcReport, ExitCode)> {
    let stop = hooks.stop;
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let progress = Progress::when(cfg.progress);
    let root = crate::cli::config::canonical_root(&cfg.root)?;
    let cfg = &GcConfig {
        root,
        ..cfg.clone()
    };
    // Before anything is deleted: the record of what goes must have somewhere to go.
    if !cfg.dry_run {
        probe_outputs(cfg)?;
    }
    if let Some(dir) = &cfg.trash {
        trash::check_place(dir, &scan::open_v2(&cfg.root)?.0)?;
    }
    // Dry runs change nothing, so audits may run beside a sweep; everything else is exclusive.
    let _lock = if cfg.dry_run {
        None
    } else {
        Some(Lock::acquire(
            &storage_root(&cfg.root)?,
            "gc",
            cfg.break_lock,
        )?)
    };
    let Analysis {
        layout,
        plan,
        explain,
        ..
    } = analyse(cfg, started_at.timestamp(), &progress)?;
    let refused = !plan.refused.is_empty() && !cfg.force;
    if !cfg.dry_run {
        (hooks.before_sweep)();
    }
    let outcome = if cfg.dry_run || refused || plan.is_empty() {
        None
    } else {
        let trash = match &cfg.trash {
            Some(dir) => Some(trash::create_run(dir, &layout.v2, "gc")?),
            None => None,
        };
        Some(sweep::sweep(
            &layout.v2,
            &plan,
            &progress,
            &sweep::SweepOptions {
                stop,
                trash: trash.as_deref(),
                since_ns: since_ns(started_at),
                staged: hooks.staged,
            },
        ))
    };
    let code = if refused
        || outcome
            .as_ref()
            .is_some_and(|o| !o.failures.is_empty() || o.interrupted)
    {
        ExitCode::Error
    } else if plan
        .findings
        .iter()
        .any(|f| f.severity != crate::model::Severity::Notice)
    {
        ExitCode::Damage
    } else {
        ExitCode::Ok
    };
    let ctx = report::Context {
        root: cfg.root.clone(),
        dry_run: cfg.dry_run,
        started_at,
        duration_seconds: started.elapsed().as_secs_f64(),
        options: report::Options {
            delete_untagged: cfg.delete_untagged,
            grace: cfg.grace,
            allow_damage: cfg.allow_damage,
            purge_uploads: cfg.purge_uploads,
        },
    };
    let mut report = GcReport::new(ctx, &layout, plan, outcome.as_ref());
    report.refused_by_safety_net = refused;
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
    Ok((report, code))
}

/// A moment as nanoseconds since the epoch; before everything when out of range, so that every
/// item counts as changed since (kept).
pub fn since_ns(t: chrono::DateTime<chrono::Utc>) -> i128 {
    t.timestamp_nanos_opt().map_or(i128::MIN, i128::from)
}

/// Checks that the report and metrics files can be written, by creating (and removing) a file
/// beside each, so that a run never deletes and then fails to say what it deleted.
pub fn probe_outputs(cfg: &GcConfig) -> Result<()> {
    let report = match &cfg.report {
        Some(ReportTarget::File(p)) => Some(p),
        _ => None,
    };
    for path in report.into_iter().chain(cfg.metrics.as_ref()) {
        let probe = crate::output::temp_beside(path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|source| Error::Report {
                path: path.clone(),
                what: if Some(path) == report {
                    "the report"
                } else {
                    "the metrics"
                },
                source,
            })?;
    }
    Ok(())
}

/// The storage root of a root given either way (`rootdirectory` or its `docker/registry/v2`),
/// so that both spellings take the same lock.
pub fn storage_root(root: &Path) -> Result<PathBuf> {
    let v2 = crate::store::layout::locate_v2(root).ok_or_else(|| Error::NotARegistry {
        path: root.to_path_buf(),
    })?;
    Ok(v2.ancestors().nth(3).unwrap_or(root).to_path_buf())
}

/// Writes the report where the config says; a file is replaced whole, never left half-written.
pub fn write_report(cfg: &GcConfig, report: &GcReport) -> Result<()> {
    let Some(target) = &cfg.report else {
        return Ok(());
    };
    let text = match cfg.format {
        Format::Json => report.to_json(),
        Format::Text => report.to_text(),
    };
    match target {
        ReportTarget::Stdout => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not worth an error.
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
            Ok(())
        }
        ReportTarget::File(path) => {
            let tmp = crate::output::temp_beside(path);
            let written = std::fs::write(&tmp, &text).and_then(|_| std::fs::rename(&tmp, path));
            if let Err(source) = written {
                let _ = std::fs::remove_file(&tmp);
                // The record of what went must not be lost with the file: stderr gets it.
                eprint!("{text}");
                return Err(Error::Report {
                    path: path.clone(),
                    what: "the report (printed to stderr instead)",
                    source,
                });
            }
            Ok(())
        }
    }
}

fn metrics(r: &GcReport, started_at: i64) -> Metrics {
    let mut m = Metrics::new("gc");
    let damage = r
        .errors
        .iter()
        .filter(|e| e.kind == "blocking" || e.kind == "damage")
        .count();
    let notices = r.errors.iter().filter(|e| e.kind == "notice").count();
    m.run(started_at, r.duration_seconds, damage, notices);
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
    m
}
