//! The gc report: a JSON document for machines and a text summary for people.

pub mod metrics;

use crate::gc::outcome::Outcome;
use crate::gc::plan::{BlobRemoval, LinkRemoval, ManifestRemoval, Plan, TagRemoval, UploadRemoval};
use crate::model::digest::Digest;
use crate::model::duration::Span;
use crate::model::{Layout, Severity};
use crate::policy::TagExplain;
use crate::storage::seam::Requests;
use crate::units::plural;
pub use crate::units::{human_age, human_bytes};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

pub const GC_SCHEMA: &str = "regsweep/gc-report/v2";
pub const POLICY_SCHEMA: &str = "regsweep/policy-check/v2";
pub const TRASH_LIST_SCHEMA: &str = "regsweep/trash-list/v1";
/// gc reports `apply` reads as plans: this one, and v1 (the same plan fields).
pub const GC_SCHEMAS: [&str; 2] = [GC_SCHEMA, "regsweep/gc-report/v1"];

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

/// The options a run planned with; a plan carries them to `apply`, which reads them back.
#[derive(Debug, Serialize, Deserialize)]
pub struct Options {
    pub delete_untagged: bool,
    /// With `delete_untagged`: only untagged manifests pushed more than this long ago went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_untagged_older_than: Option<Span>,
    pub grace: Span,
    pub allow_damage: bool,
    pub purge_uploads: Option<Span>,
    /// `--repository` patterns the run was limited to; empty: every repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ErrorEntry {
    pub path: PathBuf,
    pub message: String,
    /// `blocking` (hides references), `damage`, `notice` (foreign or leftover, harmless),
    /// or `error` (a removal that failed).
    pub severity: Severity,
    /// What it is about: a finding's kind (docs/REPORTS.md), or `sweep_failed`.
    pub kind: String,
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
    pub kept_at_sweep: Vec<crate::gc::outcome::Failure>,
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
    /// With --trash: the trash run the items moved into (nothing is freed until it is emptied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trash: Option<PathBuf>,
    /// With a policy but without --delete-untagged: the blob bytes that -m would also free
    /// (the manifests the policy left untagged, and what only they need).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_untagged_would_free: Option<u64>,
    /// How many items of each list the text shows (`--limit`); `None` shows all (`--all`).
    /// JSON always holds everything.
    #[serde(skip)]
    pub text_limit: Option<usize>,
    /// What the run did about the live registry's blob-descriptor cache (after a sweep).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<crate::live::LiveReport>,
    /// The drop-in's marking lines, as the reference prints them, and how many digests they
    /// mark (`reference_marking`).
    #[serde(skip)]
    pub reference_marking: Option<(String, usize)>,
}

pub struct Context {
    pub root: PathBuf,
    pub dry_run: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_seconds: f64,
    pub options: Options,
}

/// The live registry's lines of the text summary: its cache, what was evicted, what the
/// registry was asked; with `findings`, each of the run's findings about it in full too (gc
/// lists them with its other problems instead).
pub fn registry_lines(
    o: &mut String,
    live: Option<&crate::live::LiveReport>,
    errors: &[ErrorEntry],
    findings: bool,
) {
    if let Some(r) = live {
        let state = match r.cache {
            "redis" => format!(
                "redis: {} evicted",
                plural(r.evicted as usize, "entry", "entries")
            ),
            "inmemory" if r.restart_needed => {
                "in memory: RESTART the registry before the next push".into()
            }
            "inmemory" => "in memory: nothing swept, nothing to forget".into(),
            "off" => "off (storage.cache has no blobdescriptor): nothing to forget".into(),
            _ => "unknown (give --config to read it)".into(),
        };
        let _ = writeln!(o, "  registry cache {state}");
        if let Some(p) = &r.probe {
            let _ = writeln!(
                o,
                "  registry asked {} of {} swept items: {} still claimed",
                p.asked,
                p.of,
                p.claimed.len()
            );
        }
    }
    for e in (errors.iter()).filter(|e| findings && e.kind.starts_with("registry_")) {
        let _ = writeln!(o, "  registry       {} [{}]", e.message, e.kind);
    }
}

/// The plan less the items whose folders (by path) the sweep kept.
pub fn without_kept(
    mut plan: Plan,
    v2: &std::path::Path,
    kept: &[crate::gc::outcome::Failure],
) -> Plan {
    let kept: std::collections::HashSet<&std::path::Path> =
        kept.iter().map(|k| k.path.as_path()).collect();
    let p = crate::model::paths::Paths::new(v2.to_path_buf());
    let gone = |path: PathBuf| !kept.contains(path.as_path());
    plan.tags.retain(|t| gone(p.tag_dir(&t.repository, &t.tag)));
    plan.tag_index.retain(|l| {
        l.tag
            .as_ref()
            .is_none_or(|t| gone(p.tag_index_dir(&l.repository, t, &l.digest)))
    });
    plan.manifests
        .retain(|m| gone(p.revision_dir(&m.repository, &m.digest)));
    plan.layer_links
        .retain(|l| gone(p.layer_dir(&l.repository, &l.digest)));
    plan.blobs.retain(|b| gone(p.blob_dir(&b.digest)));
    plan.uploads
        .retain(|u| gone(p.upload_dir(&u.repository, &u.id)));
    plan
}

impl GcReport {
    pub fn new(ctx: Context, layout: &Layout, plan: Plan, outcome: Option<&Outcome>) -> GcReport {
        // What the sweep kept at the last moment was not deleted: the lists say what went.
        let plan = match outcome {
            Some(o) if !o.kept.is_empty() => without_kept(plan, &layout.v2, &o.kept),
            _ => plan,
        };
        let mut errors: Vec<ErrorEntry> = plan
            .findings
            .iter()
            .map(|f| ErrorEntry {
                path: f.path.clone(),
                message: f.message.clone(),
                severity: f.severity,
                kind: f.kind.word(),
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
                    kind: "sweep_failed".into(),
                }),
        );
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
            },
            withheld: plan.withheld,
            errors,
            interrupted: outcome.is_some_and(|o| o.interrupted),
            kept_at_sweep: outcome.map(|o| o.kept.clone()).unwrap_or_default(),
            output_errors: Vec::new(),
            refused: plan.refused,
            refused_by_safety_net: false,
            explain: None,
            trash: None,
            delete_untagged_would_free: None,
            text_limit: None,
            registry: None,
            reference_marking: None,
        }
    }

    /// The run was refused by the policy's safety net: nothing was deleted, so every count of
    /// what was deleted is 0, and what the plan held moves to `summary.would_delete`.
    pub fn mark_refused(&mut self) {
        self.refused_by_safety_net = true;
        let s = &mut self.summary;
        s.would_delete = Some(WouldDelete {
            tags: s.tags_deleted,
            manifests: s.manifests_deleted,
            layer_links: s.layer_links_deleted,
            blobs: s.blobs_deleted,
            bytes: s.bytes_freed,
            uploads: s.uploads_deleted,
            upload_bytes: s.upload_bytes_freed,
        });
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

    /// The JSON report, with the checksum that lets `apply` refuse an edited plan.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        let sum = self.checksum();
        if let Some(o) = v.as_object_mut() {
            o.insert("checksum".into(), sum.into());
        }
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    pub fn to_text(&self) -> String {
        let s = &self.summary;
        let limit = self.text_limit.unwrap_or(usize::MAX);
        let refused = self.refused_by_safety_net && !self.dry_run;
        let verb = if self.dry_run || refused {
            "would delete"
        } else if self.trash.is_some() {
            "moved"
        } else {
            "deleted"
        };
        let heading = if self.dry_run || refused {
            "to delete"
        } else if self.trash.is_some() {
            "moved to the trash"
        } else {
            "deleted"
        };
        let mut o = String::new();
        let _ = writeln!(
            o,
            "regsweep gc{} on {}",
            if self.dry_run {
                " (dry run: nothing deleted)"
            } else if refused {
                " (refused by the policy's safety net: nothing deleted)"
            } else {
                ""
            },
            self.plan.root.display()
        );
        let _ = writeln!(
            o,
            "  scanned        {}, {}, {}, {} ({})",
            plural(s.repositories, "repository", "repositories"),
            plural(s.tags, "tag", "tags"),
            plural(s.manifests, "manifest", "manifests"),
            plural(s.blobs, "blob", "blobs"),
            human_bytes(s.bytes)
        );
        if let Some(r) = &s.requests {
            let _ = writeln!(o, "  requests       {}", requests_line(r));
        }
        if !self.plan.options.repositories.is_empty() {
            let _ = writeln!(
                o,
                "  scope          {} of {} (matching {}); the others untouched, and every blob they link or reach kept",
                s.repositories_in_scope.unwrap_or(0),
                plural(s.repositories, "repository", "repositories"),
                self.plan.options.repositories.join(", ")
            );
        }
        let p = self.planned();
        let _ = writeln!(
            o,
            "  {verb:<14} {}, {}, {}, {} ({}), {} ({})",
            plural(p.tags, "tag", "tags"),
            plural(p.manifests, "manifest", "manifests"),
            plural(p.layer_links, "layer link", "layer links"),
            plural(p.blobs, "blob", "blobs"),
            human_bytes(p.bytes),
            plural(p.uploads, "upload", "uploads"),
            human_bytes(p.upload_bytes)
        );
        if let Some(t) = &self.trash {
            let _ = writeln!(
                o,
                "  trash          moved to {} (nothing freed until `regsweep trash empty`)",
                t.display()
            );
        }
        if let Some(age) = &self.plan.options.delete_untagged_older_than {
            let _ = writeln!(
                o,
                "  untagged       an untagged manifest goes only if pushed more than {age} ago; younger ones stay"
            );
        }
        if let Some(more) = self.delete_untagged_would_free.filter(|b| *b > 0) {
            let _ = writeln!(
                o,
                "  untagged       the policy leaves manifests untagged; -m (--delete-untagged) would also free {}",
                human_bytes(more)
            );
        }
        if self.plan.options.grace.is_zero() {
            let _ = writeln!(o, "  kept by grace  none (grace period off)");
        } else {
            let _ = writeln!(
                o,
                "  kept by grace  {} (modified within {})",
                s.kept_by_grace, self.plan.options.grace
            );
        }
        let damage = self
            .errors
            .iter()
            .filter(|e| e.severity.is_damage())
            .count();
        let _ = writeln!(
            o,
            "  damage         {}",
            if damage == 0 {
                "none found".to_string()
            } else {
                format!(
                    "{} (listed below)",
                    crate::units::plural(damage, "finding", "findings")
                )
            }
        );
        let notices = self
            .errors
            .iter()
            .filter(|e| e.severity == Severity::Notice && !e.kind.starts_with("registry_"))
            .count();
        if notices > 0 {
            let _ = writeln!(
                o,
                "  notices        {notices} foreign or leftover entries, left alone (listed below)"
            );
        }
        if s.sweep_failures > 0 {
            let _ = writeln!(
                o,
                "  failed         {} removals (listed below)",
                s.sweep_failures
            );
        }
        if s.kept_at_sweep > 0 {
            let _ = writeln!(
                o,
                "  kept at sweep  {} planned items changed or were named again during the run (listed below)",
                s.kept_at_sweep
            );
        }
        if self.interrupted {
            let _ = writeln!(
                o,
                "  interrupted    the sweep stopped early; run gc again to finish"
            );
        }
        registry_lines(&mut o, self.registry.as_ref(), &self.errors, false);
        for e in &self.output_errors {
            let _ = writeln!(o, "  not written    {e}");
        }
        let _ = writeln!(o, "  took           {:.2}s", self.duration_seconds);
        for w in &self.withheld {
            let _ = writeln!(o, "  withheld       {w}");
        }
        for r in &self.refused {
            let _ = writeln!(o, "  refused        {r}");
        }
        if self.refused_by_safety_net {
            let _ = writeln!(
                o,
                "  the policy's safety net refused this run: nothing was deleted (--force applies it anyway)"
            );
        }
        by_repository(&mut o, &self.plan, heading, limit);
        if !self.kept_at_sweep.is_empty() {
            let _ = writeln!(o, "\nkept at sweep:");
            for k in self.kept_at_sweep.iter().take(limit) {
                let _ = writeln!(o, "  {}  {}", k.path.display(), k.message);
            }
            more(&mut o, self.kept_at_sweep.len(), limit);
        }
        if !self.plan.tags_deleted.is_empty() {
            let _ = writeln!(o, "\ntags {heading}:");
            for t in self.plan.tags_deleted.iter().take(limit) {
                let d = t
                    .digest
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into());
                let age = t.age_seconds.map(human_age).unwrap_or_else(|| "?".into());
                let _ = writeln!(
                    o,
                    "  {}:{}  {d}  age {age}  rule {:?}",
                    t.repository, t.tag, t.rule
                );
            }
            more(&mut o, self.plan.tags_deleted.len(), limit);
        }
        if !self.plan.manifests_deleted.is_empty() {
            let _ = writeln!(o, "\nmanifests {heading}:");
            for m in self.plan.manifests_deleted.iter().take(limit) {
                let _ = writeln!(o, "  {}@{}  ({})", m.repository, m.digest, m.reason);
            }
            more(&mut o, self.plan.manifests_deleted.len(), limit);
        }
        if !self.plan.layer_links_deleted.is_empty() {
            let _ = writeln!(o, "\nlayer links {heading}:");
            for l in self.plan.layer_links_deleted.iter().take(limit) {
                let _ = writeln!(o, "  {}  {}", l.repository, l.digest);
            }
            more(&mut o, self.plan.layer_links_deleted.len(), limit);
        }
        if !self.plan.tag_index_entries_deleted.is_empty() {
            let _ = writeln!(o, "\ntag index entries (tag history) {heading}:");
            for l in self.plan.tag_index_entries_deleted.iter().take(limit) {
                let _ = writeln!(
                    o,
                    "  {}:{}  {}",
                    l.repository,
                    l.tag.as_deref().unwrap_or("?"),
                    l.digest
                );
            }
            more(&mut o, self.plan.tag_index_entries_deleted.len(), limit);
        }
        if !self.plan.blobs_deleted.is_empty() {
            let _ = writeln!(o, "\nblobs {heading}:");
            for b in self.plan.blobs_deleted.iter().take(limit) {
                let _ = writeln!(
                    o,
                    "  {}  {:>10}  {}",
                    b.digest,
                    human_bytes(b.size),
                    if b.linked_from.is_empty() {
                        "linked from no repository".to_string()
                    } else {
                        b.linked_from.join(", ")
                    }
                );
            }
            more(&mut o, self.plan.blobs_deleted.len(), limit);
        }
        if !self.plan.uploads_deleted.is_empty() {
            let _ = writeln!(o, "\nuploads {heading}:");
            for u in self.plan.uploads_deleted.iter().take(limit) {
                let _ = writeln!(
                    o,
                    "  {}  {}  {:>10}",
                    u.repository,
                    u.id,
                    human_bytes(u.size)
                );
            }
            more(&mut o, self.plan.uploads_deleted.len(), limit);
        }
        if let Some(explain) = &self.explain {
            let _ = writeln!(o, "\npolicy decisions:");
            o.push_str(&explain_text(explain));
        }
        if !self.errors.is_empty() {
            let _ = writeln!(o, "\nproblems:");
            for e in self.errors.iter().take(limit) {
                let _ = writeln!(
                    o,
                    "  {}: {} [{} {}]",
                    e.path.display(),
                    e.message,
                    e.severity,
                    e.kind
                );
            }
            more(&mut o, self.errors.len(), limit);
        }
        o
    }
}

/// The part of a gc report that is a plan: where, with which options, and every item. Written
/// inside the report and read back whole by `apply`: one type both ways, its checksum taken over
/// it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlanFile {
    pub root: PathBuf,
    pub options: Options,
    pub tags_deleted: Vec<TagRemoval>,
    pub tag_index_entries_deleted: Vec<LinkRemoval>,
    pub manifests_deleted: Vec<ManifestRemoval>,
    pub layer_links_deleted: Vec<LinkRemoval>,
    pub blobs_deleted: Vec<BlobRemoval>,
    pub uploads_deleted: Vec<UploadRemoval>,
}

impl PlanFile {
    /// `sha256:<hex>` of the plan serialized with sorted keys.
    pub fn checksum(&self) -> String {
        use sha2::Digest as _;
        let text = serde_json::to_value(self).unwrap_or_default().to_string();
        crate::Digest(sha2::Sha256::digest(text.as_bytes()).into()).to_string()
    }
}

/// The checksum of the plan a JSON report holds; `None` when it holds none. (What anyone who
/// edits a plan can recompute: the tests forge plans with it, as `apply --checksum` expects.)
pub fn plan_checksum(report: &serde_json::Value) -> Option<String> {
    serde_json::from_value::<PlanFile>(report.clone())
        .ok()
        .map(|p| p.checksum())
}

/// One line a tag, grouped by repository, with every reason.
pub fn explain_text(explain: &[TagExplain]) -> String {
    let mut o = String::new();
    let mut repo = None;
    for e in explain {
        if repo != Some(&e.repository) {
            let _ = writeln!(o, "  {}", e.repository);
            repo = Some(&e.repository);
        }
        let verdict = if e.delete { "DELETE" } else { "keep" };
        let age = e.age_seconds.map(human_age).unwrap_or_else(|| "?".into());
        let _ = writeln!(
            o,
            "    {:<7} {:<24} age {:>5}  {}",
            verdict,
            e.tag,
            age,
            e.reasons.join("; ")
        );
    }
    o
}

/// Per-repository counts of what a policy would do.
#[derive(Debug, Serialize)]
pub struct RepoPreview {
    pub repository: String,
    pub tags: usize,
    /// Tags at least one rule matched.
    pub in_scope: usize,
    pub delete: usize,
    pub keep: usize,
}

/// `policy check --root`: what a policy would do to a registry, repository by repository.
#[derive(Debug, Serialize)]
pub struct PolicyPreview {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(flatten)]
    pub policy: PolicyFacts,
    pub root: PathBuf,
    pub summary: PolicySummary,
    pub repositories: Vec<RepoPreview>,
    pub refused: Vec<String>,
    pub explain: Vec<TagExplain>,
}

#[derive(Debug, Serialize)]
pub struct PolicySummary {
    /// Rules in the file.
    pub rules: usize,
    /// With a root: tags the policy would delete there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags_deleted: Option<usize>,
    /// With a root: reasons its safety net refuses it there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<usize>,
}

/// `trash list --format json`: the runs a trash folder holds.
#[derive(Debug, Serialize)]
pub struct TrashListReport {
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The trash folder.
    pub root: PathBuf,
    pub summary: TrashSummary,
    pub runs: Vec<crate::stages::trash::RunSummary>,
}

#[derive(Debug, Serialize)]
pub struct TrashSummary {
    pub runs: usize,
    pub items: usize,
    /// What emptying the whole trash would free.
    pub bytes: u64,
}

impl TrashListReport {
    pub fn new(
        dir: &std::path::Path,
        started: chrono::DateTime<chrono::Utc>,
        runs: Vec<crate::stages::trash::RunSummary>,
    ) -> TrashListReport {
        TrashListReport {
            envelope: Envelope::new(TRASH_LIST_SCHEMA, started),
            root: dir.to_path_buf(),
            summary: TrashSummary {
                runs: runs.len(),
                items: runs.iter().map(|r| r.items).sum(),
                bytes: runs.iter().map(|r| r.bytes).sum(),
            },
            runs,
        }
    }
}

/// What both forms of `policy check` say of the file itself.
#[derive(Debug, Serialize)]
pub struct PolicyFacts {
    pub file: PathBuf,
    /// The file parsed and passed every check (an invalid one is an error, exit 2).
    pub valid: bool,
    /// The rules' names, in order.
    pub rules: Vec<String>,
    pub age_from: &'static str,
    pub untagged_older_than: Option<Span>,
}

impl PolicyFacts {
    pub fn of(file: &std::path::Path, policy: &crate::policy::Policy) -> PolicyFacts {
        PolicyFacts {
            file: file.to_path_buf(),
            valid: true,
            rules: policy.rules.iter().map(|r| r.name.clone()).collect(),
            age_from: policy.age_from.word(),
            untagged_older_than: policy.untagged_older_than,
        }
    }
}

/// `policy check FILE` without a root: the file is valid, and what it holds.
#[derive(Debug, Serialize)]
pub struct PolicyFileReport {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(flatten)]
    pub policy: PolicyFacts,
    /// No registry was looked at.
    pub root: Option<PathBuf>,
    pub summary: PolicySummary,
}

impl PolicyFileReport {
    pub fn new(
        file: &std::path::Path,
        policy: &crate::policy::Policy,
        started: chrono::DateTime<chrono::Utc>,
    ) -> PolicyFileReport {
        PolicyFileReport {
            envelope: Envelope::new(POLICY_SCHEMA, started),
            policy: PolicyFacts::of(file, policy),
            root: None,
            summary: PolicySummary {
                rules: policy.rules.len(),
                tags_deleted: None,
                refused: None,
            },
        }
    }
}

impl PolicyPreview {
    /// The preview of a policy on the layout `v2`, from its plan and every tag's explanation.
    pub fn new(
        file: &std::path::Path,
        policy: &crate::policy::Policy,
        started: chrono::DateTime<chrono::Utc>,
        v2: &std::path::Path,
        plan: &Plan,
        explain: &[TagExplain],
    ) -> PolicyPreview {
        let mut repositories: Vec<RepoPreview> = Vec::new();
        for e in explain {
            if repositories
                .last()
                .is_none_or(|r| r.repository != e.repository)
            {
                repositories.push(RepoPreview {
                    repository: e.repository.clone(),
                    tags: 0,
                    in_scope: 0,
                    delete: 0,
                    keep: 0,
                });
            }
            let Some(r) = repositories.last_mut() else {
                continue;
            };
            r.tags += 1;
            r.in_scope += usize::from(!e.rules.is_empty());
            if e.delete {
                r.delete += 1;
            } else {
                r.keep += 1;
            }
        }
        PolicyPreview {
            envelope: Envelope::new(POLICY_SCHEMA, started),
            policy: PolicyFacts::of(file, policy),
            root: v2.to_path_buf(),
            summary: PolicySummary {
                rules: policy.rules.len(),
                tags_deleted: Some(repositories.iter().map(|r| r.delete).sum()),
                refused: Some(plan.refused.len()),
            },
            repositories,
            refused: plan.refused.clone(),
            explain: explain.to_vec(),
        }
    }

    pub fn to_text(&self, explain: bool) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{}: valid; preview on {}",
            self.policy.file.display(),
            self.root.display()
        );
        let width = self
            .repositories
            .iter()
            .map(|r| r.repository.len())
            .max()
            .unwrap_or(10)
            .max(10);
        let _ = writeln!(
            o,
            "  {:<width$}  {:>6}  {:>8}  {:>6}  {:>6}",
            "repository", "tags", "in scope", "delete", "keep"
        );
        for r in &self.repositories {
            let _ = writeln!(
                o,
                "  {:<width$}  {:>6}  {:>8}  {:>6}  {:>6}",
                r.repository, r.tags, r.in_scope, r.delete, r.keep
            );
        }
        let _ = writeln!(
            o,
            "  {} would be deleted",
            crate::units::plural(self.summary.tags_deleted.unwrap_or(0), "tag", "tags")
        );
        for r in &self.refused {
            let _ = writeln!(o, "  refused: {r}");
        }
        if !self.refused.is_empty() {
            let _ = writeln!(
                o,
                "  gc would refuse this policy here (--force applies it anyway)"
            );
        }
        if explain {
            o.push_str(&explain_text(&self.explain));
        }
        o
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
        for b in &self.plan.blobs_deleted {
            let _ = writeln!(o, "blob eligible for deletion: {}", b.digest);
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
        .map(|m| (m.repository.as_str(), m.digest))
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
            if gone.contains(&(repo.name.as_str(), d)) {
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

/// What each repository loses, largest first: the first table an operator reads, before the
/// lists. A blob linked from several repositories counts in each; one linked from none (a
/// dangling blob) counts under "(no repository)".
fn by_repository(o: &mut String, plan: &PlanFile, heading: &str, limit: usize) {
    #[derive(Default)]
    struct Loss {
        tags: usize,
        manifests: usize,
        links: usize,
        blobs: usize,
        bytes: u64,
        uploads: usize,
    }
    let mut rows: BTreeMap<&str, Loss> = BTreeMap::new();
    plan.tags_deleted
        .iter()
        .for_each(|t| rows.entry(&t.repository).or_default().tags += 1);
    (plan.manifests_deleted.iter())
        .for_each(|m| rows.entry(&m.repository).or_default().manifests += 1);
    (plan.layer_links_deleted.iter())
        .for_each(|l| rows.entry(&l.repository).or_default().links += 1);
    (plan.uploads_deleted.iter()).for_each(|u| rows.entry(&u.repository).or_default().uploads += 1);
    for b in &plan.blobs_deleted {
        let from: Vec<&str> = if b.linked_from.is_empty() {
            vec!["(no repository)"]
        } else {
            b.linked_from.iter().map(String::as_str).collect()
        };
        for r in from {
            let row = rows.entry(r).or_default();
            row.blobs += 1;
            row.bytes += b.size;
        }
    }
    if rows.is_empty() {
        return;
    }
    let mut rows: Vec<(&str, Loss)> = rows.into_iter().collect();
    rows.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0)));
    let width = (rows.iter().take(limit).map(|r| r.0.len()))
        .max()
        .unwrap_or(0)
        .max("REPOSITORY".len());
    let _ = writeln!(
        o,
        "\nby repository ({heading}; a blob linked from several repositories counts in each):"
    );
    let _ = writeln!(
        o,
        "  {:<width$}  {:>5}  {:>9}  {:>11}  {:>6}  {:>10}  {:>7}",
        "REPOSITORY", "TAGS", "MANIFESTS", "LAYER LINKS", "BLOBS", "BYTES", "UPLOADS"
    );
    for (name, l) in rows.iter().take(limit) {
        let _ = writeln!(
            o,
            "  {name:<width$}  {:>5}  {:>9}  {:>11}  {:>6}  {:>10}  {:>7}",
            l.tags,
            l.manifests,
            l.links,
            l.blobs,
            human_bytes(l.bytes),
            l.uploads
        );
    }
    more(o, rows.len(), limit);
}

/// The line that ends a list the text cut short.
pub(crate) fn more(o: &mut String, len: usize, limit: usize) {
    if len > limit {
        let _ = writeln!(
            o,
            "  ... and {} more (all of them: --all, or --report FILE --format json)",
            len - limit
        );
    }
}

/// `2,251 (LIST 263, GET 1,988, HEAD 0, PUT 0, COPY 0, DELETE 0)`: what a run cost an object store.
pub fn requests_line(r: &Requests) -> String {
    format!(
        "{} (LIST {}, GET {}, HEAD {}, PUT {}, COPY {}, DELETE {})",
        r.total(),
        r.list,
        r.get,
        r.head,
        r.put,
        r.copy,
        r.delete
    )
}
