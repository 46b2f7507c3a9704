//! `--registry-url`: after a sweep, asks the live registry with HEAD requests whether it still
//! claims what went: each swept (repository, blob) pair and each deleted manifest. A registry
//! whose cache answers "present" for any of them would accept a re-push without its data.

use crate::model::digest::Digest;
use futures_util::StreamExt;
use serde::Serialize;
use std::time::Duration;

/// At most this many requests a run: a larger sweep is checked on a random sample of this size
/// (a stale cache is not selective, so a sample finds it as surely as the whole).
pub const MAX_PROBES: usize = 1000;
/// Requests in flight at once.
const IN_FLIGHT: usize = 16;
/// Manifest media types a pull accepts, so that the registry answers for any manifest kind.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws, */*";

/// Where a probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Blob,
    Manifest,
}

/// Something the registry still claims after it was swept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub repository: String,
    pub digest: Digest,
    pub kind: Kind,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    /// Requests made.
    pub asked: usize,
    /// Items there were to ask about (more than `asked` when sampled).
    pub of: usize,
    /// What the registry answered 200 for.
    pub claimed: Vec<Claim>,
    /// Requests with no usable answer (refused, unreachable, another status).
    pub failed: Vec<String>,
}

/// Checks `url` before a sweep: http(s), a host; `None` when it is usable.
pub fn check_url(url: &str) -> Result<(), String> {
    crate::endpoint::check(url)
}

/// Whether a registry answers at `url` (any HTTP status to `GET /v2/`, within a few seconds).
pub fn answers(url: &str) -> bool {
    let base = url.trim_end_matches('/');
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return false;
    };
    rt.block_on(async {
        crate::endpoint::install_tls();
        let Ok(client) = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
        else {
            return false;
        };
        client.get(format!("{base}/v2/")).send().await.is_ok()
    })
}

/// Up to `MAX_PROBES` of `items`, drawn at random when there are more.
fn sample(mut items: Vec<(String, Digest, Kind)>) -> Vec<(String, Digest, Kind)> {
    if items.len() <= MAX_PROBES {
        return items;
    }
    // A partial Fisher-Yates shuffle, seeded by the clock: another sample each run.
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    for i in 0..MAX_PROBES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = i + (x % (items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
    items.truncate(MAX_PROBES);
    items
}

/// HEADs each item (a sample of them when there are more than `MAX_PROBES`) at the registry
/// at `url`, with basic auth when `auth` is given.
pub fn probe(
    url: &str,
    auth: Option<(String, String)>,
    items: Vec<(String, Digest, Kind)>,
) -> Result<ProbeReport, String> {
    let of = items.len();
    let items = sample(items);
    let base = url.trim_end_matches('/').to_string();
    crate::endpoint::install_tls();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| format!("{url}: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
    let answers: Vec<(Claim, Result<u16, String>)> = rt.block_on(
        futures_util::stream::iter(items.into_iter().map(|(repository, digest, kind)| {
            let path = match kind {
                Kind::Blob => "blobs",
                Kind::Manifest => "manifests",
            };
            let mut req = client
                .head(format!("{base}/v2/{repository}/{path}/{digest}"))
                .header("Accept", ACCEPT);
            if let Some((user, password)) = &auth {
                req = req.basic_auth(user, Some(password));
            }
            async move {
                let status = req.send().await.map(|r| r.status().as_u16());
                let claim = Claim {
                    repository,
                    digest,
                    kind,
                };
                (claim, status.map_err(|e| root_cause(&e)))
            }
        }))
        .buffer_unordered(IN_FLIGHT)
        .collect(),
    );
    let mut report = ProbeReport {
        asked: answers.len(),
        of,
        ..ProbeReport::default()
    };
    for (claim, status) in answers {
        let what = format!(
            "HEAD /v2/{}/{}/{}",
            claim.repository,
            if claim.kind == Kind::Blob {
                "blobs"
            } else {
                "manifests"
            },
            claim.digest
        );
        match status {
            Ok(200) => report.claimed.push(claim),
            Ok(404) => {}
            Ok(401) | Ok(403) => report.failed.push(format!(
                "{what}: {} (give REGSWEEP_REGISTRY_USERNAME and REGSWEEP_REGISTRY_PASSWORD)",
                status.unwrap_or_default()
            )),
            Ok(s) => report.failed.push(format!("{what}: answered {s}")),
            Err(e) => report.failed.push(format!("{what}: {e}")),
        }
    }
    report
        .claimed
        .sort_by(|a, b| (&a.repository, a.digest).cmp(&(&b.repository, b.digest)));
    report.failed.sort();
    Ok(report)
}

/// The innermost cause of a request error ("connection refused"), not only its outer words.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if std::ptr::eq(cause as *const _ as *const u8, e as *const _ as *const u8) {
        e.to_string()
    } else {
        format!("{e}: {cause}")
    }
}
