//! A registry that exists only in memory, for the core's memory and time at sizes no disk here
//! holds: BLOBS blobs in images of ten blobs (a manifest, a config, eight layers) tagged in
//! REPOS repositories, one image in five untagged, a tenth of the blobs dangling. It scans,
//! reads the manifests, marks and plans as `gc --dry-run -m --grace 0` does, and prints what
//! the backend holds, the peak the run adds above it, and the time per blob
//! (benches/synthetic.sh).
//!
//!     synthetic memory BLOBS [REPOS]     # put through the memory backend of the seam
//!     synthetic generated BLOBS [REPOS]  # computed on demand (tree.rs): the backend holds nothing
//!     synthetic compare BLOBS [REPOS]    # the generated layout copied into the memory backend:
//!                                        # both plans must be the same, digest for digest
//!     synthetic bounded BLOBS [REPOS]    # generated, in the bounded mode: the plan's checksum
//!                                        # must be the default mode's at the same size
//!
//! With SYNTHETIC_MEMORY_LIMIT=SIZE (bytes) the run is bounded (`--memory-limit`). Each run
//! prints the plan's checksum (sha256 over its blobs, manifests and layer links in plan
//! order) and the anonymous memory's peak, sampled every 2 ms (`RssAnon`: what the spill
//! files' mapped pages, which the kernel drops when memory is short, do not count in).

mod tree;

use regsweep::model::{Rules, Time};
use regsweep::stages::read::ScanOptions;
use regsweep::storage::memory::MemStorage;
use sha2::{Digest as _, Sha256};
use std::time::Instant;

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn blob(m: &MemStorage, hex: &str, data: &[u8], mtime: Time) {
    m.put(
        &format!("blobs/sha256/{}/{hex}/data", &hex[..2]),
        data,
        mtime,
    );
}

fn link(m: &MemStorage, rel: &str, hex: &str, mtime: Time) {
    m.put(rel, format!("sha256:{hex}").as_bytes(), mtime);
}

/// One image of repository `repo`: eight layers, a config and the manifest naming them.
fn image(m: &MemStorage, i: u64, repo: &str, mtime: Time) {
    let layers: Vec<String> = (0..8)
        .map(|j| hex(format!("l{i}/{j}").as_bytes()))
        .collect();
    let config = hex(format!("c{i}").as_bytes());
    let entries: Vec<String> = (layers.iter())
        .map(|l| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{l}","size":1000}}"#))
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config}","size":100}},"layers":[{}]}}"#,
        entries.join(",")
    );
    let md = hex(manifest.as_bytes());
    blob(m, &md, manifest.as_bytes(), mtime);
    for d in layers.iter().chain([&config]) {
        blob(m, d, b"", mtime);
        link(
            m,
            &format!("repositories/{repo}/_layers/sha256/{d}/link"),
            d,
            mtime,
        );
    }
    let revs = format!("repositories/{repo}/_manifests");
    link(m, &format!("{revs}/revisions/sha256/{md}/link"), &md, mtime);
    if !i.is_multiple_of(5) {
        link(m, &format!("{revs}/tags/t{i}/current/link"), &md, mtime);
        link(
            m,
            &format!("{revs}/tags/t{i}/index/sha256/{md}/link"),
            &md,
            mtime,
        );
    }
}

/// The largest `RssAnon` seen, sampled every 2 ms while the run goes on.
struct AnonPeak {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AnonPeak {
    fn start() -> AnonPeak {
        use std::sync::atomic::Ordering;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(status("RssAnon:"), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        AnonPeak { peak, stop }
    }

    fn end(self) -> u64 {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed).max(status("RssAnon:"))
    }
}

/// The plan's checksum: its blobs, manifests and layer links, in plan order.
fn checksum(p: &regsweep::gc::plan::Plan) -> String {
    let mut h = Sha256::new();
    p.blobs.iter().for_each(|b| h.update(b.digest().0));
    for m in &p.manifests {
        h.update(m.repository.as_bytes());
        h.update(m.digest.0);
    }
    for l in p.layer_links.iter() {
        h.update(l.repository.as_bytes());
        h.update(l.digest.0);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn bound() -> regsweep::spill::Bound {
    regsweep::spill::Bound {
        limit: std::env::var("SYNTHETIC_MEMORY_LIMIT")
            .ok()
            .and_then(|v| v.parse().ok()),
        ..Default::default()
    }
}

/// This process's resident set (`VmRSS`) or its peak (`VmHWM`), in bytes.
fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (s.lines())
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("memory", String::as_str);
    let blobs: u64 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let repos: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(500);
    let now = chrono::Utc::now().timestamp();
    let old = now - 10 * 86_400;
    match mode {
        "memory" => {
            let started = Instant::now();
            let m = fill(blobs, repos, old);
            eprintln!(
                "filled {blobs} blobs in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            measure(&m, blobs, now);
        }
        "generated" => measure(
            &tree::SynthStorage::new(tree::Shape::new(blobs, repos, old)),
            blobs,
            now,
        ),
        "compare" => compare(blobs, repos, old, now),
        "bounded" => {
            let synth = tree::SynthStorage::new(tree::Shape::new(blobs, repos, old));
            let limit = regsweep::spill::Bound {
                limit: Some(u64::MAX),
                ..Default::default()
            };
            let (la, a) = run(&synth, now, regsweep::spill::Bound::default());
            let (lb, b) = run(&synth, now, limit);
            assert!(!la.blobs.is_spilled() && lb.blobs.is_spilled());
            assert_eq!(checksum(&a), checksum(&b), "the bounded plan differs");
            println!(
                "the same plan held and spilled: {} blobs, {} manifests, {} layer links of {} blobs scanned (sha256 {})",
                a.blobs.len(),
                a.manifests.len(),
                a.layer_links.len(),
                la.blobs.len(),
                checksum(&a)
            );
        }
        _ => {
            eprintln!("usage: synthetic memory|generated|compare|bounded BLOBS [REPOS]");
            std::process::exit(2);
        }
    }
}

/// The memory backend filled with the hashed-name layout.
fn fill(blobs: u64, repos: u64, old: Time) -> MemStorage {
    let m = MemStorage::new();
    let images = blobs * 9 / 100;
    for i in 0..images {
        image(&m, i, &format!("ns{}/repo{}", i % 7, i % repos), old);
    }
    for i in 0..blobs - images * 10 {
        blob(&m, &hex(format!("d{i}").as_bytes()), b"", old);
    }
    m
}

/// Scan, manifests, mark and plan on `store`, with the peak they add and the time per blob.
fn measure<S: regsweep::storage::seam::Storage>(store: &S, blobs: u64, now: Time) {
    let filled = status("VmRSS:");
    // Peak from here on (Linux: writing 5 to clear_refs resets VmHWM to the current RSS).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let anon = AnonPeak::start();
    let bound = bound();
    let (layout, plan) = run(store, now, bound);
    let took = started.elapsed().as_secs_f64();
    let anon = anon.end();
    let peak = status("VmHWM:");
    let added = peak.saturating_sub(filled);
    println!(
        "{{\"blobs\": {}, \"manifests\": {}, \"plan_blobs\": {}, \"plan_manifests\": {}, \"spilled\": {}, \"memory_limit\": {}, \"seconds\": {took:.2}, \"ns_per_blob\": {:.0}, \"backend_bytes\": {filled}, \"peak_added_bytes\": {added}, \"bytes_per_blob\": {:.1}, \"anon_peak_bytes\": {anon}, \"anon_bytes_per_blob\": {:.1}, \"model_held_bytes\": {}, \"minimum_bytes\": {}, \"plan_sha256\": \"{}\"}}",
        layout.blobs.len(),
        layout.manifests.len(),
        plan.blobs.len(),
        plan.manifests.len(),
        layout.blobs.is_spilled(),
        bound.limit.map_or("null".to_string(), |l| l.to_string()),
        took * 1e9 / blobs as f64,
        added as f64 / blobs as f64,
        anon as f64 / blobs as f64,
        layout.held_bytes(),
        regsweep::spill::Bound::minimum(layout.blobs.len() as u64, layout.held_bytes()),
        checksum(&plan),
    );
}

fn run<S: regsweep::storage::seam::Storage>(
    store: &S,
    now: Time,
    memory: regsweep::spill::Bound,
) -> (regsweep::model::Layout, regsweep::gc::plan::Plan) {
    let progress = regsweep::progress::Hidden;
    let opts = ScanOptions {
        memory,
        ..ScanOptions::default()
    };
    let layout = regsweep::pipeline::load(store, opts, None, &progress)
        .unwrap_or_else(|e| panic!("the synthetic layout loads: {e}"));
    let (plan, _) = regsweep::pipeline::decide(&layout, None, &Rules::without_grace(true), now);
    (layout, plan)
}

/// The generated layout, copied file by file into the memory backend: the two plans agree.
fn compare(blobs: u64, repos: u64, old: Time, now: Time) {
    use regsweep::storage::seam::{Folder, Kind, Storage};
    let synth = tree::SynthStorage::new(tree::Shape::new(blobs, repos, old));
    let m = MemStorage::new();
    fn copy(f: &tree::SynthFolder, rel: &str, m: &MemStorage, old: Time) {
        for (name, kind) in f.entries().expect("listed") {
            let name = name.to_string_lossy().into_owned();
            let at = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            match kind {
                Kind::Dir => copy(&f.open_dir(&name).expect("opened"), &at, m, old),
                _ => m.put(&at, &f.read_small(&name, 1 << 20).expect("read"), old),
            }
        }
    }
    copy(synth.top(), "", &m, old);
    let (la, a) = run(&synth, now, Default::default());
    let (lb, b) = run(&m, now, Default::default());
    let digests = |p: &regsweep::gc::plan::Plan| {
        let mut v: Vec<String> = p.blobs.iter().map(|b| b.digest().to_string()).collect();
        v.extend(
            p.manifests
                .iter()
                .map(|m| format!("{}@{}", m.repository, m.digest)),
        );
        v.extend(
            p.layer_links
                .iter()
                .map(|l| format!("{}@{}", l.repository, l.digest)),
        );
        v.sort();
        v
    };
    assert_eq!(la.blobs.len(), lb.blobs.len(), "blobs scanned");
    assert_eq!(la.manifests.len(), lb.manifests.len(), "manifests read");
    assert_eq!(digests(&a), digests(&b), "the plans differ");
    assert!(
        a.findings.is_empty() && b.findings.is_empty(),
        "{:?}",
        a.findings
    );
    println!(
        "the same plan from both: {} blobs, {} manifests, {} layer links of {} blobs scanned",
        a.blobs.len(),
        a.manifests.len(),
        a.layer_links.len(),
        la.blobs.len()
    );
}
