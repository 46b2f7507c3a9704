//! Progress as the core reports it: a small trait the stages call, so that the core never draws
//! anything itself. The CLI implements it with terminal bars (`cli::bars`); tests and library
//! callers pass [`Hidden`].

/// Where a stage reports its progress.
pub trait Progress: Sync {
    /// A counter of `len` items.
    fn bar(&self, label: &'static str, len: u64) -> Box<dyn Bar>;
    /// A counter of `len` bytes, shown with a rate.
    fn bytes_bar(&self, label: &'static str, len: u64) -> Box<dyn Bar>;
    /// On an object store: the requests made so far, for the bars to show with their rate.
    fn requests(&self, _made: RequestCounter) {}
}

/// Reads a storage's requests so far.
pub type RequestCounter = std::sync::Arc<dyn Fn() -> RequestsNow + Send + Sync>;

/// An object store's requests at one moment, as the bars show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestsNow {
    /// Requests made, retries included.
    pub made: u64,
    pub in_flight: u64,
    /// Attempts the store did not answer well (a 5xx, 429, or a connection that failed):
    /// each is retried with backoff, until the request's limits.
    pub retried: u64,
}

/// One stage's counter.
pub trait Bar: Send + Sync {
    fn inc(&self, n: u64);
    /// More work found on the way (index children of manifests already counted).
    fn inc_length(&self, n: u64);
    /// The stage is done.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hidden;

struct NoBar;

impl Bar for NoBar {
    fn inc(&self, _: u64) {}
    fn inc_length(&self, _: u64) {}
    fn finish(&self) {}
}

impl Progress for Hidden {
    fn bar(&self, _: &'static str, _: u64) -> Box<dyn Bar> {
        Box::new(NoBar)
    }
    fn bytes_bar(&self, _: &'static str, _: u64) -> Box<dyn Bar> {
        Box::new(NoBar)
    }
}
