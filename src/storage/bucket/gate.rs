//! The gate every request of the S3 backend passes: at most a number of requests in flight
//! (`--s3-concurrency`), at most a rate (`--max-requests-per-second`), and fewer in flight for
//! a while each time the store answers 503 (SlowDown), growing back as requests succeed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Requests in flight when `--s3-concurrency` is not given. S3 serves 5,500 GETs and 3,500
/// DELETEs a second per prefix: at 20-50 ms a round trip, 256 in flight is 5,000-12,800
/// requests a second, about what it takes (a store that wants fewer says 503, and the gate
/// halves), while 256 connections stay cheap.
pub const DEFAULT_CONCURRENCY: usize = 256;

pub struct Gate {
    max: usize,
    /// The current bound: `max`, less after throttling.
    limit: AtomicUsize,
    in_flight: AtomicUsize,
    free: Notify,
    /// Successes since the bound last moved (it grows by one per `limit` successes).
    streak: AtomicUsize,
    rate: Option<Mutex<Bucket>>,
    /// 503 answers seen.
    pub throttled: AtomicU64,
    /// The most requests in flight at once.
    pub peak: AtomicUsize,
    /// The lowest bound throttling brought it to (0: never throttled).
    pub lowest: AtomicUsize,
}

/// A token bucket: `per_second` tokens a second, at most one second's worth saved.
struct Bucket {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl Gate {
    pub fn new(max: usize, per_second: Option<u32>) -> Gate {
        let max = max.max(1);
        Gate {
            max,
            limit: AtomicUsize::new(max),
            in_flight: AtomicUsize::new(0),
            free: Notify::new(),
            streak: AtomicUsize::new(0),
            rate: per_second.filter(|r| *r > 0).map(|r| {
                Mutex::new(Bucket {
                    per_second: f64::from(r),
                    tokens: 1.0,
                    at: Instant::now(),
                })
            }),
            throttled: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
            lowest: AtomicUsize::new(0),
        }
    }

    /// The most requests in flight.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Waits for a place in flight (and a token of the rate), and takes it.
    pub async fn enter(&self) {
        loop {
            let freed = self.free.notified();
            let n = self.in_flight.load(Ordering::Acquire);
            if n < self.limit.load(Ordering::Acquire)
                && self
                    .in_flight
                    .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                self.peak.fetch_max(n + 1, Ordering::Relaxed);
                break;
            }
            // Woken when a request leaves; a short timeout guards against a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(50), freed).await;
        }
        while let Some(wait) = self.take_token() {
            tokio::time::sleep(wait).await;
        }
    }

    /// `None` when a token was taken; else how long until one is due.
    fn take_token(&self) -> Option<Duration> {
        let mut b = self
            .rate
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * b.per_second)
            .min(b.per_second.max(1.0));
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - b.tokens) / b.per_second))
        }
    }

    /// Gives the place back. `slow`: `Some(true)` when the store answered 503 (counted as
    /// throttled), `Some(false)` when the request failed on its way; either halves the bound.
    pub fn leave(&self, slow: Option<bool>) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let limit = self.limit.load(Ordering::Acquire);
        if let Some(answered) = slow {
            if answered {
                self.throttled.fetch_add(1, Ordering::Relaxed);
            }
            let lower = (limit / 2).max(1);
            self.limit.store(lower, Ordering::Release);
            self.streak.store(0, Ordering::Relaxed);
            let seen = self.lowest.load(Ordering::Relaxed);
            if seen == 0 || lower < seen {
                self.lowest.store(lower, Ordering::Relaxed);
            }
            tracing::info!(
                in_flight = lower,
                "the store throttles (503): fewer requests in flight"
            );
        } else if limit < self.max && self.streak.fetch_add(1, Ordering::Relaxed) + 1 >= limit {
            self.streak.store(0, Ordering::Relaxed);
            self.limit.store(limit + 1, Ordering::Release);
        }
        self.free.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_halves_the_bound_and_successes_grow_it_back() {
        let g = Gate::new(8, None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            for _ in 0..8 {
                g.enter().await;
            }
        });
        assert_eq!(g.peak.load(Ordering::Relaxed), 8);
        g.leave(Some(true));
        assert_eq!(g.limit.load(Ordering::Relaxed), 4);
        for _ in 0..7 {
            g.leave(None);
        }
        assert_eq!(
            g.limit.load(Ordering::Relaxed),
            5,
            "one step up after 4 successes"
        );
        assert_eq!(
            (
                g.throttled.load(Ordering::Relaxed),
                g.lowest.load(Ordering::Relaxed)
            ),
            (1, 4)
        );
    }

    #[test]
    fn the_rate_is_kept() {
        let g = Gate::new(4, Some(50));
        assert_eq!(g.take_token(), None, "one token to start with");
        let wait = g.take_token().expect("the next one is due later");
        assert!(
            wait <= Duration::from_millis(20) && wait > Duration::from_millis(10),
            "{wait:?}"
        );
        assert_eq!(Gate::new(4, None).take_token(), None);
    }
}
