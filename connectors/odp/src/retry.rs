//! The retry policy: bounded attempts, exponential backoff, `Retry-After` honoured.
//!
//! A small function rather than a retry crate: a retried ODP page is not a closure re-run —
//! a connection that drops mid-stream resumes the same page from its cursor while skipping the
//! rows already delivered, and the attempt counter is shared between HTTP-status failures and
//! mid-stream failures of the same page. What is left to a policy is "how long to wait before
//! attempt n", which is this.

use std::time::Duration;

/// How often and how long to retry transient failures (429, 502, 503, 504, dropped
/// connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles for each further attempt.
    pub initial: Duration,
    /// Longest delay (also caps a server's `Retry-After`, so a bad header cannot stall the
    /// source for hours).
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay before attempt `failed + 1`, after `failed` failed attempts (1-based).
    /// `retry_after` (from the server) wins over the computed backoff.
    pub fn delay(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = || {
            let exponent = failed.saturating_sub(1).min(30);
            self.initial.saturating_mul(1u32 << exponent)
        };
        retry_after.unwrap_or_else(backoff).min(self.max)
    }

    /// Whether another attempt is allowed after `failed` failed attempts.
    pub fn may_retry(&self, failed: u32) -> bool {
        failed < self.max_attempts
    }
}

/// Parses a `Retry-After` value: delay seconds, or an HTTP date (then the time until it).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_retry_after_wins() {
        let p = RetryPolicy {
            max_attempts: 4,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
        };
        let secs: Vec<u64> = (1..=5).map(|n| p.delay(n, None).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 5, 5]);
        assert_eq!(
            p.delay(3, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(600))),
            Duration::from_secs(5)
        );
        assert!(p.may_retry(3));
        assert!(!p.may_retry(4));
        assert_eq!(p.delay(u32::MAX, None), Duration::from_secs(5));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
