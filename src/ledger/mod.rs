//! The pull ledger: a SQLite database (WAL, synced on every commit) of when each tag and
//! digest was last pulled, pushed or deleted, the intervals of proof of each stream of
//! evidence (`model::coverage`), and the deliveries the listener rejected.
//!
//! Every write takes the later time and unions intervals, so recording the same evidence
//! twice changes nothing: importing a log again is harmless.

pub mod canary;
mod counters;
pub mod event;
pub mod listen;
pub mod logs;
pub mod peers;

use crate::error::{Error, Result};
use crate::model::Time;
use crate::model::coverage::{Intervals, Rejection, Stream};
use crate::model::digest::Digest;
use crate::model::pulls::PullHistory;
use rusqlite::{Connection, OpenFlags, params};
use std::path::{Path, PathBuf};

pub use event::{Action, Event};

/// The ledger's format, stored in it so that another SQLite file is told apart.
const FORMAT: &str = "regsweep-pull-ledger";
/// 2: coverage as intervals per stream (version 1's min/max spans proved nothing, and are
/// dropped on upgrade).
const VERSION: &str = "2";

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
CREATE TABLE IF NOT EXISTS streams (
    source TEXT NOT NULL,
    instance TEXT NOT NULL,
    process TEXT NOT NULL,
    tolerance INTEGER NOT NULL,
    last_event INTEGER,
    last_canary INTEGER,
    PRIMARY KEY (source, instance, process)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intervals (
    source TEXT NOT NULL,
    instance TEXT NOT NULL,
    process TEXT NOT NULL,
    covered_from INTEGER NOT NULL,
    covered_until INTEGER NOT NULL,
    PRIMARY KEY (source, instance, process, covered_from)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (
    source TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    hour INTEGER NOT NULL,
    count INTEGER NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (source, status, reason, hour)
) WITHOUT ROWID;
";

/// Evidence of one stream brought by one write: the moments something of the registry's
/// reached the ledger.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub source: String,
    /// The registry instance (`source.addr`, or a log's `--instance`).
    pub instance: String,
    /// One process of it (`source.instanceID`), or empty.
    pub process: String,
    /// The silence bridged between two moments, in seconds.
    pub tolerance: u64,
    pub points: Vec<Time>,
    /// Of those, the canary's pulls.
    pub canaries: Vec<Time>,
}

/// A delivery refused, or an event not believed.
#[derive(Debug, Clone)]
pub struct Refused {
    pub source: String,
    pub status: u16,
    /// A fixed text per kind (rows are counted by it).
    pub reason: String,
    /// What this one said (kept for the first of its hour).
    pub detail: String,
    pub time: Time,
}

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
        let now = chrono::Utc::now().timestamp().to_string();
        (self.conn)
            .execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('format', ?1), ('version', ?2), ('created', ?3)",
                params![FORMAT, VERSION, now],
            )
            .map_err(|e| fail(p, "write", e))?;
        if self.meta("format")?.as_deref() == Some(FORMAT)
            && self.meta("version")?.as_deref() == Some("1")
        {
            // Version 1's spans (earliest start, latest end) are no proof: coverage starts anew.
            (self.conn)
                .execute_batch(
                    "DROP TABLE IF EXISTS spans; UPDATE meta SET value = '2' WHERE key = 'version';",
                )
                .map_err(|e| fail(p, "upgrade", e))?;
            tracing::warn!(
                "{}: upgraded from ledger version 1; its spans proved no coverage, so coverage starts now",
                p.display()
            );
        }
        self.check_format()
    }

    /// A value of the ledger's `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        (self.conn)
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| fail(&self.path, "read", e))
    }

    /// Sets a value of `meta` (the canary the listener pulls).
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        (self.conn)
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| fail(&self.path, "write", e))
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
            (Some(FORMAT), Some("1")) => Err(Error::Ledger {
                path: p.clone(),
                message: "ledger version 1, whose spans prove no coverage: run `regsweep pulls listen` or `regsweep pulls import` on it once to upgrade it (coverage then starts anew)".into(),
            }),
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

    /// Records `events`, unions each stream's `evidence` into its intervals and counts what was
    /// `refused`, in one transaction, synced before this returns.
    pub fn record(
        &mut self,
        events: &[Event],
        evidence: &[Evidence],
        refused: &[Refused],
    ) -> Result<()> {
        let p = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| fail(&p, "write", e))?;
        write_events(&tx, events).map_err(|e| fail(&p, "write", e))?;
        for ev in evidence.iter().filter(|e| !e.points.is_empty()) {
            write_evidence(&tx, ev).map_err(|e| fail(&p, "write", e))?;
        }
        for r in refused {
            tx.execute(
                "INSERT INTO rejections(source, status, reason, hour, count, first, last, detail)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5, ?6)
                 ON CONFLICT(source, status, reason, hour) DO UPDATE SET
                   count = count + 1, first = min(first, excluded.first), last = max(last, excluded.last)",
                params![r.source, r.status, r.reason, r.time.div_euclid(3600), r.time, r.detail],
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
        h.streams = self.streams()?;
        h.rejections = self.rejections()?;
        h.created = self.meta("created")?.and_then(|t| t.parse().ok());
        h.canary = self.meta("canary")?;
        h.unproven = self.meta(listen::UNPROVEN)?.is_some_and(|v| !v.is_empty());
        Ok(h)
    }

    /// Every stream of evidence with its intervals, by source, instance and process.
    pub fn streams(&self) -> Result<Vec<Stream>> {
        self.read_streams().map_err(|e| fail(&self.path, "read", e))
    }

    fn read_streams(&self) -> rusqlite::Result<Vec<Stream>> {
        let mut q = self.conn.prepare(
            "SELECT source, instance, process, tolerance, last_event, last_canary FROM streams ORDER BY instance, source, process",
        )?;
        let mut streams = q
            .query_map([], |r| {
                Ok(Stream {
                    source: r.get(0)?,
                    instance: r.get(1)?,
                    process: r.get(2)?,
                    tolerance: r.get::<_, i64>(3)?.max(0) as u64,
                    intervals: Intervals::default(),
                    last_event: r.get(4)?,
                    last_canary: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for s in &mut streams {
            s.intervals = intervals_of(&self.conn, (&s.source, &s.instance, &s.process))?;
        }
        Ok(streams)
    }

    /// The deliveries rejected, by hour and reason.
    pub fn rejections(&self) -> Result<Vec<Rejection>> {
        let p = &self.path;
        let mut q = (self.conn)
            .prepare("SELECT source, status, reason, count, first, last, detail FROM rejections ORDER BY first")
            .map_err(|e| fail(p, "read", e))?;
        let rows = q
            .query_map([], |r| {
                Ok(Rejection {
                    source: r.get(0)?,
                    status: r.get(1)?,
                    reason: r.get(2)?,
                    count: r.get::<_, i64>(3)?.max(0) as u64,
                    first: r.get(4)?,
                    last: r.get(5)?,
                    detail: r.get(6)?,
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

fn write_events(tx: &rusqlite::Transaction, events: &[Event]) -> rusqlite::Result<()> {
    let mut up = tx.prepare_cached(
        "INSERT INTO refs(repository, kind, name, last_pull, last_push, last_delete)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(repository, kind, name) DO UPDATE SET
           last_pull = max(coalesce(last_pull, excluded.last_pull), coalesce(excluded.last_pull, last_pull)),
           last_push = max(coalesce(last_push, excluded.last_push), coalesce(excluded.last_push, last_push)),
           last_delete = max(coalesce(last_delete, excluded.last_delete), coalesce(excluded.last_delete, last_delete))",
    )?;
    for e in events {
        let (pull, push, delete) = match e.action {
            Action::Pull => (Some(e.time), None, None),
            Action::Push | Action::Mount => (None, Some(e.time), None),
            Action::Delete => (None, None, Some(e.time)),
        };
        let keys = (e.tag.iter().map(|t| ("tag", t.clone())))
            .chain(e.digest.iter().map(|d| ("digest", d.to_string())));
        for (kind, name) in keys {
            up.execute(params![e.repository, kind, name, pull, push, delete])?;
        }
    }
    Ok(())
}

type StreamKey<'a> = (&'a str, &'a str, &'a str);

fn intervals_of(conn: &Connection, (s, i, p): StreamKey) -> rusqlite::Result<Intervals> {
    let mut q = conn.prepare_cached(
        "SELECT covered_from, covered_until FROM intervals WHERE source = ?1 AND instance = ?2 AND process = ?3 ORDER BY covered_from",
    )?;
    let rows = q.query_map(params![s, i, p], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Intervals(rows.collect::<rusqlite::Result<Vec<_>>>()?))
}

/// Unions one stream's new moments into its stored intervals (bridged by its tolerance, as
/// the moments of one stream are): only the stored intervals within reach of the new ones are
/// read and rewritten, so a long-lived listener's commit stays small.
fn write_evidence(tx: &rusqlite::Transaction, ev: &Evidence) -> rusqlite::Result<()> {
    let key = (
        ev.source.as_str(),
        ev.instance.as_str(),
        ev.process.as_str(),
    );
    let new = Intervals::from_points(ev.points.iter().copied(), ev.tolerance);
    let tol = ev.tolerance as i64;
    let (lo, hi) = match (new.first(), new.last()) {
        (Some(a), Some(z)) => (a.saturating_sub(tol), z.saturating_add(tol)),
        _ => return Ok(()),
    };
    let near = "source = ?1 AND instance = ?2 AND process = ?3 AND covered_until >= ?4 AND covered_from <= ?5";
    let mut iv = {
        let mut q = tx.prepare_cached(&format!(
            "SELECT covered_from, covered_until FROM intervals WHERE {near} ORDER BY covered_from"
        ))?;
        let rows = q.query_map(params![key.0, key.1, key.2, lo, hi], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Intervals(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    };
    tx.execute(
        &format!("DELETE FROM intervals WHERE {near}"),
        params![key.0, key.1, key.2, lo, hi],
    )?;
    iv.extend(&new, ev.tolerance);
    for (a, z) in &iv.0 {
        tx.execute(
            "INSERT INTO intervals(source, instance, process, covered_from, covered_until) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key.0, key.1, key.2, a, z],
        )?;
    }
    let last = ev.points.iter().max();
    let canary = ev.canaries.iter().max();
    tx.execute(
        "INSERT INTO streams(source, instance, process, tolerance, last_event, last_canary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(source, instance, process) DO UPDATE SET
           tolerance = excluded.tolerance,
           last_event = max(coalesce(last_event, excluded.last_event), coalesce(excluded.last_event, last_event)),
           last_canary = max(coalesce(last_canary, excluded.last_canary), coalesce(excluded.last_canary, last_canary))",
        params![key.0, key.1, key.2, ev.tolerance as i64, last, canary],
    )?;
    Ok(())
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
