//! Checkouts as cashiers run them: members checked in and paid, non-members enrolled (or
//! not), declines, expiry, cancels, refunds, Login answers that were lost, QR codes and scans.

use super::*;

#[actix_web::test]
async fn member_checkout_is_checked_in_paid_and_refundable() {
    let (hub, mut term) = start_with_terminal(fast_settings()).await;

    let ready = identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;
    assert_eq!(ready["message"]["text"], "Member 47******67 welcomed");
    assert_eq!(ready["session"]["customer"]["phoneNumber"], "47******67");
    assert_eq!(ready["session"]["customer"]["member"], true);
    let session = ready["session"]["id"].clone();

    // A product barcode reaches the terminal as a `scan` event and leaves the session alone.
    let (status, body) = hub.scan("1", "4006381333931").await;
    assert_eq!(status, 200, "{body}");
    let scan = term.event("scan").await;
    assert_eq!(scan["data"]["barcode"], "4006381333931");
    assert_eq!(scan["data"]["format"], "ean13");
    assert_eq!(scan["snapshot"]["state"], "ready_for_payment");
    assert_eq!(scan["snapshot"]["session"]["id"], session);

    // Garbage is refused with a reason, and the lane is unharmed.
    let (status, body) = hub.scan("1", "not a code at all").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("not a Vipps QR code"), "{body}");
    let after = hub.lane("1").await;
    assert_eq!(
        (&after["up"], &after["state"]),
        (&json!(true), &json!("ready_for_payment"))
    );
    assert_eq!(after["session"]["id"], session);

    // Pay; a second pay for the same session is refused.
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");
    let reference = body["session"]["payment"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 409, "{body}");

    let done = term.message("payment_approved").await;
    assert_eq!(done["message"]["text"], "Payment approved 239.90 NOK");
    assert_eq!(done["state"], "idle");
    // The ended checkout stays visible, with its outcome, until the next one begins.
    assert_eq!(done["session"], Value::Null);
    assert_eq!(done["lastSession"]["id"], session);
    assert_eq!(done["lastSession"]["outcome"], "paid");
    assert_eq!(
        done["lastSession"]["payment"]["reference"],
        reference.as_str()
    );
    term.assert_saw(&[
        "customer_scanned",
        "member_welcomed",
        "payment_requested",
        "payment_authorised",
        "payment_approved",
    ]);

    // Vipps: the member saw the member check-in; one payment, captured in full.
    let checkins = hub
        .sim
        .get(&format!("/checkins?phoneNumber={MEMBER}"))
        .await;
    assert_eq!(checkins.as_array().unwrap().len(), 1, "{checkins}");
    assert_eq!(checkins[0]["isMember"], true);
    assert_eq!(checkins[0]["shown"], "member_check_in");
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["reference"], reference.as_str());
    assert_eq!(payment["state"], "AUTHORIZED");
    assert_eq!(captured(&payment), AMOUNT);

    // Refund from the back office: a lane token may not, the admin token may.
    let refund = json!({"amount": {"value": 5000, "currency": "NOK"}});
    let url = format!("/api/v1/payments/{reference}/refund");
    let res = hub
        .http
        .post(format!("{}{url}", hub.address))
        .bearer_auth("demo-lane-1-token")
        .json(&refund)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let (status, body) = hub.call(reqwest::Method::POST, &url, Some(refund)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aggregate"]["refundedAmount"]["value"], 5000);
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["aggregate"]["refundedAmount"]["value"], 5000);

    // lanehub's own records agree: the session is closed, the payments index holds the amounts.
    hub.assert_journal_closed().await;
    let indexed = hub.indexed(&reference).await;
    assert_eq!(
        (indexed.captured, indexed.refunded),
        (AMOUNT, 5000),
        "{indexed:?}"
    );
}

#[actix_web::test]
async fn non_member_enrolls_then_pays_as_a_member() {
    let (hub, mut term) = start_with_terminal(fast_settings()).await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();
    assert!(hub.store.member(&phone).await.unwrap().is_none());

    let ready = identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    assert_eq!(ready["session"]["customer"]["member"], false);
    assert_eq!(
        ready["message"]["text"],
        "Customer 47******32 is not a member: offer enrollment"
    );

    let (status, body) = hub.command("1", "enroll", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let asked = &body["session"]["enrollment"];
    assert!(asked == "starting" || asked == "awaiting_consent", "{body}");
    let enrolled = term.message("enrollment_completed").await;
    assert_eq!(enrolled["session"]["enrollment"], "enrolled");
    assert_eq!(
        enrolled["message"]["text"],
        "Welcome to the club, Ola Nordmann!"
    );
    assert_eq!(enrolled["state"], "ready_for_payment");
    assert_eq!(enrolled["session"]["customer"]["member"], true);

    let member = hub.stored_member(&phone, "the enrolled member").await;
    assert_eq!(member.name, "Ola Nordmann");
    assert_eq!(member.source, MemberSource::Enrollment);
    assert_eq!(
        member.enrolled_lane.map(|l| l.to_string()),
        Some("1".into())
    );
    // The token was needed until userinfo answered: the consent is kept, the token is not.
    assert_eq!(hub.assert_no_login_token_stored(), 1);

    hub.pay("1").await;
    term.message("payment_approved").await;
    term.assert_saw(&[
        "non_member",
        "enrollment_started",
        "enrollment_awaiting_consent",
        "enrollment_completed",
        "payment_requested",
        "payment_approved",
    ]);

    // Vipps: checked in as a non-member (before enrolling), one Login, one captured payment.
    let checkins = hub
        .sim
        .get(&format!("/checkins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(checkins[0]["isMember"], false, "{checkins}");
    assert_eq!(checkins[0]["shown"], "waiting_screen");
    hub.only_login(NON_MEMBER, "completed").await;
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn non_member_declining_enrollment_still_pays() {
    let (hub, mut term) = start_with_terminal(fast_settings()).await;
    // Denies the Login, but approves the payment.
    hub.sim.behave(DECLINER, "approve", 150, "deny").await;

    identify(&hub, &mut term, "1", DECLINER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    let declined = term.message("enrollment_declined").await;
    assert_eq!(
        declined["message"]["text"],
        "Enrollment declined by the customer"
    );
    assert_eq!(declined["state"], "ready_for_payment");
    assert_eq!(declined["session"]["customer"]["member"], false);

    hub.pay("1").await;
    term.message("payment_approved").await;

    let phone: Msisdn = DECLINER.parse().unwrap();
    assert!(
        hub.store.member(&phone).await.unwrap().is_none(),
        "not enrolled"
    );
    let logins = hub.logins(DECLINER).await;
    assert_eq!(logins[0]["state"], "denied", "{logins}");
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_login_scope_vipps_has_not_activated_tells_the_cashier_why_enrollment_failed() {
    // As in Vipps' test environment: delegatedConsents is not activated for the client.
    let mut settings = fast_settings();
    settings.sim.login_delegated_consents = false;
    let (hub, mut term) = start_with_terminal(settings).await;

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    let failed = term.message("enrollment_failed").await;
    let text = failed["message"]["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Enrollment failed: Vipps refused the login: invalid_scope")
            && text.contains("delegatedConsents")
            && text.contains("vipps.login_scopes"),
        "{failed}"
    );
    assert_eq!(failed["state"], "ready_for_payment");
    let logins = hub.logins(NON_MEMBER).await;
    assert_eq!(logins.as_array().map(Vec::len), Some(0), "{logins}");
    hub.pay("1").await;
    term.message("payment_approved").await;
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_login_start_whose_answer_was_lost_is_not_started_twice() {
    let (hub, mut term) = start_with_terminal(fast_settings()).await;
    hub.sim.behave(NON_MEMBER, "approve", 150, "ignore").await;
    // Vipps starts the Login (the customer gets the request) but its answer never arrives.
    hub.sim
        .faults("login_authenticate", json!({"dropNext": 1}))
        .await;

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    let failed = term.message("enrollment_failed").await;
    assert_eq!(
        failed["message"]["text"],
        "Enrollment failed: Vipps did not answer; the customer may see a request in the app: \
         enroll again in a few minutes",
        "{failed}"
    );
    let logins = hub.logins(NON_MEMBER).await;
    assert_eq!(logins.as_array().map(Vec::len), Some(1), "{logins}");

    // Enrolling again at once: Vipps refuses while the first Login is open, and says so.
    hub.command("1", "enroll", json!({})).await;
    term.message("enrollment_started").await;
    let again = term.message("enrollment_failed").await;
    assert_eq!(
        again["message"]["text"],
        "Enrollment failed: a Vipps login to this customer is still open: enroll again in a few \
         minutes",
        "{again}"
    );
    let logins = hub.logins(NON_MEMBER).await;
    assert_eq!(logins.as_array().map(Vec::len), Some(1), "{logins}");
}

#[actix_web::test]
async fn a_token_poll_whose_answer_was_lost_tells_the_cashier_to_enroll_again() {
    let mut settings = fast_settings();
    // The lane's next scheduled poll is 3 s away: the one the consent's ping triggers comes first.
    settings.sim.login_interval = Duration::from_secs(3);
    let (hub, mut term) = start_with_terminal(settings).await;
    hub.sim.behave(NON_MEMBER, "approve", 150, "ignore").await;

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    term.message("enrollment_awaiting_consent").await;
    let logins = hub.logins(NON_MEMBER).await;
    let id = logins[0]["authReqId"].as_str().unwrap().to_owned();
    // The customer consents; the poll that fetches the token loses its answer.
    hub.sim.faults("login_token", json!({"dropNext": 1})).await;
    hub.sim.post(&format!("/logins/{id}/consent")).await;

    let failed = term.message("enrollment_failed").await;
    assert_eq!(
        failed["message"]["text"],
        "Enrollment failed: the customer's consent was lost on the way from Vipps: enroll again \
         later",
        "{failed}"
    );
    assert_eq!(failed["state"], "ready_for_payment");
    let login = hub.sim.get(&format!("/logins/{id}")).await;
    assert_eq!(login["state"], "completed", "{login}");
    let faults = hub.sim.get("/faults").await;
    assert_eq!(
        faults["injectedByOperation"]["login_token"]["drop"], 1,
        "{faults}"
    );
}

#[actix_web::test]
async fn the_default_login_scopes_enroll_where_delegated_consents_is_not_activated() {
    let mut settings = fast_settings();
    settings.sim.login_delegated_consents = false;
    let defaults = Settings::load(None, Vec::new()).unwrap();
    settings.vipps.login_scopes = defaults.vipps.login_scopes;
    assert!(
        !settings
            .vipps
            .login_scopes
            .iter()
            .any(|s| s == "delegatedConsents")
    );
    let (hub, mut term) = start_with_terminal(settings).await;

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    term.message("enrollment_completed").await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();
    let member = hub.stored_member(&phone, "the enrolled member").await;
    assert_eq!(member.name, "Ola Nordmann");
    assert!(member.consents.is_empty(), "{:?}", member.consents);
    let logins = hub.logins(NON_MEMBER).await;
    assert_eq!(
        logins[0]["scopes"],
        json!(["openid", "name", "phoneNumber", "email"])
    );
}

#[actix_web::test]
async fn declined_payment_is_reported_and_not_captured() {
    let (hub, mut term) = start_with_terminal(fast_settings()).await;
    identify(&hub, &mut term, "1", DECLINER, "non_member").await;
    hub.pay("1").await;
    let done = term.message("payment_declined").await;
    assert_eq!(done["message"]["text"], "Payment declined by the customer");
    assert_eq!(done["state"], "idle");
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["state"], "ABORTED");
    assert_eq!(captured(&payment), 0);
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn payment_the_customer_ignores_expires() {
    let (hub, mut term) = start_with_terminal(fast_settings()).await;
    identify(&hub, &mut term, "1", IGNORER, "non_member").await;
    pay_and_wait_created(&hub, &mut term, "1").await;

    // Vipps' ten minutes pass at the simulator; lanehub learns it by webhook or read-back.
    hub.sim
        .call(
            reqwest::Method::POST,
            "/clock/advance",
            Some(json!({"ms": 601_000})),
        )
        .await;
    let done = term.message("payment_expired").await;
    assert_eq!(
        done["message"]["text"],
        "Payment expired: the customer did not answer"
    );
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["state"], "EXPIRED");
    assert_eq!(captured(&payment), 0);
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn cashier_cancels_a_payment_not_yet_approved() {
    let (hub, mut term) = start_with_terminal(fast_settings()).await;
    // The member takes a minute to approve: the cashier cancels first.
    hub.sim.behave(MEMBER, "approve", 60_000, "consent").await;
    identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;
    pay_and_wait_created(&hub, &mut term, "1").await;

    let (status, body) = hub.command("1", "cancel", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let done = term.message("payment_cancelled").await;
    assert_eq!(done["state"], "idle");
    term.assert_saw(&["payment_requested", "cancel_requested", "payment_cancelled"]);
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["state"], "TERMINATED");
    assert_eq!(captured(&payment), 0);
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_personal_qr_of_a_new_shape_goes_to_the_exchange() {
    let (hub, mut term) = start_with_terminal(fast_settings()).await;
    // A shape no integration knows yet; only the QR exchange understands it.
    let customer = hub.sim.get(&format!("/customers/{NON_MEMBER}")).await;
    let qr = customer["qrFutureUrl"].as_str().expect("a new-shape QR");
    assert!(qr.starts_with("https://qr.vipps.no/c/"), "{qr}");
    let (status, body) = hub.scan("1", qr).await;
    assert_eq!(status, 200, "{body}");
    let snapshot = term.message("non_member").await;
    assert_eq!(snapshot["state"], "ready_for_payment", "{snapshot}");
    hub.command("1", "reset", json!({})).await;
    term.message("session_closed").await;

    // A QR-host URL the exchange does not know is refused by the exchange.
    let (status, body) = hub.scan("1", "https://qr.vipps.no/c/nobody?v=3").await;
    assert_eq!(status, 200, "{body}");
    term.message("qr_not_recognised").await;
}

#[actix_web::test]
async fn a_scanner_scan_the_lane_refuses_is_reported_to_the_terminal() {
    let mut settings = fast_settings();
    // A simulated customer scanner, as a configuration file names it.
    let scanner = json!({"role": "customer", "source": "simulated"});
    settings.lanes[0].scanners = vec![serde_json::from_value(scanner).unwrap()];
    let (hub, mut term) = start_with_terminal(settings).await;
    let scan = |text: String| {
        let url = "/api/v1/lanes/1/test/scanner";
        hub.call(reqwest::Method::POST, url, Some(json!({ "text": text })))
    };
    // The customer's scanner reads the QR: the checkout starts as from the terminal.
    let (status, body) = scan(hub.sim.qr(MEMBER, false).await).await;
    assert_eq!(status, 202, "{body}");
    term.message("member_welcomed").await;
    hub.sim.behave(MEMBER, "ignore", 150, "consent").await;
    pay_and_wait_created(&hub, &mut term, "1").await;

    // Another customer's QR while the payment is out: nobody answers a scanner, so the terminal
    // is told why nothing happened.
    let (status, body) = scan(hub.sim.qr(NON_MEMBER, false).await).await;
    assert_eq!(status, 202, "{body}");
    let rejected = term.event("scan_rejected").await;
    let reason = rejected["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("payment"), "{rejected}");
    assert_eq!(
        rejected["snapshot"]["state"], "awaiting_payment",
        "{rejected}"
    );
}
