//! Schema versions: a database written with schema v1 opens with every record intact and is
//! migrated; a database from a newer lanehub is refused and left untouched.

use lanehub::domain::{LaneId, Msisdn, PaymentReference};
use lanehub::store::{MembershipStore, SCHEMA_VERSION, Store, schema};
use rusqlite::Connection;
use serde_json::json;

use crate::common::sql_int;

/// SHA-256 of the schema v1 SQL as lanehub shipped it, whitespace normalised. Never edit: it
/// stands for the files in the field, which a change to v1 would not migrate (add a migration).
const V1_SHA256: &str = "ca545fb85df8d75a0e519f77ed60e63db85c95bd29170ceb40f0dee0fab244cc";

/// A database as lanehub wrote it with schema v1: the shipped step (pinned by [`V1_SHA256`]) and
/// the version stamps.
fn v1_database() -> String {
    format!(
        "{}\nPRAGMA application_id = 1280198722;\nPRAGMA user_version = 1;\n",
        schema::MIGRATIONS[0].sql
    )
}

const V1_RECORDS: &str = r#"
INSERT INTO journal VALUES (1, 'lane-1', 's1', 'started', '{"step":1}', '2024-05-01T10:00:00Z');
INSERT INTO journal VALUES (2, 'lane-1', 's1', 'scanned', '{"step":2}', '2024-05-01T10:00:01.5Z');
INSERT INTO journal VALUES (3, 'lane-2', 's9', 'started', '{}', '2024-05-01T10:00:02Z');
INSERT INTO journal VALUES (4, 'lane-2', 's9', 'closed', '{"outcome":"paid"}', '2024-05-01T10:00:03Z');
INSERT INTO sessions VALUES ('lane-1', 's1', 1, NULL, NULL);
INSERT INTO sessions VALUES ('lane-2', 's9', 3, 4, 'paid');
INSERT INTO payments VALUES ('lane-2-0001', 'lane-2', 's9', 'NOK', 23990, 'AUTHORIZED', 23990, 0,
                             '2024-05-01T10:00:02Z', '2024-05-01T10:00:03Z');
INSERT INTO idempotency_keys VALUES ('lane-2', 's9', 'create', 'lane-2-0001-create', 'lane-2-0001',
                                     '2024-05-01T10:00:02Z');
INSERT INTO settings VALUES ('webhook.id', 'abc', '2024-05-01T09:00:00Z');
INSERT INTO members VALUES ('4791234567', 'Bjørn Ærø', 'bjorn@example.no',
    '[{"id":"marketing","accepted":true,"required":false,"text":"Tilbud"}]',
    '2024-04-01T08:00:00Z', 'lane-1', 'enrollment');
INSERT INTO members VALUES ('4512345678', 'Åse', '', '[]', '2024-04-02T08:00:00+02:00', NULL, 'import');
"#;

fn lane(s: &str) -> LaneId {
    s.parse().unwrap()
}

#[test]
fn the_v1_step_is_the_one_shipped() {
    use sha2::Digest;
    let normalised = schema::MIGRATIONS[0].sql.split_whitespace();
    let normalised = normalised.collect::<Vec<_>>().join(" ");
    let digest = sha2::Sha256::digest(normalised.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex, V1_SHA256,
        "schema v1 was edited; add a new migration instead"
    );
    assert_eq!(schema::APPLICATION_ID, 1280198722);
}

#[tokio::test]
async fn a_v1_database_opens_with_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(lanehub::store::DATABASE_FILE);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(&v1_database()).unwrap();
    conn.execute_batch(V1_RECORDS).unwrap();
    drop(conn);

    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);

    let open = store.all_open_sessions().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        open[0]
            .records
            .iter()
            .map(|r| (r.seq, r.payload.clone()))
            .collect::<Vec<_>>(),
        [(1, json!({"step": 1})), (2, json!({"step": 2}))]
    );
    let closed = store.session_records(&lane("lane-2"), "s9").await.unwrap();
    assert!(closed.last().unwrap().is_closed());

    let reference: PaymentReference = "lane-2-0001".parse().unwrap();
    let p = store.payment(&reference).await.unwrap().unwrap();
    assert_eq!(
        (p.amount.value, p.state.as_str(), p.captured),
        (23990, "AUTHORIZED", 23990)
    );
    assert_eq!(
        store
            .idempotency_key(&lane("lane-2"), "s9", "create")
            .await
            .unwrap()
            .unwrap()
            .as_str(),
        "lane-2-0001-create"
    );
    assert_eq!(
        store.setting("webhook.id").await.unwrap().as_deref(),
        Some("abc")
    );

    let members = store.members().await.unwrap();
    assert_eq!(members.len(), 2);
    let bjorn = store
        .member(&"4791234567".parse::<Msisdn>().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bjorn.name, "Bjørn Ærø");
    assert_eq!(bjorn.consents[0].text, "Tilbud");
    assert_eq!(bjorn.enrolled_lane, Some(lane("lane-1")));
    let ase = &members[0];
    assert_eq!(ase.enrolled_at.to_rfc3339(), "2024-04-02T06:00:00+00:00");

    // New records continue after the old ones.
    let seq = store
        .append(&lane("lane-1"), "s1", "paid", json!({}))
        .await
        .unwrap();
    assert_eq!(seq, 5);
    drop(store);

    // The v2 step ran: its index is there.
    let conn = Connection::open(&path).unwrap();
    let indexes = sql_int(
        &conn,
        "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'sessions_open'",
    );
    assert_eq!(indexes, 1);
    // The v3 step ran: late enrollments and the payments-by-state index are there.
    let v3 = sql_int(
        &conn,
        "SELECT count(*) FROM sqlite_master
         WHERE (type = 'table' AND name = 'late_enrollments')
            OR (type = 'index' AND name = 'payments_state')",
    );
    assert_eq!(v3, 2);
}

#[tokio::test]
async fn a_database_from_a_newer_lanehub_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store
        .append(&lane("lane-1"), "s1", "started", json!({}))
        .await
        .unwrap();
    let path = store.path().to_owned();
    drop(store);
    let newer = SCHEMA_VERSION + 3;
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", newer).unwrap();
    drop(conn);

    let err = Store::open(dir.path()).await.unwrap_err();
    assert_eq!(err.kind(), "newer_schema");
    assert_eq!(
        err.to_string(),
        format!(
            "database {} was written by a newer lanehub (schema {newer}, this build knows up to \
             {SCHEMA_VERSION}); refusing to start to protect your data",
            path.display()
        )
    );
    let conn = Connection::open(&path).unwrap();
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, newer);
}
