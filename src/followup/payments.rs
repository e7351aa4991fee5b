//! Payments no lane follows any more but Vipps may still come to hold.
//!
//! A create whose answer was lost and whose read-back found nothing ends its session with "the
//! payment request did not reach Vipps": the cashier takes another payment method. Yet the
//! request may still be processed late (it sat in a connection or a gateway). Such a reference
//! stays `REQUESTED` in the payments index after its session closed. Every `interval` each one
//! younger than `window` is read back: one that appears is cancelled (the customer paid
//! otherwise) and recorded; one still unknown when `window` has passed is marked
//! `NOT_CREATED`. So a payment Vipps knows of is never left behind, across restarts too.
//!
//! Vipps answers the same 4xx again for a key it refused, so each state the payment is seen in
//! gets its own cancel key ([`KeyedOperation::LateCancel`]), tried until Vipps answers it; a
//! refused one (the customer was approving right then) waits for the payment to move on instead
//! of spending its rate limit.
//!
//! This module is the watch's pure core: [`step`] decides, [`runner`] reads the payments index,
//! calls Vipps and records what [`step`] says.
//!
//! [`KeyedOperation::LateCancel`]: crate::session::KeyedOperation::LateCancel

pub mod runner;

use std::collections::HashSet;
use std::time::Duration;

pub use runner::{Watch, WatchSettings, spawn};

use super::Now;
use crate::store::{PaymentIndexState, PaymentRecord};
use crate::vipps::models::{Aggregate, PaymentState};

/// One unconfirmed payment as the watch sees it.
#[derive(Debug, Clone, Copy)]
pub struct Unconfirmed<'a> {
    pub payment: &'a PaymentRecord,
    /// The states Vipps refused to cancel it in.
    pub refused_in: &'a HashSet<PaymentState>,
    /// How long after its request a payment Vipps does not know is given up.
    pub window: Duration,
}

/// What the watch learns; each one is fed to [`step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A sweep reached the payment: nothing asked yet.
    Due,
    /// Vipps knows the payment (read back).
    Found {
        state: PaymentState,
        aggregate: Aggregate,
    },
    /// Vipps does not know the reference (404).
    NotFound,
    /// The read-back failed otherwise: the next sweep reads again.
    ReadFailed,
    /// Vipps answered the cancel.
    Cancelled {
        state: PaymentState,
        aggregate: Aggregate,
    },
    /// Vipps refused the cancel of the payment in `seen_in` for good (a 4xx not worth repeating).
    CancelRefused { seen_in: PaymentState },
    /// The cancel failed otherwise (or its key could not be stored): the next sweep tries again.
    CancelFailed,
}

/// What the runner does for [`step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read the payment back at Vipps.
    ReadBack,
    /// Cancel it in full with the key of the state it was seen in, stored first.
    Cancel { seen_in: PaymentState },
    /// Update the payments index (amounts from the aggregate, if any).
    Record {
        state: PaymentIndexState,
        aggregate: Option<Aggregate>,
    },
    /// Remember that Vipps refused the cancel in this state, until the payment moves on.
    RememberRefused(PaymentState),
}

/// The watch's decision about one payment given what it just learnt, at `now`.
pub fn step(row: Unconfirmed<'_>, answer: &Answer, now: Now) -> Vec<Action> {
    match answer {
        Answer::Due => vec![Action::ReadBack],
        Answer::NotFound if now.since(row.payment.created_at) >= row.window => {
            vec![Action::Record {
                state: PaymentIndexState::NotCreated,
                aggregate: None,
            }]
        }
        // Still young enough to arrive: read again next time.
        Answer::NotFound | Answer::ReadFailed | Answer::CancelFailed => vec![],
        Answer::Found { state, aggregate } => {
            let open = matches!(state, PaymentState::Created | PaymentState::Authorized);
            if !open || aggregate.captured_amount.value > 0 {
                // Final, or money moved: nothing to undo here, only to record.
                vec![record(*state, aggregate)]
            } else if row.refused_in.contains(state) {
                vec![]
            } else {
                vec![Action::Cancel { seen_in: *state }]
            }
        }
        Answer::Cancelled { state, aggregate } => vec![record(*state, aggregate)],
        Answer::CancelRefused { seen_in } => vec![Action::RememberRefused(*seen_in)],
    }
}

fn record(state: PaymentState, aggregate: &Aggregate) -> Action {
    Action::Record {
        state: index_state(state),
        aggregate: Some(*aggregate),
    }
}

/// The payments index's name for a state Vipps reported.
pub fn index_state(state: PaymentState) -> PaymentIndexState {
    match state {
        PaymentState::Created => PaymentIndexState::Created,
        PaymentState::Authorized => PaymentIndexState::Authorized,
        PaymentState::Aborted => PaymentIndexState::Aborted,
        PaymentState::Expired => PaymentIndexState::Expired,
        PaymentState::Terminated => PaymentIndexState::Terminated,
    }
}

#[cfg(test)]
mod tests {
    //! One scenario per transition of the watch.

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::Amount;

    const WINDOW: Duration = Duration::from_secs(600);

    fn payment(created_at: DateTime<Utc>) -> PaymentRecord {
        PaymentRecord {
            reference: "lh-1-0123456789abcdef".parse().unwrap(),
            lane: "1".parse().unwrap(),
            session: "0123456789abcdef".into(),
            amount: Amount::nok(100),
            state: PaymentIndexState::Requested,
            captured: 0,
            refunded: 0,
            created_at,
            updated_at: created_at,
        }
    }

    fn aggregate(captured: u64, cancelled: u64) -> Aggregate {
        Aggregate {
            authorized_amount: Amount::nok(100),
            cancelled_amount: Amount::nok(cancelled),
            captured_amount: Amount::nok(captured),
            refunded_amount: Amount::nok(0),
        }
    }

    /// The step for a payment requested `age` ago that Vipps refused to cancel in `refused`.
    fn step_at(age: Duration, refused: &[PaymentState], answer: Answer) -> Vec<Action> {
        let now = Now::read();
        let payment = payment(now.wall - chrono::Duration::from_std(age).unwrap());
        let refused_in = refused.iter().copied().collect();
        let row = Unconfirmed {
            payment: &payment,
            refused_in: &refused_in,
            window: WINDOW,
        };
        step(row, &answer, now)
    }

    fn young(answer: Answer) -> Vec<Action> {
        step_at(Duration::from_secs(5), &[], answer)
    }

    fn found(state: PaymentState, aggregate: Aggregate) -> Answer {
        Answer::Found { state, aggregate }
    }

    #[test]
    fn a_due_payment_is_read_back() {
        assert_eq!(young(Answer::Due), [Action::ReadBack]);
    }

    #[test]
    fn a_payment_vipps_does_not_know_yet_is_read_again_within_the_window() {
        let just_inside = WINDOW - Duration::from_secs(1);
        assert_eq!(step_at(just_inside, &[], Answer::NotFound), []);
    }

    #[test]
    fn a_payment_vipps_still_does_not_know_after_the_window_is_recorded_not_created() {
        let not_created = [Action::Record {
            state: PaymentIndexState::NotCreated,
            aggregate: None,
        }];
        assert_eq!(step_at(WINDOW, &[], Answer::NotFound), not_created);
        assert_eq!(step_at(WINDOW * 2, &[], Answer::NotFound), not_created);
    }

    #[test]
    fn a_failed_read_back_waits_for_the_next_sweep_even_past_the_window() {
        assert_eq!(young(Answer::ReadFailed), []);
        assert_eq!(step_at(WINDOW * 2, &[], Answer::ReadFailed), []);
    }

    #[test]
    fn a_final_payment_is_only_recorded() {
        for state in [
            PaymentState::Aborted,
            PaymentState::Expired,
            PaymentState::Terminated,
        ] {
            let a = aggregate(0, 0);
            let expected = Action::Record {
                state: index_state(state),
                aggregate: Some(a),
            };
            assert_eq!(young(found(state, a)), [expected], "{state:?}");
        }
    }

    #[test]
    fn a_captured_payment_is_recorded_not_cancelled() {
        let a = aggregate(100, 0);
        let recorded = Action::Record {
            state: PaymentIndexState::Authorized,
            aggregate: Some(a),
        };
        assert_eq!(young(found(PaymentState::Authorized, a)), [recorded]);
    }

    #[test]
    fn an_open_payment_that_appeared_is_cancelled_with_the_state_it_was_seen_in() {
        for state in [PaymentState::Created, PaymentState::Authorized] {
            let cancel = Action::Cancel { seen_in: state };
            assert_eq!(young(found(state, aggregate(0, 0))), [cancel], "{state:?}");
        }
    }

    #[test]
    fn a_payment_whose_cancel_was_refused_in_its_state_waits_for_it_to_move_on() {
        let refused = [PaymentState::Created];
        let in_created = found(PaymentState::Created, aggregate(0, 0));
        assert_eq!(step_at(Duration::ZERO, &refused, in_created), []);
        // Authorised meanwhile: a new state, a new key, a new try.
        let authorized = found(PaymentState::Authorized, aggregate(0, 0));
        let cancel = Action::Cancel {
            seen_in: PaymentState::Authorized,
        };
        assert_eq!(step_at(Duration::ZERO, &refused, authorized), [cancel]);
    }

    #[test]
    fn a_cancelled_payment_is_recorded_as_vipps_answered() {
        let a = aggregate(0, 100);
        let answer = Answer::Cancelled {
            state: PaymentState::Authorized,
            aggregate: a,
        };
        let recorded = Action::Record {
            state: PaymentIndexState::Authorized,
            aggregate: Some(a),
        };
        assert_eq!(young(answer), [recorded]);
    }

    #[test]
    fn a_refused_cancel_is_remembered_for_its_state() {
        let answer = Answer::CancelRefused {
            seen_in: PaymentState::Created,
        };
        assert_eq!(
            young(answer),
            [Action::RememberRefused(PaymentState::Created)]
        );
    }

    #[test]
    fn a_failed_cancel_is_tried_again_at_the_next_sweep() {
        assert_eq!(young(Answer::CancelFailed), []);
    }

    #[test]
    fn vipps_states_keep_their_names_in_the_index() {
        for state in [
            PaymentState::Created,
            PaymentState::Authorized,
            PaymentState::Aborted,
            PaymentState::Expired,
            PaymentState::Terminated,
        ] {
            assert_eq!(index_state(state).as_str(), state.as_str());
        }
    }
}
