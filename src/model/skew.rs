//! Clock skew: items of the layout dated ahead of this host's clock. The grace period keeps
//! them whatever their real age, and every age read from them is 0: said once, with the
//! furthest item, so that "modified within 1h" is never read as a fresh push.

use crate::model::digest::Digest;
use crate::model::paths::Paths;
use crate::model::{Finding, FindingKind, Layout, Severity, Time};
use crate::units::human_age;

/// How far ahead an mtime may be before it is skew, not a write that raced the clock read.
pub const SLACK: Time = 300;

/// One notice for every item dated more than `SLACK` ahead of `now`, naming the furthest.
pub fn clock_skew(layout: &Layout, now: Time) -> Option<Finding> {
    let paths = Paths::new(layout.v2.clone());
    let mut count = 0usize;
    let mut furthest: Option<(Time, std::path::PathBuf)> = None;
    let mut see = |mtime: Time, path: &dyn Fn() -> std::path::PathBuf| {
        if mtime > now + SLACK {
            count += 1;
            if furthest.as_ref().is_none_or(|(t, _)| mtime > *t) {
                furthest = Some((mtime, path()));
            }
        }
    };
    for b in layout.blobs.iter() {
        see(b.mtime, &|| paths.blob_data(&b.digest));
    }
    for r in &layout.repos {
        for t in &r.tags {
            if let Some(c) = t.current {
                see(c.mtime, &|| {
                    paths.tag_dir(&r.name, &t.name).join("current/link")
                });
            }
        }
        for rev in &r.revisions {
            see(rev.mtime, &|| {
                paths.revision_dir(&r.name, &rev.digest).join("link")
            });
        }
        // The blob's digest only for the path of the furthest: a spilled blob list is not
        // read once per link.
        for l in &r.layers {
            see(l.mtime, &|| {
                let d = layout.blobs.get(l.blob as usize).map(|b| b.digest);
                paths
                    .layer_dir(&r.name, &d.unwrap_or(Digest([0; 32])))
                    .join("link")
            });
        }
    }
    let (t, path) = furthest?;
    Some(Finding {
        path,
        message: format!(
            "clock skew: {count} item{} dated ahead of this host's clock (this one by {}): the grace period keeps them whatever their age, and their ages read as 0; check the clocks of this host, the registry's and the storage's",
            if count == 1 { " is" } else { "s are" },
            human_age(t - now)
        ),
        severity: Severity::Notice,
        kind: FindingKind::ClockSkew,
        repository: None,
    })
}
