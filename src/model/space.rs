//! Space: how full the filesystem holding a root is, and what a budget or quota decided, as
//! reports carry it.

use serde::Serialize;

/// The filesystem holding the root, as `df` counts it: `size` is what is used plus what an
/// unprivileged writer may still use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FsUsage {
    pub size: u64,
    pub used: u64,
}

impl FsUsage {
    pub fn percent(&self, used: u64) -> f64 {
        if self.size == 0 {
            return 0.0;
        }
        used as f64 * 100.0 / self.size as f64
    }
}

/// What holds bytes back from a budget or quota: a protection or rule, and the bytes it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    pub by: String,
    pub tags: usize,
    pub bytes: u64,
}

/// A budget's or one repository quota's decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpaceState {
    /// `budget`, or `quota <repository>`.
    pub what: String,
    /// `filesystem` (a share of the disk), `registry` (its distinct blob bytes), or
    /// `exclusive` / `total` (a quota's count).
    pub measure: &'static str,
    /// Bytes counted before the run, and the size they are a share of (filesystem only).
    pub used: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub high: String,
    pub low: String,
    /// Whether usage was above `high` (for a quota: above its `max`).
    pub over: bool,
    /// Tags the budget takes, beyond the rules', and the bytes the whole plan frees.
    pub tags: usize,
    pub bytes_freed: u64,
    /// Usage once the plan is carried out (exact: the mark's bytes, shared blobs once).
    pub projected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_percent: Option<f64>,
    /// Whether `projected` is under `low` (or the quota).
    pub reached: bool,
    /// How far short the run falls, and what holds the rest back (largest first).
    pub short_by: u64,
    pub blocked_by: Vec<Blocker>,
    /// The order of value used.
    pub order: Vec<&'static str>,
    /// What the operator should know: the order differs from the one asked (no ledger), or
    /// nothing can be freed (no -m).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
