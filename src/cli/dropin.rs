//! The `garbage-collect` drop-in's arguments: the reference command's flags, read as Go's
//! `flag` package reads them, turned into gc's.

use super::args::{CacheArgs, FormatArg, GcArgs, RootArgs};
use crate::model::duration::Span;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DropInArgs {
    /// Report what would be deleted; delete nothing (`--dry-run=false` too, as Go's flags take).
    #[arg(long, short = 'd', num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", action = clap::ArgAction::Set,
        value_parser = go_bool)]
    pub dry_run: bool,
    /// Delete manifests that are not currently referenced via tag.
    #[arg(long, short = 'm', num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", action = clap::ArgAction::Set,
        value_parser = go_bool)]
    pub delete_untagged: bool,
    /// Silence output.
    #[arg(long, short = 'q', num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", action = clap::ArgAction::Set,
        value_parser = go_bool)]
    pub quiet: bool,
    /// The registry's config file.
    pub config: PathBuf,
}

/// A bool as Go's `strconv.ParseBool` reads it, which is how the reference's flags take
/// `--dry-run=VALUE`.
fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "{text:?} is not a bool; as the reference's flags, give 1, t, T, TRUE, true, True, 0, f, F, FALSE, false or False"
        )),
    }
}

impl DropInArgs {
    /// The reference command's meaning, with regsweep's defaults (grace 1h, damage stops sweeping).
    pub fn into_gc(self) -> GcArgs {
        GcArgs {
            root: RootArgs {
                root: None,
                config: Some(self.config),
                endpoint: None,
                s3_concurrency: None,
                max_requests_per_second: None,
                request_timeout: None,
            },
            cache: CacheArgs::default(),
            memory: Default::default(),
            limit: 20,
            all: false,
            dry_run: self.dry_run,
            delete_untagged: self.delete_untagged.then_some(Span::ZERO),
            grace: Span::from_secs(3600),
            allow_damage: false,
            purge_uploads: None,
            report: None,
            format: FormatArg::Text,
            jobs: None,
            quiet: self.quiet,
            policy: None,
            repository: Vec::new(),
            explain: false,
            force: false,
            metrics: None,
            break_lock: false,
            trash: None,
            registry_url: None,
            risk_stale_cache: false,
            restart_command: None,
            registry_stopped: false,
            proxy_ttl: None,
            used: super::UsedArgs::default(),
            // Only printed when not quiet: not built when it would not be.
            reference_output: !self.quiet,
        }
    }
}
