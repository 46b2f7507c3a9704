//! The manifest cache's file format: its header, its entries, and its checksum, written and
//! read as streams; each entry is checked where it lies and noted with a hash of its bytes.

use crate::model::digest::Digest;
use crate::model::manifest::Manifest;
use sha2::{Digest as _, Sha256};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;

pub(super) const MAGIC: &[u8; 8] = b"RSWMANC\x01";

/// This build's and its parser's version: a cache from any other is not trusted.
pub(super) fn version() -> String {
    format!(
        "{}/manifest-refs-{}",
        env!("CARGO_PKG_VERSION"),
        crate::model::manifest::SCHEMA
    )
}
/// An entry of the file as it was checked: its digest, where its bytes lie, and their hash.
pub(super) struct Known {
    pub(super) digest: Digest,
    pub(super) at: u32,
    pub(super) len: u32,
    pub(super) sum: [u8; 16],
}

pub(super) fn entry_sum(bytes: &[u8]) -> [u8; 16] {
    Sha256::digest(bytes)[..16].try_into().expect("16 bytes")
}

fn put_list(out: &mut Vec<u8>, ds: &[Digest]) {
    out.extend_from_slice(&(ds.len() as u32).to_le_bytes());
    for d in ds {
        out.extend_from_slice(&d.0);
    }
}

fn put_opt(out: &mut Vec<u8>, d: &Option<Digest>) {
    match d {
        Some(d) => {
            out.push(1);
            out.extend_from_slice(&d.0);
        }
        None => out.push(0),
    }
}

pub(super) fn put_entry(out: &mut Vec<u8>, d: &Digest, m: &Manifest) {
    out.extend_from_slice(&d.0);
    put_list(out, &m.blobs);
    put_list(out, &m.children);
    put_opt(out, &m.config);
    put_opt(out, &m.subject);
}

/// Writes the header, the `n` entries (sorted, encoded) and the checksum of all that, streamed.
pub(super) fn write_file<'a>(
    file: &mut std::fs::File,
    n: usize,
    entries: impl Iterator<Item = std::io::Result<std::borrow::Cow<'a, [u8]>>>,
) -> std::io::Result<()> {
    struct Hashing<W: Write>(W, Sha256);
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.0.write(b)?;
            self.1.update(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    let mut w = Hashing(std::io::BufWriter::new(file), Sha256::new());
    w.write_all(MAGIC)?;
    let version = version();
    w.write_all(&(version.len() as u32).to_le_bytes())?;
    w.write_all(version.as_bytes())?;
    w.write_all(&(n as u64).to_le_bytes())?;
    for e in entries {
        w.write_all(&e?)?;
    }
    let Hashing(mut out, hasher) = w;
    out.write_all(&hasher.finalize())?;
    out.flush()
}

/// A cursor over the file's bytes; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn digest(&mut self) -> Result<Digest, String> {
        Ok(Digest(self.take(32)?.try_into().expect("32 bytes")))
    }
    fn list(&mut self) -> Result<Vec<Digest>, String> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 32 {
            return Err("a list longer than the file".into());
        }
        (0..n).map(|_| self.digest()).collect()
    }
    fn opt(&mut self) -> Result<Option<Digest>, String> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => self.digest().map(Some),
            _ => Err("bad flag".into()),
        }
    }
}

/// One entry at the start of `bytes`: its digest and manifest, and the bytes it took.
pub(super) fn read_entry(bytes: &[u8]) -> Result<(Digest, Manifest, usize), String> {
    let mut r = Reader(bytes);
    let d = r.digest()?;
    let blobs = r.list()?;
    let children = r.list()?;
    let config = r.opt()?;
    let subject = r.opt()?;
    let m = Manifest {
        blobs,
        config,
        children,
        subject,
        problems: Vec::new(),
    };
    Ok((d, m, bytes.len() - r.0.len()))
}

/// Why a file's entries cannot be used.
#[derive(Debug)]
pub(super) enum Undecodable {
    /// Not a regsweep cache at all: never replaced.
    Foreign,
    /// A regsweep cache that is damaged or from another build: rebuilt.
    Stale(String),
}

impl From<String> for Undecodable {
    fn from(why: String) -> Undecodable {
        Undecodable::Stale(why)
    }
}

/// No entry is larger: a manifest of at most a few MiB cannot name more references.
const MAX_ENTRY: usize = 64 << 20;

/// The file's body (all but its trailing checksum), read as a stream and hashed as it goes.
struct Body<R: Read> {
    inner: R,
    left: u64,
    hash: Sha256,
}

impl<R: Read> Body<R> {
    /// Appends the next `n` bytes to `out`.
    fn take(&mut self, n: u64, out: &mut Vec<u8>) -> Result<(), String> {
        if n > self.left {
            return Err("truncated".into());
        }
        if out.len() as u64 + n > MAX_ENTRY as u64 {
            return Err("an entry larger than a manifest can name".into());
        }
        let start = out.len();
        out.resize(start + n as usize, 0);
        (self.inner.read_exact(&mut out[start..])).map_err(|e| format!("cannot be read ({e})"))?;
        self.hash.update(&out[start..]);
        self.left -= n;
        Ok(())
    }
    /// The next `n` bytes alone.
    fn next(&mut self, n: u64, buf: &mut Vec<u8>) -> Result<(), String> {
        buf.clear();
        self.take(n, buf)
    }
    fn u32(&mut self, out: &mut Vec<u8>) -> Result<u32, String> {
        self.take(4, out)?;
        let b = &out[out.len() - 4..];
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    /// The next entry's bytes, alone in `out`: digest, two lists, two optional digests.
    fn entry(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        self.next(32, out)?;
        for _ in 0..2 {
            let n = self.u32(out)?;
            self.take(u64::from(n) * 32, out)?;
        }
        for _ in 0..2 {
            self.take(1, out)?;
            match out[out.len() - 1] {
                0 => {}
                1 => self.take(32, out)?,
                _ => return Err("bad flag".into()),
            }
        }
        Ok(())
    }
    /// Hashes what is left of the body; whether the trailer that follows matches.
    fn checks_out(mut self) -> Result<bool, String> {
        let mut buf = vec![0; 1 << 16];
        while self.left > 0 {
            let n = self.left.min(buf.len() as u64) as usize;
            (self.inner.read_exact(&mut buf[..n])).map_err(|e| format!("cannot be read ({e})"))?;
            self.hash.update(&buf[..n]);
            self.left -= n as u64;
        }
        let mut sum = [0; 32];
        (self.inner.read_exact(&mut sum)).map_err(|e| format!("cannot be read ({e})"))?;
        Ok(self.hash.finalize()[..] == sum)
    }
}

/// Checks a whole file, read once as a stream, and notes where each entry lies and its hash.
pub(super) fn decode(
    file: &std::fs::File,
    len: u64,
) -> std::result::Result<Vec<Known>, Undecodable> {
    let mut magic = [0; MAGIC.len()];
    if len < MAGIC.len() as u64 {
        return Err(Undecodable::Foreign);
    }
    (file.read_exact_at(&mut magic, 0)).map_err(|e| format!("cannot be read ({e})"))?;
    if &magic != MAGIC {
        return Err(Undecodable::Foreign);
    }
    if len < MAGIC.len() as u64 + 32 {
        return Err(Undecodable::Stale("truncated".into()));
    }
    let mut body = Body {
        inner: BufReader::with_capacity(1 << 20, file),
        left: len - 32,
        hash: Sha256::new(),
    };
    let known = entries(&mut body, len);
    // Damage is said before anything a damaged file seems to say.
    if !body.checks_out()? {
        return Err(Undecodable::Stale(
            "checksum does not match (damaged)".into(),
        ));
    }
    Ok(known?)
}

/// The entries of a body, checked: this version's, sorted and distinct, filling it exactly.
fn entries<R: Read>(body: &mut Body<R>, len: u64) -> Result<Vec<Known>, String> {
    let mut buf = Vec::new();
    body.next(MAGIC.len() as u64, &mut buf)?;
    buf.clear();
    let vlen = body.u32(&mut buf)?;
    body.next(vlen.into(), &mut buf)?;
    let ours = self::version();
    if buf != ours.as_bytes() {
        return Err(format!(
            "written by {}, not {ours}",
            String::from_utf8_lossy(&buf)
        ));
    }
    body.next(8, &mut buf)?;
    let n = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    // The smallest entry takes 42 bytes.
    if n > len / 42 {
        return Err("more entries than the file holds".into());
    }
    let mut known: Vec<Known> = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let at = len - 32 - body.left;
        body.entry(&mut buf)?;
        let digest = Digest(buf[..32].try_into().expect("32 bytes"));
        // Sorted and distinct, or lookups would miss: a file that is not is not ours.
        if known.last().is_some_and(|k| k.digest.0 >= digest.0) {
            return Err("entries out of order".into());
        }
        known.push(Known {
            digest,
            at: at as u32,
            len: buf.len() as u32,
            sum: entry_sum(&buf),
        });
    }
    if body.left != 0 {
        return Err("trailing bytes".into());
    }
    Ok(known)
}
