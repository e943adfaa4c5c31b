//! Per-API-key rate limits (CONTRACT §1: 429 with `Retry-After` in whole seconds).
//!
//! Off unless the operator sets `--rate-limit`: a self-hosted server answers its own integrator,
//! and CI or benchmarks should not be throttled by surprise. `nexhealth` mirrors NexHealth's
//! published default (100 requests per second and 2,000 per minute per key), so an integration
//! can exercise its 429 handling against `convo` before it meets the real thing.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// One limit: at most `count` requests per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

/// Parses `off`, `nexhealth`, or a comma-separated list such as `100/s,2000/min`
/// (units `s`, `min`, `h`).
pub fn parse(spec: &str) -> Result<Vec<RateLimit>, String> {
    let spec = spec.trim();
    match spec.to_ascii_lowercase().as_str() {
        "" | "off" | "none" => return Ok(Vec::new()),
        "nexhealth" => return parse("100/s,2000/min"),
        _ => {}
    }
    spec.split(',')
        .map(|part| {
            let part = part.trim();
            let bad = || {
                format!("rate limit `{part}` is not COUNT/UNIT with a positive COUNT and UNIT s, min or h")
            };
            let (count, unit) = part.split_once('/').ok_or_else(bad)?;
            let count: u32 = count.trim().parse().map_err(|_| bad())?;
            let per = match unit.trim() {
                "s" | "sec" | "second" => Duration::from_secs(1),
                "min" | "minute" => Duration::from_secs(60),
                "h" | "hour" => Duration::from_secs(3600),
                _ => return Err(bad()),
            };
            if count == 0 {
                return Err(bad());
            }
            Ok(RateLimit { count, per })
        })
        .collect()
}

type Keyed<C> = RateLimiter<i64, DashMapStateStore<i64>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limits in force, one state per API key id.
pub struct Limiter<C: Clock + Clone = DefaultClock> {
    limits: Vec<Keyed<C>>,
    clock: C,
}

impl Limiter<DefaultClock> {
    pub fn new(limits: &[RateLimit]) -> Self {
        Self::with_clock(limits, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    pub fn with_clock(limits: &[RateLimit], clock: C) -> Self {
        let limits = limits
            .iter()
            .filter_map(|l| {
                // Bursts of up to `count`, refilled evenly over `per` (GCRA).
                let burst = NonZeroU32::new(l.count)?;
                let quota = Quota::with_period(l.per / l.count)?.allow_burst(burst);
                Some(RateLimiter::dashmap_with_clock(quota, clock.clone()))
            })
            .collect();
        Self { limits, clock }
    }

    /// `Err(seconds)` to wait when `key_id` is over a limit. A request refused by a later limit
    /// has still used a cell of the earlier ones: being refused is no way to save up.
    pub fn check(&self, key_id: i64) -> Result<(), u64> {
        for limit in &self.limits {
            if let Err(not_until) = limit.check_key(&key_id) {
                let wait = not_until.wait_time_from(self.clock.now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(secs.max(1));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn specs() {
        assert_eq!(parse("off"), Ok(vec![]));
        assert_eq!(parse(""), Ok(vec![]));
        let nexhealth = parse("NexHealth").expect("preset");
        assert_eq!(
            nexhealth,
            [
                RateLimit {
                    count: 100,
                    per: Duration::from_secs(1)
                },
                RateLimit {
                    count: 2000,
                    per: Duration::from_secs(60)
                }
            ]
        );
        assert_eq!(parse(" 100/s , 2000/min "), Ok(nexhealth));
        assert_eq!(
            parse("5/h"),
            Ok(vec![RateLimit {
                count: 5,
                per: Duration::from_secs(3600)
            }])
        );
        for bad in [
            "0/s",
            "x/s",
            "5",
            "5/fortnight",
            "-1/s",
            "5/s,",
            "99999999999/s",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_key_has_its_own_budget_and_learns_when_to_come_back() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(
            &[RateLimit {
                count: 3,
                per: Duration::from_secs(60),
            }],
            clock.clone(),
        );
        for _ in 0..3 {
            assert_eq!(limiter.check(1), Ok(()));
        }
        // One cell comes back every 20 s.
        assert_eq!(limiter.check(1), Err(20));
        assert_eq!(limiter.check(2), Ok(()), "another key is not affected");
        clock.advance(Duration::from_millis(19_500));
        assert_eq!(limiter.check(1), Err(1), "whole seconds, rounded up");
        clock.advance(Duration::from_millis(500));
        assert_eq!(limiter.check(1), Ok(()));
        assert_eq!(limiter.check(1), Err(20));
    }

    #[test]
    fn the_tightest_limit_answers() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(&parse("2/s,3/min").expect("spec"), clock.clone());
        assert_eq!(limiter.check(7), Ok(()));
        assert_eq!(limiter.check(7), Ok(()));
        assert_eq!(limiter.check(7), Err(1), "per second");
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.check(7), Ok(()));
        clock.advance(Duration::from_secs(1));
        // The minute's three are spent: the next comes 20 s after the first.
        assert_eq!(limiter.check(7), Err(18));
    }

    #[test]
    fn no_limits_never_refuse() {
        let limiter = Limiter::new(&[]);
        for _ in 0..10_000 {
            assert_eq!(limiter.check(1), Ok(()));
        }
    }
}
