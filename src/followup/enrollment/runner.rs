//! The enrollment follower's runner: the task that every `interval` takes over what sessions gave up on (from the journal) and feeds
//! [`step`] what Vipps, the store and the member store answer for each unresolved row, carrying
//! out the actions it returns. It decides nothing itself.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::{Action, Answer, Fetched, Late, Note, Pace, Poll, given_up, step};
use crate::domain::LaneId;
use crate::followup::{Clock, Now, sweep_every};
use crate::metrics::{self as m, LateEnrollmentOutcome as Outcome};
use crate::session::LoginAccessToken;
use crate::shutdown::Shutdown;
use crate::store::{LateEnrollment, LateEnrollmentHandover, MembershipStore, Store, StoreError};
use crate::vipps::VippsHandle;
use crate::vipps::convert::{enrolled_member, userinfo as session_userinfo};
use crate::vipps::models::{AuthReqId, LoginPoll, LoginToken};

/// The journal kind whose records the follower reads.
const FINISHED_KIND: &str = "enrollment_finished";

/// How often and for how long late enrollments are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowSettings {
    pub interval: Duration,
    pub window: Duration,
}

/// Starts the follower on the current actix system; it ends when lanehub starts stopping.
pub fn spawn(
    store: Store,
    members: Arc<dyn MembershipStore>,
    vipps: VippsHandle,
    settings: FollowSettings,
    shutdown: Shutdown,
) {
    let mut follower = Follower::default();
    let sweep = async move || {
        follower
            .sweep(&store, members.as_ref(), &vipps, settings.window)
            .await
    };
    sweep_every(
        settings.interval,
        shutdown,
        "follow up late enrollments",
        sweep,
    );
}

/// The follower's memory between sweeps: how far it has read the journal (`None` before the
/// first sweep, which starts at the window instead of reading the whole journal), and when each
/// Login may be polled next.
#[derive(Debug)]
pub struct Follower {
    read_up_to: Option<u64>,
    pace: HashMap<String, Pace>,
    clock: Clock,
}

impl Default for Follower {
    fn default() -> Self {
        Follower::with_clock(Now::read)
    }
}

/// Everything one row's steps talk to.
struct Io<'a> {
    store: &'a Store,
    members: &'a dyn MembershipStore,
    vipps: &'a VippsHandle,
}

impl Follower {
    /// A follower that reads the time from `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        Follower {
            read_up_to: None,
            pace: HashMap::new(),
            clock,
        }
    }

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
        let io = Io {
            store,
            members,
            vipps,
        };
        for row in rows {
            let pace = self.pace.get(&row.auth_req_id).copied();
            if !Pace::allows(pace, (self.clock)().instant) {
                continue;
            }
            // One reading for the whole row: it is late or not for all of its steps.
            let now = (self.clock)();
            let late = Late { row: &row, window };
            if let Some(slow_down) = follow(&io, late, now).await {
                let pace = Pace::after(pace, slow_down, (self.clock)().instant);
                self.pace.insert(row.auth_req_id.clone(), pace);
            }
        }
        Ok(())
    }

    async fn take_over(&mut self, store: &Store, window: Duration) -> Result<(), StoreError> {
        let now = (self.clock)();
        let read_up_to = match self.read_up_to {
            Some(seq) => seq,
            None => {
                let since = now.wall - chrono::Duration::from_std(window).unwrap_or_default();
                store.seq_before(since).await?
            }
        };
        let (high, finished) = store
            .records_of_kind_since(FINISHED_KIND, read_up_to)
            .await?;
        // An enrollment that ended before the window began started earlier still: past saving.
        let sessions: BTreeSet<(LaneId, String)> = finished
            .iter()
            .filter(|r| now.since(r.recorded_at) < window)
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
                let create = create && now.since(handover.started_at) < window;
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

/// Steps one late enrollment until [`step`] asks for nothing more. Returns whether Vipps asked
/// to slow down, if the customer has not answered yet.
async fn follow(io: &Io<'_>, late: Late<'_>, now: Now) -> Option<bool> {
    let row = late.row;
    let mut pending = None;
    let mut answers = vec![Answer::Due];
    while let Some(answer) = answers.pop() {
        if let Answer::Polled(poll @ (Poll::Pending | Poll::SlowDown)) = &answer {
            pending = Some(matches!(poll, Poll::SlowDown));
        }
        for action in step(late, &answer, now) {
            if let Some(next) = perform(io, row, action).await {
                answers.push(next);
            }
        }
    }
    pending
}

async fn perform(io: &Io<'_>, row: &LateEnrollment, action: Action) -> Option<Answer> {
    match action {
        Action::Poll => Some(Answer::Polled(
            match io
                .vipps
                .login_token(&AuthReqId(row.auth_req_id.clone()))
                .await
            {
                Ok(LoginPoll::Pending) => Poll::Pending,
                Ok(LoginPoll::SlowDown) => Poll::SlowDown,
                Ok(LoginPoll::Denied) => Poll::Denied,
                Ok(LoginPoll::Expired) => Poll::Expired,
                Ok(LoginPoll::Success(token)) => Poll::Token(LoginAccessToken::new(
                    SecretString::from(token.bearer().to_owned()),
                )),
                // Not sent again at once: Vipps refused this poll for good (the token was handed
                // out already and its answer lost, or Vipps forgot the request).
                Err(e) if e.status() == Some(400) => Poll::Refused {
                    error: e.to_string(),
                },
                Err(e) => Poll::Failed {
                    error: e.to_string(),
                },
            },
        )),
        Action::StoreToken(token) => {
            let handover = LateEnrollmentHandover {
                login_token: Some(token.secret().clone()),
                ..details(row)
            };
            if let Err(e) = io.store.hand_over_late_enrollment(handover, false).await {
                tracing::error!(lane = %row.lane, error = %e, "the late consent's token could not be stored; trying to finish the enrollment now");
            }
            None
        }
        Action::FetchUserinfo(token) => Some(Answer::Userinfo(
            match io
                .vipps
                .userinfo(&LoginToken::new(token.secret().clone()))
                .await
            {
                Ok(answer) => Fetched::Info(session_userinfo(answer)),
                Err(e) => Fetched::Failed {
                    unauthorized: e.status() == Some(401),
                    error: e.to_string(),
                },
            },
        )),
        Action::StoreUserinfo(info) => {
            let handover = LateEnrollmentHandover {
                userinfo: serde_json::to_value(&info).ok(),
                ..details(row)
            };
            if let Err(e) = io.store.hand_over_late_enrollment(handover, false).await {
                tracing::warn!(lane = %row.lane, error = %e, "the late enrollment's userinfo could not be stored");
            }
            None
        }
        Action::SaveMember { phone, userinfo } => {
            let member = enrolled_member(&row.lane, phone.clone(), userinfo);
            let saved = io.members.upsert_member(member).await;
            Some(Answer::MemberSaved {
                phone,
                error: saved.err().map(|e| e.to_string()),
            })
        }
        Action::Resolve {
            outcome,
            unless_consented,
            phone,
        } => {
            if resolve(io.store, row, outcome, unless_consented).await
                && let Some(phone) = phone
            {
                tracing::info!(lane = %row.lane, phone = %phone, "member enrolled after the session had moved on");
            }
            None
        }
        Action::Log(note) => {
            log(row, note);
            None
        }
    }
}

fn log(row: &LateEnrollment, note: Note) {
    let lane = &row.lane;
    match note {
        Note::UnreadableUserinfo { error } => {
            tracing::error!(lane = %lane, error = %error, "stored userinfo of a late enrollment is unreadable")
        }
        Note::PollRefused { error } => {
            tracing::warn!(lane = %lane, error = %error, "Vipps refused the late enrollment's token poll; the enrollment is lost")
        }
        Note::PollFailed { error } => {
            tracing::debug!(lane = %lane, error = %error, "late enrollment not polled; next time")
        }
        Note::Consented => {
            tracing::info!(lane = %lane, "a customer consented after the cashier moved on")
        }
        Note::UserinfoLost { error } => {
            tracing::warn!(lane = %lane, error = %error, "userinfo for a late consent failed for good; the enrollment is lost")
        }
        Note::UserinfoFailed { error } => {
            tracing::debug!(lane = %lane, error = %error, "userinfo for a late consent failed; next time")
        }
        Note::NoPhoneNumber => {
            tracing::warn!(lane = %lane, "a late consent names no phone number; the enrollment is lost")
        }
        Note::MemberLost { phone, error } => {
            tracing::error!(lane = %lane, phone = %phone, error = %error, "the late member could not be saved within the window; the enrollment is lost")
        }
        Note::MemberFailed { phone, error } => {
            tracing::warn!(lane = %lane, phone = %phone, error = %error, "the late member could not be saved; trying again")
        }
    }
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
