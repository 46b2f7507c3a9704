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
    /// `sha256:<hex>` of the plan serialized with sorted keys, compact (what a JSON value of it
    /// prints), hashed as it is written: a plan of a million items never becomes one tree.
    pub fn checksum(&self) -> String {
        use sha2::Digest as _;
        let mut h = Hashing(sha2::Sha256::new());
        let h = match self.write_canonical(&mut h) {
            Ok(()) => h.0,
            // As the value it could not become: null.
            Err(_) => sha2::Sha256::new_with_prefix(b"null"),
        };
        crate::Digest(h.finalize().into()).to_string()
    }

    /// The plan as compact JSON with sorted keys at every level, list item by list item.
    fn write_canonical(&self, w: &mut impl std::io::Write) -> serde_json::Result<()> {
        type Part<'a> = (
            &'static str,
            Box<dyn Fn(&mut dyn std::io::Write) -> serde_json::Result<()> + 'a>,
        );
        let mut parts: Vec<Part<'_>> = vec![
            ("root", Box::new(|w| one(w, &self.root))),
            ("options", Box::new(|w| one(w, &self.options))),
            (
                "tags_deleted",
                Box::new(|w| list(w, self.tags_deleted.iter())),
            ),
            (
                "tag_index_entries_deleted",
                Box::new(|w| list(w, self.tag_index_entries_deleted.iter())),
            ),
            (
                "manifests_deleted",
                Box::new(|w| list(w, self.manifests_deleted.iter())),
            ),
            (
                "layer_links_deleted",
                Box::new(|w| list(w, self.layer_links_deleted.iter().map(|l| l.to_removal()))),
            ),
            (
                "blobs_deleted",
                Box::new(|w| list(w, self.blobs_deleted.iter().map(|b| b.to_removal()))),
            ),
            (
                "uploads_deleted",
                Box::new(|w| list(w, self.uploads_deleted.iter())),
            ),
            (
                "empty_folders_removed",
                Box::new(|w| list(w, self.empty_folders_removed.iter())),
            ),
        ];
        parts.sort_by_key(|(k, _)| *k);
        let io = serde_json::Error::io;
        w.write_all(b"{").map_err(io)?;
        for (i, (key, part)) in parts.iter().enumerate() {
            if i > 0 {
                w.write_all(b",").map_err(io)?;
            }
            serde_json::to_writer(&mut *w, key)?;
            w.write_all(b":").map_err(io)?;
            part(w)?;
        }
        w.write_all(b"}").map_err(io)
    }
}

/// One value, its keys sorted (through a JSON value of it alone).
fn one(w: &mut dyn std::io::Write, v: &impl Serialize) -> serde_json::Result<()> {
    serde_json::to_writer(w, &serde_json::to_value(v)?)
}

fn list<T: Serialize>(
    w: &mut dyn std::io::Write,
    items: impl Iterator<Item = T>,
) -> serde_json::Result<()> {
    let io = serde_json::Error::io;
    w.write_all(b"[").map_err(io)?;
    for (i, item) in items.enumerate() {
        if i > 0 {
            w.write_all(b",").map_err(io)?;
        }
        one(&mut *w, &item)?;
    }
    w.write_all(b"]").map_err(io)
}

/// A hash that JSON is written into.
struct Hashing(sha2::Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.0, b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The checksum of the plan a JSON report holds; `None` when it holds none. (What anyone who
/// edits a plan can recompute: the tests forge plans with it, as `apply --checksum` expects.)
pub fn plan_checksum(report: &serde_json::Value) -> Option<String> {
    serde_json::from_value::<PlanFile>(report.clone())
        .ok()
        .map(|p| p.checksum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::plan::BlobRemoval;
    use crate::model::Names;
    use crate::testutil::dg;
    use std::time::Duration;

    /// Every list and option filled, so that each key and each item's key order counts.
    fn full() -> PlanFile {
        let name = |s: &str| -> crate::model::Name { s.into() };
        let link = |r: &str, tag: Option<&str>, d| LinkRemoval {
            repository: name(r),
            tag: tag.map(str::to_string),
            digest: dg(d),
        };
        PlanFile {
            root: "/var/lib/registry".into(),
            options: Options {
                delete_untagged: true,
                delete_untagged_older_than: Some(Span(Duration::from_secs(60))),
                grace: Span(Duration::from_secs(3600)),
                purge_uploads: Some(Span(Duration::from_secs(86400))),
                repositories: vec!["team/*".into()],
                evidence: Some(Evidence {
                    read_at: 1_700_000_000,
                    images_files: vec!["/etc/images".into()],
                    ledger: Some("/var/lib/ledger".into()),
                    ..Evidence::default()
                }),
                ..Options::default()
            },
            tags_deleted: vec![TagRemoval {
                repository: name("team/a"),
                tag: "v1 \"quoted\"".into(),
                digest: Some(dg(1)),
                rule: "old".into(),
                age_seconds: Some(99),
            }],
            tag_index_entries_deleted: vec![link("team/a", Some("v1"), 2)],
            manifests_deleted: vec![ManifestRemoval {
                repository: name("team/a"),
                digest: dg(3),
                reason: "untagged".into(),
            }],
            layer_links_deleted: [link("team/a", None, 4), link("team/b", None, 5)]
                .into_iter()
                .collect(),
            blobs_deleted: [4u8, 5, 6]
                .map(|n| BlobRemoval {
                    digest: dg(n),
                    size: n as u64 * 1000,
                    linked_from: Names::from(vec![name("team/a"), name("team/b")]),
                    mtime: n as i64,
                })
                .into_iter()
                .collect(),
            uploads_deleted: vec![UploadRemoval {
                repository: name("team/b"),
                id: "u-1".into(),
                size: 7,
            }],
            empty_folders_removed: vec!["/var/lib/registry/x".into()],
        }
    }

    #[test]
    fn the_streamed_checksum_is_the_one_over_the_whole_sorted_value() {
        use sha2::Digest as _;
        for p in [full(), serde_json::from_str(r#"{"root":"/r","options":{"delete_untagged":false,"grace":"0s","allow_damage":false,"purge_uploads":null},"tags_deleted":[],"tag_index_entries_deleted":[],"manifests_deleted":[],"layer_links_deleted":[],"blobs_deleted":[],"uploads_deleted":[]}"#).unwrap()] {
            let text = serde_json::to_value(&p).unwrap().to_string();
            let whole = crate::Digest(sha2::Sha256::digest(text.as_bytes()).into()).to_string();
            assert_eq!(p.checksum(), whole, "for {text}");
        }
    }
}
