//! The evidence of use, read from its files: `--keep-images` (and `protect.images_file`) and the
//! ledger, for gc, du and policy check; and read again by `apply`, which keeps what became used
//! or was pulled since its plan was made.

use crate::error::{Error, Result};
use crate::gc::planfile::Evidence;
use crate::model::inuse::Images;
use crate::model::pulls::stamp;
use crate::model::{Decision, Decisions, Layout};
use crate::policy::used::Used;
use std::path::{Path, PathBuf};

/// Reads every file of images in use (`-` is stdin, once). A file that names no image is
/// refused unless `empty_ok`: it is what a failed `kubectl get pods -o json > FILE` leaves.
pub fn read_images(files: &[PathBuf], empty_ok: bool) -> Result<Images> {
    let mut images = Images::default();
    let mut stdin_read = false;
    for file in files {
        let stdin = file == Path::new("-");
        let read = if stdin {
            if std::mem::replace(&mut stdin_read, true) {
                return Err(Error::Usage(
                    "--keep-images: `-` (stdin) given twice".into(),
                ));
            }
            crate::model::inuse::parse_reader(std::io::stdin().lock(), "stdin")
        } else {
            let f = open_file(file)?;
            crate::model::inuse::parse_reader(
                std::io::BufReader::new(f),
                &file.display().to_string(),
            )
        };
        let read = read.map_err(|message| Error::Input {
            path: file.clone(),
            message,
        })?;
        if read.refs.is_empty() && read.skipped.is_empty() && !empty_ok {
            return Err(Error::Input {
                path: file.clone(),
                message: "names no image in use (empty, or Kubernetes JSON without a container): if nothing runs, give --keep-images-empty-ok; else check the command that wrote it".into(),
            });
        }
        images.extend(read);
    }
    Ok(images)
}

/// A file of images, never a FIFO or device a read would block on; read as it streams.
fn open_file(file: &Path) -> Result<std::fs::File> {
    let cannot = |why: String| Error::Input {
        path: file.to_path_buf(),
        message: format!("cannot read the images in use: {why}"),
    };
    use std::os::unix::fs::OpenOptionsExt;
    // Opened without blocking, then judged by the handle: a FIFO swapped in is refused, not
    // waited on.
    let f = (std::fs::OpenOptions::new().read(true))
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
        .map_err(|e| cannot(e.to_string()))?;
    match f.metadata() {
        Ok(m) if m.is_file() => Ok(f),
        Ok(_) => Err(cannot("not a regular file".into())),
        Err(e) => Err(cannot(e.to_string())),
    }
}

/// What `apply` kept of the plan's tag deletions on the evidence read again: (tag, why).
pub fn recheck(
    ev: &Evidence,
    layout: &Layout,
    decisions: &mut Decisions,
    now: crate::model::Time,
) -> Result<Vec<(String, String)>> {
    let gone = |p: &Path, what: &str| Error::Input {
        path: p.to_path_buf(),
        message: format!(
            "the plan judged use by this {what}, which is gone: restore it, or make a new plan"
        ),
    };
    for f in &ev.images_files {
        if !f.exists() {
            return Err(gone(f, "file of images in use"));
        }
    }
    // Read as the plan read them: an empty file only when it was meant then too.
    let images = read_images(&ev.images_files, ev.images_empty_ok)?;
    let pulls = match &ev.ledger {
        Some(l) if !l.exists() => return Err(gone(l, "ledger")),
        Some(l) => Some(crate::ledger::Ledger::open_read(l)?.history()?),
        None => None,
    };
    let used = Used {
        images,
        hosts: ev.registry_hosts.clone(),
        pulls,
        ..Used::default()
    };
    let images = used.images_with(None);
    let prot = crate::policy::used::protection(layout, None, &used, &images, now);
    let mut kept = Vec::new();
    for (i, repo) in layout.repos.iter().enumerate() {
        for (j, tag) in repo.tags.iter().enumerate() {
            if !matches!(decisions.repos[i][j], Decision::Delete { .. }) {
                continue;
            }
            let name = format!("{}:{}", repo.name, tag.name);
            let current = tag.current.map(|c| c.digest);
            let pulled = (used.pulls.as_ref())
                .and_then(|p| p.tag_pulled(&repo.name, &tag.name, current.as_ref()))
                .filter(|&t| t >= ev.read_at);
            let why = match (prot.tags.get(&(i, j)), pulled) {
                (Some(w), _) => format!("kept: in use since the plan ({w})"),
                (None, Some(t)) => format!("kept: pulled since the plan (at {})", stamp(t)),
                (None, None) => continue,
            };
            decisions.repos[i][j] = Decision::Keep;
            kept.push((name, why));
        }
    }
    // Manifests in use by digest stay too, whatever -m planned.
    if decisions.pinned.len() < layout.repos.len() {
        decisions.pinned.resize_with(layout.repos.len(), Vec::new);
    }
    for (r, pins) in decisions.pinned.iter_mut().enumerate() {
        pins.extend(prot.pinned(r).copied());
    }
    Ok(kept)
}
