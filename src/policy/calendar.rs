//! Calendar tiers (`keep: {hourly, daily, weekly, monthly, yearly}`), as restic's `forget`
//! applies them: walking a group's tags newest first, each tier keeps the newest tag of each
//! of its last N periods that have a tag; a tier with counts left when the walk ends keeps the
//! oldest tag too, so that history grows into the tier. Periods are UTC calendar ones: hours,
//! days, ISO weeks (Monday to Sunday, numbered by the ISO year), months, years.

use crate::model::Time;
use chrono::{Datelike, Timelike};
use serde::{Deserialize, Deserializer};

/// One tier's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    pub fn word(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period holding `t`, as its name (`2026-12-06T10`, `2026-12-06`, `2026-W49`,
    /// `2026-12`, `2026`): equal names, one period.
    pub fn of(self, t: Time) -> String {
        let d = chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
        match self {
            Period::Hourly => format!("{}T{:02}", d.format("%Y-%m-%d"), d.hour()),
            Period::Daily => d.format("%Y-%m-%d").to_string(),
            Period::Weekly => {
                let w = d.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Period::Monthly => d.format("%Y-%m").to_string(),
            Period::Yearly => d.year().to_string(),
        }
    }
}

/// How many periods a tier keeps: a count, or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Last(usize),
    Unlimited,
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        match super::NumOrText::deserialize(d)? {
            super::NumOrText::N(0) => Err(serde::de::Error::custom(
                "a count of 0 keeps nothing; leave the tier out",
            )),
            super::NumOrText::N(n) => Ok(Count::Last(usize::try_from(n).unwrap_or(usize::MAX))),
            super::NumOrText::S(s) if s == "unlimited" => Ok(Count::Unlimited),
            super::NumOrText::S(s) => Err(serde::de::Error::custom(format!(
                "{s:?}: a tier takes a count (7) or \"unlimited\""
            ))),
        }
    }
}

/// The tiers of one `keep`, each with its count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tiers(pub Vec<(Period, Count)>);

impl Tiers {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `"daily 7, weekly 4"`.
    pub fn describe(&self) -> String {
        let one = |(p, c): &(Period, Count)| match c {
            Count::Last(n) => format!("{} {n}", p.word()),
            Count::Unlimited => format!("{} unlimited", p.word()),
        };
        self.0.iter().map(one).collect::<Vec<_>>().join(", ")
    }

    /// For `times`, newest first: why each is kept (`daily 2026-12-06`, `oldest monthly
    /// 2026-09`), empty for those no tier keeps.
    pub fn apply(&self, times: &[Time]) -> Vec<Vec<String>> {
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); times.len()];
        for &(period, count) in &self.0 {
            let mut left = match count {
                Count::Last(n) => Some(n),
                Count::Unlimited => None,
            };
            let mut last: Option<String> = None;
            for (nr, &t) in times.iter().enumerate() {
                if left == Some(0) {
                    break;
                }
                let here = period.of(t);
                let oldest = nr + 1 == times.len();
                let new = last.as_deref() != Some(here.as_str());
                if !new && !oldest {
                    continue;
                }
                let word = if new { "" } else { "oldest " };
                reasons[nr].push(format!("{word}{} {here}", period.word()));
                last = Some(here);
                left = left.map(|n| n - 1);
            }
        }
        reasons
    }
}

#[cfg(test)]
mod tests;
