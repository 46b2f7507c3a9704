//! What a pull ledger says: when each tag and digest was last pulled, and the span of time the
//! ledger can answer for. Pure: the ledger module reads it from its database.

use crate::model::Time;
use crate::model::digest::Digest;
use crate::units::human_age;
use std::collections::HashMap;
use std::path::PathBuf;

/// A ledger's source (`webhook`, `log`) and the time it covers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    pub source: String,
    /// Since when every pull reached the ledger (the listener's first start, the first log line).
    pub covered_from: Time,
    /// Until when (the listener's last heartbeat or event, the last log line).
    pub covered_until: Time,
    pub first_event: Option<Time>,
    pub last_event: Option<Time>,
}

/// Last pulls by (repository, tag) and (repository, digest), with the spans covered.
#[derive(Debug, Clone, Default)]
pub struct PullHistory {
    pub path: PathBuf,
    pub tags: HashMap<(String, String), Time>,
    pub digests: HashMap<(String, Digest), Time>,
    /// Last push of each (repository, digest) the ledger saw pushed.
    pub pushed: HashMap<(String, Digest), Time>,
    pub spans: Vec<Span>,
}

/// How far in the future a ledger may end before its clock is not believed.
pub const FUTURE_SLACK: Time = 300;

impl PullHistory {
    /// The union of the sources' spans: earliest start, latest end.
    pub fn covered(&self) -> Option<(Time, Time)> {
        let from = self.spans.iter().map(|s| s.covered_from).min()?;
        let until = self.spans.iter().map(|s| s.covered_until).max()?;
        Some((from, until))
    }

    /// When `tag` (naming `current`) was last pulled, by its tag or by that digest.
    pub fn tag_pulled(&self, repo: &str, tag: &str, current: Option<&Digest>) -> Option<Time> {
        let by_tag = self.tags.get(&(repo.to_string(), tag.to_string())).copied();
        let by_digest = current.and_then(|d| self.digest_pulled(repo, d));
        by_tag.max(by_digest)
    }

    pub fn digest_pulled(&self, repo: &str, d: &Digest) -> Option<Time> {
        self.digests.get(&(repo.to_string(), *d)).copied()
    }

    /// Why the ledger cannot say what was pulled in the last `window` seconds before `now`
    /// (it began later, it ends more than `max_lag` before now, or its clock is ahead); `None`
    /// when it can.
    pub fn gap(&self, window: u64, now: Time, max_lag: u64) -> Option<String> {
        let shown = self.path.display();
        let Some((from, until)) = self.covered() else {
            return Some(format!("the ledger {shown} has recorded nothing yet"));
        };
        let span = format!("it covers {} to {}", stamp(from), stamp(until));
        if until > now + FUTURE_SLACK {
            return Some(format!(
                "the ledger {shown} ends in the future ({span}; now is {}): check the clocks of this host and the registry's",
                stamp(now)
            ));
        }
        let start = now.saturating_sub(window as i64);
        if from > start {
            return Some(format!(
                "the ledger {shown} began {} ago ({span}), less than the {} the rule asks about",
                human_age(now - from),
                human_age(window as i64)
            ));
        }
        if now - until > max_lag as i64 {
            return Some(format!(
                "the ledger {shown} ends {} ago ({span}), more than --ledger-lag {} behind: is the listener running, or the log imported?",
                human_age(now - until),
                human_age(max_lag as i64)
            ));
        }
        None
    }
}

/// A moment as RFC 3339, to the second.
pub fn stamp(t: Time) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(from: Time, until: Time) -> PullHistory {
        PullHistory {
            path: "l.db".into(),
            spans: vec![Span {
                source: "webhook".into(),
                covered_from: from,
                covered_until: until,
                first_event: None,
                last_event: None,
            }],
            ..PullHistory::default()
        }
    }

    #[test]
    fn a_ledger_answers_only_for_the_time_it_covers() {
        let day = 86_400;
        let now = 100 * day;
        assert!(
            history(now - 91 * day, now)
                .gap(90 * day as u64, now, 3600)
                .is_none()
        );
        let short = history(now - 10 * day, now)
            .gap(90 * day as u64, now, 3600)
            .unwrap();
        assert!(short.contains("began 10d ago"), "{short}");
        let stale = history(0, now - 2 * day)
            .gap(day as u64, now, 3600)
            .unwrap();
        assert!(stale.contains("ends 2d ago"), "{stale}");
        let future = history(0, now + day).gap(day as u64, now, 3600).unwrap();
        assert!(future.contains("future"), "{future}");
        assert!(PullHistory::default().gap(1, now, 1).is_some());
    }

    #[test]
    fn a_tag_counts_as_pulled_by_its_digest_too() {
        let d = Digest([7; 32]);
        let mut h = history(0, 10);
        h.tags.insert(("r".into(), "t".into()), 5);
        h.digests.insert(("r".into(), d), 8);
        assert_eq!(h.tag_pulled("r", "t", Some(&d)), Some(8));
        assert_eq!(h.tag_pulled("r", "t", None), Some(5));
        assert_eq!(h.tag_pulled("r", "u", None), None);
    }
}
