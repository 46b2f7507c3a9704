//! The exclusive lock that keeps two regsweep runs that change a root from overlapping.
//!
//! The lock is `flock(2)` on `<root>/.regsweep.lock`, so the kernel drops it when its holder
//! dies; the file also records the holder's pid, host and start time. A file left by a dead
//! holder is a stale lock: reported, and removed only with `--break-lock`, so that a human
//! looks at a run that died before the next one starts.

use crate::error::{Error, Result};
use crate::storage::dirfd::Dir;
use crate::storage::seam::Folder;
use std::ffi::OsStr;
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub const LOCK_FILE: &str = ".regsweep.lock";

/// Beside the lock: what a sweep left for the live registry's cache to forget
/// (`live::pending`).
pub const PENDING_EVICTION: &str = ".regsweep.pending-eviction";

/// Held until dropped; the file is removed then.
#[derive(Debug)]
pub struct Lock {
    file: File,
    /// The root folder, held open: the lock file is opened and removed relative to it, never
    /// through a symlink (a symlinked or FIFO lock file is refused, not followed or waited on).
    root: DirBox,
}

/// `Dir` for a `Debug` struct.
struct DirBox(Dir);

impl std::fmt::Debug for DirBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dir")
    }
}

fn holder(text: &str) -> String {
    let mut pid = "?";
    let mut started = "?";
    let mut host = "?";
    let mut command = "?";
    for line in text.lines() {
        match line.split_once('=') {
            Some(("pid", v)) => pid = v,
            Some(("started", v)) => started = v,
            Some(("host", v)) => host = v,
            Some(("command", v)) => command = v,
            _ => {}
        }
    }
    format!("pid {pid} on {host}, `{command}`, started {started}")
}

/// What a lock says of its holder, on disk and in a bucket alike.
pub(crate) fn holder_text(command: &str) -> String {
    format!(
        "pid={}\nhost={}\nstarted={}\ncommand={command}\n",
        std::process::id(),
        hostname(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Whether `file` is still the one named `LOCK_FILE` in `root`.
fn still_named(root: &Dir, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), root.stat(LOCK_FILE)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino && a.dev() == b.dev,
        _ => false,
    }
}

/// Why the lock file could not be opened, and the step that helps: removing the file only
/// when the file itself is the problem.
fn open_failure(path: &Path, e: &std::io::Error) -> Error {
    let folder = path.parent().unwrap_or(path).display();
    let why = match e.raw_os_error() {
        Some(libc::EROFS) => format!(
            "{folder} is on a read-only file system; a run that deletes must write its lock there: mount it read-write (a --dry-run takes no lock)"
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "permission denied; a run that deletes must write its lock in {folder}: run it as the user the registry stores its files as"
        ),
        _ if crate::storage::dirfd::is_symlink_error(e) => {
            "it is a symbolic link, which regsweep never follows: remove it and run again".into()
        }
        _ if e.kind() == std::io::ErrorKind::InvalidInput => {
            "it is not a regular file (a FIFO, a device or a folder): remove it and run again"
                .into()
        }
        _ => crate::error::io_cause(e),
    };
    Error::Locked {
        path: path.to_path_buf(),
        message: format!("cannot open the lock file: {why}"),
    }
}

impl Lock {
    /// Takes the lock of `root` for `command`, or says who holds it.
    pub fn acquire(root: &Path, command: &str, break_lock: bool) -> Result<Lock> {
        let path = root.join(LOCK_FILE);
        let io = |e| Error::io(&path, e);
        let dir = Dir::open(root).map_err(|e| Error::io(root, e))?;
        // A holder that exits unlinks the file; one who locked the unlinked file must retry.
        let (mut file, got) = loop {
            let file =
                (dir.open_rw(OsStr::new(LOCK_FILE), true)).map_err(|e| open_failure(&path, &e))?;
            let got = match file.try_lock() {
                Ok(()) => true,
                Err(TryLockError::WouldBlock) => false,
                Err(TryLockError::Error(e)) => return Err(io(e)),
            };
            if !got || still_named(&dir, &file) {
                break (file, got);
            }
        };
        let mut previous = String::new();
        (&mut file)
            .take(64 * 1024)
            .read_to_string(&mut previous)
            .map_err(io)?;
        if !got {
            return Err(Error::Locked {
                path,
                message: format!("another regsweep holds it: {}", holder(&previous)),
            });
        }
        if !previous.trim().is_empty() && !break_lock {
            return Err(Error::Locked {
                path,
                message: format!(
                    "stale lock: {} no longer runs (it died or was killed); check the last report, then run again with --break-lock",
                    holder(&previous)
                ),
            });
        }
        if !previous.trim().is_empty() {
            tracing::warn!("breaking the stale lock of {}", holder(&previous));
        }
        let text = holder_text(command);
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(io)?;
        Ok(Lock {
            file,
            root: DirBox(dir),
        })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Empty first: should removal fail, an empty file is no stale lock.
        let _ = self.file.set_len(0);
        if still_named(&self.root.0, &self.file) {
            let _ = self.root.0.unlink(OsStr::new(LOCK_FILE), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_then_released() {
        let dir = tempfile::tempdir().unwrap();
        let a = Lock::acquire(dir.path(), "gc", false).unwrap();
        let e = Lock::acquire(dir.path(), "apply", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("pid {}", std::process::id())) && e.contains("`gc`"),
            "{e}"
        );
        drop(a);
        assert!(!dir.path().join(LOCK_FILE).exists());
        Lock::acquire(dir.path(), "gc", false).unwrap();
    }

    #[test]
    fn a_stale_lock_needs_break_lock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LOCK_FILE),
            "pid=999999\nhost=h\nstarted=2026-01-01T00:00:00Z\ncommand=gc\n",
        )
        .unwrap();
        let e = Lock::acquire(dir.path(), "gc", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stale") && e.contains("pid 999999") && e.contains("--break-lock"),
            "{e}"
        );
        let l = Lock::acquire(dir.path(), "gc", true).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(text.contains(&format!("pid={}", std::process::id())));
        drop(l);
    }

    #[test]
    fn never_through_a_symlink_nor_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(LOCK_FILE)).unwrap();
        let e = Lock::acquire(dir.path(), "gc", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        // A dangling one creates nothing outside.
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        let dangling = outside.path().join("created");
        std::os::unix::fs::symlink(&dangling, dir.path().join(LOCK_FILE)).unwrap();
        assert!(Lock::acquire(dir.path(), "gc", true).is_err());
        assert!(!dangling.exists());
        // A FIFO is refused at once, not waited on.
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        crate::testutil::mkfifo(&dir.path().join(LOCK_FILE));
        let e = Lock::acquire(dir.path(), "gc", true).unwrap_err();
        assert!(
            e.to_string().ends_with("cannot open the lock file: it is not a regular file (a FIFO, a device or a folder): remove it and run again"),
            "{e}"
        );
    }

    #[test]
    fn open_failures_name_their_cause() {
        let path = Path::new("/srv/registry/.regsweep.lock");
        let say = |errno| open_failure(path, &std::io::Error::from_raw_os_error(errno)).to_string();
        // No file to remove: no advice to remove one.
        let ro = say(libc::EROFS);
        assert_eq!(
            ro,
            "/srv/registry/.regsweep.lock: cannot open the lock file: /srv/registry is on a read-only file system; a run that deletes must write its lock there: mount it read-write (a --dry-run takes no lock)"
        );
        let denied = say(libc::EACCES);
        assert!(
            denied.contains("permission denied;") && !denied.contains("remove"),
            "{denied}"
        );
        assert!(say(libc::ELOOP).contains("symbolic link"));
    }
}
