//! lanehub's durable storage: one embedded SQLite file, `<store.data_dir>/lanehub.db`, holding
//! the session journal, the payments index, idempotency keys, run-time settings and members.
//!
//! `Store` is a cheap, cloneable handle. All SQLite writes run on one dedicated thread
//! ("lanehub-store") that owns the writing connection, so no actor thread ever blocks on disk: a
//! method sends a job through a bounded queue (`STORE_QUEUE_CAPACITY`) and awaits a oneshot
//! reply. Every method returns a `'static` future, so an actor can `ctx.spawn` it directly.
//!
//! Pure reads (member lookups, payments, settings, a session's records) run on a second thread
//! ("lanehub-store-read") with its own read-only connection, so they never wait behind a batch's
//! fsync. WAL mode lets it read the last committed state while the writer works; it sees exactly
//! what an awaited write has made durable, never a batch in progress. Recovery reads (open
//! sessions) stay on the writer.
//!
//! Group commit: the thread takes a request and every request already queued behind it (up to
//! `MAX_BATCH_JOBS`) and runs them in ONE transaction (`BEGIN IMMEDIATE` … `COMMIT`), so one
//! fsync covers the batch. Each request runs in its own savepoint: one that fails or panics
//! rolls back only its own changes. Requests that cannot run inside a transaction (a backup's
//! `VACUUM INTO`) go through `call_exclusive`: the current batch commits first, then they run
//! alone.
//!
//! Durability contract: WAL mode with `synchronous=FULL`, and a request's future resolves only
//! after the COMMIT covering it succeeded, so an `Ok` write is on disk. If that COMMIT fails,
//! every request of the batch gets `StoreError::NotCommitted` and none of its writes is kept.
//! If a caller drops the future after sending, the write may still commit.
//! Both threads end when the last handle is dropped.

mod backup;
mod error;
mod journal;
mod late_enrollments;
mod member_csv;
mod members;
mod outbox;
mod payments;
mod retention;
mod rows;
pub mod schema;
mod settings;

pub mod admin;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use backup::BackupReport;
pub use error::{Result, StoreError, StoreFault};
pub use journal::{CLOSED_KIND, JournalRecord, SessionJournal};
pub use late_enrollments::{LATE_ENROLLMENT_OUTCOMES, LateEnrollment, LateEnrollmentHandover};
pub use member_csv::{CSV_COLUMNS, CsvError, RowProblem, read_members, write_members};
pub use members::{
    Consent, ImportCounts, InMemoryMembers, Member, MemberSource, MembershipStore, StoreFuture,
    Upserted,
};
pub use outbox::{OutboxEntry, OutboxStats, Undelivered};
pub use payments::{
    NewIdempotencyKey, NewPayment, PaymentIndexState, PaymentRecord, PaymentUpdate,
};
pub use retention::Pruned;
pub use schema::{DATABASE_FILE, OpenMode, SCHEMA_VERSION};

use crate::domain::{Amount, IdempotencyKey, LaneId, Msisdn, PaymentReference};

/// How many requests may wait for the store thread before callers wait to enqueue.
pub const STORE_QUEUE_CAPACITY: usize = 256;

/// The most requests one transaction covers; bounds how long the first of them waits.
pub const MAX_BATCH_JOBS: usize = 128;

/// Answers a request that has run: given the outcome of the COMMIT covering it, sends the
/// request's held result or the commit's error.
type Reply = Box<dyn FnOnce(Result<()>) + Send>;

/// Runs a request in its savepoint and returns how to answer it.
type BatchedJob = Box<dyn FnOnce(&mut Connection) -> Reply + Send>;

/// A read on the reader thread; it answers at once.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// A request to the store thread.
enum Job {
    /// Runs in its own savepoint inside the batch transaction; answered after the COMMIT.
    Batched(BatchedJob),
    /// Runs alone, outside any transaction, and answers at once.
    Exclusive(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// What a journal record brings along, written in the same job and savepoint as the record:
/// all of them are kept or none (`Store::append_with`). Lane and session are the record's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSideWrites {
    /// Records the payment (as `record_payment` does) before its create request is sent.
    pub payment: Option<NewPayment>,
    /// Stores the idempotency key of a request (as `record_idempotency_key` does).
    pub idempotency_key: Option<NewIdempotencyKey>,
}

/// A handle to the store threads; clones share them.
#[derive(Clone)]
pub struct Store {
    sender: mpsc::Sender<Job>,
    reader: mpsc::Sender<ReadJob>,
    /// Looked up once: `gauge!` searches the registry on every call.
    queue_depth: metrics::Gauge,
    path: Arc<Path>,
    health: Arc<Health>,
}

/// Whether the store takes writes, as its latest write (or write probe) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    pub writable: bool,
    /// Why the latest write failed, while the store is not writable.
    pub error: Option<String>,
}

/// Shared by every handle: the writability every write updates, and the test hook.
struct Health {
    state: tokio::sync::watch::Sender<StoreHealth>,
    writable: metrics::Gauge,
    /// Test hook (`api.test_hooks`): every write fails as on a full disk.
    refuse_writes: std::sync::atomic::AtomicBool,
}

impl Health {
    fn new() -> Self {
        let writable = metrics::gauge!(crate::metrics::STORE_WRITABLE);
        writable.set(1.0);
        Health {
            state: tokio::sync::watch::Sender::new(StoreHealth {
                writable: true,
                error: None,
            }),
            writable,
            refuse_writes: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Learns from a request's result: any committed write proves the store writable.
    fn observe<T>(&self, result: &Result<T>, wrote: bool) {
        match result {
            Ok(_) if wrote => {
                let changed = self.state.send_if_modified(|h| {
                    let was = h.writable;
                    *h = StoreHealth {
                        writable: true,
                        error: None,
                    };
                    !was
                });
                if changed {
                    self.writable.set(1.0);
                    tracing::info!("the store takes writes again");
                }
            }
            Ok(_) => {}
            Err(e) => {
                let Some(fault) = e.fault() else { return };
                metrics::counter!(crate::metrics::STORE_ERRORS, "kind" => fault.as_str())
                    .increment(1);
                if wrote && e.is_store_fault() {
                    let error = e.to_string();
                    let changed = self.state.send_if_modified(|h| {
                        let was = h.writable;
                        *h = StoreHealth {
                            writable: false,
                            error: Some(error.clone()),
                        };
                        was
                    });
                    if changed {
                        self.writable.set(0.0);
                        tracing::error!(kind = fault.as_str(), error = %error, "the store cannot be written: checkouts wait until it can");
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating `data_dir` and the file if missing) and migrates `data_dir/lanehub.db`.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_file(data_dir.as_ref().join(DATABASE_FILE), OpenMode::Create).await
    }

    /// Opens the database file at `path` on a new store thread.
    pub async fn open_file(path: impl Into<PathBuf>, mode: OpenMode) -> Result<Store> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let store = Self::start(path.into(), mode, move |r| {
            let _ = ready_tx.send(r);
        })?;
        ready_rx.await.map_err(|_| StoreError::Closed)??;
        Ok(store)
    }

    /// Like `open`, for synchronous start-up code; never call it on an actor thread.
    pub fn open_blocking(data_dir: impl AsRef<Path>) -> Result<Store> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let path = data_dir.as_ref().join(DATABASE_FILE);
        let store = Self::start(path, OpenMode::Create, move |r| {
            let _ = ready_tx.send(r);
        })?;
        ready_rx.recv().map_err(|_| StoreError::Closed)??;
        Ok(store)
    }

    fn start(
        path: PathBuf,
        mode: OpenMode,
        ready: impl FnOnce(Result<()>) + Send + 'static,
    ) -> Result<Store> {
        let (sender, receiver) = mpsc::channel::<Job>(STORE_QUEUE_CAPACITY);
        let (reader, reads) = mpsc::channel::<ReadJob>(STORE_QUEUE_CAPACITY);
        let thread_path = path.clone();
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |error| StoreError::Io { path, error }
        };
        std::thread::Builder::new()
            .name("lanehub-store".into())
            .spawn(move || {
                // The reader opens only once the writer has migrated the schema.
                let opened = schema::open(&thread_path, mode).and_then(|conn| {
                    let read_conn = schema::open_reader(&thread_path)?;
                    let read_thread = std::thread::Builder::new()
                        .name("lanehub-store-read".into())
                        .spawn(move || serve_reads(read_conn, reads))
                        .map_err(io_error(&thread_path))?;
                    Ok((conn, read_thread))
                });
                match opened {
                    Ok((mut conn, read_thread)) => {
                        ready(Ok(()));
                        serve(&mut conn, receiver);
                        // The writer closes last, so it checkpoints and removes the WAL file.
                        if read_thread.join().is_err() {
                            tracing::error!("the store reader thread panicked");
                        }
                        drop(conn);
                        tracing::debug!(path = %thread_path.display(), "store threads stopped");
                    }
                    Err(e) => ready(Err(e)),
                }
            })
            .map_err(io_error(&path))?;
        Ok(Store {
            sender,
            reader,
            queue_depth: metrics::gauge!(crate::metrics::STORE_QUEUE_DEPTH),
            path: path.into(),
            health: Arc::new(Health::new()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Follows whether the store takes writes.
    pub fn health(&self) -> tokio::sync::watch::Receiver<StoreHealth> {
        self.health.state.subscribe()
    }

    /// The store's writability now.
    pub fn health_now(&self) -> StoreHealth {
        self.health.state.borrow().clone()
    }

    /// Whether the latest write (or probe) was committed.
    pub fn is_writable(&self) -> bool {
        self.health.state.borrow().writable
    }

    /// Test hook: while set, every write fails with SQLite's "database or disk is full".
    pub fn refuse_writes(&self, refuse: bool) {
        self.health
            .refuse_writes
            .store(refuse, std::sync::atomic::Ordering::SeqCst);
    }

    /// A small committed write that tells whether the store takes writes (and updates its health).
    pub fn probe_write(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        self.call(|conn| {
            conn.prepare_cached(
                "INSERT INTO settings (key, value, updated_at) VALUES ('store.probe', '', ?1)
                 ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at",
            )?
            .execute([format_time(&Utc::now())])?;
            Ok(())
        })
    }

    /// Probes the store every `healthy` while it is writable and every `unhealthy` while it is
    /// not, so `/readyz` and the lanes learn of a full disk before a checkout meets it, and of
    /// its end without waiting for one. Runs until the store closes.
    pub async fn watch_writable(
        self,
        healthy: std::time::Duration,
        unhealthy: std::time::Duration,
    ) {
        loop {
            let wait = if self.is_writable() {
                healthy
            } else {
                unhealthy
            };
            tokio::time::sleep(wait).await;
            if let Err(StoreError::Closed) = self.probe_write().await {
                return;
            }
        }
    }

    /// Runs `f` on the store thread inside a batch and returns its result once it is committed.
    fn call<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let health = self.health.clone();
        let refused = health.clone();
        let sent = self.send(move |reply: oneshot::Sender<Result<T>>| {
            Job::Batched(Box::new(move |conn| {
                let result = if refused
                    .refuse_writes
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    Err(StoreError::disk_full())
                } else {
                    in_savepoint(conn, f)
                };
                Box::new(move |committed: Result<()>| {
                    // A failed request kept nothing, so its own error says more than the commit's.
                    // The caller may have gone away; the work is done either way.
                    let _ = reply.send(result.and_then(|value| committed.map(|()| value)));
                })
            }))
        });
        async move {
            let result = sent.await;
            health.observe(&result, true);
            result
        }
    }

    /// Runs `f` on the store thread alone, outside any transaction (for `VACUUM INTO`).
    fn call_exclusive<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.send(move |reply: oneshot::Sender<Result<T>>| {
            Job::Exclusive(Box::new(move |conn| {
                let result = catch_panic(|| f(conn));
                let _ = reply.send(result);
            }))
        })
    }

    /// Queues the job `make` builds around a reply channel and awaits the answer.
    fn send<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Job + Send + 'static,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let (sender, depth) = (self.sender.clone(), self.queue_depth.clone());
        async move {
            let (reply, answer) = oneshot::channel();
            sender
                .send(make(reply))
                .await
                .map_err(|_| StoreError::Closed)?;
            depth.set((STORE_QUEUE_CAPACITY - sender.capacity()) as f64);
            answer.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// Runs the read `f` on the reader thread, which sees only committed data.
    fn read<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reader, health) = (self.reader.clone(), self.health.clone());
        async move {
            let (reply, answer) = oneshot::channel();
            let job: ReadJob = Box::new(move |conn| {
                let _ = reply.send(catch_panic(|| f(conn)));
            });
            reader.send(job).await.map_err(|_| StoreError::Closed)?;
            let result = answer.await.map_err(|_| StoreError::Closed)?;
            health.observe(&result, false);
            result
        }
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> impl Future<Output = Result<u32>> + Send + 'static {
        self.call(|conn| schema::schema_version(conn))
    }

    // ---- journal ----

    /// Appends a record to a session's journal; returns its `seq` once it is on disk.
    pub fn append(
        &self,
        lane: &LaneId,
        session: &str,
        kind: &str,
        payload: impl Serialize,
    ) -> impl Future<Output = Result<u64>> + Send + 'static {
        let payload = serde_json::to_string(&payload);
        let (lane, session, kind) = (lane.clone(), session.to_owned(), kind.to_owned());
        self.call(move |conn| journal::append(conn, &lane, &session, &kind, &payload?))
    }

    /// Appends a record and its side writes (a payment, an idempotency key) in one job: all of
    /// them are on disk when this returns `Ok` with the record's `seq`, or none is kept.
    pub fn append_with(
        &self,
        lane: &LaneId,
        session: &str,
        kind: &str,
        payload: impl Serialize,
        side: RecordSideWrites,
    ) -> impl Future<Output = Result<u64>> + Send + 'static {
        let payload = serde_json::to_string(&payload);
        let (lane, session, kind) = (lane.clone(), session.to_owned(), kind.to_owned());
        self.call(move |conn| {
            let seq = journal::append(conn, &lane, &session, &kind, &payload?)?;
            if let Some(p) = &side.payment {
                payments::record_payment(conn, &p.reference, &lane, &session, p.amount, p.state)?;
            }
            if let Some(k) = &side.idempotency_key {
                payments::record_idempotency_key(
                    conn,
                    &lane,
                    &session,
                    &k.operation,
                    &k.key,
                    k.reference.as_ref(),
                )?;
            }
            Ok(seq)
        })
    }

    /// Appends a session's last record and its terminal `closed` record (as `close_session`
    /// writes it) in one job, both or neither; returns their `seq`s.
    pub fn append_and_close(
        &self,
        lane: &LaneId,
        session: &str,
        kind: &str,
        payload: impl Serialize,
        outcome: &str,
    ) -> impl Future<Output = Result<(u64, u64)>> + Send + 'static {
        let payload = serde_json::to_string(&payload);
        let (lane, session) = (lane.clone(), session.to_owned());
        let (kind, outcome) = (kind.to_owned(), outcome.to_owned());
        self.call(move |conn| {
            let seq = journal::append(conn, &lane, &session, &kind, &payload?)?;
            let closed = journal::close(conn, &lane, &session, &outcome)?;
            Ok((seq, closed))
        })
    }

    /// Writes a session's terminal `closed` record with `{"outcome": outcome}`; returns its `seq`.
    pub fn close_session(
        &self,
        lane: &LaneId,
        session: &str,
        outcome: &str,
    ) -> impl Future<Output = Result<u64>> + Send + 'static {
        let (lane, session, outcome) = (lane.clone(), session.to_owned(), outcome.to_owned());
        self.call(move |conn| journal::close(conn, &lane, &session, &outcome))
    }

    /// Every record of one session, oldest first (empty if unknown).
    pub fn session_records(
        &self,
        lane: &LaneId,
        session: &str,
    ) -> impl Future<Output = Result<Vec<JournalRecord>>> + Send + 'static {
        let (lane, session) = (lane.clone(), session.to_owned());
        self.read(move |conn| journal::session_records(conn, &lane, &session))
    }

    /// The lane's sessions without a `closed` record, oldest first, with their records.
    pub fn open_sessions(
        &self,
        lane: &LaneId,
    ) -> impl Future<Output = Result<Vec<SessionJournal>>> + Send + 'static {
        let lane = lane.clone();
        self.call(move |conn| journal::open_sessions(conn, Some(&lane)))
    }

    /// Every lane's open sessions, for recovery at process start.
    pub fn all_open_sessions(
        &self,
    ) -> impl Future<Output = Result<Vec<SessionJournal>>> + Send + 'static {
        self.call(|conn| journal::open_sessions(conn, None))
    }

    /// The `seq` just before the first journal record written at or after `since`.
    pub fn seq_before(
        &self,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64>> + Send + 'static {
        self.read(move |conn| journal::seq_before(conn, since))
    }

    /// The records of `kind` with a `seq` above `after`, oldest first, and the journal's highest
    /// `seq` when read: the `after` of the next call, which then misses none.
    pub fn records_of_kind_since(
        &self,
        kind: &str,
        after: u64,
    ) -> impl Future<Output = Result<(u64, Vec<JournalRecord>)>> + Send + 'static {
        let kind = kind.to_owned();
        self.read(move |conn| journal::records_of_kind_since(conn, &kind, after))
    }

    /// Deletes up to `max_sessions` sessions closed before `closed_before` with their records,
    /// and as many late enrollments resolved before it, in one transaction (`retention`).
    pub fn prune(
        &self,
        closed_before: DateTime<Utc>,
        max_sessions: usize,
    ) -> impl Future<Output = Result<Pruned>> + Send + 'static {
        self.call(move |conn| retention::prune(conn, closed_before, max_sessions))
    }

    // ---- late enrollments ----

    /// Adds a late enrollment or fills the columns its row lacks (never overwrites one); with
    /// `create` false only an existing row is filled. `Ok(true)` once a row was written durably.
    /// The Login token is dropped once the row has userinfo or an outcome, and a handover that
    /// names its session erases the token from that session's journal.
    pub fn hand_over_late_enrollment(
        &self,
        handover: LateEnrollmentHandover,
        create: bool,
    ) -> impl Future<Output = Result<bool>> + Send + 'static {
        self.call(move |conn| late_enrollments::hand_over(conn, &handover, create))
    }

    /// Resolves an unresolved late enrollment with `outcome` (one of
    /// [`LATE_ENROLLMENT_OUTCOMES`]); with `unless_consented` one holding a token or userinfo
    /// stays unresolved. Returns whether it was resolved now; a resolved row keeps no token.
    pub fn resolve_late_enrollment(
        &self,
        auth_req_id: &str,
        outcome: &str,
        unless_consented: bool,
    ) -> impl Future<Output = Result<bool>> + Send + 'static {
        let (id, outcome) = (auth_req_id.to_owned(), outcome.to_owned());
        self.call(move |conn| late_enrollments::resolve(conn, &id, &outcome, unless_consented))
    }

    /// The late enrollments still to finish, oldest first.
    pub fn unresolved_late_enrollments(
        &self,
    ) -> impl Future<Output = Result<Vec<LateEnrollment>>> + Send + 'static {
        self.read(late_enrollments::unresolved)
    }

    /// One late enrollment by its Login's `auth_req_id`.
    pub fn late_enrollment(
        &self,
        auth_req_id: &str,
    ) -> impl Future<Output = Result<Option<LateEnrollment>>> + Send + 'static {
        let id = auth_req_id.to_owned();
        self.read(move |conn| late_enrollments::get(conn, &id))
    }

    // ---- payments and idempotency keys ----

    /// Records a payment before its create request is sent (a repeat with equal details is a no-op).
    pub fn record_payment(
        &self,
        reference: &PaymentReference,
        lane: &LaneId,
        session: &str,
        amount: Amount,
        state: PaymentIndexState,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let (reference, lane, session) = (reference.clone(), lane.clone(), session.to_owned());
        self.call(move |conn| {
            payments::record_payment(conn, &reference, &lane, &session, amount, state)
        })
    }

    /// Updates a payment's last known state and amounts; returns it as stored.
    pub fn update_payment(
        &self,
        reference: &PaymentReference,
        update: PaymentUpdate,
    ) -> impl Future<Output = Result<PaymentRecord>> + Send + 'static {
        let reference = reference.clone();
        self.call(move |conn| payments::update_payment(conn, &reference, &update))
    }

    /// One payment by reference.
    pub fn payment(
        &self,
        reference: &PaymentReference,
    ) -> impl Future<Output = Result<Option<PaymentRecord>>> + Send + 'static {
        let reference = reference.clone();
        self.read(move |conn| payments::payment(conn, &reference))
    }

    /// The payments whose last known state is `state`, oldest first.
    pub fn payments_in_state(
        &self,
        state: PaymentIndexState,
    ) -> impl Future<Output = Result<Vec<PaymentRecord>>> + Send + 'static {
        self.read(move |conn| payments::payments_in_state(conn, state))
    }

    /// Every recorded payment, oldest first.
    pub fn payments(&self) -> impl Future<Output = Result<Vec<PaymentRecord>>> + Send + 'static {
        self.read(payments::payments)
    }

    /// Stores the idempotency key of `operation` before its request is sent. The same key again
    /// is a no-op; a different one is `IdempotencyKeyConflict`.
    pub fn record_idempotency_key(
        &self,
        lane: &LaneId,
        session: &str,
        operation: &str,
        key: &IdempotencyKey,
        reference: Option<&PaymentReference>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let (lane, session, operation) = (lane.clone(), session.to_owned(), operation.to_owned());
        let (key, reference) = (key.clone(), reference.cloned());
        self.call(move |conn| {
            payments::record_idempotency_key(
                conn,
                &lane,
                &session,
                &operation,
                &key,
                reference.as_ref(),
            )
        })
    }

    /// The stored idempotency key of `operation` for a session.
    pub fn idempotency_key(
        &self,
        lane: &LaneId,
        session: &str,
        operation: &str,
    ) -> impl Future<Output = Result<Option<IdempotencyKey>>> + Send + 'static {
        let (lane, session, operation) = (lane.clone(), session.to_owned(), operation.to_owned());
        self.read(move |conn| payments::idempotency_key(conn, &lane, &session, &operation))
    }

    // ---- settings ----

    /// The value stored under `key` (1 to 64 characters of a-z, 0-9, `-_.:`).
    pub fn setting(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send + 'static {
        let key = key.to_owned();
        self.read(move |conn| settings::get(conn, &key))
    }

    /// Stores `value` under `key`, replacing any earlier value.
    pub fn put_setting(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.call(move |conn| settings::put(conn, &key, &value))
    }

    /// Removes `key`; true if it was there.
    pub fn delete_setting(&self, key: &str) -> impl Future<Output = Result<bool>> + Send + 'static {
        let key = key.to_owned();
        self.call(move |conn| settings::delete(conn, &key))
    }

    /// A secret stored under `key` (e.g. the webhook secret), typed so it cannot be logged.
    pub fn secret_setting(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<SecretString>>> + Send + 'static {
        let key = key.to_owned();
        self.read(move |conn| Ok(settings::get(conn, &key)?.map(SecretString::from)))
    }

    /// Stores a secret exactly as given.
    pub fn put_secret_setting(
        &self,
        key: &str,
        value: &SecretString,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let key = key.to_owned();
        let value = SecretString::from(value.expose_secret());
        self.call(move |conn| settings::put(conn, &key, value.expose_secret()))
    }

    // ---- members ----

    /// Upserts all `members` in one transaction: all of them or none.
    pub fn import_members(
        &self,
        members: Vec<Member>,
    ) -> impl Future<Output = Result<ImportCounts>> + Send + 'static {
        self.call(move |conn| members::import(conn, &members))
    }

    /// Writes a consistent copy of the database to `dest` while writers go on.
    pub fn backup(
        &self,
        dest: &Path,
    ) -> impl Future<Output = Result<BackupReport>> + Send + 'static {
        let dest = dest.to_owned();
        // VACUUM INTO cannot run inside a transaction.
        self.call_exclusive(move |conn| backup::backup(conn, &dest))
    }
}

impl MembershipStore for Store {
    fn member(&self, phone: &Msisdn) -> StoreFuture<Option<Member>> {
        let phone = phone.clone();
        Box::pin(self.read(move |conn| members::get(conn, &phone)))
    }

    fn upsert_member(&self, member: Member) -> StoreFuture<Upserted> {
        Box::pin(self.call(move |conn| members::upsert(conn, &member)))
    }

    fn members(&self) -> StoreFuture<Vec<Member>> {
        Box::pin(self.read(members::list))
    }

    fn member_count(&self) -> StoreFuture<u64> {
        Box::pin(self.read(members::count))
    }
}

/// The store thread: runs jobs in order, in batches, until every handle is dropped.
fn serve(conn: &mut Connection, mut jobs: mpsc::Receiver<Job>) {
    let depth = metrics::gauge!(crate::metrics::STORE_QUEUE_DEPTH);
    let mut batch = Vec::with_capacity(MAX_BATCH_JOBS);
    while let Some(first) = jobs.blocking_recv() {
        let mut exclusive = None;
        match first {
            Job::Batched(job) => batch.push(job),
            Job::Exclusive(job) => exclusive = Some(job),
        }
        // Whatever queued while the last batch was syncing shares the next fsync.
        while exclusive.is_none() && batch.len() < MAX_BATCH_JOBS {
            match jobs.try_recv() {
                Ok(Job::Batched(job)) => batch.push(job),
                Ok(Job::Exclusive(job)) => exclusive = Some(job),
                Err(_) => break,
            }
        }
        depth.set(jobs.len() as f64);
        if !batch.is_empty() {
            run_batch(conn, batch.drain(..));
        }
        if let Some(job) = exclusive {
            job(conn);
            end_stray_transaction(conn);
        }
    }
}

/// The reader thread: answers reads one by one until every handle is dropped.
fn serve_reads(conn: Connection, mut jobs: mpsc::Receiver<ReadJob>) {
    while let Some(job) = jobs.blocking_recv() {
        // A job catches its own panics; statements it left are reset as they unwind.
        job(&conn);
        end_stray_transaction(&conn);
    }
}

/// Runs `jobs` in one transaction and answers each after its COMMIT, or with its failure.
fn run_batch(conn: &mut Connection, jobs: impl Iterator<Item = BatchedJob>) {
    let mut in_batch = match run_cached(conn, "BEGIN IMMEDIATE") {
        Ok(()) => true,
        Err(error) => {
            // E.g. another process held the write lock past the busy timeout. Each request's
            // savepoint is then its own transaction, as if it had come alone.
            tracing::warn!(%error, "cannot begin a store batch; running its requests one by one");
            false
        }
    };
    let mut pending: Vec<Reply> = Vec::new();
    for job in jobs {
        let reply = job(conn);
        if !in_batch {
            end_stray_transaction(conn);
            reply(Ok(()));
        } else if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (an I/O error, a full disk), so the
            // earlier requests' writes are gone too. The rest run one by one.
            let lost = || StoreError::NotCommitted {
                reason: "SQLite rolled the transaction back".into(),
                fault: StoreFault::NotCommitted,
            };
            tracing::error!("a store batch was rolled back by SQLite; its requests failed");
            for reply in pending.drain(..).chain([reply]) {
                reply(Err(lost()));
            }
            in_batch = false;
        } else {
            pending.push(reply);
        }
    }
    if !in_batch {
        return;
    }
    match run_cached(conn, "COMMIT") {
        Ok(()) => pending.into_iter().for_each(|reply| reply(Ok(()))),
        Err(error) => {
            tracing::error!(%error, requests = pending.len(), "a store batch did not commit");
            // A failed COMMIT may leave the transaction open (e.g. a deferred constraint).
            end_stray_transaction(conn);
            let (reason, fault) = (error.to_string(), error::sqlite_fault(&error));
            for reply in pending {
                reply(Err(StoreError::NotCommitted {
                    reason: reason.clone(),
                    fault,
                }));
            }
        }
    }
}

/// Runs `f` in a savepoint: kept if it succeeds, rolled back if it fails or panics.
fn in_savepoint<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T>,
) -> Result<T> {
    run_cached(conn, "SAVEPOINT request")?;
    let result = catch_panic(|| f(conn)).and_then(|value| {
        // Outside a batch, releasing the outermost savepoint is the commit.
        run_cached(conn, "RELEASE request")?;
        Ok(value)
    });
    if result.is_err() {
        // Nothing of a failed request is kept. If this fails too, SQLite has already rolled
        // back the whole transaction, which the batch loop notices and reports.
        let _ = run_cached(conn, "ROLLBACK TO request")
            .and_then(|()| run_cached(conn, "RELEASE request"));
    }
    result
}

/// Runs one statement without parameters from the statement cache: transaction control runs
/// several times per request, and parsing it each time showed in profiles.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Runs `f` atomically. Inside a transaction (every `Store` job runs in its own savepoint,
/// rolled back if the job fails) `f` runs as is; on a connection in autocommit mode (the
/// command-line tools, unit tests) it gets a savepoint of its own.
pub(crate) fn atomically<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    if !conn.is_autocommit() {
        return f(conn);
    }
    let tx = conn.savepoint()?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// Runs `f`, turning a panic into `StoreError::Panicked`: one bad request must not take the
/// store down for every lane.
fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::error!("a store request panicked; its changes were rolled back");
        Err(StoreError::Panicked)
    })
}

/// Rolls back a transaction left open by a failed commit or a panicking request, so the next
/// batch starts clean.
fn end_stray_transaction(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(error) = run_cached(conn, "ROLLBACK")
    {
        tracing::error!(%error, "cannot roll back a stray store transaction");
    }
}

/// Times are stored as RFC 3339 in UTC with as many fraction digits as needed.
pub(crate) fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(crate) fn parse_time(what: &'static str, raw: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::corrupt(what, format!("`{raw}`: {e}")))
}

/// A short label (record kind, operation, state, setting key): 1 to `max` characters of
/// ASCII letters, digits and `-_.:`.
pub(crate) fn check_label(what: &'static str, value: &str, max: usize) -> Result<()> {
    if value.is_empty()
        || value.len() > max
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(StoreError::invalid(
            what,
            format!("expected 1 to {max} characters of a-z, A-Z, 0-9 and -_.:"),
        ));
    }
    Ok(())
}

/// A session id: 1 to 128 printable ASCII characters without spaces.
pub(crate) fn check_session(session: &str) -> Result<()> {
    if session.is_empty() || session.len() > 128 || !session.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::invalid(
            "session id",
            "expected 1 to 128 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lane() -> LaneId {
        "lane-1".parse().unwrap()
    }

    /// Occupies the store thread until the returned sender sends, so that the requests queued
    /// meanwhile form the next batch.
    async fn hold_thread(
        store: &Store,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<()>>,
    ) {
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let held = tokio::spawn(store.call(move |_| {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
            Ok(())
        }));
        started_rx.await.unwrap();
        (release_tx, held)
    }

    /// Waits until `n` requests wait in the queue (spawned tasks enqueue as they are polled).
    async fn wait_queued(store: &Store, n: usize) {
        while STORE_QUEUE_CAPACITY - store.sender.capacity() < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_failing_or_panicking_request_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let l = lane();
        let (release, held) = hold_thread(&store).await;
        let first = tokio::spawn(store.append(&l, "s1", "first", json!(1)));
        let failing = tokio::spawn(store.call(|conn| -> Result<()> {
            settings::put(conn, "written.then.failed", "x")?;
            journal::append(conn, &lane(), "s1", "failed", "{}")?;
            Err(StoreError::invalid("test input", "fails after writing"))
        }));
        let panicking = tokio::spawn(store.call(|conn| -> Result<()> {
            settings::put(conn, "written.then.panicked", "x")?;
            panic!("deliberate test panic")
        }));
        let last = tokio::spawn(store.append(&l, "s1", "last", json!(2)));
        wait_queued(&store, 4).await;
        release.send(()).unwrap();
        held.await.unwrap().unwrap();

        let (first, last) = (first.await.unwrap().unwrap(), last.await.unwrap().unwrap());
        assert_eq!(failing.await.unwrap().unwrap_err().kind(), "invalid_input");
        assert_eq!(panicking.await.unwrap().unwrap_err().kind(), "panicked");
        drop(store);

        let store = Store::open(dir.path()).await.unwrap();
        let records = store.session_records(&l, "s1").await.unwrap();
        let kinds: Vec<_> = records.iter().map(|r| (r.seq, r.kind.as_str())).collect();
        assert_eq!(kinds, [(first, "first"), (last, "last")]);
        assert_eq!(store.setting("written.then.failed").await.unwrap(), None);
        assert_eq!(store.setting("written.then.panicked").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_request_of_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        // A deferred foreign key is checked only at COMMIT, so one bad row fails the batch.
        store
            .call(|conn| {
                conn.execute_batch(
                    "CREATE TABLE parent (id INTEGER PRIMARY KEY);
                     CREATE TABLE child (parent INTEGER
                         REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let l = lane();
        let (release, held) = hold_thread(&store).await;
        let appends: Vec<_> = (0..3)
            .map(|i| tokio::spawn(store.append(&l, "s1", "step", json!(i))))
            .collect();
        let violating = tokio::spawn(store.call(|conn| {
            conn.execute("INSERT INTO child VALUES (42)", [])?;
            Ok(())
        }));
        wait_queued(&store, 4).await;
        release.send(()).unwrap();
        held.await.unwrap().unwrap();

        for append in appends {
            let err = append.await.unwrap().unwrap_err();
            assert_eq!(err.kind(), "not_committed", "{err}");
            assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        }
        let err = violating.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), "not_committed");
        // Nothing of the batch was kept, and the store goes on.
        assert!(store.session_records(&l, "s1").await.unwrap().is_empty());
        let seq = store.append(&l, "s1", "after", json!({})).await.unwrap();
        let records = store.session_records(&l, "s1").await.unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [seq]);
    }

    #[tokio::test]
    async fn a_backup_runs_after_the_batch_queued_before_it_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("data")).await.unwrap();
        let l = lane();
        let (release, held) = hold_thread(&store).await;
        let appends: Vec<_> = (0..3)
            .map(|i| tokio::spawn(store.append(&l, "s1", "step", json!(i))))
            .collect();
        wait_queued(&store, 3).await;
        let dest = dir.path().join("copy.db");
        let backup = tokio::spawn(store.backup(&dest));
        wait_queued(&store, 4).await;
        let late = tokio::spawn(store.append(&l, "s1", "late", json!({})));
        wait_queued(&store, 5).await;
        release.send(()).unwrap();
        held.await.unwrap().unwrap();

        let mut seqs = Vec::new();
        for append in appends {
            seqs.push(append.await.unwrap().unwrap());
        }
        backup.await.unwrap().unwrap();
        late.await.unwrap().unwrap();
        let copy = Store::open_file(&dest, OpenMode::Existing).await.unwrap();
        let copied = copy.session_records(&l, "s1").await.unwrap();
        assert_eq!(copied.iter().map(|r| r.seq).collect::<Vec<_>>(), seqs);
    }

    #[tokio::test]
    async fn a_panicking_exclusive_request_does_not_stop_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let err = store
            .call_exclusive(|conn| -> Result<()> {
                conn.execute_batch("BEGIN")?;
                panic!("deliberate test panic")
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "panicked");
        // The transaction it left open was rolled back, so writes commit again.
        store.put_setting("k", "v").await.unwrap();
        drop(store);
        let store = Store::open(dir.path()).await.unwrap();
        assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("v"));
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_stop_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let err = store
            .call(|_| -> Result<()> { panic!("deliberate test panic") })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "panicked");
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    }

    fn new_payment(reference: &str, minor: u64) -> NewPayment {
        NewPayment {
            reference: reference.parse().unwrap(),
            amount: Amount::nok(minor),
            state: PaymentIndexState::Requested,
        }
    }

    fn new_key(operation: &str, key: &str) -> NewIdempotencyKey {
        NewIdempotencyKey {
            operation: operation.into(),
            key: key.parse().unwrap(),
            reference: None,
        }
    }

    #[tokio::test]
    async fn a_record_and_its_side_writes_are_kept_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let l = lane();
        let side = RecordSideWrites {
            payment: Some(new_payment("lane-1-0001", 23990)),
            idempotency_key: Some(NewIdempotencyKey {
                reference: Some("lane-1-0001".parse().unwrap()),
                ..new_key("create", "key-1")
            }),
        };
        let seq = store
            .append_with(&l, "s1", "payment_requested", json!({"n": 1}), side)
            .await
            .unwrap();
        let payment = store.payment(&"lane-1-0001".parse().unwrap()).await;
        let payment = payment.unwrap().unwrap();
        assert_eq!((payment.lane, payment.session.as_str()), (l.clone(), "s1"));
        assert_eq!(
            (payment.amount, payment.state),
            (Amount::nok(23990), PaymentIndexState::Requested)
        );
        let key = store.idempotency_key(&l, "s1", "create").await.unwrap();
        assert_eq!(key, Some("key-1".parse().unwrap()));

        // A conflicting key: neither the record nor the new payment is kept.
        let side = RecordSideWrites {
            payment: Some(new_payment("lane-1-0002", 100)),
            idempotency_key: Some(new_key("create", "key-2")),
        };
        let err = store
            .append_with(&l, "s1", "payment_requested", json!({"n": 2}), side)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "idempotency_key_conflict", "{err}");
        // A conflicting payment: the record is not kept either.
        let side = RecordSideWrites {
            payment: Some(new_payment("lane-1-0001", 1)),
            idempotency_key: None,
        };
        let err = store
            .append_with(&l, "s1", "payment_requested", json!({"n": 3}), side)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "payment_conflict", "{err}");
        // A key alone comes along with its record.
        let side = RecordSideWrites {
            payment: None,
            idempotency_key: Some(new_key("capture_requested", "key-3")),
        };
        let capture = store
            .append_with(&l, "s1", "capture_requested", json!({}), side)
            .await
            .unwrap();
        drop(store);

        let store = Store::open(dir.path()).await.unwrap();
        let records = store.session_records(&l, "s1").await.unwrap();
        let seqs: Vec<_> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [seq, capture]);
        assert_eq!(
            store
                .payment(&"lane-1-0002".parse().unwrap())
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.payments().await.unwrap().len(), 1);
        let key = store.idempotency_key(&l, "s1", "create").await.unwrap();
        assert_eq!(key, Some("key-1".parse().unwrap()));
        let key = store.idempotency_key(&l, "s1", "capture_requested").await;
        assert_eq!(key.unwrap(), Some("key-3".parse().unwrap()));
    }

    #[tokio::test]
    async fn append_and_close_writes_both_records_or_neither() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let l = lane();
        store.append(&l, "s1", "started", json!({})).await.unwrap();
        // The close is refused after the record was written: the record goes too.
        let err = store
            .append_and_close(&l, "s1", "session_ended", json!({}), "not an outcome")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "invalid_input", "{err}");
        assert_eq!(store.session_records(&l, "s1").await.unwrap().len(), 1);
        assert_eq!(store.open_sessions(&l).await.unwrap().len(), 1);

        let (ended, closed) = store
            .append_and_close(
                &l,
                "s1",
                "session_ended",
                json!({"outcome": "paid"}),
                "paid",
            )
            .await
            .unwrap();
        assert!(ended < closed);
        let records = store.session_records(&l, "s1").await.unwrap();
        let kinds: Vec<_> = records.iter().map(|r| (r.seq, r.kind.as_str())).collect();
        assert_eq!(
            kinds[1..],
            [(ended, "session_ended"), (closed, CLOSED_KIND)]
        );
        assert_eq!(records[2].payload, json!({"outcome": "paid"}));
        assert!(store.open_sessions(&l).await.unwrap().is_empty());
        let err = store
            .append_and_close(&l, "s1", "session_ended", json!({}), "paid")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "session_closed");
        assert_eq!(store.session_records(&l, "s1").await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn reads_are_answered_while_the_writer_is_busy_and_see_only_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let kari = members::tests::member("4791234567", "Kari");
        store.upsert_member(kari.clone()).await.unwrap();
        let l = lane();
        let seq = store.append(&l, "s1", "started", json!({})).await.unwrap();

        // A writer job that has written but not committed, and waits for the reads below.
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let held = tokio::spawn(store.call(move |conn| {
            settings::put(conn, "uncommitted", "x")?;
            journal::append(conn, &lane(), "s1", "uncommitted", "{}")?;
            let _ = started_tx.send(());
            // Only reached if a read waited for this job: then the assertion on `held` fails.
            release_rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .map_err(|_| StoreError::invalid("test", "the reads waited for the writer"))
        }));
        started_rx.await.unwrap();

        let phone = kari.phone_number.clone();
        assert_eq!(store.member(&phone).await.unwrap(), Some(kari.clone()));
        assert_eq!(store.member_count().await.unwrap(), 1);
        assert_eq!(store.members().await.unwrap(), [kari]);
        assert_eq!(store.setting("uncommitted").await.unwrap(), None);
        let records = store.session_records(&l, "s1").await.unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [seq]);
        release_tx.send(()).unwrap();
        held.await.unwrap().unwrap();

        // Once the write is answered, it is committed and every read sees it.
        let setting = store.setting("uncommitted").await.unwrap();
        assert_eq!(setting.as_deref(), Some("x"));
        assert_eq!(store.session_records(&l, "s1").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_panicking_read_does_not_stop_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store.put_setting("k", "v").await.unwrap();
        let err = store
            .read(|conn| -> Result<()> {
                let mut stmt = conn.prepare_cached("SELECT value FROM settings")?;
                let _rows = stmt.query([])?;
                panic!("deliberate test panic")
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "panicked");
        assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("v"));
        // The reader is not stuck on an old snapshot either.
        store.put_setting("k", "w").await.unwrap();
        assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("w"));
    }

    #[test]
    fn open_blocking_works_outside_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_blocking(dir.path().join("new")).unwrap();
        assert_eq!(store.path(), dir.path().join("new").join(DATABASE_FILE));
        assert!(store.path().is_file());
    }

    #[test]
    fn labels_and_sessions() {
        assert!(check_label("k", "refund-2", 32).is_ok());
        assert!(check_label("k", "webhook.secret", 64).is_ok());
        assert!(check_label("k", "", 32).is_err());
        assert!(check_label("k", "a b", 32).is_err());
        assert!(check_label("k", &"a".repeat(33), 32).is_err());
        assert!(check_session("3f2a-…").is_err());
        assert!(check_session(&"s".repeat(128)).is_ok());
    }
}
