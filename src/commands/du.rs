//! The du command: one scan, then sizes per repository or per tag, and what gc would free.

mod csv;
use crate::config::Location;
use crate::error::ExitCode;
use crate::error::{Error, Result};
use crate::inspect::usage::{self, RepoUsage, TagUsage};
use crate::model::digest::Digest;
use crate::model::duration::Span;
use crate::model::{Rules, Severity};
use crate::pipeline::{self, Open, Session};
use crate::policy::Policy;
use crate::progress::Progress;
use crate::report::Report;
use crate::report::human_bytes;
use crate::report::metrics::Metrics;
use crate::storage::location::OnStorage;
use crate::storage::seam::Storage;
use csv::csv;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuSort {
    Bytes,
    Exclusive,
    Name,
}

#[derive(Debug, Clone)]
pub struct DuConfig {
    pub root: Location,
    /// The manifest cache file; `None` reads every manifest from storage.
    pub cache: Option<PathBuf>,
    pub format: DuFormat,
    /// Rows to show; the rest are summed in one row. `None`: 20 in a table, all otherwise.
    pub top: Option<usize>,
    pub sort: DuSort,
    pub policy: Option<Policy>,
    /// Per tag of this repository instead of per repository.
    pub by_tag: Option<String>,
    /// The grace gc would run with, for the reclaimable figures.
    pub grace: Span,
    pub metrics: Option<PathBuf>,
    pub progress: bool,
    /// The pull ledger (last pulls in the tables) and images in use (for the policy's figure).
    pub used: crate::policy::used::Used,
    /// `--memory-limit`: how much the run may hold (the bounded mode spills the rest).
    pub memory: crate::spill::Bound,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub repositories: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub allocated_bytes: u64,
    pub reclaimable_bytes: u64,
    pub reclaimable_untagged_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_reclaimable_bytes: Option<u64>,
    /// Blobs and manifests gc would keep only because they are younger than the grace.
    pub kept_by_grace: u64,
    /// Damage that made gc withhold sweeping: the reclaimable figures are then 0.
    pub damage_findings: usize,
    /// Requests made to an object store, by kind (absent on disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::storage::seam::Requests>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DuReport {
    #[serde(flatten)]
    pub envelope: crate::report::Envelope,
    pub root: PathBuf,
    pub summary: Totals,
    pub repositories: Vec<RepoUsage>,
    /// With --by tag: the repository and its tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<TagUsage>>,
    /// Why the policy's safety net would refuse it (the figure assumes --force).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_refused: Vec<String>,
    /// With --top: the repositories left out of `repositories`, summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub others: Option<RepoUsage>,
    /// `--top`: rows shown (20 in a table when not given; all otherwise).
    #[serde(skip)]
    pub top: Option<usize>,
    /// The policy file whose figure the table names.
    #[serde(skip)]
    pub policy_file: Option<PathBuf>,
    /// A ledger was given: the tables show last pulls.
    #[serde(skip)]
    pub with_pulls: bool,
}

/// Runs du; the rendered output and the exit code.
pub fn run(cfg: &DuConfig, progress: &dyn Progress) -> Result<DuReport> {
    cfg.root.open(cfg, progress)
}

impl OnStorage for DuConfig {
    type Out = DuReport;
    fn run<S: Storage>(&self, store: S, progress: &dyn Progress) -> Result<Self::Out> {
        run_in(store, self, progress)
    }
}

fn run_in<S: Storage>(store: S, cfg: &DuConfig, progress: &dyn Progress) -> Result<DuReport> {
    let started = Instant::now();
    let started_dt = chrono::Utc::now();
    let started_at = started_dt.timestamp();
    let how = Open {
        cache: cfg.cache.as_deref(),
        scan: crate::stages::scan::ScanOptions {
            memory: cfg.memory,
            in_flight_from: Rules::young_from(cfg.grace, started_at),
            ..Default::default()
        },
        ..Open::default()
    };
    let Session { store, layout, .. } = Session::open(store, how, cfg.policy.as_ref(), progress)?;
    let root = store.location();
    // The figures say what gc would free; a policy's safety net is reported apart.
    let rules = |delete_untagged: bool| Rules {
        young_from: Rules::young_from(cfg.grace, started_at),
        ..Rules::without_grace(delete_untagged)
    };
    // Each plan is reduced to the figures du shows before the next is made: at most one
    // plan's lists are in memory at a time.
    // Damage counted as check counts it (the plan's findings and the layout's integrity), so
    // both name the same and exit alike.
    let (plain_bytes, damage_findings) = {
        let (plain, _) = pipeline::decide(&layout, None, &rules(false), started_at);
        let bytes = plain.bytes_freed();
        let mut findings = plain.findings;
        findings.extend(crate::inspect::integrity::check(&layout, started_at));
        super::check::arrived_during_the_run(&store, &mut findings);
        let damage = (findings.iter())
            .filter(|f| f.severity != Severity::Notice)
            .count();
        (bytes, damage)
    };
    let (untagged_bytes, kept_by_grace, untagged_goes) = {
        let (untagged, _) = pipeline::decide(&layout, None, &rules(true), started_at);
        let goes = usage::blobs_among(&layout, untagged.blobs.iter().map(|b| &b.blob.digest));
        (untagged.bytes_freed(), untagged.kept_by_grace, goes)
    };
    let by_policy = cfg.policy.as_ref().map(|p| {
        let how = pipeline::Decide {
            policy: Some(p),
            used: Some(&cfg.used),
            scope: None,
            fs: store.usage(),
            expired: None,
        };
        let (plan, _) = pipeline::decide_scoped(&layout, &how, &rules(true), started_at);
        (plan.bytes_freed(), plan.refused)
    });

    let mut repositories = usage::repositories(&layout, &untagged_goes);
    let mut tags = match &cfg.by_tag {
        Some(name) => Some(usage::tags(&layout, name).ok_or_else(|| {
            Error::Usage(format!(
                "--by tag {name}: no such repository under {}",
                root.display()
            ))
        })?),
        None => None,
    };
    if let Some(pulls) = &cfg.used.pulls {
        last_pulls(
            pulls,
            &layout,
            &mut repositories,
            tags.as_mut(),
            cfg.by_tag.as_deref(),
        );
    }
    if let Some(p) = &cfg.policy {
        quotas(&p.quotas, &mut repositories);
    }
    sort(&mut repositories, tags.as_mut(), cfg.sort);
    let report = DuReport {
        envelope: crate::report::Envelope::new("regsweep/du-report/v2", started_dt),
        root: root.clone(),
        summary: Totals {
            repositories: layout.repos.len(),
            blobs: layout.blobs.len(),
            bytes: layout.total_bytes(),
            allocated_bytes: layout.allocated_bytes,
            reclaimable_bytes: plain_bytes,
            reclaimable_untagged_bytes: untagged_bytes,
            policy_reclaimable_bytes: by_policy.as_ref().map(|p| p.0),
            kept_by_grace,
            damage_findings,
            requests: store.requests(),
        },
        repositories,
        repository: cfg.by_tag.clone(),
        tags,
        policy_refused: by_policy.map(|p| p.1).unwrap_or_default(),
        others: None,
        top: cfg.top,
        policy_file: cfg.policy.as_ref().map(|p| p.path.clone()),
        with_pulls: cfg.used.pulls.is_some(),
    };

    if let Some(path) = &cfg.metrics {
        metrics(&report, started_at, started.elapsed().as_secs_f64()).write(path)?;
    }

    Ok(report)
}

/// Each repository's quota (the first of the policy's that matches it) and its use.
fn quotas(quotas: &[crate::policy::budget::Quota], repositories: &mut [RepoUsage]) {
    use crate::policy::budget::QuotaBy;
    for x in repositories.iter_mut() {
        let Some(q) = quotas.iter().find(|q| q.repositories.is_match(&x.name)) else {
            continue;
        };
        let (used, by) = match q.by {
            QuotaBy::Exclusive => (x.exclusive_bytes, "exclusive"),
            QuotaBy::Total => (x.bytes, "total"),
        };
        x.quota = Some(usage::QuotaUse {
            max: q.max,
            by,
            used_percent: used as f64 * 100.0 / q.max.max(1) as f64,
        });
    }
}

/// Fills in each repository's latest pull, and each tag's, from the ledger.
fn last_pulls(
    pulls: &crate::model::pulls::PullHistory,
    layout: &crate::model::Layout,
    repos: &mut [RepoUsage],
    tags: Option<&mut Vec<TagUsage>>,
    by_tag: Option<&str>,
) {
    let mut latest: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let times = (pulls.tags.iter().map(|((r, _), t)| (r.as_str(), *t)))
        .chain(pulls.digests.iter().map(|((r, _), t)| (r.as_str(), *t)));
    for (r, t) in times {
        let e = latest.entry(r).or_insert(t);
        *e = (*e).max(t);
    }
    for x in repos.iter_mut() {
        x.last_pulled = latest.get(x.name.as_str()).copied();
    }
    if let (Some(tags), Some(name)) = (tags, by_tag)
        && layout.repos.iter().any(|r| &*r.name == name)
    {
        for t in tags.iter_mut() {
            t.last_pulled = pulls.tag_pulled(name, &t.tag, t.digest.as_ref());
        }
    }
}

/// A time as the tables show it; `-` for none.
fn when(t: Option<i64>) -> String {
    t.and_then(|p| chrono::DateTime::from_timestamp(p, 0))
        .map(|p| p.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

fn short(d: Option<Digest>) -> String {
    d.map(|d| d.hex()[..12].to_string())
        .unwrap_or_else(|| "-".into())
}

/// The repositories a `--top` leaves out, summed into one row named `(N more)`.
fn sum_rest(rest: &[RepoUsage]) -> RepoUsage {
    let mut sum = RepoUsage {
        name: format!("({} more)", rest.len()),
        tags: 0,
        manifests: 0,
        blobs: 0,
        bytes: 0,
        exclusive_bytes: 0,
        shared_bytes: 0,
        untagged_bytes: 0,
        last_pulled: None,
        quota: None,
    };
    for x in rest {
        sum.tags += x.tags;
        sum.manifests += x.manifests;
        sum.blobs += x.blobs;
        sum.bytes += x.bytes;
        sum.exclusive_bytes += x.exclusive_bytes;
        sum.shared_bytes += x.shared_bytes;
        sum.untagged_bytes += x.untagged_bytes;
    }
    sum
}

fn table(r: &DuReport, top: usize, policy: Option<PathBuf>) -> String {
    if let (Some(tags), Some(repo)) = (&r.tags, &r.repository) {
        return tag_table(repo, tags, top, r.with_pulls);
    }
    let mut o = String::new();
    let w = r
        .repositories
        .iter()
        .map(|x| x.name.len())
        .max()
        .unwrap_or(10)
        .max(10);
    let _ = writeln!(
        o,
        "{:<w$}  {:>6}  {:>9}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}{}",
        "REPOSITORY",
        "TAGS",
        "MANIFESTS",
        "BLOBS",
        "SIZE",
        "EXCLUSIVE",
        "SHARED",
        "UNTAGGED",
        quota_cols(r, None),
    );
    let row = |o: &mut String, name: &str, x: [u64; 7], pulled: Option<Option<i64>>| {
        let pulled = pulled.map(|p| format!("  {}", when(p))).unwrap_or_default();
        let quota = r.repositories.iter().find(|q| q.name == name);
        let pulled = format!("{}{pulled}", quota_cols(r, Some(quota)));
        let _ = writeln!(
            o,
            "{name:<w$}  {:>6}  {:>9}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}{pulled}",
            x[0],
            x[1],
            x[2],
            human_bytes(x[3]),
            human_bytes(x[4]),
            human_bytes(x[5]),
            human_bytes(x[6])
        );
    };
    let cols = |x: &RepoUsage| {
        [
            x.tags as u64,
            x.manifests as u64,
            x.blobs as u64,
            x.bytes,
            x.exclusive_bytes,
            x.shared_bytes,
            x.untagged_bytes,
        ]
    };
    for x in r.repositories.iter().take(top) {
        row(
            &mut o,
            &x.name,
            cols(x),
            r.with_pulls.then_some(x.last_pulled),
        );
    }
    if r.repositories.len() > top {
        let rest = &r.repositories[top..];
        let mut sum = [0u64; 7];
        for x in rest {
            for (s, v) in sum.iter_mut().zip(cols(x)) {
                *s += v;
            }
        }
        let latest = rest.iter().filter_map(|x| x.last_pulled).max();
        row(
            &mut o,
            &format!("({} more)", rest.len()),
            sum,
            r.with_pulls.then_some(latest),
        );
    }
    footer(&mut o, r, policy);
    o
}

/// The QUOTA and USED % columns when some repository has a quota (`row`: a row's repository,
/// `None` for the heading), then LAST PULLED's heading with a ledger.
fn quota_cols(r: &DuReport, row: Option<Option<&RepoUsage>>) -> String {
    let any = r.repositories.iter().any(|x| x.quota.is_some());
    let cols = match (any, row) {
        (false, _) => String::new(),
        (true, None) => format!("  {:>10}  {:>6}", "QUOTA", "USED %"),
        (true, Some(x)) => match x.and_then(|x| x.quota.as_ref()) {
            Some(q) => format!("  {:>10}  {:>5.1}%", human_bytes(q.max), q.used_percent),
            None => format!("  {:>10}  {:>6}", "-", "-"),
        },
    };
    match (row, r.with_pulls) {
        (None, true) => cols + "  LAST PULLED",
        _ => cols,
    }
}

/// `--by tag REPO`: one row per tag.
fn tag_table(repo: &str, tags: &[TagUsage], top: usize, pulls: bool) -> String {
    let mut o = String::new();
    let w = (tags.iter())
        .map(|t| t.tag.chars().count())
        .max()
        .unwrap_or(3)
        .clamp(3, TAG_WIDTH);
    let _ = writeln!(
        o,
        "{repo}: {} tag{}",
        tags.len(),
        if tags.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        o,
        "{:<w$}  {:<12}  {:>10}  {:>10}  {:<16}{}",
        "TAG",
        "DIGEST",
        "SIZE",
        "EXCLUSIVE",
        "PUSHED",
        if pulls { "  LAST PULLED" } else { "" }
    );
    for x in tags.iter().take(top) {
        let pulled = if pulls {
            format!("  {}", when(x.last_pulled))
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "{:<w$}  {:<12}  {:>10}  {:>10}  {:<16}{pulled}",
            elide(&x.tag, w),
            short(x.digest),
            human_bytes(x.bytes),
            human_bytes(x.exclusive_bytes),
            when(x.pushed)
        );
    }
    if tags.len() > top {
        let rest = &tags[top..];
        let _ = writeln!(
            o,
            "{:<w$}  {:<12}  {:>10}  {:>10}",
            format!("({} more)", rest.len()),
            "",
            human_bytes(rest.iter().map(|x| x.bytes).sum()),
            human_bytes(rest.iter().map(|x| x.exclusive_bytes).sum())
        );
    }
    o
}

/// The widest TAG column: the table keeps to 80 columns (without LAST PULLED); longer names
/// (cosign's `sha256-<64 hex>.sig`) lose their middle in text, and stay whole in JSON and CSV.
const TAG_WIDTH: usize = 24;

/// `name` in at most `w` characters: its start and end around `…`.
fn elide(name: &str, w: usize) -> String {
    let n = name.chars().count();
    if n <= w {
        return name.to_string();
    }
    let head = (w - 1) / 2;
    let tail = w - 1 - head;
    let start: String = name.chars().take(head).collect();
    let end: String = name.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// The store's totals and what gc would free, under the table.
fn footer(o: &mut String, r: &DuReport, policy: Option<PathBuf>) {
    let t = &r.summary;
    // A bucket stores (and bills) an object's size: "on disk" only says something for a folder.
    // An object store is the storage that counts its requests.
    let allocated = if t.requests.is_some() {
        " stored".to_string()
    } else {
        format!(" ({} on disk)", human_bytes(t.allocated_bytes))
    };
    let _ = writeln!(
        o,
        "\nstore      {}, {}{allocated} in {}; a blob shared by many counts once",
        crate::units::plural(t.blobs, "blob", "blobs"),
        human_bytes(t.bytes),
        crate::units::plural(t.repositories, "repository", "repositories")
    );
    let _ = write!(
        o,
        "gc frees   {} now; {} with --delete-untagged",
        human_bytes(t.reclaimable_bytes),
        human_bytes(t.reclaimable_untagged_bytes)
    );
    if let (Some(p), Some(path)) = (t.policy_reclaimable_bytes, policy) {
        let _ = write!(
            o,
            "; {} with --delete-untagged --policy {}",
            human_bytes(p),
            path.display()
        );
    }
    if t.kept_by_grace > 0 {
        let _ = write!(
            o,
            " ({} items younger than the grace period kept)",
            t.kept_by_grace
        );
    }
    let _ = writeln!(o);
    for why in &r.policy_refused {
        let _ = writeln!(o, "note       the policy's safety net would refuse: {why}");
    }
    if t.damage_findings > 0 {
        let _ = writeln!(
            o,
            "damage     {}: gc withholds sweeping until they are fixed (regsweep check lists them)",
            crate::units::plural(t.damage_findings, "finding", "findings")
        );
    }
}

/// The metrics of a du run.
fn metrics(report: &DuReport, started_at: i64, seconds: f64) -> Metrics {
    let damage_findings = report.summary.damage_findings;
    let mut m = Metrics::new("du");
    m.run(started_at, seconds, damage_findings, 0);
    for r in &report.repositories {
        let l = [("repository", r.name.as_str())];
        m.gauge(
            "repository_bytes",
            "Apparent bytes of the blobs a repository reaches.",
            &l,
            r.bytes as f64,
        );
        m.gauge(
            "repository_exclusive_bytes",
            "Bytes only this repository reaches.",
            &l,
            r.exclusive_bytes as f64,
        );
        m.gauge(
            "repository_untagged_bytes",
            "Bytes gc --delete-untagged would free of this repository.",
            &l,
            r.untagged_bytes as f64,
        );
    }
    let t = &report.summary;
    m.gauge("store_blobs", "Blobs in the store.", &[], t.blobs as f64);
    m.gauge(
        "store_bytes",
        "Apparent bytes of every blob in the store.",
        &[],
        t.bytes as f64,
    );
    m.requests(report.summary.requests.as_ref());
    m.gauge(
        "store_allocated_bytes",
        "Bytes the store's blobs take on disk.",
        &[],
        t.allocated_bytes as f64,
    );
    m.gauge(
        "reclaimable_bytes",
        "Bytes gc would free now.",
        &[("mode", "gc")],
        t.reclaimable_bytes as f64,
    );
    m.gauge(
        "reclaimable_bytes",
        "Bytes gc would free now.",
        &[("mode", "delete_untagged")],
        t.reclaimable_untagged_bytes as f64,
    );
    if let Some(p) = t.policy_reclaimable_bytes {
        m.gauge(
            "reclaimable_bytes",
            "Bytes gc would free now.",
            &[("mode", "policy")],
            p as f64,
        );
    }
    m
}

/// The report in the format asked for.
impl Report for DuReport {
    /// The table: one row per repository (or tag), the largest `--top` (20 unless given; the
    /// `limit` of the trait when there is none), the rest summed, then the store's totals.
    fn text(&self, limit: Option<usize>) -> String {
        let top = self.top.or(limit).unwrap_or(20);
        let mut t = table(self, top, self.policy_file.clone());
        if let Some(req) = &self.summary.requests {
            t.push_str(&format!(
                "requests: {}\n",
                crate::report::requests_line(req)
            ));
        }
        t
    }
    /// Every repository, or the first `--top` and the rest summed under `others`.
    fn json(&self) -> String {
        match self.top {
            Some(n) if self.repositories.len() > n => {
                let mut shown = self.clone();
                shown.others = Some(sum_rest(&self.repositories[n..]));
                shown.repositories.truncate(n);
                crate::report::pretty(&shown)
            }
            _ => crate::report::pretty(self),
        }
    }
    /// 3 when damage was found, as check and gc.
    fn exit_code(&self) -> ExitCode {
        if self.summary.damage_findings > 0 {
            ExitCode::Damage
        } else {
            ExitCode::Ok
        }
    }
}

impl DuReport {
    /// The table as CSV.
    pub fn csv(&self) -> String {
        csv(self, self.top)
    }
}

/// Rows in the order `--sort` asks for, ties broken by name.
fn sort(repositories: &mut [RepoUsage], tags: Option<&mut Vec<TagUsage>>, by: DuSort) {
    match by {
        DuSort::Bytes => {
            repositories.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)))
        }
        DuSort::Exclusive => repositories.sort_by(|a, b| {
            b.exclusive_bytes
                .cmp(&a.exclusive_bytes)
                .then(a.name.cmp(&b.name))
        }),
        DuSort::Name => repositories.sort_by(|a, b| a.name.cmp(&b.name)),
    }
    if let Some(t) = tags {
        match by {
            DuSort::Bytes => t.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.tag.cmp(&b.tag))),
            DuSort::Exclusive => t.sort_by(|a, b| {
                b.exclusive_bytes
                    .cmp(&a.exclusive_bytes)
                    .then(a.tag.cmp(&b.tag))
            }),
            DuSort::Name => t.sort_by(|a, b| a.tag.cmp(&b.tag)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_tag_loses_its_middle_in_the_table_only() {
        let sig = format!("sha256-{}.sig", "ab".repeat(32));
        let short = super::elide(&sig, super::TAG_WIDTH);
        assert_eq!(short, "sha256-abab…abababab.sig");
        assert_eq!(short.chars().count(), super::TAG_WIDTH);
        assert_eq!(super::elide("v1.2.3", super::TAG_WIDTH), "v1.2.3");
    }
}
