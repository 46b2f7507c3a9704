//! A registry event (a pull, push, mount or delete of a repository's tag or digest), and the
//! notification envelope the registry's webhook delivers, read strictly.

use crate::model::Time;
use crate::model::digest::Digest;
use crate::model::paths::{valid_repo_component, valid_tag};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Mount,
    Delete,
}

/// One thing that happened to a repository's manifest, at the registry's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub time: Time,
    pub action: Action,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Whether `name` is a repository name the registry accepts.
pub fn valid_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(valid_repo_component)
}

#[derive(Deserialize)]
struct Envelope {
    events: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: RawTarget,
    #[serde(default)]
    source: RawSource,
}

/// The registry process that sent the event: its host and port, and a UUID per process start.
#[derive(Deserialize, Default)]
struct RawSource {
    #[serde(default)]
    addr: String,
    #[serde(default, rename = "instanceID")]
    instance_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawTarget {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    tag: String,
}

/// What an envelope held: every event as evidence of delivery, the manifest ones kept.
#[derive(Debug, Default)]
pub struct Parsed {
    pub items: Vec<Item>,
    /// Events about blobs or actions not kept.
    pub ignored: usize,
}

/// One event of an envelope: when and by which registry process it was sent, and what it
/// records (`None` for a blob's pull or push or another action: still evidence).
#[derive(Debug, Clone)]
pub struct Item {
    pub time: Option<Time>,
    /// `source.addr` ("unknown" when the registry sent none).
    pub instance: String,
    /// `source.instanceID`.
    pub process: String,
    pub event: Option<Event>,
}

impl Parsed {
    /// The events kept.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.items.iter().filter_map(|i| i.event.as_ref())
    }
}

/// The longest `source.addr` or `instanceID` kept; a longer one is cut.
const MAX_SOURCE: usize = 255;

fn source_text(s: &str, or: &str) -> String {
    let s: String = (s.chars())
        .filter(|c| !c.is_control())
        .take(MAX_SOURCE)
        .collect();
    if s.is_empty() { or.to_string() } else { s }
}

/// Reads a notification envelope (`{"events": [...]}`). Manifest pulls, pushes, and every
/// delete and mount are kept; blob pulls and pushes are counted as ignored. `Err` says why the
/// body is not an envelope the registry would send.
pub fn parse_envelope(body: &[u8]) -> Result<Parsed, String> {
    let env: Envelope = serde_json::from_slice(body)
        .map_err(|e| format!("not a notification envelope ({{\"events\": [...]}}): {e}"))?;
    let mut out = Parsed::default();
    for (i, raw) in env.events.into_iter().enumerate() {
        let raw: RawEvent = serde_json::from_value(raw).map_err(|e| format!("event {i}: {e}"))?;
        let instance = source_text(&raw.source.addr, "unknown");
        let process = source_text(&raw.source.instance_id, "");
        let time = chrono::DateTime::parse_from_rfc3339(&raw.timestamp)
            .ok()
            .map(|t| t.timestamp());
        let event = event(raw).map_err(|e| format!("event {i}: {e}"))?;
        out.ignored += usize::from(event.is_none());
        out.items.push(Item {
            time,
            instance,
            process,
            event,
        });
    }
    Ok(out)
}

/// A manifest event of the envelope, `None` for a blob's pull or push or another action.
fn event(raw: RawEvent) -> Result<Option<Event>, String> {
    let action = match raw.action.as_str() {
        "pull" => Action::Pull,
        "push" => Action::Push,
        "mount" => Action::Mount,
        "delete" => Action::Delete,
        "" => return Err("no action".into()),
        _ => return Ok(None),
    };
    let t = &raw.target;
    if !valid_repository(&t.repository) {
        return Err(format!("{:?} is not a valid repository name", t.repository));
    }
    let time = chrono::DateTime::parse_from_rfc3339(&raw.timestamp)
        .map_err(|e| format!("timestamp {:?}: {e}", raw.timestamp))?
        .timestamp();
    let digest = match t.digest.as_str() {
        "" => None,
        d => Some(Digest::parse(d).ok_or_else(|| format!("digest {d:?} is not sha256:<64 hex>"))?),
    };
    let tag = match t.tag.as_str() {
        "" => None,
        tag if valid_tag(tag) => Some(tag.to_string()),
        tag => return Err(format!("{tag:?} is not a valid tag")),
    };
    if tag.is_none() && digest.is_none() && action != Action::Delete {
        return Err("names neither a tag nor a digest".into());
    }
    if matches!(action, Action::Pull | Action::Push) && !is_manifest(t) {
        return Ok(None);
    }
    Ok(Some(Event {
        time,
        action,
        repository: t.repository.clone(),
        tag,
        digest,
    }))
}

/// Whether the target is a manifest: its URL names `/manifests/`, or (without a URL) its media
/// type is a manifest's or an index's.
fn is_manifest(t: &RawTarget) -> bool {
    if !t.url.is_empty() {
        return t.url.contains("/manifests/");
    }
    let m = t.media_type.as_str();
    m.contains("manifest") || m.contains("image.index")
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn body(events: serde_json::Value) -> Vec<u8> {
        serde_json::json!({ "events": events })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn manifest_pulls_are_kept_and_blob_pulls_counted() {
        let b = body(serde_json::json!([
            {"id": "1", "timestamp": "2026-12-04T10:00:00.123456789Z", "action": "pull",
             "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D,
                        "repository": "team/app", "url": format!("http://r/v2/team/app/manifests/{D}"), "tag": "v1"}},
            {"id": "2", "timestamp": "2026-12-04T10:00:01Z", "action": "pull",
             "target": {"mediaType": "application/octet-stream", "digest": D, "repository": "team/app",
                        "url": format!("http://r/v2/team/app/blobs/{D}")}},
            {"id": "3", "timestamp": "2026-12-04T10:00:02Z", "action": "delete",
             "target": {"digest": D, "repository": "team/app"}},
            {"id": "4", "timestamp": "2026-12-04T10:00:02Z", "action": "future", "target": {}}
        ]));
        let p = parse_envelope(&b).unwrap();
        assert_eq!(p.ignored, 2);
        let events: Vec<&Event> = p.events().collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].tag.as_deref(), Some("v1"));
        assert_eq!(events[0].action, Action::Pull);
        assert_eq!(events[1].action, Action::Delete);
        // Every event is evidence of delivery, the blob pull too; a bad timestamp is none.
        assert_eq!(p.items.len(), 4);
        assert!(p.items[1].time.is_some() && p.items[1].event.is_none());
        assert_eq!(p.items[0].instance, "unknown");
    }

    #[test]
    fn what_is_not_an_envelope_is_refused() {
        for bad in [
            b"".to_vec(),
            b"[]".to_vec(),
            b"{\"events\": 3}".to_vec(),
            b"{\"events\": [1]}".to_vec(),
            body(
                serde_json::json!([{"timestamp": "x", "action": "pull", "target": {"repository": "a", "tag": "t"}}]),
            ),
            body(
                serde_json::json!([{"timestamp": "2026-12-04T10:00:00Z", "action": "pull", "target": {"repository": "A/../b", "tag": "t"}}]),
            ),
            body(
                serde_json::json!([{"timestamp": "2026-12-04T10:00:00Z", "action": "pull", "target": {"repository": "a", "digest": "sha256:1"}}]),
            ),
        ] {
            assert!(
                parse_envelope(&bad).is_err(),
                "{}",
                String::from_utf8_lossy(&bad)
            );
        }
    }
}
