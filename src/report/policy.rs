//! The reports of `policy check`: a file validated, and a preview of what it would do on a root.

use super::*;

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
        let pulled = match &e.last_pulled_at {
            Some(t) => format!("  last pull {t}"),
            None => String::new(),
        };
        let _ = writeln!(
            o,
            "    {:<7} {:<24} age {:>5}{pulled}  {}",
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
    /// What the images in use and the pull ledger protected, as in gc's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<crate::model::inuse::UsedSummary>,
    /// What the budget and quotas would take here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub space: Vec<crate::model::space::SpaceState>,
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
            used: plan.used.clone(),
            space: plan.space.clone(),
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
        super::space::space_lines(&mut o, &self.space, "would delete");
        if let Some(u) = &self.used {
            super::text::used_lines(&mut o, u);
        }
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
