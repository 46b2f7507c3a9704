//! gc's report in text, for people: the summary, the loss per repository, and each list bounded
//! by `--limit`.

use super::*;

impl Report for GcReport {
    fn text(&self, limit: Option<usize>) -> String {
        self.text_bounded(limit)
    }
    fn json(&self) -> String {
        self.to_json()
    }
    fn write_json(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.write_json_to(w)
    }
    fn exit_code(&self) -> crate::error::ExitCode {
        self.exit_code
    }
}

impl GcReport {
    /// The text, each list bounded by `limit` (`None`: all).
    fn text_bounded(&self, limit: Option<usize>) -> String {
        let limit = limit.unwrap_or(usize::MAX);
        let (verb, heading) = self.words();
        let mut o = String::new();
        self.summary_text(&mut o, verb);
        by_repository(&mut o, &self.plan, heading, limit);
        self.lists_text(&mut o, heading, limit);
        o
    }

    /// What the run did to what it planned, as a verb and as a list heading.
    fn words(&self) -> (&'static str, &'static str) {
        let refused = self.refused_by_safety_net && !self.dry_run;
        if self.dry_run || refused {
            ("would delete", "to delete")
        } else if self.trash.is_some() {
            ("moved", "moved to the trash")
        } else {
            ("deleted", "deleted")
        }
    }

    /// The summary at the top: what was scanned, what went, and every condition of the run.
    fn summary_text(&self, o: &mut String, verb: &str) {
        let s = &self.summary;
        let refused = self.refused_by_safety_net && !self.dry_run;
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
        if !self.settings_from_env.is_empty() {
            let _ = writeln!(o, "  environment    {}", self.settings_from_env.join(", "));
        }
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
        super::space::space_lines(o, &self.space, verb);
        if let Some(p) = &self.proxy {
            super::space::proxy_line(o, p, verb);
        }
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
        self.conditions_text(o);
    }

    /// What the run found and how it ended: damage, notices, failures, what it kept at the
    /// last moment, the live registry, outputs not written, time, and why anything was held back.
    fn conditions_text(&self, o: &mut String) {
        let s = &self.summary;
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
            .filter(|e| e.severity == Severity::Notice && !e.kind.is_registry())
            .filter(|e| e.kind != crate::model::FindingKind::SweepKilled)
            .count();
        if notices > 0 {
            let _ = writeln!(
                o,
                "  notices        {notices} foreign or leftover entries, left alone (listed below)"
            );
        }
        if !self.killed_runs.is_empty() {
            let _ = writeln!(
                o,
                "  killed before  {} mid-sweep: what each removed is listed below",
                crate::units::plural(self.killed_runs.len(), "run", "runs")
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
        registry_lines(o, self.registry.as_ref(), &self.errors, false);
        for e in &self.output_errors {
            let _ = writeln!(o, "  not written    {e}");
        }
        let _ = writeln!(o, "  took           {:.2}s", self.duration_seconds);
        for w in &self.withheld {
            let _ = writeln!(o, "  withheld       {w}");
        }
        if let Some(u) = &self.used {
            used_lines(o, u);
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
    }

    /// Every list, bounded by `limit`: what the sweep kept, what goes, the policy's decisions,
    /// the problems.
    fn lists_text(&self, o: &mut String, heading: &str, limit: usize) {
        if !self.kept_at_sweep.is_empty() {
            let _ = writeln!(o, "\nkept at sweep:");
            for k in self.kept_at_sweep.iter().take(limit) {
                let _ = writeln!(o, "  {}  {}", k.path.display(), k.message);
            }
            more(o, self.kept_at_sweep.len(), limit);
        }
        if !self.refused_tags.is_empty() {
            let _ = writeln!(o, "\ntags the policy would delete (refused: none was):");
            for t in self.refused_tags.iter().take(limit) {
                let _ = writeln!(o, "  {}:{}  rule {:?}", t.repository, t.tag, t.rule);
            }
            more(o, self.refused_tags.len(), limit);
        }
        if !self.plan.tags_deleted.is_empty() {
            let _ = writeln!(o, "\ntags {heading}:");
            let shown = &self.plan.tags_deleted[..limit.min(self.plan.tags_deleted.len())];
            let w = width(shown.iter().map(|t| t.repository.len() + 1 + t.tag.len()));
            for t in shown {
                let d = t
                    .digest
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into());
                let age = t.age_seconds.map(human_age).unwrap_or_else(|| "?".into());
                let name = format!("{}:{}", t.repository, t.tag);
                let _ = writeln!(o, "  {name:<w$}  {d}  age {age:>4}  rule {:?}", t.rule);
            }
            more(o, self.plan.tags_deleted.len(), limit);
            // A blob two rules' images share counts in each: these may sum to more than freed.
            let _ = writeln!(
                o,
                "
by rule (planned blob bytes each rule's images reach):"
            );
            let w = width(self.rules_freed.iter().map(|r| r.rule.len() + 2));
            for r in &self.rules_freed {
                let name = format!("{:?}", r.rule);
                let tags = if r.tags == 1 { "tag " } else { "tags" };
                let bytes = human_bytes(r.bytes);
                let _ = writeln!(o, "  {name:<w$}  {:>6} {tags}  {bytes:>10}", r.tags);
            }
        }
        if !self.plan.manifests_deleted.is_empty() {
            let _ = writeln!(o, "\nmanifests {heading}:");
            for m in self.plan.manifests_deleted.iter().take(limit) {
                let _ = writeln!(o, "  {}@{}  ({})", m.repository, m.digest, m.reason);
            }
            more(o, self.plan.manifests_deleted.len(), limit);
        }
        if !self.plan.layer_links_deleted.is_empty() {
            let _ = writeln!(o, "\nlayer links {heading}:");
            let shown = self.plan.layer_links_deleted.iter().take(limit);
            let w = width(shown.clone().map(|l| l.repository.len()));
            for l in shown {
                let _ = writeln!(o, "  {:<w$}  {}", l.repository, l.digest);
            }
            more(o, self.plan.layer_links_deleted.len(), limit);
        }
        if !self.plan.tag_index_entries_deleted.is_empty() {
            let _ = writeln!(o, "\ntag index entries (tag history) {heading}:");
            let all = &self.plan.tag_index_entries_deleted;
            let shown = &all[..limit.min(all.len())];
            let name = |l: &crate::gc::plan::LinkRemoval| {
                format!("{}:{}", l.repository, l.tag.as_deref().unwrap_or("?"))
            };
            let w = width(shown.iter().map(|l| name(l).len()));
            for l in shown {
                let _ = writeln!(o, "  {:<w$}  {}", name(l), l.digest);
            }
            more(o, self.plan.tag_index_entries_deleted.len(), limit);
        }
        if !self.plan.blobs_deleted.is_empty() {
            let _ = writeln!(o, "\nblobs {heading}:");
            for b in self.plan.blobs_deleted.iter().take(limit) {
                let _ = writeln!(
                    o,
                    "  {}  {:>10}  {}",
                    b.digest(),
                    human_bytes(b.size()),
                    if b.linked_from.is_empty() {
                        "linked from no repository".to_string()
                    } else {
                        b.linked_from.join(", ")
                    }
                );
            }
            more(o, self.plan.blobs_deleted.len(), limit);
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
            more(o, self.plan.uploads_deleted.len(), limit);
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
            more(o, self.errors.len(), limit);
        }
    }
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
        .for_each(|l| rows.entry(l.repository).or_default().links += 1);
    (plan.uploads_deleted.iter()).for_each(|u| rows.entry(&u.repository).or_default().uploads += 1);
    for b in plan.blobs_deleted.iter() {
        let from: Vec<&str> = if b.linked_from.is_empty() {
            vec!["(no repository)"]
        } else {
            b.linked_from.iter().map(|r| &**r).collect()
        };
        for r in from {
            let row = rows.entry(r).or_default();
            row.blobs += 1;
            row.bytes += b.size();
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
        if let Some(rs) = &r.restart {
            let how = match (&rs.error, rs.exit_code) {
                (Some(e), _) => e.clone(),
                (None, Some(0)) => "exited 0: the registry forgot what was swept".into(),
                (None, Some(c)) => format!("exited {c}: RESTART the registry before the next push"),
                (None, None) => {
                    "killed by a signal: RESTART the registry before the next push".into()
                }
            };
            let _ = writeln!(o, "  restarted      {}: {how}", rs.command);
        }
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
    for e in (errors.iter()).filter(|e| findings && e.kind.is_registry()) {
        let _ = writeln!(o, "  registry       {} [{}]", e.message, e.kind);
    }
}

/// `2,251 (LIST 263, GET 1,988, HEAD 0, PUT 0, COPY 0, DELETE 0)`: what a run cost an object store.
/// With `; N in flight at most`, and when the store throttled, how far regsweep slowed down.
pub fn requests_line(r: &Requests) -> String {
    let mut s = format!(
        "{} (LIST {}, GET {}, HEAD {}, PUT {}, COPY {}, DELETE {}); {} in flight at most",
        r.total(),
        r.list,
        r.get,
        r.head,
        r.put,
        r.copy,
        r.delete,
        r.peak_in_flight
    );
    if r.throttled > 0 {
        s += &format!(
            "; the store throttled {} (503 SlowDown): slowed to {} in flight",
            plural(r.throttled as usize, "request", "requests"),
            r.lowest_in_flight
        );
    }
    if r.retried > 0 {
        s += &format!(
            "; {} answered 5xx or failed to connect, retried with backoff",
            plural(r.retried as usize, "attempt", "attempts")
        );
    }
    s
}

/// What the images in use and the ledger protected, in a few lines.
pub(super) fn used_lines(o: &mut String, u: &crate::model::inuse::UsedSummary) {
    if u.references > 0 {
        let _ = writeln!(
            o,
            "  in use         {} references: {} protected, {} protected from -m; {} of other hosts ignored, {} name nothing here{}",
            u.references,
            plural(u.tags_protected, "tag", "tags"),
            plural(u.manifests_protected.len(), "manifest", "manifests"),
            u.other_hosts,
            u.unresolved,
            if u.skipped > 0 {
                format!(", {} entries were no reference", u.skipped)
            } else {
                String::new()
            }
        );
    } else if !u.manifests_protected.is_empty() || u.tags_protected > 0 {
        let _ = writeln!(
            o,
            "  pulled lately  {} and {} protected",
            plural(u.tags_protected, "tag", "tags"),
            plural(u.manifests_protected.len(), "manifest", "manifests")
        );
    }
    for st in u.ledger.iter().flatten() {
        let _ = writeln!(
            o,
            "  ledger         {} {} proves {}",
            st.instance, st.source, st.intervals
        );
    }
}

/// The width of a list's first column: its longest entry. (A table crate would also draw
/// borders and wrap to the terminal; these lists stay plain columns for grep and mail.)
fn width(lengths: impl Iterator<Item = usize>) -> usize {
    lengths.max().unwrap_or(0)
}
