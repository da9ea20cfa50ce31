//! The arithmetic of Kafka's client quotas, with time passed in as milliseconds: the sampled
//! rate that byte-rate and request quotas measure, the throttle time a violation earns, and
//! the token bucket of controller mutation quotas.
//!
//! [`SampledRate`] is Kafka's `Rate` over a `WindowedSum` (`SampledStat`): `samples + 1`
//! windows of `window_ms` each (the extra one overlaps the start of the monitored span). A
//! value recorded at `now`:
//! 1. goes into the current window, or into a new one (the oldest slot, reset) when the
//!    current window started `window_ms` or more ago;
//! 2. the rate is then the sum of every window whose last event is younger than
//!    `samples * window_ms`, divided by the elapsed span: from the oldest kept window's start
//!    to `now`, but never less than `samples - 1` whole windows (so one burst right after a
//!    quiet period does not read as an enormous rate), and never less than 1 ms;
//! 3. over the bound, the throttle time is `(rate - bound) / bound * span`: the time after
//!    which, recording nothing more, the rate over the same span falls back to the bound.
//!
//! [`TokenBucket`] is Kafka's `TokenBucket`: it refills at `bound` per second up to a burst of
//! `samples * window_s * bound`, each mutation takes its permits, and a bucket below zero is a
//! violation whose throttle time is the time to refill to zero, `-tokens / bound` seconds.
//!
//! Pure values: the callers (`super::manager`) hold them under their own lock.

/// The shape of the sampled windows: Kafka's `quota.window.num` and `quota.window.size.seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowConfig {
    /// Windows kept (`quota.window.num`, Kafka's default 11).
    pub(crate) samples: u32,
    /// Length of one window in ms (`quota.window.size.seconds` × 1000, Kafka's default 1 s).
    pub(crate) window_ms: u64,
}

impl WindowConfig {
    /// The broker's `quota.window.num` and `quota.window.size.seconds`.
    pub(crate) fn of(config: &crate::config::BrokerConfig) -> Self {
        Self { samples: config.quota_window_num, window_ms: u64::from(config.quota_window_size_seconds) * 1_000 }
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self { samples: 11, window_ms: 1_000 }
    }
}

/// One window of a [`SampledRate`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    start_ms: u64,
    last_event_ms: u64,
    value: f64,
}

impl Sample {
    fn new(now_ms: u64) -> Self {
        Self { start_ms: now_ms, last_event_ms: now_ms, value: 0.0 }
    }
}

/// Kafka's `Rate` over a `WindowedSum`, per second.
#[derive(Debug, Clone)]
pub(crate) struct SampledRate {
    config: WindowConfig,
    /// At most `samples + 1` windows, reused in a ring.
    samples: Vec<Sample>,
    current: usize,
}

impl SampledRate {
    /// An empty rate; its first window opens at the first record or measure.
    pub(crate) fn new(config: WindowConfig) -> Self {
        assert!(config.samples >= 1 && config.window_ms >= 1, "quota windows were validated at startup");
        Self { config, samples: Vec::with_capacity(config.samples as usize + 1), current: 0 }
    }

    /// Step 1: adds `value` (negative to take back what was recorded) at `now_ms`.
    pub(crate) fn record(&mut self, value: f64, now_ms: u64) {
        if self.samples.is_empty() {
            self.samples.push(Sample::new(now_ms));
        }
        let window_ms = self.config.window_ms;
        if now_ms.saturating_sub(self.samples[self.current].start_ms) >= window_ms {
            self.current = (self.current + 1) % (self.config.samples as usize + 1);
            if self.current >= self.samples.len() {
                self.samples.push(Sample::new(now_ms));
            } else {
                self.samples[self.current] = Sample::new(now_ms);
            }
        }
        let sample = &mut self.samples[self.current];
        sample.value += value;
        sample.last_event_ms = now_ms;
    }

    /// Step 2: the rate per second at `now_ms`.
    pub(crate) fn measure(&mut self, now_ms: u64) -> f64 {
        self.purge(now_ms);
        let total: f64 = self.samples.iter().map(|sample| sample.value).sum();
        total / (self.window_span_ms(now_ms) as f64 / 1_000.0)
    }

    /// Step 2's span in ms at `now_ms`: Kafka's `Rate.windowSize`.
    pub(crate) fn window_span_ms(&mut self, now_ms: u64) -> u64 {
        self.purge(now_ms);
        let oldest_start = self.samples.iter().map(|sample| sample.start_ms).min().unwrap_or(now_ms);
        let mut elapsed_ms = now_ms.saturating_sub(oldest_start);
        let full_windows = elapsed_ms / self.config.window_ms;
        let full_windows_min = u64::from(self.config.samples - 1);
        if full_windows < full_windows_min {
            elapsed_ms += (full_windows_min - full_windows) * self.config.window_ms;
        }
        elapsed_ms.max(1)
    }

    /// Records `value` at `now_ms` and checks the rate against `bound`: the throttle time in
    /// ms (step 3), 0 when within it. Kafka's `Sensor.record(value, now, checkQuotas = true)`
    /// followed by `QuotaUtils.throttleTime`.
    pub(crate) fn record_and_throttle_ms(&mut self, value: f64, now_ms: u64, bound: f64) -> u64 {
        self.record(value, now_ms);
        let rate = self.measure(now_ms);
        if rate <= bound {
            return 0;
        }
        throttle_ms(rate, bound, self.window_span_ms(now_ms))
    }

    /// Windows whose last event is `samples * window_ms` old or older start afresh at `now_ms`.
    fn purge(&mut self, now_ms: u64) {
        let expire_age_ms = u64::from(self.config.samples) * self.config.window_ms;
        for sample in &mut self.samples {
            if now_ms.saturating_sub(sample.last_event_ms) >= expire_age_ms {
                *sample = Sample::new(now_ms);
            }
        }
    }
}

/// Kafka's `QuotaUtils.throttleTime`: how long to wait until a `rate` measured over `span_ms`
/// falls back to `bound`, rounded to the nearest ms.
pub(crate) fn throttle_ms(rate: f64, bound: f64, span_ms: u64) -> u64 {
    let difference = rate - bound;
    let throttle = difference / bound * span_ms as f64;
    if throttle.is_finite() && throttle > 0.0 { throttle.round() as u64 } else { 0 }
}

/// Kafka's `TokenBucket` for controller mutations, per second.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    config: WindowConfig,
    tokens: f64,
    /// `None` before the first use: the bucket starts full, as Kafka's does (it refills from
    /// time 0).
    last_update_ms: Option<u64>,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(config: WindowConfig) -> Self {
        Self { config, tokens: 0.0, last_update_ms: None }
    }

    fn burst(&self, bound: f64) -> f64 {
        f64::from(self.config.samples) * (self.config.window_ms as f64 / 1_000.0) * bound
    }

    /// The tokens at `now_ms` for a quota of `bound` permits per second.
    pub(crate) fn measure(&mut self, now_ms: u64, bound: f64) -> f64 {
        let burst = self.burst(bound);
        self.tokens = match self.last_update_ms {
            None => burst,
            Some(last_ms) => (self.tokens + bound * (now_ms.saturating_sub(last_ms) as f64 / 1_000.0)).min(burst),
        };
        self.last_update_ms = Some(now_ms);
        self.tokens
    }

    /// Takes `permits` at `now_ms`.
    pub(crate) fn record(&mut self, permits: f64, now_ms: u64, bound: f64) {
        let burst = self.burst(bound);
        self.tokens = (self.measure(now_ms, bound) - permits).min(burst);
    }

    /// The throttle time at `now_ms`: Kafka's `round(-tokens / bound * 1000)` while the bucket
    /// is below zero, else 0.
    pub(crate) fn throttle_ms(&mut self, now_ms: u64, bound: f64) -> u64 {
        let tokens = self.measure(now_ms, bound);
        if tokens < 0.0 { (-tokens / bound * 1_000.0).round() as u64 } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KAFKA_DEFAULT: WindowConfig = WindowConfig { samples: 11, window_ms: 1_000 };

    #[test]
    fn a_first_burst_is_spread_over_samples_minus_one_windows() {
        let mut rate = SampledRate::new(KAFKA_DEFAULT);
        rate.record(10_000.0, 0);
        // 10 whole windows are assumed: 10,000 bytes over 10 s.
        assert_eq!(rate.window_span_ms(0), 10_000);
        assert!((rate.measure(0) - 1_000.0).abs() < 1e-9);
    }

    #[test]
    fn the_throttle_time_is_kafkas_formula() {
        let mut rate = SampledRate::new(KAFKA_DEFAULT);
        // 20,000 bytes at t=0 against a 1,000 B/s quota: rate 2,000 B/s over a 10 s span, so
        // (2000 - 1000) / 1000 * 10,000 ms = 10,000 ms.
        assert_eq!(rate.record_and_throttle_ms(20_000.0, 0, 1_000.0), 10_000);
        // Within the quota: no throttle.
        let mut calm = SampledRate::new(KAFKA_DEFAULT);
        assert_eq!(calm.record_and_throttle_ms(5_000.0, 0, 1_000.0), 0);
        assert_eq!(throttle_ms(1_500.0, 1_000.0, 11_000), 5_500);
    }

    #[test]
    fn windows_older_than_the_monitored_span_are_forgotten() {
        let mut rate = SampledRate::new(KAFKA_DEFAULT);
        rate.record(50_000.0, 0);
        // 11 windows of 1 s: at t=11 s the first window's last event is 11 s old.
        assert!(rate.measure(10_999) > 0.0);
        assert!(rate.measure(11_000).abs() < 1e-9);
    }

    #[test]
    fn a_steady_rate_over_many_windows_measures_itself() {
        let mut rate = SampledRate::new(KAFKA_DEFAULT);
        for tick in 0..300u64 {
            rate.record(100.0, tick * 100);
        }
        // 1,000 B/s for 30 s: the 11 windows kept hold 11,000 bytes over 11 s.
        let measured = rate.measure(29_999);
        assert!((measured - 1_000.0).abs() < 1.0, "measured {measured}");
        // Over the first 10 s the span is padded to 11 windows: Kafka reads 909 B/s there.
        let mut early = SampledRate::new(KAFKA_DEFAULT);
        for tick in 0..100u64 {
            early.record(100.0, tick * 100);
        }
        let measured = early.measure(9_999);
        assert!((measured - 10_000.0 / 10.999).abs() < 1e-6, "measured {measured}");
    }

    #[test]
    fn unrecording_takes_back_a_value() {
        let mut rate = SampledRate::new(KAFKA_DEFAULT);
        rate.record(4_000.0, 500);
        rate.record(-4_000.0, 500);
        assert!(rate.measure(600).abs() < 1e-9);
    }

    #[test]
    fn the_token_bucket_starts_full_and_throttles_below_zero() {
        let mut bucket = TokenBucket::new(KAFKA_DEFAULT);
        // A quota of 2 mutations/s: a burst of 11 * 1 * 2 = 22 permits.
        assert!((bucket.measure(0, 2.0) - 22.0).abs() < 1e-9);
        bucket.record(30.0, 0, 2.0);
        // -8 tokens at 2/s: 4 s to refill to zero.
        assert_eq!(bucket.throttle_ms(0, 2.0), 4_000);
        assert_eq!(bucket.throttle_ms(1_000, 2.0), 3_000);
        assert_eq!(bucket.throttle_ms(4_000, 2.0), 0);
        // Refill stops at the burst.
        assert!((bucket.measure(100_000, 2.0) - 22.0).abs() < 1e-9);
    }
}
