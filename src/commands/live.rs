//! gc's steps with the live registry: before a sweep, reach the Redis cache (or refuse to
//! sweep); after it, evict, say when an in-memory cache needs a restart, and ask the registry
//! (`--registry-url`) whether it still claims what went. Each outcome lands in the report as a
//! finding of its own kind, and in `GcReport::registry`.

use crate::config::registry::BlobCache;
use crate::error::{Error, Result};
use crate::live::pending::{PENDING_EVICTION, Pending};
use crate::live::probe::{self, Kind};
use crate::live::redis::RedisCache;
use crate::live::{LiveOptions, LiveReport, Present, Swept};
use crate::model::digest::Digest;
use crate::model::{FindingKind, Layout, Severity};
use crate::report::{ErrorEntry, GcReport};
use crate::storage::seam::Storage;
use std::path::{Path, PathBuf};

/// Before the sweep: the Redis connection eviction will need. Unreachable with something to
/// sweep, the run stops here (nothing deleted) unless the user took the risk by name.
pub fn before_sweep(
    live: &LiveOptions,
    will_sweep: bool,
    notes: &mut Vec<ErrorEntry>,
) -> Result<Option<RedisCache>> {
    refuse_beside_in_memory_cache(live, will_sweep)?;
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

/// The registry's URL to ask: `--registry-url`, or its config's `http.addr` when on this host.
fn registry_url(live: &LiveOptions) -> Option<&str> {
    let local = match &live.cache {
        Some(BlobCache::InMemory { local_url }) => local_url.as_deref(),
        _ => None,
    };
    live.registry_url.as_deref().or(local)
}

/// A registry that answers and keeps blob descriptors in memory would go on claiming what the
/// sweep removes until it restarts: the sweep needs the restart named, or the word that the
/// registry is stopped.
fn refuse_beside_in_memory_cache(live: &LiveOptions, will_sweep: bool) -> Result<()> {
    if !matches!(live.cache, Some(BlobCache::InMemory { .. }))
        || !will_sweep
        || live.registry_stopped
        || live.restart_command.is_some()
    {
        return Ok(());
    }
    match registry_url(live) {
        Some(url) if probe::answers(url) => Err(Error::LiveRegistry {
            what: "the registry's in-memory blob-descriptor cache".into(),
            message: format!(
                "the registry at {url} is running and keeps blob descriptors in memory (storage.cache.blobdescriptor: inmemory): after a sweep it would go on claiming swept blobs, and a re-push of one would be accepted without its data; nothing was swept. Give --restart-command CMD (e.g. 'systemctl restart docker-registry', run right after the sweep), or stop the registry (or set it read-only until a restart) and give --registry-stopped"
            ),
        }),
        _ => Ok(()),
    }
}

/// Before a sweep beside a cache that must forget what goes (Redis, or an in-memory one that
/// `--restart-command` restarts): the journal that lets the next run finish the job should this
/// one die between its sweep and the eviction. Unwritten, nothing is swept. Whether written.
pub fn write_journal<S: Storage>(
    store: &S,
    live: &LiveOptions,
    command: &str,
    swept: impl FnOnce() -> Swept,
) -> Result<bool> {
    let redis = match &live.cache {
        Some(BlobCache::Redis(cfg)) => Some(crate::live::redis::name(cfg)),
        Some(BlobCache::InMemory { .. }) if live.restart_command.is_some() => None,
        _ => return Ok(false),
    };
    // Made only here: a copy of the plan's digests and names is needed for the journal alone.
    let swept = &swept();
    if swept.is_empty() {
        return Ok(false);
    }
    let limit = live
        .journal_limit
        .unwrap_or(crate::storage::seam::STATE_LIMIT);
    let journal = Pending::new(command, redis, swept).to_bytes_within(limit);
    match store.write_state(PENDING_EVICTION, Some(&journal)) {
        Ok(()) => Ok(true),
        Err(e) => Err(Error::LiveRegistry {
            what: journal_path(store).display().to_string(),
            message: format!(
                "cannot write the pending-eviction journal ({}), so nothing was swept: without it a run killed before the eviction would leave the registry claiming swept blobs; make the storage root writable",
                crate::error::io_cause(&e)
            ),
        }),
    }
}

/// After the sweep: the journal goes once the cache has forgotten; otherwise it stays, and the
/// report says so.
pub fn clear_journal<S: Storage>(
    store: &S,
    written: bool,
    out: &mut LiveReport,
    notes: &mut Vec<ErrorEntry>,
) {
    if !written {
        return;
    }
    if !out.forgotten {
        out.pending_eviction = true;
        return;
    }
    if let Err(e) = store.write_state(PENDING_EVICTION, None) {
        out.pending_eviction = true;
        notes.push(entry(
            Severity::Error,
            FindingKind::RegistryCachePending,
            format!(
                "{}: cannot remove the completed pending-eviction journal ({}): the next run evicts again, which is harmless",
                journal_path(store).display(),
                crate::error::io_cause(&e)
            ),
        ));
    }
}

fn journal_path<S: Storage>(store: &S) -> PathBuf {
    store.location().join(PENDING_EVICTION)
}

/// Completes the journal a killed run left at `path` before this run scans: evicts what it
/// lists from Redis, or restarts the registry (or takes `--registry-stopped` for it). What was
/// done, or why this run stops (with nothing done).
pub fn settle(live: &LiveOptions, path: &Path, bytes: &[u8]) -> Result<String> {
    let refuse = |message: String| Error::LiveRegistry {
        what: path.display().to_string(),
        message,
    };
    let p = Pending::parse(bytes).map_err(|why| {
        refuse(format!(
            "{why}: this pending-eviction journal cannot be completed, so nothing was done; restart the registry (and, with a Redis cache, FLUSHDB its database), then remove the file"
        ))
    })?;
    let what = p.describe();
    let stopped = format!("{what} and was stopped before the cache forgot what went");
    match (&p.redis, &live.cache) {
        (Some(name), Some(BlobCache::Redis(cfg))) if crate::live::redis::name(cfg) == *name => {
            let evicted = RedisCache::connect(cfg).and_then(|mut c| match p.all {
                true => c.evict_all(),
                false => c.evict_swept(&p.swept()),
            });
            match evicted {
                Ok(n) => Ok(format!("{stopped}: completed, {n} entries evicted")),
                Err(why) => Err(refuse(format!(
                    "{stopped}; {why}: make Redis reachable and run again (nothing was done)"
                ))),
            }
        }
        (Some(name), _) => Err(refuse(format!(
            "{stopped}: give --config with the registry's config naming {name}, so that this run evicts first (nothing was done); if the registry no longer uses that Redis, remove the file"
        ))),
        (None, _) if live.registry_stopped => Ok(format!(
            "{stopped}: taken as done (--registry-stopped: the registry's memory went with it)"
        )),
        (None, _) => match &live.restart_command {
            Some(cmd) => {
                let r = restart(cmd, registry_url(live));
                match (r.exit_code, &r.error) {
                    (Some(0), None) => Ok(format!("{stopped}: completed, the registry restarted")),
                    (code, error) => Err(refuse(format!(
                        "{stopped}; --restart-command {cmd:?} {}: restart the registry and run again (nothing was done)",
                        error.clone().unwrap_or_else(|| format!("exited {code:?}"))
                    ))),
                }
            }
            None => Err(refuse(format!(
                "{stopped}: the registry may still claim what went; restart it, then run again with --registry-stopped (or give --restart-command CMD); nothing was done"
            ))),
        },
    }
}

/// The longest `--restart-command` may take before it is killed and the run says so.
const RESTART_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs `cmd` through `sh -c`, its words to stderr (stdout may be a JSON report); its exit code
/// (`None`: killed by a signal), or why it did not end within `limit`.
fn run_bounded(cmd: &str, limit: std::time::Duration) -> std::result::Result<Option<i32>, String> {
    let mut child = std::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::null())
        .stdout(std::io::stderr())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Ok(s.code()),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not end within {}s and was killed",
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    }
}

/// Runs `--restart-command` through `sh -c`, then waits (a minute at most) for the registry
/// to answer again.
fn restart(cmd: &str, url: Option<&str>) -> crate::live::Restart {
    let mut out = crate::live::Restart {
        command: cmd.to_string(),
        exit_code: None,
        error: None,
    };
    match run_bounded(cmd, RESTART_TIMEOUT) {
        Ok(code) => out.exit_code = code,
        Err(e) => out.error = Some(e),
    }
    if out.exit_code == Some(0)
        && let Some(url) = url
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !probe::answers(url) {
            if std::time::Instant::now() > deadline {
                out.error = Some(format!(
                    "{url} did not answer within a minute of the restart"
                ));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    out
}

fn entry(severity: Severity, kind: FindingKind, message: String) -> ErrorEntry {
    ErrorEntry {
        path: PathBuf::from("registry"),
        message,
        severity,
        kind,
    }
}

/// What completing a killed run's journal did, as a notice of the run that did it.
pub fn settled_note(said: &str) -> ErrorEntry {
    entry(
        Severity::Notice,
        FindingKind::RegistryCachePending,
        said.to_string(),
    )
}

/// gc's `after` (and the journal's removal), recorded in its report.
pub fn after_sweep<S: Storage>(
    live: &LiveOptions,
    redis: Option<RedisCache>,
    store: &S,
    layout: &Layout,
    journaled: bool,
    unsure: &Swept,
    report: &mut GcReport,
) {
    let p = &report.plan;
    let swept = match live.wants_swept(redis.is_some()) {
        true => Swept::new(
            &p.blobs_deleted,
            &p.layer_links_deleted,
            &p.manifests_deleted,
        ),
        false => Swept::default(),
    };
    let removed = report.summary.items_removed > 0;
    let (mut out, mut notes) = after(live, redis, layout, (&swept, unsure), removed);
    clear_journal(store, journaled, &mut out, &mut notes);
    report.summary.errors += notes.len();
    report.errors.extend(notes);
    report.registry = Some(out);
}

/// After a sweep that removed `swept` (`removed`: anything at all) and may have removed
/// `unsure`, in this order: evict from Redis, say when the registry needs a restart, ask the
/// registry. What was done, and the findings.
///
/// A delete on a bucket may land with its answer lost, so the cache forgets what may have gone
/// as well as what went (forgetting what is still there costs the registry one look at
/// storage); the registry is asked only about what is known to have gone.
pub fn after(
    live: &LiveOptions,
    redis: Option<RedisCache>,
    layout: &Layout,
    (swept, unsure): (&Swept, &Swept),
    removed: bool,
) -> (LiveReport, Vec<ErrorEntry>) {
    let mut out = LiveReport::new(live.cache.as_ref());
    let mut notes = Vec::new();
    let removed = removed || !unsure.is_empty();
    let forget = swept.with(unsure);
    // 1. Redis: what went (or may have), then every entry the scan does not back.
    if let Some(mut redis) = redis {
        match redis.evict(&forget, &Present::new(layout, &forget)) {
            Ok(n) => {
                out.evicted = n;
                out.forgotten = true;
            }
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
    if let (Some(cmd), true) = (&live.restart_command, removed) {
        let r = restart(cmd, registry_url(live));
        if r.exit_code != Some(0) || r.error.is_some() {
            notes.push(entry(
                Severity::Error,
                FindingKind::RegistryRestartNeeded,
                format!(
                    "--restart-command {cmd:?} {}: the registry may still claim what was swept; restart it before the next push",
                    match (&r.error, r.exit_code) {
                        (Some(e), _) => e.clone(),
                        (None, Some(c)) => format!("exited {c}"),
                        (None, None) => "was killed by a signal".into(),
                    }
                ),
            ));
        }
        out.restart = Some(r);
    }
    let restarted = out
        .restart
        .as_ref()
        .is_some_and(|r| r.exit_code == Some(0) && r.error.is_none());
    out.forgotten |= restarted;
    match &live.cache {
        Some(BlobCache::InMemory { .. }) if removed && !restarted => {
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
    // After a restart, ask the registry where the config says it listens too.
    let url = match restarted {
        true => registry_url(live).map(str::to_string),
        false => live.registry_url.clone(),
    };
    if let (Some(url), true) = (&url, removed) {
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
        .map(|(r, d)| (r.to_string(), *d, Kind::Blob))
        .chain((swept.manifests.iter()).map(|(r, d)| (r.to_string(), *d, Kind::Manifest)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_command_that_hangs_is_killed_and_said_so() {
        let hung = run_bounded("sleep 30", std::time::Duration::from_millis(200));
        assert!(hung.unwrap_err().contains("killed"));
        assert_eq!(run_bounded("exit 3", RESTART_TIMEOUT), Ok(Some(3)));
    }
}
