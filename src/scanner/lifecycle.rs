//! The device reader's life as a pure state machine: open, read, go offline, back off, reopen.
//!
//! States follow UnifiedPOS: `Closed` (not open), `Claimed` (opened, no read yet), `Enabled`
//! (reads succeed), `Offline` (unplugged or not found, waiting to reopen). The reader thread in
//! `reader` only carries out the `ReaderStep` this machine returns, so every transition, and the
//! capped exponential backoff, is tested here without a device or a clock.

use std::time::Duration;

/// A scanner's state, in the spirit of UnifiedPOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ScannerState {
    Closed,
    Claimed,
    Enabled,
    Offline,
}

impl ScannerState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The first wait before reopening a device that failed.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
/// The longest wait between two attempts to reopen a device.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// When to try reopening a device again: the shared capped doubling, counting failures since
/// the last success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReopenBackoff {
    backoff: crate::backoff::Backoff,
    failures: u32,
}

impl ReopenBackoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            backoff: crate::backoff::Backoff::new(initial, max),
            failures: 0,
        }
    }

    /// The wait before the next attempt; each call doubles the following one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.backoff.after(self.failures)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

impl Default for ReopenBackoff {
    fn default() -> Self {
        Self::new(BACKOFF_INITIAL, BACKOFF_MAX)
    }
}

/// What happened to the reader thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderEvent {
    Started,
    Opened,
    OpenFailed,
    /// A read returned a report or timed out quietly: the device is there.
    ReadSucceeded,
    /// A read failed: the device is gone.
    ReadFailed,
    PauseOver,
    StopRequested,
}

/// What the reader thread must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderStep {
    Open,
    Read,
    Pause(Duration),
    Exit,
}

/// An event the current state does not expect; the reader logs it and stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reader event {event:?} is invalid in state {state:?}")]
pub struct InvalidTransition {
    pub state: ScannerState,
    pub event: ReaderEvent,
}

impl InvalidTransition {
    pub fn kind(&self) -> &'static str {
        "invalid_transition"
    }
}

/// The reader's state and backoff.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    state: ScannerState,
    backoff: ReopenBackoff,
    /// Distinguishes a `Closed` reader that is starting from one that has stopped.
    stopped: bool,
}

impl Lifecycle {
    pub fn new(backoff: ReopenBackoff) -> Self {
        Self {
            state: ScannerState::Closed,
            backoff,
            stopped: false,
        }
    }

    pub fn state(&self) -> ScannerState {
        self.state
    }

    /// Applies `event` and returns what to do next.
    pub fn step(&mut self, event: ReaderEvent) -> Result<ReaderStep, InvalidTransition> {
        use ReaderEvent as E;
        use ScannerState as S;
        if self.stopped {
            return Err(self.invalid(event));
        }
        let (state, step) = match (self.state, event) {
            (_, E::StopRequested) => {
                self.stopped = true;
                (S::Closed, ReaderStep::Exit)
            }
            (S::Closed, E::Started) | (S::Offline, E::PauseOver) => (self.state, ReaderStep::Open),
            (S::Closed | S::Offline, E::Opened) => (S::Claimed, ReaderStep::Read),
            (S::Closed | S::Offline, E::OpenFailed) => {
                (S::Offline, ReaderStep::Pause(self.backoff.next_delay()))
            }
            (S::Claimed | S::Enabled, E::ReadSucceeded) => {
                // Reset only once reads work: a device that opens and then fails at once must
                // not be reopened in a tight loop.
                self.backoff.reset();
                (S::Enabled, ReaderStep::Read)
            }
            (S::Claimed | S::Enabled, E::ReadFailed) => {
                (S::Offline, ReaderStep::Pause(self.backoff.next_delay()))
            }
            (_, event) => return Err(self.invalid(event)),
        };
        self.state = state;
        Ok(step)
    }

    fn invalid(&self, event: ReaderEvent) -> InvalidTransition {
        InvalidTransition {
            state: self.state,
            event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReaderEvent as E;
    use ReaderStep as Step;
    use ScannerState as S;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = ReopenBackoff::new(ms(200), ms(1000));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [200, 400, 800, 1000, 1000, 1000].map(ms));
        b.reset();
        assert_eq!(b.next_delay(), ms(200));
    }

    #[test]
    fn backoff_never_exceeds_its_cap_or_overflows() {
        let mut b = ReopenBackoff::new(Duration::MAX, ms(5));
        assert_eq!(b.next_delay(), ms(5));
        let mut b = ReopenBackoff::new(ms(1), Duration::MAX);
        for _ in 0..200 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::MAX);
    }

    /// Runs `events` from a fresh lifecycle; returns (state after, step) for each.
    fn run(events: &[ReaderEvent]) -> Vec<(ScannerState, ReaderStep)> {
        let mut lc = Lifecycle::new(ReopenBackoff::new(ms(100), ms(400)));
        events
            .iter()
            .map(|&e| {
                let step = lc.step(e).unwrap_or_else(|err| panic!("{err}"));
                (lc.state(), step)
            })
            .collect()
    }

    #[test]
    fn device_present_from_the_start() {
        assert_eq!(
            run(&[E::Started, E::Opened, E::ReadSucceeded, E::ReadSucceeded]),
            vec![
                (S::Closed, Step::Open),
                (S::Claimed, Step::Read),
                (S::Enabled, Step::Read),
                (S::Enabled, Step::Read),
            ]
        );
    }

    #[test]
    fn absent_device_is_offline_and_retried_with_growing_pauses() {
        assert_eq!(
            run(&[
                E::Started,
                E::OpenFailed,
                E::PauseOver,
                E::OpenFailed,
                E::PauseOver,
                E::OpenFailed,
                E::PauseOver,
                E::OpenFailed,
                E::PauseOver,
                E::Opened,
                E::ReadSucceeded,
            ]),
            vec![
                (S::Closed, Step::Open),
                (S::Offline, Step::Pause(ms(100))),
                (S::Offline, Step::Open),
                (S::Offline, Step::Pause(ms(200))),
                (S::Offline, Step::Open),
                (S::Offline, Step::Pause(ms(400))),
                (S::Offline, Step::Open),
                (S::Offline, Step::Pause(ms(400))),
                (S::Offline, Step::Open),
                (S::Claimed, Step::Read),
                (S::Enabled, Step::Read),
            ]
        );
    }

    #[test]
    fn a_failed_read_goes_offline_and_only_a_good_read_restarts_the_backoff() {
        let unplugged = [
            E::Started,
            E::Opened,
            E::ReadSucceeded,
            E::ReadFailed,
            E::PauseOver,
            E::OpenFailed,
            E::PauseOver,
            E::Opened,
            E::ReadSucceeded,
            E::ReadFailed,
        ];
        let failing_right_after_opening = [
            E::Started,
            E::Opened,
            E::ReadFailed,
            E::PauseOver,
            E::Opened,
            E::ReadFailed,
        ];
        for (events, expected) in [
            (
                &unplugged[..],
                &[
                    (3, S::Offline, Step::Pause(ms(100))),
                    (5, S::Offline, Step::Pause(ms(200))),
                    (8, S::Enabled, Step::Read),
                    (9, S::Offline, Step::Pause(ms(100))),
                ][..],
            ),
            (
                &failing_right_after_opening,
                &[
                    (2, S::Offline, Step::Pause(ms(100))),
                    (5, S::Offline, Step::Pause(ms(200))),
                ],
            ),
        ] {
            let steps = run(events);
            for &(i, state, step) in expected {
                assert_eq!(steps[i], (state, step), "{events:?}, step {i}");
            }
        }
    }

    #[test]
    fn stop_closes_from_every_state_and_nothing_follows() {
        for prefix in [
            &[E::Started][..],
            &[E::Started, E::Opened],
            &[E::Started, E::Opened, E::ReadSucceeded],
            &[E::Started, E::OpenFailed],
        ] {
            let mut lc = Lifecycle::new(ReopenBackoff::default());
            for &e in prefix {
                lc.step(e).unwrap();
            }
            assert_eq!(lc.step(E::StopRequested), Ok(Step::Exit));
            assert_eq!(lc.state(), S::Closed);
            assert!(lc.step(E::Started).is_err(), "stopped for good");
        }
    }

    #[test]
    fn unexpected_events_are_invalid_transitions() {
        let mut lc = Lifecycle::new(ReopenBackoff::default());
        let err = lc.step(E::ReadSucceeded).unwrap_err();
        assert_eq!(
            err,
            InvalidTransition {
                state: S::Closed,
                event: E::ReadSucceeded
            }
        );
        assert_eq!(err.kind(), "invalid_transition");
        lc.step(E::Started).unwrap();
        lc.step(E::Opened).unwrap();
        assert!(lc.step(E::PauseOver).is_err());
        assert!(lc.step(E::Opened).is_err());
        assert_eq!(lc.state(), S::Claimed, "an invalid event changes nothing");
    }
}
