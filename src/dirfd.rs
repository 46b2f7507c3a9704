//! Folders held open, for stats, renames and unlinks of names inside them: scan and sweep touch
//! millions of entries, and a walk of each whole path from `/` is most of their kernel time.

use crate::model::Time;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An open folder. Names given to it are relative, and a final symlink is never followed.
pub struct DirHandle(fs::File);

/// What scan and sweep need of a stat.
#[derive(Debug)]
pub struct Stat {
    pub regular: bool,
    pub dir: bool,
    pub symlink: bool,
    pub size: u64,
    pub mtime: Time,
    /// Bytes allocated on disk.
    pub allocated: u64,
}

fn c_name(rel: &OsStr) -> io::Result<CString> {
    CString::new(rel.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl DirHandle {
    /// Opens a folder; fails on a symlink or anything that is not a folder.
    pub fn open(path: &Path) -> io::Result<DirHandle> {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map(DirHandle)
    }

    /// Stats `rel` below this folder without following a final symlink.
    pub fn stat(&self, rel: &OsStr) -> io::Result<Stat> {
        let name = c_name(rel)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a valid fd and NUL-terminated name; fstatat fills `st` when it returns 0.
        check(unsafe {
            libc::fstatat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        // SAFETY: initialised by the successful call above.
        let st = unsafe { st.assume_init() };
        let kind = st.st_mode & libc::S_IFMT;
        Ok(Stat {
            regular: kind == libc::S_IFREG,
            dir: kind == libc::S_IFDIR,
            symlink: kind == libc::S_IFLNK,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            allocated: st.st_blocks as u64 * 512,
        })
    }

    /// Renames `from` to `to`, both in this folder.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.0.as_raw_fd();
        // SAFETY: a valid fd and NUL-terminated names.
        check(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) })
    }

    /// Unlinks the file `rel`, or with `dir` the empty folder `rel`.
    pub fn unlink(&self, rel: &OsStr, dir: bool) -> io::Result<()> {
        let name = c_name(rel)?;
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: a valid fd and NUL-terminated name.
        check(unsafe { libc::unlinkat(self.0.as_raw_fd(), name.as_ptr(), flags) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_renames_and_unlinks_relative_to_the_folder() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("a")).unwrap();
        fs::write(t.path().join("a/data"), b"12345").unwrap();
        std::os::unix::fs::symlink("a", t.path().join("s")).unwrap();
        let h = DirHandle::open(t.path()).unwrap();
        let s = h.stat(OsStr::new("a/data")).unwrap();
        assert!(s.regular && s.size == 5);
        assert!(h.stat(OsStr::new("s")).unwrap().symlink);
        assert!(h.stat(OsStr::new("a")).unwrap().dir);
        // A symlinked folder is not opened as one.
        assert!(DirHandle::open(&t.path().join("s")).is_err());
        h.rename(OsStr::new("a"), OsStr::new("b")).unwrap();
        assert_eq!(
            h.unlink(OsStr::new("b"), true).unwrap_err().raw_os_error(),
            Some(libc::ENOTEMPTY)
        );
        h.unlink(OsStr::new("b/data"), false).unwrap();
        h.unlink(OsStr::new("b"), true).unwrap();
        assert!(!t.path().join("b").exists());
        assert_eq!(
            h.stat(OsStr::new("nul\0byte")).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
