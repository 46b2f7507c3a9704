//! Small builders shared by the unit tests of the pure stages.

use crate::digest::Digest;
use crate::manifest::{Kind, Manifest};
use crate::model::{Link, Time};

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

/// An image manifest needing these blobs.
pub fn image(blobs: &[u8]) -> Manifest {
    Manifest {
        kind: Kind::Image,
        blobs: blobs.iter().map(|&b| dg(b)).collect(),
        config: None,
        children: vec![],
        subject: None,
        problems: vec![],
    }
}
