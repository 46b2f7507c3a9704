//! The layout's vocabulary in one place: where each thing lives below `docker/registry/v2` (the
//! same names on disk and as object keys in a bucket), the names that classify a folder, and which
//! repository and tag names are valid. Pure: building a path here touches no storage.

use crate::model::digest::Digest;
use std::path::{Path, PathBuf};

/// Below `docker/registry/v2`: the blob store, by digest (`blobs/sha256/<2 hex>/<hex>/data`).
pub const BLOBS: &str = "blobs/sha256";
/// Below `docker/registry/v2`: the repositories, whose names may nest (`acme/app`).
pub const REPOSITORIES: &str = "repositories";

/// Whether a folder whose entries `has` answers for looks like `docker/registry/v2`: it holds
/// the blob store or the repositories (a fresh registry may have only one of them).
pub fn looks_like_v2(has: impl Fn(&str) -> bool) -> bool {
    has("blobs") || has(REPOSITORIES)
}
/// In a blob folder: its content.
pub const DATA: &str = "data";
/// In a link folder: the 71-byte `sha256:<hex>` that names what it links.
pub const LINK: &str = "link";
/// Below a repository: its manifests (revisions and tags).
pub const MANIFESTS: &str = "_manifests";
/// Below a repository: the manifests it holds, one folder per digest.
pub const REVISIONS: &str = "_manifests/revisions/sha256";
/// Below a repository: its tags, one folder per name.
pub const TAGS: &str = "_manifests/tags";
/// Below a tag: the link to the manifest it names now.
pub const TAG_CURRENT: &str = "current/link";
/// Below a tag: every manifest it has named (its history), one folder per digest.
pub const TAG_INDEX: &str = "index/sha256";
/// Below a repository: the blobs it may serve (layer links), one folder per digest.
pub const LAYERS: &str = "_layers/sha256";
/// Below a repository: uploads in progress, one folder per upload id.
pub const UPLOADS: &str = "_uploads";
/// In an upload folder: when it began (RFC 3339).
pub const STARTED_AT: &str = "startedat";

/// The names the registry creates in a repository folder; any one makes it a repository, since
/// the registry serves (and a push relies on) a repository from its first blob or upload.
pub const REPO_MARKERS: [&str; 3] = [MANIFESTS, "_layers", UPLOADS];

/// The `docker/registry/v2` folder of a storage root, with path builders for its parts. With an
/// empty `v2`, the paths are relative, for handles opened at the top.
#[derive(Debug, Clone)]
pub struct Paths {
    pub v2: PathBuf,
}

impl Paths {
    pub fn new(v2: PathBuf) -> Paths {
        Paths { v2 }
    }

    pub fn blobs(&self) -> PathBuf {
        self.v2.join(BLOBS)
    }

    pub fn blob_dir(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.blobs().join(&hex[..2]).join(hex)
    }

    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        self.blob_dir(d).join(DATA)
    }

    pub fn repositories(&self) -> PathBuf {
        self.v2.join(REPOSITORIES)
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
        self.repo(repo).join(REVISIONS).join(d.hex())
    }

    pub fn tag_dir(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo(repo).join(TAGS).join(tag)
    }

    pub fn tag_index_dir(&self, repo: &str, tag: &str, d: &Digest) -> PathBuf {
        self.tag_dir(repo, tag).join(TAG_INDEX).join(d.hex())
    }

    pub fn layer_dir(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo(repo).join(LAYERS).join(d.hex())
    }

    pub fn upload_dir(&self, repo: &str, id: &str) -> PathBuf {
        self.repo(repo).join(UPLOADS).join(id)
    }
}

/// What an item folder below `docker/registry/v2` is, read from its relative path: the inverse
/// of the builders of [`Paths`], for items found outside the layout's own walk (the trash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Blob(Digest),
    LayerLink {
        repo: String,
        digest: Digest,
    },
    Revision {
        repo: String,
        digest: Digest,
    },
    /// A folder of `_manifests/tags`: a whole tag.
    Tag {
        repo: String,
        tag: String,
    },
    /// One entry of a tag's history.
    TagIndex {
        repo: String,
        tag: String,
        digest: Digest,
    },
    Upload {
        repo: String,
        id: String,
    },
}

/// Classifies the relative path `rel` of an item folder; `None` for anything else (a folder on
/// the way, a file, a name the layout does not use).
pub fn classify(rel: &Path) -> Option<Place> {
    let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
    let n = parts.len();
    // Whether `parts[..at]` ends with the components of `suffix`.
    let ends = |suffix: &str, at: usize| {
        let want: Vec<&str> = suffix.split('/').collect();
        at >= want.len() && parts[at - want.len()..at] == want[..]
    };
    if n == 4 && ends(BLOBS, 2) {
        let (prefix, hex) = (parts[2], parts[3]);
        return Digest::from_hex(hex)
            .filter(|_| prefix.len() == 2 && hex.starts_with(prefix))
            .map(Place::Blob);
    }
    if parts.first() != Some(&REPOSITORIES) {
        return None;
    }
    // The repository is what lies between `repositories/` and its marker folder.
    let repo = |upto: usize| (upto > 1).then(|| parts[1..upto].join("/"));
    let last = parts[n - 1];
    let digest = || Digest::from_hex(last);
    if ends(TAG_INDEX, n - 1) && n >= 4 && ends(TAGS, n - 4) {
        let tag = parts[n - 4].to_string();
        return Some(Place::TagIndex {
            repo: repo(n - 6)?,
            tag,
            digest: digest()?,
        });
    }
    if ends(LAYERS, n - 1) {
        return Some(Place::LayerLink {
            repo: repo(n - 3)?,
            digest: digest()?,
        });
    }
    if ends(REVISIONS, n - 1) {
        return Some(Place::Revision {
            repo: repo(n - 4)?,
            digest: digest()?,
        });
    }
    if ends(TAGS, n - 1) {
        return Some(Place::Tag {
            repo: repo(n - 3)?,
            tag: last.to_string(),
        });
    }
    if ends(UPLOADS, n - 1) {
        return Some(Place::Upload {
            repo: repo(n - 2)?,
            id: last.to_string(),
        });
    }
    None
}

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

/// A repository name the registry accepts: components joined by `/`, at most 255 bytes.
pub fn valid_repo_path(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(valid_repo_component)
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

    #[test]
    fn classify_reads_back_what_the_builders_build() {
        let r = Paths::new(PathBuf::new());
        let d = Digest([0xab; 32]);
        let (repo, tag) = ("acme/app".to_string(), "v1".to_string());
        let places = [
            (r.blob_dir(&d), Place::Blob(d)),
            (
                r.layer_dir(&repo, &d),
                Place::LayerLink {
                    repo: repo.clone(),
                    digest: d,
                },
            ),
            (
                r.revision_dir(&repo, &d),
                Place::Revision {
                    repo: repo.clone(),
                    digest: d,
                },
            ),
            (
                r.tag_dir(&repo, &tag),
                Place::Tag {
                    repo: repo.clone(),
                    tag: tag.clone(),
                },
            ),
            (
                r.tag_index_dir(&repo, &tag, &d),
                Place::TagIndex {
                    repo: repo.clone(),
                    tag: tag.clone(),
                    digest: d,
                },
            ),
            (
                r.upload_dir(&repo, "u1"),
                Place::Upload {
                    repo: repo.clone(),
                    id: "u1".into(),
                },
            ),
        ];
        for (path, place) in places {
            assert_eq!(classify(&path), Some(place), "{}", path.display());
        }
        for other in [
            "blobs/sha256/cd/abab",
            "repositories/a/_layers/sha256",
            "repositories/_layers/sha256/x",
            "repositories/a/_manifests/tags/v1/current",
            "elsewhere/a/b/c",
        ] {
            assert_eq!(classify(Path::new(other)), None, "{other}");
        }
    }
}
