//! Identification: a customer QR starts or replaces the customer, the QR exchange (with the
//! clear-text number as fallback), the membership lookup and the best-effort check-in.

use crate::domain::Msisdn;

use super::effect::*;
use super::enroll::finish_enrollment;
use super::event::*;
use super::ids::*;
use super::journal::JournalRecord;
use super::state::*;
use super::step::*;

pub(super) fn on_customer_qr(
    state: State,
    qr: String,
    clear_text: Option<Msisdn>,
    session_id: SessionId,
    cx: &mut Cx,
) -> Step {
    let same = |ctx: &Ctx, known: Option<&Msisdn>| {
        ctx.qr == qr || (clear_text.is_some() && clear_text.as_ref() == known)
    };
    match state {
        State::Idle => {
            let ctx = Ctx {
                id: session_id,
                started_at: cx.now,
                qr: qr.clone(),
                check_in: CheckIn::NotSent,
                vipps_degraded: false,
                store_down: false,
                owed: None,
                enrollment: None,
                start_journalled: false,
            };
            cx.notify(TerminalEvent::CustomerScanned);
            Step::To(exchange_qr(ctx, qr, clear_text, cx))
        }
        State::AwaitingQrExchange {
            ctx,
            clear_text: known,
            ..
        } => {
            if same(&ctx, known.as_ref()) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                replace_customer(ctx, qr, clear_text, cx)
            }
        }
        State::AwaitingMembership { ctx, msisdn, .. } => {
            if same(&ctx, Some(&msisdn)) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                replace_customer(ctx, qr, clear_text, cx)
            }
        }
        State::ReadyForPayment { ctx, customer, .. } => {
            if same(&ctx, Some(&customer.msisdn)) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                replace_customer(ctx, qr, clear_text, cx)
            }
        }
        State::AwaitingLoginStart {
            mut ctx, customer, ..
        }
        | State::AwaitingConsent {
            mut ctx, customer, ..
        } => {
            if same(&ctx, Some(&customer.msisdn)) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                finish_enrollment(&mut ctx, EnrollmentOutcome::Abandoned, None, cx);
                replace_customer(ctx, qr, clear_text, cx)
            }
        }
        // The customer consented: the member is saved first (a bounded moment), never dropped.
        State::AwaitingMemberStore { ctx, customer, .. } => {
            if same(&ctx, Some(&customer.msisdn)) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                Step::Reject(Command::CustomerQr, Rejection::EnrollmentFinishing)
            }
        }
        State::AwaitingPaymentCreation { ctx, customer, .. }
        | State::AwaitingPayment { ctx, customer, .. }
        | State::AwaitingCapture { ctx, customer, .. }
        | State::AwaitingCancel { ctx, customer, .. } => {
            if same(&ctx, Some(&customer.msisdn)) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                Step::Reject(Command::CustomerQr, Rejection::PaymentInProgress)
            }
        }
    }
}

/// A different customer's QR before payment: same session, identification starts over.
pub(super) fn replace_customer(
    ctx: Ctx,
    qr: String,
    clear_text: Option<Msisdn>,
    cx: &mut Cx,
) -> Step {
    let mut ctx = Ctx {
        qr: qr.clone(),
        // The previous customer's check-in answer and enrollment become stale.
        check_in: CheckIn::NotSent,
        enrollment: None,
        ..ctx
    };
    cx.journal_start(&mut ctx);
    cx.persist(&ctx, JournalRecord::CustomerReplaced);
    cx.notify(TerminalEvent::CustomerReplaced);
    Step::To(exchange_qr(ctx, qr, clear_text, cx))
}

pub(super) fn exchange_qr(ctx: Ctx, qr: String, clear_text: Option<Msisdn>, cx: &mut Cx) -> State {
    let call = cx.call();
    cx.emit(Effect::ExchangeQr { call, qr });
    State::AwaitingQrExchange {
        ctx,
        clear_text,
        call,
        deadline: cx.now + cx.cfg.qr_exchange_timeout,
    }
}

pub(super) fn qr_exchange_failed(
    mut ctx: Ctx,
    clear_text: Option<Msisdn>,
    error: CallError,
    cx: &mut Cx,
) -> State {
    if let Some(msisdn) = clear_text {
        // The clear-text number is the documented fallback.
        vipps_failed(&mut ctx, &error, false, cx);
        return lookup_membership(ctx, msisdn, cx);
    }
    let outcome = match error {
        // Only the exchange saying the code is no personal QR (400, or 404 for an unknown code)
        // rejects the scan: any shape on a QR host is sent, and the exchange alone knows them.
        CallError::Rejected {
            status: 400 | 404, ..
        } => Outcome::Failed {
            reason: FailReason::QrNotRecognised,
        },
        // A refused credential (401, 403) is no fault of the customer's code.
        CallError::Rejected { detail, .. } | CallError::Unknown { detail } => Outcome::Failed {
            reason: FailReason::IdentificationFailed { detail },
        },
        CallError::Unavailable { .. } => Outcome::Unavailable,
    };
    end(ctx, outcome, None, cx)
}

pub(super) fn lookup_membership(ctx: Ctx, msisdn: Msisdn, cx: &mut Cx) -> State {
    let call = cx.call();
    cx.emit(Effect::LookupMembership {
        call,
        msisdn: msisdn.clone(),
    });
    State::AwaitingMembership {
        ctx,
        msisdn,
        call,
        deadline: cx.now + cx.cfg.membership_timeout,
    }
}

pub(super) fn membership_known(
    mut ctx: Ctx,
    msisdn: Msisdn,
    membership: Membership,
    cx: &mut Cx,
) -> State {
    let identified = msisdn.clone();
    let record = if ctx.start_journalled {
        JournalRecord::CustomerIdentified {
            msisdn: identified,
            membership,
        }
    } else {
        JournalRecord::SessionStartedIdentified {
            msisdn: identified,
            membership,
        }
    };
    ctx.start_journalled = true;
    cx.persist(&ctx, record);
    cx.emit(Effect::Record(Fact::MembershipChecked {
        result: membership,
    }));
    cx.notify(TerminalEvent::CustomerIdentified {
        phone: msisdn.masked(),
        membership,
    });
    // Best effort, never awaited; Check-in only takes Norwegian numbers. A customer whose
    // membership is unknown (the club did not answer) gets the non-member waiting screen.
    ctx.check_in = CheckIn::Done;
    if msisdn.is_norwegian() {
        let call = cx.call();
        cx.emit(Effect::SendCheckIn {
            call,
            msisdn: msisdn.clone(),
            is_member: membership.is_member().unwrap_or(false),
        });
        ctx.check_in = CheckIn::Pending {
            call,
            deadline: cx.now + cx.cfg.check_in_timeout,
        };
    }
    ready(ctx, Customer { msisdn, membership }, cx)
}

pub(super) fn ready(ctx: Ctx, customer: Customer, cx: &Cx) -> State {
    State::ReadyForPayment {
        ctx,
        customer,
        abandon_at: cx.now + cx.cfg.idle_timeout,
    }
}
