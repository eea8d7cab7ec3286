//! Per-account request budget (Flowlu's `ratelimit.limit`, taken as requests per second).
//!
//! A token bucket per account holding at most one second's worth of requests. A sender
//! reserves a slot and is told how long to wait for it, so concurrent senders queue fairly
//! and the account never sees more than its budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<i64, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// Reserves one request for `key` at `per_second`; returns how long to wait first.
    pub fn reserve(&self, key: i64, per_second: u32, now: Instant) -> Duration {
        let rate = f64::from(per_second.max(1));
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.last = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_budget_per_second() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        // 40 requests at once against a budget of 16/s: the 16 first go now, the rest are
        // spaced 1/16 s apart.
        let waits: Vec<Duration> = (0..40).map(|_| limiter.reserve(7, 16, start)).collect();
        assert!(waits[..16].iter().all(|w| w.is_zero()));
        for (i, w) in waits.iter().enumerate().skip(16) {
            let expected = (i as f64 - 15.0) / 16.0;
            assert!(
                (w.as_secs_f64() - expected).abs() < 1e-6,
                "request {i}: {w:?}"
            );
        }
        // Any window of one second holds at most 16 + 16 sends: check the first second.
        let in_first_second = waits.iter().filter(|w| w.as_secs_f64() < 1.0).count();
        assert!(in_first_second <= 32);
        // Another account has its own budget.
        assert!(limiter.reserve(8, 16, start).is_zero());
        // After a quiet second the bucket is full again (but not fuller).
        let later = start + Duration::from_secs(10);
        let waits: Vec<Duration> = (0..17).map(|_| limiter.reserve(8, 16, later)).collect();
        assert!(waits[..16].iter().all(|w| w.is_zero()));
        assert!(!waits[16].is_zero());
    }
}
