//! The CLI's progress: indicatif bars on stderr when it is a terminal, nothing otherwise. A
//! finished bar is cleared, so that the report that follows stands alone.

use crate::progress::{Bar, Hidden, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy)]
pub struct Bars;

impl Bars {
    /// Bars if `wanted` and stderr is a terminal; none otherwise.
    pub fn when(wanted: bool) -> Box<dyn Progress> {
        if wanted && std::io::stderr().is_terminal() {
            Box::new(Bars)
        } else {
            Box::new(Hidden)
        }
    }

    fn make(label: &'static str, len: u64, template: &str) -> Box<dyn Bar> {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label);
        Box::new(Drawn(bar))
    }
}

struct Drawn(ProgressBar);

impl Bar for Drawn {
    fn inc(&self, n: u64) {
        self.0.inc(n)
    }
    fn inc_length(&self, n: u64) {
        self.0.inc_length(n)
    }
    fn finish(&self) {
        self.0.finish_and_clear()
    }
}

impl Progress for Bars {
    fn bar(&self, label: &'static str, len: u64) -> Box<dyn Bar> {
        Bars::make(label, len, "{prefix:>18} [{bar:30}] {pos}/{len} {elapsed}")
    }
    fn bytes_bar(&self, label: &'static str, len: u64) -> Box<dyn Bar> {
        Bars::make(
            label,
            len,
            "{prefix:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
    }
}
