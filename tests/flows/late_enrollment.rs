//! The follow-up of enrollments the lane could not finish: consents after the cashier paid or
//! after the lane's Login timeout, slow-down answers, member stores that failed, token polls in
//! flight.

use super::*;

/// Polls the membership store until `phone` is a member.
async fn wait_member(hub: &TestApp, phone: &Msisdn, what: &str) -> lanehub::store::Member {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(member) = hub.store.member(phone).await.unwrap() {
            return member;
        }
        assert!(Instant::now() < deadline, "{what}: never stored");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the late enrollment of Login `id` until the follower has resolved it.
async fn wait_late_outcome(hub: &TestApp, id: &str) -> lanehub::store::LateEnrollment {
    let never = format!("late enrollment {id} never resolved");
    wait_late(hub, id, &never, |l| l.outcome.is_some()).await
}

/// Polls the late enrollment of Login `id` until `done` holds; `never` says what did not happen.
async fn wait_late(
    hub: &TestApp,
    id: &str,
    never: &str,
    done: impl Fn(&lanehub::store::LateEnrollment) -> bool,
) -> lanehub::store::LateEnrollment {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let late = hub.store.late_enrollment(id).await.unwrap();
        if let Some(late) = late.filter(&done) {
            return late;
        }
        assert!(Instant::now() < deadline, "{never}");
        tokio::time::sleep(POLL).await;
    }
}

/// [`fast_settings`] with the follower sweeping every 100 ms.
fn following() -> Settings {
    let mut settings = fast_settings();
    settings.supervisor.late_enrollment_interval = ms(100);
    settings
}

/// Starts lanehub on `settings` with lane 1's terminal; the non-member approves payments and
/// leaves the Login open until the test answers it.
async fn start_with_an_open_login(settings: Settings) -> (TestApp, Terminal) {
    let (hub, term) = start_with_terminal(settings).await;
    hub.sim.behave(NON_MEMBER, "approve", 150, "ignore").await;
    (hub, term)
}

/// Identifies the non-member on lane 1 and has the cashier start the enrollment.
async fn enroll(hub: &TestApp, term: &mut Terminal) {
    identify(hub, term, "1", NON_MEMBER, "non_member").await;
    let (status, body) = hub.command("1", "enroll", json!({})).await;
    assert_eq!(status, 200, "{body}");
}

/// The customer `phone` consents to their one Login, still pending, in the Vipps app; waits until
/// the follower stored them, enrolled with their consents (`who` says who they are). The
/// Login's id.
async fn consent_to_the_pending_login(hub: &TestApp, phone: &Msisdn, who: &str) -> String {
    let login = hub.only_login(phone.as_str(), "pending").await;
    let id = login["authReqId"].as_str().unwrap().to_owned();
    hub.sim.post(&format!("/logins/{id}/consent")).await;
    let member = wait_member(hub, phone, who).await;
    assert_enrolled_with_consents(&member);
    id
}

/// Asserts the member came in by enrollment at lane 1 with the consents from Vipps.
pub(crate) fn assert_enrolled_with_consents(member: &lanehub::store::Member) {
    assert_eq!(member.name, "Ola Nordmann");
    assert_eq!(member.source, MemberSource::Enrollment);
    assert_eq!(
        member.enrolled_lane.as_ref().map(|l| l.to_string()),
        Some("1".into())
    );
    assert!(
        member.consents.iter().any(|c| c.required && c.accepted),
        "{:?}",
        member.consents
    );
    assert!(
        member.consents.iter().any(|c| !c.required),
        "{:?}",
        member.consents
    );
}

#[actix_web::test]
async fn a_customer_who_consents_after_the_cashier_paid_still_becomes_a_member() {
    // The customer approves the payment but leaves the Login open until the test answers it.
    let (hub, mut term) = start_with_an_open_login(following()).await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();

    enroll(&hub, &mut term).await;
    term.message("enrollment_awaiting_consent").await;
    // The cashier does not wait for the consent.
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");
    let paid = term.message("payment_approved").await;
    assert_eq!(paid["state"], "idle", "{paid}");
    term.assert_saw(&[
        "enrollment_awaiting_consent",
        "payment_requested",
        "payment_approved",
    ]);
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
    assert!(hub.store.member(&phone).await.unwrap().is_none());

    // Now the customer consents in the Vipps app.
    let id = consent_to_the_pending_login(&hub, &phone, "the member who consented late").await;
    let logins = hub.logins(NON_MEMBER).await;
    assert_eq!(logins[0]["state"], "completed", "{logins}");
    let late = wait_late_outcome(&hub, &id).await;
    assert_eq!(late.outcome.as_deref(), Some("enrolled"));
    assert_eq!(late.msisdn.as_ref(), Some(&phone));
    assert!(
        late.login_token.is_none(),
        "a resolved enrollment keeps no token"
    );
    hub.assert_no_login_token_stored();
    // Other tests of this process may count too: the family is global, not per lane.
    let enrolled = hub
        .metric("lanehub_late_enrollments_total", &[("outcome", "enrolled")])
        .await;
    assert!(enrolled.is_some_and(|n| n >= 1.0), "{enrolled:?}");
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_consent_given_after_the_lanes_login_timeout_still_makes_a_member() {
    let mut settings = following();
    // The cashier waits half a second; Vipps keeps the Login open for its ten minutes.
    settings.session.login_timeout = ms(500);
    let (hub, mut term) = start_with_an_open_login(settings).await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();

    enroll(&hub, &mut term).await;
    term.message("enrollment_awaiting_consent").await;
    let moved_on = term.message("enrollment_abandoned").await;
    assert_eq!(moved_on["state"], "ready_for_payment", "{moved_on}");
    assert_eq!(
        moved_on["message"]["text"],
        "Enrollment no longer awaited here: a consent in Vipps still enrolls"
    );

    // Minute 7 at Vipps: the Login is still open, and the customer consents.
    hub.sim
        .call(
            reqwest::Method::POST,
            "/clock/advance",
            Some(json!({"ms": 7 * 60_000})),
        )
        .await;
    let id =
        consent_to_the_pending_login(&hub, &phone, "the member who consented at minute 7").await;
    let late = wait_late_outcome(&hub, &id).await;
    assert_eq!(late.outcome.as_deref(), Some("enrolled"));
    hub.pay("1").await;
    term.message("payment_approved").await;
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn the_follower_slows_down_when_vipps_says_slow_down() {
    let mut settings = following();
    // Vipps asks for 2 s between polls; the follower sweeps every 100 ms.
    settings.sim.login_interval = Duration::from_secs(2);
    let (hub, mut term) = start_with_an_open_login(settings).await;
    // A 1 ms latency on every token poll, so the simulator counts them.
    hub.sim.faults("login_token", json!({"latencyMs": 1})).await;
    let polls = || async {
        hub.sim.get("/faults").await["injectedByOperation"]["login_token"]["latency"]
            .as_u64()
            .unwrap_or(0)
    };

    enroll(&hub, &mut term).await;
    term.message("enrollment_awaiting_consent").await;
    hub.pay("1").await;
    term.message("payment_approved").await;
    // The follower polls (pending), polls again too soon (slow_down)...
    let deadline = Instant::now() + PATIENCE;
    while polls().await < 2 {
        assert!(Instant::now() < deadline, "the follower never polled twice");
        tokio::time::sleep(POLL).await;
    }
    // ...and then keeps 5 s more between polls, not one per sweep.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(polls().await, 2);
}

#[actix_web::test]
async fn a_member_whose_store_failed_is_stored_by_the_follower_later() {
    let (hub, mut term) = start_with_terminal(following()).await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();

    // The membership table refuses new members for a while (a full disk, a locked file).
    let db = rusqlite::Connection::open(hub.store.path()).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_members BEFORE INSERT ON members
         BEGIN SELECT RAISE(ABORT, 'members cannot be written now'); END;",
    )
    .unwrap();

    enroll(&hub, &mut term).await;
    let failed = term.message("enrollment_failed").await;
    assert_eq!(failed["state"], "ready_for_payment", "{failed}");
    assert!(hub.store.member(&phone).await.unwrap().is_none());

    // The follower keeps trying; once members can be written again the member is stored.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let open = hub.store.unresolved_late_enrollments().await.unwrap();
        if open.iter().any(|l| l.userinfo.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "never handed over: {open:?}");
        tokio::time::sleep(POLL).await;
    }
    assert!(hub.store.member(&phone).await.unwrap().is_none());
    db.execute_batch("DROP TRIGGER refuse_members").unwrap();
    let member = wait_member(&hub, &phone, "the member whose store had failed").await;
    assert_enrolled_with_consents(&member);
    let logins = hub.logins(NON_MEMBER).await;
    let id = logins[0]["authReqId"].as_str().unwrap();
    let late = wait_late_outcome(&hub, id).await;
    assert_eq!(late.outcome.as_deref(), Some("enrolled"));
    // Other tests of this process may count too: the family is global, not per lane.
    let enrolled = hub
        .metric("lanehub_late_enrollments_total", &[("outcome", "enrolled")])
        .await;
    assert!(enrolled.is_some_and(|n| n >= 1.0), "{enrolled:?}");
    // One Login only: the follower used the journalled userinfo, it did not poll again.
    let logins = hub.logins(NON_MEMBER).await;
    assert_eq!(logins.as_array().unwrap().len(), 1, "{logins}");

    let (status, body) = hub.command("1", "reset", json!({})).await;
    assert_eq!(status, 200, "{body}");
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_token_poll_in_flight_when_the_cashier_pays_hands_the_consent_to_the_follower() {
    use lanehub::config::VippsMode;
    use lanehub::followup::enrollment::Follower;
    use lanehub::vipps::actor::VippsHandle;
    use std::sync::Arc;

    let mut settings = fast_settings();
    // The follower sweeps once at start and then not within the test: the test sweeps itself.
    settings.supervisor.late_enrollment_interval = Duration::from_secs(3600);
    let (hub, mut term) = start_with_an_open_login(settings.clone()).await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();
    // Every token poll takes 2 s to reach Vipps, so the lane's poll is in flight for a while.
    let slow = json!({"latencyMs": 2_000});
    hub.sim.faults("login_token", slow).await;

    enroll(&hub, &mut term).await;
    term.message("enrollment_awaiting_consent").await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let faults = hub.sim.get("/faults").await;
        if faults["injectedByOperation"]["login_token"]["latency"].as_u64() >= Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the lane never polled: {faults}");
        tokio::time::sleep(POLL).await;
    }
    // The customer consents while that poll is on its way; the cashier pays at once.
    let logins = hub.logins(NON_MEMBER).await;
    let id = logins[0]["authReqId"].as_str().unwrap().to_owned();
    hub.sim.post(&format!("/logins/{id}/consent")).await;
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");

    // The poll comes back with the token after the session stopped waiting: the lane stores it
    // for the follower instead of dropping it (Vipps will not hand it out again).
    let never = "the late token was never handed over";
    let late = wait_late(&hub, &id, never, |l| l.login_token.is_some()).await;
    assert_eq!(late.outcome, None);
    let logins = hub.logins(NON_MEMBER).await;
    assert_eq!(logins[0]["state"], "completed", "{logins}");
    term.message("payment_approved").await;
    assert!(hub.store.member(&phone).await.unwrap().is_none());

    // One sweep reads the journal for the customer's number and finishes the enrollment with
    // the handed-over token.
    let mut vipps_settings = settings.vipps.clone();
    vipps_settings.mode = VippsMode::Remote;
    vipps_settings.base_url = hub.sim.url.clone();
    let vipps = VippsHandle::start(&vipps_settings, vipps_settings.actor_settings())
        .expect("the Vipps client starts");
    let members: Arc<dyn MembershipStore> = Arc::new(hub.store.clone());
    let window = settings.supervisor.late_enrollment_window;
    Follower::default()
        .sweep(&hub.store, members.as_ref(), &vipps, window)
        .await
        .unwrap();
    let member = hub.stored_member(&phone, "the enrolled member").await;
    assert_enrolled_with_consents(&member);
    let late = hub.store.late_enrollment(&id).await.unwrap().unwrap();
    assert_eq!(late.outcome.as_deref(), Some("enrolled"));
    assert_eq!(late.msisdn.as_ref(), Some(&phone));
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_login_that_starts_after_the_cashier_paid_is_still_followed_to_the_member() {
    let (hub, mut term) = start_with_an_open_login(following()).await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();
    // The Login start takes a second to reach Vipps: the cashier pays before it is answered.
    hub.sim
        .faults("login_authenticate", json!({"latencyMs": 1_000}))
        .await;

    enroll(&hub, &mut term).await;
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");

    // Vipps started the Login all the same and asks the customer, who consents.
    let deadline = Instant::now() + PATIENCE;
    let id = loop {
        let logins = hub.logins(NON_MEMBER).await;
        let late = match logins[0]["authReqId"].as_str() {
            Some(id) => hub.store.late_enrollment(id).await.unwrap(),
            None => None,
        };
        if let Some(late) = late {
            break late.auth_req_id;
        }
        assert!(
            Instant::now() < deadline,
            "the late Login was never handed to the follower: {logins}"
        );
        tokio::time::sleep(POLL).await;
    };
    hub.sim.post(&format!("/logins/{id}/consent")).await;
    term.message("payment_approved").await;

    let member = wait_member(&hub, &phone, "the member the follower enrolls").await;
    assert_enrolled_with_consents(&member);
    // The member is stored before the follower records the outcome.
    let late = wait_late_outcome(&hub, &id).await;
    assert_eq!(late.outcome.as_deref(), Some("enrolled"));
}
