//! Test rig: a real `docker-registry` on 127.0.0.1 with a temporary root, filled through its
//! API with skopeo (images, indexes) and curl (artifacts, deletes, uploads), plus helpers to
//! run regsweep and the registry's own garbage collector on the same root.

#![allow(dead_code)]

pub use crate::layout::*;
pub use crate::servers::*;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

pub fn sha256(bytes: &[u8]) -> String {
    let h = Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in h {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid gzip stream of `bytes` in stored (uncompressed) deflate blocks, so that skopeo
/// sees a real gzip layer and copies it unchanged rather than compressing it itself.
pub fn gzip_stored(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(65_535).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(bytes).to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out
}

/// Deterministic bytes that differ per seed, so every layer has its own digest.
pub fn bytes_for(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(seed.as_bytes()).to_vec();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(len);
    out
}

pub(crate) fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (install it: scripts/test.sh does)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running registry with its own temporary root; stopped when dropped.
pub struct Registry {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub config: PathBuf,
    pub addr: String,
    child: Option<Child>,
    oci_count: usize,
    /// The S3 server a registry on the s3 driver keeps its storage in; stopped after it.
    pub s3: Option<Moto>,
    /// Where its stdout and stderr go (`start_observed`); discarded when `None`.
    pub log: Option<PathBuf>,
}

impl Registry {
    /// Starts the registry on a fresh root.
    pub fn start() -> Registry {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        Registry::start_on(tmp, root)
    }

    /// Serves an existing storage root (a copy of a fixture, say).
    pub fn serve(root: &Path) -> Registry {
        Registry::start_on(tempfile::tempdir().unwrap(), root.to_path_buf())
    }

    /// Starts the registry with its s3 driver on a fresh bucket of a local S3 server.
    pub fn start_s3() -> Registry {
        let moto = Moto::start();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("unused");
        let storage = format!(
            "  s3:\n    accesskey: testing\n    secretkey: testing\n    region: us-east-1\n    regionendpoint: {}\n    bucket: {}\n    rootdirectory: /{S3_PREFIX}\n    secure: false\n",
            moto.endpoint, moto.bucket
        );
        Registry::start_with(tmp, root, &storage, Some(moto))
    }

    fn start_on(tmp: tempfile::TempDir, root: PathBuf) -> Registry {
        let storage = format!("  filesystem:\n    rootdirectory: {}\n", root.display());
        Registry::start_with(tmp, root, &storage, None)
    }

    /// Starts the registry on a fresh root with a blob-descriptor cache, as Debian's packaged
    /// config (`inmemory`) or a Redis one has it.
    pub fn start_cached(cache: RegCache) -> Registry {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let storage = format!(
            "  filesystem:\n    rootdirectory: {}\n{}",
            root.display(),
            cache.yaml()
        );
        Registry::start_with(tmp, root, &storage, None)
    }

    /// `start_s3`, with a blob-descriptor cache.
    pub fn start_s3_cached(cache: RegCache) -> Registry {
        let moto = Moto::start();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("unused");
        let storage = format!(
            "  s3:\n    accesskey: testing\n    secretkey: testing\n    region: us-east-1\n    regionendpoint: {}\n    bucket: {}\n    rootdirectory: /{S3_PREFIX}\n    secure: false\n{}",
            moto.endpoint,
            moto.bucket,
            cache.yaml()
        );
        Registry::start_with(tmp, root, &storage, Some(moto))
    }

    /// Starts the registry on a fresh root logging at info with `formatter` (`text`, `json`)
    /// and its access log into `log`, with `extra` top-level config (notifications).
    pub fn start_observed(formatter: &str, extra: &str) -> Registry {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let storage = format!("  filesystem:\n    rootdirectory: {}\n", root.display());
        let log = tmp.path().join("registry.log");
        let logging = format!("log:\n  level: info\n  formatter: {formatter}\n{extra}");
        Registry::start_logging(tmp, root, &storage, None, (&logging, Some(log)))
    }

    /// Starts a pull-through cache of `upstream` on a fresh root.
    pub fn start_proxy(upstream: &Registry) -> Registry {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let storage = format!("  filesystem:\n    rootdirectory: {}\n", root.display());
        let proxy = format!(
            "log:\n  level: error\n  accesslog:\n    disabled: true\nproxy:\n  remoteurl: http://{}\n",
            upstream.addr
        );
        Registry::start_logging(tmp, root, &storage, None, (&proxy, None))
    }

    fn start_with(
        tmp: tempfile::TempDir,
        root: PathBuf,
        storage: &str,
        s3: Option<Moto>,
    ) -> Registry {
        let quiet = "log:\n  level: error\n  accesslog:\n    disabled: true\n";
        Registry::start_logging(tmp, root, storage, s3, (quiet, None))
    }

    fn start_logging(
        tmp: tempfile::TempDir,
        root: PathBuf,
        storage: &str,
        s3: Option<Moto>,
        (logging, log): (&str, Option<PathBuf>),
    ) -> Registry {
        let addr = format!("127.0.0.1:{}", free_port());
        let config = tmp.path().join("config.yml");
        // No blob descriptor cache unless the storage section brings one (`start_cached`): a
        // cache answers from memory what the disk may no longer hold. A `redis:` section is
        // written at the top level, where the registry reads it.
        let (storage, redis) = match storage.split_once("REDIS:") {
            Some((s, r)) => (s.to_string(), format!("redis:\n  addr: {}\n", r.trim())),
            None => (storage.to_string(), String::new()),
        };
        let yaml = format!(
            "version: 0.1\n{logging}storage:\n{storage}  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{redis}"
        );
        std::fs::write(&config, yaml).unwrap();
        let mut reg = Registry {
            tmp,
            root,
            config,
            addr,
            child: None,
            oci_count: 0,
            s3,
            log,
        };
        reg.spawn();
        reg
    }

    fn spawn(&mut self) {
        let out = || match &self.log {
            Some(p) => Stdio::from(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .unwrap(),
            ),
            None => Stdio::null(),
        };
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            // Registry 2.8 panics at start when this is set (an unsupported transport).
            .env_remove("AWS_CA_BUNDLE")
            .stdout(out())
            .stderr(out())
            .spawn()
            .expect("docker-registry not found: run scripts/test.sh, which installs it");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls `GET /v2/` until the registry answers 200.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("docker-registry exited at start: {status}");
            }
            if self.http_status("GET", "/v2/") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "registry at {} not ready after 30s",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One plain HTTP request; the status code, or `None` if nothing answered.
    fn http_status(&self, method: &str, path: &str) -> Option<u16> {
        http_status(&self.addr, method, path)
    }

    /// The registry process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn v2(&self) -> PathBuf {
        self.root.join("docker/registry/v2")
    }

    pub fn new_oci(&mut self) -> OciDir {
        self.oci_count += 1;
        OciDir::new(self.tmp.path().join(format!("oci{}", self.oci_count)))
    }

    /// `skopeo copy --all` of `oci:DIR:name` to `repo:tag` in this registry.
    pub fn push(&self, oci: &OciDir, name: &str, repo_tag: &str) {
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--all", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:{name}", oci.dir.display()))
                .arg(format!("docker://{}/{repo_tag}", self.addr)),
        );
    }

    /// Pulls every blob of `repo:tag` (all platforms); `Err` with skopeo's words when any is missing.
    pub fn pull(&self, repo_tag: &str) -> Result<(), String> {
        let dest = tempfile::tempdir_in(self.tmp.path()).unwrap();
        let out = Command::new("skopeo")
            .args(["copy", "--all", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{repo_tag}", self.addr))
            .arg(format!("oci:{}:x", dest.path().display()))
            .output()
            .expect("skopeo not found: run scripts/test.sh, which installs it");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = run_ok(
            Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/stderr",
                    "-w",
                    "%{http_code}\n%header{location}",
                ])
                .args(args),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let code = lines
            .next()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0);
        (code, lines.next().unwrap_or("").trim().to_string())
    }

    /// Starts an upload session; its absolute URL.
    fn start_upload(&self, repo: &str) -> String {
        let (code, location) = self.curl(&[
            "-X",
            "POST",
            &format!("http://{}/v2/{repo}/blobs/uploads/", self.addr),
        ]);
        assert_eq!(code, 202, "upload start in {repo}");
        if location.starts_with('/') {
            format!("http://{}{location}", self.addr)
        } else {
            location
        }
    }

    /// Uploads a blob: a session, then one PUT with all the bytes.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let file = self.tmp.path().join("upload.bin");
        std::fs::write(&file, bytes).unwrap();
        let location = self.start_upload(repo);
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let (code, _) = self.curl(&[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.display()),
            &url,
        ]);
        assert_eq!(code, 201, "blob upload to {repo}");
        digest
    }

    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let file = self.tmp.path().join("manifest.json");
        std::fs::write(&file, body).unwrap();
        let url = format!("http://{}/v2/{repo}/manifests/{reference}", self.addr);
        let (code, _) = self.curl(&[
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {media_type}"),
            "--data-binary",
            &format!("@{}", file.display()),
            &url,
        ]);
        assert_eq!(code, 201, "manifest PUT {repo}:{reference}");
        sha256(body)
    }

    pub fn delete_manifest(&self, repo: &str, digest: &str) {
        let url = format!("http://{}/v2/{repo}/manifests/{digest}", self.addr);
        let (code, _) = self.curl(&["-X", "DELETE", &url]);
        assert_eq!(code, 202, "manifest DELETE {repo}@{digest}");
    }

    /// Starts an upload, sends some bytes, and walks away.
    pub fn abandon_upload(&self, repo: &str, bytes: &[u8]) {
        let location = self.start_upload(repo);
        let file = self.tmp.path().join("partial.bin");
        std::fs::write(&file, bytes).unwrap();
        let (code, _) = self.curl(&[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.display()),
            &location,
        ]);
        assert_eq!(code, 202, "upload patch");
    }

    /// An OCI artifact (empty config, one layer) whose subject is `subject`, pushed by digest.
    /// Returns the referrer's manifest digest and every blob it needs.
    pub fn push_referrer(
        &self,
        repo: &str,
        subject: &Desc,
        artifact_type: &str,
        content: &[u8],
    ) -> (String, BTreeSet<String>) {
        let config = self.put_blob(repo, b"{}");
        let layer = self.put_blob(repo, content);
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": config, "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": layer, "size": content.len()}],
            "subject": subject.json(),
        });
        let body = m.to_string();
        let digest = sha256(body.as_bytes());
        self.put_manifest(repo, &digest, OCI_MANIFEST, body.as_bytes());
        let blobs = [config, layer, digest.clone()].into_iter().collect();
        (digest, blobs)
    }

    /// A cosign-style signature tag `sha256-<hex>.sig` for `subject`.
    pub fn push_cosign_sig(&self, repo: &str, subject: &Desc, payload: &[u8]) -> BTreeSet<String> {
        let config_bytes =
            br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config = self.put_blob(repo, config_bytes);
        let layer = self.put_blob(repo, payload);
        let config_size = config_bytes.len();
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_size},
            "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": layer, "size": payload.len(),
                        "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ"}}],
        });
        let body = m.to_string();
        let tag = format!("sha256-{}.sig", &subject.digest[7..]);
        let digest = self.put_manifest(repo, &tag, OCI_MANIFEST, body.as_bytes());
        [config, layer, digest].into_iter().collect()
    }

    /// A GET through the registry's API, as JSON (`null` when it answers no JSON).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let out =
            run_ok(Command::new("curl").args(["-sS", &format!("http://{}{path}", self.addr)]));
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The strings of the list `key` in the JSON the registry answers `path` with.
    fn listed(&self, path: &str, key: &str) -> Vec<String> {
        self.get_json(path)[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The repositories the registry lists.
    pub fn catalog(&self) -> Vec<String> {
        self.listed("/v2/_catalog", "repositories")
    }

    /// The tags the registry lists for `repo`.
    pub fn tags_of(&self, repo: &str) -> Vec<String> {
        self.listed(&format!("/v2/{repo}/tags/list"), "tags")
    }

    /// `docker-registry garbage-collect --dry-run`: what it prints.
    pub fn reference_gc_dry_run_output(&self) -> String {
        let out = run_ok(
            Command::new("docker-registry")
                .args(["garbage-collect", "--dry-run"])
                .arg(&self.config)
                .env_remove("AWS_CA_BUNDLE"),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `docker-registry garbage-collect --dry-run`: the blobs it would delete.
    pub fn reference_gc_dry_run(&self) -> BTreeSet<String> {
        self.reference_gc_dry_run_output()
            .lines()
            .filter_map(|l| l.strip_prefix("blob eligible for deletion: "))
            .map(|s| s.trim().to_string())
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the regsweep binary.
pub fn regsweep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `regsweep` with `args`, which must succeed (its stderr is the failure's message).
pub fn regsweep_ok(args: &[&str]) -> Output {
    let out = regsweep(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "regsweep {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `regsweep gc --format json` on `root` with extra args; the exit code and report.
pub fn gc_json(root: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let root = root.to_str().unwrap();
    let mut args = vec![
        "gc", "--root", root, "--format", "json", "--quiet", "--report", "-",
    ];
    args.extend_from_slice(extra);
    let out = regsweep(&args);
    let code = out.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}); exit {code}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

/// `repository:tag` of each of `tags_deleted` in a report.
pub fn deleted_tags(report: &serde_json::Value) -> BTreeSet<String> {
    (report["tags_deleted"].as_array().unwrap().iter())
        .map(|t| {
            format!(
                "{}:{}",
                t["repository"].as_str().unwrap(),
                t["tag"].as_str().unwrap()
            )
        })
        .collect()
}

/// The digests of `blobs_deleted` in a report.
pub fn deleted_blobs(report: &serde_json::Value) -> BTreeSet<String> {
    report["blobs_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Per run killed before this report's (`killed_runs`, oldest first): the blobs it removed.
pub fn killed_blobs(report: &serde_json::Value) -> Vec<BTreeSet<String>> {
    (report["killed_runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter())
    .map(|k| {
        (k["blobs_removed"].as_array().unwrap().iter())
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    })
    .collect()
}

/// What of `before` is not in `after`.
pub fn gone(before: &BTreeSet<String>, after: &BTreeSet<String>) -> BTreeSet<String> {
    before.difference(after).cloned().collect()
}
