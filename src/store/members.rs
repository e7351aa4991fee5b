//! The merchant's own loyalty membership: who is a member, with which consents.
//!
//! `MembershipStore` is object safe and its futures are `'static`, so a lane actor can hold an
//! `Arc<dyn MembershipStore>` and `ctx.spawn` a lookup. `Store` (SQLite, the default) and
//! `InMemoryMembers` (tests) implement it. The phone number is the key; `Msisdn` masks itself
//! in logs.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rusqlite::{Connection, Row, params};
use serde::{Deserialize, Serialize};

use super::error::{Result, StoreError};
use super::{atomically, format_time, rows};
use crate::domain::{LaneId, Msisdn};

/// The longest name and e-mail address a member record accepts.
const MAX_NAME: usize = 200;
const MAX_EMAIL: usize = 254;

/// A loyalty member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub phone_number: Msisdn,
    pub name: String,
    pub email: String,
    pub consents: Vec<Consent>,
    pub enrolled_at: DateTime<Utc>,
    pub enrolled_lane: Option<LaneId>,
    pub source: MemberSource,
}

/// One consent the member answered when enrolling (Vipps Login `delegatedConsents`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub id: String,
    pub accepted: bool,
    pub required: bool,
    /// The text shown to the member; Vipps calls it `textDisplayedToUser`.
    #[serde(alias = "textDisplayedToUser")]
    pub text: String,
}

/// How a member came into the store. Its name (`as_str`, `Display`, serde) is the text the
/// `source` column holds.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum MemberSource {
    /// Enrolled at a lane through Vipps Login.
    Enrollment,
    /// Imported from a CSV file.
    Import,
}

impl MemberSource {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl FromStr for MemberSource {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        <Self as strum::VariantArray>::VARIANTS
            .iter()
            .copied()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| {
                StoreError::invalid("member source", "expected `enrollment` or `import`")
            })
    }
}

impl Member {
    /// A member as if imported, without consents, enrolled now (at `lane`, when there is one).
    pub fn imported(
        phone_number: Msisdn,
        name: String,
        email: String,
        lane: Option<LaneId>,
    ) -> Self {
        Member {
            phone_number,
            name,
            email,
            consents: vec![],
            enrolled_at: Utc::now(),
            enrolled_lane: lane,
            source: MemberSource::Import,
        }
    }

    /// Checks the free-text fields; the typed fields are valid by construction.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name).map_err(|reason| StoreError::invalid("name", reason))?;
        check_email(&self.email).map_err(|reason| StoreError::invalid("email", reason))?;
        check_consents(&self.consents).map_err(|reason| StoreError::invalid("consents", reason))
    }
}

/// A name: at most `MAX_NAME` characters, no control characters (empty is allowed).
pub(crate) fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "expected at most {MAX_NAME} characters without control characters"
        ));
    }
    Ok(())
}

/// An e-mail address: empty, or `user@domain.tld` without spaces.
pub(crate) fn check_email(email: &str) -> std::result::Result<(), String> {
    let plausible = email.len() <= MAX_EMAIL
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if email.is_empty() || plausible {
        Ok(())
    } else {
        Err(format!(
            "expected empty or an address like name@example.no (at most {MAX_EMAIL} characters)"
        ))
    }
}

/// Consents: each needs an id of 1 to 64 characters.
pub(crate) fn check_consents(consents: &[Consent]) -> std::result::Result<(), String> {
    if consents.iter().any(|c| c.id.is_empty() || c.id.len() > 64) {
        return Err("every consent needs an `id` of 1 to 64 characters".into());
    }
    Ok(())
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Inserted,
    Updated,
    /// The stored member was already identical.
    Unchanged,
}

/// What an import did, in members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// A `'static` future of a store result, so actors can spawn it.
pub type StoreFuture<T> = BoxFuture<'static, Result<T>>;

/// Where lanes look up and enroll members. Object safe: use `Arc<dyn MembershipStore>`.
pub trait MembershipStore: Send + Sync {
    /// The member with this phone number, if any.
    fn member(&self, phone: &Msisdn) -> StoreFuture<Option<Member>>;
    /// Inserts the member or replaces the stored one with the same phone number.
    fn upsert_member(&self, member: Member) -> StoreFuture<Upserted>;
    /// Every member, ordered by phone number.
    fn members(&self) -> StoreFuture<Vec<Member>>;
    /// How many members there are.
    fn member_count(&self) -> StoreFuture<u64>;
}

/// A membership store in memory, for tests and demos; clones share the same members.
#[derive(Debug, Clone, Default)]
pub struct InMemoryMembers {
    members: Arc<Mutex<BTreeMap<Msisdn, Member>>>,
}

impl InMemoryMembers {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<Msisdn, Member>) -> T) -> T {
        // A poisoned lock only means a test panicked while holding it; the map is still whole.
        let mut guard = self.members.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

impl MembershipStore for InMemoryMembers {
    fn member(&self, phone: &Msisdn) -> StoreFuture<Option<Member>> {
        let found = self.with(|m| m.get(phone).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn upsert_member(&self, member: Member) -> StoreFuture<Upserted> {
        let result = member.validate().map(|()| {
            self.with(
                |m| match m.insert(member.phone_number.clone(), member.clone()) {
                    None => Upserted::Inserted,
                    Some(old) if old == member => Upserted::Unchanged,
                    Some(_) => Upserted::Updated,
                },
            )
        });
        Box::pin(async move { result })
    }

    fn members(&self) -> StoreFuture<Vec<Member>> {
        let all = self.with(|m| m.values().cloned().collect());
        Box::pin(async move { Ok(all) })
    }

    fn member_count(&self) -> StoreFuture<u64> {
        let n = self.with(|m| m.len() as u64);
        Box::pin(async move { Ok(n) })
    }
}

/// The columns `member` reads, then the rest of the query; a macro so `concat!` builds each
/// query at compile time.
macro_rules! select_members {
    ($tail:literal) => {
        concat!(
            "SELECT phone_number, name, email, consents, enrolled_at, enrolled_lane, source
             FROM members",
            $tail
        )
    };
}

/// The member with this phone number.
pub(crate) fn get(conn: &Connection, phone: &Msisdn) -> Result<Option<Member>> {
    let sql = select_members!(" WHERE phone_number = ?1");
    rows::query(conn, sql, [phone.as_str()], member)
}

/// Inserts or replaces one member (one write after the lookup, atomic on its own).
pub(crate) fn upsert(conn: &Connection, member: &Member) -> Result<Upserted> {
    member.validate()?;
    upsert_in(conn, member)
}

/// Upserts every member in one transaction: all of them or none.
pub(crate) fn import(conn: &mut Connection, members: &[Member]) -> Result<ImportCounts> {
    for m in members {
        m.validate()?;
    }
    atomically(conn, |conn| {
        let mut counts = ImportCounts::default();
        for m in members {
            match upsert_in(conn, m)? {
                Upserted::Inserted => counts.inserted += 1,
                Upserted::Updated => counts.updated += 1,
                Upserted::Unchanged => counts.unchanged += 1,
            }
        }
        Ok(counts)
    })
}

fn upsert_in(conn: &Connection, member: &Member) -> Result<Upserted> {
    let outcome = match get(conn, &member.phone_number)? {
        None => Upserted::Inserted,
        Some(old) if old == *member => return Ok(Upserted::Unchanged),
        Some(_) => Upserted::Updated,
    };
    conn.prepare_cached(
        "INSERT INTO members (phone_number, name, email, consents, enrolled_at, enrolled_lane,
                              source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (phone_number) DO UPDATE SET
             name = excluded.name, email = excluded.email, consents = excluded.consents,
             enrolled_at = excluded.enrolled_at, enrolled_lane = excluded.enrolled_lane,
             source = excluded.source",
    )?
    .execute(params![
        member.phone_number.as_str(),
        member.name,
        member.email,
        serde_json::to_string(&member.consents)?,
        format_time(&member.enrolled_at),
        member.enrolled_lane.as_ref().map(LaneId::as_str),
        member.source.as_str(),
    ])?;
    Ok(outcome)
}

/// Every member, ordered by phone number.
pub(crate) fn list(conn: &Connection) -> Result<Vec<Member>> {
    rows::query(conn, select_members!(" ORDER BY phone_number"), [], member)
}

/// How many members there are.
pub(crate) fn count(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM members")?
        .query_row([], |r| r.get(0))?;
    u64::try_from(n).map_err(|_| StoreError::corrupt("member count", n))
}

fn member(row: &Row<'_>) -> Result<Member> {
    Ok(Member {
        phone_number: rows::parsed(row, 0, "member phone number")?,
        name: row.get(1)?,
        email: row.get(2)?,
        consents: rows::json(row, 3, "member consents")?,
        enrolled_at: rows::time(row, 4, "member enrolled_at")?,
        enrolled_lane: rows::parsed_opt(row, 5, "member enrolled_lane")?,
        source: rows::parsed(row, 6, "member source")?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::schema;

    pub(crate) fn member(phone: &str, name: &str) -> Member {
        Member {
            phone_number: phone.parse().unwrap(),
            name: name.to_owned(),
            email: "kari@example.no".to_owned(),
            consents: vec![Consent {
                id: "marketing".into(),
                accepted: true,
                required: false,
                text: "Tilbud på e-post, SMS".into(),
            }],
            enrolled_at: "2024-05-01T10:00:00Z".parse().unwrap(),
            enrolled_lane: Some("lane-1".parse().unwrap()),
            source: MemberSource::Enrollment,
        }
    }

    #[test]
    fn a_source_is_named_as_the_file_and_json_hold_it() {
        for (source, name) in [
            (MemberSource::Enrollment, "enrollment"),
            (MemberSource::Import, "import"),
        ] {
            assert_eq!(source.as_str(), name);
            assert_eq!(source.to_string(), name);
            assert_eq!(serde_json::to_value(source).unwrap(), name);
            assert_eq!(name.parse::<MemberSource>().unwrap(), source);
        }
        let err = "Import".parse::<MemberSource>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid member source: expected `enrollment` or `import`"
        );
    }

    #[test]
    fn sqlite_upsert_get_list_count() {
        let (_dir, conn) = schema::scratch();
        let kari = member("4791234567", "Kari");
        assert_eq!(upsert(&conn, &kari).unwrap(), Upserted::Inserted);
        assert_eq!(upsert(&conn, &kari).unwrap(), Upserted::Unchanged);
        let renamed = Member {
            name: "Kari Nordmann".into(),
            enrolled_lane: None,
            ..kari.clone()
        };
        assert_eq!(upsert(&conn, &renamed).unwrap(), Upserted::Updated);
        assert_eq!(
            get(&conn, &kari.phone_number).unwrap(),
            Some(renamed.clone())
        );
        assert_eq!(get(&conn, &"4700000000".parse().unwrap()).unwrap(), None);
        let ola = member("4512345678", "Ola");
        upsert(&conn, &ola).unwrap();
        assert_eq!(list(&conn).unwrap(), vec![ola, renamed]);
        assert_eq!(count(&conn).unwrap(), 2);
    }

    #[test]
    fn invalid_members_are_refused() {
        let bad_email = Member {
            email: "not an address".into(),
            ..member("4791234567", "Kari")
        };
        assert_eq!(bad_email.validate().unwrap_err().kind(), "invalid_input");
        let bad_name = Member {
            name: "a\nb".into(),
            ..member("4791234567", "Kari")
        };
        assert!(
            bad_name
                .validate()
                .unwrap_err()
                .to_string()
                .contains("name")
        );
        let mut no_id = member("4791234567", "Kari");
        no_id.consents[0].id.clear();
        assert!(
            no_id
                .validate()
                .unwrap_err()
                .to_string()
                .contains("consent")
        );
    }

    #[tokio::test]
    async fn in_memory_store_behaves_like_sqlite() {
        let store: Arc<dyn MembershipStore> = Arc::new(InMemoryMembers::new());
        let kari = member("4791234567", "Kari");
        assert_eq!(
            store.upsert_member(kari.clone()).await.unwrap(),
            Upserted::Inserted
        );
        assert_eq!(
            store.upsert_member(kari.clone()).await.unwrap(),
            Upserted::Unchanged
        );
        assert_eq!(
            store.member(&kari.phone_number).await.unwrap(),
            Some(kari.clone())
        );
        assert_eq!(store.member_count().await.unwrap(), 1);
        assert_eq!(store.members().await.unwrap(), vec![kari]);
        let bad = Member {
            email: "x".into(),
            ..member("4700000001", "X")
        };
        assert!(store.upsert_member(bad).await.is_err());
        assert_eq!(store.member_count().await.unwrap(), 1);
    }

    #[test]
    fn consent_accepts_the_vipps_field_name() {
        let c: Consent = serde_json::from_str(
            r#"{"id":"x","accepted":false,"required":true,"textDisplayedToUser":"t"}"#,
        )
        .unwrap();
        assert_eq!(c.text, "t");
        assert!(serde_json::from_str::<Consent>(r#"{"id":"x"}"#).is_err());
    }
}
