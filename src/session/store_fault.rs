//! Store faults: what a session does while its journal cannot be written.
//!
//! A keyed call (create, capture, cancel) goes out only once its journal record is durable. When
//! that write fails the call is not sent and the session *owes* it: it keeps its state, tells the
//! cashier that nothing is final yet (`StoreUnavailable`), and sends the call again, journal
//! first, with backoff or at once when the store takes writes again. An attempt that was never
//! sent does not count against the call's attempts, so a store fault alone never ends a session
//! and never makes lanehub give up on a payment Vipps knows of.

use std::time::Duration;

use tokio::time::Instant;

use super::effect::{IgnoreReason, Outcome, TerminalEvent};
use super::pay::{create_outcome_unknown, send_cancel, send_capture, send_create};
use super::state::{CancelIntent, Ctx, State};
use super::step::{Cx, Step, end};

/// The first wait before an owed call is tried again; it doubles up to `STORE_RETRY_MAX`.
pub(super) const STORE_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two tries of an owed call.
pub(super) const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

/// A keyed call the session owes: its journal write failed, so it was never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owed {
    pub retry_at: Instant,
    /// Failed writes in a row.
    pub failures: u32,
}

/// How long to wait after `failures` failed writes in a row.
pub(super) fn store_backoff(failures: u32) -> Duration {
    crate::backoff::Backoff::new(STORE_RETRY_FIRST, STORE_RETRY_MAX).after(failures)
}

/// Marks the state's call as owed and tells the cashier once; returns when to try again.
fn owe(ctx: &mut Ctx, cx: &mut Cx) -> Instant {
    let failures = ctx.owed.map_or(0, |o| o.failures) + 1;
    let retry_at = cx.now + store_backoff(failures);
    ctx.owed = Some(Owed { retry_at, failures });
    store_down(ctx, cx);
    retry_at
}

fn store_down(ctx: &mut Ctx, cx: &mut Cx) {
    if !ctx.store_down {
        ctx.store_down = true;
        cx.notify(TerminalEvent::StoreUnavailable);
    }
}

/// The answer to a keyed call that was not sent because its journal record was not written.
pub(super) fn on_journal_write_failed(mut state: State, cx: &mut Cx) -> Step {
    // The attempt was never sent: it does not count.
    let (ctx, deadline) = match &mut state {
        State::AwaitingPaymentCreation {
            ctx,
            payment,
            deadline,
            ..
        } => {
            payment.create_attempts = payment.create_attempts.saturating_sub(1);
            (ctx, deadline)
        }
        State::AwaitingCapture {
            ctx,
            payment,
            deadline,
            ..
        } => {
            payment.capture_attempts = payment.capture_attempts.saturating_sub(1);
            (ctx, deadline)
        }
        State::AwaitingCancel {
            ctx,
            payment,
            deadline,
            ..
        } => {
            payment.cancel = match payment.cancel {
                CancelIntent::None => CancelIntent::None,
                CancelIntent::TransactionOnly { attempts } => CancelIntent::TransactionOnly {
                    attempts: attempts.saturating_sub(1),
                },
                CancelIntent::Full { attempts } => CancelIntent::Full {
                    attempts: attempts.saturating_sub(1),
                },
            };
            (ctx, deadline)
        }
        // Only keyed calls wait for their record; no other state sends one.
        _ => return Step::Invalid,
    };
    *deadline = owe(ctx, cx);
    Step::To(state)
}

/// Sends the owed call again, journal first (the state's deadline was its retry time).
pub(super) fn retry_owed(state: State, cx: &mut Cx) -> State {
    match state {
        State::AwaitingPaymentCreation {
            ctx,
            customer,
            payment,
            ..
        } => match payment.request.clone() {
            Some(request) => send_create(ctx, customer, payment, request, cx),
            // Never created again without its body: read it back instead.
            None => create_outcome_unknown(ctx, customer, payment, cx),
        },
        State::AwaitingCapture {
            ctx,
            customer,
            payment,
            follow,
            ..
        } => send_capture(ctx, customer, payment, follow, cx),
        State::AwaitingCancel {
            ctx,
            customer,
            payment,
            follow,
            ..
        } => {
            let full = matches!(payment.cancel, CancelIntent::Full { .. });
            send_cancel(ctx, customer, payment, follow, full, cx)
        }
        other => other,
    }
}

/// Whether the state owes a keyed call.
pub(super) fn owes(state: &State) -> bool {
    state.ctx().is_some_and(|c| c.owed.is_some())
}

/// An answer to the state's own call came: it was journalled and sent, so the store works.
pub(super) fn journalled(state: &mut State, cx: &mut Cx) {
    if let Some(ctx) = state.ctx_mut()
        && (ctx.owed.is_some() || ctx.store_down)
    {
        ctx.owed = None;
        if ctx.store_down {
            ctx.store_down = false;
            cx.notify(TerminalEvent::StoreAvailable);
        }
    }
}

/// The store stopped taking writes: the cashier hears that nothing is final yet.
pub(super) fn on_store_failed(mut state: State, cx: &mut Cx) -> Step {
    match state.ctx_mut() {
        None => Step::Ignore(IgnoreReason::NoSession),
        Some(ctx) if ctx.store_down => Step::Ignore(IgnoreReason::CallInFlight),
        Some(ctx) => {
            store_down(ctx, cx);
            Step::To(state)
        }
    }
}

/// The store takes writes again: an owed call goes out now.
pub(super) fn on_store_writable(mut state: State, cx: &mut Cx) -> Step {
    if owes(&state) {
        return Step::To(retry_owed(state, cx));
    }
    match state.ctx_mut() {
        Some(ctx) if ctx.store_down => {
            ctx.store_down = false;
            cx.notify(TerminalEvent::StoreAvailable);
            Step::To(state)
        }
        Some(_) => Step::Ignore(IgnoreReason::CallInFlight),
        None => Step::Ignore(IgnoreReason::NoSession),
    }
}

/// The cashier cancels while the store is down and a create or capture is owed. The cancel is
/// journalled and carried out like any other keyed call before anything final is shown.
pub(super) fn cancel_owed(state: State, cx: &mut Cx) -> Step {
    match state {
        State::AwaitingPaymentCreation {
            mut ctx,
            customer,
            mut payment,
            ..
        } => {
            ctx.owed = None;
            if !payment.maybe_created {
                // No create was ever sent: Vipps knows of no payment, so nothing to undo.
                return Step::To(end(ctx, Outcome::Cancelled, Some(&payment), cx));
            }
            // An earlier create may have reached Vipps: read it back, then cancel it.
            payment.cancel = CancelIntent::TransactionOnly { attempts: 0 };
            cx.notify(TerminalEvent::CancelRequested);
            Step::To(create_outcome_unknown(ctx, customer, payment, cx))
        }
        State::AwaitingCapture {
            mut ctx,
            customer,
            mut payment,
            follow,
            ..
        } => {
            // Authorised and not captured: the customer is at the till, so cancel in full.
            ctx.owed = None;
            payment.cancel = CancelIntent::Full { attempts: 0 };
            cx.notify(TerminalEvent::CancelRequested);
            Step::To(send_cancel(ctx, customer, payment, follow, true, cx))
        }
        other => Step::To(other),
    }
}
