//! The exclusive lock that keeps two regsweep runs that change a root from overlapping.
//!
//! The lock is `flock(2)` on `<root>/.regsweep.lock`, so the kernel drops it when its holder
//! dies; the file also records the holder's pid, host and start time. A file left by a dead
//! holder is a stale lock: reported, and removed only with `--break-lock`, so that a human
//! looks at a run that died before the next one starts.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = ".regsweep.lock";

/// Held until dropped; the file is removed then.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

impl Lock {
    /// Takes the lock of `root` for `command`, or says who holds it.
    pub fn acquire(root: &Path, command: &str, break_lock: bool) -> Result<Lock> {
        use std::os::unix::fs::MetadataExt;
        let path = root.join(LOCK_FILE);
        let io = |e| Error::io(&path, e);
        // A holder that exits unlinks the file; one who locked the unlinked file must retry.
        let (mut file, got) = loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
            let got = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !got || same {
                break (file, got);
            }
        };
        let mut previous = String::new();
        file.read_to_string(&mut previous).map_err(io)?;
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
        let text = format!(
            "pid={}\nhost={}\nstarted={}\ncommand={command}\n",
            std::process::id(),
            hostname(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(io)?;
        Ok(Lock { file, path })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Empty first: should removal fail, an empty file is no stale lock.
        let _ = self.file.set_len(0);
        let _ = std::fs::remove_file(&self.path);
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
}
