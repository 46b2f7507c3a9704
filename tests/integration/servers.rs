//! The servers the registry is tested beside: moto (S3), Debian's redis-server (its blob
//! descriptor cache), the counting and failing S3 proxy; each on a free loopback port, polled
//! until it answers, stopped when dropped.

#![allow(dead_code)]
use crate::testenv::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    pub(crate) fn yaml(&self) -> String {
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
        S3Proxy::spawn(upstream, fail_first, status, 0)
    }

    /// A proxy whose first `n` DeleteObjects requests lose their first key, named in a per-key
    /// `<Error>` of the answer.
    pub fn with_key_errors(upstream: &str, n: usize) -> S3Proxy {
        S3Proxy::spawn_with(upstream, (0, 503), &[("S3PROXY_KEY_ERRORS", n.to_string())])
    }

    /// A proxy whose DeleteObjects answers cannot be trusted: `"foreign"`, each also names a key
    /// not asked for; `"silent"`, each request loses its first key and the answer omits it.
    pub fn answering(upstream: &str, how: &str) -> S3Proxy {
        S3Proxy::spawn_with(upstream, (0, 503), &[("S3PROXY_DELETE_ANSWER", how.into())])
    }

    /// A proxy that resets the connection of every `n`th request, unanswered.
    pub fn resetting(upstream: &str, n: usize) -> S3Proxy {
        S3Proxy::spawn_with(
            upstream,
            (0, 503),
            &[("S3PROXY_RESET_EVERY", n.to_string())],
        )
    }

    /// A proxy that answers the first `n` requests and then none, holding each connection.
    pub fn stalling_after(upstream: &str, n: usize) -> S3Proxy {
        S3Proxy::spawn_with(
            upstream,
            (0, 503),
            &[("S3PROXY_STALL_AFTER", n.to_string())],
        )
    }

    /// A proxy that passes the first DeleteObjects naming a key that contains `part` on to the
    /// store (the keys go) and then answers neither it nor any request after it: a delete that
    /// lands while its answer, and the network, are lost.
    pub fn landing_then_stalling(upstream: &str, part: &str) -> S3Proxy {
        S3Proxy::spawn_with(
            upstream,
            (0, 503),
            &[("S3PROXY_LAND_THEN_STALL", part.into())],
        )
    }

    fn spawn(upstream: &str, fail_first: usize, status: u16, key_errors: usize) -> S3Proxy {
        S3Proxy::spawn_with(
            upstream,
            (fail_first, status),
            &[("S3PROXY_KEY_ERRORS", key_errors.to_string())],
        )
    }

    fn spawn_with(
        upstream: &str,
        (fail_first, status): (usize, u16),
        env: &[(&str, String)],
    ) -> S3Proxy {
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
            .envs(env.iter().map(|(k, v)| (k, v)))
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
pub(crate) fn http_status(addr: &str, method: &str, path: &str) -> Option<u16> {
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
