//! `check --verify-digests`: every blob hashed and compared with its name.

use super::read::Findings;
use crate::model::FindingKind;
use crate::model::digest::Digest;
use crate::model::paths::Paths;
use crate::model::{Finding, Layout, Severity};
use crate::progress::Progress;
use crate::storage::seam::{Folder, ReadError, Storage};
use rayon::prelude::*;
use std::io::{self, Read};
use std::path::PathBuf;

/// What `--verify-digests` found, and how fast it read.
#[derive(Debug, Default)]
pub struct Verified {
    pub blobs: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub findings: Vec<Finding>,
}

/// Hashes every blob in parallel and compares it with its name.
pub fn verify_digests<S: Storage>(store: &S, layout: &Layout, progress: &dyn Progress) -> Verified {
    use sha2::{Digest as _, Sha256};
    let paths = Paths::new(layout.v2.clone());
    let rel = Paths::new(PathBuf::new());
    let v2h = store.top();
    let started = std::time::Instant::now();
    let bar = progress.bytes_bar("verifying digests", layout.total_bytes());
    let findings = Findings::default();
    let bytes = std::sync::atomic::AtomicU64::new(0);
    layout.blobs.par_iter().for_each_init(
        || vec![0u8; 1 << 20],
        |buf, blob| {
            let path = paths.blob_data(&blob.digest);
            let mut hasher = Sha256::new();
            let opened = v2h.open_file(rel.blob_data(&blob.digest)).map_err(|e| match e {
                ReadError::Io(e) => e,
                other => io::Error::other(other.to_string()),
            });
            let result = opened.and_then(|(mut f, _)| loop {
                let n = f.read(buf)?;
                if n == 0 {
                    return Ok(());
                }
                hasher.update(&buf[..n]);
                bar.inc(n as u64);
                bytes.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            });
            match result {
                Err(e) => findings.add(&path, Severity::Damage, FindingKind::Unreadable, None, format!("cannot read blob: {e}")),
                Ok(()) => {
                    let got = Digest(hasher.finalize().into());
                    if got != blob.digest {
                        findings.add(
                            &path,
                            Severity::Damage, FindingKind::DigestMismatch,
                            None,
                            format!("content hashes to {got}, not to its name: pulls of it fail verification"),
                        );
                    }
                }
            }
        },
    );
    bar.finish();
    let mut findings = findings.into_vec();
    findings.sort_by(|a, b| a.path.cmp(&b.path));
    Verified {
        blobs: layout.blobs.len() as u64,
        bytes: bytes.into_inner(),
        seconds: started.elapsed().as_secs_f64(),
        findings,
    }
}
