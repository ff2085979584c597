//! Abuse budgets: token buckets refilled from the caller's clock. HTTP/2
//! lets a peer make the server work, or answer, for frames that carry
//! nothing: resets (CVE-2023-44487 "rapid reset", CVE-2025-8671
//! "MadeYouReset", where the peer provokes our own resets), and SETTINGS,
//! PING, empty frames, PRIORITY and WINDOW_UPDATE floods (CVE-2019-9512,
//! -9515, -9518). Each such frame takes a token; a peer past its budget is
//! sent GOAWAY(ENHANCE_YOUR_CALM). Fixed size, no allocation.

/// A token bucket of `rate` tokens per second with a burst of `rate`.
/// Tokens are kept in thousandths so that a refill every millisecond counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    /// Thousandths of a token.
    milli: u64,
    rate: u32,
    last_ms: u64,
}

impl Bucket {
    /// A full bucket. A rate of 0 disables the budget (every take succeeds):
    /// a configuration's explicit choice, never a default.
    pub(crate) fn new(rate: u32) -> Self {
        Self {
            milli: u64::from(rate) * 1000,
            rate,
            last_ms: 0,
        }
    }

    /// Takes one token at `now_ms`; false when the budget is spent. A clock
    /// that goes back refills nothing (and does not move `last_ms` back).
    pub(crate) fn take(&mut self, now_ms: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let cap = u64::from(self.rate) * 1000;
        if now_ms > self.last_ms {
            let elapsed = now_ms - self.last_ms;
            self.milli = self
                .milli
                .saturating_add(elapsed.saturating_mul(u64::from(self.rate)))
                .min(cap);
            self.last_ms = now_ms;
        }
        if self.milli < 1000 {
            return false;
        }
        self.milli -= 1000;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Bucket;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let mut b = Bucket::new(10);
        assert!((0..10).all(|_| b.take(0)));
        assert!(!b.take(0));
        // 100 ms at 10/s: one token.
        assert!(b.take(100));
        assert!(!b.take(100));
        // A clock going back refills nothing.
        assert!(!b.take(50));
        // A long pause refills no more than the burst.
        assert!((0..10).all(|_| b.take(10_000)));
        assert!(!b.take(10_000));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut b = Bucket::new(0);
        assert!((0..10_000).all(|_| b.take(0)));
    }
}
