//! What a pull ledger says: when each tag and digest was last pulled, and the evidence of the
//! time it can answer for (`coverage`). Pure: the ledger module reads it from its database.

use crate::model::Time;
use crate::model::coverage::{self, Ask, Rejection, Stream};
use crate::model::digest::Digest;
use std::collections::HashMap;
use std::path::PathBuf;

/// Last pulls by (repository, tag) and (repository, digest), with the evidence of coverage.
#[derive(Debug, Clone, Default)]
pub struct PullHistory {
    pub path: PathBuf,
    pub tags: HashMap<(String, String), Time>,
    pub digests: HashMap<(String, Digest), Time>,
    /// Last push of each (repository, digest) the ledger saw pushed.
    pub pushed: HashMap<(String, Digest), Time>,
    /// Its streams of evidence, each with its intervals of proof.
    pub streams: Vec<Stream>,
    /// Deliveries the listener rejected.
    pub rejections: Vec<Rejection>,
    /// When the ledger was created.
    pub created: Option<Time>,
    /// The canary image (`REPOSITORY:TAG`) the listener pulls, kept from every rule.
    pub canary: Option<String>,
    /// Its listener takes events without a token: they are recorded as pulls, not evidence.
    pub unproven: bool,
}

impl PullHistory {
    /// The first and last moment of evidence of any stream.
    pub fn covered(&self) -> Option<(Time, Time)> {
        let from = self
            .streams
            .iter()
            .filter_map(|s| s.intervals.first())
            .min()?;
        let until = self
            .streams
            .iter()
            .filter_map(|s| s.intervals.last())
            .max()?;
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

    /// Why the ledger cannot answer for `ask` (a hole, an instance gone silent, a rejected
    /// delivery); `None` when it can.
    pub fn gap(&self, ask: &Ask) -> Option<String> {
        let why = coverage::judge(&self.streams, &self.rejections, ask)?;
        let open = match self.unproven {
            true => {
                "; its listener takes events without a token, so they prove nothing (any process on that machine could post them): give `pulls listen` --token-file, and the registry's endpoint its header"
            }
            false => "",
        };
        Some(format!("the ledger {}: {why}{open}", self.path.display()))
    }
}

pub use coverage::stamp;

#[cfg(test)]
mod tests {
    use super::*;

    fn history(from: Time, until: Time) -> PullHistory {
        PullHistory {
            path: "l.db".into(),
            streams: vec![Stream {
                source: "webhook".into(),
                instance: "r:5000".into(),
                process: String::new(),
                tolerance: 300,
                intervals: coverage::Intervals(vec![(from, until)]),
                last_event: Some(until),
                last_canary: None,
            }],
            ..PullHistory::default()
        }
    }

    #[test]
    fn a_ledger_answers_only_for_the_time_it_covers() {
        let day = 86_400;
        let now = 100 * day;
        let ask = |window: i64| Ask {
            window: window as u64,
            now,
            max_lag: 3600,
            expect: Default::default(),
        };
        assert!(history(now - 91 * day, now).gap(&ask(90 * day)).is_none());
        let short = history(now - 10 * day, now).gap(&ask(90 * day)).unwrap();
        assert!(short.contains("began 10d ago"), "{short}");
        assert!(short.starts_with("the ledger l.db: "), "{short}");
        let stale = history(0, now - 2 * day).gap(&ask(day)).unwrap();
        assert!(stale.contains("ends 2d ago"), "{stale}");
        let future = history(0, now + day).gap(&ask(day)).unwrap();
        assert!(future.contains("future"), "{future}");
        assert!(PullHistory::default().gap(&ask(1)).is_some());
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
