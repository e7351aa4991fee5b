//! Enrollments no lane follows any more but Vipps may still hold a consent for.
//!
//! The cashier never waits for a customer's consent: pay, cancel, reset or a new customer's QR
//! end the enrollment as `abandoned` while the Login stays open at Vipps, and a member store
//! that fails ends it as `failed` with the userinfo journalled. A consent given then must still
//! make the customer a member. So every `interval` the follower
//! 1. reads the journal's `enrollment_finished` records written since its last look (all of them
//!    at start, so it works across restarts) and records each enrollment a session gave up on
//!    with its Login still open or its consent not yet stored in `late_enrollments`;
//! 2. finishes each unresolved row younger than `window`: stored userinfo → the member; a stored
//!    token → userinfo (stored) → the member; else one token poll (a token is stored before
//!    anything else: Vipps hands it out once). Past `window` a row without consent is
//!    `expired`, one whose consent could not be turned into a member `failed`.
//!
//! The consent window is Vipps', not the cashier's: a session whose `login_timeout` passed while
//! Vipps keeps the Login open (`expires_in`, 600 s) ends it as `abandoned`, and the follower polls
//! it until Vipps answers `expired_token` (lanehub sends `requested_expiry` when `window` is
//! shorter than Vipps' expiry). Each Login is polled no faster than `interval` (Vipps' own is
//! 5 s), 5 s more per `slow_down`; a poll Vipps refuses for good (`invalid_grant`: the token was
//! handed out already, its answer lost) ends the row as `failed`.
//!
//! A token poll that was in flight when the session gave up may still bring the token back to
//! the lane: the lane hands it over with [`EnrollmentFollower::consented_late`], which stores it
//! at once, and the next sweep finishes the enrollment. Members are upserted, so a customer who
//! enrolled on another lane meanwhile is no conflict.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;

use crate::domain::{LaneId, Msisdn};
use crate::lane::effects::{enrolled_member, userinfo as session_userinfo};
use crate::metrics::{self as m, LateEnrollmentOutcome as Outcome};
use crate::session::{EnrollmentOutcome, JournalRecord, LoginAccessToken, Userinfo};
use crate::shutdown::{Phase, Shutdown};
use crate::store::{LateEnrollment, LateEnrollmentHandover, MembershipStore, Store, StoreError};
use crate::vipps::VippsHandle;
use crate::vipps::actor::SLOW_DOWN_STEP;
use crate::vipps::models::{AuthReqId, LoginPoll, LoginToken};

/// The journal kind whose records the follower reads.
const FINISHED_KIND: &str = "enrollment_finished";

/// How often and for how long late enrollments are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowSettings {
    pub interval: Duration,
    pub window: Duration,
}

/// What a lane uses to hand over a consent that came after its session stopped waiting.
#[derive(Clone, Debug)]
pub struct EnrollmentFollower {
    store: Store,
}

impl EnrollmentFollower {
    pub fn new(store: Store) -> Self {
        EnrollmentFollower { store }
    }

    /// Records a Login that Vipps started after its session stopped waiting for it (the cashier
    /// paid while the start was in flight): the customer is asked to consent all the same, so
    /// the follower polls it. Resolves once it is on disk.
    pub fn started_late(
        &self,
        lane: &LaneId,
        auth_req_id: &str,
        msisdn: Option<Msisdn>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let handover = LateEnrollmentHandover {
            auth_req_id: auth_req_id.to_owned(),
            lane: lane.clone(),
            session: None,
            msisdn,
            started_at: Utc::now(),
            login_token: None,
            userinfo: None,
        };
        let write = self.store.hand_over_late_enrollment(handover, true);
        async move { write.await.map(drop) }
    }

    /// Stores the Login token of `auth_req_id` for the follower; resolves once it is on disk.
    /// The session and phone number come from the journal at the follower's next look.
    pub fn consented_late(
        &self,
        lane: &LaneId,
        auth_req_id: &str,
        token: &LoginAccessToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let handover = LateEnrollmentHandover {
            auth_req_id: auth_req_id.to_owned(),
            lane: lane.clone(),
            session: None,
            msisdn: None,
            started_at: Utc::now(),
            login_token: Some(token.secret().clone()),
            userinfo: None,
        };
        let write = self.store.hand_over_late_enrollment(handover, true);
        async move { write.await.map(drop) }
    }
}

/// Starts the follower on the current actix system; it ends when lanehub starts stopping.
pub fn spawn(
    store: Store,
    members: Arc<dyn MembershipStore>,
    vipps: VippsHandle,
    settings: FollowSettings,
    shutdown: Shutdown,
) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut follower = Follower::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.reached(Phase::Stopping) => return,
            }
            if let Err(e) = follower
                .sweep(&store, members.as_ref(), &vipps, settings.window)
                .await
            {
                tracing::warn!(error = %e, "could not follow up late enrollments");
            }
        }
    });
}

/// The follower's memory between sweeps: how far it has read the journal (`None` before the
/// first sweep, which starts at the window instead of reading the whole journal), and when each
/// Login may be polled next.
#[derive(Debug, Default)]
pub struct Follower {
    read_up_to: Option<u64>,
    pace: HashMap<String, Pace>,
}

/// How often one Login is polled: the sweep's interval, 5 s more per `slow_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pace {
    /// Added to the sweep interval.
    slower_by: Duration,
    next_poll: tokio::time::Instant,
}

impl Follower {
    /// Takes over what sessions gave up on since the last sweep, then works on every
    /// unresolved late enrollment once.
    pub async fn sweep(
        &mut self,
        store: &Store,
        members: &dyn MembershipStore,
        vipps: &VippsHandle,
        window: Duration,
    ) -> Result<(), StoreError> {
        self.take_over(store, window).await?;
        let rows = store.unresolved_late_enrollments().await?;
        self.pace
            .retain(|id, _| rows.iter().any(|r| &r.auth_req_id == id));
        for row in rows {
            let pace = self.pace.get(&row.auth_req_id).copied();
            if pace.is_some_and(|p| tokio::time::Instant::now() < p.next_poll) {
                continue;
            }
            let id = row.auth_req_id.clone();
            if let Some(answer) = follow(store, members, vipps, row, window).await {
                let slower_by = pace.map_or(Duration::ZERO, |p| p.slower_by)
                    + match answer {
                        LoginPoll::SlowDown => SLOW_DOWN_STEP,
                        _ => Duration::ZERO,
                    };
                // The sweep comes back after its own interval; only the extra is waited here.
                let next_poll = tokio::time::Instant::now() + slower_by;
                self.pace.insert(
                    id,
                    Pace {
                        slower_by,
                        next_poll,
                    },
                );
            }
        }
        Ok(())
    }

    async fn take_over(&mut self, store: &Store, window: Duration) -> Result<(), StoreError> {
        let read_up_to = match self.read_up_to {
            Some(seq) => seq,
            None => {
                let since = Utc::now() - chrono::Duration::from_std(window).unwrap_or_default();
                store.seq_before(since).await?
            }
        };
        let (high, finished) = store
            .records_of_kind_since(FINISHED_KIND, read_up_to)
            .await?;
        // An enrollment that ended before the window began started earlier still: past saving.
        let sessions: BTreeSet<(LaneId, String)> = finished
            .iter()
            .filter(|r| age(r.recorded_at) < window)
            .map(|r| (r.lane.clone(), r.session.clone()))
            .collect();
        for (lane, session) in sessions {
            let records = store.session_records(&lane, &session).await?;
            for (finished_seq, handover, create) in given_up(&lane, &session, &records) {
                if finished_seq <= read_up_to {
                    continue;
                }
                // Past the window nothing can be gained; a row only waits for the journal's
                // details (a token handed over late) if it exists.
                let create = create && age(handover.started_at) < window;
                match store.hand_over_late_enrollment(handover, create).await {
                    Ok(_) => {}
                    // One unusable record must not hold up every later one.
                    Err(e) if e.kind() == "invalid_input" => {
                        tracing::warn!(lane = %lane, error = %e, "a journalled enrollment cannot be followed up; skipped");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.read_up_to = Some(high);
        Ok(())
    }
}

/// The enrollments of one session's journal that ended without a member, by the `seq` of their
/// `enrollment_finished` record; `true` where the follower takes over (the Login may still be
/// consented to, or was and the member is not stored), `false` where it only learns the
/// session's details (denied or expired at Vipps).
fn given_up(
    lane: &LaneId,
    session: &str,
    records: &[crate::store::JournalRecord],
) -> Vec<(u64, LateEnrollmentHandover, bool)> {
    let mut out = Vec::new();
    let mut open: Option<LateEnrollmentHandover> = None;
    for stored in records {
        // The store's own `closed` record is no session record.
        let Ok(record) = stored.payload_as::<JournalRecord>() else {
            continue;
        };
        match record {
            JournalRecord::EnrollmentStarted {
                msisdn,
                auth_req_id,
            } => {
                open = Some(LateEnrollmentHandover {
                    auth_req_id,
                    lane: lane.clone(),
                    session: Some(session.to_owned()),
                    msisdn: Some(msisdn),
                    started_at: stored.recorded_at,
                    login_token: None,
                    userinfo: None,
                });
            }
            JournalRecord::EnrollmentConsented {
                login_token: Some(login_token),
            } => {
                if let Some(h) = &mut open {
                    h.login_token = Some(login_token.secret().clone());
                }
            }
            JournalRecord::EnrollmentUserinfo { userinfo } => {
                if let Some(h) = &mut open {
                    h.userinfo = serde_json::to_value(&userinfo).ok();
                }
            }
            JournalRecord::EnrollmentFinished { outcome } => {
                if let Some(handover) = open.take() {
                    let take_over = match outcome {
                        EnrollmentOutcome::Enrolled => None,
                        EnrollmentOutcome::Denied | EnrollmentOutcome::Expired => Some(false),
                        EnrollmentOutcome::Abandoned
                        | EnrollmentOutcome::Failed { .. }
                        | EnrollmentOutcome::Unavailable => Some(true),
                    };
                    if let Some(create) = take_over {
                        out.push((stored.seq, handover, create));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// One step of one late enrollment; failures are logged and retried at the next sweep. Returns
/// the token poll's answer while the customer has not answered.
async fn follow(
    store: &Store,
    members: &dyn MembershipStore,
    vipps: &VippsHandle,
    row: LateEnrollment,
    window: Duration,
) -> Option<LoginPoll> {
    let late = age(row.started_at) >= window;
    let id = row.auth_req_id.clone();
    if let Some(info) = &row.userinfo {
        let info = match serde_json::from_value::<Userinfo>(info.clone()) {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(lane = %row.lane, error = %e, "stored userinfo of a late enrollment is unreadable");
                resolve(store, &row, Outcome::Failed, false).await;
                return None;
            }
        };
        enroll(store, members, &row, info, late).await;
        return None;
    }
    if let Some(token) = &row.login_token {
        fetch_userinfo(store, members, vipps, &row, token.clone(), late).await;
        return None;
    }
    if late {
        resolve(store, &row, Outcome::Expired, true).await;
        return None;
    }
    match vipps.login_token(&AuthReqId(id)).await {
        Ok(answer @ (LoginPoll::Pending | LoginPoll::SlowDown)) => return Some(answer),
        Ok(LoginPoll::Denied) => {
            resolve(store, &row, Outcome::Denied, true).await;
        }
        Ok(LoginPoll::Expired) => {
            resolve(store, &row, Outcome::Expired, true).await;
        }
        Ok(LoginPoll::Success(token)) => {
            let token = SecretString::from(token.bearer().to_owned());
            // Vipps hands the token out once: it is on disk before anything else happens.
            let handover = LateEnrollmentHandover {
                login_token: Some(token.clone()),
                ..details(&row)
            };
            if let Err(e) = store.hand_over_late_enrollment(handover, false).await {
                tracing::error!(lane = %row.lane, error = %e, "the late consent's token could not be stored; trying to finish the enrollment now");
            }
            tracing::info!(lane = %row.lane, "a customer consented after the cashier moved on");
            fetch_userinfo(store, members, vipps, &row, token, late).await;
        }
        // Not sent again at once: Vipps refused this poll for good (the token was handed out
        // already and its answer lost, or Vipps forgot the request).
        Err(e) if e.status() == Some(400) => {
            tracing::warn!(lane = %row.lane, error = %e, "Vipps refused the late enrollment's token poll; the enrollment is lost");
            resolve(store, &row, Outcome::Failed, true).await;
        }
        Err(e) => {
            tracing::debug!(lane = %row.lane, error = %e, "late enrollment not polled; next time")
        }
    }
    None
}

async fn fetch_userinfo(
    store: &Store,
    members: &dyn MembershipStore,
    vipps: &VippsHandle,
    row: &LateEnrollment,
    token: SecretString,
    late: bool,
) {
    match vipps.userinfo(&LoginToken::new(token)).await {
        Ok(answer) => {
            let info = session_userinfo(answer);
            let handover = LateEnrollmentHandover {
                userinfo: serde_json::to_value(&info).ok(),
                ..details(row)
            };
            // Stored so a failing member store is retried after the token expired.
            if let Err(e) = store.hand_over_late_enrollment(handover, false).await {
                tracing::warn!(lane = %row.lane, error = %e, "the late enrollment's userinfo could not be stored");
            }
            enroll(store, members, row, info, late).await;
        }
        Err(e) if e.status() == Some(401) || late => {
            tracing::warn!(lane = %row.lane, error = %e, "userinfo for a late consent failed for good; the enrollment is lost");
            resolve(store, row, Outcome::Failed, false).await;
        }
        Err(e) => {
            tracing::debug!(lane = %row.lane, error = %e, "userinfo for a late consent failed; next time")
        }
    }
}

async fn enroll(
    store: &Store,
    members: &dyn MembershipStore,
    row: &LateEnrollment,
    info: Userinfo,
    late: bool,
) {
    // The journal names the customer; a token handed over alone falls back to userinfo's number.
    let Some(msisdn) = row.msisdn.clone().or_else(|| info.phone_number.clone()) else {
        if late {
            tracing::warn!(lane = %row.lane, "a late consent names no phone number; the enrollment is lost");
            resolve(store, row, Outcome::Failed, false).await;
        }
        return;
    };
    let member = enrolled_member(&row.lane, msisdn.clone(), info);
    match members.upsert_member(member).await {
        Ok(_) => {
            if resolve(store, row, Outcome::Enrolled, false).await {
                tracing::info!(lane = %row.lane, phone = %msisdn, "member enrolled after the session had moved on");
            }
        }
        Err(e) if late => {
            tracing::error!(lane = %row.lane, phone = %msisdn, error = %e, "the late member could not be saved within the window; the enrollment is lost");
            resolve(store, row, Outcome::Failed, false).await;
        }
        Err(e) => {
            tracing::warn!(lane = %row.lane, phone = %msisdn, error = %e, "the late member could not be saved; trying again")
        }
    }
}

/// How long ago `t` was on the wall clock; a time ahead of the clock counts as now.
fn age(t: chrono::DateTime<Utc>) -> Duration {
    (Utc::now() - t).to_std().unwrap_or_default()
}

/// The row's identity, for a handover that fills one more column.
fn details(row: &LateEnrollment) -> LateEnrollmentHandover {
    LateEnrollmentHandover {
        auth_req_id: row.auth_req_id.clone(),
        lane: row.lane.clone(),
        session: None,
        msisdn: None,
        started_at: row.started_at,
        login_token: None,
        userinfo: None,
    }
}

/// Records the outcome and counts it; `false` if the row was not resolved now.
async fn resolve(
    store: &Store,
    row: &LateEnrollment,
    outcome: Outcome,
    unless_consented: bool,
) -> bool {
    match store
        .resolve_late_enrollment(&row.auth_req_id, outcome.as_str(), unless_consented)
        .await
    {
        Ok(true) => {
            m::late_enrollment_finished(outcome);
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(lane = %row.lane, error = %e, "could not record a late enrollment's outcome");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Membership;
    use secrecy::ExposeSecret;

    fn stored(seq: u64, record: &JournalRecord) -> crate::store::JournalRecord {
        crate::store::JournalRecord {
            seq,
            lane: "1".parse().unwrap(),
            session: "s1".into(),
            kind: record.kind().into(),
            payload: serde_json::to_value(record).unwrap(),
            recorded_at: Utc::now(),
        }
    }

    fn journal(records: &[JournalRecord]) -> Vec<crate::store::JournalRecord> {
        let mut out: Vec<_> = records
            .iter()
            .enumerate()
            .map(|(i, r)| stored(i as u64 + 1, r))
            .collect();
        // The store's own closing record does not decode as a session record.
        out.push(crate::store::JournalRecord {
            kind: crate::store::CLOSED_KIND.into(),
            payload: serde_json::json!({"outcome": "paid"}),
            ..stored(out.len() as u64 + 1, &JournalRecord::SessionStarted)
        });
        out
    }

    fn started(id: &str) -> JournalRecord {
        JournalRecord::EnrollmentStarted {
            msisdn: "4798765432".parse().unwrap(),
            auth_req_id: id.into(),
        }
    }

    fn finished(outcome: EnrollmentOutcome) -> JournalRecord {
        JournalRecord::EnrollmentFinished { outcome }
    }

    #[test]
    fn the_follower_takes_over_what_sessions_gave_up_with_the_login_open_or_consented() {
        let token = LoginAccessToken::new(SecretString::from("tok"));
        let userinfo = Userinfo {
            name: Some("Ola".into()),
            email: None,
            phone_number: None,
            consents: vec![],
        };
        let records = journal(&[
            JournalRecord::SessionStarted,
            JournalRecord::CustomerIdentified {
                msisdn: "4798765432".parse().unwrap(),
                membership: Membership::NonMember,
            },
            // Enrolled: nothing to do.
            started("enrolled"),
            finished(EnrollmentOutcome::Enrolled),
            // Denied at Vipps: only details for a row that may exist.
            started("denied"),
            finished(EnrollmentOutcome::Denied),
            // The cashier paid before the consent: taken over.
            started("abandoned"),
            finished(EnrollmentOutcome::Abandoned),
            // The member store failed after userinfo: taken over with the userinfo.
            started("store-failed"),
            JournalRecord::EnrollmentConsented {
                login_token: Some(token.clone()),
            },
            JournalRecord::EnrollmentUserinfo {
                userinfo: userinfo.clone(),
            },
            finished(EnrollmentOutcome::Failed {
                detail: "saving the member failed".into(),
            }),
            // Abandoned before the Login started: no auth_req_id, nothing to follow.
            finished(EnrollmentOutcome::Abandoned),
        ]);
        let lane: LaneId = "1".parse().unwrap();
        let found = given_up(&lane, "s1", &records);
        let ids: Vec<_> = found
            .iter()
            .map(|(seq, h, create)| (*seq, h.auth_req_id.as_str(), *create))
            .collect();
        assert_eq!(
            ids,
            [
                (6, "denied", false),
                (8, "abandoned", true),
                (12, "store-failed", true)
            ]
        );
        let abandoned = &found[1].1;
        assert_eq!(abandoned.session.as_deref(), Some("s1"));
        assert_eq!(abandoned.msisdn.as_ref().unwrap().as_str(), "4798765432");
        assert!(abandoned.login_token.is_none() && abandoned.userinfo.is_none());
        let failed = &found[2].1;
        assert_eq!(failed.login_token.as_ref().unwrap().expose_secret(), "tok");
        let back: Userinfo = serde_json::from_value(failed.userinfo.clone().unwrap()).unwrap();
        assert_eq!(back, userinfo);
    }
}
