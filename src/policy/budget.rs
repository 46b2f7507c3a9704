//! Space budgets and quotas as a policy states them: watermarks (`budget: {high: 85%, low:
//! 75%}` of the filesystem, or `{high: 400GiB, low: 350GiB}` of the registry's own bytes), the
//! order of value that says which tags go first, and per-repository quotas. Parsed and checked
//! here; applied by `stages::budget`, which projects with the real mark.

use crate::model::duration::{self, Span};
use serde::{Deserialize, Deserializer};

/// A watermark: a share of the filesystem holding the root, or a number of the registry's bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Percent(f64),
    Bytes(u64),
}

impl Limit {
    pub fn describe(self) -> String {
        match self {
            Limit::Percent(p) => format!("{}%", trim(p)),
            Limit::Bytes(b) => crate::units::human_bytes(b),
        }
    }
}

fn trim(p: f64) -> String {
    let s = format!("{p:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// `85%`, `400GiB`, `350 GB`, `1.5TiB`, `1000000` (bytes).
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = (p.trim().parse()).map_err(|_| format!("{text:?}: not a percentage"))?;
        if !(v > 0.0 && v <= 100.0) {
            return Err(format!("{text:?}: a percentage is over 0 and at most 100"));
        }
        return Ok(Limit::Percent(v));
    }
    parse_size(t).map(Limit::Bytes).ok_or_else(|| {
        format!("{text:?}: give a size (400GiB, 350GB) or a share of the disk (85%)")
    })
}

/// A size with an optional unit: B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB (of 1024).
pub fn parse_size(t: &str) -> Option<u64> {
    let split = (t.find(|c: char| !(c.is_ascii_digit() || c == '.'))).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim();
    let mul: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        _ => return None,
    };
    let v = n * mul;
    (1.0..1.8e19).contains(&v).then_some(v as u64)
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Limit, D::Error> {
        match super::NumOrText::deserialize(d)? {
            super::NumOrText::N(n) if n > 0 => Ok(Limit::Bytes(n)),
            super::NumOrText::N(_) => Err(serde::de::Error::custom("a limit of 0 bytes")),
            super::NumOrText::S(s) => parse_limit(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// What makes a tag less valuable, in the budget's `order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKey {
    /// Never pulled (in the ledger's window) before pulled.
    NeverPulled,
    /// Least recently pulled first.
    LastPulled,
    /// Oldest push first.
    Pushed,
}

impl OrderKey {
    pub fn word(self) -> &'static str {
        match self {
            OrderKey::NeverPulled => "never_pulled",
            OrderKey::LastPulled => "last_pulled",
            OrderKey::Pushed => "pushed",
        }
    }
}

/// `budget:` in a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub high: Limit,
    pub low: Limit,
    pub order: Vec<OrderKey>,
    /// How far back "never pulled" looks; the ledger must cover it.
    pub pull_window: Span,
}

impl Budget {
    pub fn uses_pulls(&self) -> bool {
        self.order.iter().any(|k| *k != OrderKey::Pushed)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    high: Limit,
    low: Limit,
    order: Option<Vec<OrderKey>>,
    pull_window: Option<super::DurationSpec>,
}

impl TryFrom<RawBudget> for Budget {
    type Error = String;
    fn try_from(r: RawBudget) -> Result<Budget, String> {
        match (r.high, r.low) {
            (Limit::Percent(h), Limit::Percent(l)) if l >= h => {}
            (Limit::Bytes(h), Limit::Bytes(l)) if l >= h => {}
            (Limit::Percent(_), Limit::Percent(_)) | (Limit::Bytes(_), Limit::Bytes(_)) => {
                return Ok(Budget {
                    high: r.high,
                    low: r.low,
                    order: checked_order(r.order, "budget")?,
                    pull_window: window(r.pull_window),
                });
            }
            _ => {
                return Err(format!(
                    "budget.high ({}) and budget.low ({}) must both be shares of the disk or both sizes",
                    r.high.describe(),
                    r.low.describe()
                ));
            }
        }
        Err(format!(
            "budget.low ({}) must be below budget.high ({}): the gc deletes from above high down to low",
            r.low.describe(),
            r.high.describe()
        ))
    }
}

fn default_order() -> Vec<OrderKey> {
    vec![
        OrderKey::NeverPulled,
        OrderKey::LastPulled,
        OrderKey::Pushed,
    ]
}

/// How a quota counts a repository's bytes, as `du` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QuotaBy {
    /// What only it holds (what deleting it would free).
    #[default]
    Exclusive,
    /// Every distinct blob it links.
    Total,
}

/// `quotas:` in a policy: each matched repository on its own.
#[derive(Debug, Clone)]
pub struct Quota {
    pub repositories: super::Matcher,
    pub max: u64,
    pub by: QuotaBy,
    pub order: Vec<OrderKey>,
    pub pull_window: Span,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuota {
    repositories: super::Matcher,
    max: Limit,
    #[serde(default)]
    by: QuotaBy,
    order: Option<Vec<OrderKey>>,
    pull_window: Option<super::DurationSpec>,
}

/// An order as given (or the default), checked: not empty, no key twice.
fn checked_order(order: Option<Vec<OrderKey>>, key: &str) -> Result<Vec<OrderKey>, String> {
    let order = order.unwrap_or_else(default_order);
    if order.is_empty() {
        return Err(format!(
            "{key}.order is empty: name at least one of never_pulled, last_pulled, pushed"
        ));
    }
    let mut seen = order.clone();
    seen.sort_by_key(|k| k.word());
    seen.dedup();
    if seen.len() != order.len() {
        return Err(format!("{key}.order names a key twice"));
    }
    Ok(order)
}

fn window(w: Option<super::DurationSpec>) -> Span {
    Span::from_secs(w.map_or(30 * 86_400, |d| d.0.as_secs()))
}

impl TryFrom<RawQuota> for Quota {
    type Error = String;
    fn try_from(r: RawQuota) -> Result<Quota, String> {
        let Limit::Bytes(max) = r.max else {
            return Err(format!(
                "quota max {} is a share of the disk; a quota is a size (50GiB)",
                r.max.describe()
            ));
        };
        if r.repositories.patterns().is_empty() {
            return Err("a quota names no repository: give repositories: [\"team-a/*\"]".into());
        }
        Ok(Quota {
            repositories: r.repositories,
            max,
            by: r.by,
            order: checked_order(r.order, "quota")?,
            pull_window: window(r.pull_window),
        })
    }
}

/// `"30d"`, for messages.
pub fn window_words(s: Span) -> String {
    duration::format(std::time::Duration::from_secs(s.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_sizes() {
        assert_eq!(parse_limit("85%"), Ok(Limit::Percent(85.0)));
        assert_eq!(parse_limit("400GiB"), Ok(Limit::Bytes(400 << 30)));
        assert_eq!(parse_limit("350 GB"), Ok(Limit::Bytes(350_000_000_000)));
        assert_eq!(parse_limit("1.5KiB"), Ok(Limit::Bytes(1536)));
        assert_eq!(parse_limit("1000"), Ok(Limit::Bytes(1000)));
        for bad in ["101%", "0%", "-5%", "x%", "12 parsecs", "", "GiB", "1e400"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
        assert_eq!(Limit::Percent(74.56).describe(), "74.6%");
        assert_eq!(Limit::Percent(85.0).describe(), "85%");
    }
}
