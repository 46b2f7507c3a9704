//! The plan's items: each removal as a value, and the blob and layer link removals held as
//! indices into the scan's blob list (shared, not copied), 8 bytes each instead of a copy.

use crate::model::digest::Digest;
use crate::model::{Blob, BlobList, Name, Names, Time};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagRemoval {
    pub repository: Name,
    pub tag: String,
    pub digest: Option<Digest>,
    pub rule: String,
    /// Seconds since the time the policy counts its age from.
    pub age_seconds: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestRemoval {
    pub repository: Name,
    pub digest: Digest,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobRemoval {
    pub digest: Digest,
    pub size: u64,
    /// Repositories whose layer links or revisions named it: where it came from.
    pub linked_from: Names,
    /// mtime of its data when planned; apply deletes it only if unchanged.
    pub mtime: Time,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRemoval {
    pub repository: Name,
    pub id: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkRemoval {
    pub repository: Name,
    /// The tag whose index holds it, for tag index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub digest: Digest,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    /// Index into the table.
    blob: u32,
    /// Index into the origins.
    origin: u32,
}

/// Blobs a plan removes, in the order they go, each with the repositories it came from.
#[derive(Debug, Clone, Default)]
pub struct PlannedBlobs {
    table: BlobList,
    items: Vec<Item>,
    /// `linked_from` lists: a plan built from a layout starts with none and one entry per
    /// repository (most blobs come from one, so they allocate nothing of their own), then adds
    /// one for each blob linked from several.
    origins: Vec<Names>,
}

/// One planned blob: its record in the table and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct PlannedBlob<'a> {
    pub blob: &'a Blob,
    pub linked_from: &'a Names,
}

impl PlannedBlob<'_> {
    pub fn digest(&self) -> Digest {
        self.blob.digest
    }
    pub fn size(&self) -> u64 {
        self.blob.size
    }
    /// mtime of its data when planned; apply deletes it only if unchanged.
    pub fn mtime(&self) -> Time {
        self.blob.mtime
    }
    pub fn to_removal(&self) -> BlobRemoval {
        BlobRemoval {
            digest: self.blob.digest,
            size: self.blob.size,
            linked_from: self.linked_from.clone(),
            mtime: self.blob.mtime,
        }
    }
}

impl PlannedBlobs {
    /// An empty list over `table`, whose first origins are `origins` (see [`Self::push`]).
    pub fn over(table: BlobList, origins: Vec<Names>) -> PlannedBlobs {
        PlannedBlobs {
            table,
            items: Vec::new(),
            origins,
        }
    }

    /// Adds the table's blob `blob`, from the origin at `origin` (an index given to
    /// [`Self::over`] or returned by [`Self::add_origin`]).
    pub fn push(&mut self, blob: usize, origin: usize) {
        debug_assert!(blob < self.table.len() && origin < self.origins.len());
        self.items.push(Item {
            blob: blob as u32,
            origin: origin as u32,
        });
    }

    /// Adds an origin for the blobs pushed with the index it returns.
    pub fn add_origin(&mut self, names: Names) -> usize {
        self.origins.push(names);
        self.origins.len() - 1
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<PlannedBlob<'_>> {
        self.items
            .get(i)
            .map(|&it| view(&self.table, &self.origins, it))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = PlannedBlob<'_>> + Clone + '_ {
        let (table, origins) = (&self.table, &self.origins);
        self.items.iter().map(move |&it| view(table, origins, it))
    }

    /// Keeps the blobs `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(PlannedBlob<'_>) -> bool) {
        let (table, origins) = (&self.table, &self.origins);
        self.items.retain(|&it| keep(view(table, origins, it)));
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn bytes(&self) -> u64 {
        self.iter().map(|b| b.size()).sum()
    }
}

fn view<'a>(table: &'a [Blob], origins: &'a [Names], it: Item) -> PlannedBlob<'a> {
    PlannedBlob {
        blob: &table[it.blob as usize],
        linked_from: &origins[it.origin as usize],
    }
}

/// A list with its own table (a plan file's, a test's): one origin per blob.
impl FromIterator<BlobRemoval> for PlannedBlobs {
    fn from_iter<I: IntoIterator<Item = BlobRemoval>>(iter: I) -> PlannedBlobs {
        let (mut table, mut origins) = (Vec::new(), Vec::new());
        for b in iter {
            table.push(Blob {
                digest: b.digest,
                size: b.size,
                mtime: b.mtime,
            });
            origins.push(b.linked_from);
        }
        let items = (0..table.len() as u32)
            .map(|i| Item { blob: i, origin: i })
            .collect();
        PlannedBlobs {
            table: table.into(),
            items,
            origins,
        }
    }
}

/// Written as the list of [`BlobRemoval`]s it stands for (the plan file's format).
impl Serialize for PlannedBlobs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(|b| b.to_removal()))
    }
}

impl<'de> Deserialize<'de> for PlannedBlobs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PlannedBlobs, D::Error> {
        Ok(Vec::<BlobRemoval>::deserialize(d)?.into_iter().collect())
    }
}

/// Layer links a plan removes, in the order they go: a repository (by index into the names)
/// and the blob the link names (by index into the table, or into `digests` for a link whose
/// blob is not in the store, and for every link of a list read from a plan file).
#[derive(Debug, Clone, Default)]
pub struct PlannedLinks {
    table: BlobList,
    names: Vec<Name>,
    digests: Vec<Digest>,
    items: Vec<Item>,
}

/// Set in an item's `blob` when it indexes `digests` rather than the table.
const OWN: u32 = 1 << 31;

/// One planned layer link.
#[derive(Debug, Clone, Copy)]
pub struct PlannedLink<'a> {
    pub repository: &'a Name,
    pub digest: &'a Digest,
}

impl PlannedLink<'_> {
    pub fn to_removal(&self) -> LinkRemoval {
        LinkRemoval {
            repository: self.repository.clone(),
            tag: None,
            digest: *self.digest,
        }
    }
}

impl PlannedLinks {
    /// An empty list over `table`, for repositories named `names` (pushed by index).
    pub fn over(table: BlobList, names: Vec<Name>) -> PlannedLinks {
        PlannedLinks {
            table,
            names,
            ..PlannedLinks::default()
        }
    }

    /// Adds repository `repo`'s link to the table's blob `blob`.
    pub fn push_blob(&mut self, repo: usize, blob: usize) {
        debug_assert!(repo < self.names.len() && blob < self.table.len());
        if blob as u64 >= OWN as u64 {
            // Past 2^31 blobs the index would read as one into `digests`: keep the digest.
            return self.push_digest(repo, self.table[blob].digest);
        }
        self.items.push(Item {
            blob: blob as u32,
            origin: repo as u32,
        });
    }

    /// Adds repository `repo`'s link to `digest`, a blob the table does not hold.
    pub fn push_digest(&mut self, repo: usize, digest: Digest) {
        debug_assert!(repo < self.names.len());
        self.digests.push(digest);
        self.items.push(Item {
            blob: OWN | (self.digests.len() - 1) as u32,
            origin: repo as u32,
        });
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = PlannedLink<'_>> + Clone + '_ {
        self.items.iter().map(move |&it| self.view(it))
    }

    /// Keeps the links `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(PlannedLink<'_>) -> bool) {
        let mut items = std::mem::take(&mut self.items);
        items.retain(|&it| keep(self.view(it)));
        self.items = items;
    }

    fn view(&self, it: Item) -> PlannedLink<'_> {
        let digest = match it.blob {
            b if b & OWN != 0 => &self.digests[(b & !OWN) as usize],
            b => &self.table[b as usize].digest,
        };
        PlannedLink {
            repository: &self.names[it.origin as usize],
            digest,
        }
    }
}

/// A list of its own (a plan file's, a test's): each name and digest kept as given.
impl FromIterator<LinkRemoval> for PlannedLinks {
    fn from_iter<I: IntoIterator<Item = LinkRemoval>>(iter: I) -> PlannedLinks {
        let mut links = PlannedLinks::default();
        for l in iter {
            links.names.push(l.repository);
            links.push_digest(links.names.len() - 1, l.digest);
        }
        links
    }
}

/// Written as the list of [`LinkRemoval`]s it stands for (the plan file's format).
impl Serialize for PlannedLinks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(|l| l.to_removal()))
    }
}

impl<'de> Deserialize<'de> for PlannedLinks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PlannedLinks, D::Error> {
        Ok(Vec::<LinkRemoval>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::dg;

    fn removal(n: u8, from: &[&str]) -> BlobRemoval {
        BlobRemoval {
            digest: dg(n),
            size: n as u64,
            linked_from: Names::from(from.iter().map(|&s| s.into()).collect::<Vec<_>>()),
            mtime: n as i64 * 10,
        }
    }

    #[test]
    fn indices_into_a_shared_table_read_back_as_the_removals() {
        let table: BlobList = crate::testutil::blobs(&[1, 2, 3]).into();
        let mut p = PlannedBlobs::over(table.clone(), vec![Names::None, Names::One("a".into())]);
        let both = p.add_origin(Names::from(vec!["a".into(), "b".into()]));
        p.push(2, 1);
        p.push(0, both);
        assert_eq!(table.shares(), 2, "the table is shared, not copied");
        let got: Vec<_> = p
            .iter()
            .map(|b| (b.digest(), b.linked_from.join(",")))
            .collect();
        assert_eq!(got, [(dg(3), "a".to_string()), (dg(1), "a,b".to_string())]);
        p.retain(|b| b.digest() != dg(3));
        assert_eq!(p.len(), 1);
        assert_eq!(p.get(0).map(|b| b.digest()), Some(dg(1)));
    }

    #[test]
    fn a_plan_files_list_round_trips_in_its_format() {
        let p: PlannedBlobs = [removal(5, &["x"]), removal(7, &[])].into_iter().collect();
        let json = serde_json::to_string(&p).unwrap();
        let as_removals = serde_json::to_string(&[removal(5, &["x"]), removal(7, &[])]).unwrap();
        assert_eq!(json, as_removals);
        let back: PlannedBlobs = serde_json::from_str(&json).unwrap();
        assert_eq!(back.bytes(), 12);
        assert_eq!(back.get(1).map(|b| b.mtime()), Some(70));
        assert!(back.get(1).is_some_and(|b| b.linked_from.is_empty()));
    }

    #[test]
    fn links_to_blobs_in_and_out_of_the_table_read_back_in_order() {
        let table: BlobList = crate::testutil::blobs(&[1, 2]).into();
        let mut l = PlannedLinks::over(table, vec!["a".into(), "b".into()]);
        l.push_blob(1, 1);
        l.push_digest(0, dg(9));
        l.push_blob(0, 0);
        let got = |l: &PlannedLinks| -> Vec<(String, Digest)> {
            l.iter()
                .map(|x| (x.repository.to_string(), *x.digest))
                .collect()
        };
        let b = |n: &str, d| (n.to_string(), dg(d));
        assert_eq!(got(&l), [b("b", 2), b("a", 9), b("a", 1)]);
        let json = serde_json::to_string(&l).unwrap();
        let back: PlannedLinks = serde_json::from_str(&json).unwrap();
        assert_eq!(got(&back), got(&l));
        l.retain(|x| *x.digest != dg(9));
        assert_eq!(got(&l), [b("b", 2), b("a", 1)]);
    }
}
