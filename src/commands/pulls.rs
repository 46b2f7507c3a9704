//! The `pulls` commands: `listen` (the registry's webhook into the ledger) and `import` (its
//! log lines into the ledger), each with its report.

use crate::error::{Error, ExitCode, Result};
use crate::ledger::Ledger;
use crate::ledger::listen::{ListenConfig, ListenStats};
use crate::ledger::logs::{Line, parse_line};
use crate::model::Time;
use crate::model::pulls::{Span, stamp};
use crate::report::{Envelope, Report, pretty};
use serde::Serialize;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// What `pulls import` reads and where it writes.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    pub ledger: PathBuf,
    /// Log files; empty (or `-`): stdin.
    pub logs: Vec<PathBuf>,
}

/// The ledger's name for imported log lines.
pub const SOURCE: &str = "log";

/// Pulls recorded per transaction: a long log is written in pieces, memory stays flat.
const CHUNK: usize = 10_000;

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    #[serde(flatten)]
    pub envelope: Option<Envelope>,
    /// The ledger file.
    #[serde(rename = "root")]
    pub ledger: PathBuf,
    pub summary: ImportCounts,
    /// The time the imported lines cover.
    pub covered_from: Option<String>,
    pub covered_until: Option<String>,
    pub spans: Vec<Span>,
}

#[derive(Debug, Default, Serialize)]
pub struct ImportCounts {
    pub lines: u64,
    /// Lines the registry wrote (any message).
    pub registry_lines: u64,
    /// Successful manifest GETs and HEADs.
    pub pulls: u64,
    /// Lines of other programs, skipped.
    pub other_lines: u64,
    /// What the ledger holds now: tags and digests with a pull.
    pub ledger_tags: u64,
    pub ledger_digests: u64,
}

/// Reads every line, records the pulls and the span the registry's lines cover.
pub fn import(cfg: &ImportConfig) -> Result<ImportReport> {
    let started = chrono::Utc::now();
    let mut ledger = Ledger::open_write(&cfg.ledger)?;
    let mut r = ImportReport {
        ledger: cfg.ledger.clone(),
        ..ImportReport::default()
    };
    let mut span: Option<(Time, Time)> = None;
    let stdin_only = cfg.logs.is_empty();
    let inputs: Vec<PathBuf> = if stdin_only {
        vec!["-".into()]
    } else {
        cfg.logs.clone()
    };
    for input in &inputs {
        let reader: Box<dyn BufRead> = if input == Path::new("-") {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            if input.is_dir() {
                return Err(Error::Input {
                    path: input.clone(),
                    message: "a folder: give the registry's log files".into(),
                });
            }
            let f = std::fs::File::open(input).map_err(|e| Error::io(input, e))?;
            Box::new(std::io::BufReader::new(f))
        };
        read_log(reader, input, &mut ledger, &mut r.summary, &mut span)?;
    }
    if let Some(s) = span {
        ledger.record(SOURCE, &[], Some(s))?;
    }
    let (tags, digests) = ledger.count()?;
    r.summary.ledger_tags = tags;
    r.summary.ledger_digests = digests;
    r.spans = ledger.spans()?;
    r.covered_from = span.map(|s| stamp(s.0));
    r.covered_until = span.map(|s| stamp(s.1));
    r.envelope = Some(Envelope::new("regsweep/pulls-import/v1", started));
    Ok(r)
}

fn read_log(
    mut reader: Box<dyn BufRead>,
    input: &Path,
    ledger: &mut Ledger,
    r: &mut ImportCounts,
    span: &mut Option<(Time, Time)>,
) -> Result<()> {
    let mut events = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(input, e))?;
        if n == 0 {
            break;
        }
        r.lines += 1;
        let line = String::from_utf8_lossy(&buf);
        let time = match parse_line(line.trim_end()) {
            Line::Pull(e) => {
                r.pulls += 1;
                let t = e.time;
                events.push(e);
                t
            }
            Line::Registry(t) => t,
            Line::Other => {
                r.other_lines += 1;
                continue;
            }
        };
        r.registry_lines += 1;
        *span = Some(match *span {
            Some((a, b)) => (a.min(time), b.max(time)),
            None => (time, time),
        });
        if events.len() >= CHUNK {
            ledger.record(SOURCE, &std::mem::take(&mut events), None)?;
        }
    }
    if !events.is_empty() {
        ledger.record(SOURCE, &events, None)?;
    }
    Ok(())
}

impl Report for ImportReport {
    fn text(&self, _limit: Option<usize>) -> String {
        let c = &self.summary;
        let mut s = format!(
            "{}: {} lines read: {} pulls recorded, {} other lines of the registry, {} lines of other programs skipped\n",
            self.ledger.display(),
            c.lines,
            c.pulls,
            c.registry_lines - c.pulls,
            c.other_lines
        );
        if let (Some(a), Some(b)) = (&self.covered_from, &self.covered_until) {
            s += &format!("these lines cover {a} to {b}\n");
        } else {
            s += "no line of the registry was found: nothing recorded (is this its log?)\n";
        }
        s += &format!(
            "the ledger holds pulls of {} tags and {} digests\n",
            c.ledger_tags, c.ledger_digests
        );
        for sp in &self.spans {
            s += &format!(
                "  {:<8} covers {} to {}\n",
                sp.source,
                stamp(sp.covered_from),
                stamp(sp.covered_until)
            );
        }
        s
    }

    fn json(&self) -> String {
        pretty(self)
    }

    fn exit_code(&self) -> ExitCode {
        ExitCode::Ok
    }
}

/// What the listener did, printed when it stops.
#[derive(Debug, Serialize)]
pub struct ListenReport {
    pub ledger: PathBuf,
    #[serde(flatten)]
    pub stats: ListenStats,
}

/// Runs the listener until SIGTERM or SIGINT.
pub fn listen(cfg: &ListenConfig) -> Result<ListenReport> {
    let ready = |addr: std::net::SocketAddr| {
        eprintln!(
            "regsweep: listening on http://{addr}/events, recording into {}",
            cfg.ledger.display()
        );
    };
    let stats = crate::ledger::listen::run(cfg, &ready)?;
    Ok(ListenReport {
        ledger: cfg.ledger.clone(),
        stats,
    })
}

impl Report for ListenReport {
    fn text(&self, _limit: Option<usize>) -> String {
        let s = &self.stats;
        format!(
            "stopped: {} envelopes accepted, {} events recorded in {} commits, {} ignored (blobs, other actions), {} requests refused\n",
            s.envelopes_accepted, s.events_recorded, s.commits, s.events_ignored, s.rejected
        )
    }

    fn json(&self) -> String {
        pretty(self)
    }

    fn exit_code(&self) -> ExitCode {
        ExitCode::Ok
    }
}
