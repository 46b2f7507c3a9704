//! The layout's vocabulary in one place: where each thing lives below `docker/registry/v2` (the
//! same names on disk and as object keys in a bucket), the names that classify a folder, and which
//! repository and tag names are valid. Pure: building a path here touches no storage.

use crate::model::digest::Digest;
use std::path::PathBuf;

/// The `docker/registry/v2` folder of a storage root, with path builders for its parts.
#[derive(Debug, Clone)]
pub struct Paths {
    pub v2: PathBuf,
}

impl Paths {
    pub fn new(v2: PathBuf) -> Paths {
        Paths { v2 }
    }

    pub fn blobs(&self) -> PathBuf {
        self.v2.join("blobs").join("sha256")
    }

    pub fn blob_dir(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.blobs().join(&hex[..2]).join(hex)
    }

    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        self.blob_dir(d).join("data")
    }

    pub fn repositories(&self) -> PathBuf {
        self.v2.join("repositories")
    }

    pub fn repo(&self, name: &str) -> PathBuf {
        // Names come from our own walk of the tree and are validated there; joining
        // component by component keeps a separator from ever being read as a root.
        let mut p = self.repositories();
        for part in name.split('/') {
            p.push(part);
        }
        p
    }

    pub fn revision_dir(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo(repo)
            .join("_manifests/revisions/sha256")
            .join(d.hex())
    }

    pub fn tag_dir(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo(repo).join("_manifests/tags").join(tag)
    }

    pub fn tag_index_dir(&self, repo: &str, tag: &str, d: &Digest) -> PathBuf {
        self.tag_dir(repo, tag).join("index/sha256").join(d.hex())
    }

    pub fn layer_dir(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo(repo).join("_layers/sha256").join(d.hex())
    }

    pub fn upload_dir(&self, repo: &str, id: &str) -> PathBuf {
        self.repo(repo).join("_uploads").join(id)
    }
}

/// The names the registry creates in a repository folder; any one makes it a repository, since
/// the registry serves (and a push relies on) a repository from its first blob or upload.
pub const REPO_MARKERS: [&str; 3] = ["_manifests", "_layers", "_uploads"];

/// The name an older regsweep gave an item it was deleting, beside it in the layout; such
/// leftovers are still finished. Sweeps now stage items in [`STAGING_DIR`] instead.
pub const STAGING_PREFIX: &str = ".regsweep-deleting-";
/// Where a sweep moves each item before deleting it: inside `docker/registry/v2`, so on the
/// same filesystem, but outside `blobs/` and `repositories/`, the only trees the registry and
/// its GC walk. A killed sweep's leftovers there are invisible to both; the next run deletes them.
pub const STAGING_DIR: &str = ".regsweep-staging";

/// One path component of a repository name, as the distribution grammar allows:
/// lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
pub fn valid_repo_component(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A tag as the distribution grammar allows: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_components() {
        for ok in ["a", "acme", "my-app", "my--app", "a.b", "a_b", "a__b", "x1"] {
            assert!(valid_repo_component(ok), "{ok}");
        }
        for bad in ["", "..", ".", "-a", "a-", "A", "a___b", "a._b", "a b", "é"] {
            assert!(!valid_repo_component(bad), "{bad}");
        }
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "sha256-abc.sig", "A-b_c.d"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn paths_stay_inside() {
        let p = Paths::new(PathBuf::from("/r/docker/registry/v2"));
        let d = Digest([0xab; 32]);
        assert!(
            p.blob_data(&d)
                .ends_with(format!("blobs/sha256/ab/{}/data", d.hex()))
        );
        // Built paths stay under v2; `dirfd` refuses `..` and absolute paths on its own.
        assert!(p.tag_dir("a/b", "v1").starts_with(&p.v2));
        assert!(p.repo("a/b").ends_with("repositories/a/b"));
    }
}
