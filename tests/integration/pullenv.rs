//! Rig for the pull ledger: `regsweep pulls listen` as a child process, raw HTTP posts to it,
//! notification envelopes, and the ledger read back through the library.

use crate::testenv::{free_port, gc_json};
use regsweep::model::pulls::PullHistory;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running listener; killed when dropped.
pub struct Listener {
    child: Option<Child>,
    pub addr: String,
    pub ledger: PathBuf,
}

impl Listener {
    /// Starts `pulls listen` on a free loopback port, with `token` when given; polls /healthz.
    pub fn start(dir: &Path, token: Option<&str>) -> Listener {
        Listener::start_on(dir, token, &format!("127.0.0.1:{}", free_port()))
    }

    /// `start` on a given address.
    pub fn start_on(dir: &Path, token: Option<&str>, addr: &str) -> Listener {
        Listener::start_with(dir, token, addr, &[])
    }

    /// `start_on` with more arguments (`--canary`, `--max-silence`).
    pub fn start_with(dir: &Path, token: Option<&str>, addr: &str, extra: &[&str]) -> Listener {
        let addr = addr.to_string();
        let ledger = dir.join("ledger.db");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        cmd.args(["pulls", "listen", "--addr", &addr, "--ledger"])
            .arg(&ledger)
            .args(["--max-body", "65536"])
            .args(extra)
            .env_remove("REGSWEEP_LEDGER_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("listen.err")).unwrap());
        if let Some(t) = token {
            let f = dir.join("token");
            std::fs::write(&f, t).unwrap();
            cmd.arg("--token-file").arg(f);
        }
        let mut l = Listener {
            child: Some(cmd.spawn().unwrap()),
            addr,
            ledger,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while post_raw(
            &l.addr,
            "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
        ) != Some(200)
        {
            if let Some(s) = l.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("the listener exited at start: {s}");
            }
            assert!(Instant::now() < deadline, "listener not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        l
    }

    /// What the listener has said on stderr so far.
    pub fn said(&self) -> String {
        let dir = self.ledger.parent().unwrap();
        std::fs::read_to_string(dir.join("listen.err")).unwrap_or_default()
    }

    /// POSTs `body` to /events; the status, or `None` when nothing answered.
    pub fn post(&self, body: &[u8], token: Option<&str>) -> Option<u16> {
        self.post_as(body, token.map(|t| format!("Bearer {t}")).as_deref())
    }

    /// `post` with this Authorization header.
    pub fn post_as(&self, body: &[u8], authorization: Option<&str>) -> Option<u16> {
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.docker.distribution.events.v1+json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        post_bytes(&self.addr, &req)
    }

    /// A handle for posting to a listener another owns (it is not stopped when dropped).
    pub fn client(dir: &Path, addr: &str) -> Listener {
        Listener {
            child: None,
            addr: addr.to_string(),
            ledger: dir.join("ledger.db"),
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        c.wait().unwrap()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.kill();
    }
}

fn post_raw(addr: &str, req: &str) -> Option<u16> {
    post_bytes(addr, req.as_bytes())
}

/// Sends one request whole and reads the status line.
pub fn post_bytes(addr: &str, req: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(req).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// One notification envelope with one manifest event, as the registry writes it.
pub fn envelope(action: &str, repo: &str, tag: Option<&str>, digest: &str, time: &str) -> Vec<u8> {
    let mut target = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest, "size": 500, "length": 500, "repository": repo,
        "url": format!("http://127.0.0.1:5000/v2/{repo}/manifests/{digest}"),
    });
    if let Some(t) = tag {
        target["tag"] = t.into();
    }
    serde_json::json!({"events": [{
        "id": "e", "timestamp": time, "action": action, "target": target,
        "request": {"id": "r", "addr": "127.0.0.1:1", "host": "127.0.0.1:5000", "method": "GET", "useragent": "x"},
        "actor": {}, "source": {"addr": "h:5000", "instanceID": "i"}
    }]})
    .to_string()
    .into_bytes()
}

/// The ledger as the policy reads it.
pub fn history(ledger: &Path) -> PullHistory {
    regsweep::ledger::Ledger::open_read(ledger)
        .unwrap()
        .history()
        .unwrap()
}

/// (repository, tag) pairs with a pull.
pub fn tags(h: &PullHistory) -> BTreeSet<(String, String)> {
    h.tags.keys().cloned().collect()
}

/// (repository, digest) pairs with a pull.
pub fn digests(h: &PullHistory) -> BTreeSet<(String, String)> {
    h.digests
        .keys()
        .map(|(r, d)| (r.clone(), d.to_string()))
        .collect()
}

/// Polls the ledger until `done` holds (events reach it asynchronously).
pub fn wait_for(ledger: &Path, done: impl Fn(&PullHistory) -> bool) -> PullHistory {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ledger.exists() {
            let h = history(ledger);
            if done(&h) {
                return h;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the ledger never got the expected pulls"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(tag, ...)` pairs in `repo`, as sets in assertions.
pub fn pairs(repo: &str, names: &[&str]) -> BTreeSet<(String, String)> {
    names
        .iter()
        .map(|n| (repo.to_string(), n.to_string()))
        .collect()
}

/// A dry run of `policy` judged by `ledger`, no grace.
pub fn dry_run(root: &Path, policy: &Path, ledger: &Path) -> (i32, serde_json::Value) {
    gc_json(
        root,
        &[
            "--dry-run",
            "--policy",
            policy.to_str().unwrap(),
            "--ledger",
            ledger.to_str().unwrap(),
            "--grace",
            "0",
        ],
    )
}
