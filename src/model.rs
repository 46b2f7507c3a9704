//! The in-memory model of a registry layout that scan builds and the pure stages read.

pub use crate::catalog::Manifests;
use crate::catalog::{Ref, View};
use crate::digest::Digest;
use crate::manifest::Manifest;
use serde::Serialize;
use std::path::PathBuf;

/// Seconds since the Unix epoch.
pub type Time = i64;

#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: Digest,
    /// Apparent size of `data`.
    pub size: u64,
    /// mtime of `data`.
    pub mtime: Time,
}

/// A link file: the digest it names and when it was written.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub digest: Digest,
    pub mtime: Time,
}

/// A layer link whose blob is in the store, by the blob's index in `Layout::blobs`: layer links
/// are as many as blobs, and a 4-byte index is an eighth of a digest.
#[derive(Debug, Clone, Copy)]
pub struct LayerLink {
    pub blob: u32,
    pub mtime: Time,
}

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
    pub name: String,
    pub tags: Vec<Tag>,
    /// `_manifests/revisions/sha256/<hex>/link`, named by the folder.
    pub revisions: Vec<Link>,
    /// `_layers/sha256/<hex>/link`, named by the folder, whose blob is in the store.
    pub layers: Vec<LayerLink>,
    /// Layer links naming a blob the store lacks.
    pub layers_absent: Vec<Link>,
    pub uploads: Vec<Upload>,
    /// Folders with no link inside (left by the registry's own deletes), with their mtime.
    pub empty_links: Vec<(PathBuf, Time)>,
    /// Digests whose references cannot be known (a damaged link names them, or
    /// could name anything): while any exist, nothing in this repository is safe to sweep.
    pub unknown: bool,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Damage that hides references: what it would have kept is unknown.
    Blocking,
    /// Damage a user should know about, but that cannot make gc delete something needed.
    Damage,
    /// A leftover or an entry foreign to the layout: worth knowing, harmless, left alone.
    Notice,
}

/// Something wrong in the layout, with the path where it was seen.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub path: PathBuf,
    pub message: String,
    pub severity: Severity,
    /// The repository it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// Everything scan read from disk.
#[derive(Debug, Default, Clone)]
pub struct Layout {
    /// The `docker/registry/v2` folder.
    pub v2: PathBuf,
    /// Sorted by digest.
    pub blobs: Vec<Blob>,
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
}

impl Layout {
    pub fn blob(&self, d: &Digest) -> Option<&Blob> {
        self.blobs
            .binary_search_by(|b| b.digest.cmp(d))
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
        self.repos[repo].layers = present;
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
        match blobs.binary_search_by(|b| b.digest.cmp(&l.digest)) {
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

/// The outcome of reading one manifest blob.
pub type Loaded = Result<Manifest, String>;
