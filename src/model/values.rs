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

#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Blob {
    pub digest: Digest,
    /// Apparent size of `data`.
    pub size: u64,
    /// mtime of `data`.
    pub mtime: Time,
}

const _: () = assert!(std::mem::size_of::<Blob>() == 48);
// Safety: a digest's 32 bytes, then two 8-byte integers: repr(C), no padding, no pointers, and
// any bits are a value.
unsafe impl crate::spill::Plain for Blob {}

/// Where `d` is in `blobs` (sorted by digest), or where it would go: `binary_search`'s answer,
/// found by interpolation first. A sha256 is uniform, so a guess from the first 8 bytes lands
/// within a few pages of the digest, and the search touches those pages rather than the ~10
/// spread over the list a binary search reads: what keeps a spilled list's lookups from paging.
/// Three rounds at most, then a binary search of what is left: never worse than O(log n),
/// whatever the names (a forged layout need not be uniform).
pub fn position(blobs: &[Blob], d: &Digest) -> Result<usize, usize> {
    let key = |d: &Digest| u64::from_be_bytes(d.0[..8].try_into().unwrap_or_default());
    let k = key(d);
    let (mut lo, mut hi) = (0, blobs.len());
    for _ in 0..3 {
        if hi - lo <= 16 {
            break;
        }
        let (a, b) = (key(&blobs[lo].digest), key(&blobs[hi - 1].digest));
        if k <= a || k >= b {
            break;
        }
        let span = (hi - 1 - lo) as u128;
        let g = lo + ((k - a) as u128 * span / (b - a) as u128) as usize;
        // Gallop away from the guess until the digest is bracketed: steps 1, 2, 4...
        if blobs[g].digest < *d {
            let mut step = 1;
            lo = g + 1;
            while g + step < hi && blobs[g + step].digest < *d {
                lo = g + step + 1;
                step *= 2;
            }
            hi = hi.min(g + step + 1);
        } else {
            let mut step = 1;
            hi = g + 1;
            while step <= g - lo && blobs[g - step].digest >= *d {
                hi = g - step + 1;
                step *= 2;
            }
            lo = lo.max(g.saturating_sub(step));
        }
    }
    match blobs[lo..hi].binary_search_by(|b| b.digest.cmp(d)) {
        Ok(i) => Ok(lo + i),
        Err(i) => Err(lo + i),
    }
}

/// The scan's blobs, sorted by digest; shared by the model and every plan made from it (a plan
/// names its blobs by index into this list rather than copying them). Held in memory, or in a
/// spill file in the bounded mode; a slice either way.
#[derive(Debug, Clone, Default)]
pub struct BlobList(std::sync::Arc<crate::spill::List<Blob>>);

impl std::ops::Deref for BlobList {
    type Target = [Blob];
    fn deref(&self) -> &[Blob] {
        &self.0
    }
}

impl From<Vec<Blob>> for BlobList {
    fn from(v: Vec<Blob>) -> BlobList {
        BlobList(std::sync::Arc::new(v.into()))
    }
}

impl From<crate::spill::List<Blob>> for BlobList {
    fn from(l: crate::spill::List<Blob>) -> BlobList {
        BlobList(std::sync::Arc::new(l))
    }
}

impl BlobList {
    /// The list to change (tests, and the layouts a run re-reads): copied first if shared or
    /// spilled.
    pub fn make_mut(&mut self) -> &mut Vec<Blob> {
        std::sync::Arc::make_mut(&mut self.0).to_mut()
    }

    /// How many hold this list (the model and the plans made from it).
    pub fn shares(&self) -> usize {
        std::sync::Arc::strong_count(&self.0)
    }

    /// Whether the list is on disk (the bounded mode).
    pub fn is_spilled(&self) -> bool {
        self.0.is_spilled()
    }
}

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
// Safety: two integers packed without padding; any bits are a value.
unsafe impl crate::spill::Plain for LayerLink {}

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
    use super::{Blob, FindingKind, Name, Names, position};
    use crate::model::digest::Digest;

    #[test]
    fn position_answers_as_binary_search_does_on_uniform_and_forged_lists() {
        use sha2::Digest as _;
        let blob = |d: Digest| Blob {
            digest: d,
            size: 0,
            mtime: 0,
        };
        let hash = |i: u64| Digest(sha2::Sha256::digest(i.to_le_bytes()).into());
        // Forged names: clustered at both ends, runs sharing 8-byte heads, a flat stretch.
        let forged = |i: u64| {
            let mut d = [0u8; 32];
            let head: u64 = match i % 4 {
                0 => i / 4,
                1 => u64::MAX - i,
                2 => 1 << 40,
                _ => i * i * 7919,
            };
            d[..8].copy_from_slice(&head.to_be_bytes());
            d[8..16].copy_from_slice(&i.to_be_bytes());
            Digest(d)
        };
        for n in [0, 1, 2, 15, 16, 17, 100, 5000] {
            for make in [&hash as &dyn Fn(u64) -> Digest, &forged] {
                let mut v: Vec<Blob> = (0..n).map(|i| blob(make(i * 2))).collect();
                v.sort_by_key(|b| b.digest);
                v.dedup_by_key(|b| b.digest);
                let probes = (0..n * 2 + 3)
                    .map(&make)
                    .chain([Digest([0; 32]), Digest([255; 32])]);
                for d in probes {
                    let want = v.binary_search_by(|b| b.digest.cmp(&d));
                    let got = position(&v, &d);
                    match (want, got) {
                        (Ok(_), Ok(i)) => assert_eq!(v[i].digest, d, "n {n}"),
                        _ => assert_eq!(got, want, "n {n}, {d}"),
                    }
                }
            }
        }
    }

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
