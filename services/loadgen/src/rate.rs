//! The producer's adaptive target rate, in the spirit of the OpenMessaging
//! Benchmark: grow while the consumer's p99 is under target and little is in
//! flight, back off when latency is over target or the send backlog (sent
//! minus acknowledged) builds up, always within the configured bounds. Pure:
//! the caller feeds one [`Observation`] per window.

/// Latency at or below this share of the target counts as headroom to grow.
const GROW_BELOW: f64 = 0.8;
/// Latency at or below this share of the target lets the rate grow faster.
const GROW_FAST_BELOW: f64 = 0.5;
const GROW_FACTOR: f64 = 1.10;
const GROW_FAST_FACTOR: f64 = 1.25;
/// Over target, the rate is scaled by target/p99 but never below this...
const BACKOFF_MIN_FACTOR: f64 = 0.5;
/// ...and never above this, so a small overshoot still backs off visibly.
const BACKOFF_MAX_FACTOR: f64 = 0.9;
const BACKLOG_BACKOFF_FACTOR: f64 = 0.7;
/// Backlog worth more than this many seconds of sending means the broker
/// is not keeping up.
const BACKLOG_HIGH_S: f64 = 0.5;
/// Growth needs the backlog under this many seconds of sending.
const BACKLOG_LOW_S: f64 = 0.1;
/// Absolute floors for the backlog thresholds, so that at low rates one
/// linger period's batch does not count as a backlog.
const BACKLOG_HIGH_FLOOR: f64 = 1000.0;
const BACKLOG_LOW_FLOOR: f64 = 100.0;

/// What the controller sees once per window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Consumer p99 end-to-end latency (ms) when fresh; `None` when the
    /// latency file is missing, stale or unreadable.
    pub p99_ms: Option<f64>,
    /// Messages sent but not yet acknowledged (or failed).
    pub backlog: u64,
}

/// Why the rate moved or did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Latency well under target and backlog small.
    Grow,
    /// Latency over target.
    BackOffLatency,
    /// Backlog above its threshold.
    BackOffBacklog,
    /// No fresh latency: hold.
    HoldNoLatency,
    /// Latency near (under) target, or backlog not small enough to grow.
    Hold,
}

/// The outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub rate: f64,
    pub action: Action,
}

/// The adaptive rate state.
#[derive(Debug, Clone)]
pub struct RateController {
    rate: f64,
    min: f64,
    max: f64,
    target_ms: f64,
}

impl RateController {
    /// `initial` is clamped into `min..=max`.
    pub fn new(initial: f64, min: f64, max: f64, target_ms: f64) -> Self {
        Self {
            rate: initial.clamp(min, max),
            min,
            max,
            target_ms,
        }
    }

    /// The current target rate (messages per second).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Decide the next rate from one window's observation.
    pub fn step(&mut self, obs: Observation) -> Step {
        let backlog = obs.backlog as f64;
        let high = (self.rate * BACKLOG_HIGH_S).max(BACKLOG_HIGH_FLOOR);
        let low = (self.rate * BACKLOG_LOW_S).max(BACKLOG_LOW_FLOOR);
        // The backlog is measured here, so it counts even when the latency
        // file is stale: a broker outage stalls both.
        let (factor, action) = if backlog > high {
            (BACKLOG_BACKOFF_FACTOR, Action::BackOffBacklog)
        } else {
            match obs.p99_ms {
                None => (1.0, Action::HoldNoLatency),
                Some(p99) if p99 > self.target_ms => (
                    (self.target_ms / p99).clamp(BACKOFF_MIN_FACTOR, BACKOFF_MAX_FACTOR),
                    Action::BackOffLatency,
                ),
                Some(p99) if backlog <= low && p99 <= self.target_ms * GROW_FAST_BELOW => {
                    (GROW_FAST_FACTOR, Action::Grow)
                }
                Some(p99) if backlog <= low && p99 <= self.target_ms * GROW_BELOW => {
                    (GROW_FACTOR, Action::Grow)
                }
                Some(_) => (1.0, Action::Hold),
            }
        };
        self.rate = (self.rate * factor).clamp(self.min, self.max);
        Step {
            rate: self.rate,
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(p99_ms: Option<f64>, backlog: u64) -> Observation {
        Observation { p99_ms, backlog }
    }

    #[test]
    fn grows_under_target_faster_when_far_under() {
        let mut c = RateController::new(1000.0, 100.0, 150_000.0, 5.0);
        let s = c.step(obs(Some(3.5), 10));
        assert_eq!(s.action, Action::Grow);
        assert!((s.rate - 1100.0).abs() < 1e-6);
        let s = c.step(obs(Some(1.0), 10));
        assert!((s.rate - 1375.0).abs() < 1e-6);
    }

    #[test]
    fn holds_near_target() {
        let mut c = RateController::new(1000.0, 100.0, 150_000.0, 5.0);
        let s = c.step(obs(Some(4.5), 10));
        assert_eq!(
            s,
            Step {
                rate: 1000.0,
                action: Action::Hold
            }
        );
    }

    #[test]
    fn backs_off_over_target_in_proportion() {
        let mut c = RateController::new(1000.0, 100.0, 150_000.0, 5.0);
        // Slightly over: at least 10 % down.
        assert!((c.step(obs(Some(5.2), 0)).rate - 900.0).abs() < 1e-6);
        // 1.6x over: scaled by target/p99.
        assert!((c.step(obs(Some(8.0), 0)).rate - 900.0 * 5.0 / 8.0).abs() < 1e-6);
        // Far over: at most halved.
        let before = c.rate();
        let s = c.step(obs(Some(500.0), 0));
        assert_eq!(s.action, Action::BackOffLatency);
        assert!((s.rate - before * 0.5).abs() < 1e-6);
    }

    #[test]
    fn backs_off_on_backlog_even_when_latency_is_good_or_unknown() {
        let mut c = RateController::new(10_000.0, 100.0, 150_000.0, 5.0);
        // Half a second of sends in flight is the threshold (5000 here).
        assert_eq!(c.step(obs(Some(1.0), 5000)).action, Action::Hold);
        let mut c = RateController::new(10_000.0, 100.0, 150_000.0, 5.0);
        let s = c.step(obs(Some(1.0), 5001));
        assert_eq!(s.action, Action::BackOffBacklog);
        assert!((s.rate - 7000.0).abs() < 1e-6);
        let s = c.step(obs(None, 100_000));
        assert_eq!(s.action, Action::BackOffBacklog);
        // A backlog between the low and high thresholds blocks growth only.
        let mut c = RateController::new(10_000.0, 100.0, 150_000.0, 5.0);
        assert_eq!(c.step(obs(Some(1.0), 2000)).action, Action::Hold);
    }

    #[test]
    fn respects_bounds() {
        let mut c = RateController::new(140_000.0, 100.0, 150_000.0, 5.0);
        for _ in 0..20 {
            c.step(obs(Some(0.1), 0));
        }
        assert_eq!(c.rate(), 150_000.0);
        for _ in 0..50 {
            c.step(obs(Some(1000.0), 0));
        }
        assert_eq!(c.rate(), 100.0);
        assert_eq!(RateController::new(5.0, 100.0, 200.0, 5.0).rate(), 100.0);
        assert_eq!(RateController::new(500.0, 100.0, 200.0, 5.0).rate(), 200.0);
    }

    #[test]
    fn holds_on_stale_or_missing_latency() {
        let mut c = RateController::new(1000.0, 100.0, 150_000.0, 5.0);
        for _ in 0..10 {
            let s = c.step(obs(None, 50));
            assert_eq!(
                s,
                Step {
                    rate: 1000.0,
                    action: Action::HoldNoLatency
                }
            );
        }
    }
}
