//! What is used, as the policy sees it: the images in use (`--keep-images`, `protect.images_file`)
//! and the pull ledger, resolved in a layout into protected tags and manifests, and the
//! ledger's refusals where it cannot answer for the time a rule asks about.

use super::{Policy, Rule};
use crate::model::Layout;
use crate::model::Time;
use crate::model::coverage::{Ask, Expect};
use crate::model::duration::Span;
use crate::model::inuse::{self, Images, Protection};
use crate::model::pulls::{PullHistory, stamp};
use crate::units::human_age;

/// The run's inputs about use, besides the policy itself.
#[derive(Debug, Clone, Default)]
pub struct Used {
    /// `--keep-images` files, read.
    pub images: Images,
    /// `--registry-host`: the names of this registry; empty: every host.
    pub hosts: Vec<String>,
    /// `--ledger`, read.
    pub pulls: Option<PullHistory>,
    /// `--ledger-lag`: how far before now the ledger may end.
    pub max_lag: Span,
    /// `--expect-instances`: the registry instances that must have delivered.
    pub expect: Expect,
}

impl Used {
    /// The images in use: `--keep-images` and the policy's `protect.images_file` together.
    pub fn images_with(&self, policy: Option<&Policy>) -> Images {
        let mut images = self.images.clone();
        if let Some(p) = policy {
            images.extend(p.protect_images.clone());
        }
        images
    }

    /// Whether anything here changes a decision.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.pulls.is_none()
    }

    /// Why the ledger cannot answer for `window` seconds before `now`.
    pub fn gap(&self, window: u64, now: Time) -> Option<String> {
        let ask = Ask {
            window,
            now,
            max_lag: self.max_lag.as_secs(),
            expect: self.expect.clone(),
        };
        match &self.pulls {
            Some(p) => p.gap(&ask),
            None => Some("no ledger was given (--ledger FILE)".into()),
        }
    }

    /// The window every pull rule (and `protect.pulled_within`) asks about at `now`, as the
    /// coverage check asks it: from `now - window` to `now - --ledger-lag`.
    pub fn windows(&self, policy: &Policy, now: Time) -> Vec<inuse::AskedWindow> {
        let lag = self.max_lag.as_secs() as Time;
        pull_windows(policy)
            .map(|(what, secs)| inuse::AskedWindow {
                what,
                from: now.saturating_sub(secs as Time),
                until: now
                    .saturating_sub(lag)
                    .max(now.saturating_sub(secs as Time)),
            })
            .collect()
    }

    /// The safety net's refusals: every rule (and `protect.pulled_within`) whose window the
    /// ledger does not cover.
    pub fn refusals(&self, policy: &Policy, now: Time) -> Vec<String> {
        let mut out = Vec::new();
        let windows = pull_windows(policy);
        for (what, secs) in windows {
            if let Some(why) = self.gap(secs, now) {
                out.push(format!("{what} cannot be judged: {why}; nothing is deleted by it (--force takes unrecorded as never pulled)"));
            }
        }
        if self.pulls.is_some()
            && (policy.rules.iter()).any(
                |r| matches!(&r.action, super::Action::Keep(k) if k.most_recently_pulled.is_some()),
            )
            && let Some(why) = self.gap(0, now)
        {
            out.push(format!("most_recently_pulled cannot be ranked: {why}"));
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Every rule with a pull window (and `protect.pulled_within`): its name and the window.
fn pull_windows(policy: &Policy) -> impl Iterator<Item = (String, u64)> + '_ {
    (policy.rules.iter())
        .filter_map(|r: &Rule| {
            r.pull_window()
                .map(|(w, s)| (format!("rule {:?} ({w})", r.name), s))
        })
        .chain(
            policy
                .protect_pulled_within
                .map(|s| (format!("protect.pulled_within: {}", fmt(s)), s.as_secs())),
        )
}

/// What the images in use and `protect.pulled_within` protect in `layout` at `now`.
pub fn protection(
    layout: &Layout,
    policy: Option<&Policy>,
    used: &Used,
    images: &Images,
    now: Time,
) -> Protection {
    let mut prot = inuse::resolve(layout, images, &used.hosts);
    if let Some(pulls) = &used.pulls {
        protect_canary(layout, pulls, &mut prot);
    }
    let window = policy.and_then(|p| p.protect_pulled_within);
    if let (Some(w), Some(pulls)) = (window, &used.pulls) {
        let since = now.saturating_sub(w.as_secs() as i64);
        let n = layout.repos.len();
        for (ri, repo) in layout.repos.iter().enumerate() {
            for (ti, tag) in repo.tags.iter().enumerate() {
                let current = tag.current.map(|c| c.digest);
                let pulled = pulls.tag_pulled(&repo.name, &tag.name, current.as_ref());
                // A tag set inside the window counts as recent: its window starts at its push.
                let pushed = (tag.current).map(|c| {
                    c.mtime.max(
                        pulls
                            .pushed
                            .get(&(repo.name.to_string(), c.digest))
                            .copied()
                            .unwrap_or(c.mtime),
                    )
                });
                let why = match (pulled, pushed) {
                    (Some(t), _) if t >= since => Some(format!(
                        "protected: pulled within {} (last pull {} ago)",
                        fmt(w),
                        human_age(now - t)
                    )),
                    (_, Some(t)) if t >= since => Some(format!(
                        "protected: pushed within {} ({} ago), so its window of pulls has not passed",
                        fmt(w),
                        human_age(now - t)
                    )),
                    _ => None,
                };
                if let Some(why) = why {
                    prot.tags.entry((ri, ti)).or_insert_with(|| why.clone());
                    if let Some(d) = current {
                        prot.pin(n, ri, d, why);
                    }
                }
            }
            for rev in &repo.revisions {
                if let Some(t) = pulls.digest_pulled(&repo.name, &rev.digest)
                    && t >= since
                {
                    let why = format!(
                        "protected: pulled within {} (last pull {})",
                        fmt(w),
                        stamp(t)
                    );
                    prot.pin(n, ri, rev.digest, why);
                }
            }
        }
    }
    prot
}

/// The ledger's canary (`pulls listen --canary`) stays, whatever the rules say: without its
/// pulls the ledger proves nothing.
fn protect_canary(layout: &Layout, pulls: &PullHistory, prot: &mut Protection) {
    let Some((repo, tag)) = pulls.canary.as_deref().and_then(|c| c.rsplit_once(':')) else {
        return;
    };
    let n = layout.repos.len();
    for (ri, r) in layout
        .repos
        .iter()
        .enumerate()
        .filter(|(_, r)| &*r.name == repo)
    {
        for (ti, t) in r.tags.iter().enumerate().filter(|(_, t)| t.name == tag) {
            let why = format!("protected: the pull ledger's canary ({repo}:{tag})");
            prot.tags.insert((ri, ti), why.clone());
            if let Some(c) = t.current {
                prot.pin(n, ri, c.digest, why);
            }
        }
    }
}

fn fmt(s: Span) -> String {
    crate::model::duration::format(s.0)
}
