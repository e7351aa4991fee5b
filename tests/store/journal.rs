//! The store through its public handle: the journal, payments, idempotency keys and settings
//! survive a reopen; concurrent appends get distinct increasing seqs; a backup taken while a
//! writer runs is a consistent database; 200 concurrent appends all land, in order per session.

use std::collections::HashSet;

use lanehub::domain::{Amount, IdempotencyKey, LaneId, PaymentReference};
use lanehub::store::{
    CLOSED_KIND, OpenMode, PaymentIndexState, PaymentUpdate, SCHEMA_VERSION, Store,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

fn lane(s: &str) -> LaneId {
    s.parse().unwrap()
}

#[tokio::test]
async fn journal_survives_reopen_and_close_ends_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let (l1, l2) = (lane("lane-1"), lane("lane-2"));
    let store = Store::open(dir.path().join("data")).await.unwrap();
    let s1a = store
        .append(&l1, "s1", "started", json!({"step": 1}))
        .await
        .unwrap();
    let s2a = store.append(&l2, "s2", "started", json!({})).await.unwrap();
    #[derive(serde::Serialize)]
    struct Scan<'a> {
        barcode: &'a str,
        amount: Amount,
    }
    let s1b = store
        .append(
            &l1,
            "s1",
            "scanned",
            &Scan {
                barcode: "7038010069307",
                amount: Amount::nok(2990),
            },
        )
        .await
        .unwrap();
    store.append(&l1, "s0", "started", json!({})).await.unwrap();
    store.close_session(&l1, "s0", "aborted").await.unwrap();
    assert!(s1a < s2a && s2a < s1b);
    drop(store);

    let store = Store::open(dir.path().join("data")).await.unwrap();
    let records = store.session_records(&l1, "s1").await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [s1a, s1b]
    );
    assert_eq!(records[0].payload, json!({"step": 1}));
    assert_eq!(
        records[1].payload,
        json!({"barcode": "7038010069307", "amount": {"currency": "NOK", "value": 2990}})
    );
    assert_eq!(records[1].kind, "scanned");
    assert_eq!(records[1].lane, l1);

    let open = store.open_sessions(&l1).await.unwrap();
    assert_eq!(open.len(), 1, "s0 is closed");
    assert_eq!((open[0].session.as_str(), open[0].records.len()), ("s1", 2));
    let all = store.all_open_sessions().await.unwrap();
    let names: Vec<_> = all
        .iter()
        .map(|s| (s.lane.as_str(), s.session.as_str()))
        .collect();
    assert_eq!(names, [("lane-1", "s1"), ("lane-2", "s2")]);

    let closed = store.close_session(&l1, "s1", "paid").await.unwrap();
    assert!(closed > s1b);
    drop(store);

    let store = Store::open(dir.path().join("data")).await.unwrap();
    assert!(store.open_sessions(&l1).await.unwrap().is_empty());
    let last = store
        .session_records(&l1, "s1")
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.kind.as_str(), last.payload),
        (CLOSED_KIND, json!({"outcome": "paid"}))
    );
    let err = store
        .append(&l1, "s1", "late", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "session_closed");
    assert_eq!(store.all_open_sessions().await.unwrap().len(), 1);
}

#[tokio::test]
async fn keys_payments_and_settings_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let l = lane("lane-1");
    let reference: PaymentReference = "lane-1-20250101-0001".parse().unwrap();
    let key: IdempotencyKey = "lane-1-20250101-0001-create".parse().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store
        .record_idempotency_key(&l, "s1", "create", &key, Some(&reference))
        .await
        .unwrap();
    store
        .record_payment(
            &reference,
            &l,
            "s1",
            Amount::nok(23990),
            PaymentIndexState::Created,
        )
        .await
        .unwrap();
    store.put_setting("webhook.id", "7b6f3c2a").await.unwrap();
    let secret = SecretString::from("A0+AeKBRG2KRGvnNwJpQlb6IJFk48CKX==");
    store
        .put_secret_setting("webhook.secret", &secret)
        .await
        .unwrap();
    drop(store);

    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(
        store.idempotency_key(&l, "s1", "create").await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(
        store.idempotency_key(&l, "s1", "capture").await.unwrap(),
        None
    );
    // The same key again is fine (a retry after a restart); another one is refused.
    store
        .record_idempotency_key(&l, "s1", "create", &key, Some(&reference))
        .await
        .unwrap();
    let other: IdempotencyKey = "other".parse().unwrap();
    let err = store
        .record_idempotency_key(&l, "s1", "create", &other, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "idempotency_key_conflict");

    let p = store
        .update_payment(
            &reference,
            PaymentUpdate {
                state: Some(PaymentIndexState::Authorized),
                captured: Some(23990),
                refunded: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (p.state.as_str(), p.captured, p.refunded),
        ("AUTHORIZED", 23990, 0)
    );
    let all = store.payments().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (
            &all[0].reference,
            &all[0].lane,
            all[0].session.as_str(),
            all[0].amount
        ),
        (&reference, &l, "s1", Amount::nok(23990))
    );
    assert_eq!(store.payment(&reference).await.unwrap(), Some(p));

    assert_eq!(
        store.setting("webhook.id").await.unwrap().as_deref(),
        Some("7b6f3c2a")
    );
    let back = store
        .secret_setting("webhook.secret")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.expose_secret(), secret.expose_secret());
    assert!(
        !format!("{back:?}").contains("AeKBRG"),
        "secrets do not print"
    );
}

/// `tasks` tasks at once, task `t` appending `per_task` records `{"task": t, "i": i}` to the
/// session `place(t)` names; the sequence numbers each task was given, in task order.
async fn append_at_once(
    store: &Store,
    tasks: usize,
    per_task: usize,
    place: fn(usize) -> (LaneId, String),
) -> Vec<Vec<u64>> {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let (lane, session) = place(t);
                let mut seqs = Vec::new();
                for i in 0..per_task {
                    let record = json!({"task": t, "i": i});
                    let seq = store.append(&lane, &session, "step", record).await;
                    seqs.push(seq.unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for h in handles {
        acknowledged.push(h.await.unwrap());
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_distinct_increasing_seqs() {
    const TASKS: usize = 64;
    const PER_TASK: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    // Two tasks share each session, so sessions interleave too.
    let place = |t: usize| (lane(&format!("lane-{}", t % 4)), format!("s{}", t / 2));
    let mut all = HashSet::new();
    for seqs in append_at_once(&store, TASKS, PER_TASK, place).await {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        for s in seqs {
            assert!(all.insert(s), "seq {s} was handed out twice");
        }
    }
    assert_eq!(all.len(), TASKS * PER_TASK);

    // Every record landed, each session's records in seq order.
    let sessions = store.all_open_sessions().await.unwrap();
    let mut stored = 0;
    for s in &sessions {
        assert!(s.records.windows(2).all(|w| w[0].seq < w[1].seq));
        stored += s.records.len();
    }
    assert_eq!(stored, TASKS * PER_TASK);
}

/// Opens a store on `data` and starts appending `total` records `{"i": i}` to session s1 of
/// lane-1; returns once 50 are acknowledged: the store, the lane and the writer, which returns
/// the records' sequence numbers in order.
async fn store_with_a_writer(
    data: &std::path::Path,
    total: u64,
) -> (Store, LaneId, tokio::task::JoinHandle<Vec<u64>>) {
    let store = Store::open(data).await.unwrap();
    let l = lane("lane-1");
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (writing, lane) = (store.clone(), l.clone());
    let writer = tokio::spawn(async move {
        let mut started = Some(started_tx);
        let mut seqs = Vec::new();
        for i in 0..total {
            let seq = writing.append(&lane, "s1", "step", json!({"i": i}));
            seqs.push(seq.await.unwrap());
            if i == 49 {
                started.take().unwrap().send(()).unwrap();
            }
        }
        seqs
    });
    started_rx.await.unwrap();
    (store, l, writer)
}

/// Asserts the backup at `dest` holds a prefix of what the writer committed (`live_seqs`), in
/// order, with at least the 50 records acknowledged before it started; how many it holds.
async fn assert_a_prefix_of(dest: &std::path::Path, l: &LaneId, live_seqs: &[u64]) -> usize {
    let copy = Store::open_file(dest, OpenMode::Existing).await.unwrap();
    let records = copy.session_records(l, "s1").await.unwrap();
    assert!(records.len() >= 50, "{}", records.len());
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, live_seqs[i]);
        assert_eq!(r.payload, json!({"i": i}));
    }
    records.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_a_writer_runs_is_a_consistent_database() {
    const TOTAL: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let (_store, l, writer) = store_with_a_writer(&dir.path().join("data"), TOTAL).await;
    // A separate connection, as `lanehub backup` would use, while the store thread writes.
    let settings = lanehub::config::StoreSettings {
        name: String::new(),
        data_dir: dir.path().join("data"),
        journal_retention: std::time::Duration::from_secs(90 * 24 * 60 * 60),
    };
    let dest = dir.path().join("backup.db");
    let report = tokio::task::spawn_blocking({
        let dest = dest.clone();
        move || lanehub::store::admin::backup_database(&settings, &dest)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    let live_seqs = writer.await.unwrap();

    // At least the 50 appends acknowledged before the backup started, and exactly a prefix of
    // what the writer committed, in order: a snapshot, not a torn copy.
    let copied = assert_a_prefix_of(&dest, &l, &live_seqs).await;
    assert!(copied as u64 <= TOTAL, "{copied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_appends_all_land_in_order_and_survive_reopen() {
    const TASKS: usize = 200;
    const PER_TASK: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let place = |t: usize| (lane(&format!("lane-{}", t % 10)), format!("s{t}"));
    let acknowledged = append_at_once(&store, TASKS, PER_TASK, place).await;
    drop(store);

    // Everything acknowledged is in the file, each session's records in the order written.
    let store = Store::open(dir.path()).await.unwrap();
    let sessions = store.all_open_sessions().await.unwrap();
    assert_eq!(sessions.len(), TASKS);
    for s in &sessions {
        let t: usize = s.session[1..].parse().unwrap();
        assert_eq!(s.lane, lane(&format!("lane-{}", t % 10)));
        let seqs: Vec<u64> = s.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, acknowledged[t], "session {}", s.session);
        for (i, r) in s.records.iter().enumerate() {
            assert_eq!(r.payload, json!({"task": t, "i": i}));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_through_the_handle_while_writes_are_in_flight() {
    const TOTAL: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let (store, l, writer) = store_with_a_writer(&dir.path().join("data"), TOTAL).await;
    let dest = dir.path().join("backup.db");
    let report = store.backup(&dest).await.unwrap();
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    let live_seqs = writer.await.unwrap();
    assert_eq!(
        live_seqs.len() as u64,
        TOTAL,
        "writes went on around the backup"
    );

    // A prefix of what the writer committed, with at least what was acknowledged before.
    assert_a_prefix_of(&dest, &l, &live_seqs).await;
}
