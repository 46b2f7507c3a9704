//! The check command: everything wrong or left over in a layout, changing nothing.

use crate::config::Format;
use crate::config::Location;
use crate::error::ExitCode;
use crate::error::Result;
use crate::inspect::integrity;
use crate::model::Rules;
use crate::model::{Finding, Severity};
use crate::pipeline::{self, Open, Session};
use crate::progress::Progress;
use crate::report::Report;
use crate::report::human_bytes;
use crate::report::metrics::Metrics;
use crate::stages::scan::ScanOptions;
use crate::storage::location::OnStorage;
use crate::storage::seam::Storage;
use crate::units::plural;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// A killed run's pending-eviction journal at the root: the live registry may still claim
/// what that run swept.
fn pending_eviction<S: Storage>(store: &S) -> Option<Finding> {
    use crate::live::pending::{PENDING_EVICTION, Pending};
    let path = store.location().join(PENDING_EVICTION);
    let finding = |message: String| Finding {
        path: path.clone(),
        message,
        severity: Severity::Error,
        kind: crate::model::FindingKind::RegistryCachePending,
        repository: None,
    };
    match store.read_state(PENDING_EVICTION) {
        Ok(None) => None,
        Ok(Some(bytes)) => Some(finding(match Pending::parse(&bytes) {
            Ok(p) => format!(
                "{} and was stopped before the cache forgot what went: the registry may still claim those blobs, and a re-push of one is accepted without its data; run gc (or apply) with the registry's --config, which completes it first{}",
                p.describe(),
                if p.redis.is_none() {
                    " (with --restart-command or --registry-stopped)"
                } else {
                    ""
                }
            ),
            Err(why) => format!(
                "a pending-eviction journal that cannot be read ({why}): restart the registry (and FLUSHDB its Redis database, if it has one), then remove the file"
            ),
        })),
        Err(e) => Some(finding(format!(
            "cannot read it ({}): a killed run's pending eviction may be left",
            crate::error::io_cause(&e)
        ))),
    }
}

#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub root: Location,
    pub verify_digests: bool,
    pub format: Format,
    /// Findings of each list the text shows; `None` shows all.
    pub text_limit: Option<usize>,
    pub metrics: Option<PathBuf>,
    pub progress: bool,
    /// `--memory-limit`: how much the run may hold (the bounded mode spills the rest).
    pub memory: crate::spill::Bound,
}

#[derive(Debug, Serialize)]
pub struct Verify {
    pub blobs: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub bytes_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    #[serde(flatten)]
    pub envelope: crate::report::Envelope,
    pub root: PathBuf,
    pub summary: CheckSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
pub struct CheckSummary {
    pub repositories: usize,
    pub tags: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Blocking and damage findings: what breaks pulls or hides references.
    pub damage: usize,
    /// Leftovers and foreign entries.
    pub notices: usize,
    /// Requests made to an object store, by kind (absent on disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::storage::seam::Requests>,
}

/// A blob the store was listed without and that a layer link or a tag's pull needs is damage,
/// unless it is there now: a push that uploaded it after the listing (the registry moves a
/// blob into place before it links it). Such findings become notices; one stat each, and only
/// for what was found missing. du counts damage as check does, so it calls this too.
pub(super) fn arrived_during_the_run<S: Storage>(store: &S, findings: &mut [Finding]) {
    use crate::model::FindingKind::{BrokenImage, LinkToMissingBlob};
    use crate::storage::seam::Folder as _;
    let rel = crate::model::paths::Paths::new(PathBuf::new());
    for f in findings.iter_mut() {
        let missing = match f.kind {
            LinkToMissingBlob => true,
            // At a blob's data: the blob is missing (elsewhere: a link or a manifest is).
            BrokenImage => f.path.file_name() == Some(std::ffi::OsStr::new("data")),
            _ => false,
        };
        let digest = (f.path.parent())
            .and_then(|p| p.file_name())
            .and_then(|n| crate::model::digest::Digest::from_hex(&n.to_string_lossy()));
        let Some(d) = digest.filter(|_| missing && f.severity != Severity::Notice) else {
            continue;
        };
        if store
            .top()
            .stat(rel.blob_data(&d))
            .is_ok_and(|s| s.is_file())
        {
            f.severity = Severity::Notice;
            f.message = format!(
                "{}; but blob {d} arrived during the run, after the blob store was listed, and is there now (a push in flight)",
                f.message
            );
        }
    }
}

/// Runs check; the rendered output and the exit code (0 clean, 3 damage found).
pub fn run(cfg: &CheckConfig, progress: &dyn Progress) -> Result<CheckReport> {
    cfg.root.open(cfg, progress)
}

impl OnStorage for CheckConfig {
    type Out = CheckReport;
    fn run<S: Storage>(&self, store: S, progress: &dyn Progress) -> Result<Self::Out> {
        run_in(store, self, progress)
    }
}

fn run_in<S: Storage>(store: S, cfg: &CheckConfig, progress: &dyn Progress) -> Result<CheckReport> {
    let started = Instant::now();
    let started_dt = chrono::Utc::now();
    let now = started_dt.timestamp();
    let how = Open {
        scan: ScanOptions {
            verify_links: true,
            memory: cfg.memory,
            // check has no grace of its own: gc's default says what counts as a push in flight.
            in_flight_from: Rules::young_from(
                crate::model::duration::Span(std::time::Duration::from_secs(3600)),
                now,
            ),
        },
        ..Open::default()
    };
    let Session {
        store,
        layout,
        killed,
        killed_unreadable,
        ..
    } = Session::open(store, how, None, progress)?;
    let root = store.location();
    // The plan's findings are the scan's plus every manifest that cannot be read.
    let (plan, _) = pipeline::decide(&layout, None, &Rules::without_grace(false), now);
    let mut findings = plan.findings;
    findings.extend(integrity::check(&layout, now));
    arrived_during_the_run(&store, &mut findings);
    findings.extend(pending_eviction(&store));
    let journal = root.join(crate::gc::killed::SWEEP_JOURNAL);
    let killed = (killed.iter().map(|k| k.describe(false))).chain(killed_unreadable);
    findings.extend(killed.map(|said| Finding {
        path: journal.clone(),
        message: format!(
            "{said} (the next gc or apply puts this in its report and removes the journal)"
        ),
        severity: Severity::Notice,
        kind: crate::model::FindingKind::SweepKilled,
        repository: None,
    }));
    let verify = cfg.verify_digests.then(|| {
        let v = crate::stages::verify::verify_digests(&store, &layout, progress);
        findings.extend(v.findings);
        Verify {
            blobs: v.blobs,
            bytes: v.bytes,
            seconds: v.seconds,
            bytes_per_second: if v.seconds > 0.0 {
                v.bytes as f64 / v.seconds
            } else {
                0.0
            },
        }
    });
    findings.sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
    let damage = findings
        .iter()
        .filter(|f| f.severity != Severity::Notice)
        .count();
    let report = CheckReport {
        envelope: crate::report::Envelope::new("regsweep/check-report/v2", started_dt),
        root,
        summary: CheckSummary {
            repositories: layout.repos.len(),
            tags: layout.repos.iter().map(|r| r.tags.len()).sum(),
            manifests: layout.repos.iter().map(|r| r.revisions.len()).sum(),
            blobs: layout.blobs.len(),
            bytes: layout.total_bytes(),
            damage,
            notices: findings.len() - damage,
            requests: store.requests(),
        },
        verify,
        findings,
    };
    if let Some(path) = &cfg.metrics {
        let mut m = Metrics::new("check");
        m.run(
            now,
            started.elapsed().as_secs_f64(),
            report.summary.damage,
            report.summary.notices,
        );
        m.requests(report.summary.requests.as_ref());
        if let Some(v) = &report.verify {
            m.gauge(
                "verify_bytes_per_second",
                "Read rate of --verify-digests.",
                &[],
                v.bytes_per_second,
            );
        }
        m.write(path)?;
    }
    Ok(report)
}

impl Report for CheckReport {
    fn text(&self, limit: Option<usize>) -> String {
        text(self, limit.unwrap_or(usize::MAX))
    }
    fn json(&self) -> String {
        crate::report::pretty(self)
    }
    /// 3 when damage was found.
    fn exit_code(&self) -> ExitCode {
        if self.summary.damage > 0 {
            ExitCode::Damage
        } else {
            ExitCode::Ok
        }
    }
}

fn text(r: &CheckReport, limit: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "regsweep check on {}", r.root.display());
    let _ = writeln!(
        o,
        "  scanned   {}, {}, {}, {} ({})",
        plural(r.summary.repositories, "repository", "repositories"),
        plural(r.summary.tags, "tag", "tags"),
        plural(r.summary.manifests, "manifest", "manifests"),
        plural(r.summary.blobs, "blob", "blobs"),
        human_bytes(r.summary.bytes)
    );
    let _ = writeln!(
        o,
        "  damage    {}",
        if r.summary.damage == 0 {
            "none found".to_string()
        } else {
            plural(r.summary.damage, "finding", "findings")
        }
    );
    let _ = writeln!(
        o,
        "  notices   {}",
        plural(
            r.summary.notices,
            "leftover or foreign entry",
            "leftover or foreign entries"
        )
    );
    if let Some(req) = &r.summary.requests {
        let _ = writeln!(o, "  requests  {}", crate::report::requests_line(req));
    }
    if let Some(v) = &r.verify {
        let _ = writeln!(
            o,
            "  verified  {} blobs, {} in {:.2}s ({}/s)",
            v.blobs,
            human_bytes(v.bytes),
            v.seconds,
            human_bytes(v.bytes_per_second as u64)
        );
    }
    for (title, want) in [("damage", false), ("notices", true)] {
        let list: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| (f.severity == Severity::Notice) == want)
            .collect();
        if !list.is_empty() {
            let _ = writeln!(o, "\n{title}:");
            for f in list.iter().take(limit) {
                let _ = writeln!(
                    o,
                    "  {}: {} [{}]",
                    f.path.display(),
                    f.message,
                    f.kind.word()
                );
            }
            crate::report::more(&mut o, list.len(), limit);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FindingKind;
    use crate::model::digest::Digest;
    use crate::model::paths::Paths;
    use crate::storage::memory::MemStorage;

    #[test]
    fn a_blob_missing_from_the_listing_but_there_now_arrived_during_the_run() {
        let store = MemStorage::new();
        let (arrived, lost) = (Digest([7; 32]), Digest([9; 32]));
        let rel = Paths::new(PathBuf::new());
        store.put(&rel.blob_data(&arrived).to_string_lossy(), b"late", 0);
        let paths = Paths::new(store.v2().to_path_buf());
        let finding = |path: PathBuf, kind| Finding {
            path,
            message: "missing".into(),
            severity: Severity::Damage,
            kind,
            repository: Some("acme/app".into()),
        };
        let mut findings = Vec::new();
        for d in [arrived, lost] {
            findings.push(finding(
                paths.layer_dir("acme/app", &d).join("link"),
                FindingKind::LinkToMissingBlob,
            ));
            findings.push(finding(paths.blob_data(&d), FindingKind::BrokenImage));
        }
        // A broken image at a link is about the link, not a missing blob: it stays.
        findings.push(finding(
            paths.layer_dir("acme/app", &arrived).join("link"),
            FindingKind::BrokenImage,
        ));
        arrived_during_the_run(&store, &mut findings);
        let severities: Vec<Severity> = findings.iter().map(|f| f.severity).collect();
        assert_eq!(
            severities,
            [
                Severity::Notice,
                Severity::Notice,
                Severity::Damage,
                Severity::Damage,
                Severity::Damage
            ]
        );
        assert!(findings[0].message.contains("arrived during the run"));
    }
}
