//! The `policy check` command: a policy file validated, and with a root, a preview of what it
//! would delete there.

use crate::commands::gc;
use crate::config::{Format, GcConfig, Location};
use crate::error::{ExitCode, Result};
use crate::policy::Policy;
use crate::report::{PolicyFileReport, PolicyPreview, Report};
use crate::units::plural;
use std::path::PathBuf;

/// `policy check`, validated.
pub struct PolicyCheckConfig {
    pub file: PathBuf,
    /// Preview on this storage; without it, only validate.
    pub root: Option<Location>,
    pub explain: bool,
    pub format: Format,
    /// Images in use and the pull ledger, for the preview.
    pub used: crate::policy::used::Used,
}

/// What `policy check` found: the file valid (with what the text says of it), or a preview on
/// a root.
pub enum PolicyCheckReport {
    Valid {
        report: Box<PolicyFileReport>,
        /// The one line the text says.
        line: String,
    },
    Preview {
        preview: Box<PolicyPreview>,
        /// List every tag's verdict (text) and keep `explain` (JSON).
        explain: bool,
    },
}

/// Validates a policy file and, with a root, previews what it would delete there.
pub fn run(a: &PolicyCheckConfig) -> Result<PolicyCheckReport> {
    let started = chrono::Utc::now();
    let policy = Policy::load(&a.file)?;
    let Some(root) = &a.root else {
        return Ok(PolicyCheckReport::Valid {
            report: Box::new(PolicyFileReport::new(&a.file, &policy, started)),
            line: valid_line(&a.file, &policy),
        });
    };
    if policy.uses_pulls() && a.used.pulls.is_none() {
        return Err(crate::error::Error::Usage(format!(
            "{}: the policy has pull rules: give --ledger FILE for a preview",
            a.file.display()
        )));
    }
    let cfg = GcConfig {
        used: a.used.clone(),
        options: crate::gc::planfile::Options {
            // A budget or a quota frees space only as -m does: the preview shows what it takes.
            delete_untagged: policy.untagged_older_than.is_some()
                || policy.budget.is_some()
                || !policy.quotas.is_empty(),
            delete_untagged_older_than: policy.untagged_older_than.filter(|a| !a.is_zero()),
            ..Default::default()
        },
        policy: Some(policy.clone()),
        ..GcConfig::planning(root.clone())
    };
    let now = chrono::Utc::now().timestamp();
    let job = gc::Preview { cfg: &cfg, now };
    let (v2, plan, explain) = root.open(&job, &crate::progress::Hidden)?;
    let preview = PolicyPreview::new(&a.file, &policy, started, &v2, &plan, &explain);
    Ok(PolicyCheckReport::Preview {
        preview: Box::new(preview),
        explain: a.explain,
    })
}

/// What a valid policy holds, in one line.
fn valid_line(file: &std::path::Path, policy: &Policy) -> String {
    let names: Vec<&str> = policy.rules.iter().map(|r| r.name.as_str()).collect();
    let rules = if names.is_empty() {
        "no rules".to_string()
    } else {
        format!(
            "{} ({})",
            plural(names.len(), "rule", "rules"),
            names.join(", ")
        )
    };
    let mut untagged = match policy.untagged_older_than {
        Some(age) => format!(", untagged manifests go after {age}"),
        None => String::new(),
    };
    if let Some(b) = &policy.budget {
        untagged += &format!(
            ", budget high {} low {}",
            b.high.describe(),
            b.low.describe()
        );
    }
    if !policy.quotas.is_empty() {
        untagged += &format!(", {}", plural(policy.quotas.len(), "quota", "quotas"));
    }
    format!(
        "{}: valid: {rules}, age_from: {}, {}, {}{untagged}\n",
        file.display(),
        policy.age_from.word(),
        plural(
            policy
                .protect_tags
                .as_ref()
                .map_or(0, |m| m.patterns().len()),
            "protected tag pattern",
            "protected tag patterns"
        ),
        plural(
            policy.protect_digests.len(),
            "protected digest",
            "protected digests"
        )
    )
}

impl Report for PolicyCheckReport {
    fn text(&self, _limit: Option<usize>) -> String {
        match self {
            PolicyCheckReport::Valid { line, .. } => line.clone(),
            PolicyCheckReport::Preview { preview, explain } => preview.to_text(*explain),
        }
    }
    fn json(&self) -> String {
        match self {
            PolicyCheckReport::Valid { report, .. } => crate::report::pretty(report),
            PolicyCheckReport::Preview { preview, explain } => {
                let mut v = serde_json::to_value(preview).unwrap_or_default();
                if !explain {
                    v.as_object_mut().map(|o| o.remove("explain"));
                }
                crate::report::pretty(&v)
            }
        }
    }
    /// 1 when the policy's safety net would refuse it on the root.
    fn exit_code(&self) -> ExitCode {
        match self {
            PolicyCheckReport::Preview { preview, .. } if !preview.refused.is_empty() => {
                ExitCode::Error
            }
            _ => ExitCode::Ok,
        }
    }
}
