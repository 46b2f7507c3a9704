//! The apply command: carries out a reviewed plan, after re-checking every item against the disk.
//!
//! Apply never does more than the plan. It scans again, keeps the plan's tag deletions only
//! where the tag still points at the planned digest, marks with the plan's options, and sweeps
//! the items that both the plan and this fresh look agree on; a blob also needs its size and
//! mtime unchanged. Everything else in the plan is skipped and reported with the reason.

use crate::config::Location;
use crate::config::{Format, GcConfig};
use crate::error::ExitCode;
use crate::error::{Error, Result};
use crate::gc::plan::{LinkRemoval, Plan};
use crate::model::digest::Digest;
use crate::model::{Name, Time};
use crate::pipeline::{self, Open, Session};
use crate::report::Report;
use crate::storage::location::OnStorage;
use crate::storage::seam::Storage;
use crate::units::plural;
use std::path::Path;

use crate::gc::outcome::ItemNote;
use crate::model::{Decision, Decisions, Layout};
use crate::progress::Progress;
use crate::report::{GC_SCHEMAS, PlanFile, human_bytes};
use crate::stages::sweep;
use crate::stages::trash;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct ApplyConfig {
    pub plan: PathBuf,
    /// Must be the plan's root when given (for a bucket: with its endpoint and keys).
    pub root: Option<Location>,
    pub trash: Option<PathBuf>,
    pub format: Format,
    pub break_lock: bool,
    pub progress: bool,
    /// The checksum a reviewer pinned (`sha256:<hex>` or the hex alone): any other plan is refused.
    pub checksum: Option<String>,
    /// The live registry's cache (from `--config`), `--registry-url`, `--risk-stale-cache`.
    pub live: crate::live::LiveOptions,
    /// `--memory-limit`: how much the run may hold (the bounded mode spills the rest).
    pub memory: crate::spill::Bound,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub kind: &'static str,
    pub item: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct ApplyReport {
    #[serde(flatten)]
    pub envelope: crate::report::Envelope,
    pub plan: PathBuf,
    pub root: PathBuf,
    pub summary: ApplySummary,
    pub skipped: Vec<Skipped>,
    pub failures: Vec<ItemNote>,
    pub interrupted: bool,
    /// With `--trash`: the run's folder in it, where what went was moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trash: Option<PathBuf>,
    /// What the run did about the live registry's blob-descriptor cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<crate::live::LiveReport>,
    /// Findings about the live registry (restart needed, claims, failures).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<crate::report::ErrorEntry>,
    /// Runs killed mid-sweep before this one, and what each removed (their sweep journal).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub killed_runs: Vec<crate::gc::killed::KilledRun>,
    /// On a pull-through cache's root: its scheduler state, and what was rewritten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::model::scheduler::ProxyReport>,
}

#[derive(Debug, Serialize)]
pub struct ApplySummary {
    /// Items the plan lists.
    pub planned: usize,
    /// Items removed (or moved to the trash).
    pub applied: usize,
    pub bytes_freed: u64,
    /// Items left because they changed since the plan, or were gone already.
    pub skipped: usize,
    /// Removals that failed.
    pub failures: usize,
    /// Requests made to an object store, by kind (absent on disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::storage::seam::Requests>,
}

fn bad(plan: &std::path::Path, message: impl Into<String>) -> Error {
    Error::Plan {
        path: plan.to_path_buf(),
        message: message.into(),
    }
}

/// What the plan says, read back from its JSON.
struct Planned {
    root: PathBuf,
    cfg: GcConfig,
    tags: Vec<(Name, String, Option<Digest>)>,
    tag_index: HashSet<(Name, String, Digest)>,
    manifests: HashSet<(Name, Digest)>,
    layer_links: HashSet<(Name, Digest)>,
    blobs: HashMap<Digest, (u64, Time)>,
    uploads: HashSet<(Name, String)>,
    empty_folders: HashSet<PathBuf>,
}

fn read_plan(path: &std::path::Path, pinned: Option<&str>) -> Result<Planned> {
    let text = crate::storage::dirfd::read_path(path, 1 << 30)
        .map_err(|e| bad(path, format!("plan {e}")))?;
    /// A gc report as a plan: its schema and checksum beside the plan itself.
    #[derive(serde::Deserialize)]
    struct Doc {
        schema: String,
        checksum: Option<String>,
        #[serde(default)]
        refused_by_safety_net: bool,
        #[serde(flatten)]
        plan: PlanFile,
    }
    let doc: Doc = serde_json::from_slice(&text).map_err(|e| {
        bad(
            path,
            format!("not a gc report in JSON (write plans with --format json): {e}"),
        )
    })?;
    if !GC_SCHEMAS.contains(&doc.schema.as_str()) {
        return Err(bad(
            path,
            format!("not a gc report (schema {:?})", doc.schema),
        ));
    }
    if doc.refused_by_safety_net {
        return Err(bad(
            path,
            "the policy's safety net refused the run that made this plan: there is nothing to apply (fix the policy, or plan again with --force)",
        ));
    }
    let sum = doc.plan.checksum();
    match doc.checksum.as_deref() {
        Some(written) if written == sum => {}
        Some(_) => {
            return Err(bad(
                path,
                "checksum does not match: the plan was edited or damaged; make a new one",
            ));
        }
        None => return Err(bad(path, "no checksum: write plans with --format json")),
    }
    // Anyone can recompute the checksum after editing a plan; a reviewer's pinned one cannot be.
    if let Some(pin) = pinned {
        let pin = pin.trim();
        let pin = pin
            .strip_prefix("sha256:")
            .unwrap_or(pin)
            .to_ascii_lowercase();
        if sum.strip_prefix("sha256:") != Some(pin.as_str()) {
            return Err(bad(
                path,
                format!(
                    "its checksum is {sum}, not the pinned sha256:{pin}: this is not the plan that was reviewed; refused"
                ),
            ));
        }
    }
    let plan = doc.plan;
    let o = &plan.options;
    let cfg = GcConfig {
        dry_run: false,
        options: o.clone(),
        scope: if o.repositories.is_empty() {
            None
        } else {
            Some(
                crate::policy::Matcher::compile(&o.repositories)
                    .map_err(|e| bad(path, format!("options.repositories: {e}")))?,
            )
        },
        ..GcConfig::planning(plan.root.clone())
    };
    let index_entry = |l: &LinkRemoval| {
        l.tag
            .clone()
            .map(|t| (l.repository.clone(), t, l.digest))
            .ok_or_else(|| bad(path, "tag_index_entries_deleted: an item lacks its tag"))
    };
    Ok(Planned {
        root: plan.root.clone(),
        cfg,
        tags: (plan.tags_deleted.iter())
            .map(|t| (t.repository.clone(), t.tag.clone(), t.digest))
            .collect(),
        tag_index: plan
            .tag_index_entries_deleted
            .iter()
            .map(index_entry)
            .collect::<Result<_>>()?,
        manifests: (plan.manifests_deleted.iter())
            .map(|m| (m.repository.clone(), m.digest))
            .collect(),
        layer_links: (plan.layer_links_deleted.iter())
            .map(|l| (l.repository.clone(), *l.digest))
            .collect(),
        blobs: (plan.blobs_deleted.iter())
            .map(|b| (b.digest(), (b.size(), b.mtime())))
            .collect(),
        uploads: (plan.uploads_deleted.iter())
            .map(|u| (u.repository.clone(), u.id.clone()))
            .collect(),
        empty_folders: plan.empty_folders_removed.iter().cloned().collect(),
    })
}

/// Applies a plan; the rendered report and the exit code.
pub fn run(
    cfg: &ApplyConfig,
    stop: &(dyn Fn() -> bool + Sync),
    progress: &dyn Progress,
) -> Result<ApplyReport> {
    let started = chrono::Utc::now();
    let planned = read_plan(&cfg.plan, cfg.checksum.as_deref())?;
    let plan_root = planned.root.to_string_lossy().into_owned();
    let mismatch = |given: &Path| {
        bad(
            &cfg.plan,
            format!("the plan is for {plan_root}, not {}", given.display()),
        )
    };
    // The plan names its root; --root/--config, when given, must name the same one (for a
    // bucket they bring the endpoint and keys to reach it).
    let in_plan = Location::parse(&plan_root, None)?.canonical()?;
    let location = match &cfg.root {
        None => in_plan,
        Some(given) => {
            let given_resolved = given.canonical()?;
            if given_resolved.display_path() != in_plan.display_path() {
                return Err(mismatch(&given.display_path()));
            }
            given_resolved
        }
    };
    let job = ApplyJob {
        cfg,
        planned: &planned,
        stop,
        started,
    };
    location.open(&job, progress)
}

/// apply on whichever storage the plan names.
struct ApplyJob<'a> {
    cfg: &'a ApplyConfig,
    planned: &'a Planned,
    stop: &'a (dyn Fn() -> bool + Sync),
    started: chrono::DateTime<chrono::Utc>,
}

impl OnStorage for ApplyJob<'_> {
    type Out = ApplyReport;
    fn run<S: Storage>(&self, store: S, progress: &dyn Progress) -> Result<Self::Out> {
        if self.cfg.trash.is_some() && !store.capabilities().rename {
            return Err(Error::Usage(format!(
                "{}: --trash is not supported on an object store",
                store.location().display()
            )));
        }
        run_in(
            store,
            self.cfg,
            self.planned,
            self.stop,
            self.started,
            progress,
        )
    }
}

/// `run`, on the plan's storage, opened.
fn run_in<S: Storage>(
    store: S,
    cfg: &ApplyConfig,
    planned: &Planned,
    stop: &(dyn Fn() -> bool + Sync),
    started: chrono::DateTime<chrono::Utc>,
    progress: &dyn Progress,
) -> Result<ApplyReport> {
    let root = store.location();
    let settle = |path: &Path, journal: &[u8]| super::live::settle(&cfg.live, path, journal);
    let how = Open {
        lock: Some(("apply", cfg.break_lock)),
        settle: Some(pipeline::Settle(&settle)),
        scan: crate::stages::scan::ScanOptions {
            memory: cfg.memory,
            in_flight_from: crate::model::Rules::young_from(
                planned.cfg.options.grace,
                started.timestamp(),
            ),
            ..Default::default()
        },
        ..Open::default()
    };
    let session = Session::open(store, how, None, progress)?;
    let layout = &session.layout;
    let now = chrono::Utc::now().timestamp();
    let mut skipped = Vec::new();

    let mut decisions = still_planned_tags(layout, planned, &mut skipped);
    if let Some(ev) = &planned.cfg.options.evidence {
        for (item, reason) in super::evidence::recheck(ev, layout, &mut decisions, now)? {
            skipped.push(Skipped {
                kind: "tag",
                item,
                reason,
            });
        }
    }
    let rules = planned.cfg.rules(now);
    let fresh = session.plan_decided(&decisions, &rules);
    let todo = agreed(planned, fresh, &mut skipped);
    let planned_count = planned.tags.len()
        + planned.tag_index.len()
        + planned.manifests.len()
        + planned.layer_links.len()
        + planned.blobs.len()
        + planned.uploads.len();
    let mut findings = Vec::new();
    findings.extend(session.settled.as_deref().map(super::live::settled_note));
    let redis = super::live::before_sweep(&cfg.live, !todo.is_empty(), &mut findings)?;
    let planned_swept = || crate::live::Swept::new(&todo.blobs, &todo.layer_links, &todo.manifests);
    let journaled = super::live::write_journal(&session.store, &cfg.live, "apply", planned_swept)?;
    let trash_run = match &cfg.trash {
        Some(dir) => Some(trash::create_run(dir, &layout.v2, "apply")?),
        None => None,
    };
    // A pull-through cache's TTL state loses the entries of what goes, as after gc.
    let proxy = super::proxy::read_for_apply(&session.store)?;
    let mut killed = super::killed::notes(&session);
    if !todo.is_empty() {
        session.begin_sweep("apply", &todo)?;
    }
    let outcome = session.sweep(
        &todo,
        progress,
        &sweep::SweepOptions {
            stop,
            trash: trash_run.as_deref(),
            since_ns: pipeline::since_ns(started),
            staged: &|| {},
        },
    );
    for k in &outcome.kept {
        skipped.push(Skipped {
            kind: "item",
            item: k.path.display().to_string(),
            reason: k.message.clone(),
        });
    }
    skipped.sort_by(|a, b| a.kind.cmp(b.kind).then(a.item.cmp(&b.item)));
    // What the sweep kept at the last moment was not freed: counted from what went, as gc does.
    let unsure = crate::report::what_may_have_gone(&todo, &layout.v2, &outcome);
    let went = crate::report::what_went(todo, &layout.v2, &outcome);
    let bytes_freed = went.bytes_freed();
    let swept = match cfg.live.wants_swept(redis.is_some()) || proxy.is_some() {
        true => crate::live::Swept::new(&went.blobs, &went.layer_links, &went.manifests),
        false => crate::live::Swept::default(),
    };
    let (mut registry, mut notes) = super::live::after(
        &cfg.live,
        redis,
        layout,
        (&swept, &unsure),
        outcome.removed > 0,
    );
    let proxy = proxy.map(|run| {
        let present = crate::live::Present::new(layout, &swept);
        super::proxy::write_back(&session.store, run, &present)
    });
    super::live::clear_journal(&session.store, journaled, &mut registry, &mut notes);
    findings.extend(notes);
    super::killed::end(&session, &mut killed);
    findings.extend(killed);
    let report = ApplyReport {
        envelope: crate::report::Envelope::new("regsweep/apply-report/v2", started),
        plan: cfg.plan.clone(),
        root,
        summary: ApplySummary {
            planned: planned_count,
            applied: outcome.removed as usize,
            bytes_freed,
            skipped: skipped.len(),
            failures: outcome.failures.len(),
            requests: session.store.requests(),
        },
        skipped,
        failures: outcome.failures,
        interrupted: outcome.interrupted,
        trash: trash_run,
        registry: Some(registry),
        findings,
        killed_runs: session.killed.clone(),
        proxy,
    };
    Ok(report)
}

impl Report for ApplyReport {
    fn text(&self, limit: Option<usize>) -> String {
        text(self, limit.unwrap_or(usize::MAX))
    }
    fn json(&self) -> String {
        crate::report::pretty(self)
    }
    /// 1 when a removal failed or the run stopped early; 4 when the live registry still claims
    /// what went; 1 when asking it failed.
    fn exit_code(&self) -> ExitCode {
        if !self.failures.is_empty() || self.interrupted {
            ExitCode::Error
        } else if self
            .findings
            .iter()
            .any(|f| f.kind == crate::model::FindingKind::RegistryClaimsSwept)
        {
            ExitCode::StaleRegistry
        } else if (self.findings.iter()).any(|f| f.severity == crate::model::Severity::Error) {
            ExitCode::Error
        } else {
            ExitCode::Ok
        }
    }
}

fn text(r: &ApplyReport, limit: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "regsweep apply {} on {}",
        r.plan.display(),
        r.root.display()
    );
    let _ = writeln!(o, "  planned   {} items", r.summary.planned);
    match &r.trash {
        // Nothing is freed by a move: say where it went and how it is freed.
        Some(t) => {
            let _ = writeln!(
                o,
                "  applied   {} moved to {} ({} of blobs; nothing freed until `regsweep trash empty`)",
                plural(r.summary.applied, "item", "items"),
                t.display(),
                human_bytes(r.summary.bytes_freed)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "  applied   {} deleted, {} of blobs freed",
                plural(r.summary.applied, "item", "items"),
                human_bytes(r.summary.bytes_freed)
            );
        }
    }
    let _ = writeln!(
        o,
        "  skipped   {} items that changed since the plan (kept)",
        r.skipped.len()
    );
    if r.interrupted {
        let _ = writeln!(
            o,
            "  interrupted: stopped early; apply the plan again to finish"
        );
    }
    if let Some(p) = &r.proxy {
        let _ = writeln!(
            o,
            "  proxy     {} in scheduler-state.json; {}",
            plural(p.entries, "entry", "entries"),
            match (&p.write_error, p.state_written) {
                (Some(e), _) => format!("NOT rewritten: {e}"),
                (None, true) => format!(
                    "{} removed (their objects went)",
                    plural(p.entries_removed, "entry", "entries")
                ),
                (None, false) => "none to remove".into(),
            }
        );
    }
    for k in (r.findings.iter()).filter(|f| f.kind == crate::model::FindingKind::SweepKilled) {
        let _ = writeln!(o, "  killed before: {}", k.message);
    }
    for s in r.skipped.iter().take(limit) {
        let _ = writeln!(o, "  skip  {} {}: {}", s.kind, s.item, s.reason);
    }
    crate::report::more(&mut o, r.skipped.len(), limit);
    for f in &r.failures {
        let _ = writeln!(o, "  fail  {}: {}", f.path.display(), f.message);
    }
    crate::report::registry_lines(&mut o, r.registry.as_ref(), &r.findings, true);
    o
}

/// Tags: the planned ones that still point where they did become deletions; the rest are
/// skipped, with why.
fn still_planned_tags(layout: &Layout, planned: &Planned, skipped: &mut Vec<Skipped>) -> Decisions {
    let mut decisions = Decisions::keep_all(layout);
    if let Some(scope) = &planned.cfg.scope {
        decisions = decisions.with_scope(layout, |name| scope.is_match(name));
    }
    let mut planned_tags: HashMap<(&str, &str), Option<Digest>> = planned
        .tags
        .iter()
        .map(|(r, t, d)| ((&**r, t.as_str()), *d))
        .collect();
    for (i, repo) in layout.repos.iter().enumerate() {
        for (j, tag) in repo.tags.iter().enumerate() {
            let Some(want) = planned_tags.remove(&(&*repo.name, tag.name.as_str())) else {
                continue;
            };
            let now_at = tag.current.map(|c| c.digest);
            if now_at == want && want.is_some() {
                decisions.repos[i][j] = Decision::Delete {
                    rule: "plan".into(),
                };
            } else {
                skipped.push(Skipped {
                    kind: "tag",
                    item: format!("{}:{}", repo.name, tag.name),
                    reason: format!(
                        "moved since the plan: now {}",
                        now_at.map_or("unreadable".into(), |d| d.to_string())
                    ),
                });
            }
        }
    }
    for ((r, t), _) in planned_tags {
        skipped.push(Skipped {
            kind: "tag",
            item: format!("{r}:{t}"),
            reason: "already gone".into(),
        });
    }

    decisions
}

/// What both the plan and the fresh look agree on (a blob also needs its size and mtime
/// unchanged); the rest of the plan is skipped, with why.
fn agreed(planned: &Planned, fresh: Plan, skipped: &mut Vec<Skipped>) -> Plan {
    let mut todo = Plan {
        tags: fresh.tags,
        ..Plan::default()
    };
    let fresh_index: HashSet<(Name, String, Digest)> = fresh
        .tag_index
        .iter()
        .map(|l| {
            (
                l.repository.clone(),
                l.tag.clone().unwrap_or_default(),
                l.digest,
            )
        })
        .collect();
    for key in &planned.tag_index {
        if fresh_index.contains(key) {
            todo.tag_index.push(LinkRemoval {
                repository: key.0.clone(),
                tag: Some(key.1.clone()),
                digest: key.2,
            });
        } else {
            skipped.push(Skipped {
                kind: "tag_index_entry",
                item: format!("{}:{}@{}", key.0, key.1, key.2),
                reason: "its manifest is needed again, or it is gone".into(),
            });
        }
    }
    let fresh_manifests: HashMap<(Name, Digest), _> = fresh
        .manifests
        .into_iter()
        .map(|m| ((m.repository.clone(), m.digest), m))
        .collect();
    for key in &planned.manifests {
        match fresh_manifests.get(key) {
            Some(m) => todo.manifests.push(m.clone()),
            None => skipped.push(Skipped {
                kind: "manifest",
                item: format!("{}@{}", key.0, key.1),
                reason:
                    "needed again (a tag, index or referrer reaches it, it is young, or it is gone)"
                        .into(),
            }),
        }
    }
    let fresh_links: HashSet<(Name, Digest)> = (fresh.layer_links.iter())
        .map(|l| (l.repository.clone(), *l.digest))
        .collect();
    todo.layer_links = fresh.layer_links;
    (todo.layer_links)
        .retain(|l| (planned.layer_links).contains(&(l.repository.clone(), *l.digest)));
    for key in &planned.layer_links {
        if !fresh_links.contains(key) {
            skipped.push(Skipped {
                kind: "layer_link",
                item: format!("{}@{}", key.0, key.1),
                reason: "needed again, or gone".into(),
            });
        }
    }
    // Planned blobs the fresh plan also has: swept if unchanged, skipped if not.
    let mut looked_at: HashSet<Digest> = HashSet::new();
    todo.blobs = fresh.blobs;
    todo.blobs.retain(|b| {
        let Some(&(size, mtime)) = planned.blobs.get(&b.digest()) else {
            return false;
        };
        looked_at.insert(b.digest());
        let same = size == b.size() && mtime == b.mtime();
        if !same {
            skipped.push(Skipped {
                kind: "blob",
                item: b.digest().to_string(),
                reason: "changed since the plan (size or mtime)".into(),
            });
        }
        same
    });
    for d in planned.blobs.keys().filter(|d| !looked_at.contains(d)) {
        skipped.push(Skipped {
            kind: "blob",
            item: d.to_string(),
            reason: "needed again, young, withheld by damage, or gone".into(),
        });
    }
    for u in fresh.uploads {
        if planned
            .uploads
            .contains(&(u.repository.clone(), u.id.clone()))
        {
            todo.uploads.push(u);
        }
    }
    // Empty folders the plan names and that are still empty and old enough: the same removals
    // gc makes (the sweep checks each is still empty as it goes).
    todo.empty_dirs = (fresh.empty_dirs.into_iter())
        .filter(|d| planned.empty_folders.contains(d))
        .collect();
    todo
}
