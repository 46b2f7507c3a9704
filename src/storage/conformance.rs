//! One set of checks of every seam operation, run against each backend (the filesystem and the
//! in-memory one by the unit tests, S3 on moto by the integration tests): what the stages above
//! rely on, said once. Each backend's test writes [`tree`] into a fresh storage, opens it, and
//! calls [`check`].

use crate::model::digest::Digest;
use crate::storage::seam::{Folder, Kind, ReadError, Storage};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

/// The digest of `hello`, the one blob of the tree.
pub const DIGEST: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

const HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// The files of the tree, by their path below `docker/registry/v2`.
pub fn tree() -> Vec<(String, Vec<u8>)> {
    vec![
        (format!("blobs/sha256/2c/{HEX}/data"), b"hello".to_vec()),
        (
            format!("repositories/acme/app/_layers/sha256/{HEX}/link"),
            DIGEST.into(),
        ),
        (
            "repositories/acme/app/_manifests/tags/v1/current/link".into(),
            DIGEST.into(),
        ),
        (
            "repositories/acme/app/_uploads/u1/startedat".into(),
            b"2024-01-01T00:00:00Z".to_vec(),
        ),
    ]
}

type Check = Result<(), String>;

fn expect(ok: bool, what: impl FnOnce() -> String) -> Check {
    if ok { Ok(()) } else { Err(what()) }
}

fn names(entries: &[(OsString, Kind)]) -> Vec<(String, Kind)> {
    (entries.iter())
        .map(|(n, k)| (n.to_string_lossy().into_owned(), *k))
        .collect()
}

/// Every check, in turn, on a storage holding [`tree`]; the first that fails, in words.
pub fn check<S: Storage>(store: &S) -> Check {
    check_reading(store)?;
    removal(store)?;
    state(store)?;
    locking(store)
}

/// The reading half of `check`, for a backend that does not change its storage (GCS).
pub fn check_reading<S: Storage>(store: &S) -> Check {
    listing(store)?;
    reading(store)
}

/// `entries` (sorted, with kinds), `stat`, `tree_size`, `whole`.
fn listing<S: Storage>(store: &S) -> Check {
    let top = store.top();
    let e = names(
        &top.entries()
            .map_err(|e| format!("entries of the top: {e}"))?,
    );
    let dirs = |v: &[&str]| {
        v.iter()
            .map(|n| (n.to_string(), Kind::Dir))
            .collect::<Vec<_>>()
    };
    expect(e == dirs(&["blobs", "repositories"]), || {
        format!("top entries: {e:?}")
    })?;
    let app = top
        .open_dir("repositories/acme/app")
        .map_err(|e| format!("open_dir: {e}"))?;
    let e = names(&app.entries().map_err(|e| e.to_string())?);
    expect(e == dirs(&["_layers", "_manifests", "_uploads"]), || {
        format!("app entries: {e:?}")
    })?;
    let data = format!("blobs/sha256/2c/{HEX}/data");
    let st = top.stat(&data).map_err(|e| format!("stat {data}: {e}"))?;
    expect(st.kind == Kind::File && st.size == 5, || {
        format!("stat of data: {st:?}")
    })?;
    let st = top
        .stat("repositories/acme")
        .map_err(|e| format!("stat of a folder: {e}"))?;
    expect(st.kind == Kind::Dir, || format!("stat of a folder: {st:?}"))?;
    let missing = top.stat("repositories/nobody");
    expect(
        matches!(&missing, Err(e) if e.kind() == std::io::ErrorKind::NotFound),
        || format!("stat of a missing name: {missing:?}"),
    )?;
    let want: u64 = (tree().iter())
        .filter(|(p, _)| p.starts_with("repositories/"))
        .map(|(_, b)| b.len() as u64)
        .sum();
    let size = top.tree_size(OsStr::new("repositories"));
    expect(size == want, || format!("tree_size {size}, not {want}"))?;
    let whole = store
        .top()
        .open_dir("repositories")
        .and_then(|r| r.whole())
        .map_err(|e| format!("whole: {e}"))?;
    let e = names(
        &whole
            .open_dir("acme/app/_manifests/tags")
            .map_err(|e| e.to_string())?
            .entries()
            .map_err(|e| e.to_string())?,
    );
    expect(e == dirs(&["v1"]), || {
        format!("entries below a whole listing: {e:?}")
    })
}

/// `read_small`, `read_with_stat` (bounded), `open_file`.
fn reading<S: Storage>(store: &S) -> Check {
    let top = store.top();
    let link = "repositories/acme/app/_manifests/tags/v1/current/link";
    let got = top
        .read_small(link, 1024)
        .map_err(|e| format!("read_small: {e}"))?;
    expect(got == DIGEST.as_bytes(), || {
        format!("read_small gave {got:?}")
    })?;
    let data = format!("blobs/sha256/2c/{HEX}/data");
    let r = top.read_small(&data, 4);
    expect(matches!(r, Err(ReadError::TooLarge(_))), || {
        format!("a bound of 4: {r:?}")
    })?;
    let r = top.read_small("repositories/acme/app/_layers/sha256/0000/link", 1024);
    expect(matches!(r, Err(ReadError::Missing)), || {
        format!("a missing file: {r:?}")
    })?;
    let r = top.read_small("repositories/acme", 1024);
    expect(r.is_err(), || format!("a folder read as a file: {r:?}"))?;
    let (bytes, st) = top.read_with_stat(&data, 100).map_err(|e| e.to_string())?;
    expect(bytes == b"hello" && st.size == 5, || {
        format!("read_with_stat: {bytes:?} {st:?}")
    })?;
    let (mut f, _) = top
        .open_file(&data)
        .map_err(|e| format!("open_file: {e}"))?;
    let mut all = Vec::new();
    f.read_to_end(&mut all).map_err(|e| e.to_string())?;
    expect(all == b"hello", || format!("open_file read {all:?}"))?;
    let d = Digest::parse(DIGEST).ok_or("the digest")?;
    let arrived = store.blob_arrivals(&[(d, 0)]);
    expect(
        arrived.len() == 1 && arrived[0] != crate::model::Time::MAX,
        || format!("blob_arrivals: {arrived:?}"),
    )
}

/// Taking an item away as the backend's capabilities say: a rename into a staging folder and
/// a removal there, or a removal unless changed (kept when changed since; guards last).
fn removal<S: Storage>(store: &S) -> Check {
    let top = store.top();
    let uploads = top
        .open_dir("repositories/acme/app/_uploads")
        .map_err(|e| e.to_string())?;
    if store.capabilities().rename {
        let staging = top
            .make_dirs(std::path::Path::new(".conformance-staging"))
            .map_err(|e| format!("make_dirs: {e}"))?;
        uploads
            .rename_to(OsStr::new("u1"), &staging, OsStr::new("x1"))
            .map_err(|e| format!("rename_to: {e}"))?;
        let e = uploads.entries().map_err(|e| e.to_string())?;
        expect(e.is_empty(), || format!("renamed away, yet listed: {e:?}"))?;
        staging
            .remove_tree(OsStr::new("x1"))
            .map_err(|e| format!("remove_tree: {e}"))?;
        let left = staging.entries().map_err(|e| e.to_string())?;
        expect(left.is_empty(), || format!("remove_tree left {left:?}"))?;
        top.unlink(OsStr::new(".conformance-staging"), true)
            .map_err(|e| format!("unlink of an empty folder: {e}"))?;
        return Ok(());
    }
    let names = ["u1".to_string()];
    let between = AtomicBool::new(false);
    let kept = uploads.remove_many_unless_changed(&names, &["startedat"], 0, &|| {});
    expect(matches!(kept[..], [Ok(false)]), || {
        format!("changed since 0, yet: {kept:?}")
    })?;
    let gone = uploads.remove_many_unless_changed(&names, &["startedat"], i128::MAX, &|| {
        between.store(true, Ordering::SeqCst)
    });
    expect(matches!(gone[..], [Ok(true)]), || {
        format!("unchanged, yet: {gone:?}")
    })?;
    expect(between.load(Ordering::SeqCst), || {
        "`between` was not called".into()
    })?;
    let r = top.read_small("repositories/acme/app/_uploads/u1/startedat", 1024);
    expect(matches!(r, Err(ReadError::Missing)), || {
        format!("removed, yet read: {r:?}")
    })
}

/// regsweep's own files beside the lock: none, written, replaced whole, removed (twice), and
/// never a name that leaves the root.
fn state<S: Storage>(store: &S) -> Check {
    let name = ".regsweep.conformance";
    let got = store
        .read_state(name)
        .map_err(|e| format!("read_state: {e}"))?;
    expect(got.is_none(), || {
        format!("a state file before any: {got:?}")
    })?;
    for bytes in [&b"first, longer"[..], b"second"] {
        (store.write_state(name, Some(bytes))).map_err(|e| format!("write_state: {e}"))?;
        let got = store
            .read_state(name)
            .map_err(|e| format!("read_state: {e}"))?;
        expect(got.as_deref() == Some(bytes), || {
            format!("read back {got:?}, not {bytes:?}")
        })?;
    }
    for _ in 0..2 {
        (store.write_state(name, None)).map_err(|e| format!("removing state: {e}"))?;
    }
    let got = store
        .read_state(name)
        .map_err(|e| format!("read_state: {e}"))?;
    expect(got.is_none(), || format!("removed, yet read: {got:?}"))?;
    for bad in ["../.regsweep.x", ".regsweep.a/b", "other"] {
        let r = store.write_state(bad, Some(b"x"));
        expect(r.is_err(), || format!("the state name {bad:?} was written"))?;
    }
    Ok(())
}

/// One lock at a time; released when dropped.
fn locking<S: Storage>(store: &S) -> Check {
    let first = store
        .lock("conformance", false)
        .map_err(|e| format!("lock: {e}"))?;
    let second = store.lock("again", false);
    expect(second.is_err(), || "a second lock was granted".into())?;
    drop(second);
    drop(first);
    let third = store
        .lock("after", false)
        .map_err(|e| format!("lock after release: {e}"))?;
    drop(third);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filesystem_backend_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("docker/registry/v2");
        for (path, bytes) in tree() {
            let p = v2.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let store = crate::storage::fs::FsStorage::open(dir.path()).unwrap();
        check(&store).unwrap();
    }

    #[test]
    fn the_in_memory_backend_conforms() {
        let store = crate::storage::memory::MemStorage::new();
        for (path, bytes) in tree() {
            store.put(&path, &bytes, 1_700_000_000);
        }
        check(&store).unwrap();
    }
}
