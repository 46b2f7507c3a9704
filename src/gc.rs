//! Runs the whole gc pipeline for a validated config: scan, manifests, policy, mark, plan, sweep, report.

use crate::config::{Format, GcConfig, ReportTarget};
use crate::error::{Error, Result};
use crate::layout::Paths;
use crate::mark::{self, MarkOptions};
use crate::model::{Layout, Time};
use crate::plan::{self, Plan, PlanOptions};
use crate::policy::Decisions;
use crate::progress::Progress;
use crate::report::{self, GcReport};
use crate::{duration, exit, scan, sweep};
use std::io::Write;
use std::time::Instant;

/// What gc decided, before anything is deleted.
pub struct Analysis {
    pub layout: Layout,
    pub plan: Plan,
}

/// Scans and plans: everything gc does short of deleting.
pub fn analyse(cfg: &GcConfig, now: Time, progress: &Progress) -> Result<Analysis> {
    let layout = scan::scan(&cfg.root, progress)?;
    tracing::info!(
        blobs = layout.blobs.len(),
        repositories = layout.repos.len(),
        "scanned"
    );
    let manifests = scan::load_manifests(&layout, progress);
    let decisions = Decisions::keep_all(&layout);
    // With no grace, "young" must mean nothing at all, even for files stamped in the future.
    let cutoff = if cfg.grace.is_zero() {
        Time::MAX
    } else {
        now.saturating_sub(cfg.grace.as_secs() as i64)
    };
    let marks = mark::mark(
        &layout,
        &manifests,
        &decisions,
        MarkOptions {
            delete_untagged: cfg.delete_untagged,
            cutoff,
        },
    );
    let plan = plan::plan(
        &layout,
        &manifests,
        &decisions,
        &marks,
        PlanOptions {
            delete_untagged: cfg.delete_untagged,
            cutoff,
            allow_damage: cfg.allow_damage,
            uploads_before: cfg
                .purge_uploads
                .map(|a| now.saturating_sub(a.as_secs() as i64)),
        },
    );
    Ok(Analysis { layout, plan })
}

/// Runs gc and returns the report with the exit code it calls for.
pub fn run(cfg: &GcConfig, stop: &(dyn Fn() -> bool + Sync)) -> Result<(GcReport, i32)> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let progress = if cfg.progress {
        Progress::new(false)
    } else {
        Progress::hidden()
    };
    let root = cfg
        .root
        .canonicalize()
        .map_err(|e| Error::io(&cfg.root, e))?;
    let cfg = &GcConfig {
        root,
        ..cfg.clone()
    };
    let Analysis { layout, plan } = analyse(cfg, started_at.timestamp(), &progress)?;
    let outcome = if cfg.dry_run || plan.is_empty() {
        None
    } else {
        Some(sweep::sweep(
            &Paths::new(layout.v2.clone()),
            &plan,
            &progress,
            stop,
        ))
    };
    let code = if outcome
        .as_ref()
        .is_some_and(|o| !o.failures.is_empty() || o.interrupted)
    {
        exit::ERROR
    } else if !plan.findings.is_empty() {
        exit::DAMAGE
    } else {
        exit::OK
    };
    let ctx = report::Context {
        root: cfg.root.clone(),
        dry_run: cfg.dry_run,
        started_at,
        duration_seconds: started.elapsed().as_secs_f64(),
        options: report::Options {
            delete_untagged: cfg.delete_untagged,
            grace: duration::format(cfg.grace),
            allow_damage: cfg.allow_damage,
            purge_uploads: cfg.purge_uploads.map(duration::format),
        },
    };
    let report = GcReport::new(ctx, &layout, plan, outcome.as_ref());
    Ok((report, code))
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
            let err = |source| Error::Report {
                path: path.clone(),
                source,
            };
            let tmp = path.with_extension("regsweep-tmp");
            std::fs::write(&tmp, text).map_err(err)?;
            std::fs::rename(&tmp, path).map_err(err)
        }
    }
}
