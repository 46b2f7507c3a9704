//! The manifests the links name, read (or answered by the manifest cache) and parsed, and the
//! images' `created` dates for policies that count ages from them.

use crate::model::catalog;
use crate::model::digest::Digest;
use crate::model::manifest::{self, MAX_MANIFEST_BYTES};
use crate::model::paths::Paths;
use crate::model::{Layout, Manifests, Time};
use crate::progress::Progress;
use crate::stages::cache::Cache;
use crate::storage::seam::{Folder, ReadError, Storage};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;

/// Reads and parses the manifest blobs that links name, in parallel; then the children those
/// name, until none is left. Each blob is read once however many repositories share it.
pub fn load_manifests<S: Storage>(
    store: &S,
    layout: &Layout,
    cache: Option<&Cache>,
    progress: &dyn Progress,
) -> Manifests {
    let rel = Paths::new(PathBuf::new());
    let v2h = store.top();
    // The first round names manifests by blob index where it can: an eighth of the memory of
    // collecting every link's digest. Digests that are no blob (missing manifests) wait apart.
    let mut present: Vec<u32> = Vec::new();
    let mut wanted: Vec<Digest> = Vec::new();
    let named = layout.repos.iter().flat_map(|r| {
        (r.revisions.iter().map(|l| l.digest))
            .chain(r.tags.iter().filter_map(|t| t.current.map(|c| c.digest)))
    });
    for d in named {
        match crate::model::values::position(&layout.blobs, &d) {
            Ok(i) => present.push(i as u32),
            Err(_) => wanted.push(d),
        }
    }
    present.par_sort_unstable();
    present.dedup();
    present.shrink_to_fit();

    let mut out = catalog::Builder::new(&layout.blobs);
    let bar = progress.bar("reading manifests", present.len() as u64);
    let mut next = Vec::new();
    // In chunks, so that parsed manifests waiting to enter the catalog stay few.
    let load = |chunk: &[Digest], out: &mut catalog::Builder, next: &mut Vec<Digest>| {
        let loaded: Vec<(Vec<Digest>, catalog::Prepared)> = chunk
            .par_iter()
            .map(|d| {
                // The cache answers only for a manifest whose blob the scan has just found (a
                // missing one must still be reported missing); anything it lacks is read.
                let in_store = || crate::model::values::position(&layout.blobs, d).is_ok();
                let r = match cache.filter(|_| in_store()).and_then(|c| c.get(d)) {
                    Some(m) => Ok(m),
                    None => {
                        let r = read_manifest(v2h, &rel, d).and_then(|b| manifest::parse(&b));
                        if let (Some(c), Ok(m)) = (cache, &r) {
                            c.add(*d, m);
                        }
                        r
                    }
                };
                bar.inc(1);
                let children = r.as_ref().map_or(Vec::new(), |m| m.children.clone());
                (children, catalog::prepare(&layout.blobs, *d, r))
            })
            .collect();
        for (children, p) in loaded {
            next.extend(children);
            out.add_prepared(p);
        }
    };
    // The manifests of the next chunk are fetched while this one is parsed: an object store
    // keeps many requests in flight, and the reads below are answered from memory.
    let in_store = |d: &Digest| crate::model::values::position(&layout.blobs, d).is_ok();
    let to_read = |chunk: &[Digest]| -> Vec<String> {
        (chunk.iter())
            .filter(|d| !(cache.is_some_and(|c| c.holds(d)) && in_store(d)))
            .map(|d| rel.blob_data(d).to_string_lossy().into_owned())
            .collect()
    };
    let chunks: Vec<Vec<Digest>> = (present.chunks(4096))
        .map(|c| c.iter().map(|&i| layout.blobs[i as usize].digest).collect())
        .collect();
    drop(present);
    if let Some(first) = chunks.first() {
        v2h.prefetch_files(&to_read(first), MAX_MANIFEST_BYTES);
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let ahead = || {
            if let Some(next) = chunks.get(i + 1) {
                v2h.prefetch_files(&to_read(next), MAX_MANIFEST_BYTES);
            }
        };
        rayon::join(ahead, || load(chunk, &mut out, &mut next));
    }
    drop(chunks);
    // Then what the links name but the store lacks, and index children, until none is left.
    wanted.append(&mut next);
    while !wanted.is_empty() {
        wanted.par_sort_unstable();
        wanted.dedup();
        wanted.retain(|d| !out.contains(d));
        bar.inc_length(wanted.len() as u64);
        for chunk in wanted.chunks(4096) {
            v2h.prefetch_files(&to_read(chunk), MAX_MANIFEST_BYTES);
            load(chunk, &mut out, &mut next);
        }
        wanted = std::mem::take(&mut next);
    }
    bar.finish();
    out.finish()
}

/// Manifest `d` read from storage and parsed, as the scan reads it.
pub fn read_parsed_manifest<S: Storage>(
    store: &S,
    d: &Digest,
) -> std::result::Result<crate::model::manifest::Manifest, String> {
    read_manifest(store.top(), &Paths::new(PathBuf::new()), d).and_then(|b| manifest::parse(&b))
}

/// The bytes of manifest blob `d`, read through the layout's handle: a symlink, FIFO or device
/// there is damage, never followed or waited on, and the read is bounded.
pub(super) fn read_manifest<F: Folder>(
    v2h: &F,
    rel: &Paths,
    d: &Digest,
) -> std::result::Result<Vec<u8>, String> {
    v2h.read_small(rel.blob_data(d), MAX_MANIFEST_BYTES)
        .map_err(|e| match e {
            ReadError::Missing => "manifest blob is missing".to_string(),
            ReadError::TooLarge(n) => format!("{n} bytes: too large to be a manifest"),
            other => format!("manifest blob {other}"),
        })
}

/// Reads the `created` time of the image config of every manifest that a tag names, for
/// policies that count age from it. Manifests without a config (indexes) have none.
pub fn load_created<S: Storage>(store: &S, layout: &Layout) -> HashMap<Digest, Time> {
    let rel = Paths::new(PathBuf::new());
    let v2h = store.top();
    let mut wanted: Vec<(Digest, Digest)> = layout
        .repos
        .iter()
        .flat_map(|r| r.tags.iter().filter_map(|t| t.current))
        .filter_map(|c| match layout.manifest(&c.digest) {
            Some(Ok(m)) => m.config().map(|cfg| (c.digest, cfg)),
            _ => None,
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
        .par_iter()
        .filter_map(|(m, cfg)| {
            // Configs are small; a huge "config" is not one worth reading for a date.
            let bytes = v2h
                .read_small(rel.blob_data(cfg), MAX_MANIFEST_BYTES)
                .ok()?;
            manifest::parse_created(&bytes).map(|t| (*m, t))
        })
        .collect()
}
