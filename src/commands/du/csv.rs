//! `du --format csv`: the table's rows, one per repository or tag, for spreadsheets.

use super::*;

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub(super) fn csv(r: &DuReport, top: Option<usize>) -> String {
    let mut o = String::new();
    let n = top.unwrap_or(usize::MAX);
    if let Some(tags) = &r.tags {
        let _ = writeln!(o, "tag,digest,bytes,exclusive_bytes,pushed");
        for t in tags.iter().take(n) {
            let pushed = t
                .pushed
                .and_then(|p| chrono::DateTime::from_timestamp(p, 0))
                .map(|p| p.to_rfc3339())
                .unwrap_or_default();
            let d = t.digest.map(|d| d.to_string()).unwrap_or_default();
            let _ = writeln!(
                o,
                "{},{d},{},{},{pushed}",
                csv_field(&t.tag),
                t.bytes,
                t.exclusive_bytes
            );
        }
        return o;
    }
    let _ = writeln!(
        o,
        "repository,tags,manifests,blobs,bytes,exclusive_bytes,shared_bytes,untagged_bytes"
    );
    let line = |o: &mut String, name: &str, x: &RepoUsage| {
        let _ = writeln!(
            o,
            "{},{},{},{},{},{},{},{}",
            csv_field(name),
            x.tags,
            x.manifests,
            x.blobs,
            x.bytes,
            x.exclusive_bytes,
            x.shared_bytes,
            x.untagged_bytes
        );
    };
    for x in r.repositories.iter().take(n) {
        line(&mut o, &x.name, x);
    }
    // What --top leaves out, summed in one row, so that the column sums stay the store's.
    if r.repositories.len() > n {
        let rest = sum_rest(&r.repositories[n..]);
        line(&mut o, &rest.name, &rest);
    }
    o
}
