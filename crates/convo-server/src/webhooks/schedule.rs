//! When a failed delivery is tried again (CONTRACT §8): NexHealth's cumulative schedule, counted
//! from the first attempt, each retry moved by up to ±10 % so that an endpoint's backlog does
//! not return in one burst; a `Retry-After` that asks for later wins; the 48-hour rule is the
//! store's (`convo_core::webhook`).

/// Seconds after the first attempt at which retries 1 to 10 are due.
pub const RETRY_OFFSETS_S: [i64; 10] = [
    30, 90, 210, 600, 1_800, 7_200, 18_000, 36_000, 86_400, 172_800,
];

/// What happens after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this instant (ms).
    RetryAt(i64),
    /// The schedule is spent: the delivery has failed for good.
    GiveUp,
}

/// After failed attempt number `attempts` (1: the first) of a delivery first tried at
/// `first_ms`, failing at `now_ms`: the next retry's time. `jitter` in [-1, 1] scales ±10 % of
/// that retry's offset; `retry_after_ms` (from a 429 or 503) is honoured when it asks for later.
pub fn after_failure(
    first_ms: i64,
    attempts: u32,
    now_ms: i64,
    jitter: f64,
    retry_after_ms: Option<i64>,
) -> AfterFailure {
    let Some(&offset_s) = usize::try_from(attempts)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| RETRY_OFFSETS_S.get(i))
    else {
        return AfterFailure::GiveUp;
    };
    let offset_ms = offset_s * 1_000;
    let spread = (offset_ms as f64 * 0.1 * jitter.clamp(-1.0, 1.0)) as i64;
    let scheduled = first_ms.saturating_add(offset_ms + spread);
    let asked = retry_after_ms.map_or(i64::MIN, |ms| now_ms.saturating_add(ms.max(0)));
    // Never in the past: a slow attempt can end after its successor was due.
    AfterFailure::RetryAt(scheduled.max(asked).max(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_521_600_000;

    #[test]
    fn retries_follow_nexhealths_cumulative_offsets() {
        let mut now = T0;
        for (i, offset) in RETRY_OFFSETS_S.iter().enumerate() {
            let attempts = u32::try_from(i + 1).expect("small");
            let AfterFailure::RetryAt(at) = after_failure(T0, attempts, now, 0.0, None) else {
                panic!("retry {} given up", i + 1);
            };
            assert_eq!(at, T0 + offset * 1_000, "retry {}", i + 1);
            now = at;
        }
        assert_eq!(after_failure(T0, 11, now, 0.0, None), AfterFailure::GiveUp);
        assert_eq!(after_failure(T0, 0, T0, 0.0, None), AfterFailure::GiveUp);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for jitter in [-1.0, -0.5, 0.0, 0.5, 1.0, 7.0, -7.0] {
            for (i, offset) in RETRY_OFFSETS_S.iter().enumerate() {
                let attempts = u32::try_from(i + 1).expect("small");
                let AfterFailure::RetryAt(at) = after_failure(T0, attempts, T0, jitter, None)
                else {
                    panic!("given up");
                };
                let off = at - T0;
                assert!(
                    (off - offset * 1_000).abs() <= offset * 100,
                    "retry {} at {off} ms, jitter {jitter}",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn retry_after_wins_only_when_later() {
        // Retry 1 is due 30 s after the first attempt; the receiver asks for 120 s from now.
        let now = T0 + 1_000;
        assert_eq!(
            after_failure(T0, 1, now, 0.0, Some(120_000)),
            AfterFailure::RetryAt(now + 120_000)
        );
        assert_eq!(
            after_failure(T0, 1, now, 0.0, Some(5_000)),
            AfterFailure::RetryAt(T0 + 30_000)
        );
    }

    #[test]
    fn a_retry_is_never_due_in_the_past() {
        // The first retry was due at 30 s; the attempt ended at 40 s.
        assert_eq!(
            after_failure(T0, 1, T0 + 40_000, 0.0, None),
            AfterFailure::RetryAt(T0 + 40_000)
        );
    }

    #[test]
    fn the_last_retry_falls_at_the_failing_limit() {
        // Without jitter the last failure is the one that deactivates (48 h); with −10 % it
        // comes earlier, and a spent schedule deactivates by itself (the store's rule).
        assert_eq!(
            RETRY_OFFSETS_S[9] * 1_000,
            convo_core::webhook::FAILING_LIMIT_MS
        );
    }
}
