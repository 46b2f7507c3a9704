//! Tag decisions: retention policies parsed from YAML, evaluated per tag with a reason for each.
//!
//! Every rule looks at all the tags it matches in a repository on its own; a tag is deleted
//! when at least one rule would delete it, no rule keeps it, and nothing protects it. So the
//! outcome never depends on the order of rules (see docs/POLICY.md).

pub mod budget;
pub mod calendar;
pub mod semver;
pub mod used;

use crate::error::{Error, Result};
use crate::model::digest::Digest;
use crate::model::duration::{self, Span};
use crate::model::mark;
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
    /// `protect.images_file`: images in use, read (again) with the policy.
    pub protect_images: crate::model::inuse::Images,
    /// Where `protect.images_file` is.
    pub protect_images_file: Option<PathBuf>,
    /// `protect.pulled_within`: tags and manifests pulled within this long stay (needs a ledger).
    pub protect_pulled_within: Option<Span>,
    /// `untagged: {older_than: AGE}`: untagged manifests pushed more than AGE ago go, as with
    /// `gc --delete-untagged=AGE`.
    pub untagged_older_than: Option<Span>,
    /// `budget:`: watermarks of space, and the order in which tags go to meet them.
    pub budget: Option<budget::Budget>,
    /// `quotas:`: a size per matched repository.
    pub quotas: Vec<budget::Quota>,
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
    /// Kept when pulled within this long (the ledger's last pull of the tag or its digest).
    pub pulled_within: Option<DurationSpec>,
    /// Kept when among the N most recently pulled of the group.
    pub most_recently_pulled: Option<usize>,
    /// Calendar tiers (restic `forget`): the newest tag of each of the last N hours, days,
    /// ISO weeks, months, years (UTC) that have one.
    pub hourly: Option<calendar::Count>,
    pub daily: Option<calendar::Count>,
    pub weekly: Option<calendar::Count>,
    pub monthly: Option<calendar::Count>,
    pub yearly: Option<calendar::Count>,
}

impl Keep {
    /// The calendar tiers given, shortest period first.
    pub fn tiers(&self) -> calendar::Tiers {
        use calendar::Period::*;
        let all = [
            (Hourly, self.hourly),
            (Daily, self.daily),
            (Weekly, self.weekly),
            (Monthly, self.monthly),
            (Yearly, self.yearly),
        ];
        calendar::Tiers(
            all.into_iter()
                .filter_map(|(p, c)| c.map(|c| (p, c)))
                .collect(),
        )
    }
}

/// A tag is deleted when it meets every criterion given (none: every matched tag).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    pub older_than: Option<DurationSpec>,
    /// Deleted when not pulled for this long (needs a ledger that covers it).
    pub not_pulled_for: Option<DurationSpec>,
}

impl Rule {
    /// Whether the rule's outcome depends on ages (the restored-registry safety net).
    fn uses_age(&self) -> bool {
        match &self.action {
            Action::Keep(k) => k.newest.is_some() || k.within.is_some() || !k.tiers().is_empty(),
            Action::Delete(d) => d.older_than.is_some(),
        }
    }

    /// The window of pulls the rule asks about ("pulled within 30d"), with its words.
    pub fn pull_window(&self) -> Option<(String, u64)> {
        let (word, d) = match &self.action {
            Action::Keep(k) => ("pulled_within", k.pulled_within?),
            Action::Delete(d) => ("not_pulled_for", d.not_pulled_for?),
        };
        Some((format!("{word}: {}", duration::format(d.0)), d.0.as_secs()))
    }

    /// Whether the rule reads the pull ledger at all.
    pub fn uses_pulls(&self) -> bool {
        self.pull_window().is_some()
            || matches!(&self.action, Action::Keep(k) if k.most_recently_pulled.is_some())
    }
}

/// A policy value written as a number or as text (`7`, `unlimited`; `400GiB`, `85%`; `90d`):
/// each field's type reads it its own way.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum NumOrText {
    N(u64),
    S(String),
}

/// A duration written as `90d`, `12h`, `2w`.
#[derive(Debug, Clone, Copy)]
pub struct DurationSpec(pub Duration);

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = match NumOrText::deserialize(d)? {
            NumOrText::S(s) => s,
            NumOrText::N(0) => "0".into(),
            NumOrText::N(n) => {
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
    budget: Option<RawBudgetItem>,
    #[serde(default)]
    quotas: Vec<RawQuotaItem>,
}

/// `budget:`, checked as it is read so that an error carries its line.
#[derive(Deserialize)]
#[serde(try_from = "budget::RawBudget")]
struct RawBudgetItem(budget::Budget);

impl TryFrom<budget::RawBudget> for RawBudgetItem {
    type Error = String;
    fn try_from(r: budget::RawBudget) -> std::result::Result<Self, String> {
        budget::Budget::try_from(r).map(RawBudgetItem)
    }
}

#[derive(Deserialize)]
#[serde(try_from = "budget::RawQuota")]
struct RawQuotaItem(budget::Quota);

impl TryFrom<budget::RawQuota> for RawQuotaItem {
    type Error = String;
    fn try_from(r: budget::RawQuota) -> std::result::Result<Self, String> {
        budget::Quota::try_from(r).map(RawQuotaItem)
    }
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
    images_file: Option<PathBuf>,
    pulled_within: Option<DurationSpec>,
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
                if k.newest.is_none()
                    && k.within.is_none()
                    && k.semver.is_none()
                    && !k.always
                    && k.pulled_within.is_none()
                    && k.most_recently_pulled.is_none()
                    && k.tiers().is_empty()
                {
                    return Err(format!(
                        "rule {:?}: keep needs at least one of newest, within, semver, always, pulled_within, most_recently_pulled, hourly, daily, weekly, monthly, yearly",
                        r.name
                    ));
                }
                if k.newest == Some(0) || k.semver == Some(0) || k.most_recently_pulled == Some(0) {
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
        let raw: RawPolicy = crate::yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
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
        let mut protect_images = crate::model::inuse::Images::default();
        let mut protect_images_file = None;
        let mut protect_pulled_within = None;
        if let Some(p) = raw.protect {
            protect_tags = p.tags;
            protect_pulled_within = p.pulled_within.map(|d| Span::from_secs(d.0.as_secs()));
            let dir = path.parent().unwrap_or(Path::new("."));
            if let Some(file) = p.images_file {
                let file = dir.join(file);
                protect_images_file = Some(file.clone());
                let text = read_listed(path, "images_file", &file)?;
                let name = file.display().to_string();
                protect_images =
                    crate::model::inuse::parse(&text, &name).map_err(|m| Error::Policy {
                        path: file.clone(),
                        message: m,
                    })?;
            }
            if let Some(file) = p.digests_file {
                let file = dir.join(file);
                let list = read_listed(path, "digests_file", &file)?;
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
            protect_images,
            protect_images_file,
            protect_pulled_within,
            untagged_older_than: raw
                .untagged
                .map(|u| Span::from_secs(u.older_than.0.as_secs())),
            budget: raw.budget.map(|b| b.0),
            quotas: raw.quotas.into_iter().map(|q| q.0).collect(),
        })
    }
}

/// A file the policy names under `protect`, read; an error names the policy and the key.
fn read_listed(policy: &Path, key: &str, file: &Path) -> Result<String> {
    std::fs::read_to_string(file).map_err(|e| Error::Policy {
        path: policy.to_path_buf(),
        message: format!("protect.{key} {}: {e}", file.display()),
    })
}

impl Policy {
    /// Whether anything in the policy reads the pull ledger.
    pub fn uses_pulls(&self) -> bool {
        self.protect_pulled_within.is_some() || self.rules.iter().any(Rule::uses_pulls)
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation

mod evaluate;

pub use evaluate::*;

#[cfg(test)]
mod tests;
