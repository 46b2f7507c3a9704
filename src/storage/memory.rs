//! The in-memory backend of the storage seam: a registry layout held in a map, for testing the
//! stages (scan, sweep) and the seam itself without a registry, a disk or a bucket.
//!
//! It behaves as the filesystem does where the seam promises something (sorted entries, stat
//! of files and folders, bounded reads, renames that take a folder away whole and set both
//! parents' mtimes, removal of empty folders only), and has no symbolic links.

use crate::error::{Error, Result};
use crate::model::Time;
use crate::model::digest::Digest;
use crate::model::paths::{DATA, Paths};
use crate::storage::seam::{Capabilities, Folder, Kind, ReadError, Stat, Storage};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone)]
enum Node {
    File { data: Vec<u8>, mtime_ns: i128 },
    Dir { mtime_ns: i128 },
}

impl Node {
    fn mtime_ns(&self) -> i128 {
        match self {
            Node::File { mtime_ns, .. } | Node::Dir { mtime_ns } => *mtime_ns,
        }
    }
}

#[derive(Debug, Default)]
struct Tree {
    /// Every file and folder by its path from the memory root, without a leading `/`.
    nodes: BTreeMap<String, Node>,
    /// The command holding the lock.
    locked: Option<String>,
    /// regsweep's state files, by name.
    state: BTreeMap<String, Vec<u8>>,
    /// The filesystem it pretends to be on (`set_usage`).
    usage: Option<crate::model::space::FsUsage>,
}

/// The top of the layout within the memory root.
const V2: &str = "docker/registry/v2";

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn join(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}/{rel}"),
    }
}

/// A relative name of plain components, as UTF-8.
fn plain(rel: &Path) -> io::Result<String> {
    let text = rel
        .to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "name is not UTF-8"))?;
    let bad = |c: &str| c.is_empty() || c == "." || c == "..";
    if !text.is_empty() && text.split('/').any(bad) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{text:?}: not a plain relative name"),
        ));
    }
    Ok(text.to_string())
}

fn lock_tree(tree: &Mutex<Tree>) -> MutexGuard<'_, Tree> {
    tree.lock().unwrap_or_else(|e| e.into_inner())
}

/// A registry's storage in memory; clones share the same tree.
#[derive(Debug, Clone)]
pub struct MemStorage {
    tree: Arc<Mutex<Tree>>,
    top: MemFolder,
}

impl Default for MemStorage {
    fn default() -> MemStorage {
        MemStorage::new()
    }
}

impl MemStorage {
    /// An empty layout: `docker/registry/v2` with `blobs` and `repositories`.
    pub fn new() -> MemStorage {
        let tree = Arc::new(Mutex::new(Tree::default()));
        let m = MemStorage {
            top: MemFolder {
                tree: tree.clone(),
                path: V2.into(),
            },
            tree,
        };
        m.mkdirs(&format!("{V2}/blobs/sha256"), 0);
        m.mkdirs(&format!("{V2}/repositories"), 0);
        m
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        lock_tree(&self.tree)
    }

    fn mkdirs(&self, path: &str, mtime: Time) {
        let mut t = self.tree();
        let mut at = String::new();
        for c in path.split('/') {
            at = join(&at, c);
            (t.nodes.entry(at.clone())).or_insert(Node::Dir {
                mtime_ns: i128::from(mtime) * 1_000_000_000,
            });
        }
    }

    /// Writes the file `rel` below `docker/registry/v2` (its folders too), modified at `mtime`.
    pub fn put(&self, rel: &str, data: &[u8], mtime: Time) {
        let path = join(V2, rel);
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.mkdirs(parent, mtime);
        }
        self.tree().nodes.insert(
            path,
            Node::File {
                data: data.to_vec(),
                mtime_ns: i128::from(mtime) * 1_000_000_000,
            },
        );
    }

    /// Whether `rel` below `docker/registry/v2` exists.
    pub fn exists(&self, rel: &str) -> bool {
        self.tree().nodes.contains_key(&join(V2, rel))
    }

    /// The command holding the lock, if any.
    /// Makes `usage` answer `size` and `used`, as a filesystem would.
    pub fn set_usage(&self, size: u64, used: u64) {
        self.tree().usage = Some(crate::model::space::FsUsage { size, used });
    }

    pub fn locked_by(&self) -> Option<String> {
        self.tree().locked.clone()
    }

    /// Every file below `docker/registry/v2`, by its path from there.
    pub fn files(&self) -> Vec<String> {
        let prefix = format!("{V2}/");
        (self.tree().nodes.iter())
            .filter(|(_, n)| matches!(n, Node::File { .. }))
            .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }
}

/// A folder of a [`MemStorage`].
#[derive(Debug, Clone)]
pub struct MemFolder {
    tree: Arc<Mutex<Tree>>,
    path: String,
}

impl MemFolder {
    fn tree(&self) -> MutexGuard<'_, Tree> {
        lock_tree(&self.tree)
    }

    fn at(&self, rel: &str) -> String {
        join(&self.path, rel)
    }

    fn name(&self, name: &OsStr) -> io::Result<String> {
        plain(Path::new(name)).map(|n| self.at(&n))
    }
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found"))
}

impl Folder for MemFolder {
    type File = io::Cursor<Vec<u8>>;

    fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<MemFolder> {
        let path = self.at(&plain(rel.as_ref())?);
        match self.tree().nodes.get(&path) {
            Some(Node::Dir { .. }) => Ok(MemFolder {
                tree: self.tree.clone(),
                path,
            }),
            Some(Node::File { .. }) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{path}: not a folder"),
            )),
            None => Err(not_found(&path)),
        }
    }

    fn entries(&self) -> io::Result<Vec<(OsString, Kind)>> {
        let prefix = format!("{}/", self.path);
        let t = self.tree();
        let mut out = Vec::new();
        for (k, n) in t.nodes.range(prefix.clone()..) {
            let Some(rest) = k.strip_prefix(&prefix) else {
                break;
            };
            if !rest.contains('/') {
                let kind = match n {
                    Node::File { .. } => Kind::File,
                    Node::Dir { .. } => Kind::Dir,
                };
                out.push((OsString::from(rest), kind));
            }
        }
        Ok(out)
    }

    fn stat(&self, rel: impl AsRef<Path>) -> io::Result<Stat> {
        let path = self.at(&plain(rel.as_ref())?);
        let t = self.tree();
        let n = t.nodes.get(&path).ok_or_else(|| not_found(&path))?;
        let (kind, size) = match n {
            Node::File { data, .. } => (Kind::File, data.len() as u64),
            Node::Dir { .. } => (Kind::Dir, 0),
        };
        Ok(Stat {
            kind,
            size,
            mtime: n.mtime_ns().div_euclid(1_000_000_000) as i64,
            mtime_nsec: n.mtime_ns().rem_euclid(1_000_000_000) as i64,
            allocated: size,
            dev: 0,
            ino: 0,
        })
    }

    fn open_file(
        &self,
        rel: impl AsRef<Path>,
    ) -> std::result::Result<(Self::File, Stat), ReadError> {
        let st = self.stat(rel.as_ref())?;
        let path = self.at(&plain(rel.as_ref())?);
        match self.tree().nodes.get(&path) {
            Some(Node::File { data, .. }) => Ok((io::Cursor::new(data.clone()), st)),
            Some(Node::Dir { .. }) => Err(ReadError::NotAFile(Kind::Dir)),
            None => Err(ReadError::Missing),
        }
    }

    fn tree_size(&self, name: &OsStr) -> u64 {
        let Ok(path) = self.name(name) else { return 0 };
        let prefix = format!("{path}/");
        (self.tree().nodes.iter())
            .filter(|(k, _)| **k == path || k.starts_with(&prefix))
            .map(|(_, n)| match n {
                Node::File { data, .. } => data.len() as u64,
                Node::Dir { .. } => 0,
            })
            .sum()
    }

    fn rename_to(&self, from: &OsStr, dest: &Self, to: &OsStr) -> io::Result<()> {
        let (from, to) = (self.name(from)?, dest.name(to)?);
        let mut t = self.tree();
        if !t.nodes.contains_key(&from) {
            return Err(not_found(&from));
        }
        if t.nodes.contains_key(&to) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{to}: exists"),
            ));
        }
        let prefix = format!("{from}/");
        let moving: Vec<String> = (t.nodes.keys())
            .filter(|k| **k == from || k.starts_with(&prefix))
            .cloned()
            .collect();
        for k in moving {
            let node = t.nodes.remove(&k).expect("listed");
            t.nodes.insert(format!("{to}{}", &k[from.len()..]), node);
        }
        // As on disk: both folders changed.
        let now = now_ns();
        for parent in [&self.path, &dest.path] {
            if let Some(Node::Dir { mtime_ns }) = t.nodes.get_mut(parent.as_str()) {
                *mtime_ns = now;
            }
        }
        Ok(())
    }

    fn unlink(&self, name: &OsStr, dir: bool) -> io::Result<()> {
        let path = self.name(name)?;
        let mut t = self.tree();
        match t.nodes.get(&path) {
            None => return Err(not_found(&path)),
            Some(Node::Dir { .. }) if !dir => {
                return Err(io::Error::new(io::ErrorKind::IsADirectory, path));
            }
            Some(Node::File { .. }) if dir => {
                return Err(io::Error::new(io::ErrorKind::NotADirectory, path));
            }
            Some(Node::Dir { .. }) => {
                let prefix = format!("{path}/");
                if t.nodes
                    .range(prefix.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&prefix))
                {
                    return Err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, path));
                }
            }
            Some(Node::File { .. }) => {}
        }
        t.nodes.remove(&path);
        if let Some(Node::Dir { mtime_ns }) = t.nodes.get_mut(&self.path) {
            *mtime_ns = now_ns();
        }
        Ok(())
    }

    fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        let path = self.name(name)?;
        let prefix = format!("{path}/");
        let mut t = self.tree();
        t.nodes.retain(|k, _| *k != path && !k.starts_with(&prefix));
        Ok(())
    }

    fn make_dir(&self, name: &OsStr) -> io::Result<MemFolder> {
        let path = self.name(name)?;
        let mut t = self.tree();
        match t.nodes.get(&path) {
            Some(Node::File { .. }) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, path));
            }
            Some(Node::Dir { .. }) => {}
            None => {
                t.nodes
                    .insert(path.clone(), Node::Dir { mtime_ns: now_ns() });
            }
        }
        Ok(MemFolder {
            tree: self.tree.clone(),
            path,
        })
    }

    fn make_dirs(&self, rel: &Path) -> io::Result<MemFolder> {
        let rel = plain(rel)?;
        let mut at = self.clone();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            at = at.make_dir(OsStr::new(c))?;
        }
        Ok(at)
    }
}

/// The in-memory lock: released when dropped.
pub struct MemLock(MemStorage);

impl Drop for MemLock {
    fn drop(&mut self) {
        self.0.tree().locked = None;
    }
}

impl Storage for MemStorage {
    type Folder = MemFolder;
    type Lock = MemLock;

    fn top(&self) -> &MemFolder {
        &self.top
    }
    fn v2(&self) -> &Path {
        Path::new("/memory/docker/registry/v2")
    }
    fn location(&self) -> PathBuf {
        PathBuf::from("/memory")
    }
    fn lock(&self, command: &str, break_lock: bool) -> Result<MemLock> {
        let mut t = self.tree();
        if let Some(holder) = &t.locked
            && !break_lock
        {
            return Err(Error::Locked {
                path: PathBuf::from("/memory/.regsweep.lock"),
                message: format!("locked by `{holder}`"),
            });
        }
        t.locked = Some(command.to_string());
        Ok(MemLock(self.clone()))
    }
    fn open_outside(&self, path: &Path) -> io::Result<MemFolder> {
        let rel = path.strip_prefix("/memory").unwrap_or(path);
        let root = MemFolder {
            tree: self.tree.clone(),
            path: String::new(),
        };
        root.open_dir(rel)
    }
    fn blob_arrivals(&self, blobs: &[(Digest, Time)]) -> Vec<Time> {
        let rel = Paths::new(PathBuf::new());
        (blobs.iter())
            .map(|(d, _)| {
                let dir = rel.blob_dir(d);
                match (self.top().stat(&dir), self.top().stat(dir.join(DATA))) {
                    (Ok(a), Ok(b)) => a.mtime.max(b.mtime),
                    _ => Time::MAX,
                }
            })
            .collect()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            rename: true,
            max_batch: 1,
            symlinks: false,
        }
    }
    fn usage(&self) -> Option<crate::model::space::FsUsage> {
        self.tree().usage
    }
    fn read_state(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        crate::storage::seam::check_state_name(name)?;
        Ok(self.tree().state.get(name).cloned())
    }
    fn write_state(&self, name: &str, bytes: Option<&[u8]>) -> io::Result<()> {
        crate::storage::seam::check_state_name(name)?;
        let mut t = self.tree();
        match bytes {
            Some(b) => t.state.insert(name.to_string(), b.to_vec()),
            None => t.state.remove(name),
        };
        Ok(())
    }
}
