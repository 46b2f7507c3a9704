//! The tags a policy's budget takes (pure, no storage read): least valuable first, as few as
//! bring the projected usage under the low watermark. Each projection is the real mark and
//! plan over the policy's own decisions plus the tags taken, so shared blobs count once and the
//! grace holds what it holds; freeing grows with every tag taken, so the fewest are found by
//! bisection (a few dozen plans however many tags there are).

use crate::gc::plan::{self, Plan};
use crate::model::duration::Span;
use crate::model::space::{Blocker, FsUsage, SpaceState};
use crate::model::{Decision, Decisions, Layout, Rules, Time, mark};
use crate::policy::TagExplain;
use crate::policy::budget::{Budget, Limit, OrderKey, window_words};
use crate::policy::used::Used;
use crate::units::{human_age, human_bytes};
use std::collections::HashMap;

/// What a budget is judged against.
pub struct Ask<'a> {
    pub layout: &'a Layout,
    pub rules: &'a Rules,
    pub used: &'a Used,
    /// The filesystem holding the root (`None` in a bucket).
    pub fs: Option<FsUsage>,
    pub now: Time,
}

/// The rule name a tag taken for the budget carries in plans and reports.
pub const RULE: &str = "budget";

/// A tag the budget may take: by repository and tag index, and its explanation's index.
#[derive(Clone, Copy)]
pub(super) struct Candidate {
    pub(super) r: usize,
    pub(super) t: usize,
    pub(super) e: usize,
}

pub(super) fn plan_of(ask: &Ask, decisions: &Decisions) -> Plan {
    let marks = mark::mark(ask.layout, decisions, ask.rules);
    plan::plan(ask.layout, decisions, &marks, ask.rules)
}

pub(super) fn taking(decisions: &Decisions, cands: &[Candidate]) -> Decisions {
    taking_for(decisions, cands, RULE)
}

pub(super) fn taking_for(decisions: &Decisions, cands: &[Candidate], rule: &str) -> Decisions {
    let mut d = decisions.clone();
    for c in cands {
        d.repos[c.r][c.t] = Decision::Delete { rule: rule.into() };
    }
    d
}

/// Applies `budget`: the tags it takes become deletions (with their reasons in `explain`);
/// what it decided, or why it refuses (nothing is then taken for it).
pub fn apply(
    ask: &Ask,
    budget: &Budget,
    decisions: &mut Decisions,
    explain: &mut [TagExplain],
) -> Result<SpaceState, String> {
    let (used, size) = match (budget.high, ask.fs) {
        (Limit::Percent(_), Some(fs)) => (fs.used, Some(fs.size)),
        (Limit::Percent(_), None) => {
            return Err(format!(
                "budget: high {} is a share of a filesystem, and this storage has none (a bucket): give sizes (high: 400GiB, low: 350GiB)",
                budget.high.describe()
            ));
        }
        (Limit::Bytes(_), _) => (ask.layout.total_bytes(), None),
    };
    let bytes = |l: Limit| match (l, size) {
        (Limit::Percent(p), Some(s)) => (p / 100.0 * s as f64) as u64,
        (Limit::Percent(_), None) => 0,
        (Limit::Bytes(b), _) => b,
    };
    let (high, low) = (bytes(budget.high), bytes(budget.low));
    let (order, order_note) = usable_order(ask, &budget.order, budget.pull_window, "budget")?;
    let cands = candidates(ask, decisions, explain, (&order, budget.pull_window), None);
    let base = plan_of(ask, decisions).bytes_freed();
    let mut state = SpaceState {
        what: "budget".into(),
        measure: if size.is_some() {
            "filesystem"
        } else {
            "registry"
        },
        used,
        size,
        high: budget.high.describe(),
        low: budget.low.describe(),
        over: used > high,
        tags: 0,
        bytes_freed: base,
        projected: used.saturating_sub(base),
        projected_percent: None,
        reached: true,
        short_by: 0,
        blocked_by: Vec::new(),
        order: order.iter().map(|k| k.word()).collect(),
        note: order_note,
    };
    if state.over && !ask.rules.delete_untagged {
        state.note = Some("without --delete-untagged (-m) a deleted tag frees no blob: the budget takes no tag; run with -m".into());
    }
    let need = used.saturating_sub(low);
    if state.over && base < need && ask.rules.delete_untagged {
        // Each projection is a whole plan: the one found last is not planned again.
        let memo = std::cell::RefCell::new(std::collections::HashMap::new());
        let freed = |k: usize| {
            let known = memo.borrow().get(&k).copied();
            known.unwrap_or_else(|| {
                let b = plan_of(ask, &taking(decisions, &cands[..k])).bytes_freed();
                memo.borrow_mut().insert(k, b);
                b
            })
        };
        let all = freed(cands.len());
        let k = if all >= need {
            fewest(cands.len(), |k| freed(k) >= need)
        } else {
            fewest(cands.len(), |k| freed(k) >= all)
        };
        let taken = &cands[..k];
        state.bytes_freed = freed(k);
        *decisions = taking(decisions, taken);
        state.tags = k;
        state.projected = used.saturating_sub(state.bytes_freed);
        if all < need {
            state.blocked_by = blockers(ask, decisions, explain);
        }
        explain_taken(explain, taken, cands.len(), &state, ask.now);
    }
    state.reached = !state.over || state.projected <= low;
    state.short_by = if state.reached {
        0
    } else {
        state.projected - low
    };
    state.projected_percent = ask
        .fs
        .filter(|_| size.is_some())
        .map(|fs| fs.percent(state.projected));
    Ok(state)
}

/// The smallest k in 0..=n for which `enough` holds, `enough(n)` being known to hold.
pub(super) fn fewest(n: usize, enough: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if enough(mid) { hi = mid } else { lo = mid + 1 }
    }
    lo
}

/// The order of value as asked, less the ledger's keys when there is no ledger (said so); a
/// ledger that does not prove the pull window refuses.
pub(super) fn usable_order(
    ask: &Ask,
    order: &[OrderKey],
    window: Span,
    what: &str,
) -> Result<(Vec<OrderKey>, Option<String>), String> {
    if order.iter().all(|k| *k == OrderKey::Pushed) {
        return Ok((order.to_vec(), None));
    }
    if ask.used.pulls.is_none() {
        let note = "no --ledger: tags are ordered by push time only".to_string();
        return Ok((vec![OrderKey::Pushed], Some(note)));
    }
    match ask.used.gap(window.as_secs(), ask.now) {
        Some(why) => Err(format!(
            "{what}: its order ({}) asks which tags were pulled over pull_window {}, and {why}; nothing is deleted for it (--force takes unrecorded as never pulled)",
            (order.iter())
                .map(|k| k.word())
                .collect::<Vec<_>>()
                .join(", "),
            window_words(window)
        )),
        None => Ok((order.to_vec(), None)),
    }
}

/// Tags nothing holds and the policy keeps, least valuable first.
pub(super) fn candidates(
    ask: &Ask,
    decisions: &Decisions,
    explain: &[TagExplain],
    (order, window): (&[OrderKey], Span),
    only: Option<usize>,
) -> Vec<Candidate> {
    let by_name: HashMap<(&str, &str), usize> = (explain.iter().enumerate())
        .map(|(i, e)| ((e.repository.as_str(), e.tag.as_str()), i))
        .collect();
    let mut out = Vec::new();
    for (r, repo) in ask.layout.repos.iter().enumerate() {
        if decisions.out_of_scope.get(r).copied().unwrap_or(false) || only.is_some_and(|o| o != r) {
            continue;
        }
        for (t, tag) in repo.tags.iter().enumerate() {
            let Some(&e) = by_name.get(&(repo.name.as_ref(), tag.name.as_str())) else {
                continue;
            };
            let x = &explain[e];
            let free = decisions.repos[r][t] == Decision::Keep && !x.delete && x.held_by.is_none();
            if free && tag.current.is_some() {
                out.push(Candidate { r, t, e });
            }
        }
    }
    let since = ask.now - window.as_secs() as i64;
    let key = |c: &Candidate| -> Vec<i64> {
        let x = &explain[c.e];
        (order.iter())
            .map(|k| match k {
                OrderKey::NeverPulled => i64::from(x.last_pulled.is_some_and(|p| p >= since)),
                OrderKey::LastPulled => x.last_pulled.unwrap_or(i64::MIN),
                OrderKey::Pushed => x.pushed.unwrap_or(ask.now),
            })
            .collect()
    };
    let name = |c: &Candidate| (&explain[c.e].repository, &explain[c.e].tag);
    out.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| name(a).cmp(&name(b))));
    out
}

/// Each taken tag's reason: its rank in the order, and what made it less valuable.
pub(super) fn explain_taken(
    explain: &mut [TagExplain],
    taken: &[Candidate],
    of: usize,
    state: &SpaceState,
    now: Time,
) {
    for (rank, c) in taken.iter().enumerate() {
        let x = &mut explain[c.e];
        let pulled = match x.last_pulled {
            Some(p) => format!("last pulled {} ago", human_age(now - p)),
            None => "no pull in the ledger".into(),
        };
        let pushed = x.pushed.map_or(String::new(), |p| {
            format!(", pushed {} ago", human_age(now - p))
        });
        x.delete = true;
        x.rule = Some(state.what.split(' ').next().unwrap_or(RULE).into());
        x.reasons.push(format!(
            "{}: {} least valuable of {of} ({pulled}{pushed}), taken to bring usage from {} to {} (low {})",
            state.what,
            ordinal(rank + 1),
            shown(state, state.used),
            shown(state, state.projected),
            state.low
        ));
    }
}

/// Usage as the budget states it: a share of the disk, or bytes.
fn shown(state: &SpaceState, bytes: u64) -> String {
    match state.size {
        Some(s) if s > 0 => format!("{:.1}%", bytes as f64 * 100.0 / s as f64),
        _ => human_bytes(bytes),
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// What holds the rest back: per holder (a rule, a protection), the bytes taking its tags too
/// would free; the largest five.
fn blockers(ask: &Ask, decisions: &Decisions, explain: &[TagExplain]) -> Vec<Blocker> {
    let base = plan_of(ask, decisions).bytes_freed();
    let by_name: HashMap<(&str, &str), usize> = (explain.iter().enumerate())
        .map(|(i, e)| ((e.repository.as_str(), e.tag.as_str()), i))
        .collect();
    let mut groups: HashMap<&str, Vec<Candidate>> = HashMap::new();
    for (r, repo) in ask.layout.repos.iter().enumerate() {
        for (t, tag) in repo.tags.iter().enumerate() {
            let hit = by_name
                .get(&(repo.name.as_ref(), tag.name.as_str()))
                .copied();
            if let Some(e) = hit
                && let Some(by) = explain[e].held_by.as_deref()
            {
                groups.entry(by).or_default().push(Candidate { r, t, e });
            }
        }
    }
    let mut biggest: Vec<(&str, Vec<Candidate>)> = groups.into_iter().collect();
    biggest.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    let mut out: Vec<Blocker> = (biggest.into_iter().take(10))
        .map(|(by, tags)| Blocker {
            by: by.to_string(),
            tags: tags.len(),
            bytes: plan_of(ask, &taking(decisions, &tags))
                .bytes_freed()
                .saturating_sub(base),
        })
        .filter(|b| b.bytes > 0)
        .collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.by.cmp(&b.by)));
    out.truncate(5);
    out
}

#[cfg(test)]
mod tests;
