//! The in-memory model of a registry layout that scan builds and the pure stages read: the
//! layout, its parsed manifests (`catalog`), the tag decisions a policy makes of it, and what
//! they keep reachable (`walk`, the one walk of the manifest graph, and `mark`).

pub mod catalog;
pub mod coverage;
pub mod digest;
pub mod duration;
pub mod inuse;
pub mod kube;
pub mod manifest;
pub mod mark;
pub mod paths;
pub mod pulls;
pub mod scheduler;
pub mod skew;
pub mod space;
pub mod values;
pub mod walk;

use crate::model::digest::Digest;
pub use crate::model::manifest::Loaded;
pub use catalog::Manifests;
use catalog::{Ref, View};
use std::path::PathBuf;
pub use values::{
    Blob, BlobList, Finding, FindingKind, LayerLink, Link, Name, Names, Severity, Time,
};

#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    /// `current/link`; `None` when it is missing or damaged (a finding says which).
    pub current: Option<Link>,
    /// Digests under `index/sha256/` but the current one: the manifests this tag named before.
    pub index: Vec<Digest>,
}

#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    /// Bytes under the upload's folder.
    pub size: u64,
    /// `startedat`, falling back to the folder's mtime.
    pub started: Time,
}

#[derive(Debug, Clone, Default)]
pub struct Repo {
    /// Slash-separated name, as clients use it.
    pub name: Name,
    pub tags: Vec<Tag>,
    /// `_manifests/revisions/sha256/<hex>/link`, named by the folder.
    pub revisions: Vec<Link>,
    /// `_layers/sha256/<hex>/link`, named by the folder, whose blob is in the store.
    pub layers: crate::spill::List<LayerLink>,
    /// Layer links naming a blob the store lacks.
    pub layers_absent: Vec<Link>,
    pub uploads: Vec<Upload>,
    /// Folders with no link inside (left by the registry's own deletes), with their mtime.
    pub empty_links: Vec<(PathBuf, Time)>,
    /// Digests whose references cannot be known (a damaged link names them, or
    /// could name anything): while any exist, nothing in this repository is safe to sweep.
    pub unknown: bool,
}

/// Everything scan read from disk.
#[derive(Debug, Default, Clone)]
pub struct Layout {
    /// The `docker/registry/v2` folder.
    pub v2: PathBuf,
    /// Sorted by digest; shared with the plans made from it (they name blobs by index).
    pub blobs: BlobList,
    /// Blob folders without `data`, with their mtime.
    pub empty_blob_dirs: Vec<(Digest, Time)>,
    /// Bytes the blobs' data take on disk (sparse files take less than their size).
    pub allocated_bytes: u64,
    /// Sorted by name.
    pub repos: Vec<Repo>,
    pub findings: Vec<Finding>,
    /// Items a killed sweep had taken out of the registry's sight but not yet deleted.
    pub staging: Vec<PathBuf>,
    /// The manifests that links name, parsed; built over `blobs`, so set after they are final.
    pub manifests: Manifests,
    /// The `created` time of each tagged image's config, by manifest digest: read only when a
    /// policy counts ages from it (`pipeline::Session::open`), empty otherwise.
    pub created: std::collections::HashMap<Digest, Time>,
}

impl Layout {
    pub fn blob(&self, d: &Digest) -> Option<&Blob> {
        values::position(&self.blobs, d)
            .ok()
            .map(|i| &self.blobs[i])
    }

    /// Every layer link of a repository: those whose blob is in the store, in digest order,
    /// then the others.
    pub fn layer_links<'a>(&'a self, repo: &'a Repo) -> impl Iterator<Item = Link> + 'a {
        repo.layers
            .iter()
            .map(|l| Link {
                digest: self.blobs[l.blob as usize].digest,
                mtime: l.mtime,
            })
            .chain(repo.layers_absent.iter().copied())
    }

    /// Files the layer links of repository `repo` by whether their blob is in the store.
    pub fn set_layers(&mut self, repo: usize, links: impl IntoIterator<Item = Link>) {
        let (present, absent) = split_layers(&self.blobs, links);
        self.repos[repo].layers = present.into();
        self.repos[repo].layers_absent = absent;
    }

    /// Parses nothing: catalogs manifests already parsed, over the current blob list.
    pub fn set_manifests(&mut self, loaded: impl IntoIterator<Item = (Digest, Loaded)>) {
        self.manifests = Manifests::build(&self.blobs, loaded);
    }

    /// The ref of a digest that is a blob, or that a manifest names.
    pub fn ref_of(&self, d: &Digest) -> Option<Ref> {
        self.manifests.lookup(&self.blobs, d)
    }

    pub fn digest(&self, r: Ref) -> Digest {
        self.manifests.digest(&self.blobs, r)
    }

    /// The manifest `d`: `None` if it was never loaded, `Err` if it could not be read.
    pub fn manifest(&self, d: &Digest) -> Option<Result<View<'_>, &str>> {
        self.manifest_at(self.ref_of(d)?)
    }

    pub fn manifest_at(&self, r: Ref) -> Option<Result<View<'_>, &str>> {
        self.manifests.at(&self.blobs, r)
    }

    /// Bytes the model holds in memory, roughly (its lists by length, their strings): what the
    /// bounded mode cannot spill. The blob list and layer links count only when held.
    pub fn held_bytes(&self) -> u64 {
        use std::mem::size_of;
        let held = |spilled: bool, bytes: usize| if spilled { 0 } else { bytes as u64 };
        let repo = |r: &Repo| -> u64 {
            let tags: usize = (r.tags.iter())
                .map(|t| size_of::<Tag>() + t.name.len() + t.index.len() * 32)
                .sum();
            let uploads: usize = r
                .uploads
                .iter()
                .map(|u| size_of::<Upload>() + u.id.len())
                .sum();
            let empty: usize = r
                .empty_links
                .iter()
                .map(|(p, _)| 40 + p.as_os_str().len())
                .sum();
            (size_of::<Repo>()
                + r.name.len()
                + tags
                + r.revisions.len() * size_of::<Link>()
                + r.layers_absent.len() * size_of::<Link>()
                + uploads
                + empty) as u64
                + held(
                    r.layers.is_spilled(),
                    r.layers.len() * size_of::<LayerLink>(),
                )
        };
        let findings: usize = (self.findings.iter())
            .map(|f| size_of::<Finding>() + f.path.as_os_str().len() + f.message.len())
            .sum();
        self.repos.iter().map(repo).sum::<u64>()
            + held(
                self.blobs.is_spilled(),
                self.blobs.len() * size_of::<Blob>(),
            )
            + (self.empty_blob_dirs.len() * 40 + findings) as u64
            + self.manifests.held_bytes()
            + (self.created.len() * 48) as u64
    }

    pub fn total_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// Layer links as indices into `blobs` (sorted by digest) where the blob is there, and as
/// links where it is not; both sized exactly, since the model lives for the whole run.
pub fn split_layers(
    blobs: &[Blob],
    links: impl IntoIterator<Item = Link>,
) -> (Vec<LayerLink>, Vec<Link>) {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for l in links {
        match values::position(blobs, &l.digest) {
            Ok(i) => present.push(LayerLink {
                blob: i as u32,
                mtime: l.mtime,
            }),
            Err(_) => absent.push(l),
        }
    }
    present.sort_unstable_by_key(|l| l.blob);
    present.shrink_to_fit();
    absent.shrink_to_fit();
    (present, absent)
}

/// What happens to one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Keep,
    /// Deleted by the named rule.
    Delete {
        rule: String,
    },
}

/// One decision per tag, parallel to `Layout::repos[i].tags`.
#[derive(Debug, Clone, Default)]
pub struct Decisions {
    pub repos: Vec<Vec<Decision>>,
    /// Parallel to `Layout::repos` when the run has a scope (`gc --repository`), else empty:
    /// the repositories outside it. Nothing of theirs goes, and every blob they link or reach
    /// stays.
    pub out_of_scope: Vec<bool>,
    /// Parallel to `Layout::repos`, or empty: manifests kept as roots whatever the tags and -m
    /// say (images in use, manifests pulled lately).
    pub pinned: Vec<Vec<Digest>>,
}

impl Decisions {
    /// Without a policy every tag stays, as with the reference GC.
    pub fn keep_all(layout: &Layout) -> Decisions {
        Decisions {
            repos: layout
                .repos
                .iter()
                .map(|r| vec![Decision::Keep; r.tags.len()])
                .collect(),
            out_of_scope: Vec::new(),
            pinned: Vec::new(),
        }
    }

    /// The manifests pinned in repository `repo`.
    pub fn pinned(&self, repo: usize) -> &[Digest] {
        self.pinned.get(repo).map_or(&[], |v| v.as_slice())
    }

    /// Limits the run to the repositories `in_scope` says yes to: the others keep every tag.
    pub fn with_scope(mut self, layout: &Layout, in_scope: impl Fn(&str) -> bool) -> Decisions {
        self.out_of_scope = layout.repos.iter().map(|r| !in_scope(&r.name)).collect();
        for (i, out) in self.out_of_scope.iter().enumerate() {
            if *out && let Some(tags) = self.repos.get_mut(i) {
                tags.iter_mut().for_each(|d| *d = Decision::Keep);
            }
        }
        self
    }

    /// Whether the run has a scope at all: then only blobs an in-scope repository links or
    /// reaches can go (a blob linked from nowhere is left to an unscoped run).
    pub fn is_scoped(&self) -> bool {
        !self.out_of_scope.is_empty()
    }

    pub fn in_scope(&self, repo: usize) -> bool {
        !self.out_of_scope.get(repo).copied().unwrap_or(false)
    }

    pub fn keeps(&self, repo: usize, tag: usize) -> bool {
        !matches!(
            self.repos.get(repo).and_then(|r| r.get(tag)),
            Some(Decision::Delete { .. })
        )
    }
}

/// What a gc run keeps and deletes beyond the tag decisions: one value, made once from the
/// command line (or a plan), that mark and plan both read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Untagged revisions are not roots: they go unless something else needs them.
    pub delete_untagged: bool,
    /// The grace period: anything modified at or after this moment is young and kept, with all
    /// it reaches. `None` turns grace off (nothing is young, whatever its mtime).
    pub young_from: Option<Time>,
    /// Sweep even where damage hides references.
    pub allow_damage: bool,
    /// Uploads started before this are abandoned and go; `None` keeps all uploads.
    pub uploads_before: Option<Time>,
    /// With `delete_untagged`: untagged revisions pushed at or after this stay (roots, as if
    /// tagged), so that only untagged manifests older than a threshold go; `None`: all go.
    pub untagged_kept_from: Option<Time>,
}

impl Rules {
    /// No grace, damage withholds, uploads stay: the reach of the layout as it is, for `du`,
    /// `check` and the policy's safety net.
    pub const fn without_grace(delete_untagged: bool) -> Rules {
        Rules {
            delete_untagged,
            young_from: None,
            allow_damage: false,
            uploads_before: None,
            untagged_kept_from: None,
        }
    }

    /// Where a grace period of `grace` before `now` starts; `None` (no grace) for zero.
    pub fn young_from(grace: duration::Span, now: Time) -> Option<Time> {
        (!grace.is_zero()).then(|| now.saturating_sub(grace.as_secs() as i64))
    }

    /// Whether something modified at `mtime` is within the grace period.
    pub fn is_young(&self, mtime: Time) -> bool {
        self.young_from.is_some_and(|from| mtime >= from)
    }
}
