//! The CLI's progress: indicatif bars on stderr when it is a terminal, nothing otherwise. A
//! finished bar is cleared, so that the report that follows stands alone.

use crate::progress::{Bar, Hidden, Progress, RequestCounter};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

/// The bars, and on an object store the requests made so far (shown with their rate).
#[derive(Default)]
pub struct Bars {
    requests: Mutex<Option<RequestCounter>>,
}

impl Bars {
    /// Bars if `wanted` and stderr is a terminal; none otherwise.
    pub fn when(wanted: bool) -> Box<dyn Progress> {
        if wanted && std::io::stderr().is_terminal() {
            Box::new(Bars::default())
        } else {
            Box::new(Hidden)
        }
    }

    fn make(&self, label: &'static str, len: u64, template: &str) -> Box<dyn Bar> {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label);
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let start = requests.as_ref().map_or(0, |r| r().made);
        Box::new(Drawn {
            bar,
            requests: requests.map(|r| (r, start)),
        })
    }
}

struct Drawn {
    bar: ProgressBar,
    /// The store's request counter, and its value when the bar began.
    requests: Option<(RequestCounter, u64)>,
}

impl Bar for Drawn {
    fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some((made, start)) = &self.requests {
            let now = made();
            let done = now.made.saturating_sub(*start);
            let secs = self.bar.elapsed().as_secs_f64().max(0.001);
            let mut msg = format!(
                "{done} requests, {:.0}/s, {} in flight",
                done as f64 / secs,
                now.in_flight
            );
            if now.retried > 0 {
                msg += &format!(", {} retried", now.retried);
            }
            self.bar.set_message(msg);
        }
    }
    fn inc_length(&self, n: u64) {
        self.bar.inc_length(n)
    }
    fn finish(&self) {
        self.bar.finish_and_clear()
    }
}

impl Progress for Bars {
    fn bar(&self, label: &'static str, len: u64) -> Box<dyn Bar> {
        self.make(
            label,
            len,
            "{prefix:>18} [{bar:30}] {pos}/{len} {elapsed} eta {eta} {msg}",
        )
    }
    fn bytes_bar(&self, label: &'static str, len: u64) -> Box<dyn Bar> {
        self.make(
            label,
            len,
            "{prefix:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta} {msg}",
        )
    }
    fn requests(&self, made: RequestCounter) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()) = Some(made);
    }
}
