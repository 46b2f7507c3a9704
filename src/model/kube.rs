//! Kubernetes JSON (`kubectl get pods -A -o json`, any List of workloads) read as a stream:
//! every container's `image` and every status's `imageID`, anywhere in the document, without
//! building the document in memory (a cluster's pod list runs to tens of megabytes).

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The container lists of a pod spec, and the status lists beside them.
const CONTAINERS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
const STATUSES: [&str; 3] = [
    "containerStatuses",
    "initContainerStatuses",
    "ephemeralContainerStatuses",
];
/// Deepest nesting followed: a Kubernetes object is far shallower; a deeper one is not one.
const MAX_DEPTH: usize = 64;

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default, rename = "imageID")]
    image_id: Option<String>,
}

/// Every image reference found: its text as written, and where (`FILE: Pod ns/p container c
/// (image)`).
pub type Found = Vec<(String, String)>;

/// Reads `reader` as Kubernetes JSON; `Err` says why it is none.
pub fn parse(reader: impl std::io::Read, file: &str) -> Result<Found, String> {
    let mut out = Found::new();
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let (top, pending) = Walk {
        file,
        out: &mut out,
        depth: 0,
    }
    .deserialize(&mut de)
    .map_err(|e| {
        format!("not Kubernetes JSON: {e} (give a list of references, or kubectl's -o json)")
    })?;
    de.end()
        .map_err(|e| format!("not Kubernetes JSON: {e} (one document only)"))?;
    if !top {
        return Err("JSON without kind or items: not a Kubernetes object or List".into());
    }
    settle(&mut out, file, "", pending);
    Ok(out)
}

/// An image found below an object that had not named itself yet: (image, container, field).
type Pending = Vec<(String, String, &'static str)>;

/// Records `pending` under the object `here` ("" when none names itself).
fn settle(out: &mut Found, file: &str, here: &str, pending: Pending) {
    for (image, name, field) in pending {
        let who = match here {
            "" => format!("container {name}"),
            h => format!("{h} container {name}"),
        };
        out.push((image, format!("{file}: {who} ({field})")));
    }
}

/// One value of the document: the images of objects that name themselves go to `out`, the
/// others up to the nearest that does (its metadata may come after its spec). Yields whether
/// it was an object with a `kind` or `items` (what the top must be).
struct Walk<'a> {
    file: &'a str,
    out: &'a mut Found,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = (bool, Pending);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.depth > MAX_DEPTH {
            IgnoredAny::deserialize(d)?;
            return Ok((false, Vec::new()));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = (bool, Pending);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object or List")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut pending = Vec::new();
        while let Some((_, p)) = seq.next_element_seed(Walk {
            file: self.file,
            out: &mut *self.out,
            depth: self.depth + 1,
        })? {
            pending.extend(p);
        }
        Ok((false, pending))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut kind, mut meta): (Option<String>, Option<Meta>) = (None, None);
        let mut found: Pending = Vec::new();
        let mut top = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "kind" => {
                    top = true;
                    kind = map
                        .next_value::<serde_json::Value>()?
                        .as_str()
                        .map(String::from);
                }
                "metadata" => meta = map.next_value::<Option<Meta>>()?.or(meta),
                k if CONTAINERS.contains(&k) => {
                    for c in map
                        .next_value::<Option<Vec<Container>>>()?
                        .unwrap_or_default()
                    {
                        if let Some(image) = c.image {
                            found.push((image, c.name.unwrap_or_else(|| "?".into()), "image"));
                        }
                    }
                }
                k if STATUSES.contains(&k) => {
                    for c in map
                        .next_value::<Option<Vec<Container>>>()?
                        .unwrap_or_default()
                    {
                        if let Some(id) = c.image_id.filter(|i| !i.is_empty()) {
                            found.push((id, c.name.unwrap_or_else(|| "?".into()), "imageID"));
                        }
                    }
                }
                k => {
                    top |= k == "items";
                    let (_, below) = map.next_value_seed(Walk {
                        file: self.file,
                        out: &mut *self.out,
                        depth: self.depth + 1,
                    })?;
                    found.extend(below);
                }
            }
        }
        match label(kind.as_deref(), meta.as_ref()) {
            Some(here) => {
                settle(self.out, self.file, &here, found);
                Ok((top, Vec::new()))
            }
            None => Ok((top, found)),
        }
    }

    // Scalars carry no image.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok((false, Vec::new()))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok((false, Vec::new()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok((false, Vec::new()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok((false, Vec::new()))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok((false, Vec::new()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok((false, Vec::new()))
    }
}

/// "Pod ns/name" for an object with a kind and a named metadata.
fn label(kind: Option<&str>, meta: Option<&Meta>) -> Option<String> {
    let (kind, meta) = (kind?, meta?);
    let name = meta.name.as_deref()?;
    Some(match &meta.namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(text: &str) -> Result<Vec<(String, String)>, String> {
        let i = crate::model::inuse::parse(text, "f")?;
        Ok(i.refs
            .iter()
            .map(|r| (crate::model::inuse::display(r), r.source.clone()))
            .collect())
    }

    #[test]
    fn images_are_found_anywhere_and_named_by_their_object_whatever_the_key_order() {
        let doc = r#"{"kind": "List", "items": [
            {"spec": {"containers": [{"name": "c", "image": "r:5000/a:1"}]},
             "metadata": {"name": "p", "namespace": "n", "managedFields": [{"x": 1}]}, "kind": "Pod",
             "status": {"containerStatuses": [{"name": "c", "imageID": "docker-pullable://r:5000/a@sha256:1111111111111111111111111111111111111111111111111111111111111111"}]}},
            {"kind": "Deployment", "metadata": {"name": "d"},
             "spec": {"template": {"spec": {"initContainers": [{"name": "i", "image": "busybox"}]}}}}
        ]}"#;
        let got = refs(doc).unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(
            got[0],
            ("r:5000/a:1".into(), "f: Pod n/p container c (image)".into())
        );
        assert!(
            got[1].1.ends_with("Pod n/p container c (imageID)"),
            "{got:?}"
        );
        assert_eq!(got[2].0, "docker.io/library/busybox:latest", "{got:?}");
        assert!(got[2].1.contains("Deployment d container i"), "{got:?}");
    }

    #[test]
    fn what_is_not_kubernetes_json_is_refused() {
        for bad in [
            r#"{"a": 1}"#,
            r#"{"kind": "Pod"} {"kind": "Pod"}"#,
            "{",
            r#"{"kind": "Pod", "metadata": 3}"#,
        ] {
            assert!(parse(bad.as_bytes(), "f").is_err(), "{bad}");
        }
        assert!(refs(r#"{"kind": "List", "items": []}"#).unwrap().is_empty());
        assert!(
            parse(r#"{"kind": "Pod"}"#.as_bytes(), "f")
                .unwrap()
                .is_empty()
        );
        // Deeper than any object is skipped, never a stack overflow.
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(refs(&format!("{{\"items\": {deep}}}")).unwrap().is_empty());
    }
}
