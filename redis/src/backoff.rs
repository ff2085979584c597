//! Reconnect delays: doubling from a floor to a ceiling, with up to a quarter
//! of jitter so that the nodes of a cluster do not all knock at once.

use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    /// xorshift state for the jitter.
    seed: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
            seed: seed | 1,
        }
    }

    /// The delay before the next attempt; each call doubles the following one.
    pub fn delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let quarter = base.as_micros() as u64 / 4;
        let jitter = if quarter == 0 { 0 } else { self.seed % quarter };
        base + Duration::from_micros(jitter)
    }

    /// Connected: the next loss starts from the floor again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The log level of a failure to reach Redis: loud for the first of an outage,
/// quiet for the retries after it (`failing` says an outage is under way; the
/// caller clears it once Redis answers again).
pub(crate) fn outage_log_level(failing: &mut bool) -> log::Level {
    if std::mem::replace(failing, true) {
        log::Level::Debug
    } else {
        log::Level::Warn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_ceiling_with_bounded_jitter_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(50), ms(1000), 42);
        let bases = [50, 100, 200, 400, 800, 1000, 1000];
        for base in bases {
            let d = b.delay();
            assert!(
                d >= ms(base) && d <= ms(base) + ms(base) / 4,
                "{d:?} for {base}"
            );
        }
        b.reset();
        let d = b.delay();
        assert!(d >= ms(50) && d <= ms(63), "{d:?}");
    }
}
