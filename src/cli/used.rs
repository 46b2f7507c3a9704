//! The arguments about use: images in use and the pull ledger (`gc`, `du`, `policy check`),
//! and the `pulls` commands that fill the ledger.

use super::{emit, print};
use crate::error::{Error, ExitCode};
use crate::model::duration::Span;
use crate::model::inuse::Images;
use crate::policy::Policy;
use crate::policy::used::Used;
use crate::report::Report;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// What is used: images running somewhere, and when tags were last pulled.
#[derive(Debug, Args, Default, Clone)]
pub struct UsedArgs {
    /// Images in use, never deleted: a file of references (`host/repo:tag`, `repo@sha256:...`,
    /// one a line) or Kubernetes JSON (`kubectl get pods -A -o json`); `-` reads stdin.
    /// Repeatable.
    #[arg(long, value_name = "FILE|-")]
    pub keep_images: Vec<PathBuf>,
    /// A host name (`NAME[:PORT]`) of this registry in those references; references to other
    /// hosts are ignored. Repeatable; without it every host counts as this registry.
    #[arg(long, value_name = "NAME[:PORT]")]
    pub registry_host: Vec<String>,
    /// The pull ledger (`regsweep pulls listen`/`import`) the policy's pull rules read.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// How far behind now the ledger may end before pull rules refuse to judge (the listener
    /// marks it every 30 s; an imported log ends at its last line).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ledger_lag: Span,
}

impl UsedArgs {
    /// Reads the files and the ledger. A policy with pull rules needs a ledger.
    pub fn read(self, policy: Option<&Policy>) -> Result<Used, Error> {
        if let Some(p) = policy
            && p.uses_pulls()
            && self.ledger.is_none()
        {
            return Err(Error::Usage(format!(
                "{}: the policy has pull rules (pulled_within, most_recently_pulled, not_pulled_for): give --ledger FILE",
                p.path.display()
            )));
        }
        let mut images = Images::default();
        let mut stdin_read = false;
        for file in &self.keep_images {
            let text = if file == Path::new("-") {
                if std::mem::replace(&mut stdin_read, true) {
                    return Err(Error::Usage(
                        "--keep-images: `-` (stdin) given twice".into(),
                    ));
                }
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .map_err(|e| Error::io("-", e))?;
                s
            } else {
                std::fs::read_to_string(file).map_err(|e| Error::Input {
                    path: file.clone(),
                    message: format!("cannot read the images in use: {e}"),
                })?
            };
            let name = if file == Path::new("-") {
                "stdin".into()
            } else {
                file.display().to_string()
            };
            let read =
                crate::model::inuse::parse(&text, &name).map_err(|message| Error::Input {
                    path: file.clone(),
                    message,
                })?;
            images.extend(read);
        }
        for h in &self.registry_host {
            let ok = !h.is_empty() && !h.contains(['/', '@', ' ']) && !h.contains("://");
            if !ok {
                return Err(Error::Usage(format!(
                    "--registry-host {h:?}: give a host name, with its port when not 443 (registry.example.com:5000)"
                )));
            }
        }
        let pulls = match &self.ledger {
            Some(path) => Some(crate::ledger::Ledger::open_read(path)?.history()?),
            None => None,
        };
        Ok(Used {
            images,
            hosts: self.registry_host,
            pulls,
            max_lag: self.ledger_lag,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum PullsCommand {
    /// Receive the registry's notification webhook and record every pull in the ledger.
    Listen(ListenArgs),
    /// Record the pulls in the registry's own log lines (files, or stdin).
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on; a non-loopback address needs a token.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:5080")]
    pub addr: std::net::SocketAddr,
    /// The ledger file (created when missing).
    #[arg(long, value_name = "FILE")]
    pub ledger: PathBuf,
    /// A file holding the bearer token every request must carry (the registry's endpoint
    /// `headers: {Authorization: [Bearer TOKEN]}`); REGSWEEP_LEDGER_TOKEN also sets it.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The largest request body accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_body: usize,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The ledger file (created when missing).
    #[arg(long, value_name = "FILE")]
    pub ledger: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: super::FormatArg,
    /// Log files of the registry (text or JSON formatter, or access log); none or `-`: stdin.
    pub logs: Vec<PathBuf>,
}

pub(super) fn pulls(command: PullsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PullsCommand::Listen(a) => listen(a),
        PullsCommand::Import(a) => {
            let cfg = crate::commands::pulls::ImportConfig {
                ledger: a.ledger,
                logs: a.logs,
            };
            let report = crate::commands::pulls::import(&cfg)?;
            Ok(emit(&report, a.format.into(), None))
        }
    }
}

fn listen(a: ListenArgs) -> anyhow::Result<ExitCode> {
    let token = match (&a.token_file, std::env::var("REGSWEEP_LEDGER_TOKEN")) {
        (Some(f), _) => {
            let t = std::fs::read_to_string(f).map_err(|e| Error::Input {
                path: f.clone(),
                message: format!("cannot read the token: {e}"),
            })?;
            Some(t.trim().to_string())
        }
        (None, Ok(t)) => Some(t.trim().to_string()),
        (None, Err(_)) => None,
    };
    if token.as_deref() == Some("") {
        return Err(Error::Usage("the token is empty: put one in --token-file".into()).into());
    }
    if !a.addr.ip().is_loopback() && token.is_none() {
        return Err(Error::Usage(format!(
            "--addr {}: not a loopback address, so anyone who reaches it could write pulls: give --token-file",
            a.addr
        ))
        .into());
    }
    if a.max_body < 1024 {
        return Err(Error::Usage("--max-body: at least 1024 bytes".into()).into());
    }
    let cfg = crate::ledger::listen::ListenConfig {
        addr: a.addr,
        ledger: a.ledger,
        token,
        max_body: a.max_body,
    };
    let report = crate::commands::pulls::listen(&cfg)?;
    print(&report.text(None));
    Ok(report.exit_code())
}
