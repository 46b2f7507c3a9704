//! Layouts on disk: OCI image layouts for skopeo to push, a writer of registry layouts of any
//! shape, and the copies, ages and blob listings the tests judge a layout by.

#![allow(dead_code)]
use crate::testenv::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A descriptor as pushed: digest, size and media type.
#[derive(Debug, Clone)]
pub struct Desc {
    pub digest: String,
    pub size: usize,
    pub media_type: String,
}

impl Desc {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// An image as written to an OCI layout: its manifest, config and layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Desc,
    pub config: Desc,
    pub layers: Vec<Desc>,
}

impl Image {
    /// Every blob the image needs, manifest included.
    pub fn blobs(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self.layers.iter().map(|l| l.digest.clone()).collect();
        s.insert(self.config.digest.clone());
        s.insert(self.manifest.digest.clone());
        s
    }
}

/// An OCI image layout on disk, for skopeo to copy from.
pub struct OciDir {
    pub dir: PathBuf,
    refs: Vec<serde_json::Value>,
}

impl OciDir {
    pub fn new(dir: PathBuf) -> OciDir {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        OciDir {
            dir,
            refs: Vec::new(),
        }
    }

    pub fn blob(&self, bytes: &[u8], media_type: &str) -> Desc {
        let digest = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
        Desc {
            digest,
            size: bytes.len(),
            media_type: media_type.into(),
        }
    }

    /// An image with the given layers (each `(seed, size)`), its config naming `arch` and `created`.
    pub fn image(&self, layers: &[(&str, usize)], arch: &str, created: &str) -> Image {
        let layers: Vec<Desc> = layers
            .iter()
            .map(|(seed, n)| self.blob(&gzip_stored(&bytes_for(seed, *n)), OCI_LAYER))
            .collect();
        let config = serde_json::json!({
            "architecture": arch, "os": "linux", "created": created,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
        });
        let config = self.blob(config.to_string().as_bytes(), OCI_CONFIG);
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": config.json(),
            "layers": layers.iter().map(Desc::json).collect::<Vec<_>>(),
        });
        let manifest = self.blob(manifest.to_string().as_bytes(), OCI_MANIFEST);
        Image {
            manifest,
            config,
            layers,
        }
    }

    pub fn index(&self, children: &[(&Image, &str)]) -> Desc {
        let manifests: Vec<serde_json::Value> = children
            .iter()
            .map(|(img, arch)| {
                let mut d = img.manifest.json();
                d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
                d
            })
            .collect();
        let index =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        self.blob(index.to_string().as_bytes(), OCI_INDEX)
    }

    /// Names `desc` as `name` in index.json.
    pub fn tag(&mut self, desc: &Desc, name: &str) {
        let mut d = desc.json();
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
        self.refs.push(d);
        let index = serde_json::json!({"schemaVersion": 2, "manifests": self.refs});
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }
}

/// Every blob digest present in a layout.
pub fn blobs_on_disk(v2: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(prefixes) = std::fs::read_dir(v2.join("blobs/sha256")) else {
        return out;
    };
    for p in prefixes.flatten() {
        for b in std::fs::read_dir(p.path()).unwrap().flatten() {
            if b.path().join("data").is_file() {
                out.insert(format!("sha256:{}", b.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// Copies a tree (files and folders only), keeping file and folder mtimes, as `cp -a` does.
pub fn copy_tree(from: &Path, to: &Path) {
    copy_files(from, to);
    // Folders last, deepest first: creating their entries changed their mtimes.
    for entry in walkdir::WalkDir::new(from).contents_first(true) {
        let entry = entry.unwrap();
        if entry.file_type().is_dir() {
            let dest = to.join(entry.path().strip_prefix(from).unwrap());
            let mtime = entry.metadata().unwrap().modified().unwrap();
            std::fs::File::open(&dest)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
    }
}

fn copy_files(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
            let mtime = entry.metadata().unwrap().modified().unwrap();
            std::fs::File::options()
                .write(true)
                .open(&dest)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
    }
}

/// Sets the mtime of every file and folder below `dir` to `age` ago (a blob's arrival is read
/// from its folder too).
pub fn age_tree(dir: &Path, age: Duration) {
    let t = std::time::SystemTime::now() - age;
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_file() {
            std::fs::File::options()
                .write(true)
                .open(entry.path())
                .unwrap()
                .set_modified(t)
                .unwrap();
        } else if entry.file_type().is_dir() {
            std::fs::File::open(entry.path())
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
    }
}

/// Writes a registry layout directly, exactly as the registry lays it out, for generated
/// layouts of any shape. The tests check the registry serves what it writes.
pub struct LayoutWriter {
    pub root: PathBuf,
}

/// What `LayoutWriter::image` wrote: the manifest digest and every blob with its size.
pub struct Written {
    pub manifest: String,
    pub blobs: Vec<(String, u64)>,
}

impl LayoutWriter {
    pub fn new(root: &Path) -> LayoutWriter {
        std::fs::create_dir_all(root.join("docker/registry/v2/blobs/sha256")).unwrap();
        std::fs::create_dir_all(root.join("docker/registry/v2/repositories")).unwrap();
        LayoutWriter {
            root: root.to_path_buf(),
        }
    }

    fn v2(&self) -> PathBuf {
        self.root.join("docker/registry/v2")
    }

    fn link(&self, path: PathBuf, digest: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, digest).unwrap();
    }

    /// Stores a blob; its digest.
    pub fn blob(&self, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        let dir = self.v2().join("blobs/sha256").join(&d[7..9]).join(&d[7..]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data"), bytes).unwrap();
        d
    }

    /// An image in `repo` with these layers, tagged `tag` if given (untagged otherwise).
    pub fn image(&self, repo: &str, tag: Option<&str>, layers: &[Vec<u8>]) -> Written {
        let repo_dir = self.v2().join("repositories").join(repo);
        let mut blobs = Vec::new();
        let mut descs = Vec::new();
        for l in layers {
            let d = self.blob(l);
            self.link(
                repo_dir.join("_layers/sha256").join(&d[7..]).join("link"),
                &d,
            );
            descs.push(serde_json::json!({"mediaType": OCI_LAYER, "digest": d, "size": l.len()}));
            blobs.push((d, l.len() as u64));
        }
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}},\"x\":{:?}}}",
            descs
        );
        let cd = self.blob(config.as_bytes());
        self.link(
            repo_dir.join("_layers/sha256").join(&cd[7..]).join("link"),
            &cd,
        );
        blobs.push((cd.clone(), config.len() as u64));
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": config.len()},
            "layers": descs,
        })
        .to_string();
        let md = self.blob(manifest.as_bytes());
        blobs.push((md.clone(), manifest.len() as u64));
        self.link(
            repo_dir
                .join("_manifests/revisions/sha256")
                .join(&md[7..])
                .join("link"),
            &md,
        );
        if let Some(tag) = tag {
            let t = repo_dir.join("_manifests/tags").join(tag);
            self.link(t.join("current/link"), &md);
            self.link(t.join("index/sha256").join(&md[7..]).join("link"), &md);
        }
        Written {
            manifest: md,
            blobs,
        }
    }
}
