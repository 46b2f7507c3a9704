//! Coverage as intervals of proof: the stretches of time over which a ledger's evidence shows
//! that every pull of a registry instance reached it, and what a rule's window asks of them.
//! Pure: the ledger stores the intervals, the policy asks `judge`.
//!
//! Evidence is a moment something of the registry's reached the ledger (any notification
//! event, any log line). Two moments of one stream no further apart than the stream's
//! tolerance (`--max-silence`, or twice the canary's interval) prove the time between them;
//! anything longer is a hole. Streams are unioned per instance as they are, never bridged: a
//! second log or a listener started later adds its own intervals, not the time between.

use crate::model::Time;
use crate::units::human_age;
use std::collections::BTreeMap;

/// Sorted, disjoint closed intervals `[from, until]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(pub Vec<(Time, Time)>);

impl Intervals {
    /// The intervals proven by `points`, two of them bridged when at most `tolerance` apart.
    pub fn from_points(points: impl IntoIterator<Item = Time>, tolerance: u64) -> Intervals {
        let mut pts: Vec<Time> = points.into_iter().collect();
        pts.sort_unstable();
        let mut out = Intervals::default();
        for p in pts {
            out.add((p, p), tolerance);
        }
        out
    }

    /// Adds `iv`, merged with every interval it overlaps or lies within `bridge` of.
    pub fn add(&mut self, (from, until): (Time, Time), bridge: u64) {
        let (from, until) = (from.min(until), from.max(until));
        let b = bridge as i64;
        // The common case, moments in order (a log, a listener's events): at or after the
        // last interval, extended in place or appended, with no new list per moment.
        match self.0.last_mut() {
            None => return self.0.push((from, until)),
            Some(last) if from >= last.0 => {
                if from <= last.1.saturating_add(b) {
                    last.1 = last.1.max(until);
                } else {
                    self.0.push((from, until));
                }
                return;
            }
            Some(_) => {}
        }
        let mut merged = (from, until);
        let mut keep = Vec::with_capacity(self.0.len() + 1);
        for &(a, z) in &self.0 {
            // Disjoint beyond the bridge: stays as it is.
            if z.saturating_add(b) < merged.0 || merged.1.saturating_add(b) < a {
                keep.push((a, z));
            } else {
                merged = (merged.0.min(a), merged.1.max(z));
            }
        }
        keep.push(merged);
        keep.sort_unstable();
        self.0 = keep;
    }

    /// Every interval of `other` added, with `bridge`.
    pub fn extend(&mut self, other: &Intervals, bridge: u64) {
        for &iv in &other.0 {
            self.add(iv, bridge);
        }
    }

    /// The parts of `[from, until]` no interval covers, in order.
    pub fn holes(&self, (from, until): (Time, Time)) -> Vec<(Time, Time)> {
        let mut out = Vec::new();
        let mut at = from;
        for &(a, z) in &self.0 {
            if z < at {
                continue;
            }
            if a > until {
                break;
            }
            if a > at {
                out.push((at, a.min(until)));
            }
            at = at.max(z);
            if at >= until {
                return out;
            }
        }
        if at < until || (at == from && !self.covers_point(from)) {
            out.push((at, until));
        }
        out
    }

    fn covers_point(&self, t: Time) -> bool {
        self.0.iter().any(|&(a, z)| a <= t && t <= z)
    }

    /// Whether any interval meets `[from, until]`.
    pub fn meets(&self, (from, until): (Time, Time)) -> bool {
        self.0.iter().any(|&(a, z)| a <= until && z >= from)
    }

    pub fn first(&self) -> Option<Time> {
        self.0.first().map(|iv| iv.0)
    }

    pub fn last(&self) -> Option<Time> {
        self.0.last().map(|iv| iv.1)
    }
}

/// "A to B, C to D" (the first and last three when there are many).
impl std::fmt::Display for Intervals {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let all: Vec<String> = (self.0.iter())
            .map(|&(a, z)| format!("{} to {}", stamp(a), stamp(z)))
            .collect();
        match all.len() {
            0 => f.write_str("nothing"),
            1..=6 => f.write_str(&all.join(", ")),
            n => write!(
                f,
                "{}, ... {} more ..., {}",
                all[..3].join(", "),
                n - 6,
                all[n - 3..].join(", ")
            ),
        }
    }
}

/// One stream of evidence: a source (`webhook`, `log`) from one registry instance (its
/// `source.addr`, or a log's `--instance`), and for the webhook one process of it (its
/// `source.instanceID`: a restart may lose the registry's queue, so processes are not bridged).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stream {
    pub source: String,
    pub instance: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub process: String,
    /// The silence this stream bridges, in seconds.
    pub tolerance: u64,
    #[serde(serialize_with = "serialize_intervals")]
    pub intervals: Intervals,
    #[serde(serialize_with = "opt_stamp")]
    pub last_event: Option<Time>,
    /// The last canary pull that came back through the registry's notification.
    #[serde(serialize_with = "opt_stamp")]
    pub last_canary: Option<Time>,
}

/// Deliveries the listener refused (or events it would not believe), by reason and hour.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    pub source: String,
    pub status: u16,
    pub reason: String,
    pub count: u64,
    #[serde(serialize_with = "one_stamp")]
    pub first: Time,
    #[serde(serialize_with = "one_stamp")]
    pub last: Time,
    /// What the first of them said.
    pub detail: String,
}

/// Which registry instances must have delivered over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Expect {
    /// Every instance seen in the window, and at least one.
    #[default]
    Seen,
    /// At least N instances, each over the whole window.
    AtLeast(usize),
    /// These instances, each over the whole window.
    Named(Vec<String>),
}

impl std::str::FromStr for Expect {
    type Err = String;
    fn from_str(s: &str) -> Result<Expect, String> {
        if let Ok(n) = s.parse::<usize>() {
            return match n {
                0 => Err("at least 1".into()),
                n => Ok(Expect::AtLeast(n)),
            };
        }
        let names: Vec<String> = (s.split(','))
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Err("give a number, or instance names separated by commas".into());
        }
        Ok(Expect::Named(names))
    }
}

/// What a window asks: `[now - window, now - lag]` covered by every instance it expects, and
/// no rejection since its start.
#[derive(Debug, Clone)]
pub struct Ask {
    pub window: u64,
    pub now: Time,
    pub max_lag: u64,
    pub expect: Expect,
}

impl Ask {
    /// The stretch that must be covered: from the window's start to `--ledger-lag` before
    /// now, and at least the window's first second. A window of 0 ("is the ledger current",
    /// for ranking by last pull) asks for the moment the lag allows.
    pub fn range(&self) -> (Time, Time) {
        let start = self.now.saturating_sub(self.window as i64);
        let end = self.now.saturating_sub(self.max_lag as i64);
        match self.window {
            0 => (end, end),
            _ => (start, end.max(start)),
        }
    }
}

/// How far in the future evidence may end before the clocks are not believed.
pub const FUTURE_SLACK: Time = 300;

/// Each instance's coverage: its streams' intervals unioned as they are.
pub fn by_instance(streams: &[Stream]) -> BTreeMap<&str, Intervals> {
    let mut out: BTreeMap<&str, Intervals> = BTreeMap::new();
    for s in streams {
        out.entry(s.instance.as_str())
            .or_default()
            .extend(&s.intervals, 0);
    }
    out
}

/// `None` when the evidence answers for `ask`; else why not, naming what is missing.
pub fn judge(streams: &[Stream], rejections: &[Rejection], ask: &Ask) -> Option<String> {
    let (start, end) = ask.range();
    let now = ask.now;
    let rejected: Vec<&Rejection> = rejections.iter().filter(|r| r.last >= start).collect();
    if let Some(first) = rejected.iter().min_by_key(|r| r.first) {
        let n: u64 = rejected.iter().map(|r| r.count).sum();
        return Some(format!(
            "{n} deliver{} rejected since {} (first: {} {} at {}: {}); fix the registry's notifications endpoint (a wrong token is the usual cause): until the window has passed, pulls may be missing",
            if n == 1 { "y was" } else { "ies were" },
            stamp(start),
            first.status,
            first.reason,
            stamp(first.first),
            first.detail
        ));
    }
    if streams.iter().all(|s| s.intervals.0.is_empty()) {
        return Some("it has recorded no evidence yet".into());
    }
    if let Some(s) = streams
        .iter()
        .find(|s| s.intervals.last() > Some(now + FUTURE_SLACK))
    {
        return Some(format!(
            "instance {} has evidence in the future (until {}; now is {}): check the clocks of this host and the registry's",
            s.instance,
            stamp(s.intervals.last().unwrap_or(now)),
            stamp(now)
        ));
    }
    let all = by_instance(streams);
    let wanted: Vec<&str> = match &ask.expect {
        Expect::Named(names) => names.iter().map(String::as_str).collect(),
        _ => (all.iter())
            .filter(|(_, iv)| iv.meets((start, now)))
            .map(|(n, _)| *n)
            .collect(),
    };
    if wanted.is_empty() {
        let last = all.values().filter_map(Intervals::last).max().unwrap_or(0);
        return Some(format!(
            "its evidence ends {} ago ({}), before the window starts ({}): is the listener running, or the log imported?",
            human_age(now - last),
            stamp(last),
            stamp(start)
        ));
    }
    let empty = Intervals::default();
    let mut full = 0;
    for name in &wanted {
        let iv = all.get(name).unwrap_or(&empty);
        match hole_text(name, iv, (start, end), ask) {
            Some(why) if !matches!(ask.expect, Expect::AtLeast(_)) => return Some(why),
            Some(_) => {}
            None => full += 1,
        }
    }
    if let Expect::AtLeast(n) = ask.expect
        && full < n
    {
        return Some(format!(
            "{full} of the {n} expected instances (--expect-instances) delivered over the whole window since {}; seen: {}",
            stamp(start),
            wanted.join(", ")
        ));
    }
    None
}

/// Why `iv` does not cover `[start, end]` for instance `name`.
fn hole_text(name: &str, iv: &Intervals, (start, end): (Time, Time), ask: &Ask) -> Option<String> {
    let holes = iv.holes((start, end));
    let &(a, z) = holes.first()?;
    let now = ask.now;
    let first = iv.first().unwrap_or(now);
    let last = iv.last().unwrap_or(0);
    if iv.0.is_empty() {
        return Some(format!("instance {name} delivered nothing at all"));
    }
    if a == start && first > start {
        return Some(format!(
            "instance {name}: its evidence began {} ago ({}), less than the {} the rule asks about",
            human_age(now - first),
            stamp(first),
            human_age(ask.window as i64)
        ));
    }
    if z == end && last < end {
        return Some(format!(
            "instance {name}: its evidence ends {} ago ({}), more than --ledger-lag {} behind: is the listener running (and the registry notifying it), or the log imported?",
            human_age(now - last),
            stamp(last),
            human_age(ask.max_lag as i64)
        ));
    }
    let longest = holes
        .iter()
        .copied()
        .max_by_key(|h| h.1 - h.0)
        .unwrap_or((a, z));
    Some(format!(
        "instance {name}: no evidence from {} to {} (a hole of {}{}); a pull then may be missing",
        stamp(longest.0),
        stamp(longest.1),
        human_age(longest.1 - longest.0),
        match holes.len() {
            1 => String::new(),
            n => format!(", the longest of {n}"),
        }
    ))
}

/// A moment as RFC 3339, to the second.
pub fn stamp(t: Time) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

pub fn serialize_intervals<S: serde::Serializer>(iv: &Intervals, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(iv.0.len()))?;
    for &(a, z) in &iv.0 {
        seq.serialize_element(&[stamp(a), stamp(z)])?;
    }
    seq.end()
}

fn opt_stamp<S: serde::Serializer>(t: &Option<Time>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&stamp(*t)),
        None => s.serialize_none(),
    }
}

fn one_stamp<S: serde::Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&stamp(*t))
}

#[cfg(test)]
#[path = "coverage_tests.rs"]
mod tests;
