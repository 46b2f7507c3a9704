//! The in-memory model of a registry layout that scan builds and the pure stages read.

use crate::digest::Digest;
use crate::manifest::Manifest;
use serde::Serialize;
use std::collections::HashMap;
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
    /// Bytes allocated on disk (sparse files take less than their size).
    pub allocated: u64,
}

/// A link file: the digest it names and when it was written.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub digest: Digest,
    pub mtime: Time,
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    /// `current/link`; `None` when it is missing or damaged (a finding says which).
    pub current: Option<Link>,
    /// Digests under `index/sha256/`: every manifest this tag ever named.
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
    /// `_layers/sha256/<hex>/link`, named by the folder.
    pub layers: Vec<Link>,
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
#[derive(Debug, Default)]
pub struct Layout {
    /// The `docker/registry/v2` folder.
    pub v2: PathBuf,
    /// Sorted by digest.
    pub blobs: Vec<Blob>,
    /// Blob folders without `data`, with their mtime.
    pub empty_blob_dirs: Vec<(Digest, Time)>,
    /// Sorted by name.
    pub repos: Vec<Repo>,
    pub findings: Vec<Finding>,
    /// Items a killed sweep had taken out of the registry's sight but not yet deleted.
    pub staging: Vec<PathBuf>,
}

impl Layout {
    pub fn blob(&self, d: &Digest) -> Option<&Blob> {
        self.blobs
            .binary_search_by(|b| b.digest.cmp(d))
            .ok()
            .map(|i| &self.blobs[i])
    }

    pub fn total_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// The outcome of reading one manifest blob.
pub type Loaded = Result<Manifest, String>;

/// Every manifest blob that a link or an index names, parsed once however many repositories share it.
pub type Manifests = HashMap<Digest, Loaded>;
