//! Parses manifest blobs of every kind into the references they hold; a pure function of bytes.

use crate::model::digest::Digest;
use serde::Deserialize;

/// The version of what `parse` yields: bump it with any change to the references a manifest
/// gives (a field read, a shape recognised, a rule), so that a manifest cache written by a build
/// that parsed differently is never trusted.
pub const SCHEMA: u32 = 2;

/// The references one manifest holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Config, layers, `blobs` and `fsLayers`: blobs this manifest needs.
    pub blobs: Vec<Digest>,
    /// The config blob, where there is one (its `created` dates the image).
    pub config: Option<Digest>,
    /// Index children: manifests this manifest needs.
    pub children: Vec<Digest>,
    /// OCI 1.1 `subject`: the manifest this one refers to.
    pub subject: Option<Digest>,
    /// References that are not sha256 digests; they cannot name a blob in this store.
    pub problems: Vec<String>,
}

/// The outcome of reading one manifest blob.
pub type Loaded = Result<Manifest, String>;

/// The registry refuses manifests over 4 MiB; a "manifest" much larger than that is not one.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Go's `encoding/json`, which the registry decodes manifests with, matches an object key to a
/// field case-insensitively: ASCII letters fold, and so do the two non-ASCII runes that fold to
/// them (U+017F to `s`, U+212A to `k`). A key's folded form, for comparing with the lowercase
/// field names below.
fn fold_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{017F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The fields of every manifest kind that matter here. Where the registry takes the last of
/// duplicate keys, regsweep keeps the references of all of them: a superset of what the
/// registry reads, and keeping more is the safe side.
#[derive(Default)]
struct Raw {
    schema_version: bool,
    config: Option<Vec<Descriptor>>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    /// The last `subject`, as the registry reads it.
    subject: Option<Descriptor>,
    fs_layers: Option<Vec<Descriptor>>,
}

/// A descriptor's digests (`digest`, or `blobSum` in schema 1 `fsLayers`), every spelling.
#[derive(Default)]
struct Descriptor {
    digests: Vec<Option<String>>,
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                let mut raw = Raw::default();
                let extend = |to: &mut Option<Vec<Descriptor>>, more: Option<Vec<Descriptor>>| {
                    if let Some(more) = more {
                        to.get_or_insert_with(Vec::new).extend(more);
                    }
                };
                while let Some(key) = map.next_key::<String>()? {
                    match fold_key(&key).as_str() {
                        "schemaversion" => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            raw.schema_version = true;
                        }
                        "config" => {
                            if let Some(c) = map.next_value::<Option<Descriptor>>()? {
                                extend(&mut raw.config, Some(vec![c]));
                            }
                        }
                        "layers" => extend(&mut raw.layers, map.next_value()?),
                        "manifests" => extend(&mut raw.manifests, map.next_value()?),
                        "blobs" => extend(&mut raw.blobs, map.next_value()?),
                        "fslayers" => extend(&mut raw.fs_layers, map.next_value()?),
                        "subject" => {
                            if let Some(s) = map.next_value::<Option<Descriptor>>()? {
                                raw.subject = Some(s);
                            }
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Descriptor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Descriptor, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Descriptor;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a descriptor object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Descriptor, A::Error> {
                let mut desc = Descriptor::default();
                while let Some(key) = map.next_key::<String>()? {
                    match fold_key(&key).as_str() {
                        "digest" | "blobsum" => desc.digests.push(map.next_value()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(desc)
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses a manifest. Errors mean the blob is not a manifest at all (not JSON, or JSON of no
/// known shape); a manifest with some unusable references parses, and lists them in `problems`.
pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    // serde_json caps nesting depth, so hostile input cannot overflow the stack.
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let known_shape = raw.schema_version
        || raw.config.is_some()
        || raw.layers.is_some()
        || raw.manifests.is_some()
        || raw.blobs.is_some()
        || raw.fs_layers.is_some();
    if !known_shape {
        return Err("JSON of no known manifest shape (no schemaVersion, config, layers, manifests, blobs or fsLayers)".into());
    }
    let mut m = Manifest {
        blobs: Vec::new(),
        config: None,
        children: Vec::new(),
        subject: None,
        problems: Vec::new(),
    };
    let take = |field: &str, desc: &Descriptor, problems: &mut Vec<String>| -> Vec<Digest> {
        let mut out = Vec::new();
        for value in &desc.digests {
            match value.as_deref() {
                Some(s) => match Digest::parse(s) {
                    Some(d) => out.push(d),
                    None => problems.push(format!("{field} names {s:?}, not a sha256 digest")),
                },
                None => problems.push(format!("{field} has no digest")),
            }
        }
        if desc.digests.is_empty() {
            problems.push(format!("{field} has no digest"));
        }
        out
    };
    let mut problems = Vec::new();
    for (field, list) in [
        ("config", &raw.config),
        ("layer", &raw.layers),
        ("blob", &raw.blobs),
        ("fsLayer", &raw.fs_layers),
    ] {
        for d in list.iter().flatten() {
            m.blobs.extend(take(field, d, &mut problems));
        }
    }
    for d in raw.manifests.iter().flatten() {
        m.children.extend(take("manifest", d, &mut problems));
    }
    if let Some(s) = &raw.subject {
        m.subject = take("subject", s, &mut problems).pop();
    }
    m.problems = problems;
    // Manifests are kept for the whole run, thousands of them: no growth slack.
    m.blobs.shrink_to_fit();
    m.children.shrink_to_fit();
    Ok(m)
}

/// The `created` time of an image config, in seconds since the epoch.
pub fn parse_created(config: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Config {
        created: Option<String>,
    }
    let c: Config = serde_json::from_slice(config).ok()?;
    chrono::DateTime::parse_from_rfc3339(c.created?.trim())
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }
    fn dg(c: char) -> Digest {
        Digest::parse(&d(c)).unwrap()
    }

    #[test]
    fn docker_schema2() {
        let j = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"{}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2,"digest":"{}"}},
                      {{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":3,"digest":"{}","urls":["http://x"]}}]}}"#,
            d('a'),
            d('b'),
            d('c')
        );
        let m = parse(j.as_bytes()).unwrap();
        assert_eq!(m.blobs, vec![dg('a'), dg('b'), dg('c')]);
        assert!(m.children.is_empty() && m.subject.is_none() && m.problems.is_empty());
    }

    #[test]
    fn manifest_list_and_oci_index() {
        for mt in [
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.index.v1+json",
        ] {
            let j = format!(
                r#"{{"schemaVersion":2,"mediaType":"{mt}","manifests":[{{"digest":"{}","platform":{{"os":"linux"}}}},{{"digest":"{}"}}]}}"#,
                d('1'),
                d('2')
            );
            let m = parse(j.as_bytes()).unwrap();
            assert_eq!(m.children, vec![dg('1'), dg('2')]);
            assert!(m.blobs.is_empty());
        }
    }

    #[test]
    fn oci_artifact_with_subject() {
        let j = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "artifactType":"application/spdx+json",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/spdx+json","digest":"{}","size":9}}],
            "subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":7}}}}"#,
            d('e'),
            d('f'),
            d('9')
        );
        let m = parse(j.as_bytes()).unwrap();
        assert_eq!(m.blobs, vec![dg('e'), dg('f')]);
        assert_eq!(m.subject, Some(dg('9')));
    }

    #[test]
    fn draft_artifact_manifest_blobs() {
        let j = format!(
            r#"{{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","artifactType":"x","blobs":[{{"digest":"{}"}}],"subject":{{"digest":"{}"}}}}"#,
            d('3'),
            d('4')
        );
        let m = parse(j.as_bytes()).unwrap();
        assert_eq!(m.blobs, vec![dg('3')]);
        assert_eq!(m.subject, Some(dg('4')));
    }

    #[test]
    fn schema1() {
        let j = format!(
            r#"{{"schemaVersion":1,"name":"a","tag":"v1","architecture":"amd64",
            "fsLayers":[{{"blobSum":"{}"}},{{"blobSum":"{}"}}],"history":[],"signatures":[]}}"#,
            d('5'),
            d('6')
        );
        let m = parse(j.as_bytes()).unwrap();
        assert_eq!(m.blobs, vec![dg('5'), dg('6')]);
    }

    #[test]
    fn unknown_media_type_is_read_by_shape() {
        let j = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/x-vendor+json","config":{{"digest":"{}"}},"layers":[{{"digest":"{}"}}],"manifests":[{{"digest":"{}"}}]}}"#,
            d('7'),
            d('8'),
            d('0')
        );
        let m = parse(j.as_bytes()).unwrap();
        assert_eq!(m.blobs, vec![dg('7'), dg('8')]);
        assert_eq!(m.children, vec![dg('0')]);
    }

    #[test]
    fn bad_references_are_problems_not_failures() {
        let j = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"sha512:abc"}},"layers":[{{"size":1}},{{"digest":"{}"}}]}}"#,
            d('a')
        );
        let m = parse(j.as_bytes()).unwrap();
        assert_eq!(m.blobs, vec![dg('a')]);
        assert_eq!(m.problems.len(), 2);
    }

    #[test]
    fn keys_match_as_the_registry_matches_them() {
        // Go's encoding/json: any letter case, and U+017F / U+212A folding to `s` / `k`.
        let j = format!(
            r#"{{"SchemaVersion":2,"MEDIATYPE":"application/vnd.oci.image.manifest.v1+json",
            "Config":{{"Digest":"{}"}},"Layers":[{{"DIGEST":"{}"}},{{"dIgEsT":"{}"}}],
            "layer\u017f":[{{"digest":"{}"}}],"Subject":{{"Digest":"{}"}}}}"#,
            d('a'),
            d('b'),
            d('c'),
            d('d'),
            d('e')
        );
        let m = parse(j.as_bytes()).unwrap();
        assert_eq!(m.blobs, vec![dg('a'), dg('b'), dg('c'), dg('d')]);
        assert_eq!(m.subject, Some(dg('e')));
        let j = format!(
            r#"{{"schemaVersion":2,"Manifests":[{{"Digest":"{}"}}],"FSLayers":[{{"BlobSum":"{}"}}]}}"#,
            d('1'),
            d('2')
        );
        let m = parse(j.as_bytes()).unwrap();
        assert_eq!(m.children, vec![dg('1')]);
        assert_eq!(m.blobs, vec![dg('2')]);
    }

    #[test]
    fn duplicate_keys_keep_every_reference() {
        // The registry reads the last `layers`; regsweep keeps both, the safe side.
        let j = format!(
            r#"{{"schemaVersion":2,"layers":[{{"digest":"{}"}}],"layers":[{{"digest":"{}","digest":"{}"}}],"config":{{"digest":"{}"}},"Config":{{"digest":"{}"}}}}"#,
            d('a'),
            d('b'),
            d('c'),
            d('d'),
            d('e')
        );
        let mut blobs = parse(j.as_bytes()).unwrap().blobs;
        blobs.sort();
        assert_eq!(blobs, vec![dg('a'), dg('b'), dg('c'), dg('d'), dg('e')]);
    }

    #[test]
    fn config_created() {
        assert_eq!(
            parse_created(br#"{"created":"2024-01-01T00:00:00Z","os":"linux"}"#),
            Some(1_704_067_200)
        );
        assert_eq!(
            parse_created(br#"{"created":"2024-01-01T01:00:00.5+01:00"}"#),
            Some(1_704_067_200)
        );
        assert_eq!(parse_created(br#"{"os":"linux"}"#), None);
        assert_eq!(parse_created(br#"{"created":"yesterday"}"#), None);
        assert_eq!(parse_created(b"not json"), None);
    }

    #[test]
    fn not_manifests() {
        for bad in [
            &b""[..],
            b"null",
            b"[1,2]",
            b"{\"architecture\":\"amd64\",\"os\":\"linux\"}",
            b"{\"schemaVersion\":2,",
            b"\xff\xfe",
            b"{\"layers\":7}",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut s = String::from("{\"schemaVersion\":2,\"x\":");
        s.push_str(&"[".repeat(100_000));
        assert!(parse(s.as_bytes()).is_err());
        let mut s = String::from("{\"schemaVersion\":2,\"annotations\":");
        s.push_str(&"{\"a\":".repeat(100_000));
        assert!(parse(s.as_bytes()).is_err());
    }

    /// A small deterministic generator for the property tests below.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n.max(1)
        }
    }

    fn random_value(r: &mut Lcg, depth: u32) -> serde_json::Value {
        use serde_json::Value;
        const KEYS: [&str; 12] = [
            "schemaVersion",
            "mediaType",
            "config",
            "layers",
            "manifests",
            "blobs",
            "subject",
            "fsLayers",
            "digest",
            "blobSum",
            "artifactType",
            "x",
        ];
        let digests = [
            d('a'),
            "sha256:".into(),
            "sha512:ab".into(),
            format!("sha256:{}", "A".repeat(64)),
            String::new(),
        ];
        match if depth > 4 { r.next(4) } else { r.next(7) } {
            0 => Value::Null,
            1 => Value::from(r.next(1000) as i64 - 500),
            2 => Value::from(digests[r.next(digests.len() as u64) as usize].clone()),
            3 => Value::Bool(r.next(2) == 0),
            4 | 5 => Value::Array((0..r.next(4)).map(|_| random_value(r, depth + 1)).collect()),
            _ => Value::Object(
                (0..r.next(6))
                    .map(|_| {
                        (
                            KEYS[r.next(KEYS.len() as u64) as usize].to_string(),
                            random_value(r, depth + 1),
                        )
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn never_panics_on_random_or_truncated_input() {
        let mut r = Lcg(42);
        for _ in 0..3000 {
            let len = r.next(300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| r.next(256) as u8).collect();
            let _ = parse(&bytes);
        }
        for _ in 0..5000 {
            let text = random_value(&mut r, 0).to_string();
            if let Ok(m) = parse(text.as_bytes()) {
                // Whatever it returns was in the input.
                for x in m.blobs.iter().chain(&m.children).chain(m.subject.iter()) {
                    assert!(text.contains(&x.to_string()), "{text}");
                }
            }
        }
        let valid = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"digest":"{}"}}],"subject":{{"digest":"{}"}}}}"#,
            d('1'),
            d('2')
        );
        for cut in 0..valid.len() {
            let _ = parse(&valid.as_bytes()[..cut]);
        }
    }

    #[test]
    fn a_huge_manifest_is_read_in_one_pass() {
        let layer = format!(r#"{{"digest":"{}","size":1}}"#, d('b'));
        let text = format!(
            r#"{{"schemaVersion":2,"layers":[{}]}}"#,
            vec![layer; 100_000].join(",")
        );
        let m = parse(text.as_bytes()).unwrap();
        assert_eq!(m.blobs.len(), 100_000);
    }
}
