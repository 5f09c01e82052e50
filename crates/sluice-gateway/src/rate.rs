//! The per-key rate limit, in records per second: a token bucket holding one second's worth,
//! which a request may overdraw (a batch bigger than the bucket still goes through once the
//! bucket is full, and the key then waits until the debt is paid). Refused requests are told
//! when to come back (`Retry-After`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets per API key.
pub struct RateLimits {
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimits {
    /// A limit of `per_second` records per key.
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` may send now; if not, how long until it may.
    pub fn admit(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().expect("rate buckets");
        let bucket = self.refill(&mut buckets, key, now);
        if bucket.tokens > 0.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(-bucket.tokens / self.per_second)
                .max(Duration::from_secs(1)))
        }
    }

    /// Takes `records` from the key's bucket (it may go below zero).
    pub fn charge(&self, key: &str, records: usize, now: Instant) {
        let mut buckets = self.buckets.lock().expect("rate buckets");
        self.refill(&mut buckets, key, now).tokens -= records as f64;
    }

    fn refill<'a>(
        &self,
        buckets: &'a mut HashMap<String, Bucket>,
        key: &str,
        now: Instant,
    ) -> &'a mut Bucket {
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.per_second,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.per_second);
        bucket.at = now;
        bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_overdraws_once_then_waits_for_its_debt_and_others_are_not_affected() {
        let limits = RateLimits::new(100.0);
        let start = Instant::now();
        assert_eq!(limits.admit("a", start), Ok(()));
        limits.charge("a", 300, start);
        // 200 records of debt at 100/s: two seconds.
        assert_eq!(limits.admit("a", start), Err(Duration::from_secs(2)));
        assert_eq!(limits.admit("b", start), Ok(()));
        assert!(
            limits
                .admit("a", start + Duration::from_millis(1900))
                .is_err()
        );
        assert_eq!(
            limits.admit("a", start + Duration::from_millis(2100)),
            Ok(())
        );
        // A long quiet spell refills one second's worth, not more.
        limits.charge("a", 1, start + Duration::from_secs(60));
        limits.charge("a", 100, start + Duration::from_secs(60));
        assert!(limits.admit("a", start + Duration::from_secs(60)).is_err());
    }
}
