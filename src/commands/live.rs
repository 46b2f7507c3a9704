//! gc's steps with the live registry: before a sweep, reach the Redis cache (or refuse to
//! sweep); after it, evict, say when an in-memory cache needs a restart, and ask the registry
//! (`--registry-url`) whether it still claims what went. Each outcome lands in the report as a
//! finding of its own kind, and in `GcReport::registry`.

use crate::config::registry::BlobCache;
use crate::error::{Error, Result};
use crate::live::probe::{self, Kind};
use crate::live::redis::RedisCache;
use crate::live::{LiveOptions, LiveReport, Present, Swept};
use crate::model::digest::Digest;
use crate::model::{FindingKind, Layout, Severity};
use crate::report::{ErrorEntry, GcReport};
use std::path::PathBuf;

/// Before the sweep: the Redis connection eviction will need. Unreachable with something to
/// sweep, the run stops here (nothing deleted) unless the user took the risk by name.
pub fn before_sweep(
    live: &LiveOptions,
    will_sweep: bool,
    notes: &mut Vec<ErrorEntry>,
) -> Result<Option<RedisCache>> {
    let Some(BlobCache::Redis(cfg)) = &live.cache else {
        return Ok(None);
    };
    match RedisCache::connect(cfg) {
        Ok(c) => Ok(Some(c)),
        Err(why) if will_sweep && !live.risk_stale_cache => Err(Error::LiveRegistry {
            what: "the registry's blob-descriptor cache".into(),
            message: format!(
                "{why}: cannot reach it to evict what the sweep removes, so nothing was swept (the registry would go on claiming swept blobs, and a re-push of them would be accepted without its data); make Redis reachable, or give --risk-stale-cache and restart the registry after the sweep"
            ),
        }),
        Err(why) => {
            notes.push(entry(
                Severity::Notice,
                FindingKind::RegistryCacheUnreachable,
                format!(
                    "{why}: the registry's cache was not reconciled{}",
                    if will_sweep {
                        " (--risk-stale-cache): restart the registry before the next push"
                    } else {
                        ""
                    }
                ),
            ));
            Ok(None)
        }
    }
}

fn entry(severity: Severity, kind: FindingKind, message: String) -> ErrorEntry {
    ErrorEntry {
        path: PathBuf::from("registry"),
        message,
        severity,
        kind,
    }
}

/// gc's `after`, recorded in its report.
pub fn after_sweep(
    live: &LiveOptions,
    redis: Option<RedisCache>,
    layout: &Layout,
    report: &mut GcReport,
) {
    let p = &report.plan;
    let swept = Swept::new(
        &p.blobs_deleted,
        &p.layer_links_deleted,
        &p.manifests_deleted,
    );
    let (out, notes) = after(
        live,
        redis,
        layout,
        &swept,
        report.summary.items_removed > 0,
    );
    report.summary.errors += notes.len();
    report.errors.extend(notes);
    report.registry = Some(out);
}

/// After a sweep that removed `swept` (`removed`: anything at all), in this order: evict from
/// Redis, say when the registry needs a restart, ask the registry. What was done, and the
/// findings.
pub fn after(
    live: &LiveOptions,
    redis: Option<RedisCache>,
    layout: &Layout,
    swept: &Swept,
    removed: bool,
) -> (LiveReport, Vec<ErrorEntry>) {
    let mut out = LiveReport::new(live.cache.as_ref());
    let mut notes = Vec::new();
    // 1. Redis: what went, then every entry the scan does not back.
    if let Some(mut redis) = redis {
        match redis.evict(swept, &Present::new(layout, swept)) {
            Ok(n) => out.evicted = n,
            Err(why) => notes.push(entry(
                Severity::Error,
                FindingKind::RegistryCacheEvictionFailed,
                format!(
                    "{why}: the registry may still claim swept blobs; run gc again, or restart the registry, before the next push"
                ),
            )),
        }
    }
    // 2. A cache regsweep cannot reach into: only a restart makes it forget.
    match &live.cache {
        Some(BlobCache::InMemory) if removed => {
            out.restart_needed = true;
            notes.push(entry(
                Severity::Notice,
                FindingKind::RegistryRestartNeeded,
                "the registry keeps blob descriptors in memory (storage.cache.blobdescriptor: inmemory) and still claims what was swept: restart it before the next push, or a re-push of a swept layer is accepted without its data and never pulls".into(),
            ));
        }
        None if removed => notes.push(entry(
            Severity::Notice,
            FindingKind::RegistryCacheUnknown,
            "if the registry caches blob descriptors (storage.cache.blobdescriptor), it may still claim what was swept: restart it before the next push, or give --config so that regsweep knows (and evicts a Redis cache itself)".into(),
        )),
        _ => {}
    }
    // 3. The registry's own word.
    if let (Some(url), true) = (&live.registry_url, removed) {
        match probe::probe(url, registry_auth(), probe_items(swept)) {
            Ok(r) => {
                notes.extend(claims(url, &r, live.cache.as_ref()));
                out.probe = Some(r);
            }
            Err(why) => notes.push(entry(
                Severity::Error,
                FindingKind::RegistryProbeFailed,
                why,
            )),
        }
    }
    (out, notes)
}

/// What to ask the registry about: every swept (repository, digest) pair as a blob, and the
/// deleted manifests as manifests too.
fn probe_items(swept: &Swept) -> Vec<(String, Digest, Kind)> {
    (swept.links.iter())
        .map(|(r, d)| (r.clone(), *d, Kind::Blob))
        .chain((swept.manifests.iter()).map(|(r, d)| (r.clone(), *d, Kind::Manifest)))
        .collect()
}

/// The findings of a probe: what the registry still claims, and requests that got no answer.
fn claims(url: &str, r: &probe::ProbeReport, cache: Option<&BlobCache>) -> Vec<ErrorEntry> {
    let mut notes = Vec::new();
    if let Some(first) = r.claimed.first() {
        let fix = match cache {
            Some(BlobCache::Redis(_)) => "run gc again to evict, or restart the registry",
            _ => "restart the registry",
        };
        notes.push(entry(
            Severity::Error,
            FindingKind::RegistryClaimsSwept,
            format!(
                "{url} still claims {} of the {} swept items asked about (first: {} {}@{}): {fix} before the next push",
                r.claimed.len(),
                r.asked,
                if first.kind == Kind::Blob { "blob" } else { "manifest" },
                first.repository,
                first.digest
            ),
        ));
    }
    for f in r.failed.iter().take(5) {
        notes.push(entry(
            Severity::Error,
            FindingKind::RegistryProbeFailed,
            format!("{url}: {f}"),
        ));
    }
    notes
}

/// Basic-auth credentials for `--registry-url`, from the environment.
fn registry_auth() -> Option<(String, String)> {
    let user = std::env::var("REGSWEEP_REGISTRY_USERNAME").ok()?;
    let password = std::env::var("REGSWEEP_REGISTRY_PASSWORD").unwrap_or_default();
    Some((user, password))
}
