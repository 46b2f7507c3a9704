//! Criterion benchmarks for the hot pure stages: manifest parsing and marking.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use regsweep::Digest;
use regsweep::model::manifest;
use regsweep::model::mark;
use regsweep::model::{Blob, Decisions, Layout, Link, Repo, Rules, Tag};
use std::hint::black_box;

fn digest(n: u64) -> Digest {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&n.to_le_bytes());
    d[8] = 0xa5;
    Digest(d)
}

fn manifest_json(n: u64) -> String {
    let layers: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#, digest(n * 10 + i), 1000 + i))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":100}},"layers":[{}],"annotations":{{"org.opencontainers.image.created":"2025-01-01T00:00:00Z"}}}}"#,
        digest(n * 10 + 9),
        layers.join(",")
    )
}

fn bench_parse(c: &mut Criterion) {
    let docs: Vec<String> = (0..10_000).map(manifest_json).collect();
    let bytes: u64 = docs.iter().map(|d| d.len() as u64).sum();
    let mut g = c.benchmark_group("manifest");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("parse 10k image manifests", |b| {
        b.iter(|| {
            for d in &docs {
                black_box(manifest::parse(d.as_bytes()).unwrap());
            }
        })
    });
    g.finish();
}

/// 100 repositories of 200 revisions, half tagged, each manifest with 6 blobs: ~130k blobs.
fn model() -> Layout {
    let mut manifests = Vec::new();
    let mut repos = Vec::new();
    let mut blobs = Vec::new();
    for r in 0..100u64 {
        let mut repo = Repo {
            name: format!("repo{r}").into(),
            ..Repo::default()
        };
        for m in 0..200u64 {
            let n = r * 1000 + m;
            let md = digest(1 << 40 | n);
            let refs: Vec<Digest> = (0..6).map(|i| digest(n * 10 + i)).collect();
            blobs.extend(refs.iter().chain([&md]).map(|&d| Blob {
                digest: d,
                size: 1000,
                mtime: 0,
            }));
            repo.layers_absent.extend(refs.iter().map(|&d| Link {
                digest: d,
                mtime: 0,
            }));
            repo.revisions.push(Link {
                digest: md,
                mtime: 0,
            });
            if m % 2 == 0 {
                repo.tags.push(Tag {
                    name: format!("t{m}"),
                    current: Some(Link {
                        digest: md,
                        mtime: 0,
                    }),
                    index: vec![md],
                });
            }
            manifests.push((md, manifest::parse(manifest_json(n).as_bytes())));
        }
        repos.push(repo);
    }
    blobs.sort_by_key(|b| b.digest);
    let mut layout = Layout {
        blobs: blobs.into(),
        repos,
        ..Layout::default()
    };
    // Layer links were listed unfiled; file them by blob index, as the scan does.
    for i in 0..layout.repos.len() {
        let links: Vec<Link> = layout.layer_links(&layout.repos[i]).collect();
        layout.set_layers(i, links);
    }
    layout.set_manifests(manifests);
    layout
}

fn bench_mark(c: &mut Criterion) {
    let layout = model();
    let decisions = Decisions::keep_all(&layout);
    let mut g = c.benchmark_group("mark");
    g.throughput(Throughput::Elements(layout.blobs.len() as u64));
    g.sample_size(20);
    for delete_untagged in [false, true] {
        let opts = Rules::without_grace(delete_untagged);
        g.bench_function(
            if delete_untagged {
                "130k blobs, untagged mode"
            } else {
                "130k blobs, plain"
            },
            |b| b.iter(|| black_box(mark::mark(&layout, &decisions, &opts))),
        );
    }
    g.finish();
}

criterion_group!(benches, bench_parse, bench_mark);
criterion_main!(benches);
