//! The global cap on probe requests (`--probe-rate`): a token bucket — pure, the time is
//! passed in, so the tests need no clock.
//!
//! A dozen lines of arithmetic; the ecosystem's limiter (`governor`) would bring eight
//! crates to vet (supply-chain/) and hides its clock behind its own abstraction.

use std::time::{Duration, Instant};

/// `rate` tokens per second, at most `burst` saved up; one request takes one token.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Full at `now`. A rate of 0 is taken as 1 (never a bucket that stays empty).
    pub fn new(rate_per_second: u32, burst: u32, now: Instant) -> Self {
        let rate = f64::from(rate_per_second.max(1));
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// How long until a token is there (zero when one is).
    pub fn until_next(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(b: &mut TokenBucket, now: Instant, tries: usize) -> usize {
        (0..tries).filter(|_| b.try_take(now)).count()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(50, 50, start);
        assert_eq!(taken(&mut b, start, 1000), 50, "the burst");
        assert_eq!(taken(&mut b, start + Duration::from_millis(100), 1000), 5);
        assert_eq!(
            taken(&mut b, start + Duration::from_secs(10), 1000),
            50,
            "saved up to the burst only"
        );
    }

    #[test]
    fn over_any_span_at_most_rate_times_span_plus_burst() {
        let start = Instant::now();
        let mut b = TokenBucket::new(20, 20, start);
        let mut total = 0;
        for ms in (0..=5000).step_by(7) {
            total += taken(&mut b, start + Duration::from_millis(ms), 3);
        }
        assert!(total <= 20 * 5 + 20, "{total}");
        assert!(total >= 20 * 5, "the rate is served: {total}");
    }

    #[test]
    fn the_wait_for_the_next_token() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10, 1, start);
        assert_eq!(b.until_next(start), Duration::ZERO);
        assert!(b.try_take(start));
        let wait = b.until_next(start);
        assert!(
            wait > Duration::from_millis(99) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(b.try_take(start + wait));
    }

    #[test]
    fn time_going_backwards_gives_nothing_extra() {
        let start = Instant::now();
        let later = start + Duration::from_secs(1);
        let mut b = TokenBucket::new(0, 0, later);
        assert!(b.try_take(later));
        assert!(!b.try_take(start), "a rate of 0 is 1/s, burst 1");
    }
}
