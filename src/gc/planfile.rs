//! The plan as a file: where, with which options, and every item. Written inside a gc report
//! and read back whole by `apply`: one type both ways, its checksum taken over it.

use crate::gc::plan::{LinkRemoval, ManifestRemoval, TagRemoval, UploadRemoval};
use crate::model::duration::Span;
use crate::model::{Rules, Time};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The options a run plans with: one type from the command line (in `GcConfig`) to the plan
/// file and back (`apply` reads them from it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub delete_untagged: bool,
    /// With `delete_untagged`: only untagged manifests pushed more than this long ago went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_untagged_older_than: Option<Span>,
    pub grace: Span,
    pub allow_damage: bool,
    pub purge_uploads: Option<Span>,
    /// `--repository` patterns the run was limited to; empty: every repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// The evidence of use the plan judged by, which `apply` reads again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// Where a plan's evidence of use came from, and when it was read: `apply` re-reads every file
/// (refusing when one is gone) and keeps what became used or was pulled since.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// When the plan read it (seconds since the epoch).
    pub read_at: Time,
    /// `--keep-images` files and the policy's `protect.images_file`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images_files: Vec<PathBuf>,
    /// `--keep-images-empty-ok`: a file naming no image was meant; without it, `apply`
    /// refuses one that has become empty (a failed `kubectl ... > FILE` since the plan).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub images_empty_ok: bool,
    /// `--registry-host` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registry_hosts: Vec<String>,
    /// `--ledger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<PathBuf>,
}

impl Options {
    /// The rules these options give at `now`: the grace period ends where "young" starts.
    pub fn rules(&self, now: Time) -> Rules {
        let before = |a: Span| now.saturating_sub(a.as_secs() as i64);
        Rules {
            delete_untagged: self.delete_untagged,
            young_from: Rules::young_from(self.grace, now),
            allow_damage: self.allow_damage,
            uploads_before: self.purge_uploads.map(before),
            untagged_kept_from: (self.delete_untagged_older_than)
                .filter(|a| !a.is_zero())
                .map(before),
        }
    }
}

/// The part of a gc report that is a plan: where, with which options, and every item. Written
/// inside the report and read back whole by `apply`: one type both ways, its checksum taken over
/// it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlanFile {
    pub root: PathBuf,
    pub options: Options,
    pub tags_deleted: Vec<TagRemoval>,
    pub tag_index_entries_deleted: Vec<LinkRemoval>,
    pub manifests_deleted: Vec<ManifestRemoval>,
    pub layer_links_deleted: crate::gc::planned::PlannedLinks,
    pub blobs_deleted: crate::gc::planned::PlannedBlobs,
    pub uploads_deleted: Vec<UploadRemoval>,
    /// Empty link and blob folders earlier deletes left (absent from plans of older versions).
    #[serde(default)]
    pub empty_folders_removed: Vec<PathBuf>,
}

impl PlanFile {
    /// `sha256:<hex>` of the plan serialized with sorted keys.
    pub fn checksum(&self) -> String {
        use sha2::Digest as _;
        let text = serde_json::to_value(self).unwrap_or_default().to_string();
        crate::Digest(sha2::Sha256::digest(text.as_bytes()).into()).to_string()
    }
}

/// The checksum of the plan a JSON report holds; `None` when it holds none. (What anyone who
/// edits a plan can recompute: the tests forge plans with it, as `apply --checksum` expects.)
pub fn plan_checksum(report: &serde_json::Value) -> Option<String> {
    serde_json::from_value::<PlanFile>(report.clone())
        .ok()
        .map(|p| p.checksum())
}
