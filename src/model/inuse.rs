//! Images in use: references read from a plain list or from Kubernetes JSON (`kubectl get pods
//! -A -o json`, or any List of workloads), and what they protect once resolved in a layout.

use crate::model::Layout;
use crate::model::digest::Digest;
use crate::model::paths::{valid_repo_component, valid_tag};
use std::collections::{BTreeMap, HashMap};

/// One image reference and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]`, lowercased; `None` when the reference names no host (this registry).
    pub host: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
    /// "FILE line N", or "FILE: Pod ns/name container c".
    pub source: String,
}

/// What a file of references held: the references, and the lines that were none.
#[derive(Debug, Clone, Default)]
pub struct Images {
    pub refs: Vec<ImageRef>,
    /// Entries that name no image here at all (a runtime's image ID, a malformed reference).
    pub skipped: Vec<(String, String)>,
}

impl Images {
    pub fn extend(&mut self, other: Images) {
        self.refs.extend(other.refs);
        self.skipped.extend(other.skipped);
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }
}

/// Parses `text` as a reference, with or without a runtime's scheme (`docker-pullable://`).
/// `Err` says why it is none.
pub fn parse_ref(text: &str, source: String) -> Result<ImageRef, String> {
    let s = text.trim();
    let s = ["docker-pullable://", "docker://", "containerd://"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(s);
    if s.starts_with("sha256:") {
        return Err("an image ID (the config's digest) names no repository".into());
    }
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => {
            let d = Digest::parse(d).ok_or_else(|| format!("{d:?} is not sha256:<64 hex>"))?;
            (n, Some(d))
        }
        None => (s, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (&name[..at], Some(name[at + 1..].to_string()))
        }
        None => (name, None),
    };
    if let Some(t) = &tag
        && !valid_tag(t)
    {
        return Err(format!("{t:?} is not a valid tag"));
    }
    let (host, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first.to_ascii_lowercase()), rest)
        }
        _ => (None, name),
    };
    if repository.is_empty() || !repository.split('/').all(valid_repo_component) {
        return Err(format!("{repository:?} is not a valid repository name"));
    }
    // As the container runtimes read it: no tag and no digest is `:latest`.
    let tag = match (tag, digest) {
        (None, None) => Some("latest".to_string()),
        (t, _) => t,
    };
    Ok(ImageRef {
        host,
        repository: repository.to_string(),
        tag,
        digest,
        source,
    })
}

/// Reads a file as it streams: Kubernetes JSON when it starts with `{` (never held whole in
/// memory), else its lines as `parse` reads them.
pub fn parse_reader(mut reader: impl std::io::BufRead, name: &str) -> Result<Images, String> {
    let first = loop {
        let buf = reader.fill_buf().map_err(|e| format!("cannot read: {e}"))?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break Some(buf[i]),
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    if first == Some(b'{') {
        return kube(reader, name);
    }
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    parse(&text, name)
}

/// Reads a file's text: Kubernetes JSON when it starts with `{`, else one reference a line
/// (`#` comments and blank lines allowed). `Err` names the line or the JSON's fault.
pub fn parse(text: &str, name: &str) -> Result<Images, String> {
    if text.trim_start().starts_with('{') {
        return kube(text.as_bytes(), name);
    }
    let mut images = Images::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let source = format!("{name} line {}", n + 1);
        match parse_ref(line, source) {
            Ok(r) => images.refs.push(r),
            Err(why) => return Err(format!("line {}: {line:?}: {why}", n + 1)),
        }
    }
    Ok(images)
}

/// A reference of a Kubernetes object: one without a host is Docker Hub's, as the runtimes
/// read it (in a plain list it is this registry's).
/// Kubernetes JSON's references, read as the runtimes read them.
fn kube(reader: impl std::io::Read, name: &str) -> Result<Images, String> {
    let mut out = Images::default();
    for (image, source) in crate::model::kube::parse(reader, name)? {
        take_kube(&mut out, &image, source);
    }
    Ok(out)
}

pub(super) fn take_kube(out: &mut Images, text: &str, source: String) {
    match parse_ref(text, source.clone()) {
        Ok(mut r) => {
            let host = r.host.get_or_insert_with(|| "docker.io".into());
            // Docker Hub's official images live under `library/` (a pull-through cache of it
            // stores them there).
            if host == "docker.io" && !r.repository.contains('/') {
                r.repository = format!("library/{}", r.repository);
            }
            out.refs.push(r)
        }
        Err(why) => out.skipped.push((source, format!("{text:?}: {why}"))),
    }
}

/// What the references protect in one layout.
#[derive(Debug, Clone, Default)]
pub struct Protection {
    /// (repository index, tag index) -> why.
    pub tags: HashMap<(usize, usize), String>,
    /// Per repository (parallel to `Layout::repos`, or empty): digests kept from
    /// `--delete-untagged`, each with why.
    pub digests: Vec<BTreeMap<Digest, String>>,
    /// References to other hosts, ignored: each host and how many.
    pub other_hosts: BTreeMap<String, usize>,
    /// References that name nothing here: (source, reference, why).
    pub unresolved: Vec<(String, String, String)>,
}

impl Protection {
    /// The digests pinned in repository `r`.
    pub fn pinned(&self, r: usize) -> impl Iterator<Item = &Digest> {
        self.digests.get(r).into_iter().flat_map(|m| m.keys())
    }

    pub fn pin(&mut self, repos: usize, r: usize, d: Digest, why: String) {
        if self.digests.len() < repos {
            self.digests.resize_with(repos, BTreeMap::new);
        }
        self.digests[r].entry(d).or_insert(why);
    }
}

/// Resolves references in `layout`. `hosts` names this registry (`host[:port]`, any case);
/// empty: every host counts as this registry.
pub fn resolve(layout: &Layout, images: &Images, hosts: &[String]) -> Protection {
    let mut p = Protection::default();
    if images.refs.is_empty() {
        return p;
    }
    let n = layout.repos.len();
    let by_name: HashMap<&str, usize> = (layout.repos.iter().enumerate())
        .map(|(i, r)| (r.name.as_ref(), i))
        .collect();
    for r in &images.refs {
        if let Some(h) = &r.host
            && !hosts.is_empty()
            && !hosts.iter().any(|x| x.eq_ignore_ascii_case(h))
        {
            *p.other_hosts.entry(h.clone()).or_default() += 1;
            continue;
        }
        let shown = display(r);
        let why = format!("in use: {}", r.source);
        let Some(&ri) = by_name.get(r.repository.as_str()) else {
            let what = format!("no repository {:?} here", r.repository);
            p.unresolved.push((r.source.clone(), shown, what));
            continue;
        };
        let repo = &layout.repos[ri];
        let mut found = false;
        if let Some(tag) = &r.tag
            && let Some(ti) = repo.tags.iter().position(|t| &t.name == tag)
        {
            found = true;
            p.tags.entry((ri, ti)).or_insert_with(|| why.clone());
            if let Some(c) = repo.tags[ti].current {
                p.pin(n, ri, c.digest, why.clone());
            }
        }
        if let Some(d) = r.digest
            && repo.revisions.iter().any(|rev| rev.digest == d)
        {
            found = true;
            p.pin(n, ri, d, why.clone());
        }
        if !found {
            let what = match (&r.tag, &r.digest) {
                (_, Some(d)) => format!("{d} is not a manifest of {}", r.repository),
                (Some(t), None) => format!("{} has no tag {t:?}", r.repository),
                (None, None) => "names nothing".into(),
            };
            p.unresolved.push((r.source.clone(), shown, what));
        }
    }
    p
}

/// What the run's record says of use: the references read, and what they (and the ledger)
/// protected.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UsedSummary {
    /// References read from `--keep-images` and `protect.images_file`.
    pub references: usize,
    /// Of those, naming another registry (not a `--registry-host`), ignored.
    pub other_hosts: usize,
    /// Of those, naming nothing here (each is a notice).
    pub unresolved: usize,
    /// Entries that are no reference (a runtime's image ID), skipped.
    pub skipped: usize,
    /// Tags protected from every rule.
    pub tags_protected: usize,
    /// Manifests kept as roots from -m, and why.
    pub manifests_protected: Vec<Pinned>,
    /// The pull ledger's streams of evidence, when one was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<Vec<crate::model::coverage::Stream>>,
    /// The window each pull rule (and `protect.pulled_within`) asked the ledger about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<AskedWindow>,
}

/// What a pull rule asked the ledger to cover: `[from, until]`, seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AskedWindow {
    pub what: String,
    pub from: crate::model::Time,
    pub until: crate::model::Time,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Pinned {
    pub repository: String,
    pub digest: Digest,
    pub why: String,
}

impl Protection {
    /// The summary for a report, and the unresolved references as notices.
    pub fn summary(
        &self,
        layout: &Layout,
        images: &Images,
    ) -> (UsedSummary, Vec<crate::model::Finding>) {
        let mut pinned = Vec::new();
        for (r, map) in self.digests.iter().enumerate() {
            for (d, why) in map {
                pinned.push(Pinned {
                    repository: layout.repos[r].name.to_string(),
                    digest: *d,
                    why: why.clone(),
                });
            }
        }
        let hosts = (self.other_hosts.iter()).map(|(host, n)| crate::model::Finding {
            path: "--registry-host".into(),
            message: format!(
                "{n} image reference{} in use name{} the host {host}, not a --registry-host: ignored (if {host} is this registry too, give --registry-host {host})",
                if *n == 1 { "" } else { "s" },
                if *n == 1 { "s" } else { "" }
            ),
            severity: crate::model::Severity::Notice,
            kind: crate::model::FindingKind::ImageNotFound,
            repository: None,
        });
        let notices = (self.unresolved.iter())
            .map(|(source, reference, why)| crate::model::Finding {
                path: source.into(),
                message: format!(
                    "{reference}: {why}; nothing protected by it (a typo, or another registry's image: see --registry-host)"
                ),
                severity: crate::model::Severity::Notice,
                kind: crate::model::FindingKind::ImageNotFound,
                repository: None,
            })
            .chain(hosts)
            .collect();
        let summary = UsedSummary {
            references: images.refs.len(),
            other_hosts: self.other_hosts.values().sum(),
            unresolved: self.unresolved.len(),
            skipped: images.skipped.len(),
            tags_protected: self.tags.len(),
            manifests_protected: pinned,
            ledger: None,
            windows: Vec::new(),
        };
        (summary, notices)
    }
}

/// The reference as written, without where it was read.
pub fn display(r: &ImageRef) -> String {
    let mut s = String::new();
    if let Some(h) = &r.host {
        s.push_str(h);
        s.push('/');
    }
    s.push_str(&r.repository);
    if let Some(t) = &r.tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = &r.digest {
        s.push('@');
        s.push_str(&d.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn references_in_every_form() {
        let r = parse_ref("registry.local:5000/team/app:1.2", "x".into()).unwrap();
        assert_eq!(r.host.as_deref(), Some("registry.local:5000"));
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("team/app", Some("1.2"))
        );
        let r = parse_ref(&format!("app@{D}"), "x".into()).unwrap();
        assert_eq!(
            (r.host, r.tag, r.digest.map(|d| d.to_string())),
            (None, None, Some(D.into()))
        );
        let r = parse_ref(&format!("Host.example/a/b:v1@{D}"), "x".into()).unwrap();
        assert_eq!(r.host.as_deref(), Some("host.example"));
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("a/b", Some("v1"))
        );
        let r = parse_ref(&format!("docker-pullable://localhost/x@{D}"), "x".into()).unwrap();
        assert_eq!(
            (r.host.as_deref(), r.repository.as_str()),
            (Some("localhost"), "x")
        );
        assert!(parse_ref(&format!("docker://{D}"), "x".into()).is_err());
        // No tag and no digest: `:latest`, as the runtimes pull it.
        let r = parse_ref("localhost:5000/library/multi", "x".into()).unwrap();
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("library/multi", Some("latest"))
        );
        assert!(parse_ref("App:1", "x".into()).is_err());
        assert!(parse_ref("app@sha256:12", "x".into()).is_err());
        assert!(parse_ref("a/../b:1", "x".into()).is_err());
    }

    #[test]
    fn a_list_names_its_bad_line() {
        let text = format!("# running\n\napp:1  # the web\napp@{D}\nnot a ref\n");
        let err = parse(&text, "f").unwrap_err();
        assert!(err.starts_with("line 5:"), "{err}");
        let ok = parse(&text[..text.find("not").unwrap()], "f").unwrap();
        assert_eq!(ok.refs.len(), 2);
        assert_eq!(ok.refs[0].source, "f line 3");
    }

    #[test]
    fn kubernetes_json_gives_images_and_image_ids() {
        let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "List", "items": [
          {"kind": "Pod", "metadata": {"name": "web", "namespace": "prod"},
           "spec": {"initContainers": [{"name": "init", "image": "r.local/a:1"}],
                    "containers": [{"name": "app", "image": "r.local/b:2"}]},
           "status": {"containerStatuses": [{"name": "app", "image": "r.local/b:2",
              "imageID": format!("docker-pullable://r.local/b@{D}")}],
              "initContainerStatuses": [{"name": "init", "imageID": format!("r.local/a@{D}")}]}},
          {"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec":
             {"template": {"spec": {"containers": [{"name": "j", "image": "r.local/c:3"}]}}}}}}
        ]});
        let images = parse(&doc.to_string(), "pods.json").unwrap();
        let shown: Vec<String> = images.refs.iter().map(display).collect();
        assert_eq!(shown.len(), 5, "{shown:?}");
        assert!(shown.contains(&"r.local/c:3".to_string()));
        assert!(
            images
                .refs
                .iter()
                .any(|r| r.source == "pods.json: Pod prod/web container app (imageID)")
        );
        assert!(parse("{\"a\": 1}", "f").is_err());
        assert!(parse("{", "f").is_err());
    }
}
