//! Evicts the registry's blob descriptors from Redis, by the keys distribution writes
//! (`registry/storage/cache/redis`): `blobs::<digest>` (a hash), `repository::<name>::blobs`
//! (a set of digests) and `repository::<name>::blobs::<digest>` (a hash).

use super::{Present, Swept};
use crate::config::registry::RedisConfig;
use crate::model::digest::Digest;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use std::time::Duration;

/// Keys asked for per SCAN step, and commands sent per pipeline.
const BATCH: usize = 1000;

/// A connection to the registry's Redis, checked with PING.
pub struct RedisCache {
    con: redis::Connection,
    /// `redis://host:port/db`, for messages (never the password).
    pub name: String,
}

/// `host:port`, `[v6]:port` or `host` (port 6379).
fn host_port(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, p),
        _ => (addr, "6379"),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{addr:?}: not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{addr:?}: no host"));
    }
    Ok((host.to_string(), port))
}

/// `redis://host:port/db`: how messages and the pending-eviction journal name a Redis (never
/// with its password).
pub fn name(cfg: &RedisConfig) -> String {
    format!("redis://{}/{}", cfg.addr, cfg.db)
}

impl RedisCache {
    /// Connects (5 s), authenticates, selects the database and PINGs.
    pub fn connect(cfg: &RedisConfig) -> Result<RedisCache, String> {
        let name = name(cfg);
        let fail = |why: String| format!("{name}: {why}");
        if cfg.tls {
            return Err(fail(
                "redis.tls is enabled, and regsweep does not speak TLS to Redis".into(),
            ));
        }
        let (host, port) = host_port(&cfg.addr).map_err(fail)?;
        let mut settings = RedisConnectionInfo::default()
            .set_db(cfg.db)
            .set_skip_set_lib_name();
        if let Some(p) = &cfg.password {
            settings = settings.set_password(p);
        }
        if let Some(u) = &cfg.username {
            settings = settings.set_username(u);
        }
        let info = ConnectionAddr::Tcp(host, port)
            .into_connection_info()
            .map_err(|e| fail(e.to_string()))?
            .set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| fail(e.to_string()))?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(|e| fail(e.to_string()))?;
        let timeout = Some(Duration::from_secs(30));
        let _ = con.set_read_timeout(timeout);
        let _ = con.set_write_timeout(timeout);
        redis::cmd("PING")
            .query::<String>(&mut con)
            .map_err(|e| fail(e.to_string()))?;
        Ok(RedisCache { con, name })
    }

    /// Evicts every entry of what was swept, then every entry the scan does not back (a
    /// killed run's, another tool's); how many keys and set members went.
    pub fn evict(&mut self, swept: &Swept, present: &Present) -> Result<u64, String> {
        Ok(self.evict_swept(swept)? + self.reconcile(present)?)
    }

    /// Evicts every blob descriptor entry (a killed run's journal too long to list them); how
    /// many went. Keys naming no sha256 digest are not the registry's and stay.
    pub fn evict_all(&mut self) -> Result<u64, String> {
        self.reconcile(&Present::none())
    }

    /// Evicts every entry of `swept` (a killed run's journal, before a scan); how many went.
    pub fn evict_swept(&mut self, swept: &Swept) -> Result<u64, String> {
        let mut pipe = redis::pipe();
        for d in &swept.blobs {
            pipe.cmd("DEL").arg(format!("blobs::{d}"));
        }
        for (repo, d) in &swept.links {
            pipe.cmd("SREM")
                .arg(format!("repository::{repo}::blobs"))
                .arg(d.to_string());
            pipe.cmd("DEL")
                .arg(format!("repository::{repo}::blobs::{d}"));
        }
        self.run(&pipe)
    }

    /// Sends a pipeline of DEL/SREM commands; the sum of their counts.
    fn run(&mut self, pipe: &redis::Pipeline) -> Result<u64, String> {
        if pipe.is_empty() {
            return Ok(0);
        }
        let counts: Vec<u64> = pipe
            .query(&mut self.con)
            .map_err(|e| format!("{}: {e}", self.name))?;
        Ok(counts.iter().sum())
    }

    /// Every key matching `pattern`, a SCAN step at a time, each step's keys to `each`.
    fn scan(
        &mut self,
        pattern: &str,
        mut each: impl FnMut(&mut Self, Vec<String>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(BATCH)
                .query(&mut self.con)
                .map_err(|e| format!("{}: {e}", self.name))?;
            each(self, keys)?;
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Removes the entries the scan does not back. Keys naming no sha256 digest are not the
    /// registry's blob descriptors and stay.
    fn reconcile(&mut self, present: &Present) -> Result<u64, String> {
        let mut n = 0;
        self.scan("blobs::*", |me, keys| {
            let mut pipe = redis::pipe();
            for k in keys {
                let stale = (k.strip_prefix("blobs::").and_then(Digest::parse))
                    .is_some_and(|d| !present.has_blob(&d));
                if stale {
                    pipe.cmd("DEL").arg(k);
                }
            }
            n += me.run(&pipe)?;
            Ok(())
        })?;
        self.scan("repository::*::blobs::*", |me, keys| {
            let mut pipe = redis::pipe();
            for k in keys {
                let stale = (k.strip_prefix("repository::"))
                    .and_then(|rest| rest.rsplit_once("::blobs::"))
                    .and_then(|(repo, d)| Digest::parse(d).map(|d| (repo, d)))
                    .is_some_and(|(repo, d)| !present.has_link(repo, &d));
                if stale {
                    pipe.cmd("DEL").arg(k);
                }
            }
            n += me.run(&pipe)?;
            Ok(())
        })?;
        let mut sets = Vec::new();
        self.scan("repository::*::blobs", |_, keys| {
            sets.extend(keys);
            Ok(())
        })?;
        for set in sets {
            let Some(repo) =
                (set.strip_prefix("repository::")).and_then(|r| r.strip_suffix("::blobs"))
            else {
                continue;
            };
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&set)
                .query(&mut self.con)
                .map_err(|e| format!("{}: {e}", self.name))?;
            let mut pipe = redis::pipe();
            for chunk in members.chunks(BATCH) {
                let stale: Vec<&String> = (chunk.iter())
                    .filter(|m| Digest::parse(m).is_some_and(|d| !present.has_link(repo, &d)))
                    .collect();
                if !stale.is_empty() {
                    pipe.cmd("SREM").arg(&set).arg(stale);
                }
            }
            n += self.run(&pipe)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(host_port("h:1").unwrap(), ("h".to_string(), 1));
        assert_eq!(host_port("h").unwrap(), ("h".to_string(), 6379));
        assert_eq!(host_port("[::1]:7").unwrap(), ("::1".to_string(), 7));
        assert!(host_port("h:x").is_err());
        assert!(host_port(":1").is_err());
    }

    #[test]
    fn a_tls_redis_is_refused_before_any_connection() {
        let cfg = RedisConfig {
            addr: "127.0.0.1:1".into(),
            username: None,
            password: Some("secret".into()),
            db: 0,
            tls: true,
        };
        let e = RedisCache::connect(&cfg).err().expect("refused");
        assert!(e.contains("TLS") && !e.contains("secret"), "{e}");
    }
}
