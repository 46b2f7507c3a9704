//! The reports: gc's (a JSON document for machines, a text summary for people), and beside it
//! those of `policy check` (`policy`) and `trash list` (`trash`); `metrics` for Prometheus.

pub mod metrics;
pub mod page;
mod policy;
mod space;
mod text;
mod trash;

pub(crate) use text::more;
pub use text::{registry_lines, requests_line};

pub use crate::gc::planfile::{Options, PlanFile, plan_checksum};
pub use policy::*;
pub use trash::*;

use crate::gc::outcome::Outcome;
use crate::gc::plan::{ManifestRemoval, Plan};
use crate::model::digest::Digest;
use crate::model::duration::Span;
use crate::model::{Layout, Severity};
use crate::policy::TagExplain;
use crate::storage::seam::Requests;
use crate::units::plural;
pub use crate::units::{human_age, human_bytes};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

pub const GC_SCHEMA: &str = "regsweep/gc-report/v2";
pub const POLICY_SCHEMA: &str = "regsweep/policy-check/v2";
pub const TRASH_LIST_SCHEMA: &str = "regsweep/trash-list/v1";
pub const TRASH_EMPTY_SCHEMA: &str = "regsweep/trash-empty/v1";
pub const RESTORE_SCHEMA: &str = "regsweep/restore-report/v1";
/// gc reports `apply` reads as plans: this one, and v1 (the same plan fields).
pub const GC_SCHEMAS: [&str; 2] = [GC_SCHEMA, "regsweep/gc-report/v1"];

/// The shape of every command's result: text for people (its lists bounded by `limit`; `None`
/// shows all), JSON for machines, and the exit code the run calls for. The CLI only prints.
pub trait Report {
    fn text(&self, limit: Option<usize>) -> String;
    fn json(&self) -> String;
    fn exit_code(&self) -> crate::error::ExitCode;

    /// The JSON written to `w`, for reports that can stream it rather than hold it whole.
    fn write_json(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        w.write_all(self.json().as_bytes())
    }

    /// The report in `format`.
    fn render(&self, format: crate::config::Format, limit: Option<usize>) -> String {
        match format {
            crate::config::Format::Json => self.json(),
            crate::config::Format::Text => self.text(limit),
        }
    }
}

/// Pretty JSON with a final newline, as every report is written.
pub fn pretty(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// The fields every JSON report opens with (docs/REPORTS.md): which schema, which regsweep,
/// and when. Each report adds its `root` and its `summary` next to them.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    pub schema: &'static str,
    pub tool: &'static str,
    pub version: &'static str,
    pub started_at: String,
    pub finished_at: String,
}

impl Envelope {
    /// The envelope of a report of `schema` whose run began at `started` and ends now.
    pub fn new(schema: &'static str, started: chrono::DateTime<chrono::Utc>) -> Envelope {
        let at =
            |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Envelope {
            schema,
            tool: "regsweep",
            version: env!("CARGO_PKG_VERSION"),
            started_at: at(started),
            finished_at: at(chrono::Utc::now()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub repositories: usize,
    pub tags: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub tags_deleted: usize,
    pub manifests_deleted: usize,
    pub blobs_deleted: usize,
    pub bytes_freed: u64,
    pub layer_links_deleted: usize,
    pub uploads_deleted: usize,
    pub kept_by_grace: u64,
    pub errors: usize,
    pub tag_index_entries_deleted: usize,
    pub upload_bytes_freed: u64,
    pub empty_folders_removed: usize,
    pub sweep_failures: usize,
    /// Planned items the sweep left in place: modified, or named again, during the run.
    pub kept_at_sweep: usize,
    /// Items the sweep actually removed (0 on a dry run; fewer than planned if interrupted).
    pub items_removed: u64,
    /// With `--repository`: how many repositories the scope matched.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repositories_in_scope: Option<usize>,
    /// Requests made to an object store, by kind (absent on disk).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub requests: Option<Requests>,
    /// A run that planned deletions and deleted nothing though not dry (the policy's safety net
    /// refused it): what it would have deleted. Every `*_deleted` count above is then 0.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub would_delete: Option<WouldDelete>,
}

/// The counts of a plan that was not carried out.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WouldDelete {
    pub tags: usize,
    pub manifests: usize,
    pub layer_links: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub uploads: usize,
    pub upload_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ErrorEntry {
    pub path: PathBuf,
    pub message: String,
    /// `blocking` (hides references), `damage`, `notice` (foreign or leftover, harmless),
    /// or `error` (a removal that failed).
    pub severity: Severity,
    /// What it is about: a finding's kind (docs/REPORTS.md).
    pub kind: crate::model::FindingKind,
}

/// The JSON form of a gc report: the report, then its plan's checksum.
#[derive(Serialize)]
struct WithChecksum<'a> {
    #[serde(flatten)]
    report: &'a GcReport,
    checksum: String,
}

#[derive(Debug, Serialize)]
pub struct GcReport {
    #[serde(flatten)]
    pub envelope: Envelope,
    pub dry_run: bool,
    pub duration_seconds: f64,
    pub summary: Summary,
    /// Where, with which options, and every item: the part `apply` reads back.
    #[serde(flatten)]
    pub plan: PlanFile,
    /// Removals held back, and why.
    pub withheld: Vec<String>,
    pub errors: Vec<ErrorEntry>,
    pub interrupted: bool,
    /// Planned items the sweep kept, with why (a push landed on them during the run).
    pub kept_at_sweep: Vec<crate::gc::outcome::ItemNote>,
    /// Outputs that could not be written (the metrics file, say): the run exits non-zero.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_errors: Vec<String>,
    /// Why the policy's safety net stops this run (see `refused_by_safety_net`).
    pub refused: Vec<String>,
    /// True when nothing was swept because of `refused` (no --force).
    pub refused_by_safety_net: bool,
    /// Every tag decision and why, with --explain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<Vec<TagExplain>>,
    /// What the images in use and the pull ledger protected (`--keep-images`, `--ledger`,
    /// `protect.images_file`, `protect.pulled_within`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<crate::model::inuse::UsedSummary>,
    /// With --trash: the trash run the items moved into (nothing is freed until it is emptied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trash: Option<PathBuf>,
    /// With a policy but without --delete-untagged: the blob bytes that -m would also free
    /// (the manifests the policy left untagged, and what only they need).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_untagged_would_free: Option<u64>,
    /// The exit code the run calls for (`Report::exit_code`).
    #[serde(skip)]
    pub exit_code: crate::error::ExitCode,
    /// What the run did about the live registry's blob-descriptor cache (after a sweep).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<crate::live::LiveReport>,
    /// The drop-in's marking lines, as the reference prints them, and how many digests they
    /// mark (`reference_marking`).
    #[serde(skip)]
    pub reference_marking: Option<(String, usize)>,
    /// The registry's `REGISTRY_*` variables its config was completed from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings_from_env: Vec<String>,
    /// What the policy's budget and quotas decided.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub space: Vec<crate::model::space::SpaceState>,
    /// Per rule that deleted tags: its tags and the planned blob bytes their images reach.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules_freed: Vec<crate::gc::by_rule::RuleFreed>,
    /// A refused run: the tags the policy would have deleted (none was).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused_tags: Vec<crate::gc::plan::TagRemoval>,
    /// On a pull-through cache's root: its scheduler state, what expired, what was rewritten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::model::scheduler::ProxyReport>,
    /// Runs killed mid-sweep before this one, and what each removed (their sweep journal).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub killed_runs: Vec<crate::gc::killed::KilledRun>,
}

pub struct Context {
    pub root: PathBuf,
    pub dry_run: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_seconds: f64,
    pub options: Options,
}

/// Keeps the items of `plan` whose folders (by path under `v2`) `keep` takes.
fn retain_by_path(plan: &mut Plan, v2: &std::path::Path, keep: impl Fn(&std::path::Path) -> bool) {
    let p = crate::model::paths::Paths::new(v2.to_path_buf());
    let keep = |path: PathBuf| keep(&path);
    plan.tags.retain(|t| keep(p.tag_dir(&t.repository, &t.tag)));
    plan.tag_index.retain(|l| {
        l.tag
            .as_ref()
            .is_none_or(|t| keep(p.tag_index_dir(&l.repository, t, &l.digest)))
    });
    plan.manifests
        .retain(|m| keep(p.revision_dir(&m.repository, &m.digest)));
    plan.layer_links
        .retain(|l| keep(p.layer_dir(l.repository, l.digest)));
    plan.blobs.retain(|b| keep(p.blob_dir(&b.blob.digest)));
    plan.uploads
        .retain(|u| keep(p.upload_dir(&u.repository, &u.id)));
}

/// The plan less the items whose folders (by path) the sweep kept, failed to remove, or never
/// reached: what went.
pub fn what_went(mut plan: Plan, v2: &std::path::Path, o: &Outcome) -> Plan {
    let kept: std::collections::HashSet<&std::path::Path> = (o.kept.iter())
        .chain(&o.failures)
        .map(|k| k.path.as_path())
        .chain(o.not_reached.iter().map(PathBuf::as_path))
        .collect();
    retain_by_path(&mut plan, v2, |path| !kept.contains(path));
    plan
}

/// What of `plan` the sweep sent for deletion and could not confirm gone (a bucket's delete
/// whose answer was lost): the registry's cache must forget it too (forgetting what is still
/// there costs it one look at storage).
pub fn what_may_have_gone(plan: &Plan, v2: &std::path::Path, o: &Outcome) -> crate::live::Swept {
    if o.unconfirmed.is_empty() {
        return crate::live::Swept::default();
    }
    let unsure: std::collections::HashSet<&std::path::Path> =
        o.unconfirmed.iter().map(PathBuf::as_path).collect();
    let mut p = plan.clone();
    retain_by_path(&mut p, v2, |path| unsure.contains(path));
    crate::live::Swept::new(&p.blobs, &p.layer_links, &p.manifests)
}

impl GcReport {
    pub fn new(ctx: Context, layout: &Layout, plan: Plan, outcome: Option<&Outcome>) -> GcReport {
        // What the sweep kept at the last moment, failed to remove or never reached (it was
        // stopped) was not deleted: the lists say what went.
        let plan = match outcome {
            Some(o) if !o.all_went() => what_went(plan, &layout.v2, o),
            _ => plan,
        };
        let mut errors: Vec<ErrorEntry> = plan
            .findings
            .iter()
            .map(|f| ErrorEntry {
                path: f.path.clone(),
                message: f.message.clone(),
                severity: f.severity,
                kind: f.kind,
            })
            .collect();
        let failures = outcome.map(|o| o.failures.len()).unwrap_or(0);
        errors.extend(
            outcome
                .into_iter()
                .flat_map(|o| &o.failures)
                .map(|f| ErrorEntry {
                    path: f.path.clone(),
                    message: f.message.clone(),
                    severity: Severity::Error,
                    kind: crate::model::FindingKind::SweepFailed,
                }),
        );
        let rules_freed = crate::gc::by_rule::freed_by_rule(layout, &plan);
        let summary = Summary {
            repositories: layout.repos.len(),
            tags: layout.repos.iter().map(|r| r.tags.len()).sum(),
            manifests: layout.repos.iter().map(|r| r.revisions.len()).sum(),
            blobs: layout.blobs.len(),
            bytes: layout.total_bytes(),
            tags_deleted: plan.tags.len(),
            manifests_deleted: plan.manifests.len(),
            blobs_deleted: plan.blobs.len(),
            bytes_freed: plan.bytes_freed(),
            layer_links_deleted: plan.layer_links.len(),
            uploads_deleted: plan.uploads.len(),
            kept_by_grace: plan.kept_by_grace,
            errors: errors.len(),
            tag_index_entries_deleted: plan.tag_index.len(),
            upload_bytes_freed: plan.upload_bytes(),
            empty_folders_removed: plan.empty_dirs.len(),
            sweep_failures: failures,
            kept_at_sweep: outcome.map_or(0, |o| o.kept.len()),
            items_removed: outcome.map_or(0, |o| o.removed),
            requests: None,
            repositories_in_scope: None,
            would_delete: None,
        };
        GcReport {
            envelope: Envelope::new(GC_SCHEMA, ctx.started_at),
            dry_run: ctx.dry_run,
            duration_seconds: (ctx.duration_seconds * 1000.0).round() / 1000.0,
            summary,
            plan: PlanFile {
                root: ctx.root,
                options: ctx.options,
                tags_deleted: plan.tags,
                manifests_deleted: plan.manifests,
                blobs_deleted: plan.blobs,
                uploads_deleted: plan.uploads,
                layer_links_deleted: plan.layer_links,
                tag_index_entries_deleted: plan.tag_index,
                empty_folders_removed: plan.empty_dirs,
            },
            withheld: plan.withheld,
            errors,
            interrupted: outcome.is_some_and(|o| o.interrupted),
            kept_at_sweep: outcome.map(|o| o.kept.clone()).unwrap_or_default(),
            output_errors: Vec::new(),
            refused: plan.refused,
            refused_by_safety_net: false,
            explain: None,
            used: plan.used,
            trash: None,
            delete_untagged_would_free: None,
            exit_code: crate::error::ExitCode::Ok,
            registry: None,
            reference_marking: None,
            settings_from_env: Vec::new(),
            space: plan.space,
            rules_freed,
            refused_tags: Vec::new(),
            proxy: None,
            killed_runs: Vec::new(),
        }
    }

    /// The run was refused by the policy's safety net: nothing was deleted, so every count of
    /// what was deleted is 0, and what the plan held moves to `summary.would_delete`. The plan's
    /// lists are emptied, a dry run's too: a refused plan is nothing `apply` may carry out (it
    /// would bypass the safety net without `--force`). The tags it would have taken stay
    /// visible in `refused_tags`.
    pub fn mark_refused(&mut self) {
        self.refused_by_safety_net = true;
        let planned = self.planned();
        let p = &mut self.plan;
        self.refused_tags = std::mem::take(&mut p.tags_deleted);
        p.tag_index_entries_deleted.clear();
        p.manifests_deleted.clear();
        p.layer_links_deleted.clear();
        p.blobs_deleted.clear();
        p.uploads_deleted.clear();
        p.empty_folders_removed.clear();
        self.rules_freed.clear();
        let s = &mut self.summary;
        s.would_delete = Some(planned);
        s.tags_deleted = 0;
        s.manifests_deleted = 0;
        s.layer_links_deleted = 0;
        s.blobs_deleted = 0;
        s.bytes_freed = 0;
        s.uploads_deleted = 0;
        s.upload_bytes_freed = 0;
        s.tag_index_entries_deleted = 0;
        s.empty_folders_removed = 0;
    }

    /// What the plan holds, carried out or not.
    pub fn planned(&self) -> WouldDelete {
        let s = &self.summary;
        s.would_delete.unwrap_or(WouldDelete {
            tags: s.tags_deleted,
            manifests: s.manifests_deleted,
            layer_links: s.layer_links_deleted,
            blobs: s.blobs_deleted,
            bytes: s.bytes_freed,
            uploads: s.uploads_deleted,
            upload_bytes: s.upload_bytes_freed,
        })
    }

    /// The plan's checksum, as the JSON report carries it.
    pub fn checksum(&self) -> String {
        self.plan.checksum()
    }

    /// The JSON report, with the checksum that lets `apply` refuse an edited plan last. Written
    /// straight from the report (a JSON value of it first would take ten times its text).
    pub fn to_json(&self) -> String {
        pretty(&self.with_checksum())
    }

    /// [`Self::to_json`] written to `w` as it is made (a plan's lists would be its bulk).
    pub fn write_json_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(w);
        serde_json::to_writer_pretty(&mut w, &self.with_checksum())?;
        std::io::Write::write_all(&mut w, b"\n")?;
        std::io::Write::flush(&mut w)
    }

    fn with_checksum(&self) -> WithChecksum<'_> {
        WithChecksum {
            report: self,
            checksum: self.checksum(),
        }
    }
}

impl GcReport {
    /// The lines `registry garbage-collect` prints about what it would delete, for scripts
    /// that grep them: its count line, then one line per blob.
    pub fn reference_lines(&self) -> String {
        let s = &self.summary;
        let (mut o, marked) = match &self.reference_marking {
            Some((lines, marked)) => (lines.clone(), *marked),
            None => (String::new(), s.blobs.saturating_sub(s.blobs_deleted)),
        };
        for m in &self.plan.manifests_deleted {
            let _ = writeln!(o, "manifest eligible for deletion: {}", m.digest);
        }
        let _ = write!(
            o,
            "\n{marked} blobs marked, {} blobs and {} manifests eligible for deletion\n",
            s.blobs_deleted, s.manifests_deleted
        );
        for b in self.plan.blobs_deleted.iter() {
            let _ = writeln!(o, "blob eligible for deletion: {}", b.digest());
        }
        o
    }
}

/// The reference's marking lines for what the run keeps, in its order: each repository's name,
/// then for each kept revision (by digest) `<repo>: marking manifest <digest> ` and a
/// `<repo>: marking blob <digest>` line per reference (config, layers, index children); and,
/// as the reference counts "blobs marked", how many distinct digests those lines name.
pub fn reference_marking(layout: &Layout, deleted: &[ManifestRemoval]) -> (String, usize) {
    let gone: std::collections::HashSet<(&str, Digest)> = deleted
        .iter()
        .map(|m| (m.repository.as_ref(), m.digest))
        .collect();
    let mut repos: Vec<&crate::model::Repo> = layout.repos.iter().collect();
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    let mut o = String::new();
    let mut marked = std::collections::HashSet::new();
    for repo in repos {
        let _ = writeln!(o, "{}", repo.name);
        let mut revisions: Vec<Digest> = repo.revisions.iter().map(|l| l.digest).collect();
        revisions.sort();
        for d in revisions {
            if gone.contains(&(repo.name.as_ref(), d)) {
                continue;
            }
            let _ = writeln!(o, "{}: marking manifest {d} ", repo.name);
            marked.insert(d);
            if let Some(Ok(m)) = layout.manifest(&d) {
                for r in m.blobs().chain(m.children()) {
                    let _ = writeln!(o, "{}: marking blob {r}", repo.name);
                    marked.insert(r);
                }
            }
        }
    }
    (o, marked.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::plan::{BlobRemoval, LinkRemoval};
    use crate::testutil::dg;

    #[test]
    fn the_streamed_json_report_is_the_report_and_carries_its_checksum() {
        let plan = Plan {
            blobs: [1u8, 2]
                .map(|n| BlobRemoval {
                    digest: dg(n),
                    size: 10,
                    linked_from: crate::model::Names::One("a".into()),
                    mtime: 5,
                })
                .into_iter()
                .collect(),
            layer_links: [LinkRemoval {
                repository: "a".into(),
                tag: None,
                digest: dg(1),
            }]
            .into_iter()
            .collect(),
            ..Plan::default()
        };
        let ctx = Context {
            root: "/r".into(),
            dry_run: true,
            started_at: chrono::Utc::now(),
            duration_seconds: 1.0,
            options: Default::default(),
        };
        let report = GcReport::new(ctx, &Layout::default(), plan, None);
        let mut streamed = Vec::new();
        report.write_json_to(&mut streamed).unwrap();
        assert_eq!(String::from_utf8(streamed).unwrap(), report.to_json());
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(v["checksum"], report.checksum());
        assert_eq!(v["blobs_deleted"][1]["digest"], dg(2).to_string());
        assert_eq!(v["layer_links_deleted"][0]["repository"], "a");
        assert_eq!(
            crate::gc::planfile::plan_checksum(&v),
            Some(report.checksum())
        );
    }
}
