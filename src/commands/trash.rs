//! The trash's commands: `restore` (put back what a `--trash` run moved), `trash list` and
//! `trash empty`. Each returns its output and exit code; the CLI prints.

use crate::config::Format;
use crate::error::{ExitCode, Result};
use crate::model::duration::Span;
use crate::stages::trash::Selection;
use crate::units::{human_bytes, plural};
use std::path::{Path, PathBuf};

/// `restore`, validated.
pub struct RestoreConfig {
    pub dir: PathBuf,
    pub selection: Selection,
    pub break_lock: bool,
    /// The registry's storage root the trash's runs must have come from.
    pub root: Option<PathBuf>,
}

/// Puts back what the selection names; one line per item, then the counts.
pub fn restore(cfg: &RestoreConfig) -> Result<(String, ExitCode)> {
    let r = crate::stages::trash::restore(
        &cfg.dir,
        &cfg.selection,
        cfg.break_lock,
        cfg.root.as_deref(),
    )?;
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
    Ok((out, ExitCode::Ok))
}

/// The runs a trash folder holds: when, by which command, from which registry, how much.
pub fn list(dir: &Path, format: Format) -> Result<(String, ExitCode)> {
    let started = chrono::Utc::now();
    let runs = crate::stages::trash::list(dir)?;
    if format == Format::Json {
        let report = crate::report::TrashListReport::new(dir, started, runs);
        let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
        return Ok((text, ExitCode::Ok));
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
            human_bytes(r.bytes),
            plural(r.items, "item", "items"),
            r.registry.display()
        ));
    }
    let bytes: u64 = runs.iter().map(|r| r.bytes).sum();
    out.push_str(&format!(
        "{} in {}: {} (`regsweep trash empty {} --older-than DURATION` frees it)\n",
        plural(runs.len(), "trash run", "trash runs"),
        dir.display(),
        human_bytes(bytes),
        dir.display()
    ));
    Ok((out, ExitCode::Ok))
}

/// Deletes for good the runs older than `older_than`.
pub fn empty(dir: &Path, older_than: Span) -> Result<(String, ExitCode)> {
    let removed = crate::stages::trash::empty(dir, older_than.0)?;
    let mut out = String::new();
    for r in &removed {
        out.push_str(&format!(
            "deleted {} ({}, {})\n",
            r.run.display(),
            plural(r.items, "item", "items"),
            human_bytes(r.bytes)
        ));
    }
    let freed: u64 = removed.iter().map(|r| r.bytes).sum();
    out.push_str(&format!(
        "{} deleted for good: {} freed\n",
        plural(removed.len(), "trash run", "trash runs"),
        human_bytes(freed)
    ));
    Ok((out, ExitCode::Ok))
}
