//! `pulls status`: what the ledger can prove, per source and instance (intervals, holes, the
//! last canary, rejections), and whether pull rules over a window would be judged; exit 0
//! when they would, 1 when not, for scripts and alerts.

use crate::error::{ExitCode, Result};
use crate::ledger::Ledger;
use crate::model::Time;
use crate::model::coverage::{self, Ask, Expect, Rejection, Stream, stamp};
use crate::report::{Envelope, Report, pretty};
use crate::units::human_age;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub ledger: PathBuf,
    /// The window a pull rule would ask about.
    pub window: u64,
    pub max_lag: u64,
    pub expect: Expect,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The ledger file.
    pub root: PathBuf,
    pub summary: StatusSummary,
    pub streams: Vec<Stream>,
    pub holes: Vec<Hole>,
    pub rejections: Vec<Rejection>,
}

#[derive(Debug, Serialize)]
pub struct StatusSummary {
    /// Whether pull rules over the window would be judged.
    pub covered: bool,
    /// Why not, when not.
    pub refusal: Option<String>,
    pub window_seconds: u64,
    pub window_from: String,
    pub window_until: String,
    pub instances: Vec<String>,
    /// The canary image the listener pulls, when it has one.
    pub canary: Option<String>,
    pub last_canary: Option<String>,
    /// When the listener last said it was alive (its own liveness, never coverage).
    pub listener_alive: Option<String>,
    /// When the ledger was created (events dated before it are not believed).
    pub created: Option<String>,
    pub rejected: u64,
}

/// A stretch of the window an instance has no evidence for.
#[derive(Debug, Serialize)]
pub struct Hole {
    pub instance: String,
    pub from: String,
    pub until: String,
    pub seconds: i64,
}

pub fn status(cfg: &StatusConfig) -> Result<StatusReport> {
    let started = chrono::Utc::now();
    let now = started.timestamp();
    let ledger = Ledger::open_read(&cfg.ledger)?;
    let history = ledger.history()?;
    let ask = Ask {
        window: cfg.window,
        now,
        max_lag: cfg.max_lag,
        expect: cfg.expect.clone(),
    };
    let refusal = history.gap(&ask);
    let (from, until) = ask.range();
    let by = coverage::by_instance(&history.streams);
    let holes = (by.iter())
        .flat_map(|(i, iv)| iv.holes((from, until)).into_iter().map(move |h| (*i, h)))
        .map(|(i, (a, z))| Hole {
            instance: i.to_string(),
            from: stamp(a),
            until: stamp(z),
            seconds: z - a,
        })
        .collect();
    let since = |t: Time| t >= from;
    let rejected = (history.rejections.iter())
        .filter(|r| since(r.last))
        .map(|r| r.count)
        .sum();
    let last_canary = history.streams.iter().filter_map(|s| s.last_canary).max();
    let alive = ledger.meta("listener_alive")?.and_then(|t| t.parse().ok());
    Ok(StatusReport {
        envelope: Envelope::new("regsweep/pulls-status/v1", started),
        root: cfg.ledger.clone(),
        summary: StatusSummary {
            covered: refusal.is_none(),
            refusal,
            window_seconds: cfg.window,
            window_from: stamp(from),
            window_until: stamp(until),
            instances: by.keys().map(|k| k.to_string()).collect(),
            canary: history.canary.clone().filter(|c| !c.is_empty()),
            last_canary: last_canary.map(stamp),
            listener_alive: alive.map(stamp),
            created: history.created.map(stamp),
            rejected,
        },
        streams: history.streams,
        holes,
        rejections: history.rejections,
    })
}

impl Report for StatusReport {
    fn text(&self, _limit: Option<usize>) -> String {
        let s = &self.summary;
        let mut out = format!("ledger {}", self.root.display());
        out += &match &s.created {
            Some(t) => format!(" (created {t})\n"),
            None => "\n".into(),
        };
        out += &match (&s.canary, &s.last_canary) {
            (Some(c), Some(t)) => format!("canary {c}: last delivered {t}\n"),
            (Some(c), None) => format!("canary {c}: never delivered through the registry's notifications\n"),
            (None, _) => "no canary: a silent registry cannot be told from a broken one (pulls listen --canary URL)\n".into(),
        };
        if let Some(t) = &s.listener_alive {
            out += &format!("listener last alive {t}\n");
        }
        for st in &self.streams {
            let process = match st.process.as_str() {
                "" => String::new(),
                p => format!(" process {}", p.chars().take(8).collect::<String>()),
            };
            out += &format!(
                "  {} {}{process}: proven {} (silence bridged {})\n",
                st.instance,
                st.source,
                st.intervals,
                human_age(st.tolerance as i64)
            );
        }
        for r in &self.rejections {
            out += &format!(
                "  rejected {}x {} {} from {} to {} (first: {})\n",
                r.count,
                r.status,
                r.reason,
                stamp(r.first),
                stamp(r.last),
                r.detail
            );
        }
        out += &format!(
            "window {} ({} to {}):\n",
            human_age(s.window_seconds as i64),
            s.window_from,
            s.window_until
        );
        for h in &self.holes {
            out += &format!(
                "  hole: instance {} has no evidence from {} to {} ({})\n",
                h.instance,
                h.from,
                h.until,
                human_age(h.seconds)
            );
        }
        out += &match &s.refusal {
            None => "covered: pull rules over this window can be judged\n".to_string(),
            Some(why) => format!("not covered: {why}\n"),
        };
        out
    }

    fn json(&self) -> String {
        pretty(self)
    }

    fn exit_code(&self) -> ExitCode {
        if self.summary.covered {
            ExitCode::Ok
        } else {
            ExitCode::Error
        }
    }
}
