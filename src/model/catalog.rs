//! The parsed manifests of a layout, stored compactly: each reference is a 4-byte index into
//! the layout's sorted blob list, not a 32-byte digest (manifests are the model's largest part).

use super::values::Blob;
use crate::model::digest::Digest;
use crate::model::manifest::Loaded;
use crate::model::manifest::Manifest;
use std::collections::{HashMap, HashSet};

/// A digest by position: below `Layout::blobs.len()` an index into the blob list; from there an
/// index into the catalog's short list of digests that manifests name but the store lacks.
pub type Ref = u32;

const NONE: Ref = Ref::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// `refs[start..start + blobs]` are the blobs, the next `children` the index children.
    start: u32,
    blobs: u32,
    children: u32,
    config: Ref,
    subject: Ref,
}

/// Every manifest blob that a link or an index names, parsed once however many repositories
/// share it; kept inside the layout (`model::Layout`) whose blob list its refs index.
#[derive(Debug, Default, Clone)]
pub struct Manifests {
    /// `Layout::blobs.len()` when built: refs at or past it index `absent`.
    base: u32,
    /// Sorted; parallel to `entries`.
    keys: Vec<Ref>,
    /// `Err(i)`: the blob could not be read as a manifest, for the reason `errors[i]`.
    entries: Vec<Result<Entry, u32>>,
    refs: Vec<Ref>,
    /// Sorted digests named (as keys or references) that are not blobs in the store.
    absent: Vec<Digest>,
    errors: Vec<String>,
    /// References that are not sha256 digests, by manifest; sorted by key.
    problems: Vec<(Ref, Vec<String>)>,
}

/// One parsed manifest, read through the catalog.
#[derive(Clone, Copy)]
pub struct View<'a> {
    blobs: &'a [Blob],
    catalog: &'a Manifests,
    entry: &'a Entry,
    key: Ref,
}

impl Manifests {
    /// Bytes the catalog holds (its lists' capacities): the bounded mode's account.
    pub fn held_bytes(&self) -> u64 {
        use std::mem::size_of_val;
        let strings: usize = self.errors.iter().map(|e| e.capacity() + 24).sum();
        let problems: usize = (self.problems.iter())
            .map(|(_, v)| 32 + v.iter().map(|p| p.capacity() + 24).sum::<usize>())
            .sum();
        (size_of_val(&self.keys[..])
            + self.entries.capacity() * std::mem::size_of::<Result<Entry, u32>>()
            + size_of_val(&self.refs[..])
            + size_of_val(&self.absent[..])
            + strings
            + problems) as u64
    }

    /// Builds the catalog of `loaded` over this blob list (sorted by digest).
    pub fn build(blobs: &[Blob], loaded: impl IntoIterator<Item = (Digest, Loaded)>) -> Manifests {
        let mut b = Builder::new(blobs);
        loaded.into_iter().for_each(|(d, l)| b.add(d, l));
        b.finish()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The ref of a digest that is a blob or that some manifest names.
    pub fn lookup(&self, blobs: &[Blob], d: &Digest) -> Option<Ref> {
        match crate::model::values::position(blobs, d) {
            Ok(i) => Some(i as Ref),
            Err(_) => self
                .absent
                .binary_search(d)
                .ok()
                .map(|i| self.base + i as Ref),
        }
    }

    pub fn digest(&self, blobs: &[Blob], r: Ref) -> Digest {
        match r.checked_sub(self.base) {
            Some(k) if (k as usize) < self.absent.len() => self.absent[k as usize],
            _ => blobs[r as usize].digest,
        }
    }

    /// The manifest at `r`: `None` if it was never loaded, `Err` if it could not be read.
    pub fn at<'a>(&'a self, blobs: &'a [Blob], r: Ref) -> Option<Result<View<'a>, &'a str>> {
        let i = self.keys.binary_search(&r).ok()?;
        Some(match &self.entries[i] {
            Ok(entry) => Ok(View {
                blobs,
                catalog: self,
                entry,
                key: r,
            }),
            Err(e) => Err(self.errors[*e as usize].as_str()),
        })
    }

    /// Every manifest with references that are not sha256 digests.
    pub fn problems<'a>(
        &'a self,
        blobs: &'a [Blob],
    ) -> impl Iterator<Item = (Digest, &'a [String])> + 'a {
        self.problems
            .iter()
            .map(move |(r, p)| (self.digest(blobs, *r), p.as_slice()))
    }
}

impl<'a> View<'a> {
    pub fn blob_refs(&self) -> &'a [Ref] {
        let s = self.entry.start as usize;
        &self.catalog.refs[s..s + self.entry.blobs as usize]
    }
    pub fn child_refs(&self) -> &'a [Ref] {
        let s = (self.entry.start + self.entry.blobs) as usize;
        &self.catalog.refs[s..s + self.entry.children as usize]
    }
    pub fn subject_ref(&self) -> Option<Ref> {
        Some(self.entry.subject).filter(|&r| r != NONE)
    }
    pub fn config_ref(&self) -> Option<Ref> {
        Some(self.entry.config).filter(|&r| r != NONE)
    }
    /// Config, layers, `blobs` and `fsLayers`: blobs this manifest needs.
    pub fn blobs(&self) -> impl Iterator<Item = Digest> + 'a {
        let (c, b) = (self.catalog, self.blobs);
        self.blob_refs().iter().map(move |&r| c.digest(b, r))
    }
    /// Index children: manifests this manifest needs.
    pub fn children(&self) -> impl Iterator<Item = Digest> + 'a {
        let (c, b) = (self.catalog, self.blobs);
        self.child_refs().iter().map(move |&r| c.digest(b, r))
    }
    /// OCI 1.1 `subject`: the manifest this one refers to.
    pub fn subject(&self) -> Option<Digest> {
        self.subject_ref()
            .map(|r| self.catalog.digest(self.blobs, r))
    }
    /// The config blob, where there is one.
    pub fn config(&self) -> Option<Digest> {
        self.config_ref()
            .map(|r| self.catalog.digest(self.blobs, r))
    }
    pub fn problems(&self) -> &'a [String] {
        let p = &self.catalog.problems;
        match p.binary_search_by_key(&self.key, |(k, _)| *k) {
            Ok(i) => &p[i].1,
            Err(_) => &[],
        }
    }
}

/// A digest looked up in the blob list: its index, or itself when the store lacks it.
type Found = Result<Ref, Digest>;

/// A manifest with its digests looked up in the blob list: the costly part of filing it,
/// done by the parsing threads, so that the one thread building the catalog only numbers the
/// few digests that are no blob.
pub struct Prepared {
    key: Found,
    loaded: Result<(Manifest, Vec<Found>), String>,
}

fn find(blobs: &[Blob], d: &Digest) -> Found {
    match crate::model::values::position(blobs, d) {
        Ok(i) => Ok(i as Ref),
        Err(_) => Err(*d),
    }
}

/// Looks up every digest of `loaded` (blobs, children, config, subject, in that order).
pub fn prepare(blobs: &[Blob], d: Digest, loaded: Loaded) -> Prepared {
    Prepared {
        key: find(blobs, &d),
        loaded: loaded.map(|m| {
            let found = (m.blobs.iter().chain(&m.children))
                .chain(m.config.iter())
                .chain(m.subject.iter())
                .map(|d| find(blobs, d))
                .collect();
            (m, found)
        }),
    }
}

/// Collects manifests as they are parsed, so that only their compact form stays in memory.
pub struct Builder<'a> {
    blobs: &'a [Blob],
    /// Digests that are not blobs, in the order first seen: ref `base + i`.
    absent: Vec<Digest>,
    absent_refs: HashMap<Digest, Ref>,
    /// Keys added so far: a bit per blob, and a set for the few that are no blob.
    seen: Vec<u64>,
    seen_absent: HashSet<Ref>,
    keys: Vec<Ref>,
    entries: Vec<Result<Entry, u32>>,
    refs: Vec<Ref>,
    errors: Vec<String>,
    problems: Vec<(Ref, Vec<String>)>,
}

impl<'a> Builder<'a> {
    pub fn new(blobs: &'a [Blob]) -> Builder<'a> {
        Builder {
            blobs,
            absent: Vec::new(),
            absent_refs: HashMap::new(),
            seen: vec![0; blobs.len().div_ceil(64)],
            seen_absent: HashSet::new(),
            keys: Vec::new(),
            entries: Vec::new(),
            refs: Vec::new(),
            errors: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn base(&self) -> Ref {
        self.blobs.len() as Ref
    }

    fn number(&mut self, found: Found) -> Ref {
        let d = match found {
            Ok(r) => return r,
            Err(d) => d,
        };
        let next = self.base() + self.absent.len() as Ref;
        *self.absent_refs.entry(d).or_insert_with(|| {
            self.absent.push(d);
            next
        })
    }

    fn is_seen(&self, r: Ref) -> bool {
        match self.seen.get(r as usize / 64) {
            Some(w) if r < self.base() => w & (1 << (r % 64)) != 0,
            _ => self.seen_absent.contains(&r),
        }
    }

    /// Records key `r`; false if it was there already.
    fn see(&mut self, r: Ref) -> bool {
        if self.is_seen(r) {
            return false;
        }
        if r < self.base() {
            self.seen[r as usize / 64] |= 1 << (r % 64);
        } else {
            self.seen_absent.insert(r);
        }
        true
    }

    /// Whether `d` was added already.
    pub fn contains(&self, d: &Digest) -> bool {
        match crate::model::values::position(self.blobs, d) {
            Ok(i) => self.is_seen(i as Ref),
            Err(_) => self.absent_refs.get(d).is_some_and(|&r| self.is_seen(r)),
        }
    }

    /// Adds one manifest; a digest added twice keeps its first outcome.
    pub fn add(&mut self, d: Digest, loaded: Loaded) {
        self.add_prepared(prepare(self.blobs, d, loaded));
    }

    /// Adds one manifest prepared (looked up) elsewhere, over the same blob list.
    pub fn add_prepared(&mut self, p: Prepared) {
        let key = self.number(p.key);
        if !self.see(key) {
            return;
        }
        let entry = match p.loaded {
            Err(e) => {
                self.errors.push(e);
                Err(self.errors.len() as u32 - 1)
            }
            Ok((m, found)) => Ok(self.compact(key, m, found)),
        };
        self.keys.push(key);
        self.entries.push(entry);
    }

    fn compact(&mut self, key: Ref, m: Manifest, found: Vec<Found>) -> Entry {
        let start = self.refs.len() as u32;
        let listed = m.blobs.len() + m.children.len();
        let mut found = found.into_iter();
        for f in found.by_ref().take(listed) {
            let r = self.number(f);
            self.refs.push(r);
        }
        // Config and subject follow, each only where the manifest has one.
        let mut next = |present: bool| match present.then(|| found.next()).flatten() {
            Some(f) => self.number(f),
            None => NONE,
        };
        let config = next(m.config.is_some());
        let subject = next(m.subject.is_some());
        if !m.problems.is_empty() {
            self.problems.push((key, m.problems));
        }
        Entry {
            start,
            blobs: m.blobs.len() as u32,
            children: m.children.len() as u32,
            config,
            subject,
        }
    }

    pub fn finish(mut self) -> Manifests {
        let base = self.base();
        // Absent refs were handed out in the order seen; renumber them in digest order.
        let mut order: Vec<u32> = (0..self.absent.len() as u32).collect();
        order.sort_unstable_by_key(|&i| self.absent[i as usize]);
        let mut renumber = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            renumber[old as usize] = base + new as Ref;
        }
        let remap = |r: &mut Ref| {
            if *r != NONE && *r >= base {
                *r = renumber[(*r - base) as usize];
            }
        };
        self.refs.iter_mut().for_each(remap);
        self.keys.iter_mut().for_each(remap);
        for e in self.entries.iter_mut().flatten() {
            remap(&mut e.config);
            remap(&mut e.subject);
        }
        self.problems.iter_mut().for_each(|(k, _)| remap(k));
        self.problems.sort_unstable_by_key(|(k, _)| *k);
        let absent: Vec<Digest> = order.iter().map(|&i| self.absent[i as usize]).collect();

        let mut by_key: Vec<u32> = (0..self.keys.len() as u32).collect();
        by_key.sort_unstable_by_key(|&i| self.keys[i as usize]);
        let keys = by_key.iter().map(|&i| self.keys[i as usize]).collect();
        let entries = by_key.iter().map(|&i| self.entries[i as usize]).collect();
        self.refs.shrink_to_fit();
        Manifests {
            base,
            keys,
            entries,
            refs: self.refs,
            absent,
            errors: self.errors,
            problems: self.problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn references_resolve_to_blobs_and_absent_digests() {
        let blobs = blobs(&[1, 3, 5, 10]);
        let index = Manifest {
            blobs: vec![],
            config: None,
            children: vec![dg(10), dg(11)],
            subject: Some(dg(9)),
            problems: vec!["layer has no digest".into()],
        };
        let m = Manifests::build(
            &blobs,
            [
                (dg(12), Ok(index)),
                (
                    dg(10),
                    Ok(Manifest {
                        config: Some(dg(1)),
                        ..image(&[1, 4, 3, 2])
                    }),
                ),
                (dg(11), Err("manifest blob is missing".into())),
                // A second outcome for a digest already added is ignored.
                (dg(10), Err("late".into())),
            ],
        );
        assert_eq!(m.len(), 3);
        let r10 = m.lookup(&blobs, &dg(10)).unwrap();
        assert_eq!(r10, 3);
        let v = m.at(&blobs, r10).unwrap().unwrap();
        assert_eq!(
            v.blobs().collect::<Vec<_>>(),
            vec![dg(1), dg(4), dg(3), dg(2)]
        );
        assert_eq!(v.config(), Some(dg(1)));
        assert_eq!(v.subject(), None);
        assert!(v.problems().is_empty());
        // Absent digests sort after the blobs, in digest order.
        assert_eq!(m.lookup(&blobs, &dg(2)), Some(4));
        assert_eq!(m.lookup(&blobs, &dg(4)), Some(5));
        assert_eq!(m.lookup(&blobs, &dg(7)), None);
        let r12 = m.lookup(&blobs, &dg(12)).unwrap();
        let idx = m.at(&blobs, r12).unwrap().unwrap();
        assert_eq!(idx.children().collect::<Vec<_>>(), vec![dg(10), dg(11)]);
        assert_eq!(idx.subject(), Some(dg(9)));
        assert_eq!(idx.problems(), ["layer has no digest".to_string()]);
        let r11 = m.lookup(&blobs, &dg(11)).unwrap();
        assert_eq!(
            m.at(&blobs, r11).unwrap().err(),
            Some("manifest blob is missing")
        );
        assert!(m.at(&blobs, m.lookup(&blobs, &dg(5)).unwrap()).is_none());
        let problems: Vec<_> = m.problems(&blobs).map(|(d, p)| (d, p.len())).collect();
        assert_eq!(problems, vec![(dg(12), 1)]);
    }
}
