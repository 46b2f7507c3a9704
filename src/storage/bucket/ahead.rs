//! Requests made ahead, many in flight at once on the backend's runtime (the gate bounds them):
//! files fetched before the stages read them, folders listed before the stages open them, and a
//! large prefix listed as many ranges at once instead of one chain of pages.

use super::client::*;
use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Key ranges a prefix of many small names is listed in at most.
const MAX_RANGES: usize = 256;
/// Levels of names a prefix is split along at most.
const MAX_DEPTH: usize = 4;

impl Inner {
    /// GETs every key at once (the gate bounds the requests in flight), keeping each body up
    /// to `limit` bytes for `take_file`.
    pub(super) fn fetch_files(&self, keys: Vec<String>, limit: u64) {
        self.block(async {
            let gets = keys.into_iter().map(|key| async move {
                let got = self.fetch_one(&key, limit).await;
                if let Ok((b, _)) = &got {
                    let held = self.ahead.held.fetch_add(b.len() as u64, Ordering::Relaxed);
                    if held + b.len() as u64 > BUDGET {
                        self.ahead.held.fetch_sub(b.len() as u64, Ordering::Relaxed);
                        return;
                    }
                }
                (self.ahead.files.lock().unwrap_or_else(|e| e.into_inner())).insert(key, got);
            });
            futures_util::stream::iter(gets)
                .buffer_unordered(self.gate_width())
                .collect::<Vec<()>>()
                .await;
        });
    }

    async fn fetch_one(&self, key: &str, limit: u64) -> Fetched {
        let path = key_path(key).map_err(|e| Miss::Failed(e.kind(), e.to_string()))?;
        let fail = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => Miss::Missing,
            e => {
                let e = self.failed(e);
                Miss::Failed(e.kind(), e.to_string())
            }
        };
        let got = self.store.get(&path).await.map_err(fail)?;
        let meta = Obj::from(got.meta.clone());
        if meta.size > limit {
            return Err(Miss::TooLarge(meta.size));
        }
        let bytes = got.bytes().await.map_err(fail)?;
        if bytes.len() as u64 > limit {
            return Err(Miss::TooLarge(bytes.len() as u64));
        }
        Ok((bytes, meta))
    }

    /// Lists every prefix whole, all at once, for `take_listing`.
    pub(super) fn fetch_listings(&self, prefixes: Vec<String>) {
        let started = std::time::Instant::now();
        let n = prefixes.len();
        let _guard = Finished(started, n);
        self.block(async {
            let lists = prefixes.into_iter().map(|p| async move {
                let r = self.list_wide_async(p.clone(), 0).await;
                let r = r.map(Arc::new).map_err(|e| (e.kind(), e.to_string()));
                (self
                    .ahead
                    .listings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()))
                .insert(p, r);
            });
            futures_util::stream::iter(lists)
                .buffer_unordered(self.gate_width())
                .collect::<Vec<()>>()
                .await;
        });
    }

    /// Tasks started at once: as many as may be in flight, so that the gate stays full.
    fn gate_width(&self) -> usize {
        self.gate.max().max(1)
    }

    /// Every object below `prefix`, as `list_all`, but a prefix of more than one page is listed
    /// in parts at once, cut at the names a delimiter listing finds below it: the chain of pages
    /// that must follow one another is a part's, not the whole prefix's.
    pub(super) fn list_wide(&self, prefix: &str) -> io::Result<Vec<Obj>> {
        self.block(self.list_wide_async(prefix.to_string(), 0))
    }

    /// Parts: below a name of more than a page or two (a namespace, a large repository), each
    /// name on its own, recursively; among many small names (blob folders), key ranges of about
    /// two pages each.
    fn list_wide_async(
        &self,
        prefix: String,
        depth: usize,
    ) -> futures_util::future::BoxFuture<'_, io::Result<Vec<Obj>>> {
        Box::pin(async move {
            let key = key_path(prefix.trim_end_matches('/'))?;
            // One page says whether there is more than one.
            let mut first = Vec::new();
            let mut stream = self.store.list(Some(&key));
            while first.len() < 1000 {
                match stream.next().await {
                    Some(m) => first.push(Obj::from(m.map_err(|e| self.failed(e))?)),
                    None => return Ok(sorted(first)),
                }
            }
            drop(stream);
            let (bounds, mut out) = self.children(&prefix).await?;
            if bounds.len() < 2 || depth >= MAX_DEPTH {
                return self.list_all_async(&prefix).await;
            }
            let last = &first[first.len() - 1].key;
            let in_first = bounds
                .partition_point(|b| b.as_str() <= last.as_str())
                .max(1);
            let parts = if in_first <= 2 {
                // Names of a page or more each: each listed on its own, split again if large.
                let lists = bounds
                    .into_iter()
                    .map(|b| self.list_wide_async(b, depth + 1));
                futures_util::future::try_join_all(lists).await?
            } else {
                // Many small names: ranges of about two pages.
                let per = (2 * in_first).max(bounds.len().div_ceil(MAX_RANGES));
                let starts: Vec<&String> = bounds.iter().step_by(per).collect();
                let lists = (0..starts.len()).map(|i| {
                    let end = starts.get(i + 1).map(|s| s.as_str());
                    self.list_range(&prefix, starts[i], end)
                });
                futures_util::future::try_join_all(lists).await?
            };
            out.extend(parts.into_iter().flatten());
            Ok(sorted(out))
        })
    }

    /// A delimiter listing: the prefixes (ending in `/`) and the objects directly below.
    async fn children(&self, prefix: &str) -> io::Result<(Vec<String>, Vec<Obj>)> {
        let key = key_path(prefix.trim_end_matches('/'))?;
        let listed = self
            .store
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| self.failed(e))?;
        let prefixes = (listed.common_prefixes.iter())
            .map(|p| format!("{p}/"))
            .collect();
        Ok((
            prefixes,
            listed.objects.into_iter().map(Obj::from).collect(),
        ))
    }

    /// The objects from `start` (a prefix below `prefix`) up to `end` (excluded).
    async fn list_range(
        &self,
        prefix: &str,
        start: &str,
        end: Option<&str>,
    ) -> io::Result<Vec<Obj>> {
        let key = key_path(prefix.trim_end_matches('/'))?;
        // Listing starts after the offset: just before `start` (its final `/` as `.`, which
        // sorts right before it).
        let offset = key_path(&format!("{}.", start.trim_end_matches('/')))?;
        let mut stream = self.store.list_with_offset(Some(&key), &offset);
        let mut out = Vec::new();
        while let Some(m) = stream.next().await {
            let o = Obj::from(m.map_err(|e| self.failed(e))?);
            if end.is_some_and(|e| o.key.as_str() >= e) {
                break;
            }
            out.push(o);
        }
        Ok(out)
    }

    pub(super) async fn list_all_async(&self, prefix: &str) -> io::Result<Vec<Obj>> {
        let key = key_path(prefix.trim_end_matches('/'))?;
        let mut stream = self.store.list(Some(&key));
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            out.push(Obj::from(meta.map_err(|e| self.failed(e))?));
        }
        Ok(sorted(out))
    }
}

/// Sorted by key, each key once (ranges cut at names with a `.` may overlap).
fn sorted(mut v: Vec<Obj>) -> Vec<Obj> {
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v.dedup_by(|a, b| a.key == b.key);
    v
}

struct Finished(std::time::Instant, usize);
impl Drop for Finished {
    fn drop(&mut self) {
        tracing::debug!(
            prefixes = self.1,
            seconds = self.0.elapsed().as_secs_f64(),
            "listed ahead"
        );
    }
}
