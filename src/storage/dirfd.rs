//! Folders held open, and every read, rename and removal done relative to them, never through a
//! symbolic link: what scan, sweep, trash and lock may do to a registry's storage.
//!
//! A path below an open folder is resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! where the kernel has it, and otherwise one component at a time with `O_NOFOLLOW |
//! O_DIRECTORY`: either way a symlink anywhere on the way fails the call (ELOOP) instead of
//! leading out of the root, and no path is ever built from the root again after a check.
//! Files are opened `O_NONBLOCK` and must be regular, so a FIFO or a device where a link belongs
//! is refused at once rather than waited on, and every read is bounded.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU8, Ordering};

use super::seam::read_bounded;
pub use super::seam::{Folder, Kind, ReadError, Stat};

/// An open folder. Names given to it are relative; no symlink is followed on the way.
pub struct Dir(OwnedFd);

fn kind_of(t: FileType) -> Option<Kind> {
    Some(match t {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        FileType::Unknown => return None,
        _ => Kind::Other,
    })
}

fn stat_of(st: &rustix::fs::Stat) -> Stat {
    Stat {
        kind: kind_of(FileType::from_raw_mode(st.st_mode)).unwrap_or(Kind::Other),
        size: st.st_size as u64,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as i64,
        allocated: st.st_blocks as u64 * 512,
        dev: st.st_dev,
        ino: st.st_ino,
    }
}

/// True for the error a symlink on the way gives (ELOOP; EXDEV when openat2 saw it leave).
pub fn is_symlink_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV))
}

/// The components of a relative path: refuses `..`, `.` and roots, which no layout path has.
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    rel.components()
        .map(|c| match c {
            Component::Normal(s) => Ok(s),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a plain relative path", rel.display()),
            )),
        })
        .collect()
}

const OPENAT2_UNKNOWN: u8 = 0;
const OPENAT2_YES: u8 = 1;
const OPENAT2_NO: u8 = 2;
/// Whether openat2 works here (a seccomp filter or an old kernel may refuse it).
static OPENAT2: AtomicU8 = AtomicU8::new(OPENAT2_UNKNOWN);

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Dir {
    /// Opens a folder by its full path; fails on a final symlink or on anything not a folder.
    /// Only for roots the operator names (resolved by the caller); everything below is relative.
    pub fn open(path: &Path) -> io::Result<Dir> {
        rustix::fs::open(path, dir_flags(), Mode::empty())
            .map(Dir)
            .map_err(io::Error::from)
    }

    /// Opens `rel` below this folder with `flags`, following no symlink at any step.
    fn open_beneath(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let parts = components(rel)?;
        if parts.is_empty() {
            return rustix::fs::openat(&self.0, ".", flags, Mode::empty()).map_err(Into::into);
        }
        if OPENAT2.load(Ordering::Relaxed) != OPENAT2_NO {
            let how =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.0, rel, flags, Mode::empty(), how) {
                Ok(fd) => {
                    OPENAT2.store(OPENAT2_YES, Ordering::Relaxed);
                    return Ok(fd);
                }
                Err(e)
                    if OPENAT2.load(Ordering::Relaxed) == OPENAT2_UNKNOWN
                        && (e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM) =>
                {
                    OPENAT2.store(OPENAT2_NO, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // One component at a time, each O_NOFOLLOW.
        let (last, dirs) = parts.split_last().expect("not empty");
        let mut held: Option<OwnedFd> = None;
        for part in dirs {
            let base = held.as_ref().map_or(self.0.as_fd(), |f| f.as_fd());
            held = Some(rustix::fs::openat(base, *part, dir_flags(), Mode::empty())?);
        }
        let base = held.as_ref().map_or(self.0.as_fd(), |f| f.as_fd());
        Ok(rustix::fs::openat(
            base,
            *last,
            flags | OFlags::NOFOLLOW,
            Mode::empty(),
        )?)
    }

    /// The folder's descriptor (for `fstatvfs`).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// Flushes this folder's entries to disk (after a rename or an unlink in it).
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.0)?)
    }

    /// Opens (creating it with `create`) the regular file `name` here for reading and writing,
    /// never through a symlink, never blocking on a FIFO.
    pub fn open_rw(&self, name: &OsStr, create: bool) -> io::Result<fs::File> {
        check_name(name)?;
        let mut flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        if create {
            flags |= OFlags::CREATE;
        }
        let fd = rustix::fs::openat(&self.0, name, flags, Mode::from_raw_mode(0o644))?;
        let st = stat_of(&rustix::fs::fstat(&fd)?);
        if !st.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(fs::File::from(fd))
    }
}

impl Folder for Dir {
    type File = fs::File;

    /// Opens the folder `rel` below this one.
    fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<Dir> {
        let rel = rel.as_ref();
        match self.open_beneath(rel, dir_flags()) {
            // O_DIRECTORY answers ENOTDIR for a final symlink: say what it really is.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOTDIR)
                    && self.stat(rel).is_ok_and(|s| s.is_symlink()) =>
            {
                Err(io::Error::from_raw_os_error(libc::ELOOP))
            }
            r => r.map(Dir),
        }
    }

    /// The entries of this folder with their kinds (a stat only where the filesystem gives no
    /// type), sorted by name. `.` and `..` are left out.
    fn entries(&self) -> io::Result<Vec<(OsString, Kind)>> {
        let mut out = Vec::new();
        let dup = rustix::fs::openat(&self.0, ".", dir_flags(), Mode::empty())?;
        for entry in rustix::fs::Dir::new(dup)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from_vec(name.to_vec());
            let kind = match kind_of(entry.file_type()) {
                Some(k) => k,
                None => self.stat(&name)?.kind,
            };
            out.push((name, kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Stats `rel` below this folder without following a final symlink. Folders on the way are
    /// the caller's: scan has just seen them as folders, and a stat changes nothing.
    fn stat(&self, rel: impl AsRef<Path>) -> io::Result<Stat> {
        let rel = rel.as_ref();
        components(rel)?;
        rustix::fs::statat(&self.0, rel, AtFlags::SYMLINK_NOFOLLOW)
            .map(|s| stat_of(&s))
            .map_err(Into::into)
    }

    /// Opens the regular file `rel` for reading, without blocking (a FIFO is refused, not
    /// waited on) and without following symlinks; with its stat.
    fn open_file(&self, rel: impl AsRef<Path>) -> Result<(fs::File, Stat), ReadError> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = self.open_beneath(rel.as_ref(), flags)?;
        let st = stat_of(&rustix::fs::fstat(&fd).map_err(io::Error::from)?);
        if !st.is_file() {
            return Err(ReadError::NotAFile(st.kind));
        }
        Ok((fs::File::from(fd), st))
    }

    /// Renames `from` in this folder to `to` in `dest`; a symlink is moved as itself.
    fn rename_to(&self, from: &OsStr, dest: &Dir, to: &OsStr) -> io::Result<()> {
        check_name(from)?;
        check_name(to)?;
        rustix::fs::renameat(&self.0, from, &dest.0, to).map_err(Into::into)
    }

    /// Unlinks the file (or symlink) `name`, or with `dir` the empty folder `name`.
    fn unlink(&self, name: &OsStr, dir: bool) -> io::Result<()> {
        check_name(name)?;
        let flags = if dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rustix::fs::unlinkat(&self.0, name, flags).map_err(Into::into)
    }

    /// Deletes `name` and everything below it, through handles: a symlink inside is unlinked,
    /// never followed. Gone already is done.
    fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        let st = match self.stat(name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if !st.is_dir() {
            return self.unlink(name, false);
        }
        let sub = Dir(rustix::fs::openat(
            &self.0,
            name,
            dir_flags(),
            Mode::empty(),
        )?);
        for (child, kind) in sub.entries()? {
            if kind == Kind::Dir {
                sub.remove_tree(&child)?;
            } else {
                sub.unlink(&child, false)?;
            }
        }
        self.unlink(name, true)
    }

    /// Creates the folder `name` here if it is not there; opens it either way (never a symlink).
    fn make_dir(&self, name: &OsStr) -> io::Result<Dir> {
        check_name(name)?;
        match rustix::fs::mkdirat(&self.0, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        self.open_dir(Path::new(name))
    }

    /// `make_dir` for each component of `rel` in turn.
    fn make_dirs(&self, rel: &Path) -> io::Result<Dir> {
        let mut parts = components(rel)?.into_iter();
        let Some(first) = parts.next() else {
            return self.open_dir(Path::new(""));
        };
        let mut d = self.make_dir(first)?;
        for p in parts {
            d = d.make_dir(p)?;
        }
        Ok(d)
    }

    /// Bytes of regular files below `name`, through handles (for abandoned uploads).
    fn tree_size(&self, name: &OsStr) -> u64 {
        let Ok(sub) = self.open_dir(Path::new(name)) else {
            return 0;
        };
        let Ok(entries) = sub.entries() else { return 0 };
        entries
            .iter()
            .map(|(n, k)| match k {
                Kind::Dir => sub.tree_size(n),
                Kind::File => sub.stat(n).map_or(0, |s| s.size),
                _ => 0,
            })
            .sum()
    }
}

/// A single name: no separator, not `.` or `..`.
fn check_name(name: &OsStr) -> io::Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?}: not a single file name"),
        ));
    }
    Ok(())
}

/// Reads a file the operator named (a trash record, say) the same careful way: no final
/// symlink, no FIFO, bounded.
pub fn read_path(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(io::Error::from)?;
    let st = stat_of(&rustix::fs::fstat(&fd).map_err(io::Error::from)?);
    if !st.is_file() {
        return Err(ReadError::NotAFile(st.kind));
    }
    read_bounded(fs::File::from(fd), st.size, limit)
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
        let h = Dir::open(t.path()).unwrap();
        let s = h.stat("a/data").unwrap();
        assert!(s.is_file() && s.size == 5);
        assert!(h.stat("s").unwrap().is_symlink());
        assert!(h.stat("a").unwrap().is_dir());
        // A symlinked folder is not opened as one, at the end or on the way.
        assert!(Dir::open(&t.path().join("s")).is_err());
        assert!(is_symlink_error(&h.open_dir("s").err().unwrap()));
        assert!(matches!(
            h.read_small("s/data", 10),
            Err(ReadError::Symlink)
        ));
        assert_eq!(h.read_small("a/data", 10).unwrap(), b"12345");
        assert!(matches!(
            h.read_small("a/data", 4),
            Err(ReadError::TooLarge(5))
        ));
        assert!(h.open_dir("../x").is_err() && h.open_dir("/etc").is_err());
        h.rename_to(OsStr::new("a"), &h, OsStr::new("b")).unwrap();
        assert_eq!(
            h.unlink(OsStr::new("b"), true).unwrap_err().raw_os_error(),
            Some(libc::ENOTEMPTY)
        );
        assert!(h.unlink(OsStr::new("b/data"), false).is_err(), "one name");
        h.remove_tree(OsStr::new("b")).unwrap();
        assert!(!t.path().join("b").exists());
        assert!(h.stat("nul\0byte").is_err());
    }

    #[test]
    fn a_fifo_is_refused_at_once_and_remove_tree_never_follows() {
        let t = tempfile::tempdir().unwrap();
        crate::testutil::mkfifo(&t.path().join("f"));
        let h = Dir::open(t.path()).unwrap();
        assert!(matches!(
            h.read_small("f", 100),
            Err(ReadError::NotAFile(Kind::Other))
        ));
        assert!(h.open_rw(OsStr::new("f"), true).is_err());
        // A tree holding a symlink to a folder outside: the link goes, the outside stays.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"x").unwrap();
        fs::create_dir_all(t.path().join("tree/sub")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("tree/sub/out")).unwrap();
        h.remove_tree(OsStr::new("tree")).unwrap();
        assert!(!t.path().join("tree").exists());
        assert!(outside.path().join("keep").exists());
    }
}
