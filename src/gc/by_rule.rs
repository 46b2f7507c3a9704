//! What each rule of a plan frees: per rule, its tags and the bytes of the planned blobs its
//! deleted tags' images reach (a blob two rules' images share counts in each; a blob the plan
//! keeps counts in none).

use crate::gc::plan::Plan;
use crate::model::Layout;
use crate::model::digest::Digest;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// One rule's share of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleFreed {
    pub rule: String,
    pub tags: usize,
    /// Bytes of the planned blobs the rule's deleted tags reach.
    pub bytes: u64,
}

/// Per rule of `plan`'s deleted tags, by rule name.
pub fn freed_by_rule(layout: &Layout, plan: &Plan) -> Vec<RuleFreed> {
    let planned: HashMap<Digest, u64> = plan.blobs.iter().map(|b| (b.digest(), b.size())).collect();
    let mut roots: BTreeMap<&str, Vec<Digest>> = BTreeMap::new();
    let mut tags: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &plan.tags {
        *tags.entry(t.rule.as_str()).or_default() += 1;
        roots.entry(t.rule.as_str()).or_default().extend(t.digest);
    }
    tags.into_iter()
        .map(|(rule, n)| {
            let mut seen: HashSet<Digest> = HashSet::new();
            let mut todo = roots.remove(rule).unwrap_or_default();
            while let Some(d) = todo.pop() {
                if !seen.insert(d) {
                    continue;
                }
                if let Some(Ok(m)) = layout.manifest(&d) {
                    seen.extend(m.blobs());
                    todo.extend(m.children());
                }
            }
            let bytes = seen.iter().filter_map(|d| planned.get(d)).sum();
            RuleFreed {
                rule: rule.to_string(),
                tags: n,
                bytes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::plan::{BlobRemoval, TagRemoval};
    use crate::model::{Blob, manifest};

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    fn image(layers: &[u8]) -> String {
        let l: Vec<String> = (layers.iter())
            .map(|&n| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":1}}"#, d(n)))
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[{}]}}"#,
            d(90),
            l.join(",")
        )
    }

    #[test]
    fn each_rule_counts_the_planned_blobs_its_images_reach() {
        // Rule a deletes images 10 (layers 1, 2) and 11 (layers 2, 3); rule b image 12 (layer 3).
        // The plan frees 1, 2, 3 and the manifests; config 90 is kept (another image needs it).
        let mut layout = Layout {
            blobs: [1, 2, 3, 10, 11, 12, 90]
                .iter()
                .map(|&n| Blob {
                    digest: d(n),
                    size: u64::from(n) * 100,
                    mtime: 0,
                })
                .collect::<Vec<_>>()
                .into(),
            ..Layout::default()
        };
        layout.set_manifests(vec![
            (d(10), manifest::parse(image(&[1, 2]).as_bytes())),
            (d(11), manifest::parse(image(&[2, 3]).as_bytes())),
            (d(12), manifest::parse(image(&[3]).as_bytes())),
        ]);
        let tag = |rule: &str, m: u8| TagRemoval {
            repository: "r".into(),
            tag: format!("t{m}"),
            digest: Some(d(m)),
            rule: rule.into(),
            age_seconds: None,
        };
        let blob = |n: u8| BlobRemoval {
            digest: d(n),
            size: u64::from(n) * 100,
            linked_from: Default::default(),
            mtime: 0,
        };
        let plan = Plan {
            tags: vec![tag("a", 10), tag("a", 11), tag("b", 12)],
            blobs: [1, 2, 3, 10, 11, 12].into_iter().map(blob).collect(),
            ..Plan::default()
        };
        let by = freed_by_rule(&layout, &plan);
        let row = |rule: &str, tags, bytes| RuleFreed {
            rule: rule.into(),
            tags,
            bytes,
        };
        assert_eq!(
            by,
            vec![
                row("a", 2, 100 + 200 + 300 + 1000 + 1100),
                row("b", 1, 300 + 1200)
            ]
        );
    }
}
