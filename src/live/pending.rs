//! The pending-eviction journal: what a sweep beside a live registry's cache leaves at the
//! storage root until the cache has forgotten what went. A run killed between its sweep and
//! its eviction (or its `--restart-command`) leaves the journal behind; the next run that may
//! change the root completes it before it scans, and `check` reports one left.

use super::Swept;
use crate::ledger::event::valid_repository;
use crate::model::Name;
use crate::model::digest::Digest;
use serde::{Deserialize, Serialize};

pub use crate::storage::lock::PENDING_EVICTION;

const SCHEMA: &str = "regsweep/pending-eviction/v1";

/// The journal's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    pub schema: String,
    /// When it was written (RFC 3339), and by which command and process.
    pub written_at: String,
    pub command: String,
    pub pid: u32,
    /// `redis` or `inmemory`.
    pub cache: String,
    /// `redis://host:port/db` (never the password): the Redis to evict from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// What the sweep was to remove, as the cache keys it (a superset of what went).
    #[serde(default)]
    pub blobs: Vec<Digest>,
    #[serde(default)]
    pub links: Vec<(Name, Digest)>,
    /// Too much was swept to list within a state file regsweep reads back: completing the
    /// journal evicts every blob descriptor the Redis cache holds (the registry looks each up
    /// again in storage as it is asked for).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl Pending {
    /// The journal of a sweep of `swept` beside a Redis cache (`redis: Some(name)`) or an
    /// in-memory one.
    pub fn new(command: &str, redis: Option<String>, swept: &Swept) -> Pending {
        let in_redis = redis.is_some();
        Pending {
            schema: SCHEMA.into(),
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.into(),
            pid: std::process::id(),
            cache: if in_redis { "redis" } else { "inmemory" }.into(),
            redis,
            // A restart forgets everything: an in-memory cache's journal needs no list.
            blobs: if in_redis {
                swept.blobs.clone()
            } else {
                vec![]
            },
            links: if in_redis {
                swept.links.clone()
            } else {
                vec![]
            },
            all: false,
        }
    }

    /// Its bytes, within `limit`: a journal whose lists would pass it lists nothing and asks
    /// for every entry to go instead.
    pub fn to_bytes_within(&self, limit: u64) -> Vec<u8> {
        crate::output::json_within(self, limit).unwrap_or_else(|| {
            Pending {
                blobs: vec![],
                links: vec![],
                all: true,
                ..self.clone()
            }
            .to_bytes()
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a journal, checking what it would make regsweep do: its kind, and repository
    /// names the registry accepts (they become Redis keys).
    pub fn parse(bytes: &[u8]) -> Result<Pending, String> {
        let p: Pending =
            serde_json::from_slice(bytes).map_err(|e| format!("not a journal: {e}"))?;
        if p.schema != SCHEMA {
            return Err(format!("schema {:?}, not {SCHEMA:?}", p.schema));
        }
        match (p.cache.as_str(), &p.redis) {
            ("redis", Some(_)) | ("inmemory", None) => {}
            _ => return Err(format!("cache {:?} with redis {:?}", p.cache, p.redis)),
        }
        if let Some((repo, _)) = p.links.iter().find(|(r, _)| !valid_repository(r)) {
            return Err(format!("{repo:?} is no repository name"));
        }
        Ok(p)
    }

    /// What it asks to evict, as a sweep's [`Swept`].
    pub fn swept(&self) -> Swept {
        Swept {
            blobs: self.blobs.clone(),
            links: self.links.clone(),
            manifests: vec![],
        }
    }

    /// "`gc` (pid 7, 2026-12-06T10:00:00Z), beside redis://h:6379/0 (3 blobs)".
    pub fn describe(&self) -> String {
        let cache = match &self.redis {
            Some(r) if self.all => format!(
                "the registry's Redis cache {r} (too many blobs to list: every entry is to go)"
            ),
            Some(r) => format!(
                "the registry's Redis cache {r} ({} blobs)",
                self.blobs.len()
            ),
            None => "the registry's in-memory cache".into(),
        };
        format!(
            "`{}` (pid {}, {}) swept beside {cache}",
            self.command, self.pid, self.written_at
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swept() -> Swept {
        let d = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        Swept {
            blobs: vec![d],
            links: vec![("acme/app".into(), d)],
            manifests: vec![],
        }
    }

    #[test]
    fn a_journal_reads_back_and_a_crafted_one_is_refused() {
        let p = Pending::new("gc", Some("redis://h:1/0".into()), &swept());
        let back = Pending::parse(&p.to_bytes()).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.swept().links, swept().links);
        assert!(back.describe().contains("redis://h:1/0 (1 blobs)"));
        let mem = Pending::new("apply", None, &swept());
        assert!(mem.blobs.is_empty() && Pending::parse(&mem.to_bytes()).is_ok());
        let text = String::from_utf8(p.to_bytes()).unwrap();
        for bad in [
            text.replace("acme/app", "x::blobs::*"),
            text.replace("pending-eviction/v1", "pending-eviction/v9"),
            text.replace("\"redis\",", "\"inmemory\","),
            text.replace("sha256:aaaa", "sha256:zz"),
            "{".to_string(),
        ] {
            assert!(Pending::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_journal_too_long_to_read_back_lists_nothing_and_asks_for_every_entry() {
        let p = Pending::new("gc", Some("redis://h:1/0".into()), &swept());
        assert_eq!(p.to_bytes_within(1 << 20), p.to_bytes(), "within: as it is");
        let short = p.to_bytes_within(100);
        assert!(
            short.len() > 100,
            "the unlisted journal itself is written whole"
        );
        let back = Pending::parse(&short).unwrap();
        assert!(back.all && back.blobs.is_empty() && back.links.is_empty());
        assert!(
            back.describe().contains("every entry is to go"),
            "{}",
            back.describe()
        );
        // A journal of an earlier build (no `all`) reads as listed.
        assert!(!Pending::parse(&p.to_bytes()).unwrap().all);
    }
}
