//! Rate limits: token buckets per key, held by the replica that serves the request — a client
//! that spreads its requests over replicas gets each replica's allowance (docs/api.md says so).
//! Buckets that are full again are dropped, so memory follows recent callers only.
//!
//! - Every API request: per principal (an API key, a user) or, without one, per source
//!   address — by default 3,600 an hour, refilled one a second (as Hetzner), `--api-rate-limit`
//!   to change it. Every answer says where the caller stands (`RateLimit-Policy`, `RateLimit`,
//!   IETF httpapi draft); over it, `429` with `Retry-After`. VMCloud's own staff and operator
//!   keys, and the pages' in-process calls (the pages are limited as the session's user
//!   anyway through their own requests), are not counted.
//! - The doors anyone can knock on (sign-up, log-in, password reset) have tighter buckets of
//!   their own per address and per account.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::StatusCode;

use crate::api::problem::Problem;

/// A bucket's shape: `burst` tries at once, one more every `every_s` seconds.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub every_s: f64,
}

/// Sign-ups per source address.
pub const SIGNUP_PER_ADDRESS: Rate = Rate {
    burst: 10,
    every_s: 60.0,
};
/// Log-in attempts per source address.
pub const LOGIN_PER_ADDRESS: Rate = Rate {
    burst: 30,
    every_s: 2.0,
};
/// Password reset mails per account.
pub const RESET_PER_ACCOUNT: Rate = Rate {
    burst: 3,
    every_s: 300.0,
};
/// Log-in attempts per account (email), from anywhere.
/// Refusals from one address written to the replicated audit trail (beyond: logged only), so
/// that a flood of bad keys cannot fill the log.
pub const AUDITED_REFUSALS_PER_ADDRESS: Rate = Rate {
    burst: 60,
    every_s: 6.0,
};

pub const LOGIN_PER_ACCOUNT: Rate = Rate {
    burst: 10,
    every_s: 30.0,
};

#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    /// Takes one token from `key`'s bucket, or says how many seconds until there is one.
    pub fn take(&self, key: &str, rate: Rate) -> Result<(), u64> {
        self.take_at(key, rate, Instant::now())
    }

    fn take_at(&self, key: &str, rate: Rate, now: Instant) -> Result<(), u64> {
        self.take_counted(key, rate, now).map(|_| ())
    }

    /// Takes one token: `Ok(tokens left)`, or `Err(seconds until one)`.
    pub fn take_counted(&self, key: &str, rate: Rate, now: Instant) -> Result<u32, u64> {
        let mut buckets = self.buckets.lock().expect("the limiter's lock");
        if buckets.len() > 100_000 {
            // Forget buckets that have refilled (they hold nothing a new one would not).
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() / rate.every_s < rate.burst as f64
            });
        }
        let (tokens, at) = buckets
            .entry(key.to_owned())
            .or_insert((rate.burst as f64, now));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() / rate.every_s).min(rate.burst as f64);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(tokens.floor() as u32)
        } else {
            *tokens = refilled;
            Err(((1.0 - refilled) * rate.every_s).ceil().max(1.0) as u64)
        }
    }

    /// [`Limiter::take`] as a `429` problem that says what to wait for.
    pub fn check(&self, key: &str, rate: Rate, what: &str) -> Result<(), Problem> {
        self.take(key, rate).map_err(|wait| Problem {
            retry_after_s: Some(wait),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many attempts",
                format!("too many {what}; try again in {wait} s"),
            )
        })
    }
}

/// The default allowance of every principal: 3,600 requests an hour, refilled one a second.
pub const DEFAULT_API_PER_HOUR: u32 = 3_600;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_one_per_interval() {
        let l = Limiter::default();
        let rate = Rate {
            burst: 3,
            every_s: 10.0,
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take_at("a", rate, t0), Ok(()));
        }
        assert_eq!(l.take_at("a", rate, t0), Err(10));
        // Another key has its own bucket.
        assert_eq!(l.take_at("b", rate, t0), Ok(()));
        assert_eq!(l.take_at("a", rate, t0 + Duration::from_secs(5)), Err(5));
        assert_eq!(l.take_at("a", rate, t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(l.take_at("a", rate, t0 + Duration::from_secs(10)), Err(10));
    }
}
