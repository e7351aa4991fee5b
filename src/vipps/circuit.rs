//! The circuit breaker in front of Vipps: after `failure_threshold` consecutive failures it fails
//! fast for `cool_down`, so lanes can tell the cashier at once instead of waiting out retries;
//! then it lets one probe through (half-open) and closes when the probe succeeds.
//!
//! It is a pure state machine: every method takes `now`. What counts as a failure is decided by
//! the caller (see `vipps::actor`): connection errors and timeouts, and calls whose retries ran
//! out. What must stay true: at most one probe is in flight while half-open; a probe that never
//! reports back (its caller gave up) is replaced after `probe_timeout`.

use std::time::Duration;

use tokio::time::Instant;

/// The breaker's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a probe.
    pub cool_down: Duration,
    /// How long a probe may take before another is allowed.
    pub probe_timeout: Duration,
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_deadline: Instant },
}

/// How a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Normal,
    /// The one request that tests whether Vipps is back.
    Probe,
}

/// What a finished attempt tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Vipps answered (success or a final 4xx): it is up.
    Success,
    /// Vipps could not be reached or kept failing.
    Failure,
    /// Says nothing either way (a retryable status mid-retries).
    Neutral,
}

#[derive(Debug, Clone)]
pub struct Circuit {
    settings: CircuitSettings,
    state: CircuitState,
}

impl Circuit {
    pub fn new(settings: CircuitSettings) -> Self {
        Circuit {
            settings,
            state: CircuitState::Closed { failures: 0 },
        }
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// Whether calls fail fast now (open, or half-open with the probe out).
    pub fn is_open(&self) -> bool {
        !matches!(self.state, CircuitState::Closed { .. })
    }

    /// How long until a request may try, without letting one through (a peek at `admit`).
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        match self.state {
            CircuitState::Closed { .. } => None,
            CircuitState::Open { until } => (now < until).then(|| until - now),
            CircuitState::HalfOpen { probe_deadline } => {
                (now < probe_deadline).then(|| probe_deadline - now)
            }
        }
    }

    /// Lets a request through, or says how long until one may try.
    pub fn admit(&mut self, now: Instant) -> Result<Admission, Duration> {
        match self.state {
            CircuitState::Closed { .. } => Ok(Admission::Normal),
            CircuitState::Open { until } if now < until => Err(until - now),
            CircuitState::HalfOpen { probe_deadline } if now < probe_deadline => {
                Err(probe_deadline - now)
            }
            CircuitState::Open { .. } | CircuitState::HalfOpen { .. } => {
                self.state = CircuitState::HalfOpen {
                    probe_deadline: now + self.settings.probe_timeout,
                };
                Ok(Admission::Probe)
            }
        }
    }

    /// A probe that was admitted but not sent (its caller could not wait): let the next request
    /// probe at once.
    pub fn abandon_probe(&mut self, now: Instant) {
        if let CircuitState::HalfOpen { .. } = self.state {
            self.state = CircuitState::Open { until: now };
        }
    }

    /// Records an outcome; returns the new state when it changed between closed and not.
    pub fn record(&mut self, outcome: Outcome, now: Instant) -> Option<CircuitState> {
        let was_open = self.is_open();
        self.state = match (self.state, outcome) {
            (_, Outcome::Neutral) => self.state,
            (CircuitState::Closed { .. }, Outcome::Success) => CircuitState::Closed { failures: 0 },
            (CircuitState::Closed { failures }, Outcome::Failure) => {
                let failures = failures.saturating_add(1);
                if failures >= self.settings.failure_threshold {
                    CircuitState::Open {
                        until: now + self.settings.cool_down,
                    }
                } else {
                    CircuitState::Closed { failures }
                }
            }
            // A straggler sent before the circuit opened says little about Vipps now.
            (CircuitState::Open { .. }, _) => self.state,
            (CircuitState::HalfOpen { .. }, Outcome::Success) => {
                CircuitState::Closed { failures: 0 }
            }
            (CircuitState::HalfOpen { .. }, Outcome::Failure) => CircuitState::Open {
                until: now + self.settings.cool_down,
            },
        };
        (was_open != self.is_open()).then_some(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit() -> Circuit {
        Circuit::new(CircuitSettings {
            failure_threshold: 3,
            cool_down: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(2),
        })
    }

    /// A circuit that three failures at `now` opened.
    fn opened(now: Instant) -> Circuit {
        let mut c = circuit();
        for _ in 0..3 {
            c.record(Outcome::Failure, now);
        }
        c
    }

    /// A circuit that failures opened, at the end of its cool-down, with its one probe admitted.
    fn probing() -> (Circuit, Instant) {
        let now = Instant::now();
        let mut c = opened(now);
        let later = now + Duration::from_secs(10);
        assert_eq!(c.admit(later), Ok(Admission::Probe));
        (c, later)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let now = Instant::now();
        let mut c = circuit();
        c.record(Outcome::Failure, now);
        c.record(Outcome::Failure, now);
        c.record(Outcome::Success, now);
        c.record(Outcome::Failure, now);
        c.record(Outcome::Neutral, now);
        c.record(Outcome::Failure, now);
        assert_eq!(c.admit(now), Ok(Admission::Normal));
        let changed = c.record(Outcome::Failure, now);
        assert_eq!(
            changed,
            Some(CircuitState::Open {
                until: now + Duration::from_secs(10)
            })
        );
        assert_eq!(c.admit(now), Err(Duration::from_secs(10)));
        assert_eq!(c.retry_in(now), Some(Duration::from_secs(10)));
        assert_eq!(c.retry_in(now + Duration::from_secs(10)), None);
    }

    #[test]
    fn half_open_lets_one_probe_and_closes_on_success() {
        let (mut c, later) = probing();
        assert!(c.admit(later).is_err(), "only one probe at a time");
        assert!(c.is_open());
        assert_eq!(
            c.record(Outcome::Success, later),
            Some(CircuitState::Closed { failures: 0 })
        );
        assert_eq!(c.admit(later), Ok(Admission::Normal));
    }

    #[test]
    fn a_failed_probe_reopens_and_a_lost_probe_is_replaced() {
        let (mut c, t1) = probing();
        assert_eq!(c.record(Outcome::Failure, t1), None);
        assert_eq!(c.admit(t1), Err(Duration::from_secs(10)));

        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(c.admit(t2), Ok(Admission::Probe));
        // Its caller vanished: after probe_timeout another request probes.
        assert!(c.admit(t2 + Duration::from_secs(1)).is_err());
        assert_eq!(c.admit(t2 + Duration::from_secs(2)), Ok(Admission::Probe));
        c.abandon_probe(t2 + Duration::from_secs(2));
        assert_eq!(c.admit(t2 + Duration::from_secs(2)), Ok(Admission::Probe));
    }

    #[test]
    fn stragglers_do_not_close_an_open_circuit() {
        let now = Instant::now();
        let mut c = opened(now);
        assert_eq!(c.record(Outcome::Success, now), None);
        assert!(c.admit(now).is_err());
    }
}
