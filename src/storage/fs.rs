//! The filesystem backend of the storage seam: a registry root on a local or mounted filesystem,
//! reached only through folder handles (`dirfd`) from its `docker/registry/v2` down.

use crate::error::{Error, Result};
use crate::model::Time;
use crate::model::digest::Digest;
use crate::model::paths::{DATA, Paths};
use crate::storage::dirfd::Dir;
use crate::storage::lock::Lock;
use crate::storage::seam::{
    Capabilities, Folder, ReadError, STATE_LIMIT, Storage, check_state_name,
};
use rayon::prelude::*;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

/// A registry's filesystem storage, opened once: its top folder held as a handle.
pub struct FsStorage {
    /// The storage root (the registry's `rootdirectory`), where the lock lives.
    root: PathBuf,
    /// Its `docker/registry/v2`, canonical: what reports and findings name.
    v2: PathBuf,
    top: Dir,
}

impl FsStorage {
    /// Opens the layout below `root` (the `rootdirectory`, or its `docker/registry/v2`), resolved
    /// once: everything below is reached through the handle kept here, never by path again.
    pub fn open(root: &Path) -> Result<FsStorage> {
        let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
        if !meta.is_dir() {
            return Err(Error::NotARegistry {
                path: root.to_path_buf(),
            });
        }
        readable(root)?;
        let v2 = locate_v2(root).ok_or_else(|| Error::NotARegistry {
            path: root.to_path_buf(),
        })?;
        let v2 = v2.canonicalize().map_err(|e| Error::io(&v2, e))?;
        let top = Dir::open(&v2).map_err(|e| Error::io(&v2, e))?;
        // Both spellings of a root (`rootdirectory` or its v2) take the same lock.
        let root = v2.ancestors().nth(3).unwrap_or(root).to_path_buf();
        Ok(FsStorage { root, v2, top })
    }
}

impl Storage for FsStorage {
    type Folder = Dir;
    type Lock = Lock;

    fn top(&self) -> &Dir {
        &self.top
    }
    fn v2(&self) -> &Path {
        &self.v2
    }
    fn location(&self) -> PathBuf {
        self.root.clone()
    }
    fn lock(&self, command: &str, break_lock: bool) -> Result<Lock> {
        Lock::acquire(&self.root, command, break_lock)
    }
    fn open_outside(&self, path: &Path) -> io::Result<Dir> {
        Dir::open(path)
    }
    fn read_state(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        check_state_name(name)?;
        let root = Dir::open(&self.root)?;
        match root.read_small(name, STATE_LIMIT) {
            Ok(b) => Ok(Some(b)),
            Err(ReadError::Missing) => Ok(None),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }
    fn write_state(&self, name: &str, bytes: Option<&[u8]>) -> io::Result<()> {
        use std::io::Write;
        check_state_name(name)?;
        let root = Dir::open(&self.root)?;
        let name = OsStr::new(name);
        let Some(bytes) = bytes else {
            return match root.unlink(name, false) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r.and_then(|_| root.sync()),
            };
        };
        let mut tmp = name.to_os_string();
        tmp.push(".tmp");
        let mut f = root.open_rw(&tmp, true)?;
        f.set_len(0)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        root.rename_to(&tmp, &root, name)?;
        root.sync()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            rename: true,
            max_batch: 1,
            symlinks: true,
        }
    }
    fn usage(&self) -> Option<crate::model::space::FsUsage> {
        let st = rustix::fs::fstatvfs(self.top.fd()).ok()?;
        let unit = st.f_frsize.max(1);
        let used = st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(unit);
        let avail = st.f_bavail.saturating_mul(unit);
        Some(crate::model::space::FsUsage {
            size: used.saturating_add(avail),
            used,
        })
    }

    /// The later of each blob's data mtime and its folder's: a finished upload is moved into
    /// `blobs/` by rename, which keeps the upload's (possibly old) data mtime but sets the
    /// folder's. Read only for blobs a plan would delete, so a scan pays one stat per blob, not
    /// two.
    fn blob_arrivals(&self, blobs: &[(Digest, Time)]) -> Vec<Time> {
        let rel = Paths::new(PathBuf::new());
        blobs
            .par_iter()
            .map(|(d, _)| {
                let dir = rel.blob_dir(d);
                match (self.top.stat(&dir), self.top.stat(dir.join(DATA))) {
                    (Ok(a), Ok(b)) => a.mtime.max(b.mtime),
                    _ => Time::MAX,
                }
            })
            .collect()
    }
}

/// Finds the `docker/registry/v2` folder for a storage root. The folder itself is accepted
/// too, since operators often point at it directly.
/// A folder on the way to the layout that cannot be read is said to be so, not taken for a
/// folder that is no registry.
fn readable(root: &Path) -> Result<()> {
    let mut dir = root.to_path_buf();
    for next in [None, Some("docker"), Some("registry"), Some("v2")] {
        dir.extend(next);
        match std::fs::read_dir(&dir) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let why = "permission denied: cannot read the registry's storage; run as the user the registry stores its files as (or as root)";
                return Err(Error::io(dir, io::Error::new(e.kind(), why)));
            }
            Err(_) => break,
        }
    }
    Ok(())
}

pub fn locate_v2(root: &Path) -> Option<PathBuf> {
    let v2 = root.join("docker/registry/v2");
    if v2.is_dir() {
        return Some(v2);
    }
    let looks_like_v2 = crate::model::paths::looks_like_v2(|n| root.join(n).is_dir());
    if looks_like_v2 && root.ends_with("docker/registry/v2") {
        return Some(root.to_path_buf());
    }
    None
}
