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
    let state = read_state(store)?.unwrap_or_default();
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

/// The state file at the root, if there is one; one the registry could not read stops the run
/// with nothing deleted.
fn read_state<S: Storage>(store: &S) -> Result<Option<State>> {
    let path = store.location().join(STATE_FILE);
    let bytes = store
        .read_state(STATE_FILE)
        .map_err(|e| Error::io(&path, e))?;
    bytes
        .map(|b| {
            State::parse(&b).map_err(|why| Error::Input {
                path: path.clone(),
                message: format!(
                    "{why}; nothing was deleted. The registry cannot start its TTL scheduler on this file either: restore it, or remove it (the proxy then forgets every TTL)"
                ),
            })
        })
        .transpose()
}

/// `apply`'s part on a pull-through cache's root (one with a state file): the state as it is,
/// for `write_back` once the reviewed plan is carried out; nothing expires here, the plan
/// already says what goes.
pub fn read_for_apply<S: Storage>(store: &S) -> Result<Option<ProxyRun>> {
    Ok(read_state(store)?.map(|state| ProxyRun {
        report: ProxyReport {
            entries: state.entries.len(),
            not_understood: state.not_understood,
            ..ProxyReport::default()
        },
        state,
        expired: HashSet::new(),
    }))
}

/// After a run that could sweep: drops the entries whose objects are no longer there (went in
/// this sweep, or earlier: an `apply`, the registry's own expiry) and writes the file whole,
/// once. A blob's entry needs its link in the repository and the blob; a manifest's, its
/// revision. The file is read again just before: entries a running proxy added since the run
/// began (what it cached meanwhile, which the scan never saw) are kept as they are; a file that
/// no longer parses (caught mid-write) is left alone.
pub fn write_back<S: Storage>(
    store: &S,
    mut run: ProxyRun,
    present: &crate::live::Present,
) -> ProxyReport {
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
        let fresh = match store.read_state(STATE_FILE) {
            Ok(Some(b)) => State::parse(&b).map_err(|why| {
                format!("{why} when read again before writing; left as the proxy wrote it")
            }),
            // Removed meanwhile (a proxy that forgot every TTL): nothing to write back.
            Ok(None) => Err("removed during the run; not written again".to_string()),
            Err(e) => Err(crate::error::io_cause(&e)),
        };
        match fresh.map(|f| store.write_state(STATE_FILE, Some(&f.without(&gone)))) {
            Ok(Ok(())) => run.report.state_written = true,
            Ok(Err(e)) => run.report.write_error = Some(crate::error::io_cause(&e)),
            Err(why) => run.report.write_error = Some(why),
        }
    }
    run.report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemStorage;

    fn entry(repo: &str, d: &Digest, kind: u8) -> String {
        format!(
            r#""{repo}@{d}":{{"Key":"{repo}@{d}","ExpiryData":"2020-01-01T00:00:00Z","EntryType":{kind}}}"#
        )
    }

    /// An entry the proxy saved while the run went on (its object came after the scan) is kept;
    /// one whose object is gone is dropped.
    #[test]
    fn the_state_is_read_again_before_it_is_written_back() {
        let m = MemStorage::new();
        let kept = crate::model::digest::Digest([1; 32]);
        let (gone, added) = (Digest([2; 32]), Digest([3; 32]));
        let link = format!(
            "repositories/app/_manifests/revisions/sha256/{}/link",
            kept.hex()
        );
        m.put(&link, format!("{kept}").as_bytes(), 0);
        let state = |entries: &[String]| format!("{{{}}}", entries.join(","));
        let first = state(&[entry("app", &kept, 1), entry("app", &gone, 1)]);
        m.write_state(STATE_FILE, Some(first.as_bytes())).unwrap();
        let opts = ProxyOptions {
            ttl: std::time::Duration::from_secs(7 * 86_400),
            instead: None,
        };
        let run = read(&m, &opts, 0).unwrap();
        let progress = crate::progress::Hidden;
        let layout = crate::pipeline::load(&m, Default::default(), None, &progress).unwrap();
        // The proxy caches something meanwhile and saves its state.
        let later = state(&[
            entry("app", &kept, 1),
            entry("app", &gone, 1),
            entry("app", &added, 1),
        ]);
        m.write_state(STATE_FILE, Some(later.as_bytes())).unwrap();
        let nothing = crate::live::Swept::default();
        let present = crate::live::Present::new(&layout, &nothing);
        let report = write_back(&m, run, &present);
        assert!(report.state_written, "{report:?}");
        let written = m.read_state(STATE_FILE).unwrap().unwrap();
        let after = State::parse(&written).unwrap();
        let keys: HashSet<String> = after.entries.iter().map(|e| e.key.clone()).collect();
        assert_eq!(
            keys,
            [format!("app@{kept}"), format!("app@{added}")]
                .into_iter()
                .collect()
        );
    }
}
