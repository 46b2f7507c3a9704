//! The listener's counters, shared by its writer and its handlers, and their `/metrics` page
//! (Prometheus' text format).

use super::Evidence;
use crate::model::Time;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the writer and the handlers share; `/metrics` reads it.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) accepted: AtomicU64,
    pub(super) recorded: AtomicU64,
    pub(super) ignored: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) commits: AtomicU64,
    /// Connections open now, and those closed to make room for newer ones.
    pub(super) open: AtomicU64,
    pub(super) crowded: AtomicU64,
    pub(super) canary: Arc<super::canary::Stats>,
    /// Per instance: events, last event, last canary.
    pub(super) instances: Mutex<BTreeMap<String, Seen>>,
    /// Per (status, reason): rejections.
    pub(super) reasons: Mutex<BTreeMap<(u16, String), u64>>,
}

/// Of one instance: events received, the last one, the last canary.
pub(super) type Seen = (u64, Time, Option<Time>);

pub(super) fn note_instances(c: &Counters, evidence: &[Evidence]) {
    let Ok(mut map) = c.instances.lock() else {
        return;
    };
    for ev in evidence {
        let e = map.entry(ev.instance.clone()).or_insert((0, 0, None));
        e.0 += ev.points.len() as u64;
        e.1 = e.1.max(ev.points.iter().copied().max().unwrap_or(0));
        if let Some(&t) = ev.canaries.iter().max() {
            e.2 = Some(e.2.unwrap_or(t).max(t));
        }
    }
}

pub(super) fn count_reason(c: &Counters, status: u16, reason: &str) {
    if let Ok(mut m) = c.reasons.lock() {
        *m.entry((status, reason.to_string())).or_default() += 1;
    }
}

/// The listener's counters in Prometheus' text format.
pub(super) fn metrics(c: &Counters) -> String {
    let mut s = String::new();
    let mut line = |name: &str, help: &str, kind: &str, rows: Vec<(String, String)>| {
        s += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for (labels, value) in rows {
            s += &format!("{name}{labels} {value}\n");
        }
    };
    let load = |a: &AtomicU64| vec![(String::new(), a.load(Ordering::Relaxed).to_string())];
    for (name, help, counter) in [
        (
            "envelopes_accepted_total",
            "Envelopes answered 200.",
            &c.accepted,
        ),
        (
            "events_recorded_total",
            "Manifest events committed.",
            &c.recorded,
        ),
        (
            "canary_pulls_total",
            "Canary pulls the registry answered.",
            &c.canary.pulls,
        ),
        (
            "canary_failures_total",
            "Canary pulls that failed.",
            &c.canary.failures,
        ),
    ] {
        line(
            &format!("regsweep_ledger_{name}"),
            help,
            "counter",
            load(counter),
        );
    }
    line(
        "regsweep_ledger_connections_open",
        "Connections open now.",
        "gauge",
        load(&c.open),
    );
    line(
        "regsweep_ledger_connections_crowded_out_total",
        "Connections closed (silent) or refused (all had spoken) when one address or the listener was at its bound.",
        "counter",
        load(&c.crowded),
    );
    let reasons = c.reasons.lock().map(|m| m.clone()).unwrap_or_default();
    line(
        "regsweep_ledger_rejections_total",
        "Deliveries refused or events not believed; any makes pull rules refuse.",
        "counter",
        (reasons.into_iter())
            .map(|((st, r), n)| {
                (
                    format!("{{status=\"{st}\",reason={}}}", label(&r)),
                    n.to_string(),
                )
            })
            .collect(),
    );
    let inst = c.instances.lock().map(|m| m.clone()).unwrap_or_default();
    let rows = |f: &dyn Fn(&Seen) -> Option<i64>| {
        (inst.iter())
            .filter_map(|(i, v)| {
                f(v).map(|x| (format!("{{instance={}}}", label(i)), x.to_string()))
            })
            .collect()
    };
    line(
        "regsweep_ledger_instance_events_total",
        "Events received per registry instance.",
        "counter",
        rows(&|v| Some(v.0 as i64)),
    );
    line(
        "regsweep_ledger_last_event_timestamp_seconds",
        "The last event of each instance.",
        "gauge",
        rows(&|v| Some(v.1)),
    );
    line(
        "regsweep_ledger_last_canary_timestamp_seconds",
        "The last canary pull delivered by each instance.",
        "gauge",
        rows(&|v| v.2),
    );
    s
}

/// A Prometheus label value, quoted and escaped.
fn label(v: &str) -> String {
    format!("{:?}", v)
}
