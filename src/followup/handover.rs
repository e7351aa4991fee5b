//! The follower's inbox: how a lane hands over a Login answer that came after its session
//! stopped waiting. It only writes to the store, so a lane depends on nothing else of the
//! follow-ups; the follower picks the row up at its next sweep.

use std::future::Future;

use chrono::Utc;

use crate::domain::{LaneId, Msisdn};
use crate::session::LoginAccessToken;
use crate::store::{LateEnrollmentHandover, Store, StoreError};

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
