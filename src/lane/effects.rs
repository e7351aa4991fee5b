//! Carries a lane's effects out: journal writes in order on one writer task per lane, Vipps and
//! membership calls as tasks whose answers come back to the lane actor as events.
//!
//! What must stay true: a call that changes something at Vipps is only sent once every record
//! the session wrote before it is durable; if that write fails a keyed call is not sent and
//! answers `Event::JournalWriteFailed` (the session owes it and tries again). Any other record
//! whose write fails is kept and written again, in order, before anything newer, until the
//! store takes it: nothing the session journalled is dropped. Reads never wait for the disk.

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use secrecy::SecretString;
use tokio::sync::{mpsc, watch};

use crate::domain::{LaneId, Msisdn, PaymentReference};
use crate::followup::EnrollmentFollower;
use crate::session::{
    Aggregate, CallError, CallId, CreatePaymentRequest, Effect, Event, JournalRecord,
    LoginAccessToken, NewMember, PaymentState, SessionId, Userinfo,
};
use crate::store::{
    Consent, Member, MemberSource, MembershipStore, NewIdempotencyKey, NewPayment,
    PaymentIndexState, PaymentUpdate, RecordSideWrites, Store,
};
use crate::vipps::actor::VippsHandle;
use crate::vipps::error::VippsError;
use crate::vipps::models::{self, AuthReqId, LoginPoll, LoginRequest, LoginToken};

/// Journal writes and calls queued per lane before the lane reports itself overloaded.
pub const PIPELINE_CAPACITY: usize = 256;
/// Failed writes a lane keeps to write again once the store takes writes. A session that cannot
/// journal stops sending keyed calls, so only a few records pile up; past this the lane logs
/// and counts every record it cannot keep.
pub const BACKLOG_CAPACITY: usize = 1024;
/// How often a lane with a backlog tries the store again, unless the store says it is back.
const BACKLOG_RETRY: Duration = Duration::from_secs(2);
/// Check-in is best effort: it never holds anything up for longer than this.
pub const CHECK_IN_DEADLINE: Duration = Duration::from_secs(3);
/// How long Vipps keeps a Login open when lanehub does not ask for another expiry.
pub const VIPPS_LOGIN_EXPIRY: Duration = Duration::from_secs(600);
/// The range of `requested_expiry` Vipps accepts.
const REQUESTED_EXPIRY: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(900);

/// How lanehub starts a Login: the scopes (`vipps.login_scopes`) and the expiry it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSettings {
    pub scopes: Vec<String>,
    /// Sent as `requested_expiry` when the late-enrollment follower gives up sooner than Vipps'
    /// own expiry would: a Login nobody follows would only block the customer's next one.
    pub requested_expiry: Option<Duration>,
}

impl LoginSettings {
    /// The scopes from `vipps.login_scopes`; the expiry from how long enrollments are followed.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        let followed = settings.supervisor.late_enrollment_window;
        LoginSettings {
            scopes: settings.vipps.login_scopes.clone(),
            requested_expiry: (followed < VIPPS_LOGIN_EXPIRY)
                .then(|| followed.clamp(*REQUESTED_EXPIRY.start(), *REQUESTED_EXPIRY.end())),
        }
    }

    fn request(&self, phone_number: Msisdn) -> LoginRequest {
        LoginRequest {
            phone_number,
            scopes: self.scopes.clone(),
            binding_message: None,
            requested_expiry: self.requested_expiry,
        }
    }
}

/// An answer for the lane actor.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct CallAnswered(pub Event);

/// What the pipeline does, in order.
#[derive(Debug)]
pub enum Work {
    Persist {
        session: SessionId,
        record: JournalRecord,
    },
    Close {
        session: SessionId,
        outcome: &'static str,
    },
    Call(Effect),
}

/// What a lane needs to carry out effects; shared by every incarnation of the lane.
#[derive(Clone)]
pub struct EffectDeps {
    pub lane: LaneId,
    pub vipps: VippsHandle,
    pub store: Store,
    pub members: Arc<dyn MembershipStore>,
    /// Takes over a consent that comes after the session stopped waiting for it.
    pub follower: EnrollmentFollower,
    pub login: Arc<LoginSettings>,
}

/// Whether a journal record reached the disk: `None` while it is queued.
type Durable = watch::Receiver<Option<bool>>;

/// The store work of one lane, done in order by its writer task.
enum Write {
    Record {
        session: SessionId,
        record: JournalRecord,
        done: watch::Sender<Option<bool>>,
        /// The session's close, written with its `session_ended` record.
        close: Option<&'static str>,
    },
    Close {
        session: SessionId,
        outcome: &'static str,
    },
    /// Keeps the payments index in step with what Vipps answered (best effort).
    Note {
        reference: PaymentReference,
        update: PaymentUpdate,
    },
}

/// Starts the lane's pipeline; answers go to `answers`.
///
/// Journal writes go to one writer task that does them in order; a call starts at once unless it
/// must follow the journal (`follows_journal`), in which case it waits until the latest record
/// handed to the writer before it is durable. So a check-in or a status read never waits for a
/// disk sync, while a payment request is only sent once its record is on disk.
pub fn spawn_pipeline(deps: EffectDeps, answers: Recipient<CallAnswered>) -> mpsc::Sender<Work> {
    let (tx, mut rx) = mpsc::channel::<Work>(PIPELINE_CAPACITY);
    let (writes, writes_rx) = mpsc::channel::<Write>(PIPELINE_CAPACITY);
    actix::spawn(write_in_order(deps.clone(), writes_rx));
    actix::spawn(async move {
        // The latest record handed to the writer.
        let mut latest: Option<Durable> = None;
        while let Some(work) = rx.recv().await {
            let write = match work {
                Work::Persist { session, record } => {
                    let (done, durable) = watch::channel(None);
                    latest = Some(durable);
                    Write::Record {
                        session,
                        record,
                        done,
                        close: None,
                    }
                }
                Work::Close { session, outcome } => Write::Close { session, outcome },
                Work::Call(effect) => {
                    let after = latest.clone().filter(|_| follows_journal(&effect));
                    actix::spawn(perform(
                        deps.clone(),
                        effect,
                        after,
                        answers.clone(),
                        writes.clone(),
                    ));
                    continue;
                }
            };
            if writes.send(write).await.is_err() {
                tracing::error!(lane = %deps.lane, "the lane's journal writer stopped");
                break;
            }
        }
    });
    tx
}

/// Calls that wait for the journal records before them to be durable: whatever Vipps keeps a
/// record of (a payment, a capture, a Login that a customer may consent to), so a crash cannot
/// leave Vipps knowing of something the journal does not. Reads and the best-effort check-in
/// change nothing at Vipps and go at once.
fn follows_journal(effect: &Effect) -> bool {
    !matches!(
        effect,
        Effect::ExchangeQr { .. }
            | Effect::LookupMembership { .. }
            | Effect::SendCheckIn { .. }
            | Effect::ReadPayment { .. }
    )
}

/// Performs one call once the record it follows is durable; a keyed call whose record could not
/// be written is not sent.
async fn perform(
    deps: EffectDeps,
    effect: Effect,
    after: Option<Durable>,
    answers: Recipient<CallAnswered>,
    writes: mpsc::Sender<Write>,
) {
    if let Some(mut durable) = after {
        let written = matches!(
            durable.wait_for(Option::is_some).await.as_deref(),
            Ok(Some(true))
        );
        if !written && effect.idempotency_key().is_some() {
            if let Some(call) = effect.call() {
                answers.do_send(CallAnswered(Event::JournalWriteFailed {
                    call,
                    detail: "the journal could not be written".into(),
                }));
            }
            return;
        }
    }
    let (event, note) = call(&deps, effect).await;
    // The lane may have been replaced meanwhile; its answer is then moot.
    if let Some(event) = event {
        answers.do_send(CallAnswered(event));
    }
    // After the answer: the index is for the back office, the cashier must not wait for it.
    if let Some((reference, update)) = note {
        let _ = writes.send(Write::Note { reference, update }).await;
    }
}

/// Does the lane's store work in order. A `session_ended` record and the close that follows it
/// are one store request.
///
/// A write that fails is kept in a backlog and tried again (every `BACKLOG_RETRY`, or at once
/// when the store reports itself writable) before anything newer is written, so the journal keeps
/// its order. A record that guards a keyed call is not kept: the call is not sent, and the
/// session journals it again when it retries the call.
async fn write_in_order(deps: EffectDeps, mut writes: mpsc::Receiver<Write>) {
    let mut health = deps.store.health();
    let mut backlog: std::collections::VecDeque<Write> = std::collections::VecDeque::new();
    let mut next = None;
    loop {
        let write = match next.take() {
            Some(write) => write,
            None if backlog.is_empty() => match writes.recv().await {
                Some(write) => write,
                None => break,
            },
            None => {
                tokio::select! {
                    write = writes.recv() => match write {
                        Some(write) => write,
                        None => break,
                    },
                    _ = tokio::time::sleep(BACKLOG_RETRY) => {
                        flush(&deps, &mut backlog).await;
                        continue;
                    }
                    changed = health.changed() => {
                        if changed.is_ok() && health.borrow_and_update().writable {
                            flush(&deps, &mut backlog).await;
                        }
                        continue;
                    }
                }
            }
        };
        let write = match write {
            // The close that journals a session's end travels with it.
            Write::Record {
                session,
                record: record @ JournalRecord::SessionEnded { .. },
                done,
                ..
            } => {
                let mut close = None;
                match writes.try_recv() {
                    Ok(Write::Close {
                        session: closing,
                        outcome,
                    }) if closing == session => close = Some(outcome),
                    Ok(other) => next = Some(other),
                    Err(_) => {}
                }
                Write::Record {
                    session,
                    record,
                    done,
                    close,
                }
            }
            other => other,
        };
        if !backlog.is_empty() {
            flush(&deps, &mut backlog).await;
        }
        if !backlog.is_empty() {
            // Older records wait: nothing newer is written before them.
            keep(&deps, &mut backlog, write);
            continue;
        }
        if let Err(write) = write_one(&deps, write).await {
            keep(&deps, &mut backlog, write);
        }
    }
}

/// Keeps a failed write for later; a record that guards a keyed call is answered "not written"
/// instead, so its call is not sent.
fn keep(deps: &EffectDeps, backlog: &mut std::collections::VecDeque<Write>, write: Write) {
    let write = match write {
        Write::Record { record, done, .. } if record.keyed_call().is_some() => {
            done.send_replace(Some(false));
            return;
        }
        // Calls after it need not wait: only keyed calls depend on their own record.
        Write::Record {
            session,
            record,
            done,
            close,
        } => {
            done.send_replace(Some(false));
            Write::Record {
                session,
                record,
                done,
                close,
            }
        }
        other => other,
    };
    if backlog.len() >= BACKLOG_CAPACITY {
        tracing::error!(lane = %deps.lane, "the lane's journal backlog is full; a write is lost");
        crate::metrics::queue_dropped(crate::metrics::Queue::JournalBacklog);
        return;
    }
    backlog.push_back(write);
}

/// Writes the backlog in order, stopping at the first write that fails again.
async fn flush(deps: &EffectDeps, backlog: &mut std::collections::VecDeque<Write>) {
    while let Some(write) = backlog.pop_front() {
        if let Err(write) = write_one(deps, write).await {
            backlog.push_front(write);
            return;
        }
    }
    tracing::info!(lane = %deps.lane, "the lane's journal backlog is written");
}

/// Does one store write; gives it back if the store refused it.
async fn write_one(deps: &EffectDeps, write: Write) -> Result<(), Write> {
    match write {
        Write::Record {
            session,
            record,
            done,
            close,
        } => match persist(&deps.store, &deps.lane, &session, &record, close).await {
            Ok(()) => {
                done.send_replace(Some(true));
                Ok(())
            }
            Err(()) => Err(Write::Record {
                session,
                record,
                done,
                close,
            }),
        },
        Write::Close { session, outcome } => {
            match deps
                .store
                .close_session(&deps.lane, session.as_str(), outcome)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::error!(lane = %deps.lane, error = %e, "could not close the session in the journal; kept to try again");
                    Err(Write::Close { session, outcome })
                }
            }
        }
        Write::Note { reference, update } => {
            match deps.store.update_payment(&reference, update.clone()).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::warn!(lane = %deps.lane, %reference, error = %e, "could not update the payments index; kept to try again");
                    Err(Write::Note { reference, update })
                }
            }
        }
    }
}

/// Writes one record with what it brings along (payments index row, idempotency key, the
/// session's close) in one store request: all of it or none.
async fn persist(
    store: &Store,
    lane: &LaneId,
    session: &SessionId,
    record: &JournalRecord,
    close: Option<&'static str>,
) -> Result<(), ()> {
    let session = session.as_str();
    let payment = match record {
        JournalRecord::PaymentRequested {
            reference, amount, ..
        } => Some(NewPayment {
            reference: reference.clone(),
            amount: *amount,
            state: PaymentIndexState::Requested,
        }),
        _ => None,
    };
    let side = RecordSideWrites {
        idempotency_key: record.keyed_call().map(|(op, key)| NewIdempotencyKey {
            operation: op.as_str().to_owned(),
            key: key.clone(),
            reference: payment.as_ref().map(|p| p.reference.clone()),
        }),
        payment,
    };
    let result = match close {
        Some(outcome) => store
            .append_and_close(lane, session, record.kind(), record, outcome)
            .await
            .map(drop),
        None => store
            .append_with(lane, session, record.kind(), record, side)
            .await
            .map(drop),
    };
    result.map_err(|e| {
        tracing::error!(%lane, kind = record.kind(), error = %e, fault = e.kind(), "journal write failed");
    })
}

/// Maps a client error to what the session needs to know: sent or not, final or not.
pub fn call_error(e: &VippsError) -> CallError {
    let detail = e.to_string();
    match e {
        VippsError::Unavailable { .. }
        | VippsError::Overloaded { .. }
        | VippsError::InvalidRequest(_)
        | VippsError::Shutdown => CallError::Unavailable { detail },
        VippsError::Status { status, .. } if (400..500).contains(status) && !e.is_retryable() => {
            CallError::Rejected {
                status: *status,
                detail,
            }
        }
        VippsError::DeadlineExceeded { attempts: 0, .. } => CallError::Unavailable { detail },
        _ => CallError::Unknown { detail },
    }
}

fn state(s: models::PaymentState) -> PaymentState {
    match s {
        models::PaymentState::Created => PaymentState::Created,
        models::PaymentState::Authorized => PaymentState::Authorized,
        models::PaymentState::Aborted => PaymentState::Aborted,
        models::PaymentState::Expired => PaymentState::Expired,
        models::PaymentState::Terminated => PaymentState::Terminated,
    }
}

fn aggregate(a: &models::Aggregate) -> Aggregate {
    Aggregate {
        authorized: a.authorized_amount.value,
        captured: a.captured_amount.value,
        cancelled: a.cancelled_amount.value,
        refunded: a.refunded_amount.value,
    }
}

/// The payments index update for what Vipps said of a payment.
fn note(
    payment_state: models::PaymentState,
    agg: &models::Aggregate,
    reference: &PaymentReference,
) -> Option<Note> {
    let update = PaymentUpdate {
        state: Some(payment_state.as_str().to_owned()),
        captured: Some(agg.captured_amount.value),
        refunded: Some(agg.refunded_amount.value),
    };
    Some((reference.clone(), update))
}

fn create_request(r: &CreatePaymentRequest) -> models::CreatePaymentRequest {
    let mut req = models::CreatePaymentRequest::in_store(
        r.reference.clone(),
        r.amount,
        r.msisdn.clone(),
        r.description.clone(),
    );
    req.receipt = r.receipt.as_ref().map(|receipt| models::Receipt {
        order_lines: receipt
            .order_lines
            .iter()
            .map(|l| models::OrderLine {
                name: l.name.clone(),
                id: l.id.clone(),
                total_amount: l.total,
                total_amount_excluding_tax: l.total.saturating_sub(l.vat_amount),
                total_tax_amount: l.vat_amount,
                tax_percentage: l.vat_percent,
                unit_info: Some(models::UnitInfo {
                    unit_price: l.unit_price,
                    quantity: l.quantity.to_string(),
                    quantity_unit: None,
                }),
                discount: None,
                is_return: None,
            })
            .collect(),
        bottom_line: models::BottomLine {
            currency: r.amount.currency,
            pos_id: Some(receipt.pos_id.to_string()),
            receipt_number: receipt.receipt_number.clone(),
            tip_amount: None,
        },
    });
    req
}

/// The session's form of a userinfo answer.
pub fn userinfo(u: models::Userinfo) -> Userinfo {
    Userinfo {
        name: u.name,
        email: u.email,
        phone_number: u.phone_number,
        // Vipps nests them in `delegatedConsents`; a top-level list is read too.
        consents: u
            .consents
            .into_iter()
            .chain(u.delegated_consents.into_iter().flat_map(|d| d.consents))
            .map(|c| crate::session::Consent {
                id: c.id,
                accepted: c.accepted,
                required: c.required,
                text: c.text_displayed_to_user,
            })
            .collect(),
    }
}

fn member(deps: &EffectDeps, m: NewMember) -> Member {
    enrolled_member(&deps.lane, m.msisdn, m.userinfo)
}

/// The member an enrollment at `lane` stores: name, e-mail and consents from userinfo.
pub fn enrolled_member(lane: &LaneId, msisdn: Msisdn, userinfo: Userinfo) -> Member {
    Member {
        phone_number: msisdn,
        name: userinfo.name.unwrap_or_default(),
        email: userinfo.email.unwrap_or_default(),
        consents: userinfo
            .consents
            .into_iter()
            .map(|c| Consent {
                id: c.id,
                accepted: c.accepted,
                required: c.required,
                text: c.text.unwrap_or_default(),
            })
            .collect(),
        enrolled_at: chrono::Utc::now(),
        enrolled_lane: Some(lane.clone()),
        source: MemberSource::Enrollment,
    }
}

/// What the payments index should learn from a call's answer.
type Note = (PaymentReference, PaymentUpdate);

/// Performs one call effect and turns its result into the session's answer.
async fn call(deps: &EffectDeps, effect: Effect) -> (Option<Event>, Option<Note>) {
    let vipps = &deps.vipps;
    let mut noted = None;
    let event = match effect {
        Effect::ExchangeQr { call, qr } => match vipps.exchange_qr(&qr).await {
            Ok(q) => Event::QrExchanged {
                call,
                msisdn: q.msisdn,
            },
            Err(e) => Event::QrExchangeFailed {
                call,
                error: call_error(&e),
            },
        },
        Effect::LookupMembership { call, msisdn } => lookup(deps, call, &msisdn).await,
        Effect::SendCheckIn {
            call,
            msisdn,
            is_member,
        } => {
            match vipps
                .with_deadline(CHECK_IN_DEADLINE)
                .check_in(&msisdn, is_member)
                .await
            {
                Ok(_) => Event::CheckInSent { call },
                Err(e) => Event::CheckInFailed {
                    call,
                    error: call_error(&e),
                },
            }
        }
        Effect::StartLogin { call, msisdn } => {
            let request = deps.login.request(msisdn);
            match vipps.login_authenticate(&request).await {
                Ok(auth) => Event::LoginStarted {
                    call,
                    auth_req_id: auth.auth_req_id.0,
                    interval: auth.interval,
                    expires_in: auth.expires_in,
                },
                Err(e) => Event::LoginStartFailed {
                    call,
                    error: login_start_error(deps, &request, &e),
                },
            }
        }
        Effect::PollLogin { call, auth_req_id } => poll_login(deps, call, auth_req_id).await,
        Effect::FetchUserinfo { call, token } => fetch_userinfo(deps, call, &token).await,
        Effect::StoreMember { call, member: m } => {
            match deps.members.upsert_member(member(deps, m)).await {
                Ok(_) => Event::MemberStored { call },
                Err(e) => Event::MemberStoreFailed {
                    call,
                    reason: e.to_string(),
                },
            }
        }
        Effect::CreatePayment { call, request } => {
            match vipps
                .create_payment(&request.idempotency_key, &create_request(&request))
                .await
            {
                Ok(_) => Event::PaymentCreated { call },
                Err(e) => Event::PaymentCreateFailed {
                    call,
                    error: call_error(&e),
                },
            }
        }
        Effect::ReadPayment { call, reference } => match vipps.get_payment(&reference).await {
            Ok(p) => {
                noted = note(p.state, &p.aggregate, &reference);
                Event::PaymentStatus {
                    call,
                    state: state(p.state),
                    aggregate: aggregate(&p.aggregate),
                }
            }
            Err(e) if e.status() == Some(404) => Event::PaymentNotFound { call },
            Err(e) => Event::PaymentReadFailed {
                call,
                error: call_error(&e),
            },
        },
        Effect::CapturePayment {
            call,
            reference,
            idempotency_key,
            amount,
        } => {
            match vipps
                .capture_payment(&reference, &idempotency_key, amount)
                .await
            {
                Ok(m) => {
                    noted = note(m.state, &m.aggregate, &reference);
                    Event::PaymentCaptured {
                        call,
                        state: state(m.state),
                        aggregate: aggregate(&m.aggregate),
                    }
                }
                Err(e) => Event::CaptureFailed {
                    call,
                    error: call_error(&e),
                },
            }
        }
        Effect::CancelPayment {
            call,
            reference,
            idempotency_key,
            cancel_transaction_only,
        } => {
            match vipps
                .cancel_payment(&reference, &idempotency_key, cancel_transaction_only)
                .await
            {
                Ok(m) => {
                    noted = note(m.state, &m.aggregate, &reference);
                    Event::PaymentCancelled {
                        call,
                        state: state(m.state),
                        aggregate: aggregate(&m.aggregate),
                    }
                }
                Err(e) => Event::CancelFailed {
                    call,
                    error: call_error(&e),
                },
            }
        }
        // Not calls: the actor handles them itself.
        Effect::Persist { .. }
        | Effect::NotifyTerminal(_)
        | Effect::Record(_)
        | Effect::SessionEnded { .. } => {
            return (None, None);
        }
    };
    (Some(event), noted)
}

async fn lookup(deps: &EffectDeps, call: CallId, msisdn: &Msisdn) -> Event {
    match deps.members.member(msisdn).await {
        Ok(found) => Event::MembershipKnown {
            call,
            is_member: found.is_some(),
        },
        Err(e) => Event::MembershipLookupFailed {
            call,
            reason: e.to_string(),
        },
    }
}

/// What the cashier learns of a Login start that failed. A refusal (400) names Vipps' reason and
/// is logged with the scopes asked for, since the usual cause is configuration: a scope such as
/// `delegatedConsents` that Vipps has not activated for the client. A start whose answer was lost
/// is not sent again (the customer may already have the request in the app).
fn login_start_error(deps: &EffectDeps, request: &LoginRequest, e: &VippsError) -> CallError {
    let scopes = request.scopes.join(" ");
    // After retries the last answer says what happened.
    let answer = match e {
        VippsError::DeadlineExceeded {
            last: Some(last), ..
        } => last.as_ref(),
        e => e,
    };
    let error = call_error(e);
    let detail = match answer.status() {
        Some(400) => {
            let problem = answer.problem();
            let reason = problem
                .and_then(|p| p.oauth_error.as_deref().or(p.oauth_error_code.as_deref()))
                .unwrap_or("bad_request");
            let description = problem.and_then(|p| p.detail.as_deref()).unwrap_or("");
            tracing::warn!(lane = %deps.lane, reason, description, scopes = %scopes,
                "Vipps refused to start the Login");
            let hint = match reason {
                "invalid_scope" => {
                    " (check vipps.login_scopes: delegatedConsents needs Vipps' activation)"
                }
                _ => "",
            };
            match description {
                "" => format!("Vipps refused the login: {reason}{hint}"),
                d => format!("Vipps refused the login: {reason}: {d}{hint}"),
            }
        }
        Some(429) => {
            "a Vipps login to this customer is still open: enroll again in a few minutes".into()
        }
        _ if matches!(error, CallError::Unknown { .. }) => {
            tracing::warn!(lane = %deps.lane, error = %e, scopes = %scopes,
                "the Login start got no answer; it is not sent again");
            "Vipps did not answer; the customer may see a request in the app: enroll again in a \
             few minutes"
                .into()
        }
        _ => return error,
    };
    let detail = crate::vipps::error::mask_digit_runs(&detail);
    match error {
        CallError::Unavailable { .. } => CallError::Unavailable { detail },
        CallError::Rejected { status, .. } => CallError::Rejected { status, detail },
        CallError::Unknown { .. } => CallError::Unknown { detail },
    }
}

/// One token poll. On success the session journals the consent (with the token) before it asks
/// for userinfo, since Vipps hands the token out only once.
async fn poll_login(deps: &EffectDeps, call: CallId, auth_req_id: String) -> Event {
    let id = AuthReqId(auth_req_id);
    match deps.vipps.login_token(&id).await {
        Ok(LoginPoll::Pending) => Event::LoginPending { call },
        Ok(LoginPoll::SlowDown) => Event::LoginSlowDown { call },
        Ok(LoginPoll::Denied) => Event::LoginDenied { call },
        Ok(LoginPoll::Expired) => Event::LoginExpired { call },
        Ok(LoginPoll::Success(token)) => Event::LoginConsented {
            call,
            auth_req_id: id.0,
            token: login_access_token(&token),
        },
        // Vipps hands the token out once: after a lost answer a later poll is refused.
        Err(e)
            if e.status() == Some(400)
                && e.problem().and_then(|p| p.oauth_error.as_deref()) == Some("invalid_grant") =>
        {
            tracing::warn!(lane = %deps.lane, error = %e, "Vipps refused the token poll: its token was handed out with an answer that was lost");
            Event::LoginFailed {
                call,
                error: CallError::Rejected {
                    status: 400,
                    detail: "the customer's consent was lost on the way from Vipps: enroll again \
                             later"
                        .to_owned(),
                },
            }
        }
        Err(e) => Event::LoginFailed {
            call,
            error: call_error(&e),
        },
    }
}

/// The session's form of a Login access token (journalled, never shown by `Debug`).
pub fn login_access_token(token: &LoginToken) -> LoginAccessToken {
    LoginAccessToken::new(SecretString::from(token.bearer().to_owned()))
}

async fn fetch_userinfo(deps: &EffectDeps, call: CallId, token: &LoginAccessToken) -> Event {
    let token = LoginToken::new(token.secret().clone());
    match deps.vipps.userinfo(&token).await {
        Ok(u) => Event::UserinfoFetched {
            call,
            userinfo: userinfo(u),
        },
        Err(e) => {
            if e.status() == Some(401) {
                // The customer consented but the token expired first (a restart came too late):
                // the one enrollment loss the journal cannot prevent.
                tracing::warn!(lane = %deps.lane, error = %e, "userinfo refused the consented login's token; the enrollment is lost");
            }
            Event::UserinfoFailed {
                call,
                error: call_error(&e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Amount;
    use crate::session::KeyedOperation;

    fn cancel(session: &SessionId, reference: &PaymentReference, only: bool) -> JournalRecord {
        let op = if only {
            KeyedOperation::Cancel
        } else {
            KeyedOperation::CancelFull
        };
        JournalRecord::CancelRequested {
            reference: reference.clone(),
            idempotency_key: op.key(session, reference),
            cancel_transaction_only: only,
            attempt: 1,
        }
    }

    #[test]
    fn requested_expiry_is_sent_only_when_the_follower_gives_up_before_vipps() {
        let mut settings = crate::config::Settings::load(None, Vec::new()).unwrap();
        let expiry = |settings: &crate::config::Settings| {
            LoginSettings::from_settings(settings).requested_expiry
        };
        // The default window (10 min) outlasts Vipps' own expiry.
        assert_eq!(expiry(&settings), None);
        settings.supervisor.late_enrollment_window = Duration::from_secs(300);
        assert_eq!(expiry(&settings), Some(Duration::from_secs(300)));
        // Vipps accepts 60 s at least.
        settings.supervisor.late_enrollment_window = Duration::from_secs(10);
        assert_eq!(expiry(&settings), Some(Duration::from_secs(60)));
        let login = LoginSettings::from_settings(&settings);
        assert_eq!(login.scopes, settings.vipps.login_scopes);
        let request = login.request("4791234567".parse().unwrap());
        assert_eq!(request.requested_expiry, Some(Duration::from_secs(60)));
    }

    #[actix_web::test]
    async fn a_full_cancel_after_a_transaction_only_cancel_is_journalled_with_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let lane: LaneId = "1".parse().unwrap();
        let session = SessionId::from_uuid(uuid::Uuid::new_v4());
        let reference: PaymentReference = "lh-1-0123456789abcdef".parse().unwrap();
        let requested = JournalRecord::PaymentRequested {
            reference: reference.clone(),
            idempotency_key: KeyedOperation::Create.key(&session, &reference),
            amount: Amount::nok(100),
            msisdn: "4791234567".parse().unwrap(),
            description: "test".into(),
            receipt_number: None,
            attempt: 1,
        };
        for record in [
            requested,
            cancel(&session, &reference, true),
            // The payment was authorised meanwhile: the full cancel must still be written.
            cancel(&session, &reference, false),
        ] {
            assert!(
                persist(&store, &lane, &session, &record, None)
                    .await
                    .is_ok(),
                "{} was refused",
                record.kind()
            );
        }
        let stored =
            |op: KeyedOperation| store.idempotency_key(&lane, session.as_str(), op.as_str());
        let key = |op: KeyedOperation| Some(op.key(&session, &reference));
        assert_eq!(
            stored(KeyedOperation::Create).await.unwrap(),
            key(KeyedOperation::Create)
        );
        assert_eq!(
            stored(KeyedOperation::Cancel).await.unwrap(),
            key(KeyedOperation::Cancel)
        );
        assert_eq!(
            stored(KeyedOperation::CancelFull).await.unwrap(),
            key(KeyedOperation::CancelFull)
        );
        assert_eq!(
            store.payment(&reference).await.unwrap().map(|p| p.state),
            Some(PaymentIndexState::Requested.as_str().to_owned())
        );
    }
}
