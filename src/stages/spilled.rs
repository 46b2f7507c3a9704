//! The bounded mode's repository scan: each repository's layer links go to a spill file as soon
//! as it is read, and come back mapped, so that the model holds none of them; and what a spill
//! file that cannot be written stops the run with.

use super::read::{Findings, ScanOptions};
use crate::error::{Error, Result};
use crate::model::paths::Paths;
use crate::model::{Blob, Repo};
use crate::spill::SpillFile;
use crate::storage::seam::Folder;
use rayon::prelude::*;
use std::path::Path;
use std::sync::Mutex;

/// What every repository is read with.
pub(super) struct At<'a, F: Folder> {
    pub repos_dir: &'a F,
    pub paths: &'a Paths,
    pub findings: &'a Findings,
    pub opts: ScanOptions,
    pub blobs: &'a [Blob],
}

/// Reads the repositories `names` in parallel, spilling each one's layer links.
pub(super) fn scan_repositories<F: Folder>(at: &At<F>, names: Vec<String>) -> Result<Vec<Repo>> {
    let dir = crate::spill::dir();
    let file =
        SpillFile::create(&dir, at.opts.memory.disk_cap).map_err(|e| spill_error(&dir, e))?;
    let file = Mutex::new((file, None));
    let mut repos: Vec<(Repo, u64, usize)> = names
        .into_par_iter()
        .map(|name| {
            let (f, p, o) = (at.findings, at.paths, at.opts);
            let mut repo = super::repository::scan_repo(at.repos_dir, p, name, f, o, at.blobs);
            let links = std::mem::take(&mut repo.layers);
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            let (file, failed) = &mut *f;
            let start = match failed {
                Some(_) => 0,
                None => file.append(&links).unwrap_or_else(|e| {
                    *failed = Some(e);
                    0
                }),
            };
            (repo, start, links.len())
        })
        .collect();
    let (file, failed) = file.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = failed {
        return Err(spill_error(&dir, e));
    }
    let map = file.map().map_err(|e| spill_error(&dir, e))?;
    for (repo, start, len) in &mut repos {
        repo.layers = crate::spill::list(map.as_ref(), *start, *len);
    }
    let mut repos: Vec<Repo> = repos.into_iter().map(|(r, ..)| r).collect();
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(repos)
}

/// A spill file that cannot be written: the run stops before it plans.
pub(super) fn spill_error(dir: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: dir.to_path_buf(),
        cause: std::io::Error::new(
            e.kind(),
            format!(
                "cannot write the bounded mode's spill file here ({}); nothing was planned or deleted: free space there, or set TMPDIR to a folder with room (about 60 bytes a blob)",
                crate::error::io_cause(&e)
            ),
        ),
    }
}
