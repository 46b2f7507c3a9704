//! gc's steps on a pull-through cache's root: before planning, read `scheduler-state.json`
//! (which cached manifests expired, by their expiry or `--proxy-ttl`); after the sweep, write
//! it back without the entries whose objects went. A proxy that is running keeps its entries
//! in memory and writes them over the file on its next change (within 5 s): its timers for
//! what went then find nothing and log it, and what a client pulls again is fetched again
//! from upstream. The file written here is what a stopped or restarted proxy starts from.

use crate::config::ProxyOptions;
use crate::error::{Error, Result};
use crate::model::Time;
use crate::model::digest::Digest;
use crate::model::scheduler::{Kind, ProxyReport, STATE_FILE, State};
use crate::report::GcReport;
use crate::storage::seam::Storage;
use std::collections::HashSet;

/// The cache's state as read, what expired, and the report being written.
pub struct ProxyRun {
    state: State,
    pub expired: HashSet<(String, Digest)>,
    pub report: ProxyReport,
}

/// Reads the state file at the root (none: nothing cached has a TTL yet); a file the registry
/// could not read stops the run with nothing deleted.
pub fn read<S: Storage>(store: &S, opts: &ProxyOptions, now: Time) -> Result<ProxyRun> {
    let path = store.location().join(STATE_FILE);
    let bytes = store
        .read_state(STATE_FILE)
        .map_err(|e| Error::io(&path, e))?;
    let state = match bytes {
        None => State::default(),
        Some(b) => State::parse(&b).map_err(|why| Error::Input {
            path: path.clone(),
            message: format!(
                "{why}; nothing was deleted. The registry cannot start its TTL scheduler on this file either: restore it, or remove it (the proxy then forgets every TTL)"
            ),
        })?,
    };
    let ttl = opts.ttl.as_secs() as Time;
    let expired: HashSet<(String, Digest)> = (state.entries.iter())
        .filter(|e| e.kind == Kind::Manifest)
        .filter(|e| match opts.instead {
            Some(d) => e.expiry - ttl + d.as_secs() as Time <= now,
            None => e.expiry <= now,
        })
        .map(|e| (e.repository.clone(), e.digest))
        .collect();
    let report = ProxyReport {
        entries: state.entries.len(),
        not_understood: state.not_understood,
        expired_manifests: expired.len(),
        ttl_seconds: opts.ttl.as_secs(),
        proxy_ttl_seconds: opts.instead.map(|d| d.as_secs()),
        ..ProxyReport::default()
    };
    Ok(ProxyRun {
        state,
        expired,
        report,
    })
}

/// After a run that could sweep: drops the entries whose objects are no longer there (went in
/// this sweep, or earlier: an `apply`, the registry's own expiry) and writes the file whole,
/// once. A blob's entry needs its link in the repository and the blob; a manifest's, its
/// revision.
pub fn write_back<S: Storage>(
    store: &S,
    mut run: ProxyRun,
    present: &crate::live::Present,
    report: &mut GcReport,
) {
    let gone: HashSet<String> = (run.state.entries.iter())
        .filter(|e| {
            let linked = present.has_link(&e.repository, &e.digest);
            match e.kind {
                Kind::Manifest => !linked,
                Kind::Blob => !linked || !present.has_blob(&e.digest),
            }
        })
        .map(|e| e.key.clone())
        .collect();
    run.report.entries_removed = gone.len();
    if !gone.is_empty() {
        match store.write_state(STATE_FILE, Some(&run.state.without(&gone))) {
            Ok(()) => run.report.state_written = true,
            Err(e) => run.report.write_error = Some(crate::error::io_cause(&e)),
        }
    }
    report.proxy = Some(run.report);
}
