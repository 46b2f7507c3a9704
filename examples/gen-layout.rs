//! Writes a registry:2 filesystem layout of any scale, for benchmarks.
//!
//! The structure is exactly the registry's: blobs under `blobs/sha256/<xx>/<hex>/data`, and per
//! repository layer links, revision links, tags with their history, and uploads. Manifests and
//! configs are real JSON named by their real sha256. Layers are sparse files of realistic
//! apparent size named by the sha256 of a seed (hashing gigabytes of zeros would take longer
//! than the benchmark), so `check --verify-digests` flags them and nothing else does.
//!
//! cargo run --release --example gen-layout -- --out DIR --repos 100 --tags 250

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

struct Args {
    out: PathBuf,
    repos: usize,
    tags: usize,
    layers: usize,
    bases: usize,
    untagged: usize,
    multiarch_every: usize,
    dangling: usize,
    uploads: usize,
    layer_size: u64,
    seed: u64,
    /// Layers with real content named by their real digest (for `check --verify-digests`).
    real: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: gen-layout --out DIR [--repos 20] [--tags 80] [--layers 5] [--bases 30] [--untagged 10]\n                  [--multiarch-every 10] [--dangling 500] [--uploads 20] [--layer-size 20000000] [--seed 1] [--real]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        out: PathBuf::new(),
        repos: 20,
        tags: 80,
        layers: 5,
        bases: 30,
        untagged: 10,
        multiarch_every: 10,
        dangling: 500,
        uploads: 20,
        layer_size: 20_000_000,
        seed: 1,
        real: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--real" {
            a.real = true;
            continue;
        }
        let v = it.next().unwrap_or_else(|| usage());
        let n = || v.parse::<u64>().unwrap_or_else(|_| usage());
        match k.as_str() {
            "--out" => a.out = PathBuf::from(&v),
            "--repos" => a.repos = n() as usize,
            "--tags" => a.tags = n() as usize,
            "--layers" => a.layers = n().max(1) as usize,
            "--bases" => a.bases = n().max(1) as usize,
            "--untagged" => a.untagged = n() as usize,
            "--multiarch-every" => a.multiarch_every = n() as usize,
            "--dangling" => a.dangling = n() as usize,
            "--uploads" => a.uploads = n() as usize,
            "--layer-size" => a.layer_size = n(),
            "--seed" => a.seed = n(),
            _ => usage(),
        }
    }
    if a.out.as_os_str().is_empty() {
        usage()
    }
    a
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A small deterministic generator per repository.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

struct Writer {
    v2: PathBuf,
}

impl Writer {
    fn blob_dir(&self, h: &str) -> PathBuf {
        self.v2.join("blobs/sha256").join(&h[..2]).join(h)
    }

    fn blob(&self, bytes: &[u8]) -> String {
        let h = sha(bytes);
        let dir = self.blob_dir(&h);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("data"), bytes).unwrap();
        h
    }

    /// A blob of `size` bytes of pseudo-random content, named by its real digest.
    fn real(&self, seed: &str, size: u64) -> String {
        let mut x =
            u64::from_le_bytes(Sha256::digest(seed.as_bytes())[..8].try_into().unwrap()) | 1;
        let mut bytes = Vec::with_capacity(size as usize);
        while bytes.len() < size as usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes.truncate(size as usize);
        self.blob(&bytes)
    }

    /// A sparse blob of `size` apparent bytes, named by `seed`.
    fn sparse(&self, seed: &str, size: u64) -> String {
        let h = sha(seed.as_bytes());
        let dir = self.blob_dir(&h);
        fs::create_dir_all(&dir).unwrap();
        let f = fs::File::create(dir.join("data")).unwrap();
        f.set_len(size).unwrap();
        h
    }

    fn link(&self, path: &Path, h: &str, mtime: Option<SystemTime>) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("sha256:{h}")).unwrap();
        if let Some(t) = mtime {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// One image in `repo`: its layers (shared bases and its own), config and manifest; links
/// everything into the repository and returns (manifest hex, manifest size).
fn image(
    w: &Writer,
    repo: &Path,
    rng: &mut Rng,
    a: &Args,
    base_layers: &[(String, u64)],
    id: &str,
) -> (String, usize) {
    let mut layers = Vec::new();
    let shared = a.layers.min(2).min(base_layers.len());
    for _ in 0..shared {
        layers.push(base_layers[rng.next(base_layers.len() as u64) as usize].clone());
    }
    layers.sort();
    layers.dedup();
    for l in layers.len()..a.layers {
        let size = a.layer_size / 2 + rng.next(a.layer_size.max(1));
        let seed = format!("{}-{id}-{l}", a.seed);
        let h = if a.real {
            w.real(&seed, size)
        } else {
            w.sparse(&seed, size)
        };
        layers.push((h, size));
    }
    let descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|(h, s)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{h}"), "size": s}))
        .collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "created": "2025-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(h, _)| format!("sha256:{h}")).collect::<Vec<_>>()}, "id": id})
    .to_string();
    let ch = w.blob(config.as_bytes());
    for (h, _) in layers.iter().chain(std::iter::once(&(ch.clone(), 0))) {
        w.link(&repo.join("_layers/sha256").join(h).join("link"), h, None);
    }
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{ch}"), "size": config.len()},
        "layers": descs})
    .to_string();
    let mh = w.blob(manifest.as_bytes());
    w.link(
        &repo
            .join("_manifests/revisions/sha256")
            .join(&mh)
            .join("link"),
        &mh,
        None,
    );
    (mh, manifest.len())
}

fn main() {
    let a = parse_args();
    let w = Writer {
        v2: a.out.join("docker/registry/v2"),
    };
    fs::create_dir_all(w.v2.join("blobs/sha256")).unwrap();
    fs::create_dir_all(w.v2.join("repositories")).unwrap();
    let base_layers: Vec<(String, u64)> = (0..a.bases)
        .into_par_iter()
        .map(|i| {
            let seed = format!("{}-base-{i}", a.seed);
            if a.real {
                (w.real(&seed, a.layer_size), a.layer_size)
            } else {
                let size = 20_000_000 + (i as u64 % 7) * 10_000_000;
                (w.sparse(&seed, size), size)
            }
        })
        .collect();
    let now = SystemTime::now();
    let two_years = 2 * 365 * 86_400u64;
    (0..a.repos).into_par_iter().for_each(|r| {
        let mut rng = Rng(a.seed * 1_000_003 + r as u64);
        let name = match r % 3 {
            0 => format!("team{}/app{r}", r % 17),
            1 => format!("svc{r}"),
            _ => format!("org/team{}/svc{r}", r % 5),
        };
        let repo = w.v2.join("repositories").join(&name);
        for t in 0..a.tags {
            let id = format!("{r}-{t}");
            let (target, _) = if a.multiarch_every > 0 && t % a.multiarch_every == 0 {
                let children: Vec<serde_json::Value> = ["amd64", "arm64"]
                    .iter()
                    .map(|arch| {
                        let (h, size) = image(&w, &repo, &mut rng, &a, &base_layers, &format!("{id}-{arch}"));
                        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": format!("sha256:{h}"), "size": size,
                            "platform": {"architecture": arch, "os": "linux"}})
                    })
                    .collect();
                let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).to_string();
                let ih = w.blob(index.as_bytes());
                w.link(&repo.join("_manifests/revisions/sha256").join(&ih).join("link"), &ih, None);
                (ih, index.len())
            } else {
                image(&w, &repo, &mut rng, &a, &base_layers, &id)
            };
            let tag = match t % 4 {
                0 => format!("v1.{}.{}", t / 10, t % 10),
                1 => format!("main-{t:05}"),
                2 => format!("pr-{t}"),
                _ => format!("build-{t}"),
            };
            let age = Duration::from_secs(rng.next(two_years));
            let tag_dir = repo.join("_manifests/tags").join(&tag);
            w.link(&tag_dir.join("current/link"), &target, Some(now - age));
            w.link(&tag_dir.join("index/sha256").join(&target).join("link"), &target, None);
        }
        for u in 0..a.untagged {
            image(&w, &repo, &mut rng, &a, &base_layers, &format!("{r}-untagged-{u}"));
        }
        if r < a.uploads {
            let up = repo.join("_uploads").join(format!("00000000-0000-4000-8000-{r:012}"));
            fs::create_dir_all(up.join("hashstates/sha256")).unwrap();
            fs::File::create(up.join("data")).unwrap().set_len(5_000_000).unwrap();
            fs::write(up.join("startedat"), "2025-01-01T00:00:00Z").unwrap();
        }
    });
    (0..a.dangling).into_par_iter().for_each(|i| {
        w.sparse(&format!("{}-dangling-{i}", a.seed), 1_000_000 + i as u64);
    });
    // Everything but the tag links is old enough for any grace period.
    let old = now - Duration::from_secs(3 * 86_400);
    let files: Vec<PathBuf> = walkdir::WalkDir::new(&w.v2)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && !e.path().to_string_lossy().contains("/current/"))
        .map(|e| e.into_path())
        .collect();
    files.par_iter().for_each(|p| {
        let _ = fs::File::options()
            .write(true)
            .open(p)
            .and_then(|f| f.set_modified(old));
    });
    let blobs = walkdir::WalkDir::new(w.v2.join("blobs"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == "data")
        .count();
    println!(
        "{} blobs, {} files, in {}",
        blobs,
        files.len() + a.repos * a.tags,
        a.out.display()
    );
}
