//! The report of `trash list`.

use super::*;

/// `trash list --format json`: the runs a trash folder holds.
#[derive(Debug, Serialize)]
pub struct TrashListReport {
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The trash folder.
    pub root: PathBuf,
    pub summary: TrashSummary,
    pub runs: Vec<crate::stages::trash::RunSummary>,
}

#[derive(Debug, Serialize)]
pub struct TrashSummary {
    pub runs: usize,
    pub items: usize,
    /// What emptying the whole trash would free.
    pub bytes: u64,
}

impl TrashListReport {
    pub fn new(
        dir: &std::path::Path,
        started: chrono::DateTime<chrono::Utc>,
        runs: Vec<crate::stages::trash::RunSummary>,
    ) -> TrashListReport {
        TrashListReport {
            envelope: Envelope::new(TRASH_LIST_SCHEMA, started),
            root: dir.to_path_buf(),
            summary: TrashSummary {
                runs: runs.len(),
                items: runs.iter().map(|r| r.items).sum(),
                bytes: runs.iter().map(|r| r.bytes).sum(),
            },
            runs,
        }
    }
}
