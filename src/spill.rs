//! Lists too large to hold, spilled to a temporary file and mapped back read-only: the bounded
//! mode (`--memory-limit`), where the blob list and the layer links live on disk and the kernel
//! pages them in as the run reads them (and drops them, being clean, when memory is short).

use std::fs::File;
use std::io::{self, Write};
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Values a spill file holds as their bytes.
///
/// # Safety
/// The type is `repr(C)` (or packed) with no padding and no pointers, and every bit pattern of
/// its size is a valid value: its bytes are written out as they are and read back in place.
pub unsafe trait Plain: Copy + Send + Sync + 'static {}

/// A read-only private mapping of a whole spill file.
pub struct Mapping {
    ptr: *const u8,
    len: usize,
}

// The mapping is read-only and owned: shared references to it are all anyone gets.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Safety: `ptr` and `len` are what mmap returned, and no slice of it outlives the Arc.
        unsafe {
            let _ = rustix::mm::munmap(self.ptr as *mut _, self.len);
        }
    }
}

/// A list held in memory, or in a spill file mapped back; read as a slice either way.
pub enum List<T: Plain> {
    Held(Vec<T>),
    Mapped {
        map: Arc<Mapping>,
        /// Byte offset of the first value (a multiple of its alignment).
        start: usize,
        len: usize,
        _of: PhantomData<T>,
    },
}

impl<T: Plain> Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            List::Held(v) => v,
            // Safety: `append` wrote `len` values of T from `start` (aligned for T, inside the
            // mapping, which is page-aligned); T is Plain, so the bytes are valid values; the
            // mapping lives as long as the Arc this borrows from.
            List::Mapped {
                map, start, len, ..
            } => unsafe { std::slice::from_raw_parts(map.ptr.add(*start) as *const T, *len) },
        }
    }
}

impl<T: Plain> List<T> {
    /// Whether the values are on disk.
    pub fn is_spilled(&self) -> bool {
        matches!(self, List::Mapped { .. })
    }

    /// The values as a vector to change, copied into memory first if they were spilled.
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let List::Mapped { .. } = self {
            *self = List::Held(self.to_vec());
        }
        match self {
            List::Held(v) => v,
            List::Mapped { .. } => unreachable!("made Held above"),
        }
    }
}

impl<'a, T: Plain> IntoIterator for &'a List<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Plain> Clone for List<T> {
    fn clone(&self) -> Self {
        match self {
            List::Held(v) => List::Held(v.clone()),
            List::Mapped {
                map, start, len, ..
            } => List::Mapped {
                map: map.clone(),
                start: *start,
                len: *len,
                _of: PhantomData,
            },
        }
    }
}

impl<T: Plain> Default for List<T> {
    fn default() -> Self {
        List::Held(Vec::new())
    }
}

impl<T: Plain> From<Vec<T>> for List<T> {
    fn from(v: Vec<T>) -> Self {
        List::Held(v)
    }
}

impl<T: Plain + std::fmt::Debug> std::fmt::Debug for List<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A spill file being written: unnamed (nothing is left behind if the run dies), in `dir`.
pub struct SpillFile {
    file: File,
    written: u64,
    dir: PathBuf,
    /// Bytes past which writes fail as on a full disk (the fault hook's cap), if any.
    cap: Option<u64>,
}

impl SpillFile {
    pub fn create(dir: &Path, cap: Option<u64>) -> io::Result<SpillFile> {
        Ok(SpillFile {
            file: tempfile::tempfile_in(dir)?,
            written: 0,
            dir: dir.to_path_buf(),
            cap,
        })
    }

    /// Where the file lies, for messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.written + bytes.len() as u64;
        if self.cap.is_some_and(|cap| end > cap) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.file.write_all(bytes)?;
        self.written = end;
        Ok(())
    }

    /// Appends `items`; the byte offset they start at (aligned for T).
    pub fn append<T: Plain>(&mut self, items: &[T]) -> io::Result<u64> {
        let pad = self
            .written
            .next_multiple_of(std::mem::align_of::<T>() as u64)
            - self.written;
        self.write(&[0u8; 16][..pad as usize])?;
        let start = self.written;
        // Safety: T is Plain, so every byte of the slice is initialized.
        let bytes = unsafe {
            std::slice::from_raw_parts(items.as_ptr() as *const u8, std::mem::size_of_val(items))
        };
        self.write(bytes)?;
        Ok(start)
    }

    /// Appends `bytes` bytes of `from` starting at `start` (a run written there, now put in
    /// its place in this file's order).
    pub fn copy_from(&mut self, from: &SpillFile, start: u64, bytes: u64) -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < bytes {
            let n = (bytes - at).min(buf.len() as u64) as usize;
            from.file.read_exact_at(&mut buf[..n], start + at)?;
            self.write(&buf[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    /// The file mapped read-only; `None` when nothing was written (an empty mapping is not one).
    pub fn map(mut self) -> io::Result<Option<Arc<Mapping>>> {
        self.file.flush()?;
        let len = usize::try_from(self.written).map_err(io::Error::other)?;
        if len == 0 {
            return Ok(None);
        }
        use rustix::mm::{MapFlags, ProtFlags};
        // Safety: a new private read-only mapping of a file only this process holds (unnamed);
        // the values read from it are Plain, so whatever its bytes they are valid.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::PRIVATE,
                &self.file,
                0,
            )?
        };
        Ok(Some(Arc::new(Mapping {
            ptr: ptr as *const u8,
            len,
        })))
    }
}

/// `len` values of T at byte `start` of `map` (as `append` returned it), or none.
pub fn list<T: Plain>(map: Option<&Arc<Mapping>>, start: u64, len: usize) -> List<T> {
    match map {
        Some(map) if len > 0 => {
            let start = start as usize;
            assert!(
                start.is_multiple_of(std::mem::align_of::<T>())
                    && start + len * std::mem::size_of::<T>() <= map.len,
                "a spilled list lies inside its mapping"
            );
            List::Mapped {
                map: map.clone(),
                start,
                len,
                _of: PhantomData,
            }
        }
        _ => List::Held(Vec::new()),
    }
}

/// How much memory a run may hold: the bounded mode's settings (`--memory-limit`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bound {
    /// The limit given; `None`: the run holds everything in memory unless the store looks
    /// larger than half of what the machine has available.
    pub limit: Option<u64>,
    /// Spill files fail as on a full disk past this many bytes (a fault hook).
    pub disk_cap: Option<u64>,
    /// The memory taken as available instead of the kernel's `MemAvailable` (a fault hook).
    pub available: Option<u64>,
}

/// Bytes a blob costs held in memory, with its share of the model (measured: 90-103 B).
pub const HELD_PER_BLOB: u64 = 104;

/// What the bounded mode still holds for each blob beyond the model: a bit of mark, the plan's
/// 8 bytes should it go (with its growth slack), a share of the listings in hand, and the
/// allocator's own (measured at 1M and 10M synthetic blobs: 14 bytes of heap, 22 of RssAnon).
pub const BOUNDED_PER_BLOB: u64 = 24;

/// The program itself, its threads, and the listings of the folders in hand.
pub const BASE: u64 = 64 << 20;

impl Bound {
    /// Whether to spill a store of about `blobs` blobs, and why: the limit given, or half of
    /// `available` (the machine's available memory) when holding them would take more.
    pub fn spills(&self, blobs: u64, available: Option<u64>) -> Option<&'static str> {
        if self.limit.is_some() {
            return Some("--memory-limit");
        }
        let half = available? / 2;
        (blobs.saturating_mul(HELD_PER_BLOB) > half)
            .then_some("the store is larger than half of the memory available")
    }

    /// Fails the run when the limit given is below what it needs for `blobs` blobs and `held`
    /// bytes of the model: called once the model is read (the least limit named is then the
    /// real one, not a first guess to be raised again), before anything is planned.
    pub fn check(&self, blobs: u64, held: u64) -> crate::error::Result<()> {
        let min = Bound::minimum(blobs, held);
        let Some(limit) = self.limit.filter(|&l| l < min) else {
            return Ok(());
        };
        let human = crate::units::human_bytes;
        Err(crate::error::Error::Usage(format!(
            "--memory-limit {}: this run needs at least {}MiB ({} for the program, {BOUNDED_PER_BLOB} bytes for each of {blobs} blobs, and {} for the tags, manifests and links it holds); nothing was planned or deleted: give --memory-limit {}MiB or more",
            human(limit),
            min.div_ceil(1 << 20),
            human(BASE),
            human(held),
            min.div_ceil(1 << 20),
        )))
    }

    /// The least memory a bounded run needs, for `blobs` blobs and `held` bytes of the model
    /// that stays in memory.
    pub fn minimum(blobs: u64, held: u64) -> u64 {
        BASE + held + blobs.saturating_mul(BOUNDED_PER_BLOB)
    }
}

/// The machine's available memory (`MemAvailable`), where the kernel says.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Where spill files go: `$TMPDIR`, else /var/tmp (on disk, where /tmp is often a tmpfs, which
/// would keep the files in memory), else /tmp.
pub fn dir() -> PathBuf {
    match std::env::var_os("TMPDIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ if Path::new("/var/tmp").is_dir() => PathBuf::from("/var/tmp"),
        _ => std::env::temp_dir(),
    }
}

/// Whether `dir` is on a tmpfs: files there take memory, which the bounded mode is to save.
pub fn in_memory(dir: &Path) -> bool {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    rustix::fs::statfs(dir).is_ok_and(|s| s.f_type as u64 == TMPFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    #[repr(C)]
    struct Pair(u64, u32, u32);
    unsafe impl Plain for Pair {}

    #[test]
    fn spilled_values_read_back_as_written_in_their_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = SpillFile::create(dir.path(), None).unwrap();
        let a: Vec<Pair> = (0..1000).map(|i| Pair(i, i as u32 * 2, 7)).collect();
        let b = vec![Pair(u64::MAX, 1, 2)];
        let at_a = f.append(&a).unwrap();
        let at_b = f.append(&b).unwrap();
        let map = f.map().unwrap();
        let la: List<Pair> = list(map.as_ref(), at_a, a.len());
        let lb: List<Pair> = list(map.as_ref(), at_b, b.len());
        assert!(la.is_spilled());
        assert_eq!((&la[..], &lb[..]), (&a[..], &b[..]));
        let mut c = lb.clone();
        c.to_mut().push(Pair(1, 1, 1));
        assert_eq!((c.len(), lb.len(), c.is_spilled()), (2, 1, false));
        // Nothing written maps to nothing: an empty list, held.
        let empty = SpillFile::create(dir.path(), None).unwrap().map().unwrap();
        assert!(empty.is_none() && list::<Pair>(None, 0, 0).is_empty());
        // Nothing is named in the folder: a killed run leaves no file behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_full_disk_fails_the_write_that_passes_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = SpillFile::create(dir.path(), Some(100)).unwrap();
        f.append(&[Pair(1, 2, 3); 6]).unwrap();
        let e = f.append(&[Pair(1, 2, 3)]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn the_bounded_mode_is_chosen_by_the_limit_or_by_the_store_against_available_memory() {
        let given = Bound {
            limit: Some(1 << 30),
            ..Bound::default()
        };
        assert!(given.spills(10, None).is_some());
        let auto = Bound::default();
        assert_eq!(auto.spills(1_000_000, None), None);
        assert_eq!(auto.spills(1_000_000, Some(16 << 30)), None);
        assert!(auto.spills(100_000_000, Some(16 << 30)).is_some());
        assert_eq!(Bound::minimum(0, 0), BASE);
        assert_eq!(Bound::minimum(10, 5), BASE + 5 + 240);
    }
}
