//! The `policy check` command: a policy file validated, and with a root, a preview of what it
//! would delete there.

use crate::commands::gc;
use crate::config::{Format, GcConfig, Location};
use crate::error::{ExitCode, Result};
use crate::policy::Policy;
use crate::units::plural;
use std::path::PathBuf;

/// `policy check`, validated.
pub struct PolicyCheckConfig {
    pub file: PathBuf,
    /// Preview on this storage; without it, only validate.
    pub root: Option<Location>,
    pub explain: bool,
    pub format: Format,
}

/// `policy check`: validate, then preview per repository when a root is given.
/// Validates a policy file and, with a root, previews what it would delete there.
pub fn run(a: &PolicyCheckConfig) -> Result<(String, ExitCode)> {
    let started = chrono::Utc::now();
    let policy = Policy::load(&a.file)?;
    let json = a.format == Format::Json;
    let Some(root) = &a.root else {
        if json {
            let report = crate::report::PolicyFileReport::new(&a.file, &policy, started);
            let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
            return Ok((text, ExitCode::Ok));
        } else {
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
            let untagged = match policy.untagged_older_than {
                Some(age) => format!(", untagged manifests go after {age}"),
                None => String::new(),
            };
            let text = format!(
                "{}: valid: {rules}, age_from: {}, {}, {}{untagged}\n",
                a.file.display(),
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
            );
            return Ok((text, ExitCode::Ok));
        }
    };
    let cfg = GcConfig {
        delete_untagged: policy.untagged_older_than.is_some(),
        untagged_older_than: policy.untagged_older_than,
        policy: Some(policy.clone()),
        ..GcConfig::planning(root.clone())
    };
    let now = chrono::Utc::now().timestamp();
    let job = gc::Preview { cfg: &cfg, now };
    let (v2, plan, explain) = root.open(&job, &crate::progress::Hidden)?;
    let preview =
        crate::report::PolicyPreview::new(&a.file, &policy, started, &v2, &plan, &explain);
    let text = if json {
        let mut v = serde_json::to_value(&preview).unwrap_or_default();
        if !a.explain {
            v.as_object_mut().map(|o| o.remove("explain"));
        }
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    } else {
        preview.to_text(a.explain)
    };
    let code = if preview.refused.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Error
    };
    Ok((text, code))
}
