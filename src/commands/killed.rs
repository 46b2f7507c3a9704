//! What gc and apply say of the runs killed mid-sweep before them (read from the sweep journal
//! by `pipeline`): one notice each, naming what it removed, and the journal's end once this
//! run's record holds them.

use crate::gc::killed::SWEEP_JOURNAL;
use crate::model::{FindingKind, Severity};
use crate::pipeline::Session;
use crate::report::ErrorEntry;
use crate::storage::seam::Storage;

/// A notice per killed run (or one for a journal that cannot be read), also said on stderr:
/// the record at `--report` of a killed run says only that it did not finish.
pub fn notes<S: Storage>(session: &Session<S>) -> Vec<ErrorEntry> {
    let path = session.store.location().join(SWEEP_JOURNAL);
    let said = (session.killed.iter())
        .map(|k| {
            format!(
                "{}; what it left was judged again by this run",
                k.describe(session.lock.is_some())
            )
        })
        .chain(session.killed_unreadable.clone());
    said.map(|message| {
        tracing::warn!("{message}");
        ErrorEntry {
            path: path.clone(),
            message,
            severity: Severity::Notice,
            kind: FindingKind::SweepKilled,
        }
    })
    .collect()
}

/// Ends the journal (this run's, and a killed one's now in this run's report) when the run
/// holds the lock; a note when it cannot.
pub fn end<S: Storage>(session: &Session<S>, notes: &mut Vec<ErrorEntry>) {
    if let Some(message) = session.end_sweep() {
        notes.push(ErrorEntry {
            path: session.store.location().join(SWEEP_JOURNAL),
            message,
            severity: Severity::Error,
            kind: FindingKind::SweepKilled,
        });
    }
}
