//! The sweep journal: what a sweep set out to remove, left at the root while it runs, so that
//! the run after a kill (SIGKILL, a power cut: no record could be written) can say what the
//! killed run removed, which is what of its plan is gone from the layout. Pure: the journal,
//! and its accounting against a layout.

use crate::gc::plan::Plan;
use crate::model::digest::Digest;
use crate::model::{Layout, Name};
use serde::{Deserialize, Serialize};

/// The journal's name at the storage root (beside the lock).
pub const SWEEP_JOURNAL: &str = ".regsweep.sweep-journal";

const SCHEMA: &str = "regsweep/sweep-journal/v1";

/// What a sweep set out to remove, and the killed runs before it it already accounted for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Journal {
    pub schema: String,
    pub command: String,
    pub pid: u32,
    pub started_at: String,
    /// The plan was too large to list within a state file's limit: only counts are known.
    #[serde(default)]
    pub unlisted: bool,
    pub planned: Counts,
    #[serde(default)]
    pub tags: Vec<(Name, String)>,
    #[serde(default)]
    pub manifests: Vec<(Name, Digest)>,
    #[serde(default)]
    pub layer_links: Vec<(Name, Digest)>,
    #[serde(default)]
    pub blobs: Vec<(Digest, u64)>,
    #[serde(default)]
    pub uploads: Vec<(Name, String)>,
    #[serde(default)]
    pub earlier: Vec<KilledRun>,
}

/// A [`Journal`] borrowed from a plan: the same fields, in the same order, so the same JSON
/// (the lists are [`Each`]).
#[derive(Serialize)]
struct Of<'a, T, M, L, B, U> {
    schema: &'a str,
    command: &'a str,
    pid: u32,
    started_at: &'a str,
    unlisted: bool,
    planned: Counts,
    tags: T,
    manifests: M,
    layer_links: L,
    blobs: B,
    uploads: U,
    earlier: &'a [KilledRun],
}

/// A list serialized from the iterator its function makes, item by item.
struct Each<F>(F);

impl<F, I> Serialize for Each<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

/// Counts of the five kinds a gc report lists.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub tags: usize,
    pub manifests: usize,
    pub layer_links: usize,
    pub blobs: usize,
    pub uploads: usize,
}

impl Counts {
    /// What `plan` removes, by kind.
    pub fn of(plan: &Plan) -> Counts {
        Counts {
            tags: plan.tags.len(),
            manifests: plan.manifests.len(),
            layer_links: plan.layer_links.len(),
            blobs: plan.blobs.len(),
            uploads: plan.uploads.len(),
        }
    }
}

/// A run killed mid-sweep, as the next run found it: what of its plan was gone.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KilledRun {
    pub command: String,
    pub pid: u32,
    pub started_at: String,
    pub planned: Counts,
    /// Only counts were journaled (a plan over the state file's limit): the lists are empty.
    pub unlisted: bool,
    /// `repo:tag`, as gc's report lists them.
    pub tags_removed: Vec<String>,
    /// `repo@sha256:…`.
    pub manifests_removed: Vec<String>,
    pub layer_links_removed: Vec<String>,
    pub blobs_removed: Vec<Digest>,
    /// `repo/_uploads/<id>`.
    pub uploads_removed: Vec<String>,
    pub bytes_freed: u64,
}

impl KilledRun {
    pub fn removed(&self) -> Counts {
        Counts {
            tags: self.tags_removed.len(),
            manifests: self.manifests_removed.len(),
            layer_links: self.layer_links_removed.len(),
            blobs: self.blobs_removed.len(),
            uploads: self.uploads_removed.len(),
        }
    }

    /// "`gc` (pid 7, started 2026-12-06T10:00:00Z) was killed mid-sweep: of the 2 tags, …
    /// it planned, it removed 1 tag, … (1.2 KiB)". Only a run holding the lock is `certain`
    /// that the journal's run is dead: without it, that run may still be sweeping.
    pub fn describe(&self, certain: bool) -> String {
        let (p, r) = (self.planned, self.removed());
        let head = format!(
            "`{}` (pid {}, started {}) {}was killed mid-sweep",
            self.command,
            self.pid,
            self.started_at,
            if certain {
                ""
            } else {
                "is sweeping now (this run holds no lock to tell), or "
            }
        );
        if self.unlisted {
            return format!(
                "{head}: its plan (of {}) was too large to journal, so what it removed cannot be told; this report lists what is there",
                counts(p)
            );
        }
        format!(
            "{head}: of the {} it planned, it removed {} ({})",
            counts(p),
            counts(r),
            crate::units::human_bytes(self.bytes_freed)
        )
    }
}

fn counts(c: Counts) -> String {
    use crate::units::plural;
    [
        plural(c.tags, "tag", "tags"),
        plural(c.manifests, "manifest", "manifests"),
        plural(c.layer_links, "layer link", "layer links"),
        plural(c.blobs, "blob", "blobs"),
        plural(c.uploads, "upload", "uploads"),
    ]
    .join(", ")
}

impl Journal {
    /// The journal of a sweep of `plan` by `command`, carrying the killed runs this run found.
    pub fn new(command: &str, plan: &Plan, earlier: Vec<KilledRun>) -> Journal {
        let planned = Counts::of(plan);
        Journal {
            schema: SCHEMA.into(),
            command: command.into(),
            pid: std::process::id(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            unlisted: false,
            planned,
            tags: (plan.tags.iter())
                .map(|t| (t.repository.clone(), t.tag.clone()))
                .collect(),
            manifests: (plan.manifests.iter())
                .map(|m| (m.repository.clone(), m.digest))
                .collect(),
            layer_links: (plan.layer_links.iter())
                .map(|l| (l.repository.clone(), *l.digest))
                .collect(),
            blobs: plan.blobs.iter().map(|b| (b.digest(), b.size())).collect(),
            uploads: (plan.uploads.iter())
                .map(|u| (u.repository.clone(), u.id.clone()))
                .collect(),
            earlier,
        }
    }

    /// The bytes of [`Journal::new`]'s journal, written straight from the plan (the lists are
    /// not copied first: at a million planned items that copy is tens of megabytes); only the
    /// counts when the lists would pass `limit`.
    pub fn bytes_of(command: &str, plan: &Plan, earlier: Vec<KilledRun>, limit: u64) -> Vec<u8> {
        let head = Journal::new(command, &Plan::default(), earlier);
        let planned = Counts::of(plan);
        let of = Of {
            schema: &head.schema,
            command: &head.command,
            pid: head.pid,
            started_at: &head.started_at,
            unlisted: false,
            planned,
            tags: Each(|| (plan.tags.iter()).map(|t| (&t.repository, &t.tag))),
            manifests: Each(|| (plan.manifests.iter()).map(|m| (&m.repository, m.digest))),
            layer_links: Each(|| (plan.layer_links.iter()).map(|l| (l.repository, *l.digest))),
            blobs: Each(|| plan.blobs.iter().map(|b| (b.digest(), b.size()))),
            uploads: Each(|| (plan.uploads.iter()).map(|u| (&u.repository, &u.id))),
            earlier: &head.earlier,
        };
        match crate::output::json_within(&of, limit) {
            Some(bytes) => bytes,
            None => Journal {
                unlisted: true,
                planned,
                ..head
            }
            .to_bytes(u64::MAX),
        }
    }

    /// Its bytes; only the counts when the lists would pass `limit`.
    pub fn to_bytes(&self, limit: u64) -> Vec<u8> {
        if let Some(bytes) = crate::output::json_within(self, limit) {
            return bytes;
        }
        let counts_only = Journal {
            unlisted: true,
            tags: vec![],
            manifests: vec![],
            layer_links: vec![],
            blobs: vec![],
            uploads: vec![],
            ..self.clone()
        };
        serde_json::to_vec(&counts_only).unwrap_or_default()
    }

    /// Reads a journal, checking that what it names could be in a layout (its names end up in
    /// reports and on terminals).
    pub fn parse(bytes: &[u8]) -> Result<Journal, String> {
        let j: Journal =
            serde_json::from_slice(bytes).map_err(|e| format!("not a sweep journal: {e}"))?;
        if j.schema != SCHEMA {
            return Err(format!("schema {:?}, not {SCHEMA:?}", j.schema));
        }
        let repos = (j.tags.iter().map(|(r, _)| r))
            .chain(j.manifests.iter().map(|(r, _)| r))
            .chain(j.layer_links.iter().map(|(r, _)| r))
            .chain(j.uploads.iter().map(|(r, _)| r));
        if let Some(r) = repos.into_iter().find(|r| !valid_repository(r)) {
            return Err(format!("{r:?} is no repository name"));
        }
        if let Some((_, t)) = j
            .tags
            .iter()
            .find(|(_, t)| !crate::model::paths::valid_tag(t))
        {
            return Err(format!("{t:?} is no tag name"));
        }
        let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic());
        if let Some((_, u)) = j.uploads.iter().find(|(_, u)| !plain(u)) {
            return Err(format!("{u:?} is no upload id"));
        }
        if !plain(&j.command) || !plain(&j.started_at) {
            return Err("a crafted command or date".into());
        }
        Ok(j)
    }

    /// What of this journal's plan is gone from `layout` (gone from the registry's sight: a
    /// staged item counts as removed), and the earlier killed runs it carried, oldest first.
    pub fn account(&self, layout: &Layout) -> Vec<KilledRun> {
        use std::collections::HashSet;
        // What the repositories the journal names hold now, as sets: a plan of millions of
        // items is looked up once each, not scanned for.
        let named: HashSet<&str> = (self.tags.iter().map(|(r, _)| &**r))
            .chain(self.manifests.iter().map(|(r, _)| &**r))
            .chain(self.layer_links.iter().map(|(r, _)| &**r))
            .chain(self.uploads.iter().map(|(r, _)| &**r))
            .collect();
        let (mut tags, mut revs, mut layers, mut uploads) = (
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
        );
        for repo in (layout.repos.iter()).filter(|r| named.contains(r.name.as_ref())) {
            let name = repo.name.as_ref();
            tags.extend(repo.tags.iter().map(|t| (name, t.name.as_str())));
            revs.extend(repo.revisions.iter().map(|l| (name, l.digest)));
            layers.extend(
                (repo
                    .layers
                    .iter()
                    .map(|l| layout.blobs[l.blob as usize].digest))
                .chain(repo.layers_absent.iter().map(|l| l.digest))
                .map(|d| (name, d)),
            );
            uploads.extend(repo.uploads.iter().map(|u| (name, u.id.as_str())));
        }
        let tag_there = |r: &str, t: &str| tags.contains(&(r, t));
        let rev_there = |r: &str, d: &Digest| revs.contains(&(r, *d));
        let layer_there = |r: &str, d: &Digest| layers.contains(&(r, *d));
        let upload_there = |r: &str, u: &str| uploads.contains(&(r, u));
        let blobs: Vec<&(Digest, u64)> = (self.blobs.iter())
            .filter(|(d, _)| layout.blob(d).is_none())
            .collect();
        let mut runs = self.earlier.clone();
        runs.push(KilledRun {
            command: self.command.clone(),
            pid: self.pid,
            started_at: self.started_at.clone(),
            planned: self.planned,
            unlisted: self.unlisted,
            tags_removed: (self.tags.iter())
                .filter(|(r, t)| !tag_there(r, t))
                .map(|(r, t)| format!("{r}:{t}"))
                .collect(),
            manifests_removed: (self.manifests.iter())
                .filter(|(r, d)| !rev_there(r, d))
                .map(|(r, d)| format!("{r}@{d}"))
                .collect(),
            layer_links_removed: (self.layer_links.iter())
                .filter(|(r, d)| !layer_there(r, d))
                .map(|(r, d)| format!("{r}@{d}"))
                .collect(),
            bytes_freed: blobs.iter().map(|(_, s)| s).sum(),
            blobs_removed: blobs.iter().map(|(d, _)| *d).collect(),
            uploads_removed: (self.uploads.iter())
                .filter(|(r, u)| !upload_there(r, u))
                .map(|(r, u)| format!("{r}/_uploads/{u}"))
                .collect(),
        });
        runs
    }
}

fn valid_repository(name: &str) -> bool {
    crate::model::paths::valid_repo_path(name)
}

#[cfg(test)]
#[path = "killed_tests.rs"]
mod tests;
