//! The registry contents every end-to-end test starts from, and what gc must do to them.
//! `fixtures/registry` is this world, written by the real registry (see `regenerate_fixtures`).

use crate::testenv::*;
use std::collections::BTreeSet;

pub struct World {
    pub reg: Registry,
    /// Every tag that must still pull in full after any gc.
    pub tags: Vec<String>,
    /// Blobs needed whatever the mode (tags, index children, referrers of tagged images).
    pub kept: BTreeSet<String>,
    /// Blobs needed only while untagged revisions stay: the overwritten `acme/app:v1` and
    /// the referrer whose subject it is.
    pub untagged_only: BTreeSet<String>,
    /// The referrer of a tagged image, pushed by digest: it must survive --delete-untagged.
    pub sbom: String,
    /// The referrer of the overwritten image: it goes with it under --delete-untagged.
    pub old_sbom: String,
}

pub fn build() -> World {
    build_on(Registry::start())
}

/// The world, in a registry already started (on the filesystem or the s3 driver).
pub fn build_on(mut reg: Registry) -> World {
    let mut oci = reg.new_oci();
    let base = ("base-os", 3000);

    // acme/app:v1 pushed twice: the first image becomes an untagged revision.
    let v1_old = oci.image(
        &[base, ("app-v1-old", 2000)],
        "amd64",
        "2024-01-01T00:00:00Z",
    );
    oci.tag(&v1_old.manifest, "v1-old");
    let v1 = oci.image(
        &[base, ("app-v1-new", 2100)],
        "amd64",
        "2024-02-01T00:00:00Z",
    );
    oci.tag(&v1.manifest, "v1");
    let v2 = oci.image(&[base, ("app-v2", 2200)], "amd64", "2024-03-01T00:00:00Z");
    oci.tag(&v2.manifest, "v2");
    let tmp = oci.image(
        &[base, ("tmp-layer", 1800)],
        "amd64",
        "2024-04-01T00:00:00Z",
    );
    oci.tag(&tmp.manifest, "tmp");
    let cli = oci.image(&[base, ("cli", 1500)], "amd64", "2024-05-01T00:00:00Z");
    oci.tag(&cli.manifest, "cli");
    let m1 = oci.image(&[("multi-amd64", 1200)], "amd64", "2024-06-01T00:00:00Z");
    let m2 = oci.image(&[("multi-arm64", 1300)], "arm64", "2024-06-01T00:00:00Z");
    let multi = oci.index(&[(&m1, "amd64"), (&m2, "arm64")]);
    oci.tag(&multi, "multi");

    reg.push(&oci, "v1-old", "acme/app:v1");
    reg.push(&oci, "v1", "acme/app:v1");
    reg.push(&oci, "v2", "acme/app:v2");
    reg.push(&oci, "tmp", "acme/app:tmp");
    reg.push(&oci, "cli", "acme/tools/cli:1.0");
    reg.push(&oci, "multi", "library/multi:latest");

    // A manifest deleted through the API: its revision goes, its blobs stay until a gc.
    reg.delete_manifest("acme/app", &tmp.manifest.digest);

    let (sbom, sbom_blobs) = reg.push_referrer(
        "acme/app",
        &v2.manifest,
        "application/spdx+json",
        b"{\"spdxVersion\":\"SPDX-2.3\"}",
    );
    let (old_sbom, old_sbom_blobs) = reg.push_referrer(
        "acme/app",
        &v1_old.manifest,
        "application/spdx+json",
        b"{\"spdxVersion\":\"SPDX-2.2\"}",
    );
    let sig_blobs = reg.push_cosign_sig(
        "acme/app",
        &v2.manifest,
        b"{\"critical\":{\"image\":\"v2\"}}",
    );
    let sig_tag = format!("acme/app:sha256-{}.sig", &v2.manifest.digest[7..]);

    reg.put_blob("acme/app", &bytes_for("dangling", 999));
    reg.abandon_upload("acme/app", b"half an upload");

    let mut kept = BTreeSet::new();
    for img in [&v1, &v2, &cli, &m1, &m2] {
        kept.extend(img.blobs());
    }
    kept.insert(multi.digest.clone());
    kept.extend(sbom_blobs.iter().cloned());
    kept.extend(sig_blobs);
    let untagged_only: BTreeSet<String> = v1_old
        .blobs()
        .into_iter()
        .chain(old_sbom_blobs.iter().cloned())
        .filter(|d| !kept.contains(d))
        .collect();
    let tags = vec![
        "acme/app:v1".into(),
        "acme/app:v2".into(),
        sig_tag,
        "acme/tools/cli:1.0".into(),
        "library/multi:latest".into(),
    ];
    World {
        reg,
        tags,
        kept,
        untagged_only,
        sbom,
        old_sbom,
    }
}

impl World {
    /// Of `blobs`, those a plain gc deletes: needed neither by tags nor by untagged revisions.
    pub fn plain_garbage(&self, blobs: &BTreeSet<String>) -> BTreeSet<String> {
        blobs
            .iter()
            .filter(|d| !self.kept.contains(*d) && !self.untagged_only.contains(*d))
            .cloned()
            .collect()
    }

    /// Asserts every tag, and the kept referrer, pulls in full through the registry.
    pub fn assert_all_pull(&self) {
        for t in &self.tags {
            if let Err(e) = self.reg.pull(t) {
                panic!("{t} no longer pulls in full: {e}");
            }
        }
        self.reg
            .pull(&format!("acme/app@{}", self.sbom))
            .expect("the referrer of a tagged image must pull");
    }
}
