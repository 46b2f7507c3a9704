//! The `pulls` commands: `listen` (the registry's webhook into the ledger) and `import` (its
//! log lines into the ledger), each with its report.

use crate::error::{Error, ExitCode, Result};
use crate::ledger::Evidence;
use crate::ledger::Ledger;
use crate::ledger::listen::{ListenConfig, ListenStats};
use crate::ledger::logs::{Line, parse_line};
use crate::model::Time;
use crate::model::coverage::{Intervals, Stream};
use crate::report::{Envelope, Report, pretty};
use crate::units::human_age;
use serde::Serialize;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// What `pulls import` reads and where it writes.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    pub ledger: PathBuf,
    /// Log files; empty (or `-`): stdin.
    pub logs: Vec<PathBuf>,
    /// The registry instance the logs are of (`--instance`).
    pub instance: String,
    /// `--max-silence`: the longest gap between two lines that still counts as covered.
    pub max_silence: u64,
}

/// The instance of a log imported without `--instance`.
pub const DEFAULT_INSTANCE: &str = "default";

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
    /// The instance the lines were recorded for.
    pub instance: String,
    /// The intervals the imported lines prove (lines no further apart than `max_silence`).
    #[serde(serialize_with = "crate::model::coverage::serialize_intervals")]
    pub covered: Intervals,
    pub max_silence: u64,
    /// The ledger's streams of evidence after the import.
    pub streams: Vec<Stream>,
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
    /// Lines dated ahead of this host's clock: neither recorded nor evidence.
    pub future_lines: u64,
    /// What the ledger holds now: tags and digests with a pull.
    pub ledger_tags: u64,
    pub ledger_digests: u64,
}

/// Reads every line, records the pulls and the intervals the registry's lines prove.
pub fn import(
    cfg: &ImportConfig,
    progress: &dyn crate::progress::Progress,
) -> Result<ImportReport> {
    let started = chrono::Utc::now();
    let mut ledger = Ledger::open_write(&cfg.ledger)?;
    let mut r = ImportReport {
        ledger: cfg.ledger.clone(),
        instance: cfg.instance.clone(),
        max_silence: cfg.max_silence,
        ..ImportReport::default()
    };
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
        // A large log takes a while: its bytes as they are read (stdin has no length).
        let len = std::fs::metadata(input).map_or(0, |m| m.len());
        let bar = progress.bytes_bar("import", len);
        read_log((reader, &*bar), input, cfg, &mut ledger, &mut r)?;
        bar.finish();
    }
    let (tags, digests) = ledger.count()?;
    r.summary.ledger_tags = tags;
    r.summary.ledger_digests = digests;
    r.streams = ledger.streams()?;
    r.envelope = Some(Envelope::new("regsweep/pulls-import/v2", started));
    Ok(r)
}

fn read_log(
    (mut reader, bar): (Box<dyn BufRead>, &dyn crate::progress::Bar),
    input: &Path,
    cfg: &ImportConfig,
    ledger: &mut Ledger,
    r: &mut ImportReport,
) -> Result<()> {
    let mut events = Vec::new();
    let mut points = Vec::new();
    let mut buf = Vec::new();
    let ahead = chrono::Utc::now().timestamp() + crate::ledger::listen::SKEW;
    let c = &mut r.summary;
    let flush = |ledger: &mut Ledger, events: &mut Vec<_>, points: &mut Vec<Time>| {
        let evidence = Evidence {
            source: SOURCE.into(),
            instance: cfg.instance.clone(),
            tolerance: cfg.max_silence,
            points: std::mem::take(points),
            ..Evidence::default()
        };
        ledger.record(&std::mem::take(events), &[evidence], &[])
    };
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(input, e))?;
        if n == 0 {
            break;
        }
        bar.inc(n as u64);
        c.lines += 1;
        let line = String::from_utf8_lossy(&buf);
        let (time, event) = match parse_line(line.trim_end()) {
            Line::Pull(e) => (e.time, Some(e)),
            Line::Registry(t) => (t, None),
            Line::Other => {
                c.other_lines += 1;
                continue;
            }
        };
        c.registry_lines += 1;
        if time > ahead {
            c.future_lines += 1;
            continue;
        }
        if let Some(e) = event {
            c.pulls += 1;
            events.push(e);
        }
        points.push(time);
        r.covered.add((time, time), cfg.max_silence);
        if points.len() >= CHUNK {
            flush(ledger, &mut events, &mut points)?;
        }
    }
    if !points.is_empty() {
        flush(ledger, &mut events, &mut points)?;
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
        if self.covered.0.is_empty() {
            s += "no line of the registry was found: nothing recorded (is this its log?)\n";
        } else {
            s += &format!(
                "these lines prove {} for instance {} (lines at most {} apart)\n",
                self.covered,
                self.instance,
                human_age(self.max_silence as i64)
            );
        }
        if c.future_lines > 0 {
            s += &format!(
                "{} lines dated ahead of this host's clock were skipped: check the clocks\n",
                c.future_lines
            );
        }
        s += &format!(
            "the ledger holds pulls of {} tags and {} digests\n",
            c.ledger_tags, c.ledger_digests
        );
        for st in &self.streams {
            s += &format!("  {:<8} {:<20} {}\n", st.source, st.instance, st.intervals);
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
        // Bound to loopback without a token: every local process is trusted, and its events
        // count as proof that the ledger heard every pull.
        if cfg.token.is_none() {
            eprintln!(
                "regsweep: no --token-file: any process on this machine can post events here, so they are recorded as pulls (which only keep) and prove nothing of coverage; give --token-file (and the registry's endpoint its header) for pull rules that delete"
            );
        }
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
