//! Payment: create (journal first), follow by webhooks and polling, capture, cancel. Money
//! decisions are taken only from what Vipps reports (`payment_seen`).

use tokio::time::Instant;

use super::effect::*;
use super::enroll::finish_enrollment;
use super::event::*;
use super::ids::*;
use super::journal::JournalRecord;
use super::state::*;
use super::step::*;

pub(super) fn on_pay(state: State, request: PayRequest, cx: &mut Cx) -> Step {
    let reject = |r| Step::Reject(Command::Pay, r);
    let invalid = |problem: PayProblem| {
        reject(Rejection::InvalidPayment {
            problem: problem.to_string(),
        })
    };
    match state {
        State::Idle => reject(Rejection::NoCustomer),
        State::AwaitingQrExchange { .. } | State::AwaitingMembership { .. } => {
            reject(Rejection::CustomerNotIdentified)
        }
        State::ReadyForPayment { ctx, customer, .. } => match request.validate() {
            Err(problem) => invalid(problem),
            Ok(()) => Step::To(start_payment(ctx, customer, request, cx)),
        },
        // Decision: Pay while the customer has not consented yet abandons the enrollment, so
        // the till is never held up by a customer who ignores the consent request. A consent
        // given later still enrolls: `followup::enrollment` follows the Login up.
        State::AwaitingLoginStart {
            mut ctx, customer, ..
        }
        | State::AwaitingConsent {
            mut ctx, customer, ..
        } => match request.validate() {
            Err(problem) => invalid(problem),
            Ok(()) => {
                finish_enrollment(&mut ctx, EnrollmentOutcome::Abandoned, None, cx);
                Step::To(start_payment(ctx, customer, request, cx))
            }
        },
        // Consent is given and the member is being saved locally: a moment's wait keeps it.
        State::AwaitingMemberStore { .. } => reject(Rejection::EnrollmentFinishing),
        State::AwaitingPaymentCreation { .. }
        | State::AwaitingPayment { .. }
        | State::AwaitingCapture { .. }
        | State::AwaitingCancel { .. } => reject(Rejection::PaymentAlreadyRequested),
    }
}

pub(super) fn start_payment(
    ctx: Ctx,
    customer: Customer,
    request: PayRequest,
    cx: &mut Cx,
) -> State {
    let reference = payment_reference(cx.lane, &ctx.id);
    let receipt = request.order_lines.map(|order_lines| Receipt {
        order_lines,
        pos_id: cx.lane.clone(),
        receipt_number: request.receipt_number,
    });
    let create = CreatePaymentRequest {
        reference: reference.clone(),
        idempotency_key: KeyedOperation::Create.key(&ctx.id, &reference),
        amount: request.amount,
        msisdn: customer.msisdn.clone(),
        description: request.description,
        receipt,
    };
    let payment = Payment {
        reference,
        amount: request.amount,
        request: Some(create.clone()),
        created_at: cx.now,
        confirmed: false,
        maybe_created: false,
        create_attempts: 0,
        capture_attempts: 0,
        cancel: CancelIntent::None,
        last_state: None,
        last_error: None,
    };
    cx.notify(TerminalEvent::PaymentRequested {
        amount: request.amount,
    });
    send_create(ctx, customer, payment, create, cx)
}

/// Journal first, then create; a retry sends the same body with the same key.
pub(super) fn send_create(
    ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    request: CreatePaymentRequest,
    cx: &mut Cx,
) -> State {
    payment.create_attempts += 1;
    payment.created_at = cx.now;
    cx.persist(
        &ctx,
        JournalRecord::PaymentRequested {
            reference: request.reference.clone(),
            idempotency_key: request.idempotency_key.clone(),
            amount: request.amount,
            msisdn: request.msisdn.clone(),
            description: request.description.clone(),
            receipt_number: request
                .receipt
                .as_ref()
                .and_then(|r| r.receipt_number.clone()),
            attempt: payment.create_attempts,
        },
    );
    let call = cx.call();
    cx.emit(Effect::CreatePayment { call, request });
    State::AwaitingPaymentCreation {
        ctx,
        customer,
        payment,
        call,
        deadline: cx.now + cx.cfg.payment_create_timeout,
    }
}

pub(super) fn payment_created(
    mut ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    cx: &mut Cx,
) -> State {
    vipps_answered(&mut ctx, cx);
    payment.confirmed = true;
    cx.persist(
        &ctx,
        JournalRecord::PaymentCreated {
            reference: payment.reference.clone(),
        },
    );
    let follow = new_follow(&payment, payment.created_at + cx.cfg.payment_first_poll, cx);
    if payment.cancel != CancelIntent::None {
        // The cashier cancelled while the create was in flight.
        return send_cancel(ctx, customer, payment, follow, false, cx);
    }
    cx.notify(TerminalEvent::PaymentAwaitingCustomer {
        amount: payment.amount,
    });
    following(ctx, customer, payment, follow, cx)
}

pub(super) fn create_failed(
    mut ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    error: CallError,
    cx: &mut Cx,
) -> State {
    let cancelled = payment.cancel != CancelIntent::None;
    match error {
        // Certain that no payment exists: the first attempt was refused or never sent.
        CallError::Rejected { status, detail } if !payment.maybe_created => {
            let outcome = if cancelled {
                Outcome::Cancelled
            } else {
                Outcome::Failed {
                    reason: FailReason::PaymentRejected { status, detail },
                }
            };
            end(ctx, outcome, Some(&payment), cx)
        }
        CallError::Unavailable { .. } if !payment.maybe_created => {
            let outcome = if cancelled {
                Outcome::Cancelled
            } else {
                Outcome::Unavailable
            };
            end(ctx, outcome, Some(&payment), cx)
        }
        // The payment may exist: never a new one, read it back (and retry with the same key).
        error => {
            payment.last_error = Some(error.to_string());
            vipps_failed(&mut ctx, &error, true, cx);
            create_outcome_unknown(ctx, customer, payment, cx)
        }
    }
}

pub(super) fn create_outcome_unknown(
    ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    cx: &mut Cx,
) -> State {
    payment.maybe_created = true;
    let follow = new_follow(&payment, cx.now, cx);
    following(ctx, customer, payment, follow, cx)
}

/// Following the payment, with a read-back now if one is due.
pub(super) fn following(
    ctx: Ctx,
    customer: Customer,
    payment: Payment,
    mut follow: Follow,
    cx: &mut Cx,
) -> State {
    poll_if_due(&payment, &mut follow, cx);
    State::AwaitingPayment {
        ctx,
        customer,
        payment,
        follow,
    }
}

pub(super) fn new_follow(payment: &Payment, next_poll: Instant, cx: &Cx) -> Follow {
    Follow {
        deadline: payment.created_at + cx.cfg.payment_expiry + cx.cfg.payment_margin,
        next_poll,
        read: None,
        reread: false,
        give_up_at: None,
    }
}

pub(super) fn poll_if_due(payment: &Payment, follow: &mut Follow, cx: &mut Cx) {
    if follow.read.is_none() && cx.now >= follow.next_poll {
        let call = cx.call();
        cx.emit(Effect::ReadPayment {
            call,
            reference: payment.reference.clone(),
        });
        follow.read = Some(Pending {
            call,
            timeout_at: cx.now + cx.cfg.payment_read_timeout,
        });
        follow.next_poll = cx.now + cx.cfg.payment_poll_interval;
    }
}

/// Back to following the payment, with a read-back at `at`.
pub(super) fn read_back(
    ctx: Ctx,
    customer: Customer,
    payment: Payment,
    mut follow: Follow,
    at: Instant,
    cx: &mut Cx,
) -> State {
    follow.read = None;
    follow.next_poll = at;
    // Through `follow_due`, so a safety net that passed meanwhile is honoured at once.
    follow_due(ctx, customer, payment, follow, cx)
}

pub(super) fn follow_due(
    ctx: Ctx,
    customer: Customer,
    payment: Payment,
    mut follow: Follow,
    cx: &mut Cx,
) -> State {
    let now = cx.now;
    if let Some(give_up_at) = follow.give_up_at {
        if now >= give_up_at {
            let outcome = Outcome::Failed {
                reason: FailReason::NoFinalState,
            };
            return end(ctx, outcome, Some(&payment), cx);
        }
    } else if now >= follow.deadline {
        // The safety net past Vipps' expiry: a final read-back, not a failure.
        follow.give_up_at = Some(now + cx.cfg.final_read_window);
        follow.read = None;
        follow.next_poll = now;
    }
    if follow.read.is_some_and(|r| now >= r.timeout_at) {
        follow.read = None;
    }
    following(ctx, customer, payment, follow, cx)
}

pub(super) fn payment_not_found(
    mut ctx: Ctx,
    customer: Customer,
    payment: Payment,
    mut follow: Follow,
    cx: &mut Cx,
) -> State {
    vipps_answered(&mut ctx, cx);
    if payment.confirmed || follow.give_up_at.is_some() {
        // Vipps confirmed it earlier (a read glitch), or the safety net runs: keep reading.
        poll_if_due(&payment, &mut follow, cx);
        return State::AwaitingPayment {
            ctx,
            customer,
            payment,
            follow,
        };
    }
    if payment.cancel != CancelIntent::None {
        return end(ctx, Outcome::Cancelled, Some(&payment), cx);
    }
    match payment.request.clone() {
        Some(request) if payment.create_attempts < cx.cfg.max_create_attempts => {
            send_create(ctx, customer, payment, request, cx)
        }
        // Out of attempts, or recovered after a restart (the customer may have left).
        Some(_) | None => {
            let outcome = Outcome::Failed {
                reason: FailReason::PaymentNotCreated,
            };
            end(ctx, outcome, Some(&payment), cx)
        }
    }
}

/// Money decisions: a payment's state and aggregate, from a read-back or a capture/cancel answer.
pub(super) fn payment_seen(
    mut ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    mut follow: Follow,
    state: PaymentState,
    aggregate: Aggregate,
    cx: &mut Cx,
) -> State {
    vipps_answered(&mut ctx, cx);
    payment.confirmed = true;
    payment.last_state = Some(state);
    let amount = payment.amount.value;
    let fail = |reason| Outcome::Failed { reason };
    match state {
        PaymentState::Created => {
            if follow.give_up_at.is_some() {
                // Still CREATED past its expiry and the margin: stop waiting.
                return end(ctx, fail(FailReason::NoFinalState), Some(&payment), cx);
            }
            if let CancelIntent::TransactionOnly { attempts } = payment.cancel
                && attempts < cx.cfg.max_cancel_attempts
            {
                return send_cancel(ctx, customer, payment, follow, false, cx);
            }
            if follow.reread {
                follow.reread = false;
                follow.next_poll = cx.now;
            }
            following(ctx, customer, payment, follow, cx)
        }
        PaymentState::Authorized => {
            if aggregate.captured == amount {
                return end(ctx, Outcome::Paid, Some(&payment), cx);
            }
            if aggregate.captured > 0 {
                let reason = FailReason::CaptureMismatch {
                    captured: aggregate.captured,
                };
                return end(ctx, fail(reason), Some(&payment), cx);
            }
            if aggregate.cancelled > 0 {
                return end(ctx, Outcome::Cancelled, Some(&payment), cx);
            }
            // Out of attempts: the last error says why, else that they ran out.
            let exhausted = |ctx, payment: Payment, what, reason: fn(String) -> FailReason, cx| {
                let detail = payment
                    .last_error
                    .clone()
                    .unwrap_or_else(|| format!("{what} attempts exhausted"));
                end(ctx, fail(reason(detail)), Some(&payment), cx)
            };
            match payment.cancel {
                CancelIntent::None => {
                    if payment.capture_attempts < cx.cfg.max_capture_attempts {
                        send_capture(ctx, customer, payment, follow, cx)
                    } else {
                        let reason = |detail| FailReason::CaptureFailed { detail };
                        exhausted(ctx, payment, "capture", reason, cx)
                    }
                }
                // Decision: the cashier cancelled and the customer is at the till, so an
                // authorisation that raced the cancel is cancelled in full, not captured.
                CancelIntent::TransactionOnly { .. } => {
                    payment.cancel = CancelIntent::Full { attempts: 0 };
                    send_cancel(ctx, customer, payment, follow, true, cx)
                }
                CancelIntent::Full { attempts } => {
                    if attempts < cx.cfg.max_cancel_attempts {
                        send_cancel(ctx, customer, payment, follow, true, cx)
                    } else {
                        let reason = |detail| FailReason::CancelFailed { detail };
                        exhausted(ctx, payment, "cancel", reason, cx)
                    }
                }
            }
        }
        PaymentState::Aborted => end(ctx, Outcome::Declined, Some(&payment), cx),
        PaymentState::Expired => end(ctx, Outcome::Expired, Some(&payment), cx),
        PaymentState::Terminated => end(ctx, Outcome::Cancelled, Some(&payment), cx),
    }
}

/// Journal first, then capture the full amount with the session's capture key.
pub(super) fn send_capture(
    ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    mut follow: Follow,
    cx: &mut Cx,
) -> State {
    payment.capture_attempts += 1;
    // A retry of a capture the store held back: the cashier was told already.
    if payment.capture_attempts == 1 && ctx.owed.is_none() {
        cx.notify(TerminalEvent::PaymentAuthorised {
            amount: payment.amount,
        });
    }
    let key = KeyedOperation::Capture.key(&ctx.id, &payment.reference);
    cx.persist(
        &ctx,
        JournalRecord::CaptureRequested {
            reference: payment.reference.clone(),
            idempotency_key: key.clone(),
            amount: payment.amount,
            attempt: payment.capture_attempts,
        },
    );
    let call = cx.call();
    cx.emit(Effect::CapturePayment {
        call,
        reference: payment.reference.clone(),
        idempotency_key: key,
        amount: payment.amount,
    });
    follow.read = None;
    follow.reread = false;
    State::AwaitingCapture {
        ctx,
        customer,
        payment,
        follow,
        call,
        deadline: cx.now + cx.cfg.capture_timeout,
    }
}

/// Journal first, then cancel: transaction-only before authorisation, in full after it.
pub(super) fn send_cancel(
    ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    mut follow: Follow,
    full: bool,
    cx: &mut Cx,
) -> State {
    let attempt = match payment.cancel {
        CancelIntent::None => 1,
        CancelIntent::TransactionOnly { attempts } | CancelIntent::Full { attempts } => {
            attempts + 1
        }
    };
    let (op, intent) = if full {
        (
            KeyedOperation::CancelFull,
            CancelIntent::Full { attempts: attempt },
        )
    } else {
        let intent = CancelIntent::TransactionOnly { attempts: attempt };
        (KeyedOperation::Cancel, intent)
    };
    payment.cancel = intent;
    let key = op.key(&ctx.id, &payment.reference);
    cx.persist(
        &ctx,
        JournalRecord::CancelRequested {
            reference: payment.reference.clone(),
            idempotency_key: key.clone(),
            cancel_transaction_only: !full,
            attempt,
        },
    );
    let call = cx.call();
    cx.emit(Effect::CancelPayment {
        call,
        reference: payment.reference.clone(),
        idempotency_key: key,
        cancel_transaction_only: !full,
    });
    follow.read = None;
    follow.reread = false;
    State::AwaitingCancel {
        ctx,
        customer,
        payment,
        follow,
        call,
        deadline: cx.now + cx.cfg.cancel_timeout,
    }
}
