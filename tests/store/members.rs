//! Membership through the store handle: upsert and lookup as a `dyn MembershipStore`, and the
//! CSV round trip through an all-or-nothing import.

use std::sync::Arc;

use chrono::Utc;
use lanehub::domain::Msisdn;
use lanehub::store::{
    Consent, ImportCounts, Member, MemberSource, MembershipStore, Store, Upserted, read_members,
    write_members,
};

fn member(phone: &str, name: &str) -> Member {
    Member {
        phone_number: phone.parse().unwrap(),
        name: name.to_owned(),
        email: "post@example.no".to_owned(),
        consents: vec![Consent {
            id: "marketing".into(),
            accepted: true,
            required: false,
            text: "Ja takk, send meg \"tilbud\", også på SMS".into(),
        }],
        enrolled_at: "2024-05-01T10:00:00.123Z".parse().unwrap(),
        enrolled_lane: Some("lane-1".parse().unwrap()),
        source: MemberSource::Enrollment,
    }
}

#[tokio::test]
async fn enrollment_upsert_and_lookup_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MembershipStore> = Arc::new(Store::open(dir.path()).await.unwrap());
    let phone: Msisdn = "4791234567".parse().unwrap();
    assert_eq!(store.member(&phone).await.unwrap(), None);
    let kari = member("4791234567", "Kari");
    assert_eq!(
        store.upsert_member(kari.clone()).await.unwrap(),
        Upserted::Inserted
    );
    assert_eq!(store.member(&phone).await.unwrap(), Some(kari.clone()));
    let again = Member {
        email: "kari@example.no".into(),
        ..kari
    };
    assert_eq!(
        store.upsert_member(again.clone()).await.unwrap(),
        Upserted::Updated
    );
    assert_eq!(store.member_count().await.unwrap(), 1);
    assert_eq!(store.members().await.unwrap(), vec![again]);

    let invalid = Member {
        email: "no at sign".into(),
        ..member("4798765432", "X")
    };
    let err = store.upsert_member(invalid).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_input");
    assert!(err.to_string().contains("email"), "{err}");
    assert_eq!(store.member_count().await.unwrap(), 1);
}

#[tokio::test]
async fn csv_export_and_import_round_trip_with_quoting() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("a")).await.unwrap();
    let originals = vec![
        member("4512345678", "Åse, \"den eldste\""),
        Member {
            enrolled_lane: None,
            consents: vec![],
            email: String::new(),
            source: MemberSource::Import,
            ..member("4791234567", "Bjørn Ærø")
        },
    ];
    for m in &originals {
        store.upsert_member(m.clone()).await.unwrap();
    }
    let mut csv = Vec::new();
    write_members(&mut csv, &store.members().await.unwrap()).unwrap();

    let other = Store::open(dir.path().join("b")).await.unwrap();
    let rows = read_members(&csv[..], Utc::now()).unwrap();
    assert_eq!(
        other.import_members(rows.clone()).await.unwrap(),
        ImportCounts {
            inserted: 2,
            updated: 0,
            unchanged: 0
        }
    );
    assert_eq!(other.members().await.unwrap(), originals);
    // Importing the same file again changes nothing.
    assert_eq!(
        other.import_members(rows).await.unwrap(),
        ImportCounts {
            inserted: 0,
            updated: 0,
            unchanged: 2
        }
    );
}

#[tokio::test]
async fn an_import_with_one_invalid_member_imports_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let bad = Member {
        name: "tab\there".into(),
        ..member("4798765432", "X")
    };
    let err = store
        .import_members(vec![member("4791234567", "Kari"), bad])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_input");
    assert_eq!(store.member_count().await.unwrap(), 0);
}
