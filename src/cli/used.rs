//! The arguments about use: images in use and the pull ledger (`gc`, `du`, `policy check`),
//! and the `pulls` commands that fill the ledger.

use super::{emit, print};
use crate::error::{Error, ExitCode};
use crate::model::coverage::Expect;
use crate::model::duration::Span;
use crate::policy::Policy;
use crate::policy::used::Used;
use crate::report::Report;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// What is used: images running somewhere, and when tags were last pulled.
#[derive(Debug, Args, Default, Clone)]
pub struct UsedArgs {
    /// Images in use, never deleted: a file of references (`host/repo:tag`, `repo@sha256:...`,
    /// one a line) or Kubernetes JSON (`kubectl get pods -A -o json`); `-` reads stdin.
    /// Repeatable.
    #[arg(long, value_name = "FILE|-")]
    pub keep_images: Vec<PathBuf>,
    /// Accept a --keep-images file that names no image (a cluster running nothing). Without
    /// it such a file is refused: it is what a failed `kubectl get pods -o json > FILE` leaves.
    #[arg(long)]
    pub keep_images_empty_ok: bool,
    /// A host name (`NAME[:PORT]`) of this registry in those references; references to other
    /// hosts are ignored. Repeatable; without it every host counts as this registry.
    #[arg(long, value_name = "NAME[:PORT]")]
    pub registry_host: Vec<String>,
    /// The pull ledger (`regsweep pulls listen`/`import`) the policy's pull rules read.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// How far behind now the ledger's evidence may end before pull rules refuse to judge (the
    /// listener's last event or canary; an imported log's last line).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ledger_lag: Span,
    /// The registry instances that must have delivered over a pull rule's whole window: a
    /// number, or their `source.addr` names (a log's `--instance`) separated by commas.
    /// Without it, every instance seen in the window must have.
    #[arg(long, value_name = "N|NAME,...")]
    pub expect_instances: Option<Expect>,
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
        let images =
            crate::commands::evidence::read_images(&self.keep_images, self.keep_images_empty_ok)?;
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
            expect: self.expect_instances.unwrap_or_default(),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum PullsCommand {
    /// Receive the registry's notification webhook and record every pull in the ledger.
    Listen(ListenArgs),
    /// Record the pulls in the registry's own log lines (files, or stdin).
    Import(ImportArgs),
    /// What the ledger can prove: intervals and holes per instance, the canary, rejections;
    /// exits 0 when pull rules over --window would be judged, 1 when not.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The ledger file.
    #[arg(long, value_name = "FILE")]
    pub ledger: PathBuf,
    /// The window a pull rule asks about (its not_pulled_for or pulled_within).
    #[arg(long, value_name = "DURATION", default_value = "14d")]
    pub window: Span,
    /// How far behind now the evidence may end.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ledger_lag: Span,
    /// The instances that must have delivered (as gc's --expect-instances).
    #[arg(long, value_name = "N|NAME,...")]
    pub expect_instances: Option<Expect>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: super::FormatArg,
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
    /// The longest silence between two events of one registry process that still counts as
    /// covered (without --canary; a quiet registry at night leaves holes: use a canary).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub max_silence: Span,
    /// The registry's URL: pull a canary image through it every --canary-interval, so that
    /// coverage follows what the registry delivers (pushed once when missing).
    #[arg(long, value_name = "URL")]
    pub canary: Option<String>,
    /// The canary image, kept from every rule.
    #[arg(long, value_name = "REPOSITORY:TAG", default_value = crate::ledger::canary::DEFAULT_IMAGE)]
    pub canary_image: String,
    /// How often the canary is pulled; no canary event for twice this long is a hole.
    #[arg(long, value_name = "DURATION", default_value = "1m")]
    pub canary_interval: Span,
    /// A file of `USER:PASSWORD` for the registry (REGSWEEP_REGISTRY_USERNAME and
    /// REGSWEEP_REGISTRY_PASSWORD also give them).
    #[arg(long, value_name = "FILE")]
    pub canary_credentials: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The ledger file (created when missing).
    #[arg(long, value_name = "FILE")]
    pub ledger: PathBuf,
    /// The registry instance these logs are of (one per replica).
    #[arg(long, value_name = "NAME", default_value = crate::commands::pulls::DEFAULT_INSTANCE)]
    pub instance: String,
    /// The longest gap between two of the registry's lines that still counts as covered (a
    /// quiet registry at night leaves holes).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub max_silence: Span,
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
            if a.instance.is_empty() || a.instance.chars().any(char::is_control) {
                return Err(Error::Usage(
                    "--instance: give a name for the registry instance".into(),
                )
                .into());
            }
            let cfg = crate::commands::pulls::ImportConfig {
                ledger: a.ledger,
                logs: a.logs,
                instance: a.instance,
                max_silence: a.max_silence.as_secs(),
            };
            let bars = super::bars::Bars::when(true);
            let report = crate::commands::pulls::import(&cfg, &*bars)?;
            Ok(emit(&report, a.format.into(), None))
        }
        PullsCommand::Status(a) => {
            let cfg = crate::commands::pulls_status::StatusConfig {
                ledger: a.ledger,
                window: a.window.as_secs(),
                max_lag: a.ledger_lag.as_secs(),
                expect: a.expect_instances.unwrap_or_default(),
            };
            let report = crate::commands::pulls_status::status(&cfg)?;
            Ok(emit(&report, a.format.into(), None))
        }
    }
}

/// `--canary`'s settings, checked.
fn canary(a: &ListenArgs) -> Result<Option<crate::ledger::canary::Canary>, Error> {
    let Some(url) = &a.canary else {
        return Ok(None);
    };
    crate::endpoint::check(url).map_err(|why| Error::Usage(format!("--canary: {why}")))?;
    let (repository, tag) = crate::ledger::canary::parse_image(&a.canary_image)
        .map_err(|why| Error::Usage(format!("--canary-image: {why}")))?;
    let interval = a.canary_interval.as_secs();
    if interval == 0 {
        return Err(Error::Usage("--canary-interval: at least 1s".into()));
    }
    let credentials = match &a.canary_credentials {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| Error::Input {
                path: f.clone(),
                message: format!("cannot read the credentials: {e}"),
            })?;
            let (user, password) = text.trim().split_once(':').ok_or_else(|| Error::Input {
                path: f.clone(),
                message: "give one line USER:PASSWORD".into(),
            })?;
            Some((user.to_string(), password.to_string()))
        }
        None => match (
            std::env::var("REGSWEEP_REGISTRY_USERNAME"),
            std::env::var("REGSWEEP_REGISTRY_PASSWORD"),
        ) {
            (Ok(u), Ok(p)) => Some((u, p)),
            _ => None,
        },
    };
    Ok(Some(crate::ledger::canary::Canary {
        url: url.clone(),
        repository,
        tag,
        interval: std::time::Duration::from_secs(interval),
        credentials,
    }))
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
    let canary = canary(&a)?;
    // With a canary, its events come every interval: two missed ones are a hole.
    let tolerance = match &canary {
        Some(c) => 2 * c.interval.as_secs(),
        None => a.max_silence.as_secs(),
    };
    let cfg = crate::ledger::listen::ListenConfig {
        addr: a.addr,
        ledger: a.ledger,
        token,
        max_body: a.max_body,
        tolerance,
        canary,
    };
    let report = crate::commands::pulls::listen(&cfg)?;
    print(&report.text(None));
    Ok(report.exit_code())
}
