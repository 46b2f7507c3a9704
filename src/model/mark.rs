//! Reachability: which manifests and blobs each repository needs, from its roots.

use crate::model::Decisions;
use crate::model::catalog::Ref;
use crate::model::digest::Digest;
use crate::model::walk;
use crate::model::{Layout, Repo, Rules};
use std::borrow::Cow;

/// A set of refs. Refs are indices this program hands out, not input, so no attacker chooses
/// them: Fx's one multiply per insert, where SipHash costs several rounds and inserts are most
/// of a walk.
pub type RefSet = rustc_hash::FxHashSet<Ref>;
type RefMap<V> = rustc_hash::FxHashMap<Ref, V>;

/// What one repository's walk reached, as refs (see [`Ref`]): full sets, for callers that look
/// at one repository.
#[derive(Debug, Default, Clone)]
pub struct Reach {
    /// Manifests reached; a revision not in here may go.
    pub manifests: RefSet,
    /// Every blob reached: manifests, configs, layers (refs past the blob list name absent ones).
    pub blobs: RefSet,
    /// Manifests reached only because something young leads to them.
    pub manifests_by_grace: usize,
    /// Manifests reached that could not be read: what they reference is unknown.
    pub unreadable: Vec<Digest>,
}

/// What gc keeps of one repository's walk: a flag per revision and per layer link, so the
/// sets of every repository are never all in memory at once.
#[derive(Debug, Default, Clone)]
pub struct RepoMarks {
    /// Parallel to `Repo::revisions`: reached from a root.
    pub revisions: Vec<bool>,
    /// Parallel to `Layout::layer_links`: the repository still needs the blob.
    pub layers: Vec<bool>,
    pub manifests_by_grace: usize,
    pub unreadable: Vec<Digest>,
}

/// A set of blobs, by their index in `Layout::blobs`: one bit each.
#[derive(Debug, Default, Clone)]
pub struct BlobSet(Vec<u64>);

impl BlobSet {
    pub fn new(len: usize) -> BlobSet {
        BlobSet(vec![0; len.div_ceil(64)])
    }
    pub fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

#[derive(Debug, Default)]
pub struct Marks {
    /// Parallel to `Layout::repos`.
    pub repos: Vec<RepoMarks>,
    /// Blobs some repository needs.
    pub blobs: BlobSet,
    /// The same without the grace roots: what would be kept if nothing were young.
    pub blobs_without_grace: BlobSet,
}

/// Marks every repository. Roots: the tags that the decisions keep, every revision unless
/// `delete_untagged` (then those pushed since `untagged_kept_from`), (grace) revisions and
/// layer links younger than the cutoff, and everything of a repository outside the scope.
pub fn mark(layout: &Layout, decisions: &Decisions, rules: &Rules) -> Marks {
    use rayon::prelude::*;
    let n = layout.blobs.len();
    let reached = |set: &RefSet, d: &Digest| layout.ref_of(d).is_some_and(|r| set.contains(&r));
    // Each repository's sets shrink to flags and blob indices before the next is walked.
    let per_repo: Vec<(RepoMarks, Vec<Ref>, Vec<Ref>)> = layout
        .repos
        .par_iter()
        .enumerate()
        .map(|(i, repo)| {
            let in_scope = decisions.in_scope(i);
            // Outside the run's scope a repository is left as it is: every revision is a root,
            // and so is every layer link.
            let own = Rules {
                delete_untagged: rules.delete_untagged && in_scope,
                ..*rules
            };
            let keeps = |t| decisions.keeps(i, t);
            let (mut reach, mut without) =
                mark_repo(layout, repo, keeps, decisions.pinned(i), &own);
            if !in_scope {
                for l in &repo.layers {
                    reach.blobs.insert(l.blob);
                    without.insert(l.blob);
                }
            }
            let marks = RepoMarks {
                revisions: repo
                    .revisions
                    .iter()
                    .map(|r| reached(&reach.manifests, &r.digest))
                    .collect(),
                // A young link is kept whatever it names: its blob may have arrived after the
                // blob scan (a push in progress), so it is no proof of anything absent.
                layers: (repo.layers.iter())
                    .map(|l| reach.blobs.contains(&l.blob))
                    .chain((repo.layers_absent.iter()).map(|l| {
                        !in_scope || rules.is_young(l.mtime) || reached(&reach.blobs, &l.digest)
                    }))
                    .collect(),
                manifests_by_grace: reach.manifests_by_grace,
                unreadable: reach.unreadable,
            };
            let stored = |set: RefSet| -> Vec<Ref> {
                set.into_iter().filter(|&r| (r as usize) < n).collect()
            };
            (marks, stored(reach.blobs), stored(without))
        })
        .collect();
    let mut marks = Marks {
        repos: Vec::with_capacity(per_repo.len()),
        blobs: BlobSet::new(n),
        blobs_without_grace: BlobSet::new(n),
    };
    for (m, with, without) in per_repo {
        with.iter().for_each(|&i| marks.blobs.insert(i as usize));
        without
            .iter()
            .for_each(|&i| marks.blobs_without_grace.insert(i as usize));
        marks.repos.push(m);
    }
    marks
}

/// What a repository's tags reach, then what all its revisions reach: one walk for both
/// (the second set grows from the first), with no grace roots.
pub fn tagged_then_all(layout: &Layout, repo: &Repo) -> (Reach, Reach) {
    let mut walk = Walk::new(layout, repo);
    let tags: Vec<Digest> = repo
        .tags
        .iter()
        .filter_map(|t| t.current)
        .map(|c| c.digest)
        .collect();
    walk.reach_digests(&tags);
    let tagged = walk.marks.clone();
    let all: Vec<Digest> = repo.revisions.iter().map(|r| r.digest).collect();
    walk.reach_digests(&all);
    (tagged, walk.marks)
}

/// OCI referrers live in the repository of their subject: subject -> its referrers.
fn referrers(layout: &Layout, repo: &Repo) -> RefMap<Vec<Ref>> {
    let mut referrers: RefMap<Vec<Ref>> = RefMap::default();
    for rev in &repo.revisions {
        if let Some(r) = layout.ref_of(&rev.digest)
            && let Some(Ok(m)) = layout.manifest_at(r)
            && let Some(subject) = m.subject_ref()
        {
            referrers.entry(subject).or_default().push(r);
        }
    }
    referrers
}

/// Marks one repository; also returns the blobs reached without grace roots.
pub fn mark_repo(
    layout: &Layout,
    repo: &Repo,
    keeps_tag: impl Fn(usize) -> bool,
    pinned: &[Digest],
    rules: &Rules,
) -> (Reach, RefSet) {
    let mut walk = Walk::new(layout, repo);
    // Manifests in use (or pulled lately) are roots as a kept tag is, whatever -m says.
    walk.reach_digests(pinned);

    let tag_roots: Vec<Digest> = repo
        .tags
        .iter()
        .enumerate()
        .filter(|(i, _)| keeps_tag(*i))
        .filter_map(|(_, t)| t.current.map(|c| c.digest))
        .collect();
    walk.reach_digests(&tag_roots);
    if !rules.delete_untagged {
        let all: Vec<Digest> = repo.revisions.iter().map(|r| r.digest).collect();
        walk.reach_digests(&all);
    } else if let Some(from) = rules.untagged_kept_from {
        // Not old enough to go untagged: kept like a tagged one (not by grace).
        let recent: Vec<Digest> = (repo.revisions.iter())
            .filter(|r| r.mtime >= from)
            .map(|r| r.digest)
            .collect();
        walk.reach_digests(&recent);
    }
    let without_grace = walk.marks.blobs.clone();
    let before = walk.marks.manifests.len();

    let young: Vec<Digest> = repo
        .revisions
        .iter()
        .filter(|r| rules.is_young(r.mtime))
        .map(|r| r.digest)
        .collect();
    walk.reach_digests(&young);
    for l in repo.layers.iter().filter(|l| rules.is_young(l.mtime)) {
        walk.marks.blobs.insert(l.blob);
    }
    walk.marks.manifests_by_grace = walk.marks.manifests.len() - before;
    (walk.marks, without_grace)
}

/// The model's catalog as a graph for [`crate::model::walk`], by ref; with the repository's referrers,
/// or none (a pull of a tag needs no referrer).
pub struct ManifestGraph<'a> {
    layout: &'a Layout,
    referrers: RefMap<Vec<Ref>>,
}

impl<'a> ManifestGraph<'a> {
    pub fn new(layout: &'a Layout, repo: &Repo) -> ManifestGraph<'a> {
        ManifestGraph {
            layout,
            referrers: referrers(layout, repo),
        }
    }

    pub fn without_referrers(layout: &'a Layout) -> ManifestGraph<'a> {
        ManifestGraph {
            layout,
            referrers: RefMap::default(),
        }
    }
}

impl walk::Graph for ManifestGraph<'_> {
    type Id = Ref;
    fn manifest(&self, r: Ref) -> Option<walk::Node<'_, Ref>> {
        match self.layout.manifest_at(r) {
            Some(Ok(m)) => Some(walk::Node {
                blobs: Cow::Borrowed(m.blob_refs()),
                children: Cow::Borrowed(m.child_refs()),
            }),
            _ => None,
        }
    }
    fn referrers(&self, r: Ref) -> Cow<'_, [Ref]> {
        self.referrers
            .get(&r)
            .map_or(Cow::Borrowed(&[][..]), |v| Cow::Borrowed(&v[..]))
    }
}

/// A reach being filled by a walk: a manifest is a blob too.
struct Filling<'a> {
    layout: &'a Layout,
    marks: &'a mut Reach,
}

impl walk::Visit<Ref> for Filling<'_> {
    fn manifest(&mut self, r: Ref) -> bool {
        let new = self.marks.manifests.insert(r);
        if new {
            self.marks.blobs.insert(r);
        }
        new
    }
    fn blob(&mut self, r: Ref) {
        self.marks.blobs.insert(r);
    }
    fn unreadable(&mut self, r: Ref) {
        self.marks.unreadable.push(self.layout.digest(r));
    }
}

struct Walk<'a> {
    catalog: ManifestGraph<'a>,
    marks: Reach,
}

impl<'a> Walk<'a> {
    /// A walk of one repository, which has reached nothing yet.
    fn new(layout: &'a Layout, repo: &Repo) -> Walk<'a> {
        Walk {
            catalog: ManifestGraph::new(layout, repo),
            marks: Reach::default(),
        }
    }

    fn reach_digests(&mut self, roots: &[Digest]) {
        let layout = self.catalog.layout;
        let mut refs = Vec::with_capacity(roots.len());
        for d in roots {
            match layout.ref_of(d) {
                Some(r) => refs.push(r),
                // Neither a blob nor a manifest anything names: nothing can be read from it.
                None => self.marks.unreadable.push(*d),
            }
        }
        let mut filling = Filling {
            layout,
            marks: &mut self.marks,
        };
        walk::walk(&self.catalog, refs, &mut filling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::Manifest;
    use crate::model::{Loaded, Tag};
    use crate::testutil::*;

    fn tag(name: &str, n: u8) -> Tag {
        Tag {
            name: name.into(),
            current: Some(link(n, 0)),
            index: vec![dg(n)],
        }
    }

    const OLD: Rules = Rules {
        delete_untagged: true,
        young_from: Some(1000),
        allow_damage: false,
        uploads_before: None,
        untagged_kept_from: None,
    };

    /// 10: image(1,2) tagged; 20: index of 21, 22 tagged; 21: image(3); 22: image(4);
    /// 30: untagged image(5); 40: referrer of 10 with blob 6; 50: referrer of 30 with blob 7.
    fn fixture() -> (Layout, Vec<(Digest, Loaded)>) {
        let m = vec![
            (dg(10), Ok(image(&[1, 2]))),
            (
                dg(20),
                Ok(Manifest {
                    blobs: vec![],
                    config: None,
                    children: vec![dg(21), dg(22)],
                    subject: None,
                    problems: vec![],
                }),
            ),
            (dg(21), Ok(image(&[3]))),
            (dg(22), Ok(image(&[4]))),
            (dg(30), Ok(image(&[5]))),
            (
                dg(40),
                Ok(Manifest {
                    subject: Some(dg(10)),
                    ..image(&[6])
                }),
            ),
            (
                dg(50),
                Ok(Manifest {
                    subject: Some(dg(30)),
                    ..image(&[7])
                }),
            ),
        ];
        let repo = Repo {
            name: "r".into(),
            tags: vec![tag("a", 10), tag("multi", 20)],
            revisions: [10, 20, 21, 22, 30, 40, 50]
                .iter()
                .map(|&n| link(n, 0))
                .collect(),
            ..Repo::default()
        };
        (
            world(
                repo,
                &[1, 2, 3, 4, 5, 6, 7, 10, 20, 21, 22, 30, 40, 50, 98, 99],
            ),
            m,
        )
    }

    /// A layout of one repository over blobs with these names; manifests are set apart.
    fn world(repo: Repo, blobs: &[u8]) -> Layout {
        Layout {
            blobs: crate::testutil::blobs(blobs).into(),
            repos: vec![repo],
            ..Layout::default()
        }
    }

    fn marked(
        (mut layout, m): (Layout, Vec<(Digest, Loaded)>),
        keeps: impl Fn(usize) -> bool,
        rules: Rules,
    ) -> (Layout, Reach, RefSet) {
        layout.set_manifests(m);
        file_layers(&mut layout);
        let (reach, without) = mark_repo(&layout, &layout.repos[0], keeps, &[], &rules);
        (layout, reach, without)
    }

    fn sorted(l: &Layout, s: &RefSet) -> Vec<u8> {
        let mut v: Vec<u8> = s.iter().map(|&r| l.digest(r).0[0]).collect();
        v.sort();
        v
    }

    #[test]
    fn untagged_mode_keeps_index_children_and_referrers() {
        let (l, marks, _) = marked(fixture(), |_| true, OLD);
        assert_eq!(sorted(&l, &marks.manifests), vec![10, 20, 21, 22, 40]);
        assert_eq!(
            sorted(&l, &marks.blobs),
            vec![1, 2, 3, 4, 6, 10, 20, 21, 22, 40]
        );
        assert!(marks.unreadable.is_empty());
    }

    #[test]
    fn plain_mode_keeps_every_revision() {
        let opts = Rules {
            delete_untagged: false,
            ..OLD
        };
        let (l, marks, _) = marked(fixture(), |_| true, opts);
        assert_eq!(
            sorted(&l, &marks.manifests),
            vec![10, 20, 21, 22, 30, 40, 50]
        );
        let b = sorted(&l, &marks.blobs);
        assert!(b.contains(&5) && b.contains(&7));
    }

    #[test]
    fn one_walk_gives_the_tagged_and_the_full_sets() {
        let (mut layout, m) = fixture();
        layout.set_manifests(m);
        file_layers(&mut layout);
        let repo = &layout.repos[0];
        let (tagged, all) = tagged_then_all(&layout, repo);
        let (t, _) = mark_repo(&layout, repo, |_| true, &[], &OLD);
        let plain = Rules::without_grace(false);
        let (a, _) = mark_repo(&layout, repo, |_| true, &[], &plain);
        assert_eq!(tagged.blobs, t.blobs);
        assert_eq!(tagged.manifests, t.manifests);
        assert_eq!(all.blobs, a.blobs);
        assert_eq!(
            sorted(&layout, &all.manifests),
            vec![10, 20, 21, 22, 30, 40, 50]
        );
        assert!(all.blobs.len() > tagged.blobs.len());
    }

    #[test]
    fn a_dropped_tag_is_no_root() {
        let (l, marks, _) = marked(fixture(), |i| i != 0, OLD);
        assert_eq!(sorted(&l, &marks.manifests), vec![20, 21, 22]);
    }

    #[test]
    fn untagged_manifests_younger_than_the_threshold_stay_and_count_as_no_grace() {
        let (mut layout, m) = fixture();
        let repo = &mut layout.repos[0];
        // 30 (untagged, with its referrer 50) was pushed at 500; 50 itself at 100.
        for r in repo.revisions.iter_mut() {
            r.mtime = if r.digest == dg(30) { 500 } else { 100 };
        }
        let rules = Rules {
            untagged_kept_from: Some(400),
            ..OLD
        };
        let (l, marks, without) = marked((layout.clone(), m.clone()), |_| true, rules);
        let manifests = sorted(&l, &marks.manifests);
        assert!(manifests.contains(&30) && manifests.contains(&50));
        assert_eq!(
            marks.manifests_by_grace, 0,
            "kept by the threshold, not the grace"
        );
        assert!(sorted(&l, &without).contains(&5));
        // Past the threshold, 30 goes, and 50 with it.
        let rules = Rules {
            untagged_kept_from: Some(501),
            ..OLD
        };
        let (l, marks, _) = marked((layout, m), |_| true, rules);
        let manifests = sorted(&l, &marks.manifests);
        assert!(!manifests.contains(&30) && !manifests.contains(&50));
    }

    #[test]
    fn grace_roots_are_counted_apart() {
        let (mut layout, m) = fixture();
        let repo = &mut layout.repos[0];
        repo.revisions
            .iter_mut()
            .find(|r| r.digest == dg(30))
            .unwrap()
            .mtime = 5000;
        repo.layers_absent.push(link(99, 5000));
        repo.layers_absent.push(link(98, 10));
        let (l, marks, without) = marked((layout, m), |_| true, OLD);
        // 30 is young; its referrer 50 comes with it.
        let manifests = sorted(&l, &marks.manifests);
        assert!(manifests.contains(&30) && manifests.contains(&50));
        assert_eq!(marks.manifests_by_grace, 2);
        let blobs = sorted(&l, &marks.blobs);
        assert!(blobs.contains(&5) && blobs.contains(&99));
        assert!(!blobs.contains(&98));
        let without = sorted(&l, &without);
        assert!(!without.contains(&5) && !without.contains(&99));
    }

    #[test]
    fn unreadable_manifests_are_reported() {
        let (mut layout, mut m) = fixture();
        m.retain(|(d, _)| *d != dg(21) && *d != dg(22));
        m.push((dg(21), Err("not valid JSON".into())));
        // 22 was never loaded, and is no blob either.
        layout.blobs.make_mut().retain(|b| b.digest != dg(22));
        let (_, marks, _) = marked((layout, m), |_| true, OLD);
        let mut u = marks.unreadable.clone();
        u.sort();
        assert_eq!(u, vec![dg(21), dg(22)]);
    }

    #[test]
    fn cycles_terminate() {
        let m = vec![
            (
                dg(1),
                Ok(Manifest {
                    blobs: vec![],
                    config: None,
                    children: vec![dg(2)],
                    subject: Some(dg(2)),
                    problems: vec![],
                }),
            ),
            (
                dg(2),
                Ok(Manifest {
                    blobs: vec![],
                    config: None,
                    children: vec![dg(1)],
                    subject: Some(dg(1)),
                    problems: vec![],
                }),
            ),
        ];
        let repo = Repo {
            name: "r".into(),
            tags: vec![tag("t", 1)],
            revisions: vec![link(1, 0), link(2, 0)],
            ..Repo::default()
        };
        let (l, marks, _) = marked((world(repo, &[1, 2]), m), |_| true, OLD);
        assert_eq!(sorted(&l, &marks.manifests), vec![1, 2]);
    }
}
