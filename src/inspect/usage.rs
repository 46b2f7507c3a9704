//! Disk usage: what each repository and tag holds, shares, and would free; pure functions of the model.

use crate::model::Rules;
use crate::model::digest::Digest;
use crate::model::mark::{self, RefSet};
use crate::model::{Layout, Time};
use rayon::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct RepoUsage {
    pub name: String,
    pub tags: usize,
    pub manifests: usize,
    /// Distinct blobs its revisions reach (manifests included) that exist in the store.
    pub blobs: usize,
    /// Their apparent size.
    pub bytes: u64,
    /// Reached by no other repository: what deleting the repository would free.
    pub exclusive_bytes: u64,
    pub shared_bytes: u64,
    /// What `gc --delete-untagged` would free of it: blobs it reaches that that run deletes
    /// (reached by no tag anywhere, and older than the grace period).
    pub untagged_bytes: u64,
    /// With a ledger: the latest pull of any of its tags or digests (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pulled: Option<Time>,
    /// With a policy's quota on it: its size, how it counts (`exclusive`, `total`), and the
    /// share of it used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaUse>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuotaUse {
    pub max: u64,
    pub by: &'static str,
    pub used_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagUsage {
    pub tag: String,
    pub digest: Option<Digest>,
    /// Apparent size of every distinct blob the tag reaches.
    pub bytes: u64,
    /// Reached by no other tag of the repository.
    pub exclusive_bytes: u64,
    /// mtime of the tag's current link.
    pub pushed: Option<Time>,
    /// With a ledger: its last pull, by tag or by the digest it names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pulled: Option<Time>,
}

const TAGGED: Rules = Rules::without_grace(true);

/// Indices into `layout.blobs` of the refs that are blobs in the store, sorted.
fn indices(layout: &Layout, set: &RefSet) -> Vec<u32> {
    let mut v: Vec<u32> = set
        .iter()
        .copied()
        .filter(|&r| (r as usize) < layout.blobs.len())
        .collect();
    v.sort_unstable();
    v
}

/// The blobs (indices into `layout.blobs`) `repo`'s revisions reach, sorted.
pub fn reach_of(layout: &Layout, repo: &crate::model::Repo) -> Vec<u32> {
    indices(layout, &mark::tagged_then_all(layout, repo).1.blobs)
}

/// Per blob: how many repositories reach it (saturating at 255).
pub fn reached_by(layout: &Layout, reach: &[Vec<u32>]) -> Vec<u8> {
    let mut by = vec![0u8; layout.blobs.len()];
    for all in reach {
        all.iter()
            .for_each(|&i| by[i as usize] = by[i as usize].saturating_add(1));
    }
    by
}

/// Usage of every repository, in layout order. A blob shared by many repositories counts in
/// each one's `bytes`, and in none one's `exclusive_bytes`. `untagged_goes` says, by index into
/// `layout.blobs`, which blobs `gc --delete-untagged` deletes: that plan, grace included, is the
/// one rule for both the UNTAGGED column and du's summary.
pub fn repositories(layout: &Layout, untagged_goes: &[bool]) -> Vec<RepoUsage> {
    let reach: Vec<Vec<u32>> = (layout.repos.par_iter())
        .map(|repo| reach_of(layout, repo))
        .collect();
    // A byte per blob: only "one repository" against "more" matters.
    let reached_by = reached_by(layout, &reach);
    let size = |i: u32| layout.blobs[i as usize].size;
    layout
        .repos
        .iter()
        .zip(&reach)
        .map(|(repo, all)| {
            let bytes: u64 = all.iter().map(|&i| size(i)).sum();
            let exclusive_bytes = all
                .iter()
                .filter(|&&i| reached_by[i as usize] == 1)
                .map(|&i| size(i))
                .sum();
            let untagged_bytes = all
                .iter()
                .filter(|&&i| untagged_goes.get(i as usize).copied().unwrap_or(false))
                .map(|&i| size(i))
                .sum();
            RepoUsage {
                name: repo.name.to_string(),
                tags: repo.tags.len(),
                manifests: repo.revisions.len(),
                blobs: all.len(),
                bytes,
                exclusive_bytes,
                shared_bytes: bytes - exclusive_bytes,
                untagged_bytes,
                last_pulled: None,
                quota: None,
            }
        })
        .collect()
}

/// `untagged_goes` for `repositories`: by index into `layout.blobs`, whether it is one of
/// `deleted` (the blobs a `gc --delete-untagged` plan deletes).
pub fn blobs_among<'a>(layout: &Layout, deleted: impl Iterator<Item = &'a Digest>) -> Vec<bool> {
    let mut goes = vec![false; layout.blobs.len()];
    for d in deleted {
        if let Ok(i) = crate::model::values::position(&layout.blobs, d) {
            goes[i] = true;
        }
    }
    goes
}

/// Usage of every tag of one repository; `None` when there is no such repository.
pub fn tags(layout: &Layout, repo: &str) -> Option<Vec<TagUsage>> {
    let repo = layout.repos.iter().find(|r| &*r.name == repo)?;
    let reach: Vec<Vec<u32>> = (0..repo.tags.len())
        .into_par_iter()
        .map(|t| {
            let (m, _) = mark::mark_repo(layout, repo, |i| i == t, &[], &TAGGED);
            indices(layout, &m.blobs)
        })
        .collect();
    let mut count = vec![0u8; layout.blobs.len()];
    for r in &reach {
        r.iter()
            .for_each(|&i| count[i as usize] = count[i as usize].saturating_add(1));
    }
    let size = |i: u32| layout.blobs[i as usize].size;
    Some(
        repo.tags
            .iter()
            .zip(&reach)
            .map(|(tag, r)| TagUsage {
                tag: tag.name.clone(),
                digest: tag.current.map(|c| c.digest),
                bytes: r.iter().map(|&i| size(i)).sum(),
                exclusive_bytes: (r.iter())
                    .filter(|&&i| count[i as usize] == 1)
                    .map(|&i| size(i))
                    .sum(),
                pushed: tag.current.map(|c| c.mtime),
                last_pulled: None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Blob, Link, Repo, Tag};
    use crate::testutil::*;

    fn repo(name: &str, tags: &[(&str, u8)], revisions: &[u8]) -> Repo {
        Repo {
            name: name.into(),
            tags: tags
                .iter()
                .map(|&(t, d)| Tag {
                    name: t.into(),
                    current: Some(Link {
                        digest: dg(d),
                        mtime: 7,
                    }),
                    index: vec![],
                })
                .collect(),
            revisions: revisions
                .iter()
                .map(|&d| Link {
                    digest: dg(d),
                    mtime: 0,
                })
                .collect(),
            ..Repo::default()
        }
    }

    /// Sizes are powers of two so every sum names its members.
    /// a: t1 -> 10 (1, 2), untagged 11 (3, 4); b: u -> 20 (2, 5), untagged 21 (4, 6).
    fn world() -> (Layout, Raw) {
        let mut m = Raw::new();
        m.insert(dg(10), Ok(image(&[1, 2])));
        m.insert(dg(11), Ok(image(&[3, 4])));
        m.insert(dg(20), Ok(image(&[2, 5])));
        m.insert(dg(21), Ok(image(&[4, 6])));
        let sizes = [
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 8),
            (5, 16),
            (6, 32),
            (10, 64),
            (11, 128),
            (20, 256),
            (21, 512),
        ];
        let mut blobs: Vec<Blob> = sizes
            .iter()
            .map(|&(d, s)| Blob {
                digest: dg(d),
                size: s,
                mtime: 0,
            })
            .collect();
        blobs.sort_by_key(|b| b.digest);
        let repos = vec![
            repo("a", &[("t1", 10)], &[10, 11]),
            repo("b", &[("u", 20)], &[20, 21]),
        ];
        (
            Layout {
                blobs: blobs.into(),
                repos,
                ..Layout::default()
            },
            m,
        )
    }

    /// `repositories` with the UNTAGGED column as `gc --delete-untagged` under `rules` has it.
    fn usage(l: &Layout, rules: &Rules) -> Vec<RepoUsage> {
        let (plan, _) = crate::pipeline::decide(l, None, rules, 1_000);
        repositories(
            l,
            &blobs_among(l, plan.blobs.iter().map(|b| &b.blob.digest)),
        )
    }

    #[test]
    fn repository_sizes_against_hand_sums() {
        let (l, m) = world();
        let u = usage(&cat(&l, &m), &Rules::without_grace(true));
        // a reaches 1,2,3,4,10,11 = 1+2+4+8+64+128; exclusive: all but 2 and 4 (shared with b).
        assert_eq!(u[0].bytes, 207);
        assert_eq!(u[0].exclusive_bytes, 207 - 2 - 8);
        assert_eq!(u[0].shared_bytes, 10);
        // Untagged-only and tagged nowhere: 3, 4 and 11 (4 is b's untagged too, tagged nowhere).
        assert_eq!(u[0].untagged_bytes, 4 + 8 + 128);
        assert_eq!(u[0].blobs, 6);
        assert_eq!(u[1].bytes, 2 + 16 + 8 + 32 + 256 + 512);
        assert_eq!(u[1].untagged_bytes, 8 + 32 + 512);
    }

    #[test]
    fn the_untagged_column_keeps_what_the_grace_period_keeps() {
        let (mut l, m) = world();
        // Blob 3 (4 bytes) was written within the grace period; so was b's untagged manifest
        // 21, which keeps everything it reaches (4, 6 and itself).
        for b in l.blobs.make_mut().iter_mut() {
            if b.digest == dg(3) || b.digest == dg(21) {
                b.mtime = 990;
            }
        }
        l.repos[1].revisions[1].mtime = 990;
        let rules = Rules {
            young_from: Some(900),
            ..Rules::without_grace(true)
        };
        let u = usage(&cat(&l, &m), &rules);
        assert_eq!(
            u[0].untagged_bytes, 128,
            "only 11 goes of a's untagged blobs"
        );
        assert_eq!(u[1].untagged_bytes, 0, "b's untagged manifest is young");
    }

    #[test]
    fn tag_sizes_and_exclusive_within_the_repository() {
        let (mut l, mut m) = world();
        l.repos[0].tags.push(Tag {
            name: "t2".into(),
            current: Some(Link {
                digest: dg(11),
                mtime: 9,
            }),
            index: vec![],
        });
        m.insert(dg(11), Ok(image(&[2, 3])));
        let t = tags(&cat(&l, &m), "a").unwrap();
        assert_eq!(t[0].bytes, 64 + 1 + 2);
        assert_eq!(t[0].exclusive_bytes, 64 + 1);
        assert_eq!(t[1].bytes, 128 + 2 + 4);
        assert_eq!(t[1].exclusive_bytes, 128 + 4);
        assert!(tags(&cat(&l, &m), "nope").is_none());
    }
}
