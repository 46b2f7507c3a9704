//! Signals, and the fault hooks the test suite drives: every hook, in one place. They are
//! internal (named `__REGSWEEP_FAULT_*`, as cargo names its `__CARGO_TEST_*` hooks), unset in
//! normal use, and change nothing then.
//!
//! | variable | what it does |
//! | --- | --- |
//! | `__REGSWEEP_FAULT_KILL_AFTER=N` | a real SIGKILL to this process once the sweep (gc or apply) has asked to go on N times |
//! | `__REGSWEEP_FAULT_TERM_AFTER=N` | the same with SIGTERM: the sweep stops after the items in hand |
//! | `__REGSWEEP_FAULT_KILL_STAGED=N` | a SIGKILL right after the Nth item is out of the registry's sight, before it is deleted (on a bucket: after a batch's keys, before its guards) |
//! | `__REGSWEEP_FAULT_KILL_BEFORE_EVICTION=1` | a SIGKILL once gc's sweep is done, before the registry's cache is told what went (the pending-eviction journal stays) |
//! | `__REGSWEEP_FAULT_JOURNAL_LIMIT=N` | a pending-eviction journal longer than N bytes lists nothing and asks the next run to evict every entry (as one past the 1 GiB state file limit does) |
//! | `__REGSWEEP_FAULT_SPILL_FULL=N` | the bounded mode's spill files fail as on a full disk once N bytes would be past (`ENOSPC`) |
//! | `__REGSWEEP_FAULT_MEM_AVAILABLE=N` | the run takes N bytes for the machine's available memory (`MemAvailable`), so that a small store is large enough for the bounded mode to be chosen by itself |
//! | `__REGSWEEP_FAULT_PAUSE=FILE` | between planning and sweeping, write `FILE.ready` (with the pid) and wait until `FILE` exists: a test changes the layout, or the disk, under a planned run |
//!
//! SIGINT and SIGTERM set [`STOP`]: the sweep ends after the items in hand.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT and SIGTERM (through signal-hook, which does only that in the handler).
pub static STOP: std::sync::LazyLock<std::sync::Arc<AtomicBool>> =
    std::sync::LazyLock::new(Default::default);

/// Sends `sig` to this process (the fault hooks' real signals).
fn raise(sig: rustix::process::Signal) {
    let _ = rustix::process::kill_process(rustix::process::getpid(), sig);
}

/// The fault hooks, read from the environment (see the module's table).
pub struct Faults {
    kill_after: Option<usize>,
    term_after: Option<usize>,
    kill_staged: Option<usize>,
    asked: std::sync::atomic::AtomicUsize,
    staged: std::sync::atomic::AtomicUsize,
}

impl Faults {
    pub fn from_env() -> Faults {
        let n = |k: &str| number(k).map(|v| v as usize);
        Faults {
            kill_after: n("__REGSWEEP_FAULT_KILL_AFTER"),
            term_after: n("__REGSWEEP_FAULT_TERM_AFTER"),
            kill_staged: n("__REGSWEEP_FAULT_KILL_STAGED"),
            asked: Default::default(),
            staged: Default::default(),
        }
    }

    /// The sweep's "item staged" call: SIGKILL at the chosen one.
    pub fn staged(&self) {
        if let Some(k) = self.kill_staged
            && self.staged.fetch_add(1, Ordering::SeqCst) == k
        {
            raise(rustix::process::Signal::KILL);
        }
    }

    /// The sweep's `stop` question, with the faults on the way.
    pub fn stop(&self) -> bool {
        if self.kill_after.is_some() || self.term_after.is_some() {
            let n = self.asked.fetch_add(1, Ordering::SeqCst);
            if self.kill_after == Some(n) {
                raise(rustix::process::Signal::KILL);
            }
            if self.term_after == Some(n) {
                raise(rustix::process::Signal::TERM);
            }
        }
        STOP.load(Ordering::Relaxed)
    }
}

/// With __REGSWEEP_FAULT_KILL_BEFORE_EVICTION set: SIGKILL between the sweep and the eviction.
pub fn before_eviction() {
    if std::env::var_os("__REGSWEEP_FAULT_KILL_BEFORE_EVICTION").is_some() {
        raise(rustix::process::Signal::KILL);
    }
}

/// With __REGSWEEP_FAULT_JOURNAL_LIMIT=N: the pending-eviction journal's limit.
pub fn journal_limit() -> Option<u64> {
    std::env::var("__REGSWEEP_FAULT_JOURNAL_LIMIT")
        .ok()?
        .parse()
        .ok()
}

/// With __REGSWEEP_FAULT_PAUSE=FILE: announce FILE.ready, then wait until FILE exists.
pub fn fault_pause() {
    let Some(go) = std::env::var_os("__REGSWEEP_FAULT_PAUSE").map(PathBuf::from) else {
        return;
    };
    let mut ready = go.clone().into_os_string();
    ready.push(".ready");
    let _ = std::fs::write(&ready, std::process::id().to_string());
    while !go.exists() && !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// SIGINT and SIGTERM stop a sweep after the items in hand; the report says what was done.
pub fn install_signal_handlers() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, STOP.clone());
    }
}

/// A hook's number, when its variable is set to one.
fn number(var: &str) -> Option<u64> {
    std::env::var(var).ok()?.parse().ok()
}

/// With __REGSWEEP_FAULT_SPILL_FULL=N: the bytes a spill file may take before writes fail.
pub fn spill_cap() -> Option<u64> {
    number("__REGSWEEP_FAULT_SPILL_FULL")
}

/// With __REGSWEEP_FAULT_MEM_AVAILABLE=N: the memory the run takes as available.
pub fn mem_available() -> Option<u64> {
    number("__REGSWEEP_FAULT_MEM_AVAILABLE")
}
