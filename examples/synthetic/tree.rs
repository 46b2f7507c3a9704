//! A registry layout that is computed, not stored: every listing, stat and link of BLOBS
//! blobs in REPOS repositories is generated on demand from the blob's number, so the backend
//! holds nothing and the core's own memory shows at sizes (100M blobs) that no memory backend
//! or disk here can hold. Read-only: a dry run's scan, manifests, mark and plan.
//!
//! Blob `k`'s digest is `k mod 256`, then `k` in 8 big-endian bytes, then 23 bytes of `0x5a`:
//! its prefix folder is found from `k`, and `k` from its name. Image `i` is blobs `10i` (its
//! manifest), `10i+1` (config) and `10i+2..10i+9` (layers), in repository `i mod REPOS`,
//! tagged `t{i}` unless `i` is a multiple of 5; blobs past the images' are dangling.

use regsweep::model::Time;
use regsweep::model::digest::Digest;
use regsweep::storage::seam::{Capabilities, Folder, Kind, ReadError, Stat, Storage};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The layout's shape.
#[derive(Debug)]
pub struct Shape {
    pub blobs: u64,
    pub repos: u64,
    pub images: u64,
    pub mtime: Time,
}

impl Shape {
    pub fn new(blobs: u64, repos: u64, mtime: Time) -> Shape {
        Shape {
            blobs,
            repos,
            images: blobs * 9 / 100,
            mtime,
        }
    }

    fn digest(k: u64) -> Digest {
        let mut d = [0x5a; 32];
        d[0] = (k % 256) as u8;
        d[1..9].copy_from_slice(&k.to_be_bytes());
        Digest(d)
    }

    fn hex(k: u64) -> String {
        Shape::digest(k).to_string()["sha256:".len()..].to_string()
    }

    /// The blob a folder name names, if it is one of this layout's.
    fn blob(&self, name: &str) -> Option<u64> {
        let d = Digest::parse(&format!("sha256:{name}"))?;
        let k = u64::from_be_bytes(d.0[1..9].try_into().ok()?);
        (k < self.blobs && Shape::digest(k) == d).then_some(k)
    }

    fn repo_name(r: u64) -> (String, String) {
        (format!("ns{}", r % 7), format!("repo{r}"))
    }

    /// The images of repository `r`.
    fn images_of(&self, r: u64) -> impl Iterator<Item = u64> + '_ {
        (r..self.images).step_by(self.repos as usize)
    }

    fn manifest(&self, i: u64) -> Vec<u8> {
        let layer = |k: u64| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{}","size":1000}}"#,
                Shape::hex(k)
            )
        };
        let layers: Vec<String> = (10 * i + 2..10 * i + 10).map(layer).collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":100}},"layers":[{}]}}"#,
            Shape::hex(10 * i + 1),
            layers.join(",")
        )
        .into_bytes()
    }

    /// The repository `ns{a}/repo{r}` names, if it is one of this layout's.
    fn repo(&self, ns: &str, name: &str) -> Option<u64> {
        let r: u64 = name.strip_prefix("repo")?.parse().ok()?;
        (r < self.repos && Shape::repo_name(r) == (ns.to_string(), name.to_string())).then_some(r)
    }

    /// What is at `path` (components below `docker/registry/v2`): a folder's entries, or a
    /// file's bytes and size.
    fn at(&self, path: &[&str]) -> Option<Node> {
        use Node::{Dir, File};
        let dirs =
            |names: &[&str]| Some(Dir(names.iter().map(|n| (n.to_string(), true)).collect()));
        match path {
            [] => dirs(&["blobs", "repositories"]),
            ["blobs"] => dirs(&["sha256"]),
            ["blobs", "sha256"] => Some(Dir((0..self.blobs.min(256))
                .map(|p| (format!("{p:02x}"), true))
                .collect())),
            ["blobs", "sha256", pp] => {
                let p = u64::from_str_radix(pp, 16).ok().filter(|_| pp.len() == 2)?;
                let mut v: Vec<(String, bool)> = (p..self.blobs)
                    .step_by(256)
                    .map(|k| (Shape::hex(k), true))
                    .collect();
                v.sort();
                Some(Dir(v))
            }
            ["blobs", "sha256", pp, b] => {
                self.blob(b).filter(|k| format!("{:02x}", k % 256) == *pp)?;
                Some(Dir(vec![("data".into(), false)]))
            }
            ["blobs", "sha256", pp, b, "data"] => {
                let k = self.blob(b).filter(|k| format!("{:02x}", k % 256) == *pp)?;
                Some(match k < 10 * self.images && k % 10 == 0 {
                    true => File(self.manifest(k / 10)),
                    false => Node::Sized(1000),
                })
            }
            ["repositories"] => dirs(
                &["ns0", "ns1", "ns2", "ns3", "ns4", "ns5", "ns6"][..self.repos.min(7) as usize],
            ),
            ["repositories", ns] => {
                let a: u64 = ns.strip_prefix("ns")?.parse().ok().filter(|a| *a < 7)?;
                let mut v: Vec<(String, bool)> = (a..self.repos)
                    .step_by(7)
                    .map(|r| (Shape::repo_name(r).1, true))
                    .collect();
                v.sort();
                Some(Dir(v))
            }
            ["repositories", ns, name, rest @ ..] => self.in_repo(self.repo(ns, name)?, rest),
            _ => None,
        }
    }

    fn in_repo(&self, r: u64, rest: &[&str]) -> Option<Node> {
        use Node::{Dir, File};
        let dirs =
            |names: &[&str]| Some(Dir(names.iter().map(|n| (n.to_string(), true)).collect()));
        let link = |k: u64| Some(File(format!("sha256:{}", Shape::hex(k)).into_bytes()));
        let sorted = |mut v: Vec<(String, bool)>| {
            v.sort();
            Some(Dir(v))
        };
        // The image `i` of this repository a folder name names.
        let mine = |k: u64, what: fn(u64) -> bool| {
            (k < 10 * self.images && what(k) && (k / 10) % self.repos == r).then_some(k)
        };
        let is_manifest = |k: u64| k.is_multiple_of(10);
        let is_layer = |k: u64| !k.is_multiple_of(10);
        let tagged = |t: &str| {
            let i: u64 = t.strip_prefix('t')?.parse().ok()?;
            (i < self.images && i % self.repos == r && !i.is_multiple_of(5) && format!("t{i}") == t)
                .then_some(i)
        };
        match rest {
            [] => dirs(&["_layers", "_manifests"]),
            ["_layers"] => dirs(&["sha256"]),
            ["_layers", "sha256"] => sorted(
                (self.images_of(r))
                    .flat_map(|i| 10 * i + 1..10 * i + 10)
                    .map(|k| (Shape::hex(k), true))
                    .collect(),
            ),
            ["_layers", "sha256", b] => {
                mine(self.blob(b)?, is_layer)?;
                Some(Dir(vec![("link".into(), false)]))
            }
            ["_layers", "sha256", b, "link"] => link(mine(self.blob(b)?, is_layer)?),
            ["_manifests"] => dirs(&["revisions", "tags"]),
            ["_manifests", "revisions"] => dirs(&["sha256"]),
            ["_manifests", "revisions", "sha256"] => sorted(
                (self.images_of(r))
                    .map(|i| (Shape::hex(10 * i), true))
                    .collect(),
            ),
            ["_manifests", "revisions", "sha256", b] => {
                mine(self.blob(b)?, is_manifest)?;
                Some(Dir(vec![("link".into(), false)]))
            }
            ["_manifests", "revisions", "sha256", b, "link"] => {
                link(mine(self.blob(b)?, is_manifest)?)
            }
            ["_manifests", "tags"] => sorted(
                (self.images_of(r))
                    .filter(|i| i % 5 != 0)
                    .map(|i| (format!("t{i}"), true))
                    .collect(),
            ),
            ["_manifests", "tags", t] => {
                tagged(t)?;
                dirs(&["current", "index"])
            }
            ["_manifests", "tags", t, "current"] => {
                tagged(t)?;
                Some(Dir(vec![("link".into(), false)]))
            }
            ["_manifests", "tags", t, "current", "link"] => link(10 * tagged(t)?),
            ["_manifests", "tags", t, "index"] => {
                tagged(t)?;
                dirs(&["sha256"])
            }
            ["_manifests", "tags", t, "index", "sha256"] => {
                let i = tagged(t)?;
                Some(Dir(vec![(Shape::hex(10 * i), true)]))
            }
            ["_manifests", "tags", t, "index", "sha256", b] => {
                (self.blob(b)? == 10 * tagged(t)?).then_some(())?;
                Some(Dir(vec![("link".into(), false)]))
            }
            ["_manifests", "tags", t, "index", "sha256", b, "link"] => {
                let k = self.blob(b)?;
                (k == 10 * tagged(t)?).then_some(())?;
                link(k)
            }
            _ => None,
        }
    }
}

/// What a path holds: a folder's entries (name, is a folder), a file's bytes, or a file of
/// that size whose bytes nothing here reads (a layer's).
enum Node {
    Dir(Vec<(String, bool)>),
    File(Vec<u8>),
    Sized(u64),
}

/// The synthetic layout as a storage of the seam.
pub struct SynthStorage {
    top: SynthFolder,
}

impl SynthStorage {
    pub fn new(shape: Shape) -> SynthStorage {
        SynthStorage {
            top: SynthFolder {
                shape: Arc::new(shape),
                path: String::new(),
            },
        }
    }
}

/// A folder of the synthetic layout, by its path below `docker/registry/v2`.
#[derive(Clone)]
pub struct SynthFolder {
    shape: Arc<Shape>,
    path: String,
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found"))
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the synthetic layout is read-only",
    )
}

impl SynthFolder {
    fn join(&self, rel: &Path) -> io::Result<String> {
        let rel = rel.to_str().ok_or_else(|| not_found("?"))?;
        Ok(match (self.path.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_string(),
            (_, true) => self.path.clone(),
            _ => format!("{}/{rel}", self.path),
        })
    }

    fn node(&self, path: &str) -> io::Result<Node> {
        let parts: Vec<&str> = match path.is_empty() {
            true => vec![],
            false => path.split('/').collect(),
        };
        self.shape.at(&parts).ok_or_else(|| not_found(path))
    }

    fn stat_of(&self, node: &Node) -> Stat {
        let (kind, size) = match node {
            Node::Dir(_) => (Kind::Dir, 0),
            Node::File(b) => (Kind::File, b.len() as u64),
            Node::Sized(n) => (Kind::File, *n),
        };
        Stat {
            kind,
            size,
            mtime: self.shape.mtime,
            mtime_nsec: 0,
            allocated: size,
            dev: 0,
            ino: 0,
        }
    }
}

impl Folder for SynthFolder {
    type File = io::Cursor<Vec<u8>>;

    fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<SynthFolder> {
        let path = self.join(rel.as_ref())?;
        match self.node(&path)? {
            Node::Dir(_) => Ok(SynthFolder {
                shape: self.shape.clone(),
                path,
            }),
            _ => Err(io::Error::new(io::ErrorKind::NotADirectory, path)),
        }
    }

    fn entries(&self) -> io::Result<Vec<(OsString, Kind)>> {
        match self.node(&self.path)? {
            Node::Dir(v) => Ok(v
                .into_iter()
                .map(|(n, dir)| (OsString::from(n), if dir { Kind::Dir } else { Kind::File }))
                .collect()),
            _ => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                self.path.clone(),
            )),
        }
    }

    fn stat(&self, rel: impl AsRef<Path>) -> io::Result<Stat> {
        let path = self.join(rel.as_ref())?;
        Ok(self.stat_of(&self.node(&path)?))
    }

    fn open_file(&self, rel: impl AsRef<Path>) -> Result<(Self::File, Stat), ReadError> {
        let path = self.join(rel.as_ref())?;
        let node = self.node(&path).map_err(|_| ReadError::Missing)?;
        let st = self.stat_of(&node);
        match node {
            Node::File(b) => Ok((io::Cursor::new(b), st)),
            Node::Sized(n) => Ok((io::Cursor::new(vec![0; n as usize]), st)),
            Node::Dir(_) => Err(ReadError::NotAFile(Kind::Dir)),
        }
    }

    fn tree_size(&self, _name: &OsStr) -> u64 {
        0
    }
    fn rename_to(&self, _: &OsStr, _: &Self, _: &OsStr) -> io::Result<()> {
        Err(read_only())
    }
    fn unlink(&self, _: &OsStr, _: bool) -> io::Result<()> {
        Err(read_only())
    }
    fn remove_tree(&self, _: &OsStr) -> io::Result<()> {
        Err(read_only())
    }
    fn make_dir(&self, _: &OsStr) -> io::Result<Self> {
        Err(read_only())
    }
    fn make_dirs(&self, _: &Path) -> io::Result<Self> {
        Err(read_only())
    }
}

impl Storage for SynthStorage {
    type Folder = SynthFolder;
    type Lock = ();

    fn top(&self) -> &SynthFolder {
        &self.top
    }
    fn v2(&self) -> &Path {
        Path::new("synthetic/docker/registry/v2")
    }
    fn location(&self) -> PathBuf {
        PathBuf::from("synthetic")
    }
    fn lock(&self, _: &str, _: bool) -> regsweep::error::Result<()> {
        Ok(())
    }
    fn open_outside(&self, _: &Path) -> io::Result<SynthFolder> {
        Err(read_only())
    }
    fn blob_arrivals(&self, blobs: &[(Digest, Time)]) -> Vec<Time> {
        blobs.iter().map(|(_, t)| *t).collect()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            rename: false,
            max_batch: 1,
            symlinks: false,
        }
    }
    fn read_state(&self, _: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn write_state(&self, _: &str, _: Option<&[u8]>) -> io::Result<()> {
        Err(read_only())
    }
}
