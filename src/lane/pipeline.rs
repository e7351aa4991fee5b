//! The lane's pipeline: journal writes in order on one writer task per lane, and calls as tasks
//! whose answers come back to the lane actor.
//!
//! What must stay true: a call that changes something at Vipps is only sent once every record
//! the session wrote before it is durable; if that write fails a keyed call is not sent and
//! answers `Event::JournalWriteFailed` (the session owes it and tries again). Any other record
//! whose write fails is kept and written again, in order, before anything newer, until the
//! store takes it: nothing the session journalled is dropped. Reads never wait for the disk. A
//! session's close answers its `durable` once it is on disk: only then is the terminal told how
//! the checkout ended.

use std::time::Duration;

use actix::Recipient;
use tokio::sync::{mpsc, oneshot, watch};

use super::effects::{EffectDeps, call};
use super::messages::CallAnswered;
use crate::domain::{LaneId, PaymentReference};
use crate::session::{Effect, Event, JournalRecord, SessionId};
use crate::store::{
    NewIdempotencyKey, NewPayment, PaymentIndexState, PaymentUpdate, RecordSideWrites, Store,
};

/// Journal writes and calls queued per lane before the lane reports itself overloaded.
pub const PIPELINE_CAPACITY: usize = 256;
/// Failed writes a lane keeps to write again once the store takes writes. A session that cannot
/// journal stops sending keyed calls, so only a few records pile up; past this the lane logs
/// and counts every record it cannot keep.
pub const BACKLOG_CAPACITY: usize = 1024;
/// How often a lane with a backlog tries the store again, unless the store says it is back.
const BACKLOG_RETRY: Duration = Duration::from_secs(2);

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
        /// Answered once the close (and the `session_ended` before it) is durable.
        durable: Option<oneshot::Sender<()>>,
    },
    Call(Effect),
}

/// A session's close: its outcome, and who waits for it to be durable.
#[derive(Debug)]
struct Closing {
    outcome: &'static str,
    durable: Option<oneshot::Sender<()>>,
}

impl Closing {
    fn written(self) {
        if let Some(durable) = self.durable {
            let _ = durable.send(());
        }
    }
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
        close: Option<Closing>,
    },
    Close {
        session: SessionId,
        close: Closing,
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
                Work::Close {
                    session,
                    outcome,
                    durable,
                } => Write::Close {
                    session,
                    close: Closing { outcome, durable },
                },
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
                        close: closing_with,
                    }) if closing == session => close = Some(closing_with),
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
    if let Write::Record { record, done, .. } = &write {
        // Calls after it need not wait: only a keyed call depends on its own record, and that
        // call is not sent (the session journals the record again when it retries).
        done.send_replace(Some(false));
        if record.keyed_call().is_some() {
            return;
        }
    }
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
        } => match persist(
            &deps.store,
            &deps.lane,
            &session,
            &record,
            close.as_ref().map(|c| c.outcome),
        )
        .await
        {
            Ok(()) => {
                done.send_replace(Some(true));
                if let Some(close) = close {
                    close.written();
                }
                Ok(())
            }
            Err(()) => Err(Write::Record {
                session,
                record,
                done,
                close,
            }),
        },
        Write::Close { session, close } => {
            match deps
                .store
                .close_session(&deps.lane, session.as_str(), close.outcome)
                .await
            {
                Ok(_) => {
                    close.written();
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(lane = %deps.lane, error = %e, "could not close the session in the journal; kept to try again");
                    Err(Write::Close { session, close })
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
            Some(PaymentIndexState::Requested)
        );
    }
}
