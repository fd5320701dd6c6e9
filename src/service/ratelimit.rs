//! The optional per-user rate limit (`--rate-limit N/s`): a token bucket per user, separate
//! from the balance. Over-limit requests are refused with `rate_limited` before they touch
//! anything, so they are never charged.
//!
//! Buckets are keyed by a hash of the user id (no allocation per request) and forgotten once
//! full again, so memory follows the number of recently active users, not of all users.

use super::ServiceError;
use crate::domain::ErrorCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

/// Forget full buckets after this many checks.
const SWEEP_EVERY: u64 = 65_536;

pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<u64>,
    per_second: u32,
    checks: AtomicU64,
}

impl RateLimit {
    /// `per_second` requests per second per user, with bursts of the same size.
    pub fn per_second(per_second: u32) -> RateLimit {
        let rate = NonZeroU32::new(per_second.max(1)).expect("non-zero");
        RateLimit {
            limiter: RateLimiter::keyed(Quota::per_second(rate)),
            per_second: rate.get(),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one request from `user`'s bucket, or refuses it.
    pub fn check(&self, user: &str) -> Result<(), ServiceError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let mut hasher = DefaultHasher::new();
        user.hash(&mut hasher);
        self.limiter.check_key(&hasher.finish()).map_err(|not_until| {
            ServiceError::new(
                ErrorCode::RateLimited,
                format!(
                    "user {user:?} is over the limit of {} requests per second; try again later (nothing was charged)",
                    self.per_second
                ),
            )
            .retry_after(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_over_the_limit_is_refused_per_user() {
        let limit = RateLimit::per_second(3);
        for _ in 0..3 {
            assert!(limit.check("a").is_ok());
        }
        assert_eq!(limit.check("a").unwrap_err().code, ErrorCode::RateLimited);
        assert!(
            limit.check("b").is_ok(),
            "another user has their own bucket"
        );
    }
}
