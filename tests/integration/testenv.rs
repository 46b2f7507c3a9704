//! Test rig: a real `docker-registry` on 127.0.0.1 with a temporary root, filled through its
//! API with skopeo (images, indexes) and curl (artifacts, deletes, uploads), plus helpers to
//! run regsweep and the registry's own garbage collector on the same root.

#![allow(dead_code)]

use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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

fn crc32(bytes: &[u8]) -> u32 {
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

fn run_ok(cmd: &mut Command) -> Output {
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

/// A descriptor as pushed: digest, size and media type.
#[derive(Debug, Clone)]
pub struct Desc {
    pub digest: String,
    pub size: usize,
    pub media_type: String,
}

impl Desc {
    fn json(&self) -> serde_json::Value {
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

/// A local S3 server (moto) on 127.0.0.1 with one bucket; stopped when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    pub bucket: String,
}

/// The `rootdirectory` the S3 registry writes under: keys start with `regroot/docker/`.
pub const S3_PREFIX: &str = "regroot";

impl Moto {
    /// Starts `python3 -m moto.server` (installed by scripts/install-peers.sh) and creates the
    /// bucket, polling until the server answers.
    pub fn start() -> Moto {
        Moto::spawn(false)
    }

    /// Moto checking every request's credentials as AWS does (`INITIAL_NO_AUTH_ACTION_COUNT=0`):
    /// it knows no key, so every request is refused with AWS's error code. No bucket.
    pub fn start_enforcing_auth() -> Moto {
        Moto::spawn(true)
    }

    fn spawn(auth: bool) -> Moto {
        let port = free_port();
        let mut cmd = Command::new("python3");
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = cmd
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 not found: run scripts/test.sh, which installs moto");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: "registry".into(),
        };
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        // Refused or not, an answer means it is up.
        while http_status(&addr, "GET", "/").is_none_or(|c| c != 200 && !auth) {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto exited at start ({status}): run scripts/install-peers.sh");
            }
            assert!(Instant::now() < deadline, "moto not ready after 60s");
            std::thread::sleep(Duration::from_millis(50));
        }
        if auth {
            return moto;
        }
        assert_eq!(
            http_status(&addr, "PUT", &format!("/{}", moto.bucket)),
            Some(200),
            "create the bucket"
        );
        moto
    }

    /// Returns once the clock has left the current second. S3 keeps `LastModified` in whole
    /// seconds, and regsweep keeps, as written during the run, anything from the second its run
    /// began; a test that wants its last push judged as older starts the run after this.
    pub fn next_second(&self) {
        let second =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let now = second(std::time::SystemTime::now());
        while second(std::time::SystemTime::now()) == now {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every key in the bucket below `prefix` (unsigned listing; moto does not ask).
    pub fn keys(&self, prefix: &str) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let url = format!("{}/{}", self.endpoint, self.bucket);
            let mut args = vec![
                "-sS".to_string(),
                "-G".into(),
                url,
                "--data-urlencode".into(),
                "list-type=2".into(),
                "--data-urlencode".into(),
                format!("prefix={prefix}"),
            ];
            if let Some(t) = &token {
                args.push("--data-urlencode".into());
                args.push(format!("continuation-token={t}"));
            }
            let out = run_ok(Command::new("curl").args(&args));
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            for part in text.split("<Key>").skip(1) {
                keys.insert(part.split("</Key>").next().unwrap().to_string());
            }
            token = text
                .split("<NextContinuationToken>")
                .nth(1)
                .map(|t| t.split('<').next().unwrap().to_string());
            if token.is_none() {
                return keys;
            }
        }
    }

    /// PUTs `body` at `key` (moto takes unsigned requests); `key` is percent-encoded for the
    /// URL, so the bucket holds it exactly as given.
    pub fn put(&self, key: &str, body: &[u8]) {
        let mut path = String::new();
        for b in key.bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                    path.push(b as char)
                }
                _ => path.push_str(&format!("%{b:02X}")),
            }
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), body).unwrap();
        let url = format!("{}/{}/{path}", self.endpoint, self.bucket);
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            // moto reads a body without this type as a form, and stores nothing.
            .args([
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
            ])
            .arg(format!("@{}", file.path().display()))
            .arg(&url)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "PUT {key}");
    }

    /// The blob digests in the bucket's blob store.
    pub fn blobs(&self) -> BTreeSet<String> {
        let prefix = format!("{S3_PREFIX}/docker/registry/v2/blobs/sha256/");
        self.keys(&prefix)
            .iter()
            .filter_map(|k| k.strip_suffix("/data"))
            .filter_map(|k| k.rsplit('/').next())
            .map(|hex| format!("sha256:{hex}"))
            .collect()
    }
}

/// The registry's blob-descriptor cache in a test.
pub enum RegCache<'a> {
    InMemory,
    Redis(&'a Redis),
}

impl RegCache<'_> {
    /// Its lines of the storage section (and a marker `start_with` turns into `redis:`).
    fn yaml(&self) -> String {
        match self {
            RegCache::InMemory => "  cache:\n    blobdescriptor: inmemory\n".into(),
            RegCache::Redis(r) => {
                format!("  cache:\n    blobdescriptor: redis\nREDIS:{}\n", r.addr)
            }
        }
    }
}

/// Debian's `redis-server` on a free loopback port, saving nothing to disk; stopped when
/// dropped.
pub struct Redis {
    child: Option<Child>,
    pub addr: String,
    port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let mut r = Redis {
            child: None,
            addr: format!("127.0.0.1:{port}"),
            port,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
            ])
            .arg(self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run scripts/test.sh, which installs it");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.command(&["PING"]).as_deref() != Some("PONG") {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("redis-server exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server not ready after 30s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One command through `redis-cli` (installed with redis-server); its raw output.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> BTreeSet<String> {
        (self.command(&["KEYS", pattern]).unwrap_or_default())
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The counting, optionally failing proxy of `s3proxy.py` in front of an S3 server.
pub struct S3Proxy {
    child: Child,
    pub endpoint: String,
    counts: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3Proxy {
    /// Starts the proxy before `upstream`; it answers the first `fail_first` requests with
    /// 503 SlowDown.
    pub fn start(upstream: &str, fail_first: usize) -> S3Proxy {
        S3Proxy::failing_with(upstream, fail_first, 503)
    }

    /// `start`, the failed requests answered with `status` (503 SlowDown or 403 AccessDenied).
    pub fn failing_with(upstream: &str, fail_first: usize, status: u16) -> S3Proxy {
        let dir = tempfile::tempdir().unwrap();
        let counts = dir.path().join("counts.json");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/s3proxy.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(upstream)
            .arg(&counts)
            .arg(fail_first.to_string())
            .arg(status.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 not found");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "s3proxy not listening after 30s");
            std::thread::sleep(Duration::from_millis(20));
        }
        S3Proxy {
            child,
            endpoint: format!("http://{addr}"),
            counts,
            _dir: dir,
        }
    }

    /// Requests seen so far, by kind (`failed`: answered 503 by the proxy itself).
    pub fn counts(&self) -> serde_json::Value {
        std::fs::read(&self.counts)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP request to `addr`; the status code, or `None` if nothing answered.
fn http_status(addr: &str, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// The digests of `blobs_deleted` in a report.
pub fn deleted_blobs(report: &serde_json::Value) -> BTreeSet<String> {
    report["blobs_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_string())
        .collect()
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
