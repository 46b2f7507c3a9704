//! The one way in, shared by every command: a [`Session`] is opened once on a storage (locked
//! when asked, scanned, its manifests read, the image dates loaded when a policy counts from
//! them), then planned on (the pure decisions: policy, mark, plan, for one set of [`Rules`];
//! then the arrivals of what would go) and swept.

use crate::error::Result;
use crate::gc::killed::{Journal, KilledRun, SWEEP_JOURNAL};
use crate::gc::plan::{self, Plan};
use crate::model::mark;
use crate::model::{Layout, Rules, Time};
use crate::policy::used::Used;
use crate::policy::{self, AgeFrom, Decisions, Matcher, Policy, TagExplain};
use crate::progress::Progress;
use crate::stages::cache::Cache;
use crate::stages::scan::{self, ScanOptions};
use crate::storage::seam::Storage;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// One run on a registry's storage: the storage (kept open for the sweep), the lock when one
/// was taken, and the model with every manifest its links name.
pub struct Session<S: Storage> {
    pub store: S,
    pub lock: Option<S::Lock>,
    pub layout: Layout,
    /// What completing a killed run's pending eviction did (`Open::settle`), before the scan.
    pub settled: Option<String>,
    /// Runs killed mid-sweep, by what of their plans the scan found gone (the sweep journal).
    pub killed: Vec<KilledRun>,
    /// Why a sweep journal left at the root could not be read.
    pub killed_unreadable: Option<String>,
    /// Whether a sweep journal is at the root (found, or written by this run).
    journal: std::sync::atomic::AtomicBool,
}

impl<S: Storage> Session<S> {
    /// Locks (when asked) and loads `store`; loads the images' dates when `policy` counts ages
    /// from them.
    pub fn open(
        store: S,
        how: Open,
        policy: Option<&Policy>,
        progress: &dyn Progress,
    ) -> Result<Session<S>> {
        let mut s = load_store(store, how, progress)?;
        load_dates(&s.store, &mut s.layout, policy)?;
        Ok(s)
    }

    /// What goes under `rules` (and `policy`, limited to `scope`): the pure decisions, then the
    /// blobs that would go settled by when they arrived. Every tag decision, with its reasons.
    pub fn plan(&self, how: &Decide, rules: &Rules, now: Time) -> (Plan, Vec<TagExplain>) {
        let how = Decide {
            fs: how.fs.or_else(|| self.store.usage()),
            ..*how
        };
        let (mut plan, explain) = decide_scoped(&self.layout, &how, rules, now);
        settle_arrivals(&self.store, &mut plan, rules);
        (plan, explain)
    }

    /// What goes for tag decisions already made (a reviewed plan's): mark and plan, then the
    /// blobs that would go settled by when they arrived.
    pub fn plan_decided(&self, decisions: &Decisions, rules: &Rules) -> Plan {
        let mut plan = plan_with(&self.layout, decisions, rules);
        settle_arrivals(&self.store, &mut plan, rules);
        plan
    }

    /// Before a sweep by `command`: the journal the next run accounts this one by should it be
    /// killed mid-sweep (with the killed runs this one found). Unwritten, nothing is swept.
    pub fn begin_sweep(&self, command: &str, plan: &Plan) -> Result<()> {
        let limit = crate::storage::seam::STATE_LIMIT;
        let bytes = Journal::bytes_of(command, plan, self.killed.clone(), limit);
        self.journal
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.store
            .write_state(SWEEP_JOURNAL, Some(&bytes))
            .map_err(|e| crate::error::Error::Io {
                path: self.store.location().join(SWEEP_JOURNAL),
                cause: std::io::Error::new(e.kind(), format!(
                    "cannot write the sweep journal ({}), so nothing was swept: without it a run killed mid-sweep would leave no record of what it removed; make the storage root writable",
                    crate::error::io_cause(&e)
                )),
            })
    }

    /// Once the run's sweep is over (or, holding the lock, when it sweeps nothing): its journal
    /// and any a killed run left go, their accounts being in this run's report. Why it could
    /// not be removed, if so.
    pub fn end_sweep(&self) -> Option<String> {
        if !self
            .journal
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return None;
        }
        let e = self.store.write_state(SWEEP_JOURNAL, None).err()?;
        Some(format!(
            "{}: cannot remove the sweep journal ({}): the next run will take this one for killed",
            self.store.location().join(SWEEP_JOURNAL).display(),
            crate::error::io_cause(&e)
        ))
    }

    /// Carries out `plan` (see [`crate::stages::sweep`]).
    pub fn sweep(
        &self,
        plan: &Plan,
        progress: &dyn Progress,
        opts: &crate::stages::sweep::SweepOptions,
    ) -> crate::gc::outcome::Outcome {
        crate::stages::sweep::sweep(&self.store, plan, progress, opts)
    }
}

/// How to open a root.
#[derive(Debug, Clone, Copy, Default)]
pub struct Open<'a> {
    /// Take the exclusive lock for this command (`--break-lock` as the second value) before
    /// the scan, so that what is read is what the sweep acts on.
    pub lock: Option<(&'a str, bool)>,
    pub scan: ScanOptions,
    /// The manifest cache file to read and update (`--cache`); none with `--no-cache`.
    pub cache: Option<&'a Path>,
    /// With the lock: completes a killed run's pending-eviction journal before the scan (what
    /// it did, in words); an error stops the run, and the journal stays.
    pub settle: Option<Settle<'a>>,
}

/// How a run that may change the root completes the journal a killed run left.
#[derive(Clone, Copy)]
pub struct Settle<'a>(pub &'a (dyn Fn(&Path, &[u8]) -> Result<String> + Sync));

impl std::fmt::Debug for Settle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Settle")
    }
}

/// Reads the journal left at the root; completes it with `settle`, then removes it.
fn settle_pending<S: Storage>(store: &S, settle: Settle) -> Result<Option<String>> {
    use crate::storage::lock::PENDING_EVICTION;
    let path = store.location().join(PENDING_EVICTION);
    let fail = |e: std::io::Error| crate::error::Error::io(&path, e);
    let Some(bytes) = store.read_state(PENDING_EVICTION).map_err(fail)? else {
        return Ok(None);
    };
    let said = (settle.0)(&path, &bytes)?;
    store.write_state(PENDING_EVICTION, None).map_err(fail)?;
    tracing::warn!("{said}");
    Ok(Some(said))
}

/// Locks (when asked) and loads storage already opened, on disk or in a bucket.
fn load_store<S: Storage>(store: S, how: Open, progress: &dyn Progress) -> Result<Session<S>> {
    let lock = match how.lock {
        Some((command, break_lock)) => Some(store.lock(command, break_lock)?),
        None => None,
    };
    let settled = match (&lock, how.settle) {
        (Some(_), Some(settle)) => settle_pending(&store, settle)?,
        _ => None,
    };
    let cache = how.cache.map(Cache::open).transpose()?;
    let mut layout = load(&store, how.scan, cache.as_ref(), progress)?;
    if let Some(cache) = cache {
        tracing::info!(hits = cache.hits(), "manifests read from the cache");
        // A run that may delete (it holds the lock) re-reads a sample of what the cache
        // answered: an entry that disagrees with storage (damage, a forgery, another parser)
        // drops the whole cache. Dry runs trust the file's protections: what they plan is
        // carried out by `apply`, which reads every manifest, or re-checked by a sweep.
        let check = how.lock.is_some().then(|| verify_sample(&store, &cache));
        match check.flatten() {
            Some(why) => {
                tracing::warn!("manifest cache dropped, every manifest read again: {why}");
                cache.discard();
                layout.manifests =
                    crate::stages::manifests::load_manifests(&store, &layout, None, progress);
            }
            None => cache.save(),
        }
    }
    let (killed, killed_unreadable, journal) = read_killed(&store, &layout);
    Ok(Session {
        store,
        lock,
        layout,
        settled,
        killed,
        killed_unreadable,
        journal: journal.into(),
    })
}

/// The runs a sweep journal at the root says were killed mid-sweep, accounted against the
/// layout just scanned; why it could not be read; whether one is there.
fn read_killed<S: Storage>(store: &S, layout: &Layout) -> (Vec<KilledRun>, Option<String>, bool) {
    let path = store.location().join(SWEEP_JOURNAL);
    let why = match store.read_state(SWEEP_JOURNAL) {
        Ok(None) => return (vec![], None, false),
        Ok(Some(bytes)) => match Journal::parse(&bytes) {
            Ok(j) => return (j.account(layout), None, true),
            Err(why) => why,
        },
        Err(e) => crate::error::io_cause(&e),
    };
    let said = format!(
        "{}: a run was killed mid-sweep, and its sweep journal cannot be read ({why}): what it removed cannot be told; this report lists what is there",
        path.display()
    );
    (vec![], Some(said), true)
}

/// Entries of the cache a sweeping run checks against storage: enough that a cache damaged or
/// forged in more than a few places is caught, few enough that the cache still saves reads.
const CACHE_SAMPLE: usize = 64;

/// Re-reads a random sample of the manifests the cache answered for; why it disagrees, if it
/// does. A manifest that cannot be read now says nothing either way (the scan reports it).
fn verify_sample<S: Storage>(store: &S, cache: &Cache) -> Option<String> {
    let sample = cache.sample_used(CACHE_SAMPLE.max(cache.hits() as usize / 100));
    sample.par_iter().find_map_any(|d| {
        match crate::stages::manifests::read_parsed_manifest(store, d) {
            Ok(m) if cache.entry(d).as_ref() != Some(&m) => Some(format!(
                "its entry for {d} differs from the manifest in storage"
            )),
            _ => None,
        }
    })
}

/// The scan stages: the layout with every manifest its links name.
pub fn load<S: Storage>(
    store: &S,
    opts: ScanOptions,
    cache: Option<&Cache>,
    progress: &dyn Progress,
) -> Result<Layout> {
    let started = std::time::Instant::now();
    let mut layout = scan::scan(store, opts, progress)?;
    answered(store)?;
    tracing::info!(
        blobs = layout.blobs.len(),
        repositories = layout.repos.len(),
        "scanned"
    );
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        findings = layout.findings.len(),
        "scan done"
    );
    let started = std::time::Instant::now();
    layout.manifests = crate::stages::manifests::load_manifests(store, &layout, cache, progress);
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "manifests read and parsed"
    );
    answered(store)?;
    opts.memory
        .check(layout.blobs.len() as u64, layout.held_bytes())?;
    Ok(layout)
}

/// Fails the run when the store left reads unanswered: a layout read with holes is no basis
/// for a plan (what the missing reads hold is unknown, unlike damage, which is known).
fn answered<S: Storage>(store: &S) -> Result<()> {
    match store.unanswered() {
        None => Ok(()),
        Some(why) => Err(crate::error::Error::ObjectStore {
            url: store.location().to_string_lossy().into_owned(),
            message: format!(
                "{why}; nothing was planned or deleted (run again when the store answers; --request-timeout gives slow requests longer)"
            ),
        }),
    }
}

/// Reads the image configs' `created` dates into the layout where the policy counts ages from
/// them: a storage read, done here so that `decide` reads nothing.
pub fn load_dates<S: Storage>(
    store: &S,
    layout: &mut Layout,
    policy: Option<&Policy>,
) -> Result<()> {
    if policy.is_some_and(|p| p.age_from == AgeFrom::Created) && layout.created.is_empty() {
        layout.created = crate::stages::manifests::load_created(store, layout);
        answered(store)?;
    }
    Ok(())
}

/// The pure stages: policy, mark and plan, for one set of rules, over every repository.
pub fn decide(
    layout: &Layout,
    policy: Option<&Policy>,
    rules: &Rules,
    now: Time,
) -> (Plan, Vec<TagExplain>) {
    let how = Decide {
        policy,
        ..Decide::default()
    };
    decide_scoped(layout, &how, rules, now)
}

/// What decides the tags: the policy, what is used, and the run's scope.
#[derive(Default, Clone, Copy)]
pub struct Decide<'a> {
    pub policy: Option<&'a Policy>,
    /// Images in use and the pull ledger; `None` when neither was given.
    pub used: Option<&'a Used>,
    /// `--repository`: the run touches only the repositories this matches.
    pub scope: Option<&'a Matcher>,
    /// The filesystem holding the root, for a budget in shares of the disk.
    pub fs: Option<crate::model::space::FsUsage>,
    /// A pull-through cache's manifests whose TTL expired, by (repository, digest): the tags
    /// naming them go, unless something holds them.
    pub expired: Option<&'a std::collections::HashSet<(String, crate::Digest)>>,
}

/// `decide`, with what is used, limited to the repositories the scope matches when there is one.
pub fn decide_scoped(
    layout: &Layout,
    how: &Decide,
    rules: &Rules,
    now: Time,
) -> (Plan, Vec<TagExplain>) {
    let (policy, scope) = (how.policy, how.scope);
    let none = Used::default();
    let used = how.used.unwrap_or(&none);
    let images = used.images_with(policy);
    let protection = policy::used::protection(layout, policy, used, &images, now);
    let (mut decisions, mut explain, mut refused) = match policy {
        None => (Decisions::keep_all(layout), Vec::new(), Vec::new()),
        Some(policy) => {
            let ctx = policy::Context {
                used,
                protection: &protection,
            };
            let ev = policy::evaluate_with(policy, layout, &layout.created, now, &ctx);
            (ev.decisions, ev.explain, ev.refusals)
        }
    };
    decisions.pinned = (0..layout.repos.len())
        .map(|r| protection.pinned(r).copied().collect())
        .collect();
    let mut decisions = match scope {
        Some(m) => {
            // The policy's word on a repository outside the scope is not acted on.
            explain.retain(|e| m.is_match(&e.repository));
            decisions.with_scope(layout, |name| m.is_match(name))
        }
        None => decisions,
    };
    let mut space = Vec::new();
    let ask = crate::stages::budget::Ask {
        layout,
        rules,
        used,
        fs: how.fs,
        now,
    };
    if let Some(expired) = how.expired {
        expire(layout, expired, &protection, &mut decisions, &mut explain);
    }
    // Quotas first, each repository on its own; the budget then counts what they took.
    if let Some(p) = policy.filter(|p| !p.quotas.is_empty()) {
        match crate::stages::quota::apply(&ask, &p.quotas, &mut decisions, &mut explain) {
            Ok(states) => space.extend(states),
            Err(why) => refused.push(why),
        }
    }
    if let Some(budget) = policy.and_then(|p| p.budget.as_ref()) {
        match crate::stages::budget::apply(&ask, budget, &mut decisions, &mut explain) {
            Ok(state) => space.push(state),
            Err(why) => refused.push(why),
        }
    }
    let mut plan = plan_with(layout, &decisions, rules);
    plan.space = space;
    tracing::debug!(
        tags = plan.tags.len(),
        manifests = plan.manifests.len(),
        layer_links = plan.layer_links.len(),
        blobs = plan.blobs.len(),
        uploads = plan.uploads.len(),
        kept_by_grace = plan.kept_by_grace,
        "planned"
    );
    let ages: HashMap<(&str, &str), Option<i64>> = explain
        .iter()
        .map(|e| ((e.repository.as_str(), e.tag.as_str()), e.age_seconds))
        .collect();
    for t in &mut plan.tags {
        t.age_seconds = ages
            .get(&(t.repository.as_ref(), t.tag.as_str()))
            .copied()
            .flatten();
    }
    plan.refused = refused;
    plan.findings
        .extend(crate::model::skew::clock_skew(layout, now));
    if how.used.is_some() {
        let (mut summary, notices) = protection.summary(layout, &images);
        summary.ledger = used.pulls.as_ref().map(|p| p.streams.clone());
        if let (Some(p), Some(_)) = (how.policy, &used.pulls) {
            summary.windows = used.windows(p, now);
        }
        plan.findings.extend(notices);
        plan.used = Some(summary);
    }
    (plan, explain)
}

/// The rule name of a tag whose manifest a pull-through cache's TTL let go.
pub const PROXY_RULE: &str = "proxy-ttl";

/// Tags naming an expired manifest of a pull-through cache go, unless in use or held by the
/// policy; the proxy fetches them again from upstream on the next pull.
fn expire(
    layout: &Layout,
    expired: &std::collections::HashSet<(String, crate::Digest)>,
    protection: &crate::model::inuse::Protection,
    decisions: &mut Decisions,
    explain: &mut [TagExplain],
) {
    let mut held: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, e) in explain.iter().enumerate() {
        held.insert((e.repository.as_str(), e.tag.as_str()), i);
    }
    let mut said = Vec::new();
    for (r, repo) in layout.repos.iter().enumerate() {
        for (t, tag) in repo.tags.iter().enumerate() {
            let Some(c) = tag.current else { continue };
            let e = held.get(&(repo.name.as_ref(), tag.name.as_str())).copied();
            let free = e.is_none_or(|e| explain[e].held_by.is_none())
                && !protection.tags.contains_key(&(r, t))
                && decisions.repos[r][t] == crate::model::Decision::Keep
                && !decisions.out_of_scope.get(r).copied().unwrap_or(false);
            if free && expired.contains(&(repo.name.to_string(), c.digest)) {
                decisions.repos[r][t] = crate::model::Decision::Delete {
                    rule: PROXY_RULE.into(),
                };
                said.extend(e);
            }
        }
    }
    for e in said {
        explain[e].delete = true;
        explain[e].rule = Some(PROXY_RULE.into());
        explain[e].reasons.push("proxy cache: its manifest's TTL in scheduler-state.json has expired (the proxy fetches it again on the next pull)".into());
    }
}

/// Mark and plan for given tag decisions.
pub fn plan_with(layout: &Layout, decisions: &Decisions, rules: &Rules) -> Plan {
    let marks = mark::mark(layout, decisions, rules);
    plan::plan(layout, decisions, &marks, rules)
}

/// Keeps the planned blobs that arrived within the grace period: a blob committed by rename
/// keeps its upload's data mtime, so its arrival is read (for planned blobs only) from its folder.
pub fn settle_arrivals<S: Storage>(store: &S, plan: &mut Plan, rules: &Rules) {
    if rules.young_from.is_none() || plan.blobs.is_empty() {
        return;
    }
    let blobs: Vec<(crate::Digest, Time)> =
        plan.blobs.iter().map(|b| (b.digest(), b.mtime())).collect();
    let arrivals = store.blob_arrivals(&blobs);
    plan.keep_arrived(&arrivals, rules);
}

/// A moment as nanoseconds since the epoch; before everything when out of range, so that every
/// item counts as changed since (kept).
pub fn since_ns(t: chrono::DateTime<chrono::Utc>) -> i128 {
    t.timestamp_nanos_opt().map_or(i128::MIN, i128::from)
}
