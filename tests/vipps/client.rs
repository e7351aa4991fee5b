//! The plain Vipps client against the built-in simulator (every call of the Loyalty-at-the-POS
//! flow) and against a scripted stand-in (headers, spec defects, transport failures).

use std::time::Duration;

use crate::common::vipps::*;
use lanehub::config::LoginClientAuth;
use lanehub::domain::Amount;
use lanehub::vipps::models::*;
use lanehub::vipps::{VippsClient, VippsError};
use secrecy::SecretString;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Against the simulator

/// The simulator with its defaults, a client for it and an access token.
async fn connected() -> (Sim, VippsClient, AccessToken) {
    let sim = Sim::start(|_| {});
    let client = VippsClient::new(&sim.vipps).unwrap();
    let token = client.fetch_token().await.unwrap();
    (sim, client, token)
}

#[actix_web::test]
async fn access_token_from_the_simulator() {
    let (_sim, _client, token) = connected().await;
    assert_eq!(token.expires_in(), Duration::from_secs(3600));
    assert!(
        !format!("{token:?}").contains("sim."),
        "the token must not print"
    );
}

#[actix_web::test]
async fn the_token_request_states_its_empty_length() {
    // Like the gateway in front of the real test environment, this one wants a Content-Length.
    let sim = Sim::start(|s| s.sim.profile = lanehub::config::SimProfile::TestEnvironment);
    let client = VippsClient::new(&sim.vipps).unwrap();
    let token = client
        .fetch_token()
        .await
        .expect("a token in the test environment");
    assert_eq!(token.expires_in(), Duration::from_secs(3600));

    // The simulator does refuse a POST without one.
    let addr = sim.server.addr;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /accesstoken/get HTTP/1.1\r\nHost: {addr}\r\nclient_id: sim-client\r\n\
         client_secret: sim-secret\r\nOcp-Apim-Subscription-Key: sim-subscription-key\r\n\
         Connection: close\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert!(
        answer.contains("Content-Length"),
        "says what is missing: {answer}"
    );
}

#[actix_web::test]
async fn wrong_credentials_are_a_final_401() {
    let mut sim = Sim::start(|_| {});
    sim.vipps.client_secret = SecretString::from("wrong-secret");
    let client = VippsClient::new(&sim.vipps).unwrap();
    let err = client.fetch_token().await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(err.kind(), "unauthorized");
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("wrong-secret"));
}

#[actix_web::test]
async fn a_stale_token_is_refused_with_401() {
    let sim = Sim::start(|_| {});
    let client = VippsClient::new(&sim.vipps).unwrap();
    let forged = AccessToken::new(SecretString::from("not-a-token"), Duration::from_secs(60));
    let err = client
        .get_payment(&forged, &reference("no-such-payment"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
}

#[actix_web::test]
async fn qr_exchange_and_check_in() {
    let (sim, client, token) = connected().await;

    let qr = client
        .exchange_qr(&token, "https://qr.vipps.no/28/2/01/031/4791234567?v=1")
        .await
        .unwrap();
    assert_eq!(qr.msisdn, phone("4791234567"));

    let customers = sim.control_get("/sim/v1/customers").await;
    let token_url = customers
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["phoneNumber"] == "4512345678")
        .and_then(|c| c["qrTokenUrl"].as_str())
        .expect("the MobilePay customer has a tokenised QR")
        .to_owned();
    let qr = client.exchange_qr(&token, &token_url).await.unwrap();
    assert_eq!(qr.msisdn, phone("4512345678"));

    let err = client
        .exchange_qr(&token, "https://qr.vipps.no/p/unknown-token")
        .await
        .unwrap_err();
    assert!(matches!(err.status(), Some(400 | 404)), "unknown QR: {err}");

    client
        .check_in(&token, &phone("4791234567"), true)
        .await
        .unwrap();
    let err = client
        .check_in(&token, &phone("4512345678"), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_request", "{err}");
}

#[actix_web::test]
async fn login_from_phone_number_until_userinfo() {
    login_until_userinfo(LoginClientAuth::ClientSecretBasic).await;
}

#[actix_web::test]
async fn login_with_client_secret_post() {
    login_until_userinfo(LoginClientAuth::ClientSecretPost).await;
}

async fn login_until_userinfo(client_auth: LoginClientAuth) {
    let mut sim = Sim::start(|_| {});
    sim.vipps.login_client_auth = client_auth;
    let client = VippsClient::new(&sim.vipps).unwrap();
    let discovery = client.discovery().await.unwrap();
    assert!(!discovery.token_endpoint.is_empty());

    let auth = client
        .login_authenticate(&LoginRequest {
            phone_number: phone("4798765432"),
            scopes: vec!["name".into(), "phoneNumber".into(), "email".into()],
            binding_message: Some("LANE-1".parse().unwrap()),
            requested_expiry: None,
        })
        .await
        .unwrap();
    assert!(auth.interval >= Duration::from_secs(1));

    let first = client.login_token(&auth.auth_req_id).await.unwrap();
    assert!(matches!(first, LoginPoll::Pending), "{first:?}");
    // Polling again at once is too fast.
    let again = client.login_token(&auth.auth_req_id).await.unwrap();
    assert!(matches!(again, LoginPoll::SlowDown), "{again:?}");

    // The customer consents after 3 s; polling waits out the (now longer) interval.
    sim.advance(Duration::from_secs(15)).await;
    let LoginPoll::Success(login_token) = client.login_token(&auth.auth_req_id).await.unwrap()
    else {
        panic!("the customer consented")
    };
    let info = client.userinfo(&login_token).await.unwrap();
    assert_eq!(info.phone_number, Some(phone("4798765432")));
    assert_eq!(info.name.as_deref(), Some("Ola Nordmann"));
}

#[actix_web::test]
async fn login_denied_and_unknown_user() {
    let sim = Sim::start(|_| {});
    let client = VippsClient::new(&sim.vipps).unwrap();
    let request = |p: &str| login_request(p, &["name"]);
    let auth = client
        .login_authenticate(&request("4790000001"))
        .await
        .unwrap();
    sim.advance(Duration::from_secs(10)).await;
    let poll = client.login_token(&auth.auth_req_id).await.unwrap();
    assert!(matches!(poll, LoginPoll::Denied), "{poll:?}");

    let err = client
        .login_authenticate(&request("4799999999"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.problem().and_then(|p| p.oauth_error.clone()).is_some());
}

#[actix_web::test]
async fn payment_create_capture_refund() {
    let (sim, client, token) = connected().await;
    let r = reference("lane1-test-0001");
    let create = payment_request(&r, 23990, "4791234567", "Purchase at Demo Store");
    let created = client
        .create_payment(&token, &key("create-lane1-test-0001"), &create)
        .await
        .unwrap();
    assert_eq!(created.reference, r);
    // The same key and body again is the same payment, not a new one nor an error.
    client
        .create_payment(&token, &key("create-lane1-test-0001"), &create)
        .await
        .unwrap();
    // The same key with another body is a conflict.
    let mut other = create.clone();
    other.amount = Amount::nok(100);
    let err = client
        .create_payment(&token, &key("create-lane1-test-0001"), &other)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");

    assert_eq!(
        client.get_payment(&token, &r).await.unwrap().state,
        PaymentState::Created
    );
    sim.advance(Duration::from_secs(3)).await;
    let payment = client.get_payment(&token, &r).await.unwrap();
    assert_eq!(payment.state, PaymentState::Authorized);
    assert_eq!(payment.aggregate.authorized_amount, Amount::nok(23990));

    let captured = client
        .capture_payment(
            &token,
            &r,
            &key("capture-lane1-test-0001"),
            Amount::nok(23990),
        )
        .await
        .unwrap();
    assert_eq!(captured.state, PaymentState::Authorized);
    assert_eq!(captured.aggregate.captured_amount, Amount::nok(23990));

    let refunded = client
        .refund_payment(
            &token,
            &r,
            &key("refund-lane1-test-0001"),
            Amount::nok(1000),
        )
        .await
        .unwrap();
    assert_eq!(refunded.aggregate.refunded_amount, Amount::nok(1000));

    let events = client.payment_events(&token, &r).await.unwrap();
    let names: Vec<PaymentEventName> = events.iter().map(|e| e.name).collect();
    for expected in [
        PaymentEventName::Created,
        PaymentEventName::Authorized,
        PaymentEventName::Captured,
        PaymentEventName::Refunded,
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
}

#[actix_web::test]
async fn payment_cancel_and_final_errors() {
    let (_sim, client, token) = connected().await;

    // The customer who ignores requests: the cashier cancels.
    let r = reference("lane1-test-0002");
    let create = payment_request(&r, 5000, "4790000002", "Abort");
    client
        .create_payment(&token, &key("create-lane1-test-0002"), &create)
        .await
        .unwrap();
    let err = client
        .capture_payment(
            &token,
            &r,
            &key("capture-lane1-test-0002"),
            Amount::nok(5000),
        )
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(
        err.error_code(),
        Some(6080),
        "capture before reservation: {err}"
    );
    let cancelled = client
        .cancel_payment(&token, &r, &key("cancel-lane1-test-0002"), true)
        .await
        .unwrap();
    assert_eq!(cancelled.state, PaymentState::Terminated);

    let err = client
        .get_payment(&token, &reference("lane1-no-such-payment"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
}

#[actix_web::test]
async fn webhooks_register_list_delete() {
    let (_sim, client, token) = connected().await;
    let registered = client
        .register_webhook(
            &token,
            &RegisterWebhookRequest {
                url: "https://lanehub.example.com/vipps/webhooks".into(),
                events: vec!["epayments.payment.captured.v1".into()],
            },
        )
        .await
        .unwrap();
    let list = client.list_webhooks(&token).await.unwrap();
    assert!(list.iter().any(|w| w.id == registered.id));
    client.delete_webhook(&token, &registered.id).await.unwrap();
    let list = client.list_webhooks(&token).await.unwrap();
    assert!(list.iter().all(|w| w.id != registered.id));
}

// ---------------------------------------------------------------------------------------------
// Against a scripted stand-in

/// Answers every call lanehub makes with a canned success.
fn canned(seen: &Seen) -> Reply {
    let p = seen.path.as_str();
    match (seen.method.as_str(), p) {
        (_, "/accesstoken/get") => token_reply("scripted-token", 3600),
        (_, "/qr/v1/exchange") => ok(200, json!({"msisdn": "4791234567", "version": "1.0"})),
        (_, "/point-of-sale/v1/loyalty-check-in") => ok(200, json!("6f1c-guid")),
        (_, "/vipps-login-ciba/api/backchannel/authentication") => ok(
            200,
            json!({"auth_req_id": "req-1", "expires_in": 600, "interval": 5}),
        ),
        (_, "/access-management-1.0/access/oauth2/token") => {
            ok(400, json!({"error": "authorization_pending"}))
        }
        (_, "/vipps-userinfo-api/userinfo") => {
            ok(200, json!({"sub": "s", "phone_number": "4791234567"}))
        }
        (_, "/access-management-1.0/access/.well-known/openid-configuration") => {
            ok(200, json!({"issuer": "i", "token_endpoint": "t"}))
        }
        ("POST", "/epayment/v1/payments") => ok(201, json!({"reference": "lane1-hdr-0001"})),
        ("GET", "/epayment/v1/payments/lane1-hdr-0001/events") => ok(200, json!([])),
        ("GET", _) if p.starts_with("/epayment/") => {
            ok(200, payment_json("lane1-hdr-0001", "CREATED", 100, 0))
        }
        // The spec declares modification answers as problem+json.
        ("POST", _) if p.starts_with("/epayment/v1/payments/") => Reply::Answer(
            200,
            vec![("content-type", "application/problem+json".into())],
            payment_json("lane1-hdr-0001", "AUTHORIZED", 100, 100).to_string(),
        ),
        ("POST", "/webhooks/v1/webhooks") => ok(201, json!({"id": "wh-1", "secret": "s"})),
        ("GET", "/webhooks/v1/webhooks") => ok(200, json!({"webhooks": []})),
        ("DELETE", _) => Reply::Answer(204, vec![], String::new()),
        _ => ok(404, json!({"title": "Not Found"})),
    }
}

#[actix_web::test]
async fn every_call_carries_the_required_headers() {
    let server = Scripted::start(canned);
    let client = VippsClient::new(&vipps_settings(&server.base_url)).unwrap();
    let token = client.fetch_token().await.unwrap();
    let r = reference("lane1-hdr-0001");
    let p = phone("4791234567");
    client
        .exchange_qr(&token, "https://qr.vipps.no/p/x")
        .await
        .unwrap();
    let check_in = client.check_in(&token, &p, false).await.unwrap();
    assert_eq!(check_in.id.as_deref(), Some("6f1c-guid"));
    let auth = client
        .login_authenticate(&LoginRequest {
            phone_number: p.clone(),
            scopes: vec!["name".into()],
            binding_message: None,
            requested_expiry: None,
        })
        .await
        .unwrap();
    assert!(matches!(
        client.login_token(&auth.auth_req_id).await.unwrap(),
        LoginPoll::Pending
    ));
    let login_token = LoginToken::new(SecretString::from("login-token"));
    client.userinfo(&login_token).await.unwrap();
    client.discovery().await.unwrap();
    let create = CreatePaymentRequest::in_store(r.clone(), Amount::nok(100), p.clone(), "Test");
    client
        .create_payment(&token, &key("k-create"), &create)
        .await
        .unwrap();
    client.get_payment(&token, &r).await.unwrap();
    client.payment_events(&token, &r).await.unwrap();
    let m = client
        .capture_payment(&token, &r, &key("k-capture"), Amount::nok(100))
        .await
        .unwrap();
    assert_eq!(m.aggregate.captured_amount, Amount::nok(100));
    client
        .refund_payment(&token, &r, &key("k-refund"), Amount::nok(100))
        .await
        .unwrap();
    client
        .cancel_payment(&token, &r, &key("k-cancel"), true)
        .await
        .unwrap();
    client
        .register_webhook(
            &token,
            &RegisterWebhookRequest {
                url: "https://x.example/cb".into(),
                events: vec!["epayments.payment.created.v1".into()],
            },
        )
        .await
        .unwrap();
    client.list_webhooks(&token).await.unwrap();
    client.delete_webhook(&token, "wh-1").await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 16);
    for s in &seen {
        assert_eq!(s.header("vipps-system-name"), Some("lanehub"), "{}", s.path);
        assert_eq!(s.header("vipps-system-plugin-name"), Some("lanehub-pos"));
        assert!(s.header("vipps-system-version").is_some());
        assert!(s.header("vipps-system-plugin-version").is_some());
        let userinfo = s.path == "/vipps-userinfo-api/userinfo";
        let discovery = s.path.ends_with("openid-configuration");
        let login = s.path.contains("login-ciba") || s.path.ends_with("/oauth2/token");
        if login {
            // Only what the Login spec names: no subscription key.
            assert_eq!(s.header("ocp-apim-subscription-key"), None, "{}", s.path);
            assert_eq!(s.header("merchant-serial-number"), Some("123456"));
        } else if !userinfo && !discovery {
            assert_eq!(
                s.header("ocp-apim-subscription-key"),
                Some("sim-subscription-key"),
                "{}",
                s.path
            );
            assert_eq!(s.header("merchant-serial-number"), Some("123456"));
        } else {
            assert_eq!(s.header("ocp-apim-subscription-key"), None, "{}", s.path);
        }
        let auth = s.header("authorization").unwrap_or_default();
        match s.path.as_str() {
            "/accesstoken/get" => {
                assert_eq!(s.header("client_id"), Some("sim-client"));
                assert_eq!(s.header("client_secret"), Some("sim-secret"));
                assert_eq!(auth, "");
                // An empty body with a length, as Vipps' samples send it.
                assert_eq!(s.header("content-length"), Some("0"));
            }
            "/vipps-login-ciba/api/backchannel/authentication"
            | "/access-management-1.0/access/oauth2/token" => {
                // base64("sim-client:sim-secret")
                assert_eq!(auth, "Basic c2ltLWNsaWVudDpzaW0tc2VjcmV0");
            }
            "/vipps-userinfo-api/userinfo" => assert_eq!(auth, "Bearer login-token"),
            p if p.ends_with("openid-configuration") => assert_eq!(auth, ""),
            _ => assert_eq!(auth, "Bearer scripted-token", "{}", s.path),
        }
        let expected_key = match (s.method.as_str(), s.path.rsplit('/').next()) {
            ("POST", Some("payments")) => Some("k-create"),
            ("POST", Some("capture")) => Some("k-capture"),
            ("POST", Some("refund")) => Some("k-refund"),
            ("POST", Some("cancel")) => Some("k-cancel"),
            _ => None,
        };
        assert_eq!(s.header("idempotency-key"), expected_key, "{}", s.path);
    }
    // Every request lanehub sends conforms to the official OpenAPI files. The Login CIBA calls
    // are in no file (the token endpoint's form there is the authorization-code grant).
    if let Some(specs) = crate::common::openapi::specs() {
        for s in seen
            .iter()
            .filter(|s| !s.path.contains("login-ciba") && !s.path.ends_with("/oauth2/token"))
        {
            let headers: Vec<(&str, &str)> = s
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body: Option<serde_json::Value> =
                (!s.body.is_empty()).then(|| serde_json::from_str(&s.body).expect("JSON bodies"));
            if let Err(errors) = specs.validate_request(&s.method, &s.path, &headers, body.as_ref())
            {
                panic!("{} {} does not conform: {errors:#?}", s.method, s.path);
            }
        }
    }
    let ciba = seen
        .iter()
        .find(|s| s.path.ends_with("/authentication"))
        .unwrap();
    assert_eq!(
        ciba.body,
        "login_hint=urn%3Amsisdn%3A4791234567&scope=openid+name"
    );
    let poll = seen.iter().find(|s| s.path.ends_with("/token")).unwrap();
    assert_eq!(
        poll.body,
        "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=req-1"
    );
    let cancel = seen.iter().find(|s| s.path.ends_with("/cancel")).unwrap();
    assert_eq!(cancel.body, r#"{"cancelTransactionOnly":true}"#);
    let capture = seen.iter().find(|s| s.path.ends_with("/capture")).unwrap();
    assert_eq!(
        capture.body,
        r#"{"modificationAmount":{"currency":"NOK","value":100}}"#
    );
    server.stop().await;
}

#[actix_web::test]
async fn error_answers_keep_status_problem_and_retry_after() {
    let server = Scripted::start(|_| ok(500, json!({})));
    let client = VippsClient::new(&vipps_settings(&server.base_url)).unwrap();
    let token = AccessToken::new(SecretString::from("t"), Duration::from_secs(60));
    let r = reference("lane1-err-0001");

    // A gateway 429 in its own format, with Retry-After in seconds.
    server.push([Reply::Answer(
        429,
        vec![("retry-after", "7".into())],
        json!({"statusCode": 429, "message": "Rate limit is exceeded."}).to_string(),
    )]);
    let err = client.get_payment(&token, &r).await.unwrap_err();
    assert_eq!(err.kind(), "rate_limited");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    // A 429 whose body is not JSON at all: still a 429.
    server.push([Reply::Answer(
        429,
        vec![(
            "retry-after",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )],
        "<html>slow down</html>".into(),
    )]);
    let err = client.get_payment(&token, &r).await.unwrap_err();
    assert_eq!(err.kind(), "rate_limited");
    assert!(err.retry_after().unwrap() <= Duration::from_secs(1));
    assert!(err.problem().is_none());

    // ePayment's problem+json with an ErrorCode: final.
    server.push([ok(
        400,
        json!({"type": "t", "title": "Bad Request", "status": 400, "traceId": "tr",
            "detail": "Cannot cancel a payment being processed",
            "extraDetails": [{"name": "ErrorCode", "reason": "6250"}]}),
    )]);
    let err = client
        .cancel_payment(&token, &r, &key("k"), true)
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some(6250));
    assert!(!err.is_retryable());

    server.push([ok(423, json!({}))]);
    let err = client.get_payment(&token, &r).await.unwrap_err();
    assert_eq!(err.kind(), "locked");
    assert!(err.is_retryable());

    // 5xx is retryable.
    let err = client.get_payment(&token, &r).await.unwrap_err();
    assert_eq!(err.kind(), "server_error");
    assert!(err.is_retryable());

    // A success whose body is not the documented shape.
    server.push([ok(200, json!({"reference": "lane1-err-0001"}))]);
    let err = client.get_payment(&token, &r).await.unwrap_err();
    assert_eq!(err.kind(), "decode");
    assert!(!err.is_retryable());
    server.stop().await;
}

#[actix_web::test]
async fn a_request_that_never_answers_times_out() {
    let server = Scripted::start(|_| Reply::Hang);
    let mut settings = vipps_settings(&server.base_url);
    settings.request_timeout = Duration::from_millis(200);
    let client = VippsClient::new(&settings).unwrap();
    let err = client.fetch_token().await.unwrap_err();
    assert!(matches!(err, VippsError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    server.stop().await;
}

#[actix_web::test]
async fn refused_and_dropped_connections_are_retryable() {
    // Nothing listens on a port we just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = VippsClient::new(&vipps_settings(&format!("http://127.0.0.1:{port}"))).unwrap();
    let err = client.fetch_token().await.unwrap_err();
    assert!(matches!(err, VippsError::Connection { .. }), "{err}");
    assert!(err.is_retryable());

    let base = dropping_server().await;
    let client = VippsClient::new(&vipps_settings(&base)).unwrap();
    let err = client.fetch_token().await.unwrap_err();
    assert!(matches!(err, VippsError::Connection { .. }), "{err}");
    assert!(err.is_retryable());
}

#[actix_web::test]
async fn client_secret_post_puts_the_credentials_in_the_form_only() {
    let server = Scripted::start(canned);
    let mut settings = vipps_settings(&server.base_url);
    settings.login_client_auth = LoginClientAuth::ClientSecretPost;
    let client = VippsClient::new(&settings).unwrap();
    let auth = client
        .login_authenticate(&LoginRequest {
            phone_number: phone("4791234567"),
            scopes: vec!["name".into()],
            binding_message: None,
            requested_expiry: None,
        })
        .await
        .unwrap();
    client.login_token(&auth.auth_req_id).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.header("authorization"), None, "{}", s.path);
        assert!(
            s.body
                .ends_with("&client_id=sim-client&client_secret=sim-secret"),
            "{}: {}",
            s.path,
            s.body
        );
    }
    server.stop().await;
}

#[actix_web::test]
async fn bad_input_is_refused_before_sending() {
    let server = Scripted::start(canned);
    let client = VippsClient::new(&vipps_settings(&server.base_url)).unwrap();
    let token = AccessToken::new(SecretString::from("t"), Duration::from_secs(60));
    let err = client.exchange_qr(&token, "  ").await.unwrap_err();
    assert_eq!(err.kind(), "invalid_request");
    let err = client.delete_webhook(&token, "../x").await.unwrap_err();
    assert_eq!(err.kind(), "invalid_request");
    let err = client
        .login_authenticate(&LoginRequest {
            phone_number: phone("4791234567"),
            scopes: vec![],
            binding_message: None,
            requested_expiry: Some(Duration::from_secs(30)),
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("requested_expiry"), "{err}");
    assert!(server.seen().is_empty());

    let mut settings = vipps_settings(&server.base_url);
    settings.system_name = "x".repeat(31);
    let err = VippsClient::new(&settings).unwrap_err();
    assert!(err.to_string().contains("30 characters"), "{err}");
    settings = vipps_settings("ftp://example.com");
    assert!(VippsClient::new(&settings).is_err());
    server.stop().await;
}
