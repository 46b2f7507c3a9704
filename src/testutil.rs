//! Small builders shared by the unit tests: of the pure stages, and a FIFO for the storage ones.

use crate::model::digest::Digest;
use crate::model::manifest::Manifest;
use crate::model::{Blob, Layout, Link, Loaded, Time};
use std::collections::HashMap;

/// A digest whose every byte is `n`: readable in failures as `sha256:0a0a…`.
pub fn dg(n: u8) -> Digest {
    Digest([n; 32])
}

pub fn link(n: u8, mtime: Time) -> Link {
    Link {
        digest: dg(n),
        mtime,
    }
}

/// Manifests by digest, as the tests write them.
pub type Raw = HashMap<Digest, Loaded>;

/// A copy of the layout as `load` leaves it: layer links filed and these manifests catalogued
/// over its blobs. Test worlds list layer links unfiled, in `layers_absent`, so that they can
/// change the blobs first.
pub fn cat(l: &Layout, m: &Raw) -> Layout {
    let mut l = l.clone();
    file_layers(&mut l);
    l.set_manifests(m.iter().map(|(d, x)| (*d, x.clone())));
    l
}

/// Old blobs named `dg(n)`, of size `n`, sorted as the scan leaves them.
pub fn blobs(ns: &[u8]) -> Vec<Blob> {
    let mut v: Vec<Blob> = ns
        .iter()
        .map(|&n| Blob {
            digest: dg(n),
            size: n as u64,
            mtime: 0,
        })
        .collect();
    v.sort_by_key(|b| b.digest);
    v
}

/// An image manifest needing these blobs.
pub fn image(blobs: &[u8]) -> Manifest {
    Manifest {
        blobs: blobs.iter().map(|&b| dg(b)).collect(),
        config: None,
        children: vec![],
        subject: None,
        problems: vec![],
    }
}

/// Files every repository's layer links against the layout's current blobs.
pub fn file_layers(l: &mut Layout) {
    for i in 0..l.repos.len() {
        let links: Vec<Link> = l.layer_links(&l.repos[i]).collect();
        l.set_layers(i, links);
    }
}

/// Makes a FIFO at `path`: what a hostile layout puts where a small file belongs.
pub fn mkfifo(path: &std::path::Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}
