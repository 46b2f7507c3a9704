//! The trash's commands: `restore` (put back what a `--trash` run moved), `trash list` and
//! `trash empty`. Each returns its report; the CLI prints it.

use crate::error::{ExitCode, Result};
use crate::model::duration::Span;
use crate::report::{Report, TrashListReport};
use crate::stages::trash::{Restored, RunSummary, Selection};
use crate::units::{human_bytes, plural};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// `restore`, validated.
pub struct RestoreConfig {
    pub dir: PathBuf,
    pub selection: Selection,
    pub break_lock: bool,
    /// The registry's storage root the trash's runs must have come from.
    pub root: Option<PathBuf>,
}

/// What `restore` put back, from which trash, when.
pub struct RestoreReport {
    pub started: chrono::DateTime<chrono::Utc>,
    pub dir: PathBuf,
    pub done: Restored,
}

/// Puts back what the selection names.
pub fn restore(
    cfg: &RestoreConfig,
    progress: &dyn crate::progress::Progress,
) -> Result<RestoreReport> {
    let started = chrono::Utc::now();
    let done = crate::stages::trash::restore(
        &cfg.dir,
        &cfg.selection,
        cfg.break_lock,
        cfg.root.as_deref(),
        progress,
    )?;
    Ok(RestoreReport {
        started,
        dir: cfg.dir.clone(),
        done,
    })
}

/// `restore --format json`: what went back, and what stayed in the trash.
#[derive(Debug, Serialize)]
struct RestoreJson<'a> {
    #[serde(flatten)]
    envelope: crate::report::Envelope,
    /// The trash folder.
    root: &'a Path,
    summary: serde_json::Value,
    restored: &'a [crate::stages::trash::RestoredItem],
    skipped: &'a [crate::stages::trash::RestoredItem],
}

impl Report for RestoreReport {
    /// One line per item (the first `limit` of each list), then the counts.
    fn text(&self, limit: Option<usize>) -> String {
        let limit = limit.unwrap_or(usize::MAX);
        let mut out = String::new();
        let done = &self.done;
        for i in done.restored.iter().take(limit) {
            out.push_str(&format!(
                "restored  {:<17}  {}\n",
                i.kind.label(),
                i.path.display()
            ));
        }
        crate::report::more(&mut out, done.restored.len(), limit);
        for i in done.skipped.iter().take(limit) {
            out.push_str(&format!(
                "skipped   {:<17}  {} (present again; the trash keeps its copy)\n",
                i.kind.label(),
                i.path.display()
            ));
        }
        crate::report::more(&mut out, done.skipped.len(), limit);
        out.push_str(&format!(
            "{} items restored, {} skipped\n",
            done.restored.len(),
            done.skipped.len()
        ));
        out
    }
    fn json(&self) -> String {
        crate::report::pretty(&RestoreJson {
            envelope: crate::report::Envelope::new(crate::report::RESTORE_SCHEMA, self.started),
            root: &self.dir,
            summary: serde_json::json!({
                "restored": self.done.restored.len(),
                "skipped": self.done.skipped.len(),
            }),
            restored: &self.done.restored,
            skipped: &self.done.skipped,
        })
    }
    fn exit_code(&self) -> ExitCode {
        ExitCode::Ok
    }
}

/// The runs a trash folder holds.
pub fn list(dir: &Path) -> Result<TrashListReport> {
    let started = chrono::Utc::now();
    Ok(TrashListReport::new(
        dir,
        started,
        crate::stages::trash::list(dir)?,
    ))
}

impl Report for TrashListReport {
    /// One line per run: when, by which command, how much, from which registry.
    fn text(&self, limit: Option<usize>) -> String {
        let limit = limit.unwrap_or(usize::MAX);
        let mut out = String::new();
        for r in self.runs.iter().take(limit) {
            out.push_str(&format!(
                "{}  {}  {:<6} {:>9}  {}  from {}\n",
                r.run
                    .file_name()
                    .map_or("?".into(), |n| n.to_string_lossy()),
                r.started,
                r.command,
                human_bytes(r.bytes),
                plural(r.items, "item", "items"),
                r.registry.display()
            ));
        }
        crate::report::more(&mut out, self.runs.len(), limit);
        let dir = self.root.display();
        out.push_str(&format!(
            "{} in {dir}: {} (`regsweep trash empty {dir} --older-than DURATION` frees it)\n",
            plural(self.runs.len(), "trash run", "trash runs"),
            human_bytes(self.summary.bytes),
        ));
        out
    }
    fn json(&self) -> String {
        crate::report::pretty(self)
    }
    fn exit_code(&self) -> ExitCode {
        ExitCode::Ok
    }
}

/// What `trash empty` deleted for good (`--format json`: `regsweep/trash-empty/v1`).
#[derive(Debug, Serialize)]
pub struct Emptied {
    #[serde(flatten)]
    pub envelope: crate::report::Envelope,
    /// The trash folder.
    pub root: std::path::PathBuf,
    pub summary: EmptiedSummary,
    pub removed: Vec<RunSummary>,
}

#[derive(Debug, Serialize)]
pub struct EmptiedSummary {
    pub runs: usize,
    pub items: usize,
    pub bytes_freed: u64,
}

/// Deletes for good the runs older than `older_than`.
pub fn empty(
    dir: &Path,
    older_than: Span,
    progress: &dyn crate::progress::Progress,
) -> Result<Emptied> {
    let started = chrono::Utc::now();
    let removed = crate::stages::trash::empty(dir, older_than.0, progress)?;
    Ok(Emptied {
        envelope: crate::report::Envelope::new(crate::report::TRASH_EMPTY_SCHEMA, started),
        root: dir.to_path_buf(),
        summary: EmptiedSummary {
            runs: removed.len(),
            items: removed.iter().map(|r| r.items).sum(),
            bytes_freed: removed.iter().map(|r| r.bytes).sum(),
        },
        removed,
    })
}

impl Report for Emptied {
    fn text(&self, limit: Option<usize>) -> String {
        let limit = limit.unwrap_or(usize::MAX);
        let mut out = String::new();
        for r in self.removed.iter().take(limit) {
            out.push_str(&format!(
                "deleted {} ({}, {})\n",
                r.run.display(),
                plural(r.items, "item", "items"),
                human_bytes(r.bytes)
            ));
        }
        crate::report::more(&mut out, self.removed.len(), limit);
        let freed: u64 = self.removed.iter().map(|r| r.bytes).sum();
        out.push_str(&format!(
            "{} deleted for good: {} freed\n",
            plural(self.removed.len(), "trash run", "trash runs"),
            human_bytes(freed)
        ));
        out
    }
    fn json(&self) -> String {
        crate::report::pretty(self)
    }
    fn exit_code(&self) -> ExitCode {
        ExitCode::Ok
    }
}
