//! The storage seam: the few operations regsweep performs on a registry's storage, so that scan,
//! sweep and the lock are written once for every backend.
//!
//! A backend ([`Storage`]) opens the layout's top folder once (`docker/registry/v2`); everything
//! else is reached from there through [`Folder`] values, by names relative to them. The middle
//! (policy, mark, plan, usage, integrity) never sees this seam: it works on the model that scan
//! builds through it. Each operation, and what it is on each backend:
//!
//! | operation | filesystem ([`super::fs`], handles from `dirfd`) | object store (keys; no folders) |
//! |---|---|---|
//! | `open_dir` | `openat2(BENEATH, NO_SYMLINKS)`, a folder handle | a key prefix: no request |
//! | `entries` (list a prefix: names, kinds) | `getdents` on the handle, no stat | `LIST prefix/` by pages of 1000 keys; first names below the prefix, "folders" where keys go deeper |
//! | `stat` (size, mtime) | `statx` relative to the handle | from the listing that named the key (`Size`, `LastModified`); `HEAD` only for a key no listing held |
//! | `read_small`, `open_file` | `openat` `O_NONBLOCK`, regular files only, bounded | `GET`, bounded by the listed size |
//! | `tree_size` | a walk by handles | sum of the listed sizes under the prefix |
//! | `rename_to` (take an item out of the registry's sight) | one `renameat` of its folder | none (`Capabilities::rename` is false): items go by `remove_many_unless_changed`, a fresh listing of their folder then batched `DeleteObjects`, guards last; the sweep's stage order (tags, revisions, layer links, blobs) keeps every step valid |
//! | `unlink`, `remove_tree` | `unlinkat` through handles, never following a symlink | batched `DeleteObjects` of up to 1000 keys |
//! | `make_dir(s)` | `mkdirat` | nothing: prefixes exist by their keys |
//! | [`Storage::lock`] | `flock` on `<root>/.regsweep.lock` | a create-only (`If-None-Match: *`) `PUT` of `<prefix>/.regsweep.lock` |
//!
//! An object-store backend answers `entries` and `stat` of a whole subtree from one recursive
//! listing (the blob store by its 256 `xx/` prefixes, in parallel), so that a scan costs one LIST
//! page per 1000 keys plus one GET per link it must read and per manifest; symlinks, FIFOs and
//! devices simply never occur there.

use crate::model::Time;
use crate::model::digest::Digest;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What scan and sweep need of a stat.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// The nanoseconds of the mtime, for "changed since the run began".
    pub mtime_nsec: i64,
    /// Bytes allocated on disk (on an object store, the size).
    pub allocated: u64,
    /// Device and inode: on disk, which file this is (an object store has no such thing: 0).
    pub dev: u64,
    pub ino: u64,
}

/// The kind of a directory entry or stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device: nothing the registry writes.
    Other,
}

impl Stat {
    /// The mtime in nanoseconds since the epoch.
    pub fn mtime_ns(&self) -> i128 {
        i128::from(self.mtime) * 1_000_000_000 + i128::from(self.mtime_nsec)
    }
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
    pub fn is_symlink(&self) -> bool {
        self.kind == Kind::Symlink
    }
}

/// Why a small file could not be read.
#[derive(Debug)]
pub enum ReadError {
    Missing,
    /// A symlink on the way or at the end: never followed.
    Symlink,
    /// Not a regular file (a folder, FIFO, socket or device).
    NotAFile(Kind),
    TooLarge(u64),
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => write!(f, "missing"),
            ReadError::Symlink => write!(f, "is a symbolic link, or lies behind one; not followed"),
            ReadError::NotAFile(k) => write!(
                f,
                "is not a regular file ({}); not read",
                match k {
                    Kind::Dir => "a folder",
                    Kind::Symlink => "a symbolic link",
                    _ => "a FIFO, socket or device",
                }
            ),
            ReadError::TooLarge(n) => write!(f, "{n} bytes: larger than such a file can be"),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        match e.raw_os_error() {
            Some(libc::ENOENT) => ReadError::Missing,
            // A backend without errno (memory, an object store) says it by kind.
            None if e.kind() == io::ErrorKind::NotFound => ReadError::Missing,
            Some(libc::ELOOP) | Some(libc::EXDEV) => ReadError::Symlink,
            _ => ReadError::Io(e),
        }
    }
}

/// Reads `f` whole, `size` bytes by its stat, refusing more than `limit`: the one bounded read
/// every backend uses.
pub fn read_bounded(f: impl io::Read, size: u64, limit: u64) -> Result<Vec<u8>, ReadError> {
    if size > limit {
        return Err(ReadError::TooLarge(size));
    }
    let mut buf = Vec::with_capacity(size as usize);
    // The file may grow after the stat: read one byte past the limit to tell.
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge(buf.len() as u64));
    }
    Ok(buf)
}

/// A place in the storage: a folder on disk, a key prefix in a bucket. Names given to it are
/// relative, one `/`-separated path of plain components (never `..`, never absolute), and no
/// symbolic link is followed on the way.
pub trait Folder: Sized + Send + Sync {
    /// A file opened for reading as a stream (for hashing whole blobs).
    type File: io::Read + Send;

    /// Opens the folder `rel` below this one.
    fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<Self>;
    /// The entries of this folder with their kinds, sorted by name.
    fn entries(&self) -> io::Result<Vec<(OsString, Kind)>>;
    /// Size, kind and mtime of `rel`, without following a final symlink.
    fn stat(&self, rel: impl AsRef<Path>) -> io::Result<Stat>;
    /// Opens the regular file `rel` for reading, with its stat.
    fn open_file(&self, rel: impl AsRef<Path>) -> Result<(Self::File, Stat), ReadError>;
    /// Reads the regular file `rel` whole, refusing one over `limit` bytes.
    fn read_small(&self, rel: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>, ReadError> {
        self.read_with_stat(rel, limit).map(|(bytes, _)| bytes)
    }
    /// Reads a small file whole with its stat (a link: its digest and its mtime).
    fn read_with_stat(
        &self,
        rel: impl AsRef<Path>,
        limit: u64,
    ) -> Result<(Vec<u8>, Stat), ReadError> {
        let (f, st) = self.open_file(rel)?;
        read_bounded(f, st.size, limit).map(|buf| (buf, st))
    }
    /// Bytes of the regular files below `name`.
    fn tree_size(&self, name: &OsStr) -> u64;
    /// Moves `from` here to `to` in `dest`, taking it out of the registry's sight whole.
    fn rename_to(&self, from: &OsStr, dest: &Self, to: &OsStr) -> io::Result<()>;
    /// Removes the file `name`, or with `dir` the empty folder `name`.
    fn unlink(&self, name: &OsStr, dir: bool) -> io::Result<()>;
    /// Removes `name` and everything below it; gone already is done.
    fn remove_tree(&self, name: &OsStr) -> io::Result<()>;
    /// Creates the folder `name` if it is not there, and opens it.
    fn make_dir(&self, name: &OsStr) -> io::Result<Self>;
    /// `make_dir` for each component of `rel` in turn.
    fn make_dirs(&self, rel: &Path) -> io::Result<Self>;
    /// For a store that cannot rename (see [`Capabilities::rename`]): removes the item folders
    /// `names` of this folder, each unless something in it was modified at or after `since_ns`.
    /// Everything below an item goes, its `guard` files last, so the registry serves it whole
    /// until its guard goes; `between` is called after the rest went and before the guards go.
    /// One result per name: `Ok(false)` kept, it changed; `NotFound` gone already. An object
    /// store lists the folder once and deletes in batches of up to 1000 keys.
    fn remove_many_unless_changed(
        &self,
        names: &[String],
        _guard: &[&str],
        _since_ns: i128,
        _between: &(dyn Fn() + Sync),
    ) -> Vec<io::Result<bool>> {
        (names.iter())
            .map(|_| Err(io::Error::from(io::ErrorKind::Unsupported)))
            .collect()
    }
    /// `remove_many_unless_changed` for the items of many folders (each relative to this one),
    /// as many folders at once as the store takes; a folder is not begun once `stop` says so
    /// (`None`). An `Err` for a folder that cannot be opened. On disk: one folder after another.
    fn remove_groups(
        &self,
        groups: &[(PathBuf, Vec<String>)],
        guard: &[&str],
        since_ns: i128,
        between: &(dyn Fn() + Sync),
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Vec<Option<io::Result<Vec<io::Result<bool>>>>> {
        (groups.iter())
            .map(|(rel, names)| {
                if stop() {
                    return None;
                }
                Some(
                    self.open_dir(rel)
                        .map(|d| d.remove_many_unless_changed(names, guard, since_ns, between)),
                )
            })
            .collect()
    }
    /// This folder, with everything below it about to be read: an object store lists the whole
    /// subtree now, in pages of 1000 keys, and answers `entries` and `stat` below from that
    /// listing; on disk it is the folder as it is.
    fn whole(self) -> io::Result<Self> {
        Ok(self)
    }
    /// A hint that the files `rels` (below this folder, each at most `limit` bytes) are about to
    /// be read: an object store fetches them now, many requests in flight at once, and answers
    /// the reads from memory. On disk: nothing.
    fn prefetch_files(&self, _rels: &[String], _limit: u64) {}
    /// A hint that the folders `rels` are about to be opened and read `whole`: an object store
    /// lists them all now, many at once. On disk: nothing.
    fn prefetch_listings(&self, _rels: &[String]) {}
}

/// A registry's storage, opened: its top folder, where it is, and its lock.
pub trait Storage: Sync {
    type Folder: Folder;
    /// Held while a run may change the storage; released when dropped.
    type Lock;

    /// `docker/registry/v2`, opened once: every read and change goes through it.
    fn top(&self) -> &Self::Folder;
    /// Where the top is, for messages and reports (a path on disk; `s3://bucket/prefix/...`).
    fn v2(&self) -> &Path;
    /// The storage root as the operator names it: the `rootdirectory`; `s3://bucket/prefix`.
    fn location(&self) -> PathBuf;
    /// Takes the exclusive lock for `command`, or says who holds it.
    fn lock(&self, command: &str, break_lock: bool) -> crate::error::Result<Self::Lock>;
    /// Opens a folder the operator named outside the layout, on the same storage (a trash run,
    /// which must be reachable by `rename_to`).
    fn open_outside(&self, path: &Path) -> io::Result<Self::Folder>;
    /// When each of `blobs` (digest and its data's mtime from the scan) arrived in the blob
    /// store; `Time::MAX` (young) where that cannot be read.
    fn blob_arrivals(&self, blobs: &[(Digest, Time)]) -> Vec<Time>;
    /// What this backend can do: the stages ask this, never which backend it is.
    fn capabilities(&self) -> Capabilities;
    /// regsweep's own small file `name` at the storage root, beside the lock (never inside
    /// the layout): its bytes, or `None` when there is none.
    fn read_state(&self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Writes `name` whole, replacing it at once (a synced temporary renamed over it on disk,
    /// one PUT in a bucket), or removes it (`None`; none there is no error).
    fn write_state(&self, name: &str, bytes: Option<&[u8]>) -> io::Result<()>;
    /// The requests made so far, by kind (an object store's cost); `None` on disk.
    fn requests(&self) -> Option<Requests> {
        None
    }
    /// Why reads went unanswered (an object store that timed out, refused or failed after
    /// its retries): what they would have shown is unknown, so the run must stop before it
    /// plans. `None` on disk, where a failed read is damage the scan reports.
    fn unanswered(&self) -> Option<String> {
        None
    }
    /// How full the filesystem holding the layout is (`statvfs`); `None` in a bucket, which
    /// has no size.
    fn usage(&self) -> Option<crate::model::space::FsUsage> {
        None
    }
}

/// The most regsweep reads of one of its own state files.
pub const STATE_LIMIT: u64 = 1 << 30;

/// A state file's name: one plain component starting with `.regsweep.`, or the pull-through
/// cache's own `scheduler-state.json`.
pub fn check_state_name(name: &str) -> io::Result<()> {
    let ours = name.starts_with(".regsweep.") || name == crate::model::scheduler::STATE_FILE;
    let plain = ours && !name.contains(['/', '\\', '\0']);
    match plain {
        true => Ok(()),
        false => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is no state file name"),
        )),
    }
}

/// What a backend can do (as object_store's and opendal's capabilities say it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `rename_to` takes an item out of the registry's sight whole (a folder rename on disk). A
    /// store without it removes items by `remove_many_unless_changed`, and has no trash.
    pub rename: bool,
    /// The most keys one delete request removes (1: one unlink at a time).
    pub max_batch: usize,
    /// Symbolic links, FIFOs and devices can occur where the layout has files and folders.
    pub symlinks: bool,
}

/// Requests to an object store, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requests {
    pub list: u64,
    pub get: u64,
    pub head: u64,
    pub put: u64,
    pub copy: u64,
    pub delete: u64,
    /// Answers of 503 (SlowDown) or 429: the store asked for fewer requests.
    #[serde(default)]
    pub throttled: u64,
    /// Attempts answered 5xx or 429, or whose connection failed: retried with backoff (the last
    /// of a request that still failed is among them).
    #[serde(default)]
    pub retried: u64,
    /// The most requests that were in flight at once.
    #[serde(default)]
    pub peak_in_flight: u64,
    /// The fewest in flight that throttling brought the bound down to (0: never throttled).
    #[serde(default)]
    pub lowest_in_flight: u64,
}

impl Requests {
    pub fn total(&self) -> u64 {
        self.list + self.get + self.head + self.put + self.copy + self.delete
    }
}

/// An item whose deletes were sent and are not seen to have landed (a bucket's removals): worth
/// another try later, unlike an item never reached or kept. `seen`: its keys were read back and
/// some are still there; otherwise what went could not be read back, and it may be gone. It
/// says what happened itself, so the sweep reports it as it is.
#[derive(Debug)]
pub struct NotDeleted {
    pub cause: String,
    pub seen: bool,
}

impl std::fmt::Display for NotDeleted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seen {
            true => write!(f, "not deleted: {}", self.cause),
            false => write!(
                f,
                "sent for deletion, not known to be deleted (it may be gone; the next run sees): {}",
                self.cause
            ),
        }
    }
}

impl std::error::Error for NotDeleted {}
