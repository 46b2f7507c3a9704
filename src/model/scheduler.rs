//! A pull-through cache's `scheduler-state.json` (distribution `registry/proxy/scheduler`): per
//! cached object, `{"Key": "repo@sha256:...", "ExpiryData": RFC 3339, "EntryType": 0 blob, 1
//! manifest}`, under a map keyed by the same reference. Read as the registry's Go `json`
//! reads it (field names in any case); a file it could not read is refused, and an entry this
//! reader does not understand is kept as it is.

use crate::model::Time;
use crate::model::digest::Digest;
use serde_json::{Map, Value};

/// The file's name at the storage root (the driver path `/scheduler-state.json`).
pub const STATE_FILE: &str = "scheduler-state.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Blob,
    Manifest,
}

/// One cached object and when the registry's TTL lets it go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its key in the file's map.
    pub key: String,
    pub repository: String,
    pub digest: Digest,
    pub expiry: Time,
    pub kind: Kind,
}

/// The file, read: its map as written (so that it is written back unchanged but for what
/// went), the entries understood, and how many were not.
#[derive(Debug, Clone, Default)]
pub struct State {
    map: Map<String, Value>,
    pub entries: Vec<Entry>,
    pub not_understood: usize,
}

/// A field of an entry object, its name matched as Go matches it (case-insensitively).
fn field<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.get(name).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

impl State {
    pub fn parse(bytes: &[u8]) -> Result<State, String> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("not JSON the registry can read: {e}"))?;
        let map = match v {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => return Err("not a JSON object of entries".into()),
        };
        let mut state = State {
            map,
            ..State::default()
        };
        for (key, v) in &state.map {
            let Value::Object(o) = v else {
                return Err(format!(
                    "entry {key:?} is not an object (the registry would not start)"
                ));
            };
            match entry(key, o)? {
                Some(e) => state.entries.push(e),
                None => state.not_understood += 1,
            }
        }
        Ok(state)
    }

    /// The file without the entries keyed `gone`, as the registry writes it (compact JSON).
    pub fn without(&self, gone: &std::collections::HashSet<String>) -> Vec<u8> {
        let kept: Map<String, Value> = (self.map.iter())
            .filter(|(k, _)| !gone.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_json::to_vec(&Value::Object(kept)).unwrap_or_default()
    }
}

/// An entry understood: a `repo@sha256:hex` key and a type of 0 or 1; `None` for another
/// reference or type (kept untouched); an error where the registry's own read would fail.
fn entry(key: &str, o: &Map<String, Value>) -> Result<Option<Entry>, String> {
    let expiry = match field(o, "ExpiryData") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("entry {key:?}: ExpiryData {s:?} is not a time ({e})"))?
                .timestamp(),
        ),
        Some(other) => return Err(format!("entry {key:?}: ExpiryData {other} is not a time")),
    };
    let kind = match field(o, "EntryType") {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(other) => return Err(format!("entry {key:?}: EntryType {other} is not a number")),
    };
    let reference = match field(o, "Key") {
        Some(Value::String(s)) => s.as_str(),
        _ => key,
    };
    let parsed = reference.rsplit_once('@').and_then(|(repo, d)| {
        let valid = crate::model::paths::valid_repo_path(repo);
        Digest::parse(d)
            .filter(|_| valid)
            .map(|d| (repo.to_string(), d))
    });
    let kind = match kind {
        Some(0) => Kind::Blob,
        Some(1) => Kind::Manifest,
        _ => return Ok(None),
    };
    Ok(match (parsed, expiry) {
        (Some((repository, digest)), Some(expiry)) => Some(Entry {
            key: key.to_string(),
            repository,
            digest,
            expiry,
            kind,
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn read_as_go_reads_it_and_written_back_without_what_went() {
        let text = format!(
            r#"{{"lib/app@{D}":{{"Key":"lib/app@{D}","ExpiryData":"2026-12-13T10:00:00.123456789Z","EntryType":1}},
               "lib/app@sha256:bb":{{"key":"x","expirydata":"2026-12-13T10:00:00Z","entrytype":0}},
               "odd":{{"KEY":"lib/b@{D}","EXPIRYDATA":"2026-12-13T10:00:00+01:00","ENTRYTYPE":0}},
               "future":{{"Key":"lib/c@{D}","ExpiryData":"2026-12-13T10:00:00Z","EntryType":7}}}}"#
        );
        let s = State::parse(text.as_bytes()).unwrap();
        assert_eq!(s.entries.len(), 2, "{:?}", s.entries);
        assert_eq!(s.not_understood, 2);
        let m = s.entries.iter().find(|e| e.kind == Kind::Manifest).unwrap();
        assert_eq!(
            (m.repository.as_str(), m.expiry),
            ("lib/app", 1_797_156_000)
        );
        let b = s.entries.iter().find(|e| e.key == "odd").unwrap();
        assert_eq!((b.repository.as_str(), b.expiry), ("lib/b", 1_797_152_400));
        let gone = [format!("lib/app@{D}")].into_iter().collect();
        let back = State::parse(&s.without(&gone)).unwrap();
        assert_eq!((back.entries.len(), back.not_understood), (1, 2));
        for bad in [
            "{".to_string(),
            "[1]".into(),
            r#"{"a": 3}"#.into(),
            format!(r#"{{"a":{{"Key":"lib/app@{D}","ExpiryData":"soon","EntryType":1}}}}"#),
            format!(
                r#"{{"a":{{"Key":"lib/app@{D}","ExpiryData":"2026-12-13T10:00:00Z","EntryType":"1"}}}}"#
            ),
        ] {
            assert!(State::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(State::parse(b"null").unwrap().entries.is_empty());
    }
}

/// What a run did with a pull-through cache's state, for the report.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct ProxyReport {
    /// Entries understood, and those kept as they are (another reference or type).
    pub entries: usize,
    pub not_understood: usize,
    /// Manifest entries past their expiry (or `--proxy-ttl`), and the tags that went with them.
    pub expired_manifests: usize,
    pub tags_expired: usize,
    /// The registry's TTL, and `--proxy-ttl` when given (seconds).
    pub ttl_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_ttl_seconds: Option<u64>,
    /// Entries whose objects went, dropped from the file, and whether it was written.
    pub entries_removed: usize,
    pub state_written: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_error: Option<String>,
}
