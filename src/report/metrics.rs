//! Prometheus text-format metrics, written whole for node_exporter's textfile collector.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

struct Family {
    help: &'static str,
    samples: Vec<(String, f64)>,
}

/// Gauges of one run, each labelled with the command that produced it.
pub struct Metrics {
    command: &'static str,
    families: BTreeMap<&'static str, Family>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new(command: &'static str) -> Metrics {
        Metrics {
            command,
            families: BTreeMap::new(),
        }
    }

    /// Adds one sample; `name` gets the `regsweep_` prefix.
    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let mut l = format!("command=\"{}\"", self.command);
        for (k, v) in labels {
            let _ = write!(l, ",{k}=\"{}\"", escape(v));
        }
        self.families
            .entry(name)
            .or_insert(Family {
                help,
                samples: Vec::new(),
            })
            .samples
            .push((l, value));
    }

    /// Requests an object-store run made, one sample per kind; nothing on disk.
    pub fn requests(&mut self, requests: Option<&crate::storage::seam::Requests>) {
        let Some(r) = requests else { return };
        for (kind, n) in [
            ("list", r.list),
            ("get", r.get),
            ("head", r.head),
            ("put", r.put),
            ("copy", r.copy),
            ("delete", r.delete),
        ] {
            self.gauge(
                "requests",
                "Requests made to the object store, by kind.",
                &[("kind", kind)],
                n as f64,
            );
        }
        self.gauge(
            "requests_throttled",
            "Requests the object store answered 503 SlowDown (or 429); regsweep slowed down.",
            &[],
            r.throttled as f64,
        );
    }

    /// The common gauges of every run: when it ran, how long it took, what it found.
    pub fn run(&mut self, started: i64, seconds: f64, damage: usize, notices: usize) {
        self.gauge(
            "last_run_timestamp_seconds",
            "When the run started (Unix time).",
            &[],
            started as f64,
        );
        self.gauge(
            "run_duration_seconds",
            "How long the run took.",
            &[],
            seconds,
        );
        self.gauge(
            "damage_findings",
            "Damaged objects found (0 is healthy).",
            &[],
            damage as f64,
        );
        self.gauge(
            "notice_findings",
            "Leftover or foreign entries found.",
            &[],
            notices as f64,
        );
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        for (name, f) in &self.families {
            let _ = writeln!(o, "# HELP regsweep_{name} {}", f.help);
            let _ = writeln!(o, "# TYPE regsweep_{name} gauge");
            for (labels, v) in &f.samples {
                let _ = writeln!(o, "regsweep_{name}{{{labels}}} {v}");
            }
        }
        o
    }

    /// Writes the file whole (synced, by rename), so the collector never reads half of it.
    pub fn write(&self, path: &Path) -> Result<()> {
        let err = |cause| Error::Report {
            path: path.to_path_buf(),
            what: "the metrics",
            cause,
        };
        crate::output::write_whole(path, self.render().as_bytes()).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let mut m = Metrics::new("du");
        m.gauge(
            "repository_bytes",
            "Bytes a repository reaches.",
            &[("repository", "acme/app")],
            1234.0,
        );
        m.gauge(
            "repository_bytes",
            "Bytes a repository reaches.",
            &[("repository", "we\"ird")],
            1.0,
        );
        m.run(1_700_000_000, 0.5, 0, 2);
        let text = m.render();
        assert!(text.contains("# TYPE regsweep_repository_bytes gauge\n"));
        assert!(
            text.contains(
                "regsweep_repository_bytes{command=\"du\",repository=\"acme/app\"} 1234\n"
            )
        );
        assert!(text.contains("repository=\"we\\\"ird\""));
        assert!(text.contains("regsweep_last_run_timestamp_seconds{command=\"du\"} 1700000000\n"));
        assert_eq!(text.matches("# HELP regsweep_repository_bytes").count(), 1);
    }
}
