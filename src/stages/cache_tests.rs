//! The manifest cache: round trips, merges, damage, and what it refuses to read or replace.
use super::file::{MAGIC, version};
use super::*;
use std::os::unix::fs::FileExt;

fn m(i: u8) -> Manifest {
    Manifest {
        blobs: vec![Digest([i; 32]), Digest([i + 1; 32])],
        config: Some(Digest([i; 32])),
        children: vec![Digest([i + 2; 32])],
        subject: i.is_multiple_of(2).then_some(Digest([9; 32])),
        problems: Vec::new(),
    }
}

#[test]
fn round_trips_and_keeps_what_the_run_used_or_added() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/cache.bin");
    let c = Cache::open(&path).unwrap();
    assert!(c.get(&Digest([1; 32])).is_none() && c.ignored.is_none());
    c.add(Digest([1; 32]), &m(1));
    c.add(Digest([2; 32]), &m(2));
    // A manifest with problems is read again next time.
    let mut bad = m(3);
    bad.problems.push("md5:x".into());
    c.add(Digest([3; 32]), &bad);
    c.save();
    let c = Cache::open(&path).unwrap();
    assert_eq!(c.get(&Digest([1; 32])), Some(m(1)));
    assert!(c.get(&Digest([3; 32])).is_none());
    assert_eq!(c.hits(), 1);
    c.save();
    // Only the entry that run used is left.
    let c = Cache::open(&path).unwrap();
    assert!(c.get(&Digest([2; 32])).is_none());
    assert_eq!(c.get(&Digest([1; 32])), Some(m(1)));
}

#[test]
fn used_and_added_entries_merge_in_order_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.bin");
    // Digests spread out of order: 0, 7, 14, ... mod 251.
    let d = |i: u8| Digest([((i as u16 * 7) % 251) as u8; 32]);
    let c = Cache::open(&path).unwrap();
    for i in 0..60 {
        c.add(d(i), &m(i));
    }
    c.save();
    let c = Cache::open(&path).unwrap();
    assert!(c.ignored.is_none(), "{:?}", c.ignored);
    // This run uses the even ones, adds 60..90, and adds 10 again (read anew).
    for i in (0..60).step_by(2) {
        assert_eq!(c.get(&d(i)), Some(m(i)));
    }
    for i in 60..90 {
        c.add(d(i), &m(i));
    }
    c.add(d(10), &m(10));
    c.save();
    let c = Cache::open(&path).unwrap();
    assert!(c.ignored.is_none(), "sorted, each once: {:?}", c.ignored);
    for i in 0..90 {
        let kept = i >= 60 || i % 2 == 0;
        assert_eq!(c.get(&d(i)).is_some(), kept, "{i}");
    }
}

#[test]
fn a_damaged_truncated_or_foreign_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.bin");
    let c = Cache::open(&path).unwrap();
    c.add(Digest([1; 32]), &m(1));
    c.save();
    let good = std::fs::read(&path).unwrap();
    for (bytes, why) in [
        (
            {
                let mut b = good.clone();
                b[20] ^= 1;
                b
            },
            "checksum",
        ),
        (good[..good.len() - 5].to_vec(), "checksum"),
        (
            {
                let mut b = good.clone();
                let at = MAGIC.len() + 4;
                b[at] ^= 1; // another version, with a valid checksum
                let n = b.len() - 32;
                let sum = Sha256::digest(&b[..n]);
                b[n..].copy_from_slice(&sum);
                b
            },
            "written by",
        ),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let c = Cache::open(&path).unwrap();
        assert!(c.get(&Digest([1; 32])).is_none());
        assert!(
            c.ignored.as_deref().unwrap().contains(why),
            "{:?}",
            c.ignored
        );
    }
}

#[test]
fn only_a_private_regular_regsweep_file_is_read_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |p: &Path, why: &str| {
        let e = Cache::open(p).err().expect("refused").to_string();
        assert!(e.contains(why) && e.contains("--no-cache"), "{e}");
    };
    // Not a cache: a text file stays as it is, even after a run would have saved.
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "keep me").unwrap();
    refused(&text, "not a regsweep manifest cache");
    assert_eq!(std::fs::read(&text).unwrap(), b"keep me");
    // A device and a FIFO: refused at once, never opened for writing, never waited on.
    refused(Path::new("/dev/zero"), "not a regular file");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata("/dev/zero")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    refused(&fifo, "not a regular file");
    // A symbolic link, even to a good cache.
    let good = dir.path().join("good.bin");
    let c = Cache::open(&good).unwrap();
    c.add(Digest([1; 32]), &m(1));
    c.save();
    let mode = std::fs::metadata(&good).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o022, 0, "written private: {mode:o}");
    let link = dir.path().join("link.bin");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    refused(&link, "symbolic link");
    // Writable by others.
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o666)).unwrap();
    refused(&good, "writable by group or others");
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Cache::open(&good).unwrap().get(&Digest([1; 32])).is_some());
    // In a folder anyone may write to (and not sticky).
    let open_dir = dir.path().join("shared");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(&open_dir.join("c.bin"), "writable by other users");
    // A new default folder is made private.
    let fresh = dir.path().join("new/regsweep/c.bin");
    let c = Cache::open(&fresh).unwrap();
    c.add(Digest([2; 32]), &m(2));
    c.save();
    let mode = std::fs::metadata(fresh.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_cache_from_another_parser_schema_is_not_trusted_and_samples_are_drawn_from_hits() {
    assert!(version().ends_with(&format!(
        "/manifest-refs-{}",
        crate::model::manifest::SCHEMA
    )));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.bin");
    let c = Cache::open(&path).unwrap();
    for i in 0..50u8 {
        c.add(Digest([i; 32]), &m(i));
    }
    c.save();
    let c = Cache::open(&path).unwrap();
    assert!(c.sample_used(10).is_empty(), "nothing used yet");
    for i in 0..20u8 {
        c.get(&Digest([i; 32]));
    }
    let s = c.sample_used(8);
    assert_eq!(s.len(), 8);
    assert!(s.iter().all(|d| d.0[0] < 20), "only used entries");
    let distinct: std::collections::BTreeSet<_> = s.iter().collect();
    assert_eq!(distinct.len(), 8);
    assert_eq!(c.sample_used(100).len(), 20);
    assert_eq!(c.entry(&Digest([30; 32])), Some(m(30)));
    c.discard();
    assert!(!path.exists());
}

#[test]
fn an_entry_written_over_after_the_check_is_read_from_storage_and_not_carried_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.bin");
    let c = Cache::open(&path).unwrap();
    for i in 1..=5u8 {
        c.add(Digest([i; 32]), &m(i));
    }
    c.save();
    let c = Cache::open(&path).unwrap();
    assert_eq!(c.get(&Digest([1; 32])), Some(m(1)));
    // Someone writes into entry 3's list of references in place, after the file was checked.
    let k = &c.known.known[c.known.find(&Digest([3; 32])).unwrap()];
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xff], u64::from(k.at) + 40).unwrap();
    assert_eq!(c.get(&Digest([3; 32])), None, "read from storage instead");
    assert_eq!(c.entry(&Digest([3; 32])), None);
    assert_eq!(c.get(&Digest([2; 32])), Some(m(2)));
    assert_eq!(c.hits(), 2);
    c.add(Digest([3; 32]), &m(3)); // as the manifests stage does after reading it
    c.save();
    let c = Cache::open(&path).unwrap();
    assert!(c.ignored.is_none(), "{:?}", c.ignored);
    for i in 1..=3u8 {
        assert_eq!(c.get(&Digest([i; 32])), Some(m(i)), "{i}");
    }
    assert!(!c.holds(&Digest([4; 32])), "unused, dropped");
}
