//! Flow control between guest writes and compaction (the talk's lessons 3 and 4: flow
//! control always, and both kinds of work progress).
//!
//! Two rules, both pure:
//! - [`TokenBucket`] paces compaction's bytes to a rate with a burst, so that rewriting a
//!   volume's log never saturates Pangu for the guests of every other disk.
//! - [`compaction_share`] decides how many bytes of one group-commit append compaction
//!   may take: all of it when no guest write waits, otherwise what the guests leave, but
//!   never less than its minimum share. Guests come first, and compaction still finishes
//!   under a guest that writes without pause (otherwise its log would grow without bound).
//!
//! Times are `Duration`s since any fixed origin; nothing here reads a clock.

use std::time::Duration;

/// A token bucket over bytes.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens at `at`, in byte-nanoseconds (exact integer refill at any rate).
    tokens: u128,
    at: Duration,
}

const NANOS: u128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket refilling at `rate` bytes per second up to `burst` bytes.
    pub fn new(rate: u64, burst: u64, now: Duration) -> TokenBucket {
        TokenBucket { rate: rate.max(1), burst, tokens: u128::from(burst) * NANOS, at: now }
    }

    /// Takes `bytes` now, going into debt if short; returns how long the caller must wait
    /// before using them (zero if the bucket held enough). Debt delays the next caller in
    /// turn, so the long-run rate holds for requests of any size, even beyond the burst.
    pub fn take(&mut self, bytes: u64, now: Duration) -> Duration {
        self.refill(now);
        let want = u128::from(bytes) * NANOS;
        if self.tokens >= want {
            self.tokens -= want;
            return Duration::ZERO;
        }
        let short = want - self.tokens;
        self.tokens = 0;
        // The debt is paid by the refill up to the moment the caller may go.
        let wait_nanos = short.div_ceil(u128::from(self.rate));
        let wait = Duration::from_nanos(u64::try_from(wait_nanos).unwrap_or(u64::MAX));
        self.at = now + wait;
        wait
    }

    fn refill(&mut self, now: Duration) {
        if now <= self.at {
            return;
        }
        let elapsed = (now - self.at).as_nanos();
        self.tokens = (self.tokens + elapsed * u128::from(self.rate)).min(u128::from(self.burst) * NANOS);
        self.at = now;
    }
}

/// The bytes compaction may put into one append of `limit` bytes when guests have
/// `guest_bytes` waiting; `min_share` is compaction's floor, a fraction of `limit`.
pub fn compaction_share(limit: u64, guest_bytes: u64, min_share: f64) -> u64 {
    let floor = (limit as f64 * min_share.clamp(0.0, 1.0)) as u64;
    limit.saturating_sub(guest_bytes).max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn bucket_paces_to_its_rate() {
        let mut b = TokenBucket::new(1000, 500, Duration::ZERO);
        assert_eq!(b.take(500, Duration::ZERO), Duration::ZERO);
        // Empty: 250 bytes are a quarter second away.
        assert_eq!(b.take(250, Duration::ZERO), Duration::from_millis(250));
        // The next caller waits behind that debt.
        assert_eq!(b.take(250, Duration::from_millis(250)), Duration::from_millis(250));
        // After an idle while the bucket is full again, but never above its burst.
        assert_eq!(b.take(500, 10 * S), Duration::ZERO);
        assert_eq!(b.take(1, 10 * S), Duration::from_millis(1));
    }

    #[test]
    fn bucket_keeps_the_rate_for_requests_beyond_the_burst() {
        let mut b = TokenBucket::new(1000, 100, Duration::ZERO);
        let mut now = Duration::ZERO;
        for _ in 0..10 {
            now += b.take(1000, now);
        }
        // 10 000 bytes at 1000/s, less the initial burst.
        assert_eq!(now, Duration::from_millis(9900));
    }

    #[test]
    fn share_yields_to_guests_but_keeps_its_floor() {
        assert_eq!(compaction_share(100, 0, 0.25), 100);
        assert_eq!(compaction_share(100, 60, 0.25), 40);
        assert_eq!(compaction_share(100, 90, 0.25), 25);
        assert_eq!(compaction_share(100, 1000, 0.25), 25);
        assert_eq!(compaction_share(100, 1000, 0.0), 0);
        assert_eq!(compaction_share(100, 1000, 7.0), 100);
    }
}
