//! The tags per-repository quotas take (pure): in each repository a quota matches and that
//! holds more than its `max` (counted as `du` counts it: `total`, every distinct blob its
//! revisions reach, or `exclusive`, those no other repository reaches), least valuable first,
//! as few as bring it under. Projected by the real plan, as the budget is.

use super::budget::{
    Ask, Candidate, candidates, explain_taken, fewest, plan_of, taking_for, usable_order,
};
use crate::gc::plan::Plan;
use crate::inspect::usage;
use crate::model::space::SpaceState;
use crate::model::{Decision, Decisions};
use crate::policy::TagExplain;
use crate::policy::budget::{Quota, QuotaBy};
use crate::units::human_bytes;
use std::collections::HashSet;

/// The rule name a tag taken for a quota carries.
pub const RULE: &str = "quota";

/// Applies every quota to every repository it matches (in scope); one state per repository
/// matched, or why a quota refuses.
pub fn apply(
    ask: &Ask,
    quotas: &[Quota],
    decisions: &mut Decisions,
    explain: &mut [TagExplain],
) -> Result<Vec<SpaceState>, String> {
    let layout = ask.layout;
    let reach: Vec<Vec<u32>> = layout
        .repos
        .iter()
        .map(|r| usage::reach_of(layout, r))
        .collect();
    let reached_by = usage::reached_by(layout, &reach);
    let mut out = Vec::new();
    for q in quotas {
        let (order, note) = usable_order(ask, &q.order, q.pull_window, "quota")?;
        let mut matched = 0;
        for (r, repo) in layout.repos.iter().enumerate() {
            let out_of_scope = decisions.out_of_scope.get(r).copied().unwrap_or(false);
            if out_of_scope || !q.repositories.is_match(&repo.name) {
                continue;
            }
            matched += 1;
            let counts = (q.by, &reach[r][..], &reached_by[..]);
            let bytes = |plan: Option<&Plan>, d: &Decisions| repo_bytes(ask, r, plan, d, counts);
            let used = bytes(None, decisions);
            let mut state = SpaceState {
                what: format!("quota {}", repo.name),
                measure: match q.by {
                    QuotaBy::Exclusive => "exclusive",
                    QuotaBy::Total => "total",
                },
                used,
                size: None,
                high: human_bytes(q.max),
                low: human_bytes(q.max),
                over: used > q.max,
                tags: 0,
                bytes_freed: 0,
                projected: used,
                projected_percent: None,
                reached: used <= q.max,
                short_by: 0,
                blocked_by: Vec::new(),
                order: order.iter().map(|k| k.word()).collect(),
                note: note.clone(),
            };
            if state.over {
                let base = plan_of(ask, decisions);
                state.projected = bytes(Some(&base), decisions);
                let cands = candidates(ask, decisions, explain, (&order, q.pull_window), Some(r));
                let after = |k: usize| {
                    let d = taking_for(decisions, &cands[..k], RULE);
                    bytes(Some(&plan_of(ask, &d)), &d)
                };
                if state.projected > q.max && ask.rules.delete_untagged {
                    let least = after(cands.len());
                    let k = match least <= q.max {
                        true => fewest(cands.len(), |k| after(k) <= q.max),
                        false => fewest(cands.len(), |k| after(k) <= least),
                    };
                    state.projected = after(k);
                    take(
                        decisions,
                        explain,
                        (&cands[..k], cands.len()),
                        &mut state,
                        ask.now,
                    );
                }
                state.bytes_freed = used.saturating_sub(state.projected);
                state.reached = state.projected <= q.max;
                state.short_by = state.projected.saturating_sub(q.max);
                if !ask.rules.delete_untagged {
                    state.note = Some("without --delete-untagged (-m) a deleted tag frees no blob: the quota takes no tag; run with -m".into());
                }
            }
            out.push(state);
        }
        if matched == 0 {
            return Err(format!(
                "quota {:?}: matches no repository; nothing is deleted for it (check the pattern against `regsweep du`)",
                q.repositories.patterns()
            ));
        }
    }
    Ok(out)
}

fn take(
    decisions: &mut Decisions,
    explain: &mut [TagExplain],
    (taken, of): (&[Candidate], usize),
    state: &mut SpaceState,
    now: crate::model::Time,
) {
    for c in taken {
        decisions.repos[c.r][c.t] = Decision::Delete { rule: RULE.into() };
    }
    state.tags = taken.len();
    explain_taken(explain, taken, of, state, now);
}

/// Repository `r`'s bytes as the quota counts them, once `plan` (if any) is carried out:
/// its remaining revisions' reach (`before`: what the scan's revisions reach), less the blobs
/// the plan deletes; `exclusive` against the other repositories as they were before the run
/// (what they lose too is not counted).
fn repo_bytes(
    ask: &Ask,
    r: usize,
    plan: Option<&Plan>,
    decisions: &Decisions,
    (by, before, reached_by): (QuotaBy, &[u32], &[u8]),
) -> u64 {
    let layout = ask.layout;
    let repo = &layout.repos[r];
    let reach = match plan {
        None => before.to_vec(),
        Some(plan) => {
            let gone: HashSet<_> = (plan.manifests.iter())
                .filter(|m| m.repository == repo.name)
                .map(|m| m.digest)
                .collect();
            let mut after = repo.clone();
            after.revisions.retain(|l| !gone.contains(&l.digest));
            let kept: Vec<bool> = (decisions.repos[r].iter())
                .map(|d| *d == Decision::Keep)
                .collect();
            let mut i = 0;
            after.tags.retain(|_| {
                i += 1;
                kept[i - 1]
            });
            usage::reach_of(layout, &after)
        }
    };
    let gone_blobs: HashSet<_> = plan.map_or_else(HashSet::new, |p| {
        p.blobs.iter().map(|b| b.digest()).collect()
    });
    (reach.iter())
        .filter(|&&i| by == QuotaBy::Total || reached_by[i as usize] <= 1)
        .map(|&i| &layout.blobs[i as usize])
        .filter(|b| !gone_blobs.contains(&b.digest))
        .map(|b| b.size)
        .sum()
}
