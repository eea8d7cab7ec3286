//! Per-key token buckets for the click-to-call URL: `[c2c] burst` requests at once, then
//! `[c2c] rate_per_minute` a minute. In memory: a restart refills every bucket, which
//! lets at most one extra burst through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before full (idle) ones are dropped.
const PRUNE_AT: usize = 1024;

#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    /// Takes one token from `key`'s bucket, or says how long until one is there.
    pub fn take(
        &self,
        key: &str,
        rate_per_minute: u32,
        burst: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        let per_sec = f64::from(rate_per_minute) / 60.0;
        let size = f64::from(burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= PRUNE_AT {
            buckets.retain(|_, b| refill(*b, per_sec, size, now).tokens < size);
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: size,
            at: now,
        });
        *bucket = refill(*bucket, per_sec, size, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }
}

fn refill(b: Bucket, per_sec: f64, size: f64, now: Instant) -> Bucket {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    Bucket {
        tokens: (b.tokens + elapsed * per_sec).min(size),
        at: now.max(b.at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_key() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take("a", 60, 3, t0), Ok(()));
        }
        let wait = l.take("a", 60, 3, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Another key has its own bucket.
        assert_eq!(l.take("b", 60, 3, t0), Ok(()));
        // Half a token after 500 ms: still 500 ms to wait.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.take("a", 60, 3, t1), Err(Duration::from_millis(500)));
        let t2 = t0 + Duration::from_secs(1);
        assert_eq!(l.take("a", 60, 3, t2), Ok(()));
        assert!(l.take("a", 60, 3, t2).is_err());
        // A long pause refills to the burst, not beyond.
        let t3 = t2 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(l.take("a", 60, 3, t3), Ok(()));
        }
        assert!(l.take("a", 60, 3, t3).is_err());
    }

    #[test]
    fn idle_buckets_are_dropped_when_many() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..PRUNE_AT {
            l.take(&format!("k{i}"), 60, 2, t0).unwrap();
        }
        l.take("busy", 60, 2, t0).unwrap();
        l.take("busy", 60, 2, t0).unwrap();
        let later = t0 + Duration::from_secs(10);
        l.take("new", 60, 2, later).unwrap();
        let n = l.buckets.lock().unwrap().len();
        assert!(n <= 3, "{n} buckets kept");
    }
}
