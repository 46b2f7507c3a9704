//! Tag decisions: retention policies parsed from YAML, evaluated per tag with a reason for each.
//!
//! Every rule looks at all the tags it matches in a repository on its own; a tag is deleted
//! when at least one rule would delete it, no rule keeps it, and nothing protects it. So the
//! outcome never depends on the order of rules (see docs/POLICY.md).

pub mod semver;

use crate::error::{Error, Result};
use crate::gc::mark;
use crate::model::digest::Digest;
use crate::model::duration::{self, Span};
pub use crate::model::{Decision, Decisions};
use crate::model::{Layout, Repo, Rules, Tag, Time};
use crate::policy::semver::Version;
use crate::units::human_age;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// The policy file

/// Where ages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AgeFrom {
    /// When the tag was last set: the mtime of its `current/link`.
    #[default]
    Pushed,
    /// The image config's `created`, falling back to `pushed`.
    Created,
}

impl AgeFrom {
    /// The policy file's own word for it (`age_from: pushed`).
    pub fn word(self) -> &'static str {
        match self {
            AgeFrom::Pushed => "pushed",
            AgeFrom::Created => "created",
        }
    }
}

/// A parsed, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub path: PathBuf,
    pub age_from: AgeFrom,
    pub rules: Vec<Rule>,
    pub protect_tags: Option<Matcher>,
    pub protect_digests: HashSet<Digest>,
    /// `untagged: {older_than: AGE}`: untagged manifests pushed more than AGE ago go, as with
    /// `gc --delete-untagged=AGE`.
    pub untagged_older_than: Option<Span>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub repositories: Matcher,
    pub tags: Matcher,
    pub group_by: Option<regex::Regex>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub enum Action {
    Keep(Keep),
    Delete(Delete),
}

/// A tag is kept when it meets any criterion; the rule deletes the matched tags that meet none.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    pub newest: Option<usize>,
    pub within: Option<DurationSpec>,
    pub semver: Option<usize>,
    #[serde(default)]
    pub always: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    pub older_than: Option<DurationSpec>,
}

impl Rule {
    /// Whether the rule's outcome depends on ages (the restored-registry safety net).
    fn uses_age(&self) -> bool {
        match &self.action {
            Action::Keep(k) => k.newest.is_some() || k.within.is_some(),
            Action::Delete(d) => d.older_than.is_some(),
        }
    }
}

/// A duration written as `90d`, `12h`, `2w`.
#[derive(Debug, Clone, Copy)]
pub struct DurationSpec(pub Duration);

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(u64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::N(0) => "0".into(),
            Raw::N(n) => {
                return Err(serde::de::Error::custom(format!(
                    "invalid duration {n}: give a unit, e.g. {n}d or {n}h"
                )));
            }
        };
        duration::parse(&text)
            .map(DurationSpec)
            .map_err(serde::de::Error::custom)
    }
}

/// Include and exclude patterns: globs (`*` stays within a path segment, `**` crosses),
/// `re:` anchored regular expressions, and `!` before either to exclude.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    source: Vec<String>,
}

#[derive(Debug, Clone)]
enum Pattern {
    Glob(globset::GlobMatcher),
    Regex(regex::Regex),
}

impl Pattern {
    fn is_match(&self, s: &str) -> bool {
        match self {
            Pattern::Glob(g) => g.is_match(s),
            Pattern::Regex(r) => r.is_match(s),
        }
    }
}

impl Matcher {
    pub fn compile(patterns: &[String]) -> std::result::Result<Matcher, String> {
        let mut m = Matcher::default();
        for p in patterns {
            m.push(p, compile_one(p)?);
        }
        Ok(m)
    }

    fn push(&mut self, source: &str, (negated, pattern): (bool, Pattern)) {
        self.source.push(source.to_string());
        if negated {
            self.exclude.push(pattern);
        } else {
            self.include.push(pattern);
        }
    }

    /// Matches when some include matches (or there are none) and no exclude does.
    pub fn is_match(&self, s: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.is_match(s)))
            && !self.exclude.iter().any(|p| p.is_match(s))
    }

    pub fn patterns(&self) -> &[String] {
        &self.source
    }
}

/// One pattern: whether it excludes (`!`), and what it matches. Errors show the pattern as
/// written, not the anchored form a regular expression is compiled in.
fn compile_one(p: &str) -> std::result::Result<(bool, Pattern), String> {
    let (negated, body) = match p.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    if body.is_empty() {
        return Err(format!("empty pattern {p:?}"));
    }
    let pattern = if let Some(re) = body.strip_prefix("re:") {
        let bad = |e: regex::Error| format!("bad regular expression {p:?}: {e}");
        regex::Regex::new(re).map_err(bad)?;
        Pattern::Regex(regex::Regex::new(&format!("^(?:{re})$")).map_err(bad)?)
    } else {
        let glob = globset::GlobBuilder::new(body)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("bad glob {p:?}: {}", e.kind()))?;
        Pattern::Glob(glob.compile_matcher())
    };
    Ok((negated, pattern))
}

/// A pattern of a list, compiled as it is read, so that YAML places an error on its own line.
struct Item(String, (bool, Pattern));

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // Compiled inside the visitor: an error raised there carries the scalar's own line.
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Item;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a pattern")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Item, E> {
                Ok(Item(s.to_string(), compile_one(s).map_err(E::custom)?))
            }
        }
        d.deserialize_str(Visit)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Matcher;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a pattern or a list of patterns")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Matcher, E> {
                let mut m = Matcher::default();
                m.push(s, compile_one(s).map_err(E::custom)?);
                Ok(m)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Matcher, A::Error> {
                let mut m = Matcher::default();
                while let Some(Item(source, compiled)) = seq.next_element()? {
                    m.push(&source, compiled);
                }
                Ok(m)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `group_by`: a regular expression whose captures name a tag's group.
#[derive(Debug, Clone)]
struct GroupBy(regex::Regex);

impl<'de> Deserialize<'de> for GroupBy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // Checked inside the visitor, so that YAML places an error on the pattern's own line.
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = GroupBy;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a regular expression with a capture group")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<GroupBy, E> {
                let re = regex::Regex::new(s).map_err(|e| {
                    E::custom(format!("bad group_by regular expression {s:?}: {e}"))
                })?;
                if re.captures_len() < 2 {
                    return Err(E::custom(format!(
                        "group_by {s:?} has no capture group: the captures name the group"
                    )));
                }
                Ok(GroupBy(re))
            }
        }
        d.deserialize_str(Visit)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: u32,
    #[serde(default)]
    age_from: AgeFrom,
    #[serde(default)]
    rules: Vec<RawRule>,
    protect: Option<RawProtect>,
    untagged: Option<RawUntagged>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUntagged {
    older_than: DurationSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtect {
    tags: Option<Matcher>,
    digests_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRuleFields")]
struct RawRule(Rule);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleFields {
    name: String,
    repositories: Option<Matcher>,
    tags: Option<Matcher>,
    group_by: Option<GroupBy>,
    keep: Option<Keep>,
    delete: Option<Delete>,
}

impl TryFrom<RawRuleFields> for RawRule {
    type Error = String;
    fn try_from(r: RawRuleFields) -> std::result::Result<Self, String> {
        let action = match (r.keep, r.delete) {
            (Some(k), None) => {
                if k.newest.is_none() && k.within.is_none() && k.semver.is_none() && !k.always {
                    return Err(format!(
                        "rule {:?}: keep needs at least one of newest, within, semver, always",
                        r.name
                    ));
                }
                if k.newest == Some(0) || k.semver == Some(0) {
                    return Err(format!(
                        "rule {:?}: a count of 0 keeps nothing; use delete: {{}} to delete all matched tags",
                        r.name
                    ));
                }
                Action::Keep(k)
            }
            (None, Some(d)) => Action::Delete(d),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "rule {:?} has both keep and delete; make them two rules",
                    r.name
                ));
            }
            (None, None) => return Err(format!("rule {:?} has neither keep nor delete", r.name)),
        };
        if r.name.trim().is_empty() {
            return Err("a rule has an empty name".into());
        }
        Ok(RawRule(Rule {
            name: r.name,
            repositories: r.repositories.unwrap_or_default(),
            tags: r.tags.unwrap_or_default(),
            group_by: r.group_by.map(|g| g.0),
            action,
        }))
    }
}

impl Policy {
    /// Reads and validates a policy file; errors name the file and, where YAML tells, the line.
    pub fn load(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Policy::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Policy> {
        let bad = |message: String| Error::Policy {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawPolicy = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if raw.version != 1 {
            return Err(bad(format!(
                "version {} is not supported; this regsweep reads version 1",
                raw.version
            )));
        }
        let mut names = HashSet::new();
        for r in &raw.rules {
            if !names.insert(r.0.name.as_str()) {
                return Err(bad(format!(
                    "two rules are named {:?}; names must be unique, reports cite them",
                    r.0.name
                )));
            }
        }
        let mut protect_tags = None;
        let mut protect_digests = HashSet::new();
        if let Some(p) = raw.protect {
            protect_tags = p.tags;
            if let Some(file) = p.digests_file {
                let file = path.parent().unwrap_or(Path::new(".")).join(file);
                let list = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
                for (n, line) in list.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let d = Digest::parse(line).ok_or_else(|| Error::Policy {
                        path: file.clone(),
                        message: format!("line {}: {line:?} is not sha256:<hex>", n + 1),
                    })?;
                    protect_digests.insert(d);
                }
            }
        }
        Ok(Policy {
            path: path.to_path_buf(),
            age_from: raw.age_from,
            rules: raw.rules.into_iter().map(|r| r.0).collect(),
            protect_tags,
            protect_digests,
            untagged_older_than: raw
                .untagged
                .map(|u| Span::from_secs(u.older_than.0.as_secs())),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation

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
    let mut ev = Evaluation::default();
    for repo in &layout.repos {
        let (decisions, explain, refusals) = evaluate_repo(policy, repo, created, now);
        ev.decisions.repos.push(decisions);
        ev.explain.extend(explain);
        ev.refusals.extend(refusals);
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
    repo: &Repo,
    created: &HashMap<Digest, Time>,
    now: Time,
) -> (Vec<Decision>, Vec<TagExplain>, Vec<String>) {
    let n = repo.tags.len();
    let times: Vec<Option<Time>> = repo
        .tags
        .iter()
        .map(|t| age_time(policy, t, created, now))
        .collect();
    let mut votes: Vec<Vec<(usize, Vote)>> = (0..n).map(|_| Vec::new()).collect();
    let mut in_age_scope = vec![false; n];
    // Tags rules may look at: a readable current link, a valid name, not a signature tag.
    let eligible: Vec<usize> = (0..n)
        .filter(|&i| {
            let t = &repo.tags[i];
            t.current.is_some()
                && crate::model::paths::valid_tag(&t.name)
                && cosign_subject(&t.name).is_none()
        })
        .collect();

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
            for (i, vote) in rule_votes(rule, repo, &members, &times, now, &in_group) {
                votes[i].push((r, vote));
            }
        }
    }

    let mut decisions = Vec::with_capacity(n);
    let mut explain = Vec::with_capacity(n);
    for (i, tag) in repo.tags.iter().enumerate() {
        let mut reasons = Vec::new();
        let mut keep = false;
        let mut delete_rule = None;
        if tag.current.is_none() {
            reasons.push("no readable current link: never deleted".into());
            keep = true;
        } else if !crate::model::paths::valid_tag(&tag.name) {
            reasons.push("not a valid tag name: never deleted".into());
            keep = true;
        } else if let Some(subject) = cosign_subject(&tag.name) {
            reasons.push(format!(
                "signature tag: stays while {subject} is reached by a kept tag"
            ));
            keep = true;
        }
        if let Some(m) = &policy.protect_tags
            && m.is_match(&tag.name)
        {
            reasons.push(format!("protected by protect.tags {:?}", m.patterns()));
            keep = true;
        }
        if let Some(c) = tag.current
            && policy.protect_digests.contains(&c.digest)
        {
            reasons.push(format!(
                "protected: {} is in protect.digests_file",
                c.digest
            ));
            keep = true;
        }
        let mut rules = Vec::new();
        for (r, vote) in std::mem::take(&mut votes[i]) {
            let name = &policy.rules[r].name;
            rules.push(name.clone());
            match vote {
                Vote::Keep(why) => {
                    keep = true;
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
        let delete = !keep && delete_rule.is_some();
        decisions.push(match (&delete_rule, delete) {
            (Some(rule), true) => Decision::Delete { rule: rule.clone() },
            _ => Decision::Keep,
        });
        explain.push(TagExplain {
            repository: repo.name.clone(),
            tag: tag.name.clone(),
            digest: tag.current.map(|c| c.digest),
            delete,
            rule: if delete { delete_rule } else { None },
            age_seconds: times[i].map(|t| now - t),
            rules,
            reasons,
        });
    }

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
    (decisions, explain, refusals)
}

/// What one rule says of each tag of one group.
fn rule_votes(
    rule: &Rule,
    repo: &Repo,
    members: &[usize],
    times: &[Option<Time>],
    now: Time,
    in_group: &str,
) -> Vec<(usize, Vote)> {
    let name = |i: usize| repo.tags[i].name.as_str();
    let age = |i: usize| now - times[i].unwrap_or(now);
    match &rule.action {
        Action::Delete(d) => members
            .iter()
            .map(|&i| {
                let vote = match d.older_than {
                    None => Vote::Delete("delete: {} takes every tag it matches".into()),
                    Some(limit) if age(i) > limit.0.as_secs() as i64 => Vote::Delete(format!(
                        "older than {} (age {})",
                        duration::format(limit.0),
                        human_age(age(i))
                    )),
                    Some(limit) => Vote::Neutral(format!(
                        "not older than {} (age {})",
                        duration::format(limit.0),
                        human_age(age(i))
                    )),
                };
                (i, vote)
            })
            .collect(),
        Action::Keep(k) => {
            let mut newest_rank = HashMap::new();
            if let Some(n) = k.newest {
                let mut by_age = members.to_vec();
                // Youngest first; ties broken by name so runs are reproducible.
                by_age.sort_by(|&a, &b| times[b].cmp(&times[a]).then_with(|| name(a).cmp(name(b))));
                for (rank, &i) in by_age.iter().take(n).enumerate() {
                    newest_rank.insert(i, rank + 1);
                }
            }
            let mut semver_rank = HashMap::new();
            if let Some(n) = k.semver {
                let mut versions: Vec<(Version, usize)> = members
                    .iter()
                    .filter_map(|&i| Version::parse(name(i)).map(|v| (v, i)))
                    .collect();
                versions
                    .sort_by(|(va, a), (vb, b)| vb.cmp(va).then_with(|| name(*a).cmp(name(*b))));
                for (rank, (_, i)) in versions.iter().take(n).enumerate() {
                    semver_rank.insert(*i, rank + 1);
                }
            }
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
                            None if Version::parse(name(i)).is_none() => {
                                no.push("not a semantic version".into())
                            }
                            None => {
                                no.push(format!("not among the {n} highest versions{in_group}"))
                            }
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
    }
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
        let (before, _) = mark::mark_repo(layout, repo, plain, &rules);
        let decisions = &ev.decisions.repos[r];
        let (after, _) = mark::mark_repo(
            layout,
            repo,
            |i| plain(i) && !matches!(decisions[i], Decision::Delete { .. }),
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

#[cfg(test)]
mod tests;
