//! Reachability: which manifests and blobs each repository needs, from its roots.

use crate::digest::Digest;
use crate::model::{Layout, Manifests, Repo, Time};
use crate::policy::Decisions;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy)]
pub struct MarkOptions {
    /// Untagged revisions are not roots.
    pub delete_untagged: bool,
    /// Anything whose mtime is at or after this is young: a root of its own (grace).
    pub cutoff: Time,
}

/// What one repository's walk reached: full sets, for callers that look at one repository.
#[derive(Debug, Default, Clone)]
pub struct Reach {
    /// Manifests reached; a revision not in here may go.
    pub manifests: HashSet<Digest>,
    /// Every blob reached: manifests, configs, layers.
    pub blobs: HashSet<Digest>,
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
    /// Parallel to `Repo::layers`: the repository still needs the blob.
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
/// `delete_untagged`, and (grace) revisions and layer links younger than the cutoff.
pub fn mark(
    layout: &Layout,
    manifests: &Manifests,
    decisions: &Decisions,
    opts: MarkOptions,
) -> Marks {
    use rayon::prelude::*;
    let index = |d: &Digest| {
        layout
            .blobs
            .binary_search_by(|b| b.digest.cmp(d))
            .ok()
            .map(|i| i as u32)
    };
    // Each repository's sets shrink to flags and blob indices before the next is walked.
    let per_repo: Vec<(RepoMarks, Vec<u32>, Vec<u32>)> = layout
        .repos
        .par_iter()
        .enumerate()
        .map(|(i, repo)| {
            let (reach, without) = mark_repo(repo, manifests, |t| decisions.keeps(i, t), opts);
            let marks = RepoMarks {
                revisions: repo
                    .revisions
                    .iter()
                    .map(|r| reach.manifests.contains(&r.digest))
                    .collect(),
                layers: repo
                    .layers
                    .iter()
                    .map(|l| reach.blobs.contains(&l.digest))
                    .collect(),
                manifests_by_grace: reach.manifests_by_grace,
                unreadable: reach.unreadable,
            };
            let with: Vec<u32> = reach.blobs.iter().filter_map(index).collect();
            let without: Vec<u32> = without.iter().filter_map(index).collect();
            (marks, with, without)
        })
        .collect();
    let mut marks = Marks {
        repos: Vec::with_capacity(per_repo.len()),
        blobs: BlobSet::new(layout.blobs.len()),
        blobs_without_grace: BlobSet::new(layout.blobs.len()),
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

/// Marks one repository; also returns the blobs reached without grace roots.
pub fn mark_repo(
    repo: &Repo,
    manifests: &Manifests,
    keeps_tag: impl Fn(usize) -> bool,
    opts: MarkOptions,
) -> (Reach, HashSet<Digest>) {
    // OCI referrers live in the repository of their subject.
    let mut referrers: HashMap<Digest, Vec<Digest>> = HashMap::new();
    for rev in &repo.revisions {
        if let Some(Ok(m)) = manifests.get(&rev.digest)
            && let Some(subject) = m.subject
        {
            referrers.entry(subject).or_default().push(rev.digest);
        }
    }
    let mut walk = Walk {
        manifests,
        referrers: &referrers,
        marks: Reach::default(),
    };

    let tag_roots = repo
        .tags
        .iter()
        .enumerate()
        .filter(|(i, _)| keeps_tag(*i))
        .filter_map(|(_, t)| t.current.map(|c| c.digest));
    walk.reach(tag_roots);
    if !opts.delete_untagged {
        walk.reach(repo.revisions.iter().map(|r| r.digest));
    }
    let without_grace = walk.marks.blobs.clone();
    let before = walk.marks.manifests.len();

    walk.reach(
        repo.revisions
            .iter()
            .filter(|r| r.mtime >= opts.cutoff)
            .map(|r| r.digest),
    );
    for l in repo.layers.iter().filter(|l| l.mtime >= opts.cutoff) {
        walk.marks.blobs.insert(l.digest);
    }
    walk.marks.manifests_by_grace = walk.marks.manifests.len() - before;
    (walk.marks, without_grace)
}

struct Walk<'a> {
    manifests: &'a Manifests,
    referrers: &'a HashMap<Digest, Vec<Digest>>,
    marks: Reach,
}

impl Walk<'_> {
    fn reach(&mut self, roots: impl IntoIterator<Item = Digest>) {
        let mut stack: Vec<Digest> = roots.into_iter().collect();
        while let Some(d) = stack.pop() {
            if !self.marks.manifests.insert(d) {
                continue;
            }
            self.marks.blobs.insert(d);
            match self.manifests.get(&d) {
                Some(Ok(m)) => {
                    self.marks.blobs.extend(m.blobs.iter().copied());
                    stack.extend(m.children.iter().copied());
                }
                _ => self.marks.unreadable.push(d),
            }
            if let Some(refs) = self.referrers.get(&d) {
                stack.extend(refs.iter().copied());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Kind, Manifest};
    use crate::model::Tag;
    use crate::testutil::*;

    fn tag(name: &str, n: u8) -> Tag {
        Tag {
            name: name.into(),
            current: Some(link(n, 0)),
            index: vec![dg(n)],
        }
    }

    const OLD: MarkOptions = MarkOptions {
        delete_untagged: true,
        cutoff: 1000,
    };

    /// 10: image(1,2) tagged; 20: index of 21, 22 tagged; 21: image(3); 22: image(4);
    /// 30: untagged image(5); 40: referrer of 10 with blob 6; 50: referrer of 30 with blob 7.
    fn fixture() -> (Repo, Manifests) {
        let mut m = Manifests::new();
        m.insert(dg(10), Ok(image(&[1, 2])));
        m.insert(
            dg(20),
            Ok(Manifest {
                kind: Kind::Index,
                blobs: vec![],
                config: None,
                children: vec![dg(21), dg(22)],
                subject: None,
                problems: vec![],
            }),
        );
        m.insert(dg(21), Ok(image(&[3])));
        m.insert(dg(22), Ok(image(&[4])));
        m.insert(dg(30), Ok(image(&[5])));
        m.insert(
            dg(40),
            Ok(Manifest {
                subject: Some(dg(10)),
                ..image(&[6])
            }),
        );
        m.insert(
            dg(50),
            Ok(Manifest {
                subject: Some(dg(30)),
                ..image(&[7])
            }),
        );
        let repo = Repo {
            name: "r".into(),
            tags: vec![tag("a", 10), tag("multi", 20)],
            revisions: [10, 20, 21, 22, 30, 40, 50]
                .iter()
                .map(|&n| link(n, 0))
                .collect(),
            ..Repo::default()
        };
        (repo, m)
    }

    fn sorted(s: &HashSet<Digest>) -> Vec<u8> {
        let mut v: Vec<u8> = s.iter().map(|d| d.0[0]).collect();
        v.sort();
        v
    }

    #[test]
    fn untagged_mode_keeps_index_children_and_referrers() {
        let (repo, m) = fixture();
        let (marks, _) = mark_repo(&repo, &m, |_| true, OLD);
        assert_eq!(sorted(&marks.manifests), vec![10, 20, 21, 22, 40]);
        assert_eq!(
            sorted(&marks.blobs),
            vec![1, 2, 3, 4, 6, 10, 20, 21, 22, 40]
        );
        assert!(marks.unreadable.is_empty());
    }

    #[test]
    fn plain_mode_keeps_every_revision() {
        let (repo, m) = fixture();
        let opts = MarkOptions {
            delete_untagged: false,
            ..OLD
        };
        let (marks, _) = mark_repo(&repo, &m, |_| true, opts);
        assert_eq!(sorted(&marks.manifests), vec![10, 20, 21, 22, 30, 40, 50]);
        assert!(marks.blobs.contains(&dg(5)) && marks.blobs.contains(&dg(7)));
    }

    #[test]
    fn a_dropped_tag_is_no_root() {
        let (repo, m) = fixture();
        let (marks, _) = mark_repo(&repo, &m, |i| i != 0, OLD);
        assert_eq!(sorted(&marks.manifests), vec![20, 21, 22]);
    }

    #[test]
    fn grace_roots_are_counted_apart() {
        let (mut repo, m) = fixture();
        repo.revisions
            .iter_mut()
            .find(|r| r.digest == dg(30))
            .unwrap()
            .mtime = 5000;
        repo.layers.push(link(99, 5000));
        repo.layers.push(link(98, 10));
        let (marks, without) = mark_repo(&repo, &m, |_| true, OLD);
        // 30 is young; its referrer 50 comes with it.
        assert!(marks.manifests.contains(&dg(30)) && marks.manifests.contains(&dg(50)));
        assert_eq!(marks.manifests_by_grace, 2);
        assert!(marks.blobs.contains(&dg(5)) && marks.blobs.contains(&dg(99)));
        assert!(!marks.blobs.contains(&dg(98)));
        assert!(!without.contains(&dg(5)) && !without.contains(&dg(99)));
    }

    #[test]
    fn unreadable_manifests_are_reported() {
        let (repo, mut m) = fixture();
        m.insert(dg(21), Err("not valid JSON".into()));
        m.remove(&dg(22));
        let (marks, _) = mark_repo(&repo, &m, |_| true, OLD);
        let mut u = marks.unreadable.clone();
        u.sort();
        assert_eq!(u, vec![dg(21), dg(22)]);
    }

    #[test]
    fn cycles_terminate() {
        let mut m = Manifests::new();
        m.insert(
            dg(1),
            Ok(Manifest {
                kind: Kind::Index,
                blobs: vec![],
                config: None,
                children: vec![dg(2)],
                subject: Some(dg(2)),
                problems: vec![],
            }),
        );
        m.insert(
            dg(2),
            Ok(Manifest {
                kind: Kind::Index,
                blobs: vec![],
                config: None,
                children: vec![dg(1)],
                subject: Some(dg(1)),
                problems: vec![],
            }),
        );
        let repo = Repo {
            name: "r".into(),
            tags: vec![tag("t", 1)],
            revisions: vec![link(1, 0), link(2, 0)],
            ..Repo::default()
        };
        let (marks, _) = mark_repo(&repo, &m, |_| true, OLD);
        assert_eq!(sorted(&marks.manifests), vec![1, 2]);
    }
}
