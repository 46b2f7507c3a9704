//! The plain values of the model, that everything above it is built from: moments, blobs,
//! links and findings.

use crate::model::digest::Digest;
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
