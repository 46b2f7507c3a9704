//! The model's plain values: links, blobs, findings and their severities and kinds, times.

use crate::model::digest::Digest;
use serde::Serialize;
use std::path::PathBuf;

/// Seconds since the Unix epoch.
pub type Time = i64;

/// A repository's name, shared: the model holds each once and every plan item that names the
/// repository points at it (a million layer links would otherwise each own a copy).
pub type Name = std::sync::Arc<str>;

/// Repository names, most often none or one: those are held inline, with no allocation of their
/// own (a plan of a million blobs keeps one of these per blob).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Names {
    #[default]
    None,
    One(Name),
    Many(Box<[Name]>),
}

impl Names {
    pub fn as_slice(&self) -> &[Name] {
        match self {
            Names::None => &[],
            Names::One(n) => std::slice::from_ref(n),
            Names::Many(v) => v,
        }
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Name> {
        self.as_slice().iter()
    }
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
    pub fn join(&self, sep: &str) -> String {
        self.as_slice().join(sep)
    }
}

impl From<Vec<Name>> for Names {
    fn from(mut v: Vec<Name>) -> Names {
        match v.len() {
            0 => Names::None,
            1 => Names::One(v.remove(0)),
            _ => Names::Many(v.into_boxed_slice()),
        }
    }
}

impl<S: AsRef<str>> PartialEq<[S]> for Names {
    fn eq(&self, other: &[S]) -> bool {
        self.as_slice().len() == other.len()
            && self.iter().zip(other).all(|(a, b)| &**a == b.as_ref())
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for Names {
    fn eq(&self, other: &[S; N]) -> bool {
        *self == other[..]
    }
}

impl serde::Serialize for Names {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(|n| &**n))
    }
}

impl<'de> serde::Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Names, D::Error> {
        Vec::<Name>::deserialize(d).map(Names::from)
    }
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: Digest,
    /// Apparent size of `data`.
    pub size: u64,
    /// mtime of `data`.
    pub mtime: Time,
}

/// The scan's blobs, sorted by digest; shared by the model and every plan made from it (a plan
/// names its blobs by index into this list rather than copying them).
pub type BlobList = std::sync::Arc<Vec<Blob>>;

/// A link file: the digest it names and when it was written.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub digest: Digest,
    pub mtime: Time,
}

/// A layer link whose blob is in the store, by the blob's index in `Layout::blobs`: layer links
/// are as many as blobs, and a 4-byte index is an eighth of a digest. Packed to 12 bytes
/// (16 with the padding an 8-byte mtime would take), so read its fields by value.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
pub struct LayerLink {
    pub blob: u32,
    pub mtime: Time,
}
const _: () = assert!(std::mem::size_of::<LayerLink>() == 12);

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
    /// Something the run did failed (a removal, an eviction, a request): in reports only,
    /// never a scan's finding.
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Blocking => "blocking",
            Severity::Damage => "damage",
            Severity::Notice => "notice",
            Severity::Error => "error",
        })
    }
}

impl Severity {
    /// Damage: what makes a run exit 3.
    pub fn is_damage(self) -> bool {
        matches!(self, Severity::Blocking | Severity::Damage)
    }
}

/// What a finding is about, as a stable machine-readable word (docs/REPORTS.md lists them):
/// scripts match on it, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A symbolic link where the layout has a folder or file.
    Symlink,
    /// A file where the layout has a folder.
    NotAFolder,
    /// A blob's data or a link that is a folder, FIFO or device.
    NotARegularFile,
    /// A folder, file or object that could not be opened, listed, read or stat'ed.
    Unreadable,
    /// An entry that is not part of the registry's layout (left alone).
    Foreign,
    /// A repository folder with nothing in it (a leftover of a deleted repository).
    EmptyRepository,
    /// A tag folder whose name the registry would not accept (kept, never deleted).
    InvalidTagName,
    /// A tag with no `current/link`.
    TagWithoutCurrent,
    /// A link whose content is not `sha256:<hex>`, or cannot be read.
    BadLink,
    /// A link naming another digest than the folder it sits in.
    LinkMismatch,
    /// A layer link naming a blob that is not in the store.
    LinkToMissingBlob,
    /// A layer link no manifest of its repository uses (gc removes it).
    UnusedLayerLink,
    /// An upload whose `startedat` cannot be read.
    BadStartedAt,
    /// A blob whose content does not hash to its name.
    DigestMismatch,
    /// A manifest a repository names that is missing or cannot be parsed.
    UnreadableManifest,
    /// A manifest that parses but says something wrong (a bad reference, a bad media type).
    ManifestProblem,
    /// Something a tag's pull needs that the registry would not find.
    BrokenImage,
    /// An upload started long ago and never finished.
    AbandonedUpload,
    /// A blob folder without data, or a link folder without a link (left by a delete).
    EmptyFolder,
    /// A removal the sweep tried and could not make (in reports only).
    SweepFailed,
    /// The registry caches blob descriptors in memory: restart it before the next push.
    RegistryRestartNeeded,
    /// Only a root was given: the registry's cache, if any, may need a restart.
    RegistryCacheUnknown,
    /// The registry's Redis cache could not be reached.
    RegistryCacheUnreachable,
    /// Evicting from the registry's Redis cache failed part-way.
    RegistryCacheEvictionFailed,
    /// The live registry still answers for swept items (`--registry-url`).
    RegistryClaimsSwept,
    /// A killed run's pending-eviction journal: the cache may claim what that run swept.
    RegistryCachePending,
    /// A request to the live registry got no usable answer.
    RegistryProbeFailed,
    /// An image in use (`--keep-images`, `protect.images_file`) names nothing in the registry.
    ImageNotFound,
    /// Items dated ahead of this host's clock.
    ClockSkew,
    /// A run was killed mid-sweep: what it removed, found by the next run (its sweep journal).
    SweepKilled,
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.word())
    }
}

impl FindingKind {
    /// Every kind, for the documentation's test.
    pub const ALL: [FindingKind; 30] = [
        FindingKind::Symlink,
        FindingKind::NotAFolder,
        FindingKind::NotARegularFile,
        FindingKind::Unreadable,
        FindingKind::Foreign,
        FindingKind::EmptyRepository,
        FindingKind::InvalidTagName,
        FindingKind::TagWithoutCurrent,
        FindingKind::BadLink,
        FindingKind::LinkMismatch,
        FindingKind::LinkToMissingBlob,
        FindingKind::UnusedLayerLink,
        FindingKind::BadStartedAt,
        FindingKind::DigestMismatch,
        FindingKind::UnreadableManifest,
        FindingKind::ManifestProblem,
        FindingKind::BrokenImage,
        FindingKind::AbandonedUpload,
        FindingKind::EmptyFolder,
        FindingKind::SweepFailed,
        FindingKind::RegistryRestartNeeded,
        FindingKind::RegistryCacheUnknown,
        FindingKind::RegistryCacheUnreachable,
        FindingKind::RegistryCacheEvictionFailed,
        FindingKind::RegistryClaimsSwept,
        FindingKind::RegistryCachePending,
        FindingKind::RegistryProbeFailed,
        FindingKind::ImageNotFound,
        FindingKind::ClockSkew,
        FindingKind::SweepKilled,
    ];

    /// A finding about the live registry beside the storage (its cache, what it claims).
    pub fn is_registry(self) -> bool {
        matches!(
            self,
            FindingKind::RegistryRestartNeeded
                | FindingKind::RegistryCacheUnknown
                | FindingKind::RegistryCacheUnreachable
                | FindingKind::RegistryCacheEvictionFailed
                | FindingKind::RegistryClaimsSwept
                | FindingKind::RegistryCachePending
                | FindingKind::RegistryProbeFailed
        )
    }

    /// The word JSON reports carry (`unused_layer_link`).
    pub fn word(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Something wrong in the layout, with the path where it was seen.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub path: PathBuf,
    pub message: String,
    pub severity: Severity,
    pub kind: FindingKind,
    /// The repository it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::{FindingKind, Name, Names};

    #[test]
    fn every_finding_kind_is_documented() {
        let doc = include_str!("../../docs/REPORTS.md");
        for k in FindingKind::ALL {
            let row = format!("| `{}` |", k.word());
            assert!(doc.contains(&row), "docs/REPORTS.md lacks the kind {row}");
        }
    }

    #[test]
    fn names_read_and_write_as_the_list_of_strings_they_were() {
        for list in [vec![], vec!["a"], vec!["a", "b/c"]] {
            let names = Names::from(list.iter().map(|&n| Name::from(n)).collect::<Vec<_>>());
            assert_eq!(names, list[..]);
            let json = serde_json::to_string(&names).unwrap();
            assert_eq!(json, serde_json::to_string(&list).unwrap());
            assert_eq!(serde_json::from_str::<Names>(&json).unwrap(), names);
        }
        assert!(matches!(Names::from(vec![Name::from("a")]), Names::One(_)));
        assert_ne!(Names::from(vec![Name::from("a")]), ["b"]);
    }
}
