//! Removals on a bucket: each folder listed afresh, its items judged on that listing, batched
//! deletes with guards last, what did not go tried once more at once and once more at the end
//! of the stage; what still did not go is an error, never counted as removed.

use super::client::{Inner, Obj, below};
use std::io;
use std::path::PathBuf;

/// How an item is judged on its fresh listing: its guard files (deleted last), and the time
/// since which a write keeps it.
#[derive(Clone, Copy)]
pub(super) struct Judged<'a> {
    pub(super) guard: &'a [&'a str],
    pub(super) since_ns: i128,
}

use crate::storage::seam::NotDeleted;

fn not_deleted(cause: String) -> io::Error {
    io::Error::other(NotDeleted { cause, seen: true })
}

fn not_known(cause: String) -> io::Error {
    io::Error::other(NotDeleted { cause, seen: false })
}

fn not_deleted_of(e: &io::Error) -> Option<&NotDeleted> {
    e.get_ref()?.downcast_ref::<NotDeleted>()
}

fn cause_of(e: &io::Error) -> Option<&str> {
    not_deleted_of(e).map(|n| n.cause.as_str())
}

/// Whether the item whose keys (listed just now, below `item`) are `keys` goes: not when any
/// was written since the run began; `NotFound` when it has none. When it goes, its keys are
/// added to `rest` and `guards` (its `guard` files).
pub(super) fn judge(
    keys: &[Obj],
    item: &str,
    guard: &[&str],
    since_ns: i128,
    rest: &mut Vec<String>,
    guards: &mut Vec<String>,
) -> io::Result<bool> {
    if keys.is_empty() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    if keys.iter().any(|o| o.mtime_ns >= since_ns) {
        return Ok(false);
    }
    for o in keys {
        if guard.iter().any(|g| o.key[item.len()..] == **g) {
            guards.push(o.key.clone());
        } else {
            rest.push(o.key.clone());
        }
    }
    Ok(true)
}

type Outcome = Option<io::Result<Vec<io::Result<bool>>>>;

/// The items of many folders (`groups`, relative to `prefix`) at once, results in order; then
/// the items whose deletes did not land, once more after all the rest: a store that fell
/// behind (batches timing out behind others) has drained by then, under the bound their
/// failures cut, where an immediate retry queues behind the same backlog.
pub(super) fn groups(
    inner: &Inner,
    prefix: &str,
    groups: &[(PathBuf, Vec<String>)],
    judged: Judged<'_>,
    between: &(dyn Fn() + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> Vec<Outcome> {
    let names: Vec<&[String]> = groups.iter().map(|(_, n)| n.as_slice()).collect();
    let mut done = inner.block(pass(inner, prefix, groups, &names, judged, between, stop));
    // Which items of which groups are to be tried again.
    let again: Vec<Vec<usize>> = (done.iter())
        .map(|o| match o {
            Some(Ok(results)) => (results.iter().enumerate())
                .filter(|(_, r)| r.as_ref().err().and_then(cause_of).is_some())
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    if again.iter().all(Vec::is_empty) || stop() {
        return done;
    }
    let retry: Vec<Vec<String>> = (again.iter().zip(groups))
        .map(|(idx, (_, n))| idx.iter().map(|&i| n[i].clone()).collect())
        .collect();
    let retry_names: Vec<&[String]> = retry.iter().map(Vec::as_slice).collect();
    let count: usize = retry.iter().map(Vec::len).sum();
    tracing::info!(
        items = count,
        "deletes that did not land: once more, after the stage"
    );
    let later = inner.block(pass(
        inner,
        prefix,
        groups,
        &retry_names,
        judged,
        &|| {},
        stop,
    ));
    for ((outcome, idx), second) in done.iter_mut().zip(&again).zip(later) {
        let (Some(Ok(results)), Some(Ok(second))) = (outcome, second) else {
            continue;
        };
        for (&i, r2) in idx.iter().zip(second) {
            let first = results[i].as_ref().err().and_then(not_deleted_of);
            let seen = first.is_some_and(|n| n.seen);
            let first = first.map_or("", |n| n.cause.as_str());
            results[i] = match r2 {
                Ok(true) => Ok(true),
                // Its keys are gone: the first delete landed after all.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
                // Partly deleted, then written to: neither gone nor whole.
                Ok(false) => Err(not_deleted(format!(
                    "{first}; then written to since the run began"
                ))),
                Err(e) => {
                    // Still there, read back, or perhaps gone: whichever pass last saw it.
                    let again = not_deleted_of(&e);
                    let cause = format!(
                        "{first}; at the end of the stage: {}",
                        again.map_or_else(|| e.to_string(), |n| n.cause.clone())
                    );
                    match again.map_or(seen, |n| n.seen) {
                        true => Err(not_deleted(cause)),
                        false => Err(not_known(cause)),
                    }
                }
            };
        }
    }
    done
}

/// One pass over the folders: `names[i]` of `groups[i]`, many folders at once, each its fresh
/// listing then its batches, guards last, results in order. `-j 1` asks for one thing at a
/// time: one folder at a time, then.
async fn pass(
    inner: &Inner,
    prefix: &str,
    groups: &[(PathBuf, Vec<String>)],
    names: &[&[String]],
    judged: Judged<'_>,
    between: &(dyn Fn() + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> Vec<Outcome> {
    use futures_util::StreamExt;
    let each = groups
        .iter()
        .zip(names)
        .map(|((rel, _), names)| async move {
            if names.is_empty() {
                return Some(Ok(Vec::new()));
            }
            if stop() {
                return None;
            }
            let folder = match super::client::check_rel(rel) {
                Ok(r) => format!("{prefix}{r}/"),
                Err(e) => return Some(Err(e)),
            };
            Some(Ok(remove_in(inner, &folder, names, judged, between).await))
        });
    let width = if rayon::current_num_threads() == 1 {
        1
    } else {
        inner.gate.max()
    };
    futures_util::stream::iter(each)
        .buffered(width)
        .collect::<Vec<_>>()
        .await
}

/// The items `names` of the folder `prefix`: one fresh listing (what a push wrote since must
/// be seen), each item judged on it, then the batched deletes, guards last.
pub(super) async fn remove_in(
    inner: &Inner,
    prefix: &str,
    names: &[String],
    judged: Judged<'_>,
    between: &(dyn Fn() + Sync),
) -> Vec<io::Result<bool>> {
    let Judged { guard, since_ns } = judged;
    let listed = match inner.list_all_async(prefix).await {
        Ok(l) => l,
        Err(e) => {
            let why = e.to_string();
            return names
                .iter()
                .map(|_| Err(io::Error::other(why.clone())))
                .collect();
        }
    };
    let (mut rest, mut guards) = (Vec::new(), Vec::new());
    let mut results: Vec<io::Result<bool>> = names
        .iter()
        .map(|name| {
            let item = format!("{prefix}{name}/");
            let keys = below(&listed, &item);
            judge(keys, &item, guard, since_ns, &mut rest, &mut guards)
        })
        .collect();
    let Err(e) = inner.delete_guard_last(rest, guards, between).await else {
        return results;
    };
    // Some keys did not go (a per-key error in the batch's answer, a batch that failed): what
    // is left is read back and removed once more, judged again (a push may have landed since).
    let why = e.to_string();
    tracing::info!("{prefix}: a delete failed ({why}); what is left is tried once more");
    let left = match inner.list_all_async(prefix).await {
        Ok(l) => l,
        Err(_) => return unknown(results, &why),
    };
    let (mut rest, mut guards) = (Vec::new(), Vec::new());
    let again: Vec<bool> = (names.iter().zip(&results))
        .map(|(name, r)| {
            let item = format!("{prefix}{name}/");
            let keys = below(&left, &item);
            matches!(r, Ok(true))
                && !keys.is_empty()
                && judge(keys, &item, guard, since_ns, &mut rest, &mut guards).is_ok_and(|go| go)
        })
        .collect();
    let retried = inner.delete_guard_last(rest, guards, &|| {}).await;
    let last = match inner.list_all_async(prefix).await {
        Ok(l) => l,
        Err(_) => return unknown(results, &why),
    };
    // The record says what went: an item with a key still in the store did not.
    for ((name, r), tried) in names.iter().zip(results.iter_mut()).zip(again) {
        let item = format!("{prefix}{name}/");
        if matches!(r, Ok(true)) && !below(&last, &item).is_empty() {
            let cause = match (&retried, tried) {
                (Err(e2), true) => format!("{why}; once more: {e2}"),
                _ => why.clone(),
            };
            *r = Err(not_deleted(cause));
        }
    }
    results
}

/// When what went cannot be read back: no item of the batch is reported removed.
fn unknown(mut results: Vec<io::Result<bool>>, why: &str) -> Vec<io::Result<bool>> {
    for r in results.iter_mut().filter(|r| matches!(r, Ok(true))) {
        *r = Err(not_known(format!(
            "{why} (what went could not be read back)"
        )));
    }
    results
}
