//! What to do after an attempt: the retry schedule, jitter, throttling floors and the
//! classification of answers. Pure functions of their inputs (plus the jitter's dice).

use std::time::{Duration, SystemTime};

use super::{Reply, SendError};
use crate::config::OutboxConfig;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Wait before retry number n+1 after the n-th failed attempt.
    pub schedule: Vec<Duration>,
    pub jitter_percent: u64,
    /// Shortest wait after a 429 or a timeout.
    pub throttle_floor: Duration,
    pub retry_after_max: Duration,
    pub hold_recheck: Duration,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again after this long.
    RetryIn(Duration),
    /// Give up; the row becomes `failed` with this reason.
    Failed(String),
    /// 401: refresh the token and retry at once.
    Refresh,
}

impl RetryPolicy {
    pub fn from_config(c: &OutboxConfig) -> RetryPolicy {
        RetryPolicy {
            schedule: c.schedule(),
            jitter_percent: c.jitter_percent,
            throttle_floor: OutboxConfig::duration(&c.throttle_floor),
            retry_after_max: OutboxConfig::duration(&c.retry_after_max),
            hold_recheck: OutboxConfig::duration(&c.hold_recheck),
        }
    }

    /// The sum of the schedule: how long an event is retried before it fails.
    pub fn total(&self) -> Duration {
        self.schedule.iter().sum()
    }

    /// The wait after the `failures`-th failed attempt, or `None` when the schedule is
    /// used up.
    fn scheduled(&self, failures: u32) -> Option<Duration> {
        let index = failures.checked_sub(1)? as usize;
        self.schedule.get(index).map(|d| self.jitter(*d))
    }

    fn jitter(&self, d: Duration) -> Duration {
        if self.jitter_percent == 0 {
            return d;
        }
        let j = self.jitter_percent as i64;
        let percent = 100 + rand::random_range(-j..=j);
        d * percent as u32 / 100
    }

    fn give_up(&self, failures: u32, last: String) -> Verdict {
        Verdict::Failed(format!(
            "gave up after {failures} attempts over {}: {last}",
            crate::config::format_duration(self.total())
        ))
    }

    /// `failures` counts this attempt if it failed.
    pub fn after_reply(&self, failures: u32, reply: &Reply) -> Verdict {
        let status = reply.status;
        let retry = |floor: Option<Duration>, what: String| match self.scheduled(failures) {
            None => self.give_up(failures, what),
            Some(wait) => {
                let wait = match reply.retry_after {
                    Some(asked) => asked.min(self.retry_after_max),
                    None => wait,
                };
                Verdict::RetryIn(floor.map_or(wait, |f| wait.max(f)))
            }
        };
        match status {
            200..=299 => Verdict::Delivered,
            401 => Verdict::Refresh,
            429 => retry(Some(self.throttle_floor), "HTTP 429".into()),
            408 | 425 | 500..=599 => retry(None, format!("HTTP {status}")),
            _ => Verdict::Failed(format!("HTTP {status}: the receiver refused the event")),
        }
    }

    pub fn after_error(&self, failures: u32, error: &SendError) -> Verdict {
        match self.scheduled(failures) {
            None => self.give_up(failures, error.to_string()),
            Some(wait) => match error {
                SendError::Timeout => Verdict::RetryIn(wait.max(self.throttle_floor)),
                SendError::Network(_) => Verdict::RetryIn(wait),
            },
        }
    }
}

/// Reads a `Retry-After` value: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let when = SystemTime::from(when);
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: u64) -> RetryPolicy {
        RetryPolicy {
            schedule: vec![Duration::from_secs(10), Duration::from_secs(60)],
            jitter_percent: jitter,
            throttle_floor: Duration::from_secs(5),
            retry_after_max: Duration::from_secs(3600),
            hold_recheck: Duration::from_secs(30),
        }
    }

    fn reply(status: u16, retry_after: Option<u64>) -> Reply {
        Reply {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: String::new(),
        }
    }

    #[test]
    fn answers_are_classified_as_the_contract_says() {
        let p = policy(0);
        assert_eq!(p.after_reply(0, &reply(200, None)), Verdict::Delivered);
        assert_eq!(p.after_reply(0, &reply(204, None)), Verdict::Delivered);
        assert_eq!(p.after_reply(1, &reply(401, None)), Verdict::Refresh);
        assert_eq!(
            p.after_reply(1, &reply(503, None)),
            Verdict::RetryIn(Duration::from_secs(10))
        );
        assert_eq!(
            p.after_reply(2, &reply(500, None)),
            Verdict::RetryIn(Duration::from_secs(60))
        );
        assert!(
            matches!(p.after_reply(3, &reply(500, None)), Verdict::Failed(why) if why.contains("gave up after 3"))
        );
        assert!(
            matches!(p.after_reply(1, &reply(422, None)), Verdict::Failed(why) if why.contains("422"))
        );
        assert!(matches!(
            p.after_reply(1, &reply(404, None)),
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn throttling_honours_retry_after_within_bounds() {
        let p = policy(0);
        // Retry-After longer than the schedule: honoured.
        assert_eq!(
            p.after_reply(1, &reply(429, Some(120))),
            Verdict::RetryIn(Duration::from_secs(120))
        );
        // Absurd Retry-After: cut to retry_after_max.
        assert_eq!(
            p.after_reply(1, &reply(429, Some(999_999))),
            Verdict::RetryIn(Duration::from_secs(3600))
        );
        // Retry-After 0 on a 429: never below the floor.
        assert_eq!(
            p.after_reply(1, &reply(429, Some(0))),
            Verdict::RetryIn(Duration::from_secs(5))
        );
        let mut short = policy(0);
        short.schedule = vec![Duration::from_millis(10)];
        assert_eq!(
            short.after_reply(1, &reply(429, None)),
            Verdict::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(
            short.after_error(1, &SendError::Timeout),
            Verdict::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(
            short.after_error(1, &SendError::Network("refused".into())),
            Verdict::RetryIn(Duration::from_millis(10))
        );
    }

    #[test]
    fn jitter_stays_within_its_percentage() {
        let p = policy(20);
        for _ in 0..200 {
            let Verdict::RetryIn(d) = p.after_reply(1, &reply(500, None)) else {
                panic!("expected a retry")
            };
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }

    #[test]
    fn the_default_schedule_reaches_72_hours() {
        let c = crate::config::Config::defaults().outbox;
        assert!(RetryPolicy::from_config(&c).total() >= Duration::from_secs(72 * 3600));
    }

    #[test]
    fn retry_after_dates_and_seconds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_717);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
