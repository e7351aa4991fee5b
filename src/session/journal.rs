//! The facts a session writes to the journal, and how a lane rebuilds its session from them.
//!
//! Each `Effect::Persist` carries one `JournalRecord`; the store keeps them as JSON rows per
//! (lane, session) under `kind()`. A record announcing a Vipps call is written before the call
//! and carries its idempotency key, so after a crash the lane reads the payment back and finishes
//! it with the same keys instead of starting a new one.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::domain::{Amount, IdempotencyKey, LaneId, Msisdn, PaymentReference};

use super::config::SessionConfig;
use super::effect::{
    Disposition, EnrollmentOutcome, Membership, Outcome, TerminalEvent, Transition,
};
use super::enroll::{RECOVERED_LOGIN_INTERVAL, fetch_userinfo, poll_login, store_member};
use super::event::{LoginAccessToken, Userinfo};
use super::ids::{KeyedOperation, SessionId};
use super::pay::{following, new_follow};
use super::state::{CancelIntent, CheckIn, Ctx, Customer, Login, Payment, Session, State};
use super::step::{Cx, end};

/// One journal row of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalRecord {
    SessionStarted,
    /// A different customer's QR replaced the customer before payment.
    CustomerReplaced,
    CustomerIdentified {
        msisdn: Msisdn,
        membership: Membership,
    },
    /// A new checkout's start and its customer's identification in one write. The start waits
    /// for the customer: nothing before it changes anything at Vipps, so a crash before it loses
    /// nothing. Journals of older versions hold `SessionStarted` and `CustomerIdentified`
    /// instead, as does a session whose customer was replaced or that ended before identified.
    SessionStartedIdentified {
        msisdn: Msisdn,
        membership: Membership,
    },
    EnrollmentStarted {
        msisdn: Msisdn,
        auth_req_id: String,
    },
    /// The token poll succeeded. Written before userinfo is called: Vipps hands the token out
    /// only once, so a restart finishes the enrollment with this one instead of polling again.
    /// The store erases the token (`None` when read back) once it is no longer needed: when the
    /// enrollment's `EnrollmentUserinfo` is written, or the enrollment follower has taken it over.
    EnrollmentConsented {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        login_token: Option<LoginAccessToken>,
    },
    /// Userinfo answered; written before the member is stored, so a restart stores it even after
    /// the token expired.
    EnrollmentUserinfo {
        userinfo: Userinfo,
    },
    EnrollmentFinished {
        outcome: EnrollmentOutcome,
    },
    /// Written before every create attempt.
    PaymentRequested {
        reference: PaymentReference,
        idempotency_key: IdempotencyKey,
        amount: Amount,
        msisdn: Msisdn,
        description: String,
        receipt_number: Option<String>,
        attempt: u32,
    },
    PaymentCreated {
        reference: PaymentReference,
    },
    /// Written before every capture attempt.
    CaptureRequested {
        reference: PaymentReference,
        idempotency_key: IdempotencyKey,
        amount: Amount,
        attempt: u32,
    },
    /// Written before every cancel attempt.
    CancelRequested {
        reference: PaymentReference,
        idempotency_key: IdempotencyKey,
        cancel_transaction_only: bool,
        attempt: u32,
    },
    SessionEnded {
        outcome: Outcome,
    },
}

impl JournalRecord {
    /// The `kind` column: the serde tag.
    pub fn kind(&self) -> &'static str {
        match self {
            JournalRecord::SessionStarted => "session_started",
            JournalRecord::CustomerReplaced => "customer_replaced",
            JournalRecord::CustomerIdentified { .. } => "customer_identified",
            JournalRecord::SessionStartedIdentified { .. } => "session_started_identified",
            JournalRecord::EnrollmentStarted { .. } => "enrollment_started",
            JournalRecord::EnrollmentConsented { .. } => "enrollment_consented",
            JournalRecord::EnrollmentUserinfo { .. } => "enrollment_userinfo",
            JournalRecord::EnrollmentFinished { .. } => "enrollment_finished",
            JournalRecord::PaymentRequested { .. } => "payment_requested",
            JournalRecord::PaymentCreated { .. } => "payment_created",
            JournalRecord::CaptureRequested { .. } => "capture_requested",
            JournalRecord::CancelRequested { .. } => "cancel_requested",
            JournalRecord::SessionEnded { .. } => "session_ended",
        }
    }

    /// The keyed Vipps call this record announces and its key. A transaction-only cancel and a
    /// full cancel are different operations with keys of their own.
    pub fn keyed_call(&self) -> Option<(KeyedOperation, &IdempotencyKey)> {
        let op = match self {
            JournalRecord::PaymentRequested { .. } => KeyedOperation::Create,
            JournalRecord::CaptureRequested { .. } => KeyedOperation::Capture,
            JournalRecord::CancelRequested {
                cancel_transaction_only: true,
                ..
            } => KeyedOperation::Cancel,
            JournalRecord::CancelRequested { .. } => KeyedOperation::CancelFull,
            _ => return None,
        };
        self.idempotency_key().map(|key| (op, key))
    }

    /// The idempotency key of the Vipps call this record announces.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        match self {
            JournalRecord::PaymentRequested {
                idempotency_key, ..
            }
            | JournalRecord::CaptureRequested {
                idempotency_key, ..
            }
            | JournalRecord::CancelRequested {
                idempotency_key, ..
            } => Some(idempotency_key),
            JournalRecord::SessionStarted
            | JournalRecord::CustomerReplaced
            | JournalRecord::CustomerIdentified { .. }
            | JournalRecord::SessionStartedIdentified { .. }
            | JournalRecord::EnrollmentStarted { .. }
            | JournalRecord::EnrollmentConsented { .. }
            | JournalRecord::EnrollmentUserinfo { .. }
            | JournalRecord::EnrollmentFinished { .. }
            | JournalRecord::PaymentCreated { .. }
            | JournalRecord::SessionEnded { .. } => None,
        }
    }

    /// Whether this record closes its session.
    pub fn is_end(&self) -> bool {
        matches!(self, JournalRecord::SessionEnded { .. })
    }
}

/// What the journal of one session says is still open.
struct Facts {
    membership: Membership,
    enrollment: Option<OpenEnrollment>,
    /// How the customer's enrollment ended, if it has.
    enrolled: Option<EnrollmentOutcome>,
    payment: Option<OpenPayment>,
    ended: bool,
}

struct OpenEnrollment {
    msisdn: Msisdn,
    auth_req_id: String,
    /// How far it got after the customer consented.
    consent: Consent,
}

enum Consent {
    NotYet,
    Token(LoginAccessToken),
    Userinfo(Userinfo),
}

struct OpenPayment {
    reference: PaymentReference,
    amount: Amount,
    msisdn: Msisdn,
    confirmed: bool,
    create_attempts: u32,
    capture_attempts: u32,
    cancel: CancelIntent,
}

fn read_facts(records: &[JournalRecord]) -> Facts {
    let mut facts = Facts {
        membership: Membership::Unknown,
        enrollment: None,
        enrolled: None,
        payment: None,
        ended: false,
    };
    for record in records {
        match record {
            JournalRecord::SessionStarted => {}
            JournalRecord::CustomerReplaced => {
                facts.membership = Membership::Unknown;
                facts.enrollment = None;
                facts.enrolled = None;
            }
            JournalRecord::CustomerIdentified { membership, .. }
            | JournalRecord::SessionStartedIdentified { membership, .. } => {
                facts.membership = *membership;
            }
            JournalRecord::EnrollmentStarted {
                msisdn,
                auth_req_id,
            } => {
                facts.enrollment = Some(OpenEnrollment {
                    msisdn: msisdn.clone(),
                    auth_req_id: auth_req_id.clone(),
                    consent: Consent::NotYet,
                })
            }
            // An erased token was superseded by the userinfo or the end that follows it.
            JournalRecord::EnrollmentConsented { login_token } => {
                if let (Some(e), Some(token)) = (&mut facts.enrollment, login_token) {
                    e.consent = Consent::Token(token.clone());
                }
            }
            JournalRecord::EnrollmentUserinfo { userinfo } => {
                if let Some(e) = &mut facts.enrollment {
                    e.consent = Consent::Userinfo(userinfo.clone());
                }
            }
            JournalRecord::EnrollmentFinished { outcome } => {
                facts.enrollment = None;
                if *outcome == EnrollmentOutcome::Enrolled {
                    facts.membership = Membership::Member;
                }
                facts.enrolled = Some(outcome.clone());
            }
            JournalRecord::PaymentRequested {
                reference,
                amount,
                msisdn,
                attempt,
                ..
            } => match &mut facts.payment {
                Some(p) => p.create_attempts = p.create_attempts.max(*attempt),
                None => {
                    facts.payment = Some(OpenPayment {
                        reference: reference.clone(),
                        amount: *amount,
                        msisdn: msisdn.clone(),
                        confirmed: false,
                        create_attempts: *attempt,
                        capture_attempts: 0,
                        cancel: CancelIntent::None,
                    })
                }
            },
            JournalRecord::PaymentCreated { .. } => {
                if let Some(p) = &mut facts.payment {
                    p.confirmed = true;
                }
            }
            JournalRecord::CaptureRequested { attempt, .. } => {
                if let Some(p) = &mut facts.payment {
                    p.capture_attempts = p.capture_attempts.max(*attempt);
                }
            }
            JournalRecord::CancelRequested {
                cancel_transaction_only,
                attempt,
                ..
            } => {
                if let Some(p) = &mut facts.payment {
                    p.cancel = if *cancel_transaction_only {
                        CancelIntent::TransactionOnly { attempts: *attempt }
                    } else {
                        CancelIntent::Full { attempts: *attempt }
                    };
                }
            }
            JournalRecord::SessionEnded { .. } => facts.ended = true,
        }
    }
    facts
}

impl Session {
    /// Rebuilds a lane's session after a restart from the journal of its last session.
    ///
    /// A payment in flight is read back and driven to a final state with the journalled keys
    /// (captured if authorised and not yet captured; never created again). An enrollment the
    /// customer consented to is finished from the journal (userinfo with the journalled token,
    /// or the journalled userinfo, then the member store); one not consented to yet is polled
    /// again for `login_recovery_window`. A session with nothing in flight ends
    /// as `Interrupted`; an ended session (or none) gives an idle lane.
    pub fn recover(
        lane: LaneId,
        session: SessionId,
        records: &[JournalRecord],
        now: Instant,
        cfg: &SessionConfig,
    ) -> Transition {
        let facts = read_facts(records);
        let mut cx = Cx::new(&lane, cfg, now, 0);
        let state = if facts.ended || records.is_empty() {
            State::Idle
        } else {
            recovered_state(session, facts, &mut cx)
        };
        let (next_call, effects) = (cx.next_call, cx.fx);
        Transition {
            session: Session {
                lane,
                next_call,
                state,
            },
            effects,
            disposition: Disposition::Applied,
        }
    }
}

fn recovered_state(id: SessionId, facts: Facts, cx: &mut Cx) -> State {
    let ctx = Ctx {
        id,
        // The monotonic clock does not survive a restart: durations count from recovery.
        started_at: cx.now,
        qr: String::new(),
        check_in: CheckIn::NotSent,
        vipps_degraded: false,
        store_down: false,
        owed: None,
        enrollment: facts.enrolled.clone(),
        start_journalled: true,
    };
    if let Some(open) = facts.payment {
        let payment = Payment {
            reference: open.reference,
            amount: open.amount,
            request: None,
            created_at: cx.now,
            confirmed: open.confirmed,
            maybe_created: true,
            create_attempts: open.create_attempts,
            capture_attempts: open.capture_attempts,
            cancel: open.cancel,
            last_state: None,
            last_error: None,
        };
        let customer = Customer {
            msisdn: open.msisdn,
            membership: facts.membership,
        };
        cx.notify(TerminalEvent::SessionRecovered {
            payment: Some(payment.amount),
        });
        let mut follow = new_follow(&payment, cx.now, cx);
        // Recovery may happen long after creation: the safety net counts from now.
        follow.deadline = cx.now + cx.cfg.payment_expiry + cx.cfg.payment_margin;
        return following(ctx, customer, payment, follow, cx);
    }
    if let Some(open) = facts.enrollment {
        let customer = Customer {
            msisdn: open.msisdn,
            membership: Membership::NonMember,
        };
        cx.notify(TerminalEvent::SessionRecovered { payment: None });
        // Consented: the token cannot be fetched again, so finish with what the journal holds.
        match open.consent {
            Consent::Userinfo(userinfo) => return store_member(ctx, customer, userinfo, cx),
            Consent::Token(token) => return fetch_userinfo(ctx, customer, token, 0, cx),
            Consent::NotYet => {}
        }
        let mut login = Login {
            auth_req_id: open.auth_req_id,
            interval: RECOVERED_LOGIN_INTERVAL,
            next_poll: cx.now,
            poll: None,
            expires_at: cx.now + cx.cfg.login_recovery_window,
            vipps_expiry: false,
        };
        poll_login(&mut login, cx);
        return State::AwaitingConsent {
            ctx,
            customer,
            login,
        };
    }
    // Nothing in flight: close it; the cashier starts over with a new scan rather than have a
    // restart silently carry a customer over.
    end(ctx, Outcome::Interrupted, None, cx)
}
