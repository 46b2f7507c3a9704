//! The live registry beside the storage: what its blob-descriptor cache may go on claiming
//! after a sweep, and how regsweep makes it forget (Redis: eviction) or says it cannot
//! (in memory: a restart), then asks the registry itself (`probe`).
//!
//! The registry (distribution 2.8 and 3.x) caches, per blob digest and per (repository,
//! digest), that a blob exists. After a sweep removes it beside the running registry, a cached
//! entry still answers "present": a client pushing the same image again is told each layer
//! exists, skips the upload, and the manifest is accepted over data that is gone (distribution
//! issues 3743, 4569). Evicting is always safe: a missing entry only sends the registry back to
//! its storage. So eviction happens after the removals (a lookup in between finds nothing to
//! cache again), covers what the sweep removed, and reconciles every other entry against what
//! the scan found, which also mends what a killed run or another tool left behind.

pub mod pending;
pub mod probe;
pub mod redis;

use crate::config::registry::BlobCache;
use crate::gc::plan::ManifestRemoval;
use crate::gc::planned::{PlannedBlobs, PlannedLinks};
use crate::model::digest::Digest;
use crate::model::{Layout, Name};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

pub use crate::config::LiveOptions;

/// What was swept, as the cache keys it: blob digests, and (repository, digest) pairs of
/// layer links and manifest revisions (and the repositories a swept blob was linked from).
#[derive(Debug, Default, Clone)]
pub struct Swept {
    pub blobs: Vec<Digest>,
    pub links: Vec<(Name, Digest)>,
    /// The manifest revisions among `links` (asked about as manifests too).
    pub manifests: Vec<(Name, Digest)>,
}

impl Swept {
    pub fn new(
        blobs: &PlannedBlobs,
        layer_links: &PlannedLinks,
        manifests: &[ManifestRemoval],
    ) -> Swept {
        let mut links: Vec<(Name, Digest)> = (layer_links.iter())
            .map(|l| (l.repository.clone(), *l.digest))
            .chain(manifests.iter().map(|m| (m.repository.clone(), m.digest)))
            .chain(
                (blobs.iter())
                    .flat_map(|b| b.linked_from.iter().map(move |r| (r.clone(), b.digest()))),
            )
            .collect();
        links.sort();
        links.dedup();
        Swept {
            blobs: blobs.iter().map(|b| b.digest()).collect(),
            links,
            manifests: (manifests.iter())
                .map(|m| (m.repository.clone(), m.digest))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.links.is_empty()
    }

    /// This and `other`, each entry once (a copy only when `other` holds something).
    pub fn with(&self, other: &Swept) -> std::borrow::Cow<'_, Swept> {
        if other.is_empty() {
            return std::borrow::Cow::Borrowed(self);
        }
        let join = |a: &[(Name, Digest)], b: &[(Name, Digest)]| {
            let mut v: Vec<(Name, Digest)> = a.iter().chain(b).cloned().collect();
            v.sort();
            v.dedup();
            v
        };
        let mut blobs: Vec<Digest> = self.blobs.iter().chain(&other.blobs).copied().collect();
        blobs.sort_unstable();
        blobs.dedup();
        std::borrow::Cow::Owned(Swept {
            blobs,
            links: join(&self.links, &other.links),
            manifests: join(&self.manifests, &other.manifests),
        })
    }
}

/// What the scan found and the sweep left: the entries a cache may keep. A view of the layout
/// (its sorted blob list, each repository's layer links by blob) less what went, so that it
/// holds only what went and the revisions, never a second copy of every blob and link.
pub struct Present<'a> {
    layout: Option<&'a Layout>,
    repos: FxHashMap<&'a str, usize>,
    revisions: FxHashSet<(usize, Digest)>,
    gone_blobs: FxHashSet<&'a Digest>,
    gone_links: FxHashSet<(&'a str, &'a Digest)>,
}

impl<'a> Present<'a> {
    /// Nothing: every entry of a cache is stale against it.
    pub fn none() -> Present<'static> {
        Present {
            layout: None,
            repos: FxHashMap::default(),
            revisions: FxHashSet::default(),
            gone_blobs: FxHashSet::default(),
            gone_links: FxHashSet::default(),
        }
    }

    pub fn new(layout: &'a Layout, swept: &'a Swept) -> Present<'a> {
        let repos = (layout.repos.iter().enumerate())
            .map(|(i, r)| (r.name.as_ref(), i))
            .collect();
        let revisions = (layout.repos.iter().enumerate())
            .flat_map(|(i, r)| r.revisions.iter().map(move |l| (i, l.digest)))
            .collect();
        Present {
            layout: Some(layout),
            repos,
            revisions,
            gone_blobs: swept.blobs.iter().collect(),
            gone_links: swept.links.iter().map(|(r, d)| (&**r, d)).collect(),
        }
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.layout.is_some_and(|l| l.blob(d).is_some()) && !self.gone_blobs.contains(d)
    }

    pub fn has_link(&self, repo: &str, d: &Digest) -> bool {
        let (Some(layout), Some(&i)) = (self.layout, self.repos.get(repo)) else {
            return false;
        };
        if self.gone_links.contains(&(repo, d)) {
            return false;
        }
        let linked = crate::model::values::position(&layout.blobs, d).is_ok_and(|b| {
            (layout.repos[i].layers)
                .binary_search_by_key(&(b as u32), |l| l.blob)
                .is_ok()
        });
        linked || self.revisions.contains(&(i, *d))
    }
}

/// `--restart-command` after a sweep: the command, its exit status (or why it did not run).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Restart {
    pub command: String,
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the run did about the registry's cache, for the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveReport {
    /// `off`, `inmemory`, `redis`, or `unknown` (only `--root` given).
    pub cache: &'static str,
    /// Redis entries (keys and set members) evicted.
    pub evicted: u64,
    /// The registry must be restarted before the next push (an in-memory cache, after a sweep
    /// that removed something).
    pub restart_needed: bool,
    /// `--restart-command`: what it was and how it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// `--registry-url`: (repository, digest) pairs asked about, and those it still claims.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<probe::ProbeReport>,
    /// The cache could not be made to forget what went (eviction or restart failed): the
    /// pending-eviction journal stays at the root, for the next run to complete.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending_eviction: bool,
    /// Whether the cache has forgotten what went (evicted, or restarted).
    #[serde(skip)]
    pub forgotten: bool,
}

impl LiveReport {
    pub fn new(cache: Option<&BlobCache>) -> LiveReport {
        LiveReport {
            cache: match cache {
                None => "unknown",
                Some(BlobCache::Off) => "off",
                Some(BlobCache::InMemory { .. }) => "inmemory",
                Some(BlobCache::Redis(_)) => "redis",
            },
            evicted: 0,
            restart_needed: false,
            restart: None,
            probe: None,
            pending_eviction: false,
            forgotten: false,
        }
    }
}
