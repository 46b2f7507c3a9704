//! The pull ledger: a SQLite database (WAL, synced on every commit) of when each tag and
//! digest was last pulled, pushed or deleted, and the span of time each source covers.
//!
//! Every write takes the later time (or, for a span's start, the earlier), so recording the
//! same events twice changes nothing: importing a log again is harmless.

pub mod event;
pub mod listen;
pub mod logs;

use crate::error::{Error, Result};
use crate::model::Time;
use crate::model::digest::Digest;
use crate::model::pulls::{PullHistory, Span};
use rusqlite::{Connection, OpenFlags, params};
use std::path::{Path, PathBuf};

pub use event::{Action, Event};

/// The ledger's format, stored in it so that another SQLite file is told apart.
const FORMAT: &str = "regsweep-pull-ledger";
const VERSION: &str = "1";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refs (
    repository TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
    name TEXT NOT NULL,
    last_pull INTEGER,
    last_push INTEGER,
    last_delete INTEGER,
    PRIMARY KEY (repository, kind, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spans (
    source TEXT PRIMARY KEY,
    covered_from INTEGER NOT NULL,
    covered_until INTEGER NOT NULL,
    first_event INTEGER,
    last_event INTEGER
);
";

/// An open ledger.
pub struct Ledger {
    path: PathBuf,
    conn: Connection,
}

/// How long a writer waits for another to finish before the ledger counts as locked.
const BUSY_MS: u64 = 5_000;

impl Ledger {
    /// Opens `path` to write, creating it when it does not exist.
    pub fn open_write(path: &Path) -> Result<Ledger> {
        refuse_non_file(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| fail(path, "open", e))?;
        let ledger = Ledger {
            path: path.to_path_buf(),
            conn,
        };
        ledger.setup()?;
        Ok(ledger)
    }

    /// Opens an existing ledger to read.
    pub fn open_read(path: &Path) -> Result<Ledger> {
        refuse_non_file(path)?;
        if !path.exists() {
            return Err(Error::Ledger {
                path: path.to_path_buf(),
                message: "no ledger here: fill one with `regsweep pulls listen` or `regsweep pulls import` first".into(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| fail(path, "open", e))?;
        let ledger = Ledger {
            path: path.to_path_buf(),
            conn,
        };
        ledger.busy()?;
        ledger.check_format()?;
        Ok(ledger)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn busy(&self) -> Result<()> {
        (self.conn)
            .busy_timeout(std::time::Duration::from_millis(BUSY_MS))
            .map_err(|e| fail(&self.path, "open", e))
    }

    fn setup(&self) -> Result<()> {
        self.busy()?;
        let p = &self.path;
        // WAL: readers (gc) go on while the listener writes; FULL: a commit is on disk before
        // the listener answers 200.
        let mode: String = (self.conn)
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| fail(p, "open", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::debug!(mode, "the ledger is not in WAL mode");
        }
        (self.conn)
            .execute_batch("PRAGMA synchronous=FULL;")
            .map_err(|e| fail(p, "open", e))?;
        let has_meta: bool = (self.conn)
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| fail(p, "read", e))?
            > 0;
        let tables: i64 = (self.conn)
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| fail(p, "read", e))?;
        if !has_meta && tables > 0 {
            return Err(not_a_ledger(p));
        }
        (self.conn)
            .execute_batch(SCHEMA)
            .map_err(|e| fail(p, "create", e))?;
        (self.conn)
            .execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('format', ?1), ('version', ?2)",
                params![FORMAT, VERSION],
            )
            .map_err(|e| fail(p, "write", e))?;
        self.check_format()
    }

    fn check_format(&self) -> Result<()> {
        let p = &self.path;
        let get = |key: &str| -> Option<String> {
            (self.conn)
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .ok()
        };
        match (get("format").as_deref(), get("version").as_deref()) {
            (Some(FORMAT), Some(VERSION)) => Ok(()),
            (Some(FORMAT), Some(v)) => Err(Error::Ledger {
                path: p.clone(),
                message: format!("ledger version {v}; this regsweep reads version {VERSION}"),
            }),
            _ => {
                // A file SQLite cannot read at all says so on the first query.
                (self.conn)
                    .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map_err(|e| fail(p, "read", e))?;
                Err(not_a_ledger(p))
            }
        }
    }

    /// Records `events` and widens `source`'s span to `covered` (from, until), in one
    /// transaction, synced before this returns.
    pub fn record(
        &mut self,
        source: &str,
        events: &[Event],
        covered: Option<(Time, Time)>,
    ) -> Result<()> {
        let p = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| fail(&p, "write", e))?;
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO refs(repository, kind, name, last_pull, last_push, last_delete)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(repository, kind, name) DO UPDATE SET
                       last_pull = max(coalesce(last_pull, excluded.last_pull), coalesce(excluded.last_pull, last_pull)),
                       last_push = max(coalesce(last_push, excluded.last_push), coalesce(excluded.last_push, last_push)),
                       last_delete = max(coalesce(last_delete, excluded.last_delete), coalesce(excluded.last_delete, last_delete))",
                )
                .map_err(|e| fail(&p, "write", e))?;
            for e in events {
                let (pull, push, delete) = match e.action {
                    Action::Pull => (Some(e.time), None, None),
                    Action::Push | Action::Mount => (None, Some(e.time), None),
                    Action::Delete => (None, None, Some(e.time)),
                };
                let keys = (e.tag.iter().map(|t| ("tag", t.clone())))
                    .chain(e.digest.iter().map(|d| ("digest", d.to_string())));
                for (kind, name) in keys {
                    up.execute(params![e.repository, kind, name, pull, push, delete])
                        .map_err(|er| fail(&p, "write", er))?;
                }
            }
        }
        let first = events.iter().map(|e| e.time).min();
        let last = events.iter().map(|e| e.time).max();
        if let Some((from, until)) = covered.or(first.zip(last)) {
            tx.execute(
                "INSERT INTO spans(source, covered_from, covered_until, first_event, last_event)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(source) DO UPDATE SET
                   covered_from = min(covered_from, excluded.covered_from),
                   covered_until = max(covered_until, excluded.covered_until),
                   first_event = min(coalesce(first_event, excluded.first_event), coalesce(excluded.first_event, first_event)),
                   last_event = max(coalesce(last_event, excluded.last_event), coalesce(excluded.last_event, last_event))",
                params![source, from, until, first, last],
            )
            .map_err(|e| fail(&p, "write", e))?;
        }
        tx.commit().map_err(|e| fail(&p, "write", e))
    }

    /// Everything the policy needs: last pulls and the spans.
    pub fn history(&self) -> Result<PullHistory> {
        let p = &self.path;
        let mut h = PullHistory {
            path: p.clone(),
            ..PullHistory::default()
        };
        let mut q = (self.conn)
            .prepare(
                "SELECT repository, kind, name, last_pull, last_push FROM refs WHERE last_pull IS NOT NULL OR last_push IS NOT NULL",
            )
            .map_err(|e| fail(p, "read", e))?;
        let rows = q
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    (r.get::<_, Option<i64>>(3)?, r.get::<_, Option<i64>>(4)?),
                ))
            })
            .map_err(|e| fail(p, "read", e))?;
        for row in rows {
            let (repo, kind, name, (pull, push)) = row.map_err(|e| fail(p, "read", e))?;
            match (kind.as_str(), Digest::parse(&name)) {
                ("digest", Some(d)) => {
                    if let Some(t) = push {
                        h.pushed.insert((repo.clone(), d), t);
                    }
                    if let Some(t) = pull {
                        h.digests.insert((repo, d), t);
                    }
                }
                ("tag", _) => {
                    if let Some(t) = pull {
                        h.tags.insert((repo, name), t);
                    }
                }
                _ => {}
            }
        }
        h.spans = self.spans()?;
        Ok(h)
    }

    pub fn spans(&self) -> Result<Vec<Span>> {
        let p = &self.path;
        let mut q = (self.conn)
            .prepare("SELECT source, covered_from, covered_until, first_event, last_event FROM spans ORDER BY source")
            .map_err(|e| fail(p, "read", e))?;
        let rows = q
            .query_map([], |r| {
                Ok(Span {
                    source: r.get(0)?,
                    covered_from: r.get(1)?,
                    covered_until: r.get(2)?,
                    first_event: r.get(3)?,
                    last_event: r.get(4)?,
                })
            })
            .map_err(|e| fail(p, "read", e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| fail(p, "read", e))
    }

    /// Rows of `refs` (what a test or `pulls import` reports).
    pub fn count(&self) -> Result<(u64, u64)> {
        let p = &self.path;
        let n = |kind: &str| -> Result<u64> {
            (self.conn)
                .query_row(
                    "SELECT count(*) FROM refs WHERE kind = ?1 AND last_pull IS NOT NULL",
                    [kind],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as u64)
                .map_err(|e| fail(p, "read", e))
        };
        Ok((n("tag")?, n("digest")?))
    }
}

/// A path that must be a file (or not exist): never a FIFO or a device SQLite would block on.
fn refuse_non_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(Error::Ledger {
            path: path.to_path_buf(),
            message: "not a regular file: give the path of a ledger file".into(),
        }),
        _ => Ok(()),
    }
}

fn not_a_ledger(path: &Path) -> Error {
    Error::Ledger {
        path: path.to_path_buf(),
        message: "a SQLite database, but not a regsweep pull ledger: give another path".into(),
    }
}

/// A SQLite error as one line with the cause and what to do.
fn fail(path: &Path, doing: &str, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    let code = e.sqlite_error_code();
    let message = match code {
        Some(C::NotADatabase) => {
            "not a regsweep pull ledger (not a SQLite database at all): give another path"
                .to_string()
        }
        Some(C::DatabaseBusy | C::DatabaseLocked) => format!(
            "cannot {doing} the ledger: another process holds it locked (waited {} s); try again when it is done",
            BUSY_MS / 1000
        ),
        Some(C::ReadOnly) => format!(
            "cannot {doing} the ledger: it is read-only (file or folder permissions, or a read-only mount)"
        ),
        Some(C::CannotOpen) => format!(
            "cannot {doing} the ledger: {e} (does the folder exist, and may this user write to it?)"
        ),
        Some(C::PermissionDenied) => format!("cannot {doing} the ledger: permission denied"),
        Some(C::DiskFull) => format!("cannot {doing} the ledger: the disk is full"),
        _ => format!("cannot {doing} the ledger: {e}"),
    };
    Error::Ledger {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests;
