//! A policy evaluated over a layout: each rule's votes per tag group, each tag's verdict with
//! its reasons, and the safety net's refusals.

use super::*;
use crate::model::inuse::Protection;
use crate::model::pulls::stamp;
use used::Used;

/// A cosign tag `sha256-<hex>.sig|.att|.sbom` names the digest it refers to.
pub fn cosign_subject(tag: &str) -> Option<Digest> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_once('.')?;
    matches!(suffix, "sig" | "att" | "sbom")
        .then(|| Digest::from_hex(hex))
        .flatten()
}

/// Why one tag stays or goes.
#[derive(Debug, Clone, Serialize)]
pub struct TagExplain {
    pub repository: String,
    pub tag: String,
    pub digest: Option<Digest>,
    pub delete: bool,
    /// The rule that deletes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Seconds since the time its age is counted from.
    pub age_seconds: Option<i64>,
    /// The rules that matched it.
    pub rules: Vec<String>,
    /// Every rule that matched, and what it said; protections; the subject of a signature.
    pub reasons: Vec<String>,
    /// The ledger's last pull of the tag or of the digest it names (with `--ledger`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pulled_at: Option<String>,
    /// What holds it whatever a budget needs (a protection, a keep rule), if anything.
    #[serde(skip)]
    pub held_by: Option<String>,
    /// When it was set, and its last pull: a budget's order of value.
    #[serde(skip)]
    pub pushed: Option<Time>,
    #[serde(skip)]
    pub last_pulled: Option<Time>,
}

#[derive(Debug, Default)]
pub struct Evaluation {
    pub decisions: Decisions,
    /// One per tag, in layout order.
    pub explain: Vec<TagExplain>,
    /// Why the safety net refuses to apply this policy (overridden by --force).
    pub refusals: Vec<String>,
}

/// Earliest `created` believed: anything before 1980 is a placeholder (reproducible builds use 0).
const SANE_CREATED: Time = 315_532_800;

/// The share of tags in scope of age rules that may share one push second (80%), and the
/// fewest tags in scope for that check to mean anything.
const SAME_SECOND_MIN_TAGS: usize = 5;

enum Vote {
    Keep(String),
    Delete(String),
    Neutral(String),
}

/// Decides every tag. `created` maps manifests to their config's `created`, for `age_from: created`.
pub fn evaluate(
    policy: &Policy,
    layout: &Layout,
    created: &HashMap<Digest, Time>,
    now: Time,
) -> Evaluation {
    let ctx = Context {
        used: &Used::default(),
        protection: &Protection::default(),
    };
    evaluate_with(policy, layout, created, now, &ctx)
}

/// What is used, beside the policy: the ledger, and what the images in use protect.
pub struct Context<'a> {
    pub used: &'a Used,
    pub protection: &'a Protection,
}

/// `evaluate`, with what is used.
pub fn evaluate_with(
    policy: &Policy,
    layout: &Layout,
    created: &HashMap<Digest, Time>,
    now: Time,
    ctx: &Context,
) -> Evaluation {
    let mut ev = Evaluation::default();
    for (r, repo) in layout.repos.iter().enumerate() {
        let (decisions, explain, refusals) = evaluate_repo(policy, (r, repo), created, now, ctx);
        ev.decisions.repos.push(decisions);
        ev.explain.extend(explain);
        ev.refusals.extend(refusals);
    }
    if policy.uses_pulls() {
        ev.refusals.extend(ctx.used.refusals(policy, now));
    }
    follow_subjects(layout, &mut ev);
    ev
}

fn age_time(
    policy: &Policy,
    tag: &Tag,
    created: &HashMap<Digest, Time>,
    now: Time,
) -> Option<Time> {
    let current = tag.current?;
    if policy.age_from == AgeFrom::Created
        && let Some(&c) = created.get(&current.digest)
        && (SANE_CREATED..=now).contains(&c)
    {
        return Some(c);
    }
    Some(current.mtime)
}

fn evaluate_repo(
    policy: &Policy,
    (r, repo): (usize, &Repo),
    created: &HashMap<Digest, Time>,
    now: Time,
    ctx: &Context,
) -> (Vec<Decision>, Vec<TagExplain>, Vec<String>) {
    let n = repo.tags.len();
    let times: Vec<Option<Time>> = repo
        .tags
        .iter()
        .map(|t| age_time(policy, t, created, now))
        .collect();
    let pulled: Vec<Option<Time>> = (repo.tags.iter())
        .map(|t| {
            let p = ctx.used.pulls.as_ref()?;
            p.tag_pulled(&repo.name, &t.name, t.current.map(|c| c.digest).as_ref())
        })
        .collect();
    // With a ledger: when a never-pulled tag's image was pushed, if the ledger saw it.
    let never_since: Vec<Option<Option<Time>>> = (repo.tags.iter().zip(&pulled))
        .map(|(t, p)| {
            let h = ctx.used.pulls.as_ref().filter(|_| p.is_none())?;
            let d = t.current?.digest;
            Some(h.pushed.get(&(repo.name.to_string(), d)).copied())
        })
        .collect();
    // When the tag was set: its link's mtime, or a later push the ledger saw. A pull rule's
    // window starts no earlier: a tag pushed inside it counts as recent.
    let pushed: Vec<Option<Time>> = (repo.tags.iter())
        .map(|t| {
            let c = t.current?;
            let seen = (ctx.used.pulls.as_ref())
                .and_then(|h| h.pushed.get(&(repo.name.to_string(), c.digest)).copied());
            Some(c.mtime.max(seen.unwrap_or(c.mtime)))
        })
        .collect();
    let when = When {
        times: &times,
        pulled: &pulled,
        pushed: &pushed,
        never_since: &never_since,
        now,
    };
    // Tags rules may look at: a readable current link, a valid name, not a signature tag.
    let eligible: Vec<usize> = (0..n)
        .filter(|&i| {
            let t = &repo.tags[i];
            t.current.is_some()
                && crate::model::paths::valid_tag(&t.name)
                && cosign_subject(&t.name).is_none()
        })
        .collect();
    let (votes, in_age_scope) = collect_votes(policy, repo, &eligible, &when);
    let (decisions, explain) = verdicts(policy, (r, repo), votes, &when, ctx.protection);
    let refusals = refusals(repo, &eligible, &decisions, &in_age_scope);
    (decisions, explain, refusals)
}

/// What each rule says of each tag it matches, group by group; and which tags an age rule
/// looks at.
/// Each tag's age time and last pull, and now.
struct When<'a> {
    times: &'a [Option<Time>],
    pulled: &'a [Option<Time>],
    /// When each tag was set (its link's mtime, or a later push in the ledger).
    pushed: &'a [Option<Time>],
    /// With a ledger, for a tag it has no pull of: `Some(push time)` when it saw the push.
    never_since: &'a [Option<Option<Time>>],
    now: Time,
}

fn collect_votes(
    policy: &Policy,
    repo: &Repo,
    eligible: &[usize],
    when: &When,
) -> (Vec<Vec<(usize, Vote)>>, Vec<bool>) {
    let n = repo.tags.len();
    let mut votes: Vec<Vec<(usize, Vote)>> = (0..n).map(|_| Vec::new()).collect();
    let mut in_age_scope = vec![false; n];
    for (r, rule) in policy.rules.iter().enumerate() {
        if !rule.repositories.is_match(&repo.name) {
            continue;
        }
        let matched: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|&i| rule.tags.is_match(&repo.tags[i].name))
            .collect();
        if rule.uses_age() {
            matched.iter().for_each(|&i| in_age_scope[i] = true);
        }
        let mut groups: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
        for &i in &matched {
            let key = rule.group_by.as_ref().and_then(|re| {
                re.captures(&repo.tags[i].name).map(|c| {
                    c.iter()
                        .skip(1)
                        .map(|m| m.map_or("", |m| m.as_str()))
                        .collect::<Vec<_>>()
                        .join("/")
                })
            });
            groups.entry(key).or_default().push(i);
        }
        for (key, members) in groups {
            let in_group = match (&rule.group_by, &key) {
                (Some(_), Some(k)) => format!(" in group {k:?}"),
                (Some(_), None) => " among tags group_by does not match".to_string(),
                _ => String::new(),
            };
            for (i, vote) in rule_votes(rule, repo, &members, when, &in_group) {
                votes[i].push((r, vote));
            }
        }
    }

    (votes, in_age_scope)
}

/// Each tag's decision and its reasons: never deleted when unreadable, invalid, a signature
/// or protected; otherwise a delete needs a rule that deletes it and none that keeps it.
fn verdicts(
    policy: &Policy,
    (r, repo): (usize, &Repo),
    mut votes: Vec<Vec<(usize, Vote)>>,
    when: &When,
    protection: &Protection,
) -> (Vec<Decision>, Vec<TagExplain>) {
    let (times, now) = (when.times, when.now);
    let n = repo.tags.len();
    let mut decisions = Vec::with_capacity(n);
    let mut explain = Vec::with_capacity(n);
    for (i, tag) in repo.tags.iter().enumerate() {
        let mut reasons = Vec::new();
        let mut held: Vec<String> = Vec::new();
        let mut delete_rule = None;
        if tag.current.is_none() {
            reasons.push("no readable current link: never deleted".into());
            held.push("a damaged tag".into());
        } else if !crate::model::paths::valid_tag(&tag.name) {
            reasons.push("not a valid tag name: never deleted".into());
            held.push("an invalid tag name".into());
        } else if let Some(subject) = cosign_subject(&tag.name) {
            reasons.push(format!(
                "signature tag: stays while {subject} is reached by a kept tag"
            ));
            held.push("signature tags".into());
        }
        if let Some(m) = &policy.protect_tags
            && m.is_match(&tag.name)
        {
            reasons.push(format!("protected by protect.tags {:?}", m.patterns()));
            held.push("protect.tags".into());
        }
        if let Some(c) = tag.current
            && policy.protect_digests.contains(&c.digest)
        {
            reasons.push(format!(
                "protected: {} is in protect.digests_file",
                c.digest
            ));
            held.push("protect.digests_file".into());
        }
        if let Some(why) = protection.tags.get(&(r, i)) {
            reasons.push(why.clone());
            held.push(why.split(':').next().unwrap_or(why).to_string());
        }
        if let Some(Some(t)) = when.never_since[i] {
            reasons.push(format!("never pulled since its push at {}", stamp(t)));
        }
        let mut rules = Vec::new();
        for (r, vote) in std::mem::take(&mut votes[i]) {
            let name = &policy.rules[r].name;
            rules.push(name.clone());
            match vote {
                Vote::Keep(why) => {
                    held.push(format!("rule {name:?}"));
                    reasons.push(format!("rule {name:?} keeps it: {why}"));
                }
                Vote::Delete(why) => {
                    delete_rule.get_or_insert_with(|| name.clone());
                    reasons.push(format!("rule {name:?} deletes it: {why}"));
                }
                Vote::Neutral(why) => reasons.push(format!("rule {name:?} matches: {why}")),
            }
        }
        if reasons.is_empty() {
            reasons.push("no rule matches it".into());
        }
        let delete = held.is_empty() && delete_rule.is_some();
        decisions.push(match (&delete_rule, delete) {
            (Some(rule), true) => Decision::Delete { rule: rule.clone() },
            _ => Decision::Keep,
        });
        explain.push(TagExplain {
            repository: repo.name.to_string(),
            tag: tag.name.clone(),
            digest: tag.current.map(|c| c.digest),
            delete,
            rule: if delete { delete_rule } else { None },
            age_seconds: times[i].map(|t| now - t),
            rules,
            reasons,
            last_pulled_at: when.pulled[i].map(stamp),
            held_by: held.into_iter().next(),
            pushed: when.pushed[i],
            last_pulled: when.pulled[i],
        });
    }

    (decisions, explain)
}

/// The safety net: a repository the policy would empty of tags, or whose tags' push times look
/// copied (most in one second), is refused.
fn refusals(
    repo: &Repo,
    eligible: &[usize],
    decisions: &[Decision],
    in_age_scope: &[bool],
) -> Vec<String> {
    let n = repo.tags.len();
    let mut refusals = Vec::new();
    if !eligible.is_empty()
        && eligible
            .iter()
            .all(|&i| matches!(decisions[i], Decision::Delete { .. }))
    {
        refusals.push(format!(
            "{}: the policy would delete every one of its {} tags",
            repo.name,
            eligible.len()
        ));
    }
    let scope: Vec<Time> = (0..n)
        .filter(|&i| in_age_scope[i])
        .filter_map(|i| repo.tags[i].current.map(|c| c.mtime))
        .collect();
    if scope.len() >= SAME_SECOND_MIN_TAGS {
        let mut counts: HashMap<Time, usize> = HashMap::new();
        scope
            .iter()
            .for_each(|t| *counts.entry(*t).or_default() += 1);
        let (&when, &most) = counts
            .iter()
            .max_by_key(|(t, c)| (**c, **t))
            .unwrap_or((&0, &0));
        if most * 5 > scope.len() * 4 {
            let when = chrono::DateTime::from_timestamp(when, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            refusals.push(format!(
                "{}: {most} of the {} tags that age rules look at were pushed in the same second ({when}); push times look copied or restored, so ages mean nothing here",
                repo.name,
                scope.len()
            ));
        }
    }
    refusals
}

/// What one rule says of each tag of one group.
fn rule_votes(
    rule: &Rule,
    repo: &Repo,
    members: &[usize],
    when: &When,
    in_group: &str,
) -> Vec<(usize, Vote)> {
    match &rule.action {
        Action::Delete(d) => members
            .iter()
            .map(|&i| (i, delete_vote(d, when, i)))
            .collect(),
        Action::Keep(k) => keep_votes(k, repo, members, when, in_group),
    }
}

/// Whether tag `i` was set within the last `secs` seconds (an unreadable time counts as now).
fn pushed_within(when: &When, i: usize, secs: u64) -> bool {
    when.now - when.pushed[i].unwrap_or(when.now) <= secs as i64
}

/// A delete rule's vote: it deletes when every criterion given holds.
fn delete_vote(d: &Delete, when: &When, i: usize) -> Vote {
    let age = when.now - when.times[i].unwrap_or(when.now);
    let mut yes = Vec::new();
    let mut no = Vec::new();
    if let Some(limit) = d.older_than {
        let text = format!("{} (age {})", duration::format(limit.0), human_age(age));
        if age > limit.0.as_secs() as i64 {
            yes.push(format!("older than {text}"));
        } else {
            no.push(format!("not older than {text}"));
        }
    }
    if let Some(limit) = d.not_pulled_for {
        let w = duration::format(limit.0);
        match when.pulled[i] {
            _ if pushed_within(when, i, limit.0.as_secs()) => no.push(format!(
                "pushed within {w} ({} ago): its window starts at its push",
                human_age(when.now - when.pushed[i].unwrap_or(when.now))
            )),
            Some(t) if when.now - t <= limit.0.as_secs() as i64 => no.push(format!(
                "pulled within {w} (last pull {} ago)",
                human_age(when.now - t)
            )),
            Some(t) => yes.push(format!(
                "not pulled for {w} (last pull {} ago)",
                human_age(when.now - t)
            )),
            None => yes.push(format!("not pulled for {w} (no pull in the ledger)")),
        }
    }
    match (
        d.older_than.is_none() && d.not_pulled_for.is_none(),
        no.is_empty(),
    ) {
        (true, _) => Vote::Delete("delete: {} takes every tag it matches".into()),
        (false, true) => Vote::Delete(yes.join(", ")),
        (false, false) => Vote::Neutral(no.join(", ")),
    }
}

/// Rank (1-based) of each tag among `members` by `key`, highest first, for the top `n`. Ties
/// (S3 keeps push times in whole seconds) go to the higher semantic version, then to tags that
/// are versions, then to the name later in order: reproducible, and `v1.2.0` over `v1.0.0`.
fn top<K: Ord>(
    repo: &Repo,
    members: &[usize],
    n: usize,
    key: impl Fn(usize) -> Option<K>,
) -> HashMap<usize, usize> {
    let mut ranked: Vec<(K, usize)> = members
        .iter()
        .filter_map(|&i| key(i).map(|k| (k, i)))
        .collect();
    // One tuple order, so the comparison stays total whatever the names.
    let tie = |i: usize| (Version::parse(&repo.tags[i].name), &repo.tags[i].name);
    ranked.sort_by(|(ka, a), (kb, b)| kb.cmp(ka).then_with(|| tie(*b).cmp(&tie(*a))));
    ranked
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(rank, (_, i))| (i, rank + 1))
        .collect()
}

/// A keep rule's votes: kept when any criterion holds; the rule deletes the rest.
fn keep_votes(
    k: &Keep,
    repo: &Repo,
    members: &[usize],
    when: &When,
    in_group: &str,
) -> Vec<(usize, Vote)> {
    let name = |i: usize| repo.tags[i].name.as_str();
    let age = |i: usize| when.now - when.times[i].unwrap_or(when.now);
    let newest_rank = k
        .newest
        .map(|n| top(repo, members, n, |i| Some(when.times[i])))
        .unwrap_or_default();
    let semver_rank = k
        .semver
        .map(|n| top(repo, members, n, |i| Version::parse(name(i))))
        .unwrap_or_default();
    let pulled_rank = k
        .most_recently_pulled
        .map(|n| top(repo, members, n, |i| when.pulled[i]))
        .unwrap_or_default();
    let tiers = k.tiers();
    let tier_reasons = calendar_reasons(&tiers, repo, members, when);
    // Fewer tags pulled than ranked: the never-pulled ones cannot be told apart, so all stay.
    let unranked_stay = k
        .most_recently_pulled
        .is_some_and(|n| pulled_rank.len() < n);
    members
        .iter()
        .map(|&i| {
            let mut yes = Vec::new();
            let mut no = Vec::new();
            if let Some(n) = k.newest {
                match newest_rank.get(&i) {
                    Some(r) => yes.push(format!("newest {n}{in_group} (#{r})")),
                    None => no.push(format!("not among the newest {n}{in_group}")),
                }
            }
            if let Some(w) = k.within {
                let text = format!("{} (age {})", duration::format(w.0), human_age(age(i)));
                if age(i) <= w.0.as_secs() as i64 {
                    yes.push(format!("within {text}"));
                } else {
                    no.push(format!("older than {text}"));
                }
            }
            if let Some(n) = k.semver {
                match semver_rank.get(&i) {
                    Some(r) => yes.push(format!("semver top {n}{in_group} (#{r})")),
                    None if Version::parse(name(i)).is_none() => no.push("not a semantic version".into()),
                    None => no.push(format!("not among the {n} highest versions{in_group}")),
                }
            }
            if let Some(w) = k.pulled_within {
                let w_text = duration::format(w.0);
                match when.pulled[i] {
                    _ if pushed_within(when, i, w.0.as_secs()) => yes.push(format!(
                        "pushed within {w_text} ({} ago): its window starts at its push",
                        human_age(when.now - when.pushed[i].unwrap_or(when.now))
                    )),
                    Some(t) if when.now - t <= w.0.as_secs() as i64 => {
                        yes.push(format!("pulled within {w_text} (last pull {} ago)", human_age(when.now - t)))
                    }
                    Some(t) => no.push(format!("not pulled within {w_text} (last pull {} ago)", human_age(when.now - t))),
                    None => no.push(format!("not pulled within {w_text} (no pull in the ledger)")),
                }
            }
            if let Some(n) = k.most_recently_pulled {
                match pulled_rank.get(&i) {
                    Some(r) => yes.push(format!("most recently pulled {n}{in_group} (#{r})")),
                    None if unranked_stay => yes.push(format!(
                        "no pull in the ledger, but fewer than {n} tags{in_group} were pulled: unranked tags stay"
                    )),
                    None => no.push(format!("not among the {n} most recently pulled{in_group}")),
                }
            }
            if !tiers.is_empty() {
                match tier_reasons.get(&i) {
                    Some(r) => yes.push(format!("{}{in_group}", r.join(", "))),
                    None => no.push(format!(
                        "not the newest of its period in any tier ({}){in_group}",
                        tiers.describe()
                    )),
                }
            }
            if k.always {
                yes.push("always".into());
            }
            let vote = if yes.is_empty() {
                Vote::Delete(no.join(", "))
            } else {
                Vote::Keep(yes.join(", "))
            };
            (i, vote)
        })
        .collect()
}

/// The calendar tiers over `members` walked newest first (ties as `top` breaks them): the
/// reasons of each tag a tier keeps.
fn calendar_reasons(
    tiers: &calendar::Tiers,
    repo: &Repo,
    members: &[usize],
    when: &When,
) -> HashMap<usize, Vec<String>> {
    if tiers.is_empty() {
        return HashMap::new();
    }
    let rank = top(repo, members, members.len(), |i| Some(when.times[i]));
    let mut order: Vec<usize> = members.to_vec();
    order.sort_by_key(|i| rank.get(i).copied().unwrap_or(usize::MAX));
    let times: Vec<Time> = (order.iter())
        .map(|&i| when.times[i].unwrap_or(when.now))
        .collect();
    (order.into_iter().zip(tiers.apply(&times)))
        .filter(|(_, r)| !r.is_empty())
        .collect()
}

/// Signature tags follow their subject: one whose subject some tag reached before the policy
/// and no kept tag reaches after it goes; every other stays.
fn follow_subjects(layout: &Layout, ev: &mut Evaluation) {
    let rules = Rules::without_grace(true);
    let mut at = 0;
    for (r, repo) in layout.repos.iter().enumerate() {
        let base = at;
        at += repo.tags.len();
        let signatures: Vec<(usize, Digest)> = repo
            .tags
            .iter()
            .enumerate()
            .filter_map(|(i, t)| cosign_subject(&t.name).map(|d| (i, d)))
            .collect();
        if signatures.is_empty() {
            continue;
        }
        let plain = |i: usize| cosign_subject(&repo.tags[i].name).is_none();
        let (before, _) = mark::mark_repo(layout, repo, plain, &[], &rules);
        let decisions = &ev.decisions.repos[r];
        let (after, _) = mark::mark_repo(
            layout,
            repo,
            |i| plain(i) && !matches!(decisions[i], Decision::Delete { .. }),
            &[],
            &rules,
        );
        for (i, subject) in signatures {
            let Some(s) = layout.ref_of(&subject) else {
                continue;
            };
            if before.manifests.contains(&s) && !after.manifests.contains(&s) {
                let rule = "signature of a deleted image".to_string();
                ev.decisions.repos[r][i] = Decision::Delete { rule: rule.clone() };
                let e = &mut ev.explain[base + i];
                e.delete = true;
                e.rule = Some(rule);
                e.reasons = vec![format!(
                    "signature tag of {subject}, which no kept tag reaches any more"
                )];
            }
        }
    }
}
