//! What became of a sweep: how many items went, which removals failed, which items were kept
//! because they changed during the run. Written by the store's sweep, read by the reports.

use serde::Serialize;
use std::path::PathBuf;

/// An item and what became of it: a removal that failed, or an item kept at sweep time (its
/// path, and why).
#[derive(Debug, Clone, Serialize)]
pub struct ItemNote {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub removed: u64,
    pub failures: Vec<ItemNote>,
    /// Planned items left in place because they changed, or were named again, during the run.
    pub kept: Vec<ItemNote>,
    /// The sweep stopped early on request; a later run finishes the job.
    pub interrupted: bool,
    /// Planned items an interrupted sweep never reached (still in place).
    #[serde(skip)]
    pub not_reached: Vec<PathBuf>,
    /// Of `failures`, those sent for deletion and not known to be gone or there (a bucket's
    /// delete whose answer was lost): perhaps gone.
    #[serde(skip)]
    pub unconfirmed: Vec<PathBuf>,
}

impl Outcome {
    /// Whether every planned item went: nothing kept, failed or left unreached.
    pub fn all_went(&self) -> bool {
        self.kept.is_empty() && self.failures.is_empty() && self.not_reached.is_empty()
    }
}
