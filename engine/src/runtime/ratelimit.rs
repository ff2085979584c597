//! Per-connection rate limits: token buckets for messages and bytes received,
//! charged as they arrive and refilled from the worker's clock (the time the
//! backend last passed in). Past a limit the connection either stops being
//! read until its tokens are back, or is closed with 1008.
//!
//! Pausing: frames are parsed only while a message token (and no byte debt)
//! is left; the rest of the read is held by the connection, the worker asks
//! the backend to stop reading the socket, and once the tokens are back it
//! parses what it held and resumes the socket. So the handler never sees more
//! than the limit allows, and nothing is lost.
//!
//! A connection without a limit has no state here: the limiter sits behind the
//! pointer the connection keeps for its open phase.

use crate::types::{RateLimit, RateLimitPolicy, TokenBucket};

/// Tokens are kept in thousandths, so that a refill after any number of
/// milliseconds loses nothing: `per_second` thousandths come back per ms.
const MILLI: i64 = 1000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Thousandths of a token returned per millisecond (= tokens per second).
    rate: i64,
    /// Most thousandths kept.
    cap: i64,
    /// Thousandths now; negative while in debt.
    tokens: i64,
}

impl Bucket {
    fn new(bucket: TokenBucket) -> Self {
        // Validated to at most 2^40, so these products fit an i64.
        let cap = bucket.burst as i64 * MILLI;
        Self {
            rate: bucket.per_second as i64,
            cap,
            tokens: cap,
        }
    }

    fn refill(&mut self, elapsed_ms: u64) {
        let back = (elapsed_ms.min(1 << 20) as i64).saturating_mul(self.rate);
        self.tokens = self.tokens.saturating_add(back).min(self.cap);
    }

    /// Spends `count` tokens; false if that leaves the bucket in debt.
    fn spend(&mut self, count: u64) -> bool {
        let cost = (count.min(1 << 40) as i64) * MILLI;
        self.tokens = self.tokens.saturating_sub(cost);
        self.tokens >= 0
    }

    /// Milliseconds until the bucket holds `want` thousandths (0 if it does).
    fn wait_ms(&self, want: i64) -> u64 {
        let missing = want.saturating_sub(self.tokens);
        if missing <= 0 {
            0
        } else {
            (missing as u64).div_ceil(self.rate as u64)
        }
    }
}

/// What a charge found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on (under the pause policy, [`Limiter::hold`] decides when to stop).
    Within,
    /// Past it under [`RateLimitPolicy::Close`]: close with 1008 (first time).
    Close,
    /// The limit was passed earlier under the close policy: discard.
    Discard,
}

/// One connection's buckets.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
    policy: RateLimitPolicy,
    /// Worker time (ms) of the last refill.
    last_ms: u64,
    /// Reading is paused until the buckets are out of debt.
    paused: bool,
    /// The close policy fired.
    tripped: bool,
}

impl Limiter {
    /// The limiter of a connection opened at `now_ms`, or `None` for no limit.
    pub fn new(limit: &RateLimit, now_ms: u64) -> Option<Self> {
        if limit.is_none() {
            return None;
        }
        Some(Self {
            messages: limit.messages.map(Bucket::new),
            bytes: limit.bytes.map(Bucket::new),
            policy: limit.policy,
            last_ms: now_ms,
            paused: false,
            tripped: false,
        })
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if elapsed == 0 {
            return;
        }
        self.last_ms = now_ms;
        for bucket in [&mut self.messages, &mut self.bytes].into_iter().flatten() {
            bucket.refill(elapsed);
        }
    }

    /// One data message arrived.
    pub fn message(&mut self, now_ms: u64) -> Verdict {
        self.charge(now_ms, |l| l.messages.as_mut().is_none_or(|b| b.spend(1)))
    }

    /// `count` bytes were read.
    pub fn bytes(&mut self, now_ms: u64, count: usize) -> Verdict {
        self.charge(now_ms, |l| {
            l.bytes.as_mut().is_none_or(|b| b.spend(count as u64))
        })
    }

    fn charge(&mut self, now_ms: u64, spend: impl FnOnce(&mut Self) -> bool) -> Verdict {
        if self.tripped {
            return Verdict::Discard;
        }
        self.refill(now_ms);
        if spend(self) || self.policy == RateLimitPolicy::Pause {
            return Verdict::Within;
        }
        self.tripped = true;
        Verdict::Close
    }

    /// Under the pause policy, before the next frame: true if parsing must
    /// stop here (no message token left, or bytes in debt); the connection is
    /// then paused, and `newly` says whether it was not already.
    pub fn hold(&mut self, now_ms: u64) -> Option<bool> {
        if self.policy != RateLimitPolicy::Pause {
            return None;
        }
        self.refill(now_ms);
        if self.wait_ms() == 0 {
            return None;
        }
        Some(!std::mem::replace(&mut self.paused, true))
    }

    /// Milliseconds until a message token is back and no bytes are owed.
    fn wait_ms(&self) -> u64 {
        let messages = self.messages.map_or(0, |b| b.wait_ms(MILLI));
        let bytes = self.bytes.map_or(0, |b| b.wait_ms(0));
        messages.max(bytes)
    }

    /// At `now_ms`: `None` if a paused connection may be read again (it is
    /// then no longer paused), else the milliseconds left until it may.
    pub fn resume_after(&mut self, now_ms: u64) -> Option<u64> {
        self.refill(now_ms);
        match self.wait_ms() {
            0 => {
                self.paused = false;
                None
            }
            wait => Some(wait),
        }
    }
}

/// A limiter as another process takes it over (a live hand-over): each
/// bucket's rate, capacity and tokens (thousandths), the policy and whether
/// it tripped; the refill clock is the new worker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CarriedLimiter {
    /// `[rate, cap, tokens]` of the message and the byte bucket.
    pub messages: Option<[i64; 3]>,
    pub bytes: Option<[i64; 3]>,
    pub close_policy: bool,
    pub tripped: bool,
}

/// The most a carried bucket's numbers may be (a validated limit's bound).
const CARRIED_MAX: i64 = (1 << 40) * MILLI;

impl Limiter {
    /// Its state at `now_ms`, for another process. Paused or not: whether
    /// it is paused follows from the tokens, and the new process's decoder
    /// asks again ([`Self::hold`]) before it parses what the connection
    /// held back, as this one would have when it resumed.
    pub fn carry(&mut self, now_ms: u64) -> CarriedLimiter {
        self.refill(now_ms);
        let bucket = |b: &Bucket| [b.rate, b.cap, b.tokens];
        CarriedLimiter {
            messages: self.messages.as_ref().map(bucket),
            bytes: self.bytes.as_ref().map(bucket),
            close_policy: self.policy == RateLimitPolicy::Close,
            tripped: self.tripped,
        }
    }

    /// The limiter another process carried over, refilled from `now_ms`;
    /// `None` if its numbers are out of range (never from a valid limit).
    pub fn carried(state: CarriedLimiter, now_ms: u64) -> Option<Self> {
        let bucket = |b: Option<[i64; 3]>| -> Result<Option<Bucket>, ()> {
            match b {
                None => Ok(None),
                Some([rate, cap, tokens])
                    if (1..=CARRIED_MAX).contains(&rate)
                        && (0..=CARRIED_MAX).contains(&cap)
                        && (-CARRIED_MAX..=cap).contains(&tokens) =>
                {
                    Ok(Some(Bucket { rate, cap, tokens }))
                }
                Some(_) => Err(()),
            }
        };
        Some(Self {
            messages: bucket(state.messages).ok()?,
            bytes: bucket(state.bytes).ok()?,
            policy: if state.close_policy {
                RateLimitPolicy::Close
            } else {
                RateLimitPolicy::Pause
            },
            last_ms: now_ms,
            paused: false,
            tripped: state.tripped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limit = RateLimit::none().messages(10, 3);
        let mut l = Limiter::new(&limit, 0).unwrap();
        for _ in 0..3 {
            assert_eq!(l.hold(0), None);
            assert_eq!(l.message(0), Verdict::Within);
        }
        assert_eq!(l.hold(0), Some(true), "the burst is spent");
        assert_eq!(l.hold(0), Some(false), "already paused");
        // One token at 10/s: 100 ms.
        assert_eq!(l.resume_after(0), Some(100));
        assert_eq!(l.resume_after(60), Some(40));
        assert_eq!(l.resume_after(100), None);
        assert!(!l.paused());
        assert_eq!(l.hold(100), None);
        assert_eq!(l.message(100), Verdict::Within);
        assert_eq!(l.hold(100), Some(true));
    }

    #[test]
    fn bytes_in_debt_hold_until_repaid() {
        let limit = RateLimit::none().bytes(1000, 100);
        let mut l = Limiter::new(&limit, 0).unwrap();
        assert_eq!(l.bytes(0, 600), Verdict::Within);
        assert_eq!(l.hold(0), Some(true));
        assert_eq!(l.resume_after(400), Some(100));
        assert_eq!(l.resume_after(500), None);
    }

    #[test]
    fn bytes_and_the_close_policy() {
        let limit = RateLimit::none()
            .bytes(1000, 1500)
            .policy(RateLimitPolicy::Close);
        let mut l = Limiter::new(&limit, 5).unwrap();
        assert_eq!(l.bytes(5, 1500), Verdict::Within);
        assert_eq!(l.bytes(6, 2), Verdict::Close, "one byte back after 1 ms");
        assert_eq!(l.bytes(10_000, 1), Verdict::Discard, "tripped for good");
        assert_eq!(l.message(10_000), Verdict::Discard);
    }

    #[test]
    fn a_carried_limiter_keeps_its_tokens() {
        let limit = RateLimit::none().messages(10, 3);
        let mut l = Limiter::new(&limit, 0).unwrap();
        assert_eq!(l.message(0), Verdict::Within);
        assert_eq!(l.message(0), Verdict::Within);
        let state = l.carry(0);
        // Another worker whose clock reads 5,000 ms: one token left, not three.
        let mut m = Limiter::carried(state, 5_000).unwrap();
        assert_eq!(m.hold(5_000), None);
        assert_eq!(m.message(5_000), Verdict::Within);
        assert_eq!(m.hold(5_000), Some(true));
        let mut bad = state;
        bad.messages = Some([0, 1, 1]);
        assert!(Limiter::carried(bad, 0).is_none(), "a zero rate is refused");
    }

    #[test]
    fn a_paused_limiter_goes_and_pauses_again_until_its_tokens_are_back() {
        let limit = RateLimit::none().messages(10, 1);
        let mut l = Limiter::new(&limit, 0).unwrap();
        assert_eq!(l.message(0), Verdict::Within);
        assert_eq!(l.hold(0), Some(true), "paused: what it reads is held");
        // Carried 40 ms later; the new worker's clock reads 1,000 ms.
        let mut m = Limiter::carried(l.carry(40), 1_000).unwrap();
        assert_eq!(m.hold(1_000), Some(true), "still spent: paused again");
        assert_eq!(m.resume_after(1_000), Some(60));
        assert_eq!(m.resume_after(1_060), None);
    }

    #[test]
    fn a_long_silence_refills_only_to_the_burst() {
        let limit = RateLimit::none().messages(1_000_000, 2);
        let mut l = Limiter::new(&limit, 0).unwrap();
        assert_eq!(l.message(u64::MAX / 2), Verdict::Within);
        assert_eq!(l.message(u64::MAX / 2), Verdict::Within);
        assert_eq!(l.hold(u64::MAX / 2), Some(true));
        assert!(Limiter::new(&RateLimit::none(), 0).is_none());
    }
}
