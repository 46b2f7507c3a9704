//! The canary of `pulls listen --canary`: a tiny image pulled through the registry every
//! interval. Its pull comes back through the registry's notification like any other, so a
//! stretch with canary events proves the registry delivers, and a stretch without them is a
//! hole, however quiet the registry is.

use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The canary's pulls that the registry answered, and those that failed (for `/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    pub pulls: AtomicU64,
    pub failures: AtomicU64,
}

/// Where the canary is pulled, and how often.
#[derive(Debug, Clone)]
pub struct Canary {
    /// The registry's base URL (`http://127.0.0.1:5000`).
    pub url: String,
    pub repository: String,
    pub tag: String,
    pub interval: Duration,
    /// Basic credentials for the registry.
    pub credentials: Option<(String, String)>,
}

/// The canary image when none is named: a repository of its own, kept from every rule.
pub const DEFAULT_IMAGE: &str = "regsweep/canary:latest";

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The canary's config: an image of no layers, for no platform that runs.
const CONFIG: &[u8] =
    br#"{"architecture":"none","os":"none","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;

impl Canary {
    /// `REPOSITORY:TAG`.
    pub fn image(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// Splits `REPOSITORY:TAG` (the tag required: a canary is pulled by tag), checked as the
/// registry checks names.
pub fn parse_image(text: &str) -> Result<(String, String), String> {
    let (repo, tag) = text
        .rsplit_once(':')
        .filter(|(r, _)| !r.is_empty())
        .ok_or_else(|| format!("{text:?}: give REPOSITORY:TAG (e.g. {DEFAULT_IMAGE})"))?;
    if repo.contains(':') || !super::event::valid_repository(repo) {
        return Err(format!("{repo:?} is not a valid repository name"));
    }
    if !crate::model::paths::valid_tag(tag) {
        return Err(format!("{tag:?} is not a valid tag"));
    }
    Ok((repo.to_string(), tag.to_string()))
}

/// Pulls the canary every interval until the runtime stops; pushes it whenever the registry
/// has none (a run without the ledger may have swept it). A failed pull is counted and said:
/// coverage then stops by itself.
pub(super) async fn run(c: Canary, counters: Arc<Stats>) {
    crate::endpoint::install_tls();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!("canary: no HTTP client: {e}");
            return;
        }
    };
    let base = c.url.trim_end_matches('/').to_string();
    let mut tick = tokio::time::interval(c.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut status = pull(&client, &base, &c).await;
        if matches!(status, Ok(404)) {
            match push(&client, &base, &c).await {
                Ok(()) => tracing::info!("canary: pushed {} to {base}", c.image()),
                Err(e) => tracing::warn!("canary: cannot push {} to {base}: {e}", c.image()),
            }
            status = pull(&client, &base, &c).await;
        }
        match status {
            Ok(200) => {
                counters.pulls.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                let what = match other {
                    Ok(s) => format!("answered {s}"),
                    Err(e) => e,
                };
                tracing::warn!(
                    "canary: GET {base}/v2/{}/manifests/{} {what}: coverage stops until it is pulled again",
                    c.repository,
                    c.tag
                );
            }
        }
    }
}

fn auth(req: reqwest::RequestBuilder, c: &Canary) -> reqwest::RequestBuilder {
    match &c.credentials {
        Some((user, password)) => req.basic_auth(user, Some(password)),
        None => req,
    }
}

async fn pull(client: &reqwest::Client, base: &str, c: &Canary) -> Result<u16, String> {
    let url = format!("{base}/v2/{}/manifests/{}", c.repository, c.tag);
    let r = auth(client.get(&url).header("Accept", ACCEPT), c)
        .send()
        .await
        .map_err(|e| cause(&e))?;
    let status = r.status().as_u16();
    // Read the body: the registry notifies a pull once it has served it.
    let _ = r.bytes().await;
    Ok(status)
}

/// Uploads the config blob (POST, then PUT with its digest) and the manifest by tag.
async fn push(client: &reqwest::Client, base: &str, c: &Canary) -> Result<(), String> {
    let hash: [u8; 32] = Sha256::digest(CONFIG).into();
    let digest = crate::model::digest::Digest(hash).to_string();
    let start = auth(
        client.post(format!("{base}/v2/{}/blobs/uploads/", c.repository)),
        c,
    )
    .send()
    .await
    .map_err(|e| cause(&e))?;
    if start.status().as_u16() != 202 {
        return Err(format!("starting the upload answered {}", start.status()));
    }
    let location = (start.headers().get("location"))
        .and_then(|l| l.to_str().ok())
        .ok_or("the upload has no Location")?
        .to_string();
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = auth(client.put(format!("{location}{sep}digest={digest}")), c)
        .header("Content-Type", "application/octet-stream")
        .body(CONFIG)
        .send()
        .await
        .map_err(|e| cause(&e))?;
    if put.status().as_u16() != 201 {
        return Err(format!("the config upload answered {}", put.status()));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": CONFIG.len()},
        "layers": [],
        "annotations": {"org.opencontainers.image.description": "regsweep pulls listen --canary: pulled every interval to prove the registry notifies; kept from every rule"}
    });
    let m = auth(
        client.put(format!("{base}/v2/{}/manifests/{}", c.repository, c.tag)),
        c,
    )
    .header("Content-Type", MANIFEST)
    .body(manifest.to_string())
    .send()
    .await
    .map_err(|e| cause(&e))?;
    if m.status().as_u16() != 201 {
        return Err(format!("the manifest upload answered {}", m.status()));
    }
    Ok(())
}

/// The innermost cause of a request error ("Connection refused").
fn cause(e: &reqwest::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    format!("{e}: {inner}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_image_is_a_repository_and_a_tag() {
        assert_eq!(
            parse_image("regsweep/canary:latest"),
            Ok(("regsweep/canary".into(), "latest".into()))
        );
        for bad in ["regsweep/canary", ":x", "A/b:t", "a:b:c", "a:-x"] {
            assert!(parse_image(bad).is_err(), "{bad}");
        }
    }
}
