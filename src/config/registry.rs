//! Reading the registry's own config file as the registry reads it (distribution 2.8, with the
//! v3 additions it is given): a file the registry would refuse is refused here too, naming the
//! file and line, so that regsweep never collects another storage than the registry serves.
//!
//! What is read: `version`, `storage` (the driver, the filesystem's `rootdirectory`, the s3,
//! gcs and azure drivers' bucket, root and credentials, `cache.blobdescriptor`) and `redis`, each with the registry's
//! `REGISTRY_*` environment overrides. The registry decodes with Go's yaml.v2, which puts any
//! scalar's text in a string field and refuses a map or list there; the types below do the same.

use super::Location;

mod drivers;
use crate::error::{Error, Result};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The name the registry gives the environment override of its root directory.
pub const ROOT_ENV: &str = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY";

/// What regsweep reads of a registry's config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    pub storage: Location,
    pub cache: BlobCache,
    /// `proxy.remoteurl`: the registry is a pull-through cache, and `ttl` (3.x `proxy.ttl`;
    /// 2.8 has a fixed 7 days) how long what it fetched stays.
    pub proxy: Option<Proxy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub remote_url: String,
    pub ttl: std::time::Duration,
}

/// The TTL distribution 2.8 gives every cached object (`repositoryTTL`), and 3.x's default.
pub const PROXY_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// The registry's blob-descriptor cache (`storage.cache.blobdescriptor`): what it may go on
/// claiming after a sweep removed a blob beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCache {
    /// No cache (or a type the registry ignores with a warning): it asks the storage each time.
    Off,
    /// A map in the registry's memory: only a restart forgets it. With the URL to ask whether
    /// it runs, when its `http.addr` is on this host.
    InMemory { local_url: Option<String> },
    /// Keys in Redis, which regsweep evicts after a sweep.
    Redis(RedisConfig),
}

/// The registry's `redis` section: where its cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `host:port`
    pub addr: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    /// `redis.tls.enabled` (v3): regsweep does not speak TLS to Redis, so it cannot evict.
    pub tls: bool,
}

/// A string field as yaml.v2 fills it: the text of any scalar; a map or list is refused.
#[derive(Debug, Clone, Default)]
struct GoString(String);

impl<'de> Deserialize<'de> for GoString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<GoString, E> {
                Ok(GoString::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A section of driver parameters (`map[string]interface{}` in the registry).
pub(super) type Params = BTreeMap<String, crate::yaml::Value>;

/// `storage:` as the registry's `Storage.UnmarshalYAML` takes it: a map of sections (each a
/// map, or empty), or a bare driver name.
#[derive(Debug, Default)]
struct RawStorage(Vec<(String, Params)>);

impl<'de> Deserialize<'de> for RawStorage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawStorage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of storage sections, or a driver name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<RawStorage, E> {
                Ok(RawStorage(vec![(v.to_string(), Params::new())]))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<RawStorage, E> {
                Ok(RawStorage::default())
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<RawStorage, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    // Each entry is a section: `rootdirectory: /srv` one level too shallow is
                    // a string here, and the registry refuses the whole file for it.
                    let v: Option<Params> = m.next_value()?;
                    out.push((k, v.unwrap_or_default()));
                }
                Ok(RawStorage(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawTls {
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRedis {
    #[serde(default)]
    addr: Option<GoString>,
    /// v3's list of addresses (a cluster or sentinel): the first is asked.
    #[serde(default)]
    addrs: Option<Vec<GoString>>,
    #[serde(default)]
    username: Option<GoString>,
    #[serde(default)]
    password: Option<GoString>,
    #[serde(default)]
    db: Option<i64>,
    #[serde(default)]
    tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
struct Raw {
    #[serde(default)]
    version: Option<GoString>,
    #[serde(default)]
    storage: Option<RawStorage>,
    #[serde(default)]
    redis: Option<RawRedis>,
    #[serde(default)]
    http: Option<RawHttp>,
    #[serde(default)]
    proxy: Option<RawProxy>,
}

#[derive(Debug, Default, Deserialize)]
struct RawProxy {
    #[serde(default)]
    remoteurl: Option<GoString>,
    #[serde(default)]
    ttl: Option<GoString>,
}

#[derive(Debug, Default, Deserialize)]
struct RawHttp {
    #[serde(default)]
    addr: Option<GoString>,
}

/// `http://127.0.0.1:PORT` for an `http.addr` this host listens on (`:5000`, `0.0.0.0:5000`,
/// `localhost:5000`, a loopback address); `None` for another host's or an unset one.
fn local_url(addr: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host.is_empty()
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    local.then(|| format!("http://127.0.0.1:{port}"))
}

/// Sections of `storage:` that are not a driver (2.8's list, and v3's `tag`).
const NOT_DRIVERS: [&str; 5] = ["maintenance", "cache", "delete", "redirect", "tag"];
/// Drivers the registry has and regsweep does not read.
const OTHER_DRIVERS: [&str; 3] = ["inmemory", "swift", "oss"];

/// A parameter's text as the driver reads it; `None` when unset or empty, an error when it is
/// a map or a list.
pub(super) fn scalar(
    params: &Params,
    section: &str,
    name: &str,
) -> std::result::Result<Option<String>, String> {
    let text = match params.get(name) {
        None | Some(crate::yaml::Value::Null) => None,
        Some(crate::yaml::Value::String(v)) => Some(v.clone()),
        Some(crate::yaml::Value::Number(n)) => Some(n.to_string()),
        Some(crate::yaml::Value::Bool(b)) => Some(b.to_string()),
        Some(_) => return Err(format!("storage.{section}.{name} is not a single value")),
    };
    Ok(text.filter(|v| !v.is_empty()))
}

/// Reads the config file at `path` as the registry would, with its environment overrides as
/// `env` answers them; refuses what the registry refuses, and the drivers regsweep cannot read.
pub fn read(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<RegistryConfig> {
    let bad = |message: String| Error::RegistryConfig {
        path: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(bad(
            "not a regular file (give the registry's config.yml)".into()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let raw: Raw = if text.trim().is_empty() {
        Raw::default()
    } else {
        crate::yaml::from_str(&text)
            .map_err(|e| bad(format!("the registry refuses this config: {e}")))?
    };
    let version = raw.version.map(|v| v.0).unwrap_or_default();
    if version != "0.1" {
        return Err(bad(format!(
            "unsupported version: {version:?} (the registry reads `version: 0.1`)"
        )));
    }
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let sections = raw.storage.unwrap_or_default().0;
    let mut drivers: Vec<&str> = (sections.iter())
        .map(|(k, _)| k.as_str())
        .filter(|k| !NOT_DRIVERS.contains(k))
        .collect();
    if drivers.len() > 1 {
        return Err(bad(format!(
            "must provide exactly one storage type. Provided: [{}] (the registry refuses this config)",
            drivers.join(" ")
        )));
    }
    let section = |name: &str| sections.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    // The registry completes a config from its environment: a root given there is enough.
    if drivers.is_empty() && env(ROOT_ENV).is_some() {
        drivers.push("filesystem");
    }
    let empty = Params::new();
    let storage = match drivers.first().copied() {
        None => {
            return Err(bad(format!(
                "no storage configuration provided (the registry refuses this config; give a storage.filesystem, s3, gcs or azure section, or set {ROOT_ENV})"
            )));
        }
        Some("filesystem") => {
            let fs = section("filesystem").unwrap_or(&empty);
            let dir = match env(ROOT_ENV) {
                Some(d) => d,
                None => scalar(fs, "filesystem", "rootdirectory")
                    .map_err(bad)?
                    .unwrap_or_else(|| "/var/lib/registry".into()),
            };
            Location::Fs(PathBuf::from(dir))
        }
        Some(name @ ("s3" | "gcs" | "azure")) => {
            let params = section(name).unwrap_or(&empty);
            Location::Bucket(Box::new(
                drivers::bucket_root(name, params, &env).map_err(bad)?,
            ))
        }
        Some(other) if OTHER_DRIVERS.contains(&other) => {
            return Err(bad(format!(
                "storage driver is {other}: regsweep reads the filesystem, s3, gcs and azure drivers' storage only"
            )));
        }
        Some(other) => {
            return Err(bad(format!(
                "unknown storage driver {other:?} (the registry refuses it: StorageDriver not registered)"
            )));
        }
    };
    let mut cache = blob_cache(section("cache"), raw.redis, &env).map_err(bad)?;
    if let BlobCache::InMemory { local_url: url } = &mut cache {
        let addr = env("REGISTRY_HTTP_ADDR").or_else(|| raw.http.and_then(|h| h.addr).map(|a| a.0));
        *url = addr.as_deref().and_then(local_url);
    }
    let proxy = proxy(raw.proxy, &env).map_err(bad)?;
    Ok(RegistryConfig {
        storage,
        cache,
        proxy,
    })
}

/// `proxy`, with `REGISTRY_PROXY_REMOTEURL` and `REGISTRY_PROXY_TTL`: a pull-through cache
/// when a remote URL is set.
fn proxy(
    raw: Option<RawProxy>,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<Option<Proxy>, String> {
    let raw = raw.unwrap_or_default();
    let url = env("REGISTRY_PROXY_REMOTEURL").or(raw.remoteurl.map(|u| u.0));
    let Some(remote_url) = url.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let ttl = match env("REGISTRY_PROXY_TTL").or(raw.ttl.map(|t| t.0)) {
        None => PROXY_TTL,
        Some(t) => go_duration(&t).ok_or_else(|| {
            format!(
                "proxy.ttl {t:?} is not a duration (the registry reads Go durations: 168h, 24h30m)"
            )
        })?,
    };
    Ok(Some(Proxy { remote_url, ttl }))
}

/// A Go duration of hours, minutes and seconds (`168h`, `1h30m`, `90s`), as `time.ParseDuration`
/// reads the ones a TTL uses.
fn go_duration(t: &str) -> Option<std::time::Duration> {
    let mut secs = 0f64;
    let mut num = String::new();
    let mut any = false;
    let mut rest = t.trim();
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit, mul) = [("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0)]
            .into_iter()
            .find(|(u, _)| rest.starts_with(u))?;
        secs += num.parse::<f64>().ok()? * mul;
        num.clear();
        any = true;
        rest = &rest[unit.len()..];
    }
    (any && num.is_empty() && secs.is_finite() && secs < 1e12)
        .then(|| std::time::Duration::from_secs_f64(secs))
}

/// `storage.cache.blobdescriptor` (or its old name `layerinfo`) and, for `redis`, the `redis`
/// section, each with the registry's environment overrides.
fn blob_cache(
    cache: Option<&Params>,
    redis: Option<RawRedis>,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<BlobCache, String> {
    let empty = Params::new();
    let cache = cache.unwrap_or(&empty);
    let kind = match env("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR") {
        Some(v) => Some(v),
        None => match scalar(cache, "cache", "blobdescriptor")? {
            Some(v) => Some(v),
            None => scalar(cache, "cache", "layerinfo")?,
        },
    };
    match kind.as_deref() {
        Some("inmemory") => Ok(BlobCache::InMemory { local_url: None }),
        Some("redis") => {
            let r = redis.unwrap_or_default();
            let tls = r.tls.and_then(|t| t.enabled) == Some(true);
            let text = |v: Option<GoString>| v.map(|s| s.0).filter(|s| !s.is_empty());
            let addr = env("REGISTRY_REDIS_ADDR")
                .or_else(|| text(r.addr))
                .or_else(|| text(r.addrs.and_then(|a| a.into_iter().next())))
                .ok_or("storage.cache.blobdescriptor is redis but redis.addr is not set (the registry refuses to start so)")?;
            let db = match env("REGISTRY_REDIS_DB") {
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("REGISTRY_REDIS_DB={v:?} is not a number"))?,
                None => r.db.unwrap_or(0),
            };
            Ok(BlobCache::Redis(RedisConfig {
                addr,
                username: env("REGISTRY_REDIS_USERNAME").or_else(|| text(r.username)),
                password: env("REGISTRY_REDIS_PASSWORD").or_else(|| text(r.password)),
                db,
                tls,
            }))
        }
        // The registry warns of an unknown type and caches nothing.
        _ => Ok(BlobCache::Off),
    }
}

#[cfg(test)]
mod tests;
