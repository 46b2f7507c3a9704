//! The budget's and quotas' lines in text reports.

use crate::model::space::SpaceState;
use crate::units::{human_bytes, plural};
use std::fmt::Write as _;

/// Usage as the state measures it: a share of the disk, or bytes.
fn shown(s: &SpaceState, bytes: u64) -> String {
    match s.size {
        Some(size) if size > 0 => format!("{:.1}%", bytes as f64 * 100.0 / size as f64),
        _ => human_bytes(bytes),
    }
}

/// One head line per budget or quota, then what fell short and any note.
pub fn space_lines(o: &mut String, states: &[SpaceState], verb: &str) {
    for s in states {
        let what = &s.what;
        if what.starts_with("quota ") {
            quota_line(o, s, verb);
        } else if !s.over {
            let _ = writeln!(
                o,
                "  {what:<14} {} used, under high {}: nothing {verb} for it",
                shown(s, s.used),
                s.high
            );
        } else {
            let _ = writeln!(
                o,
                "  {what:<14} {} used, high {}, low {}: {verb} {} for it ({} freed in all), projected {}",
                shown(s, s.used),
                s.high,
                s.low,
                plural(s.tags, "tag", "tags"),
                human_bytes(s.bytes_freed),
                shown(s, s.projected)
            );
        }
        if !s.reached && !what.starts_with("quota ") {
            let held: Vec<String> = (s.blocked_by.iter())
                .map(|b| {
                    format!(
                        "{} ({}, {})",
                        b.by,
                        human_bytes(b.bytes),
                        plural(b.tags, "tag", "tags")
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "  {what:<14} short of low {} by {}{}",
                s.low,
                human_bytes(s.short_by),
                if held.is_empty() {
                    String::new()
                } else {
                    format!("; held back by {}", held.join(", "))
                }
            );
        }
        if let Some(n) = s.note.as_ref().filter(|_| s.over) {
            let _ = writeln!(o, "  {what:<14} {n}");
        }
    }
}

/// `quota team-a/app  12.0 MiB exclusive, max 10.0 MiB: would delete 2 tags, projected 9.1 MiB`.
fn quota_line(o: &mut String, s: &SpaceState, verb: &str) {
    let head = format!(
        "{} {} {}, max {}",
        s.what,
        human_bytes(s.used),
        s.measure,
        s.high
    );
    let tail = match (s.over, s.reached) {
        (false, _) => "under it".to_string(),
        (true, true) => format!(
            "{verb} {}, projected {}",
            plural(s.tags, "tag", "tags"),
            human_bytes(s.projected)
        ),
        (true, false) => format!(
            "{verb} {}, projected {}: {} over, the rest held by rules and protections",
            plural(s.tags, "tag", "tags"),
            human_bytes(s.projected),
            human_bytes(s.short_by)
        ),
    };
    let _ = writeln!(o, "  {head}: {tail}");
}

/// `proxy cache    40 entries, 3 manifests expired (TTL 7d): 2 tags expire; 9 entries ...`.
pub fn proxy_line(o: &mut String, p: &crate::model::scheduler::ProxyReport, verb: &str) {
    let days = |s: u64| crate::model::duration::format(std::time::Duration::from_secs(s));
    let ttl = match p.proxy_ttl_seconds {
        Some(s) => format!("--proxy-ttl {}", days(s)),
        None => format!("TTL {}", days(p.ttl_seconds)),
    };
    let written = match (&p.write_error, p.state_written) {
        (Some(e), _) => format!("; scheduler-state.json NOT rewritten: {e}"),
        (None, true) => format!(
            "; {} removed from scheduler-state.json",
            plural(p.entries_removed, "entry", "entries")
        ),
        (None, false) => String::new(),
    };
    let _ = writeln!(
        o,
        "  proxy cache    {}, {} expired ({ttl}): {} {verb}{written}",
        plural(p.entries, "entry", "entries"),
        plural(p.expired_manifests, "manifest", "manifests"),
        plural(p.tags_expired, "tag", "tags"),
    );
}
