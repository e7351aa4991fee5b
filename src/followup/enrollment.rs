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
//! the lane: the lane hands it over with [`EnrollmentFollower::consented_late`](super::EnrollmentFollower::consented_late), which stores it
//! at once, and the next sweep finishes the enrollment. Members are upserted, so a customer who
//! enrolled on another lane meanwhile is no conflict.

//! This module is the follower's pure core: [`step`] decides what to do with one row given what
//! was just learnt, [`Pace`] how often a Login is polled, [`given_up`] what a session's journal
//! leaves to follow; [`runner`] does the I/O.

pub mod runner;

use std::time::Duration;

use tokio::time::Instant;

pub use runner::{FollowSettings, Follower, spawn};

use super::Now;
use crate::domain::{LaneId, Msisdn};
use crate::metrics::LateEnrollmentOutcome as Outcome;
use crate::session::SLOW_DOWN_STEP;
use crate::session::{EnrollmentOutcome, JournalRecord, LoginAccessToken, Userinfo};
use crate::store::{LateEnrollment, LateEnrollmentHandover};

/// One unresolved late enrollment as the follower sees it.
#[derive(Debug, Clone, Copy)]
pub struct Late<'a> {
    pub row: &'a LateEnrollment,
    /// How long after its start a Login is followed.
    pub window: Duration,
}

impl Late<'_> {
    /// Past the window: nothing more is asked of Vipps, and a failure is final.
    fn is_late(&self, now: Now) -> bool {
        now.since(self.row.started_at) >= self.window
    }
}

/// What the follower learns; each one is fed to [`step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A sweep reached the row: nothing asked yet.
    Due,
    /// Vipps answered the token poll.
    Polled(Poll),
    /// Vipps answered the userinfo request.
    Userinfo(Fetched),
    /// The member store answered; `error` if it refused the member.
    MemberSaved {
        phone: Msisdn,
        error: Option<String>,
    },
}

/// Vipps' answer to a token poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// The customer has not answered yet.
    Pending,
    /// Polled too soon: Vipps asks for 5 s more between polls.
    SlowDown,
    Denied,
    Expired,
    /// The customer consented: Vipps hands this token out once.
    Token(LoginAccessToken),
    /// Refused for good (400: the token was handed out already and its answer lost, or Vipps
    /// forgot the request).
    Refused {
        error: String,
    },
    /// Any other failure: tried again at the next sweep.
    Failed {
        error: String,
    },
}

/// Vipps' answer to a userinfo request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Info(Userinfo),
    /// `unauthorized`: the token is no good any more (401).
    Failed {
        unauthorized: bool,
        error: String,
    },
}

/// What the runner does for [`step`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Poll Vipps for the Login's token.
    Poll,
    /// Store the token before anything else: Vipps hands it out once.
    StoreToken(LoginAccessToken),
    /// Fetch userinfo with the token.
    FetchUserinfo(LoginAccessToken),
    /// Store the userinfo, so a failing member store is retried after the token expired.
    StoreUserinfo(Userinfo),
    /// Upsert the member (a customer who enrolled on another lane meanwhile is no conflict).
    SaveMember {
        phone: Msisdn,
        userinfo: Userinfo,
    },
    /// Record the outcome unless it is recorded already (`unless_consented`: nor if a consent
    /// arrived meanwhile); `phone` is announced once a member is enrolled.
    Resolve {
        outcome: Outcome,
        unless_consented: bool,
        phone: Option<Msisdn>,
    },
    Log(Note),
}

/// What is worth a log line, decided here and written by the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    UnreadableUserinfo { error: String },
    PollRefused { error: String },
    PollFailed { error: String },
    Consented,
    UserinfoLost { error: String },
    UserinfoFailed { error: String },
    NoPhoneNumber,
    MemberLost { phone: Msisdn, error: String },
    MemberFailed { phone: Msisdn, error: String },
}

/// The follower's decision about one late enrollment given what it just learnt, at `now`.
/// Failures are tried again at the next sweep until the window has passed.
pub fn step(late: Late<'_>, answer: &Answer, now: Now) -> Vec<Action> {
    let row = late.row;
    let is_late = late.is_late(now);
    match answer {
        Answer::Due => {
            if let Some(stored) = &row.userinfo {
                return match serde_json::from_value::<Userinfo>(stored.clone()) {
                    Ok(info) => enroll(row, info, is_late),
                    Err(e) => vec![
                        Action::Log(Note::UnreadableUserinfo {
                            error: e.to_string(),
                        }),
                        resolve(Outcome::Failed, false),
                    ],
                };
            }
            if let Some(token) = &row.login_token {
                return vec![Action::FetchUserinfo(LoginAccessToken::new(token.clone()))];
            }
            if is_late {
                return vec![resolve(Outcome::Expired, true)];
            }
            vec![Action::Poll]
        }
        // The runner paces the next poll.
        Answer::Polled(Poll::Pending | Poll::SlowDown) => vec![],
        Answer::Polled(Poll::Denied) => vec![resolve(Outcome::Denied, true)],
        Answer::Polled(Poll::Expired) => vec![resolve(Outcome::Expired, true)],
        Answer::Polled(Poll::Token(token)) => vec![
            Action::StoreToken(token.clone()),
            Action::Log(Note::Consented),
            Action::FetchUserinfo(token.clone()),
        ],
        Answer::Polled(Poll::Refused { error }) => vec![
            Action::Log(Note::PollRefused {
                error: error.clone(),
            }),
            resolve(Outcome::Failed, true),
        ],
        Answer::Polled(Poll::Failed { error }) => vec![Action::Log(Note::PollFailed {
            error: error.clone(),
        })],
        Answer::Userinfo(Fetched::Info(info)) => {
            let mut actions = vec![Action::StoreUserinfo(info.clone())];
            actions.extend(enroll(row, info.clone(), is_late));
            actions
        }
        Answer::Userinfo(Fetched::Failed {
            unauthorized,
            error,
        }) => {
            let error = error.clone();
            if *unauthorized || is_late {
                vec![
                    Action::Log(Note::UserinfoLost { error }),
                    resolve(Outcome::Failed, false),
                ]
            } else {
                vec![Action::Log(Note::UserinfoFailed { error })]
            }
        }
        Answer::MemberSaved { phone, error: None } => vec![Action::Resolve {
            outcome: Outcome::Enrolled,
            unless_consented: false,
            phone: Some(phone.clone()),
        }],
        Answer::MemberSaved {
            phone,
            error: Some(error),
        } => {
            let (phone, error) = (phone.clone(), error.clone());
            if is_late {
                vec![
                    Action::Log(Note::MemberLost { phone, error }),
                    resolve(Outcome::Failed, false),
                ]
            } else {
                vec![Action::Log(Note::MemberFailed { phone, error })]
            }
        }
    }
}

/// The member from userinfo: the journal names the customer; a token handed over alone falls
/// back to userinfo's number.
fn enroll(row: &LateEnrollment, info: Userinfo, is_late: bool) -> Vec<Action> {
    match row.msisdn.clone().or_else(|| info.phone_number.clone()) {
        Some(phone) => vec![Action::SaveMember {
            phone,
            userinfo: info,
        }],
        None if is_late => vec![
            Action::Log(Note::NoPhoneNumber),
            resolve(Outcome::Failed, false),
        ],
        // A number may still come with the journal's details at the next sweep.
        None => vec![],
    }
}

fn resolve(outcome: Outcome, unless_consented: bool) -> Action {
    Action::Resolve {
        outcome,
        unless_consented,
        phone: None,
    }
}

/// How often one Login is polled: the sweep's interval, 5 s more per `slow_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Added to the sweep interval.
    slower_by: Duration,
    next_poll: Instant,
}

impl Pace {
    /// Whether a Login polled at `pace` (none yet: `None`) may be polled at `now`.
    pub fn allows(pace: Option<Pace>, now: Instant) -> bool {
        pace.is_none_or(|p| now >= p.next_poll)
    }

    /// The pace after a poll the customer has not answered, whose answer came at `now`.
    pub fn after(pace: Option<Pace>, slow_down: bool, now: Instant) -> Pace {
        let slower_by = pace.map_or(Duration::ZERO, |p| p.slower_by)
            + if slow_down {
                SLOW_DOWN_STEP
            } else {
                Duration::ZERO
            };
        // The sweep comes back after its own interval; only the extra is waited here.
        Pace {
            slower_by,
            next_poll: now + slower_by,
        }
    }
}

/// The enrollments of one session's journal that ended without a member, by the `seq` of their
/// `enrollment_finished` record; `true` where the follower takes over (the Login may still be
/// consented to, or was and the member is not stored), `false` where it only learns the
/// session's details (denied or expired at Vipps).
pub fn given_up(
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

#[cfg(test)]
mod tests {
    //! One scenario per transition of the follower, its pacing, and what it takes over.

    use chrono::{DateTime, Utc};
    use secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::session::Membership;

    const WINDOW: Duration = Duration::from_secs(600);
    const PHONE: &str = "4798765432";

    fn phone() -> Msisdn {
        PHONE.parse().unwrap()
    }

    fn token(s: &str) -> LoginAccessToken {
        LoginAccessToken::new(SecretString::from(s.to_owned()))
    }

    fn info(phone_number: Option<Msisdn>) -> Userinfo {
        Userinfo {
            name: Some("Ola".into()),
            email: None,
            phone_number,
            consents: vec![],
        }
    }

    /// A row taken over from a session's journal: its number known, nothing else yet.
    fn row(started_at: DateTime<Utc>) -> LateEnrollment {
        LateEnrollment {
            auth_req_id: "req-1".into(),
            lane: "1".parse().unwrap(),
            session: Some("s1".into()),
            msisdn: Some(phone()),
            started_at,
            login_token: None,
            userinfo: None,
            outcome: None,
            updated_at: started_at,
        }
    }

    /// A row for a token handed over alone: no number known yet.
    fn no_number(started_at: DateTime<Utc>) -> LateEnrollment {
        LateEnrollment {
            msisdn: None,
            ..row(started_at)
        }
    }

    /// The step for `row` started `age` ago.
    fn step_aged(
        age: Duration,
        row: impl FnOnce(DateTime<Utc>) -> LateEnrollment,
        answer: Answer,
    ) -> Vec<Action> {
        let now = Now::read();
        let row = row(now.wall - chrono::Duration::from_std(age).unwrap());
        step(
            Late {
                row: &row,
                window: WINDOW,
            },
            &answer,
            now,
        )
    }

    /// Within the window, the plain row.
    fn young(answer: Answer) -> Vec<Action> {
        step_aged(Duration::from_secs(5), row, answer)
    }

    /// Exactly at the window's end, the plain row.
    fn late(answer: Answer) -> Vec<Action> {
        step_aged(WINDOW, row, answer)
    }

    fn resolved(outcome: Outcome, unless_consented: bool) -> Action {
        Action::Resolve {
            outcome,
            unless_consented,
            phone: None,
        }
    }

    fn save(phone: Msisdn, userinfo: Userinfo) -> Action {
        Action::SaveMember { phone, userinfo }
    }

    /// Userinfo is stored, then the member saved under the number `PHONE`.
    fn stored_then_saved(userinfo: Userinfo) -> [Action; 2] {
        [
            Action::StoreUserinfo(userinfo.clone()),
            save(phone(), userinfo),
        ]
    }

    #[test]
    fn a_due_row_with_stored_userinfo_saves_the_member_without_asking_vipps() {
        let with_info = |t| LateEnrollment {
            userinfo: Some(serde_json::to_value(info(None)).unwrap()),
            ..row(t)
        };
        let actions = step_aged(Duration::from_secs(5), with_info, Answer::Due);
        assert_eq!(actions, [save(phone(), info(None))]);
    }

    #[test]
    fn a_due_row_whose_stored_userinfo_is_unreadable_fails() {
        let unreadable = |t| LateEnrollment {
            userinfo: Some(serde_json::json!({"name": 7})),
            ..row(t)
        };
        let actions = step_aged(Duration::from_secs(5), unreadable, Answer::Due);
        assert!(
            matches!(&actions[0], Action::Log(Note::UnreadableUserinfo { .. })),
            "{actions:?}"
        );
        assert_eq!(actions[1..], [resolved(Outcome::Failed, false)]);
    }

    #[test]
    fn a_due_row_with_a_stored_token_fetches_userinfo_even_past_the_window() {
        let with_token = |t| LateEnrollment {
            login_token: Some(SecretString::from("tok")),
            ..row(t)
        };
        let fetch = [Action::FetchUserinfo(token("tok"))];
        assert_eq!(step_aged(Duration::ZERO, with_token, Answer::Due), fetch);
        assert_eq!(step_aged(WINDOW * 2, with_token, Answer::Due), fetch);
    }

    #[test]
    fn a_due_row_without_consent_is_polled_within_the_window() {
        let just_inside = WINDOW - Duration::from_secs(1);
        assert_eq!(step_aged(just_inside, row, Answer::Due), [Action::Poll]);
    }

    #[test]
    fn a_due_row_without_consent_past_the_window_expires_unless_consented() {
        assert_eq!(late(Answer::Due), [resolved(Outcome::Expired, true)]);
    }

    #[test]
    fn a_pending_or_slow_down_poll_waits_for_the_next_sweep() {
        assert_eq!(young(Answer::Polled(Poll::Pending)), []);
        assert_eq!(young(Answer::Polled(Poll::SlowDown)), []);
    }

    #[test]
    fn a_denied_login_is_resolved_denied_unless_consented() {
        let actions = young(Answer::Polled(Poll::Denied));
        assert_eq!(actions, [resolved(Outcome::Denied, true)]);
    }

    #[test]
    fn an_expired_login_is_resolved_expired_unless_consented() {
        let actions = young(Answer::Polled(Poll::Expired));
        assert_eq!(actions, [resolved(Outcome::Expired, true)]);
    }

    #[test]
    fn a_token_is_stored_before_userinfo_is_fetched_with_it() {
        let actions = young(Answer::Polled(Poll::Token(token("tok"))));
        assert_eq!(
            actions,
            [
                Action::StoreToken(token("tok")),
                Action::Log(Note::Consented),
                Action::FetchUserinfo(token("tok")),
            ]
        );
    }

    #[test]
    fn a_poll_vipps_refuses_for_good_fails_the_enrollment_unless_consented() {
        let error = "400".to_owned();
        let actions = young(Answer::Polled(Poll::Refused {
            error: error.clone(),
        }));
        assert_eq!(
            actions,
            [
                Action::Log(Note::PollRefused { error }),
                resolved(Outcome::Failed, true)
            ]
        );
    }

    #[test]
    fn a_failed_poll_is_only_logged_and_tried_again() {
        let error = "timeout".to_owned();
        let actions = young(Answer::Polled(Poll::Failed {
            error: error.clone(),
        }));
        assert_eq!(actions, [Action::Log(Note::PollFailed { error })]);
    }

    #[test]
    fn userinfo_is_stored_then_the_journalled_number_becomes_the_member() {
        let other: Msisdn = "4791234567".parse().unwrap();
        let fetched = info(Some(other));
        let actions = young(Answer::Userinfo(Fetched::Info(fetched.clone())));
        assert_eq!(actions, stored_then_saved(fetched));
    }

    #[test]
    fn userinfo_for_a_token_handed_over_alone_gives_the_number() {
        let fetched = info(Some(phone()));
        let answer = Answer::Userinfo(Fetched::Info(fetched.clone()));
        let actions = step_aged(Duration::from_secs(5), no_number, answer);
        assert_eq!(actions, stored_then_saved(fetched));
    }

    #[test]
    fn userinfo_naming_no_number_waits_within_the_window_and_fails_past_it() {
        let answer = Answer::Userinfo(Fetched::Info(info(None)));
        let store = Action::StoreUserinfo(info(None));
        let young = step_aged(Duration::from_secs(5), no_number, answer.clone());
        assert_eq!(young, std::slice::from_ref(&store));
        let late = step_aged(WINDOW, no_number, answer);
        assert_eq!(
            late,
            [
                store,
                Action::Log(Note::NoPhoneNumber),
                resolved(Outcome::Failed, false)
            ]
        );
    }

    fn userinfo_failed(unauthorized: bool, error: &str) -> Answer {
        Answer::Userinfo(Fetched::Failed {
            unauthorized,
            error: error.to_owned(),
        })
    }

    /// Within the window `answer` is only logged as `retry`; at its end it is logged as `lost`
    /// and the row fails.
    fn assert_retried_within_the_window_only(answer: Answer, retry: Note, lost: Note) {
        assert_eq!(young(answer.clone()), [Action::Log(retry)]);
        assert_eq!(
            late(answer),
            [Action::Log(lost), resolved(Outcome::Failed, false)]
        );
    }

    #[test]
    fn userinfo_refused_with_401_fails_the_enrollment_at_once() {
        let error = "401".to_owned();
        assert_eq!(
            young(userinfo_failed(true, &error)),
            [
                Action::Log(Note::UserinfoLost { error }),
                resolved(Outcome::Failed, false)
            ]
        );
    }

    #[test]
    fn userinfo_failing_otherwise_is_tried_again_within_the_window_only() {
        let error = "503".to_owned();
        assert_retried_within_the_window_only(
            userinfo_failed(false, &error),
            Note::UserinfoFailed {
                error: error.clone(),
            },
            Note::UserinfoLost { error },
        );
    }

    #[test]
    fn a_saved_member_resolves_the_row_enrolled_and_names_the_member() {
        let answer = Answer::MemberSaved {
            phone: phone(),
            error: None,
        };
        let enrolled = Action::Resolve {
            outcome: Outcome::Enrolled,
            unless_consented: false,
            phone: Some(phone()),
        };
        assert_eq!(young(answer.clone()), std::slice::from_ref(&enrolled));
        assert_eq!(late(answer), [enrolled]);
    }

    #[test]
    fn a_member_store_failure_is_tried_again_within_the_window_only() {
        let error = "disk full".to_owned();
        let answer = Answer::MemberSaved {
            phone: phone(),
            error: Some(error.clone()),
        };
        assert_retried_within_the_window_only(
            answer,
            Note::MemberFailed {
                phone: phone(),
                error: error.clone(),
            },
            Note::MemberLost {
                phone: phone(),
                error,
            },
        );
    }

    #[test]
    fn a_login_is_polled_each_sweep_until_vipps_says_slow_down_then_5_s_more_each_time() {
        let t0 = Instant::now();
        assert!(Pace::allows(None, t0));
        // Pending: polled again at the next sweep, whenever it comes.
        let pending = Pace::after(None, false, t0);
        assert!(Pace::allows(Some(pending), t0));
        // slow_down: 5 s more than the sweep's interval, measured from the answer.
        let slowed = Pace::after(Some(pending), true, t0);
        assert!(!Pace::allows(
            Some(slowed),
            t0 + SLOW_DOWN_STEP - Duration::from_millis(1)
        ));
        assert!(Pace::allows(Some(slowed), t0 + SLOW_DOWN_STEP));
        // A pending answer keeps the slower pace; another slow_down adds 5 s again.
        let t1 = t0 + SLOW_DOWN_STEP;
        let kept = Pace::after(Some(slowed), false, t1);
        assert!(!Pace::allows(
            Some(kept),
            t1 + SLOW_DOWN_STEP - Duration::from_millis(1)
        ));
        let slower = Pace::after(Some(kept), true, t1);
        assert!(!Pace::allows(
            Some(slower),
            t1 + SLOW_DOWN_STEP * 2 - Duration::from_millis(1)
        ));
        assert!(Pace::allows(Some(slower), t1 + SLOW_DOWN_STEP * 2));
    }

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
