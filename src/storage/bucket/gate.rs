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
    /// How many times the bound was cut: a request sent before the last cut saw the old bound,
    /// so its failure does not cut again (many in flight failing at once are one congestion
    /// event, as TCP counts one loss per window; cutting for each took 256 in flight to 1).
    cuts: AtomicU64,
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
            cuts: AtomicU64::new(0),
        }
    }

    /// The most requests in flight.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Waits for a place in flight (and a token of the rate), and takes it. The place is given
    /// back when the returned guard goes, whether the request ended or its future was dropped
    /// on the way (a stream dropped after its first page, a timeout): a place lost there
    /// would shrink the gate for good, and at a bound of 1 stop every later request.
    pub async fn enter(&self) -> Place<'_> {
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
        let place = Place {
            gate: self,
            slow: None,
            cuts: self.cuts.load(Ordering::Acquire),
        };
        while let Some(wait) = self.take_token() {
            tokio::time::sleep(wait).await;
        }
        place
    }

    /// Places taken and not given back (for tests and the stall report).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
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
    /// throttled), `Some(false)` when the request failed on its way; either halves the bound,
    /// once for all the requests sent under the same bound (`cuts`: the cuts seen at entry).
    fn leave(&self, slow: Option<bool>, cuts: u64) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let limit = self.limit.load(Ordering::Acquire);
        if let Some(answered) = slow {
            if answered {
                self.throttled.fetch_add(1, Ordering::Relaxed);
            }
            self.streak.store(0, Ordering::Relaxed);
            if (self
                .cuts
                .compare_exchange(cuts, cuts + 1, Ordering::AcqRel, Ordering::Acquire))
            .is_err()
            {
                // Sent before the last cut: that cut already answered this congestion.
                self.free.notify_waiters();
                return;
            }
            let lower = (limit / 2).max(1);
            self.limit.store(lower, Ordering::Release);
            let seen = self.lowest.load(Ordering::Relaxed);
            if seen == 0 || lower < seen {
                self.lowest.store(lower, Ordering::Relaxed);
            }
            tracing::info!(
                in_flight = lower,
                "the store throttles (503) or a request failed on its way: fewer requests in flight"
            );
        } else if limit < self.max && self.streak.fetch_add(1, Ordering::Relaxed) + 1 >= limit {
            self.streak.store(0, Ordering::Relaxed);
            self.limit.store(limit + 1, Ordering::Release);
        }
        self.free.notify_waiters();
    }
}

/// A place in flight, given back when dropped.
pub struct Place<'a> {
    gate: &'a Gate,
    slow: Option<bool>,
    /// The gate's cuts when this place was taken.
    cuts: u64,
}

impl Place<'_> {
    /// How the request ended: see `Gate::leave`.
    pub fn ended(mut self, slow: Option<bool>) {
        self.slow = slow;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.gate.leave(self.slow, self.cuts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn throttling_halves_the_bound_and_successes_grow_it_back() {
        let g = Gate::new(8, None);
        let rt = runtime();
        let mut places = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..8 {
                v.push(g.enter().await);
            }
            v
        });
        assert_eq!(g.peak.load(Ordering::Relaxed), 8);
        places.pop().unwrap().ended(Some(true));
        assert_eq!(g.limit.load(Ordering::Relaxed), 4);
        drop(places);
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
    fn requests_failing_together_cut_the_bound_once() {
        let g = Gate::new(256, None);
        let rt = runtime();
        let enter_all = |n| {
            rt.block_on(async {
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(g.enter().await);
                }
                v
            })
        };
        // 256 in flight when the store stalls: every one of them fails, one cut.
        for p in enter_all(256) {
            p.ended(Some(false));
        }
        assert_eq!(g.limit.load(Ordering::Relaxed), 128);
        // What is sent under the new bound and fails cuts again, once.
        for p in enter_all(128) {
            p.ended(Some(true));
        }
        assert_eq!(g.limit.load(Ordering::Relaxed), 64);
        assert_eq!(g.lowest.load(Ordering::Relaxed), 64);
        assert_eq!(g.throttled.load(Ordering::Relaxed), 128);
        assert_eq!(g.in_flight(), 0);
    }

    #[test]
    fn a_request_dropped_on_its_way_gives_its_place_back() {
        let g = Gate::new(1, Some(1));
        let rt = runtime();
        rt.block_on(async {
            // Dropped while in flight (a stream dropped after its first page)...
            let place = g.enter().await;
            let request = async move {
                let _place = place;
                std::future::pending::<()>().await
            };
            let _ = tokio::time::timeout(Duration::from_millis(5), request).await;
            assert_eq!(g.in_flight(), 0);
            // ...and while waiting for the rate's next token, after the place was taken.
            let waiting = g.enter();
            let _ = tokio::time::timeout(Duration::from_millis(5), waiting).await;
            assert_eq!(g.in_flight(), 0);
            // The gate still admits: nothing waits for a place that was lost.
            let again = tokio::time::timeout(Duration::from_secs(5), g.enter()).await;
            assert!(again.is_ok(), "a place was lost");
        });
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
