//! The Vipps actor and its handle: token caching and refresh, retries, lanehub's own rate limits,
//! the circuit breaker, idempotent retries of a create, and Login polling. Against the
//! simulator (with its fault injection) and a scripted stand-in, with short configured durations.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::vipps::*;
use futures_util::future::join_all;
use lanehub::domain::Amount;
use lanehub::vipps::models::*;
use lanehub::vipps::{Api, VippsActorSettings, VippsError, VippsHandle};
use serde_json::json;
use tokio::time::Instant;

/// Short durations so failures end quickly.
fn fast() -> VippsActorSettings {
    VippsActorSettings {
        max_requests_per_second: 1000,
        max_waiters: 64,
        max_rate_limit_wait: Duration::from_secs(5),
        retry_deadline: Duration::from_secs(3),
        retry_initial_backoff: Duration::from_millis(10),
        retry_max_backoff: Duration::from_millis(40),
        circuit_failure_threshold: 3,
        circuit_cool_down: Duration::from_millis(300),
        token_refresh_before: Duration::from_secs(300),
    }
}

fn handle_for(base_url: &str, settings: VippsActorSettings) -> VippsHandle {
    let mut vipps = vipps_settings(base_url);
    vipps.request_timeout = Duration::from_millis(300);
    VippsHandle::start(&vipps, settings).unwrap()
}

/// The simulator with its defaults and a fast handle for it that holds an access token.
async fn sim_with_a_token() -> (Sim, VippsHandle) {
    let sim = Sim::start(|_| {});
    let handle = handle_for(&sim.vipps.base_url, fast());
    handle.access_token().await.unwrap();
    (sim, handle)
}

/// Asserts `err` says `api` is unavailable (its circuit open, or retries given up).
fn assert_unavailable(err: &VippsError, api: Api) {
    assert!(
        matches!(err, VippsError::Unavailable { api: a, .. } if *a == api),
        "{err}"
    );
}

/// A scripted Vipps that answers tokens and reads of any payment.
fn scripted_vipps() -> Scripted {
    Scripted::start(|seen| match seen.path.as_str() {
        "/accesstoken/get" => token_reply("scripted-token", 3600),
        p if p.starts_with("/epayment/v1/payments/") => {
            let r = p.trim_start_matches("/epayment/v1/payments/");
            let r = r.split('/').next().unwrap_or_default();
            ok(200, payment_json(r, "AUTHORIZED", 1000, 1000))
        }
        "/epayment/v1/payments" => ok(201, json!({"reference": "lane1-0000001"})),
        _ => ok(404, json!({})),
    })
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[actix_web::test]
async fn one_token_request_for_many_concurrent_callers() {
    let server = Scripted::start(|seen| match seen.path.as_str() {
        // A slow token answer, so that every caller asks while the fetch is in flight.
        "/accesstoken/get" => Reply::Slow(
            Duration::from_millis(200),
            Box::new(token_reply("slow-token", 3600)),
        ),
        p => ok(200, payment_json(&p[22..], "CREATED", 100, 0)),
    });
    let handle = handle_for(&server.base_url, fast());
    let calls = (0..20).map(|i| {
        let h = handle.clone();
        async move { h.get_payment(&reference(&format!("lane1-{i:07}"))).await }
    });
    for result in join_all(calls).await {
        assert_eq!(result.unwrap().state, PaymentState::Created);
    }
    assert_eq!(server.count("/accesstoken/get"), 1);
    for s in server
        .seen()
        .iter()
        .filter(|s| s.path != "/accesstoken/get")
    {
        assert_eq!(s.header("authorization"), Some("Bearer slow-token"));
    }
    assert_eq!(handle.status().await.unwrap().token, "valid");
    server.stop().await;
}

#[actix_web::test]
async fn a_401_refreshes_the_token_once_and_retries_once() {
    let server = Scripted::start(|seen| match seen.path.as_str() {
        "/accesstoken/get" => token_reply("fresh", 3600),
        _ if seen.header("authorization") == Some("Bearer fresh") => {
            ok(200, payment_json("lane1-0000001", "CREATED", 100, 0))
        }
        _ => ok(401, json!({"statusCode": 401, "message": "invalid token"})),
    });
    server.push([token_reply("stale", 3600)]);
    let handle = handle_for(&server.base_url, fast());
    let payment = handle
        .get_payment(&reference("lane1-0000001"))
        .await
        .unwrap();
    assert_eq!(payment.state, PaymentState::Created);
    assert_eq!(server.count("/accesstoken/get"), 2);

    // Credentials that Vipps keeps refusing: one refresh, then the 401 is final.
    let server = Scripted::start(|seen| match seen.path.as_str() {
        "/accesstoken/get" => token_reply("t", 3600),
        _ => ok(401, json!({"statusCode": 401, "message": "no"})),
    });
    let handle = handle_for(&server.base_url, fast());
    let err = handle
        .get_payment(&reference("lane1-0000001"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(server.count("/epayment/v1/payments/lane1-0000001"), 2);
    assert_eq!(server.count("/accesstoken/get"), 2);
    server.stop().await;
}

#[actix_web::test]
async fn token_expiry_in_the_middle_of_a_run() {
    // Vipps-side expiry (the simulator's clock moves past the token's lifetime) while lanehub
    // still holds the token: the 401 is answered by one refresh and the call goes through.
    let sim = Sim::start(|s| s.sim.token_lifetime = Duration::from_secs(60));
    let handle = handle_for(&sim.vipps.base_url, fast());
    let qr = "https://qr.vipps.no/28/2/01/031/4791234567?v=1";
    assert_eq!(
        handle.exchange_qr(qr).await.unwrap().msisdn,
        phone("4791234567")
    );
    assert_eq!(
        handle.access_token().await.unwrap().expires_in(),
        Duration::from_secs(60)
    );
    sim.advance(Duration::from_secs(61)).await;
    // Only a new token gets through now: the simulator refuses the expired one.
    assert_eq!(
        handle.exchange_qr(qr).await.unwrap().msisdn,
        phone("4791234567")
    );
    assert_eq!(handle.status().await.unwrap().token, "valid");
}

// ---------------------------------------------------------------------------------------------
// Retries

#[actix_web::test]
async fn a_429_storm_is_ridden_out_honouring_retry_after() {
    let server = scripted_vipps();
    let too_many = |secs: &str| {
        Reply::Answer(
            429,
            vec![("retry-after", secs.to_owned())],
            json!({"statusCode": 429, "message": "Rate limit is exceeded."}).to_string(),
        )
    };
    let handle = handle_for(&server.base_url, fast());
    handle.access_token().await.unwrap();
    server.push([too_many("0"), too_many("0"), too_many("1")]);
    let started = Instant::now();
    let payment = handle
        .get_payment(&reference("lane1-0000001"))
        .await
        .unwrap();
    assert_eq!(payment.state, PaymentState::Authorized);
    // Backoff is at most 40 ms here: only Retry-After explains a wait of a second.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(server.count("/epayment/v1/payments/lane1-0000001"), 4);

    // A Retry-After beyond the deadline ends the call at once with a typed error.
    server.push([too_many("3600")]);
    let started = Instant::now();
    let err = handle
        .get_payment(&reference("lane1-0000001"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    let VippsError::DeadlineExceeded { attempts, last, .. } = &err else {
        panic!("expected a deadline error, got {err}")
    };
    assert_eq!(*attempts, 1);
    assert_eq!(last.as_ref().map(|e| e.kind()), Some("rate_limited"));
    server.stop().await;
}

#[actix_web::test]
async fn server_errors_and_hangs_are_retried_with_the_same_key() {
    let server = scripted_vipps();
    let handle = handle_for(&server.base_url, fast());
    server.push([
        token_reply("t", 3600),
        ok(503, json!({})),
        ok(502, json!({})),
        Reply::Hang,
        ok(423, json!({})),
    ]);
    let request = payment_request(&reference("lane1-0000001"), 100, "4791234567", "Retry me");
    let created = handle
        .create_payment(&key("create-lane1-0000001"), &request)
        .await
        .unwrap();
    assert_eq!(created.reference, reference("lane1-0000001"));
    let creates: Vec<Seen> = server
        .seen()
        .into_iter()
        .filter(|s| s.path == "/epayment/v1/payments")
        .collect();
    assert_eq!(creates.len(), 5);
    for c in &creates {
        assert_eq!(c.header("idempotency-key"), Some("create-lane1-0000001"));
        assert_eq!(c.body, creates[0].body);
    }

    // A final 4xx is not retried.
    server.push([ok(
        400,
        json!({"title": "Bad Request", "extraDetails": [{"name": "ErrorCode", "reason": "7010"}]}),
    )]);
    // (Another reference: five creates of the first one fill its quota for a minute.)
    let request = CreatePaymentRequest {
        reference: reference("lane1-0000002"),
        ..request
    };
    let err = handle
        .create_payment(&key("create-lane1-0000002"), &request)
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some(7010));
    assert_eq!(
        server
            .seen()
            .iter()
            .filter(|s| s.header("idempotency-key") == Some("create-lane1-0000002"))
            .count(),
        1
    );
    server.stop().await;
}

#[actix_web::test]
async fn a_call_that_keeps_hanging_ends_at_its_deadline() {
    let server = Scripted::start(|seen| match seen.path.as_str() {
        "/accesstoken/get" => token_reply("t", 3600),
        _ => Reply::Hang,
    });
    let mut settings = fast();
    settings.retry_deadline = Duration::from_millis(800);
    settings.circuit_failure_threshold = 100;
    let handle = handle_for(&server.base_url, settings);
    let started = Instant::now();
    let err = handle
        .get_payment(&reference("lane1-0000001"))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    let VippsError::DeadlineExceeded { attempts, last, .. } = &err else {
        panic!("expected a deadline error, got {err}")
    };
    assert!(*attempts >= 2, "timeouts are retried: {attempts}");
    assert_eq!(last.as_ref().map(|e| e.kind()), Some("timeout"));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Rate limits

#[actix_web::test]
async fn per_reference_quota_is_never_exceeded() {
    let server = Scripted::start(|seen| match seen.path.as_str() {
        "/accesstoken/get" => token_reply("t", 3600),
        _ => Reply::Answer(
            200,
            vec![],
            payment_json("lane1-0000001", "AUTHORIZED", 1000, 100).to_string(),
        ),
    });
    let mut settings = fast();
    settings.max_rate_limit_wait = Duration::from_secs(1);
    let handle = handle_for(&server.base_url, settings);
    let r = reference("lane1-0000001");
    for i in 0..5 {
        handle
            .capture_payment(&r, &key(&format!("capture-{i}")), Amount::nok(100))
            .await
            .unwrap();
    }
    // The sixth mutation on the reference within a minute would provoke a 429: refused here.
    let err = handle
        .refund_payment(&r, &key("refund-0"), Amount::nok(100))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "overloaded", "{err}");
    assert_eq!(
        server.count("/epayment/v1/payments/lane1-0000001/refund"),
        0
    );
    // Another reference is not held back.
    handle
        .capture_payment(&reference("lane1-0000002"), &key("c"), Amount::nok(100))
        .await
        .unwrap();
    server.stop().await;
}

#[actix_web::test]
async fn global_ceiling_spreads_requests_and_bounds_waiters() {
    let server = scripted_vipps();
    let mut settings = fast();
    settings.max_requests_per_second = 2;
    settings.max_waiters = 2;
    let handle = handle_for(&server.base_url, settings);
    handle.access_token().await.unwrap();
    let started = Instant::now();
    let calls = (0..5).map(|i| {
        let h = handle.clone();
        async move { h.get_payment(&reference(&format!("lane1-{i:07}"))).await }
    });
    let results = join_all(calls).await;
    let ok_count = results.iter().filter(|r| r.is_ok()).count();
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(VippsError::Overloaded { .. })))
        .count();
    // Two go at once, two wait a second for the next slots, the fifth is refused.
    assert_eq!((ok_count, overloaded), (4, 1), "{results:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker

#[actix_web::test]
async fn circuit_opens_fails_fast_and_closes_after_a_probe() {
    let down = Arc::new(AtomicBool::new(true));
    let flag = down.clone();
    let server = Scripted::start(move |seen| match seen.path.as_str() {
        "/accesstoken/get" => token_reply("t", 3600),
        _ if flag.load(Ordering::SeqCst) => ok(503, json!({})),
        p => ok(200, payment_json(&p[22..], "CREATED", 100, 0)),
    });
    let mut settings = fast();
    settings.retry_deadline = Duration::from_millis(150);
    let handle = handle_for(&server.base_url, settings);
    let r = reference("lane1-0000001");
    for _ in 0..3 {
        let err = handle.get_payment(&r).await.unwrap_err();
        assert_eq!(err.kind(), "deadline_exceeded", "{err}");
    }
    let status = handle.status().await.unwrap();
    assert!(status.circuit_open(Api::Epayment));
    assert!(!status.circuit_open(Api::AccessToken), "tokens came");
    let before = server.seen().len();
    let started = Instant::now();
    let err = handle.get_payment(&r).await.unwrap_err();
    assert!(matches!(err, VippsError::Unavailable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(50), "fails fast");
    assert_eq!(server.seen().len(), before, "nothing sent while open");

    // Vipps recovers; after the cool-down one probe closes the circuit.
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    handle.get_payment(&r).await.unwrap();
    assert!(!handle.status().await.unwrap().circuit_open(Api::Epayment));
    handle.get_payment(&r).await.unwrap();
    server.stop().await;
}

#[actix_web::test]
async fn connection_errors_open_the_circuit() {
    let base = dropping_server().await;
    let mut settings = fast();
    settings.retry_deadline = Duration::from_secs(2);
    let handle = handle_for(&base, settings);
    let err = handle
        .get_payment(&reference("lane1-0000001"))
        .await
        .unwrap_err();
    // Three failed token fetches open the access-token circuit within the one call, which then
    // fails fast; ePayment itself was never reached, so its circuit stays closed.
    assert_unavailable(&err, Api::AccessToken);
    let status = handle.status().await.unwrap();
    assert!(status.circuit_open(Api::AccessToken));
    assert!(!status.circuit_open(Api::Epayment));
}

#[actix_web::test]
async fn check_in_failing_everywhere_never_stops_payments() {
    // The real test environment answers every check-in with 500.
    let sim = Sim::start(|s| s.sim.profile = lanehub::config::SimProfile::TestEnvironment);
    let mut settings = fast();
    settings.retry_deadline = Duration::from_millis(200);
    let handle = handle_for(&sim.vipps.base_url, settings);
    // Many lanes check customers in at once, as a busy store does.
    let check_ins = (0..8).map(|_| {
        let h = handle.clone();
        async move { h.check_in(&phone("4791234567"), true).await }
    });
    for result in join_all(check_ins).await {
        assert!(result.is_err(), "check-in answers 500 here");
    }
    let status = handle.status().await.unwrap();
    assert!(status.circuit_open(Api::CheckIn), "{status:?}");
    for api in [Api::AccessToken, Api::Qr, Api::Epayment] {
        assert!(!status.circuit_open(api), "{api:?}: {status:?}");
    }
    // Check-in now fails fast, while payments go through.
    let err = handle
        .check_in(&phone("4791234567"), true)
        .await
        .unwrap_err();
    assert_unavailable(&err, Api::CheckIn);
    let r = reference("lane1-health-0001");
    let request = payment_request(&r, 100, "4791234567", "Groceries");
    handle
        .create_payment(&key("k-health-1"), &request)
        .await
        .expect("payments are not stopped by check-in");
    assert_eq!(handle.get_payment(&r).await.unwrap().reference, r);
}

// ---------------------------------------------------------------------------------------------
// Against the simulator's fault injection

#[actix_web::test]
async fn simulator_faults_retried_create_leaves_exactly_one_payment() {
    let (sim, handle) = sim_with_a_token().await;
    // A burst of 5xx, then a request that is processed but whose connection is dropped, then a
    // hung one (processed, never answered): each retry carries the same key.
    sim.faults(
        "payment_create",
        json!({"serverErrorNext": 2, "dropNext": 1}),
    )
    .await;
    let r = reference("lane1-fault-0001");
    let request = payment_request(&r, 4200, "4791234567", "Faults");
    let created = handle
        .create_payment(&key("create-lane1-fault-0001"), &request)
        .await
        .unwrap();
    assert_eq!(created.reference, r);
    let payments = sim.control_get("/sim/v1/payments").await;
    let matching = payments
        .as_array()
        .expect("a list of payments")
        .iter()
        .filter(|p| p["reference"] == "lane1-fault-0001")
        .count();
    assert_eq!(matching, 1, "{payments}");
}

#[actix_web::test]
async fn simulator_429_burst_and_hangs() {
    let (sim, handle) = sim_with_a_token().await;
    sim.faults(
        "qr_exchange",
        json!({"tooManyRequestsNext": 2, "retryAfterSecs": 1, "hangNext": 1, "hangMs": 5000}),
    )
    .await;
    let started = Instant::now();
    let qr = handle
        .exchange_qr("https://qr.vipps.no/28/2/01/031/4791234567?v=1")
        .await
        .unwrap();
    assert_eq!(qr.msisdn, phone("4791234567"));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured"
    );
}

#[actix_web::test]
async fn a_login_start_or_token_poll_whose_answer_was_lost_is_not_sent_again() {
    let sim = Sim::start(|s| s.sim.login_interval = Duration::from_millis(100));
    let handle = handle_for(&sim.vipps.base_url, fast());
    let request = LoginRequest {
        phone_number: phone("4798765432"),
        scopes: vec!["name".into()],
        binding_message: None,
        requested_expiry: None,
    };
    // Vipps starts the Login, but the answer is lost: a second start would be a second Login.
    sim.faults("login_authenticate", json!({"dropNext": 1}))
        .await;
    let e = handle.login_authenticate(&request).await.unwrap_err();
    assert_eq!(e.kind(), "connection", "{e}");
    let logins = sim
        .control_get("/sim/v1/logins?phoneNumber=4798765432")
        .await;
    assert_eq!(logins.as_array().map(Vec::len), Some(1), "{logins}");

    // A 5xx may come after Vipps acted: also not repeated. A 429 says it did not: repeated.
    let id = AuthReqId(logins[0]["authReqId"].as_str().unwrap().to_owned());
    sim.faults(
        "login_token",
        json!({"serverErrorNext": 1, "serverErrorStatus": 502}),
    )
    .await;
    let e = handle.login_token(&id).await.unwrap_err();
    assert_eq!(e.status(), Some(502), "{e}");
    tokio::time::sleep(Duration::from_millis(150)).await;
    sim.faults(
        "login_token",
        json!({"tooManyRequestsNext": 1, "retryAfterSecs": 0}),
    )
    .await;
    assert!(matches!(
        handle.login_token(&id).await.unwrap(),
        LoginPoll::Pending
    ));
    let faults = sim.control_get("/sim/v1/faults").await;
    let injected = &faults["injectedByOperation"]["login_token"];
    assert_eq!(injected["serverError"], 1, "{faults}");
    assert_eq!(injected["tooManyRequests"], 1, "{faults}");
}

// ---------------------------------------------------------------------------------------------
// Login polling

#[actix_web::test]
async fn poll_login_until_consent_and_denial() {
    let sim = Sim::start(|s| {
        s.sim.login_interval = Duration::from_secs(1);
        for c in &mut s.sim.customers {
            c.login_delay = Duration::from_millis(300);
        }
    });
    let handle = handle_for(&sim.vipps.base_url, fast());
    let request = |p: &str| login_request(p, &["name", "phoneNumber"]);
    let auth = handle
        .login_authenticate(&request("4798765432"))
        .await
        .unwrap();
    assert_eq!(auth.interval, Duration::from_secs(1));
    let LoginPoll::Success(token) = poll_until_answered(&handle, &auth).await else {
        panic!("the customer consents")
    };
    let info = handle.userinfo(&token).await.unwrap();
    assert_eq!(info.phone_number, Some(phone("4798765432")));

    let auth = handle
        .login_authenticate(&request("4790000001"))
        .await
        .unwrap();
    assert!(matches!(
        poll_until_answered(&handle, &auth).await,
        LoginPoll::Denied
    ));
}

/// Polls the Login token endpoint at the server's interval until the customer answers.
async fn poll_until_answered(handle: &VippsHandle, auth: &LoginAuthentication) -> LoginPoll {
    loop {
        tokio::time::sleep(auth.interval).await;
        match handle.login_token(&auth.auth_req_id).await.unwrap() {
            LoginPoll::Pending | LoginPoll::SlowDown => {}
            answer => return answer,
        }
    }
}
