//! The `report` command: the JSON reports of `du`, `gc --dry-run` and `pulls status`, each
//! checked to be what it is said to be, made into one HTML page written whole. A command of
//! its own (not an `--html` on each) so that the page can be made from reports a cron job
//! already writes, on another machine, without reading the registry again.

use crate::error::{Error, Result};
use crate::report::page::{Inputs, PlanReport, render};
use std::path::{Path, PathBuf};

pub struct PageConfig {
    pub du: Option<PathBuf>,
    pub plan: Option<PathBuf>,
    pub pulls: Option<PathBuf>,
    /// Outputs of `du --by tag REPO --format json`.
    pub du_tags: Vec<PathBuf>,
    pub out: PathBuf,
}

/// What was written, for the one line the CLI prints.
pub struct PageWritten {
    pub out: PathBuf,
    pub bytes: usize,
}

/// Reads a report, refusing one of another schema (a gc report given as --du, a truncated file).
fn read(path: &Path, schema: &str, made_by: &str) -> Result<serde_json::Value> {
    read_as(path, schema, made_by, |b| serde_json::from_slice(b), |v| v)
}

/// `read`, parsed by `parse`; `value` is the part that holds its schema.
fn read_as<T>(
    path: &Path,
    schema: &str,
    made_by: &str,
    parse: impl Fn(&[u8]) -> serde_json::Result<T>,
    value: impl Fn(&T) -> &serde_json::Value,
) -> Result<T> {
    let bad = |message: String| Error::Input {
        path: path.to_path_buf(),
        message,
    };
    let bytes = crate::storage::dirfd::read_path(path, 1 << 30)
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    let t = parse(&bytes)
        .map_err(|e| bad(format!("not JSON ({e}): give the output of `{made_by}`")))?;
    let v = value(&t);
    let got = v["schema"].as_str().unwrap_or("none");
    if !got.starts_with(schema) {
        return Err(bad(format!(
            "its schema is {got:?}, not {schema}*: give the output of `{made_by}`"
        )));
    }
    Ok(t)
}

pub fn run(cfg: &PageConfig) -> Result<PageWritten> {
    let input = |p: &Option<PathBuf>, schema, made_by| {
        p.as_deref().map(|p| read(p, schema, made_by)).transpose()
    };
    let inputs = Inputs {
        du: input(&cfg.du, "regsweep/du-report/", "regsweep du --format json")?,
        plan: (cfg.plan.as_deref())
            .map(|p| {
                let made_by = "regsweep gc --dry-run --format json --report FILE";
                read_as(
                    p,
                    "regsweep/gc-report/",
                    made_by,
                    PlanReport::from_slice,
                    |r| &r.report,
                )
            })
            .transpose()?,
        pulls: input(
            &cfg.pulls,
            "regsweep/pulls-status/",
            "regsweep pulls status --format json",
        )?,
        tags: Vec::new(),
    };
    let mut inputs = inputs;
    for p in &cfg.du_tags {
        let v = read(
            p,
            "regsweep/du-report/",
            "regsweep du --by tag REPO --format json",
        )?;
        if !v["tags"].is_array() || !v["repository"].is_string() {
            return Err(Error::Input {
                path: p.clone(),
                message: "a du report without tags: give the output of `regsweep du --by tag REPO --format json`".into(),
            });
        }
        inputs.tags.push(v);
    }
    if inputs.du.is_none() && inputs.plan.is_none() && inputs.pulls.is_none() {
        return Err(Error::Usage(
            "report: give at least one of --du, --plan, --pulls".into(),
        ));
    }
    let page = render(&inputs);
    crate::output::write_whole(&cfg.out, page.as_bytes()).map_err(|e| Error::io(&cfg.out, e))?;
    Ok(PageWritten {
        out: cfg.out.clone(),
        bytes: page.len(),
    })
}
