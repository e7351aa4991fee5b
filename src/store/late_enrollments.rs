//! Enrollments a session gave up on while Vipps may still hold the customer's consent, kept
//! until the enrollment follower (`followup::enrollment`) has finished each one.
//!
//! A row is keyed by the Login's `auth_req_id`. What is learnt about it (the session, the phone
//! number, the Login token, userinfo) only ever fills empty columns, so the two ways a row comes
//! in (the follower reading the journal, a lane handing over a token that came too late) can
//! arrive in either order. `outcome` is NULL while the enrollment is unresolved.
//!
//! The token is a secret: it is kept as `SecretString` and never shown, and kept only while it
//! is needed. A row drops it once it holds userinfo or an outcome, and a handover from the
//! journal erases the journal's copy in the same transaction (the row holds it from then on, or
//! nobody will use it).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, params};
use secrecy::{ExposeSecret, SecretString};

use super::error::{Result, StoreError};
use super::journal::{self, Enrollment};
use super::{check_label, check_session, format_time, rows};
use crate::domain::{LaneId, Msisdn};

/// The outcomes a late enrollment can be resolved with (the schema's CHECK lists them too).
pub const LATE_ENROLLMENT_OUTCOMES: &[&str] = crate::metrics::LateEnrollmentOutcome::LABELS;

/// What is known of a late enrollment.
#[derive(Debug, Clone)]
pub struct LateEnrollment {
    pub auth_req_id: String,
    pub lane: LaneId,
    pub session: Option<String>,
    pub msisdn: Option<Msisdn>,
    /// When the Login was started (or, if only a late token is known yet, when it came).
    pub started_at: DateTime<Utc>,
    pub login_token: Option<SecretString>,
    /// Userinfo as the session journals it (`session::Userinfo` as JSON).
    pub userinfo: Option<serde_json::Value>,
    pub outcome: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What a handover knows; `None` leaves a column as it is.
#[derive(Debug, Clone)]
pub struct LateEnrollmentHandover {
    pub auth_req_id: String,
    pub lane: LaneId,
    pub session: Option<String>,
    pub msisdn: Option<Msisdn>,
    pub started_at: DateTime<Utc>,
    pub login_token: Option<SecretString>,
    pub userinfo: Option<serde_json::Value>,
}

/// The columns `late_enrollment` reads, then the rest of the query; a macro so `concat!`
/// builds each query at compile time.
macro_rules! select {
    ($tail:literal) => {
        concat!(
            "SELECT auth_req_id, lane, session, msisdn, started_at, login_token, userinfo, outcome,
                    updated_at
             FROM late_enrollments",
            $tail
        )
    };
}
fn check_auth_req_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::invalid(
            "auth_req_id",
            "expected 1 to 256 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

/// Adds a late enrollment or fills what its row lacks; with `create` false only an existing row
/// is filled. Returns whether a row was written. A handover naming its session comes from that
/// session's journal: the journal's copy of the token is erased.
pub(crate) fn hand_over(
    conn: &Connection,
    h: &LateEnrollmentHandover,
    create: bool,
) -> Result<bool> {
    check_auth_req_id(&h.auth_req_id)?;
    if let Some(session) = &h.session {
        check_session(session)?;
    }
    let userinfo = h.userinfo.as_ref().map(|u| u.to_string());
    let token = h.login_token.as_ref().map(|t| t.expose_secret().to_owned());
    let now = format_time(&Utc::now());
    let values = params![
        h.auth_req_id,
        h.lane.as_str(),
        h.session,
        h.msisdn.as_ref().map(Msisdn::as_str),
        format_time(&h.started_at),
        token,
        userinfo,
        now
    ];
    let written = if create {
        conn.prepare_cached(
            "INSERT INTO late_enrollments (auth_req_id, lane, session, msisdn, started_at,
                                           login_token, userinfo, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?7 IS NULL THEN ?6 END, ?7, ?8)
             ON CONFLICT (auth_req_id) DO UPDATE SET
                session = coalesce(session, excluded.session),
                msisdn = coalesce(msisdn, excluded.msisdn),
                started_at = min(started_at, excluded.started_at),
                login_token = CASE WHEN outcome IS NULL AND userinfo IS NULL
                                    AND excluded.userinfo IS NULL
                              THEN coalesce(login_token, ?6) END,
                userinfo = coalesce(userinfo, excluded.userinfo),
                updated_at = excluded.updated_at",
        )?
        .execute(values)?
    } else {
        conn.prepare_cached(
            "UPDATE late_enrollments SET
                session = coalesce(session, ?3),
                msisdn = coalesce(msisdn, ?4),
                started_at = min(started_at, ?5),
                login_token = CASE WHEN outcome IS NULL AND coalesce(userinfo, ?7) IS NULL
                              THEN coalesce(login_token, ?6) END,
                userinfo = coalesce(userinfo, ?7),
                updated_at = ?8
             WHERE auth_req_id = ?1 AND lane = ?2",
        )?
        .execute(values)?
    };
    if let Some(session) = &h.session {
        journal::erase_login_tokens(conn, &h.lane, session, Enrollment::Login(&h.auth_req_id))?;
    }
    Ok(written > 0)
}

/// Resolves an unresolved late enrollment with `outcome` (one of [`LATE_ENROLLMENT_OUTCOMES`]).
/// With `unless_consented` a row that holds a token or userinfo is left unresolved: a token
/// that came meanwhile wins over a poll's "expired". Returns whether the row was resolved. A
/// resolved row keeps no token.
pub(crate) fn resolve(
    conn: &Connection,
    auth_req_id: &str,
    outcome: &str,
    unless_consented: bool,
) -> Result<bool> {
    check_label("late enrollment outcome", outcome, 16)?;
    if !LATE_ENROLLMENT_OUTCOMES.contains(&outcome) {
        return Err(StoreError::invalid(
            "late enrollment outcome",
            format!("`{outcome}` is not one of {LATE_ENROLLMENT_OUTCOMES:?}"),
        ));
    }
    let n = conn
        .prepare_cached(
            "UPDATE late_enrollments SET outcome = ?2, login_token = NULL, updated_at = ?3
             WHERE auth_req_id = ?1 AND outcome IS NULL
               AND NOT (?4 AND (login_token IS NOT NULL OR userinfo IS NOT NULL))",
        )?
        .execute(params![
            auth_req_id,
            outcome,
            format_time(&Utc::now()),
            unless_consented
        ])?;
    Ok(n > 0)
}

/// The late enrollments without an outcome, oldest first.
pub(crate) fn unresolved(conn: &Connection) -> Result<Vec<LateEnrollment>> {
    let sql = select!(" WHERE outcome IS NULL ORDER BY started_at, auth_req_id");
    rows::query(conn, sql, [], late_enrollment)
}

/// One late enrollment by `auth_req_id`.
pub(crate) fn get(conn: &Connection, auth_req_id: &str) -> Result<Option<LateEnrollment>> {
    let sql = select!(" WHERE auth_req_id = ?1");
    rows::query(conn, sql, params![auth_req_id], late_enrollment)
}

fn late_enrollment(row: &Row<'_>) -> Result<LateEnrollment> {
    let userinfo = rows::json_opt(row, 6, "late enrollment userinfo")?;
    Ok(LateEnrollment {
        lane: rows::parsed(row, 1, "late enrollment lane")?,
        msisdn: rows::parsed_opt(row, 3, "late enrollment phone number")?,
        started_at: rows::time(row, 4, "late enrollment start")?,
        updated_at: rows::time(row, 8, "late enrollment update")?,
        login_token: row.get::<_, Option<String>>(5)?.map(SecretString::from),
        auth_req_id: row.get(0)?,
        session: row.get(2)?,
        userinfo,
        outcome: row.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::scratch;
    use chrono::Duration;

    fn handover(id: &str) -> LateEnrollmentHandover {
        LateEnrollmentHandover {
            auth_req_id: id.into(),
            lane: "1".parse().unwrap(),
            session: None,
            msisdn: None,
            started_at: Utc::now(),
            login_token: None,
            userinfo: None,
        }
    }

    #[test]
    fn a_handover_only_fills_what_is_missing_in_either_order() {
        let (_dir, conn) = scratch();
        let earlier = Utc::now() - Duration::seconds(30);
        // The lane's late token comes first: no session or phone number yet.
        let token = LateEnrollmentHandover {
            login_token: Some(SecretString::from("tok-1")),
            ..handover("a1")
        };
        assert!(hand_over(&conn, &token, true).unwrap());
        // The journal's view: session, phone number and the real start.
        let journal = LateEnrollmentHandover {
            session: Some("s1".into()),
            msisdn: Some("4798765432".parse().unwrap()),
            started_at: earlier,
            login_token: Some(SecretString::from("other")),
            ..handover("a1")
        };
        assert!(hand_over(&conn, &journal, true).unwrap());
        let row = get(&conn, "a1").unwrap().unwrap();
        assert_eq!(row.session.as_deref(), Some("s1"));
        assert_eq!(row.msisdn.unwrap().as_str(), "4798765432");
        assert_eq!(row.login_token.unwrap().expose_secret(), "tok-1");
        assert_eq!(format_time(&row.started_at), format_time(&earlier));
        assert_eq!(row.outcome, None);

        // Without `create` an unknown enrollment is not added.
        assert!(!hand_over(&conn, &handover("a2"), false).unwrap());
        assert!(get(&conn, "a2").unwrap().is_none());
        // A row with userinfo is filled with it once.
        let info = serde_json::json!({"name": "Ola", "consents": []});
        let with_info = LateEnrollmentHandover {
            userinfo: Some(info.clone()),
            ..handover("a1")
        };
        assert!(hand_over(&conn, &with_info, false).unwrap());
        assert_eq!(get(&conn, "a1").unwrap().unwrap().userinfo, Some(info));
    }

    #[test]
    fn a_token_keeps_a_row_from_being_resolved_as_not_consented() {
        let (_dir, conn) = scratch();
        hand_over(&conn, &handover("a1"), true).unwrap();
        hand_over(&conn, &handover("a2"), true).unwrap();
        assert_eq!(unresolved(&conn).unwrap().len(), 2);
        let token = LateEnrollmentHandover {
            login_token: Some(SecretString::from("tok")),
            ..handover("a2")
        };
        hand_over(&conn, &token, true).unwrap();
        assert!(resolve(&conn, "a1", "expired", true).unwrap());
        assert!(!resolve(&conn, "a2", "expired", true).unwrap());
        let open: Vec<_> = unresolved(&conn).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].auth_req_id, "a2");
        assert!(resolve(&conn, "a2", "enrolled", false).unwrap());
        // Resolved once: never again, and never reopened by a handover.
        assert!(!resolve(&conn, "a2", "failed", false).unwrap());
        hand_over(&conn, &handover("a2"), true).unwrap();
        assert!(unresolved(&conn).unwrap().is_empty());
        let row = get(&conn, "a2").unwrap().unwrap();
        assert_eq!(row.outcome.as_deref(), Some("enrolled"));
    }

    /// The token as the file holds it, whatever the row's other columns say.
    fn stored_token(conn: &Connection, id: &str) -> Option<String> {
        conn.query_row(
            "SELECT login_token FROM late_enrollments WHERE auth_req_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn the_token_is_dropped_once_userinfo_or_an_outcome_makes_it_unneeded() {
        let (_dir, conn) = scratch();
        let with_token = |id: &str| LateEnrollmentHandover {
            login_token: Some(SecretString::from("tok")),
            ..handover(id)
        };
        let info = serde_json::json!({"name": "Ola", "consents": []});
        hand_over(&conn, &with_token("a1"), true).unwrap();
        assert_eq!(stored_token(&conn, "a1").as_deref(), Some("tok"));
        let with_info = LateEnrollmentHandover {
            userinfo: Some(info.clone()),
            ..handover("a1")
        };
        hand_over(&conn, &with_info, false).unwrap();
        assert_eq!(stored_token(&conn, "a1"), None);
        // Still consented: userinfo is what the follower finishes it with.
        assert!(!resolve(&conn, "a1", "expired", true).unwrap());
        // A token that comes after the userinfo is not stored either.
        hand_over(&conn, &with_token("a1"), true).unwrap();
        assert_eq!(stored_token(&conn, "a1"), None);
        // Both at once: only the userinfo is kept.
        let both = LateEnrollmentHandover {
            userinfo: Some(info),
            ..with_token("a2")
        };
        hand_over(&conn, &both, true).unwrap();
        assert_eq!(stored_token(&conn, "a2"), None);

        hand_over(&conn, &with_token("a3"), true).unwrap();
        assert!(resolve(&conn, "a3", "failed", false).unwrap());
        assert_eq!(stored_token(&conn, "a3"), None);
        hand_over(&conn, &with_token("a3"), true).unwrap();
        assert_eq!(
            stored_token(&conn, "a3"),
            None,
            "a resolved row takes no token"
        );
    }

    #[test]
    fn a_handover_from_the_journal_erases_the_journal_copy_of_the_token() {
        let (_dir, mut conn) = scratch();
        let lane: LaneId = "1".parse().unwrap();
        let started = serde_json::json!({
            "kind": "enrollment_started", "msisdn": "4798765432", "auth_req_id": "a1"
        });
        let consented = serde_json::json!({"kind": "enrollment_consented", "login_token": "tok"});
        for (kind, payload) in [
            ("enrollment_started", &started),
            ("enrollment_consented", &consented),
        ] {
            journal::append(&mut conn, &lane, "s1", kind, &payload.to_string()).unwrap();
        }
        let from_journal = LateEnrollmentHandover {
            session: Some("s1".into()),
            login_token: Some(SecretString::from("tok")),
            ..handover("a1")
        };
        assert!(hand_over(&conn, &from_journal, true).unwrap());
        assert_eq!(stored_token(&conn, "a1").as_deref(), Some("tok"));
        let records = journal::session_records(&conn, &lane, "s1").unwrap();
        assert_eq!(
            records[1].payload,
            serde_json::json!({"kind": "enrollment_consented"})
        );
    }

    #[test]
    fn every_declared_outcome_is_one_the_table_accepts() {
        let (_dir, conn) = scratch();
        for outcome in LATE_ENROLLMENT_OUTCOMES {
            hand_over(&conn, &handover(outcome), true).unwrap();
            assert!(
                resolve(&conn, outcome, outcome, false).unwrap(),
                "{outcome}"
            );
            let row = get(&conn, outcome).unwrap().unwrap();
            assert_eq!(row.outcome.as_deref(), Some(*outcome));
        }
    }

    #[test]
    fn bad_input_is_refused_by_name() {
        let (_dir, conn) = scratch();
        let err = hand_over(&conn, &handover(""), true).unwrap_err();
        assert!(err.to_string().contains("auth_req_id"), "{err}");
        let bad_session = LateEnrollmentHandover {
            session: Some("a b".into()),
            ..handover("a1")
        };
        let err = hand_over(&conn, &bad_session, true).unwrap_err();
        assert!(err.to_string().contains("session"), "{err}");
        hand_over(&conn, &handover("a1"), true).unwrap();
        let err = resolve(&conn, "a1", "abandoned", false).unwrap_err();
        assert_eq!(err.kind(), "invalid_input", "{err}");
        assert!(err.to_string().contains("abandoned"), "{err}");
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let (_dir, conn) = scratch();
        let token = LateEnrollmentHandover {
            login_token: Some(SecretString::from("very-secret-token")),
            ..handover("a1")
        };
        assert!(!format!("{token:?}").contains("very-secret-token"));
        hand_over(&conn, &token, true).unwrap();
        let row = get(&conn, "a1").unwrap().unwrap();
        assert!(!format!("{row:?}").contains("very-secret-token"));
    }
}
