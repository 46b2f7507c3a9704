//! Output files written whole: a temporary file beside the target is written and synced, then
//! renamed over it and the folder synced, so a reader never sees half a file, a crash never
//! leaves a half-written one, and a failed write leaves nothing behind.

use std::io::{self, Write};
use std::path::Path;

/// The folder of `path` ("." for a bare file name).
fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Refuses to replace anything but a regular file: `--metrics /dev/null` or a FIFO is not an
/// output file, and a symbolic link would be replaced, not followed.
fn check_replaceable(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file; regsweep replaces only a regular file (or creates one)",
        )),
        _ => Ok(()),
    }
}

/// A new temporary file beside `path`, removed when dropped unless persisted.
fn temp_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "names a folder, not a file"))?;
    tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".regsweep-tmp")
        .tempfile_in(folder(path))
}

/// Writes `bytes` to `path` whole: temp file, fsync, rename, fsync of the folder.
pub fn write_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, |f| f.write_all(bytes))
}

/// `write_whole`, the content streamed by `fill`.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
) -> io::Result<()> {
    check_replaceable(path)?;
    let mut tmp = temp_beside(path)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_folder(folder(path));
    Ok(())
}

/// Checks that `path` can be written whole with about `bytes` of content, by writing and
/// syncing that much beside it (a full disk still lets an empty file be created); nothing is
/// left behind.
pub fn probe(path: &Path, bytes: usize) -> io::Result<()> {
    check_replaceable(path)?;
    let mut tmp = temp_beside(path)?;
    tmp.write_all(&vec![b'\n'; bytes])?;
    tmp.as_file().sync_all()
}

/// Makes a rename in `dir` durable. Some filesystems cannot sync a folder: that is no error.
fn sync_folder(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `value` as JSON, or `None` once it would pass `limit` bytes: a state file regsweep could not
/// read back is never built whole, then thrown away.
pub fn json_within<T: serde::Serialize + ?Sized>(value: &T, limit: u64) -> Option<Vec<u8>> {
    struct Capped(Vec<u8>, u64);
    impl Write for Capped {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if (self.0.len() + b.len()) as u64 > self.1 {
                return Err(io::Error::other("past the limit"));
            }
            self.0.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped(Vec::new(), limit);
    serde_json::to_writer(&mut out, value).ok()?;
    Some(out.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_and_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.prom");
        write_whole(&p, b"one\n").unwrap();
        write_whole(&p, b"two\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        // A failure midway (here the filler's) removes the temporary file.
        let e = write_with(&p, |_| Err(io::Error::other("disk full"))).unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "only m.prom: {names:?}");
        assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        // Never a device, a folder or a symbolic link.
        assert!(write_whole(Path::new("/dev/null"), b"x").is_err());
        assert!(write_whole(dir.path(), b"x").is_err());
        std::os::unix::fs::symlink(&p, dir.path().join("link")).unwrap();
        assert!(write_whole(&dir.path().join("link"), b"x").is_err());
        probe(&p, 4096).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn json_past_its_limit_is_none() {
        let v = vec!["x".repeat(10); 10];
        let whole = serde_json::to_vec(&v).unwrap();
        assert_eq!(
            super::json_within(&v, whole.len() as u64),
            Some(whole.clone())
        );
        assert_eq!(super::json_within(&v, whole.len() as u64 - 1), None);
    }
}
