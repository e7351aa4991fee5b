//! Self-tests of the OpenAPI conformance harness (tests/common/openapi.rs): the official examples
//! satisfy their own schemas, broken messages fail with errors naming the field, every operation
//! lanehub performs maps to its place in the files, and the remote `Receipt` reference resolves.

use crate::common::openapi::{self, DEVIATIONS, Direction, Fix, Specs};
use lanehub::vipps::Operation;
use serde_json::{Value, json};

fn specs() -> Option<&'static Specs> {
    openapi::specs()
}

/// A payment as lanehub creates it in a store, with a receipt.
fn payment_body() -> Value {
    json!({
        "amount": {"currency": "NOK", "value": 24900},
        "paymentMethod": {"type": "WALLET"},
        "customer": {"phoneNumber": "4791234567"},
        "reference": "lane-01-000123-7f3a",
        "userFlow": "PUSH_MESSAGE",
        "customerInteraction": "CUSTOMER_PRESENT",
        "paymentDescription": "Purchase at lane 1",
        "receipt": {
            "orderLines": [{
                "name": "Milk 1 l",
                "id": "7038010009457",
                "totalAmount": 2490,
                "totalAmountExcludingTax": 2214,
                "totalTaxAmount": 276,
                "taxPercentage": 12
            }],
            "bottomLine": {"currency": "NOK", "posId": "lane-01", "receiptNumber": "000123"}
        }
    })
}

fn merchant_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Authorization", "Bearer sim.token"),
        ("Ocp-Apim-Subscription-Key", "sim-subscription-key"),
        ("Merchant-Serial-Number", "123456"),
        ("Vipps-System-Name", "lanehub"),
        ("Vipps-System-Version", "0.1.0"),
        ("Vipps-System-Plugin-Name", "lanehub"),
        ("Vipps-System-Plugin-Version", "0.1.0"),
        ("Content-Type", "application/json"),
    ]
}

fn payment_headers() -> Vec<(&'static str, &'static str)> {
    let mut h = merchant_headers();
    h.push(("Idempotency-Key", "7f3a2b1c-0000-4000-8000-000000000001"));
    h
}

#[test]
fn official_examples_satisfy_their_own_schemas() {
    let Some(specs) = specs() else { return };
    let examples = specs.examples();
    // Guards against a walker that silently finds nothing.
    assert!(
        examples.len() > 100,
        "only {} examples found",
        examples.len()
    );
    let mut failures = Vec::new();
    for ex in &examples {
        let result = specs.validate_value(ex.file, &ex.schema, ex.direction, &ex.value);
        let listed = openapi::is_invalid_example(ex.file, &ex.pointer);
        match (result, listed) {
            (Ok(()), false) | (Err(_), true) => {}
            (Err(errors), false) => failures.push(format!(
                "{}#{} (schema {}): {}",
                ex.file,
                ex.pointer,
                ex.schema,
                errors.join("; ")
            )),
            (Ok(()), true) => failures.push(format!(
                "{}#{} is listed as an invalid example but is valid: drop the deviation",
                ex.file, ex.pointer
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} example(s) disagree with their schemas:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_listed_invalid_example_exists() {
    let Some(specs) = specs() else { return };
    let examples = specs.examples();
    for d in DEVIATIONS {
        if matches!(d.fix, Fix::InvalidExample) {
            assert!(
                examples
                    .iter()
                    .any(|e| e.file == d.file && e.pointer == d.pointer),
                "deviation {}#{} names no example the harness checks",
                d.file,
                d.pointer
            );
        }
    }
}

#[test]
fn a_valid_payment_request_passes() {
    let Some(specs) = specs() else { return };
    let result = specs.validate_request(
        "POST",
        "/epayment/v1/payments",
        &payment_headers(),
        Some(&payment_body()),
    );
    assert_eq!(result, Ok(()));
}

#[test]
fn a_broken_body_fails_with_an_error_naming_the_field() {
    let Some(specs) = specs() else { return };
    let mut body = payment_body();
    body["amount"]["value"] = json!("24900");
    let errors = specs
        .validate_request(
            "POST",
            "/epayment/v1/payments",
            &payment_headers(),
            Some(&body),
        )
        .expect_err("a string amount must be rejected");
    assert!(
        errors.iter().any(|e| e.contains("/amount/value")),
        "{errors:?}"
    );

    let mut body = payment_body();
    body.as_object_mut()
        .expect("the body is an object")
        .remove("reference");
    let errors = specs
        .validate_request(
            "POST",
            "/epayment/v1/payments",
            &payment_headers(),
            Some(&body),
        )
        .expect_err("a missing reference must be rejected");
    assert!(
        errors.iter().any(|e| e.contains("\"reference\"")),
        "{errors:?}"
    );
}

#[test]
fn missing_required_headers_and_credentials_are_named() {
    let Some(specs) = specs() else { return };
    let headers: Vec<_> = payment_headers()
        .into_iter()
        .filter(|(k, _)| *k != "Idempotency-Key" && *k != "Authorization")
        .collect();
    let errors = specs
        .validate_request(
            "POST",
            "/epayment/v1/payments",
            &headers,
            Some(&payment_body()),
        )
        .expect_err("missing headers must be rejected");
    assert!(
        errors.iter().any(|e| e.contains("`Idempotency-Key`")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("missing credentials")),
        "{errors:?}"
    );

    let mut headers = payment_headers();
    headers.retain(|(k, _)| *k != "Vipps-System-Name");
    headers.push((
        "Vipps-System-Name",
        "a-system-name-longer-than-thirty-chars",
    ));
    let errors = specs
        .validate_request(
            "POST",
            "/epayment/v1/payments",
            &headers,
            Some(&payment_body()),
        )
        .expect_err("a too long system name must be rejected");
    assert!(
        errors.iter().any(|e| e.contains("`Vipps-System-Name`")),
        "{errors:?}"
    );
}

#[test]
fn an_invalid_path_parameter_is_named() {
    let Some(specs) = specs() else { return };
    let errors = specs
        .validate_request(
            "GET",
            "/epayment/v1/payments/short",
            &merchant_headers(),
            None,
        )
        .expect_err("a reference under 8 characters must be rejected");
    assert!(
        errors.iter().any(|e| e.contains("`reference`")),
        "{errors:?}"
    );
}

/// Where the files describe an operation: the file and the path template.
type Place = Option<(&'static str, &'static str)>;

/// One sample request per operation lanehub performs, and where the files describe it.
const OPERATIONS: &[(Operation, &str, &str, Place)] = &[
    (
        Operation::AccessToken,
        "POST",
        "/accesstoken/get",
        Some((openapi::ACCESS_TOKEN, "/accesstoken/get")),
    ),
    (
        Operation::QrExchange,
        "POST",
        "/qr/v1/exchange",
        Some((openapi::QR, "/v1/exchange")),
    ),
    (
        Operation::CheckIn,
        "POST",
        "/point-of-sale/v1/loyalty-check-in",
        Some((openapi::CHECK_IN, "/v1/loyalty-check-in")),
    ),
    // CIBA authentication is documented only in prose, not in any OpenAPI file.
    (
        Operation::LoginAuthenticate,
        "POST",
        "/vipps-login-ciba/api/backchannel/authentication",
        None,
    ),
    (
        Operation::LoginToken,
        "POST",
        "/access-management-1.0/access/oauth2/token",
        Some((openapi::LOGIN, "/access-management-1.0/access/oauth2/token")),
    ),
    (
        Operation::Userinfo,
        "GET",
        "/vipps-userinfo-api/userinfo",
        Some((openapi::USERINFO, "/vipps-userinfo-api/userinfo/")),
    ),
    (
        Operation::Discovery,
        "GET",
        "/access-management-1.0/access/.well-known/openid-configuration",
        Some((
            openapi::LOGIN,
            "/access-management-1.0/access/.well-known/openid-configuration",
        )),
    ),
    (
        Operation::PaymentCreate,
        "POST",
        "/epayment/v1/payments",
        Some((openapi::EPAYMENT, "/epayment/v1/payments")),
    ),
    (
        Operation::PaymentGet,
        "GET",
        "/epayment/v1/payments/lane-01-000123-7f3a",
        Some((openapi::EPAYMENT, "/epayment/v1/payments/{reference}")),
    ),
    (
        Operation::PaymentEvents,
        "GET",
        "/epayment/v1/payments/lane-01-000123-7f3a/events",
        Some((
            openapi::EPAYMENT,
            "/epayment/v1/payments/{reference}/events",
        )),
    ),
    (
        Operation::PaymentCancel,
        "POST",
        "/epayment/v1/payments/lane-01-000123-7f3a/cancel",
        Some((
            openapi::EPAYMENT,
            "/epayment/v1/payments/{reference}/cancel",
        )),
    ),
    (
        Operation::PaymentCapture,
        "POST",
        "/epayment/v1/payments/lane-01-000123-7f3a/capture",
        Some((
            openapi::EPAYMENT,
            "/epayment/v1/payments/{reference}/capture",
        )),
    ),
    (
        Operation::PaymentRefund,
        "POST",
        "/epayment/v1/payments/lane-01-000123-7f3a/refund",
        Some((
            openapi::EPAYMENT,
            "/epayment/v1/payments/{reference}/refund",
        )),
    ),
    (
        Operation::PaymentApprove,
        "POST",
        "/epayment/v1/test/payments/lane-01-000123-7f3a/approve",
        Some((
            openapi::EPAYMENT,
            "/epayment/v1/test/payments/{reference}/approve",
        )),
    ),
    (
        Operation::WebhookRegister,
        "POST",
        "/webhooks/v1/webhooks",
        Some((openapi::WEBHOOKS, "/v1/webhooks")),
    ),
    (
        Operation::WebhookList,
        "GET",
        "/webhooks/v1/webhooks",
        Some((openapi::WEBHOOKS, "/v1/webhooks")),
    ),
    (
        Operation::WebhookDelete,
        "DELETE",
        "/webhooks/v1/webhooks/0f8fad5b-d9cb-469f-a165-70867728950e",
        Some((openapi::WEBHOOKS, "/v1/webhooks/{id}")),
    ),
];

#[test]
fn every_lanehub_operation_matches_its_place_in_the_files() {
    let Some(specs) = specs() else { return };
    for op in Operation::ALL {
        assert!(
            OPERATIONS.iter().any(|(o, ..)| *o == op),
            "{} has no sample request in this test",
            op.as_str()
        );
    }
    for (op, method, path, expected) in OPERATIONS {
        assert_eq!(
            Operation::from_request(method, path),
            Some(*op),
            "{method} {path}"
        );
        let found = specs
            .operation(method, path)
            .map(|o| (o.file, o.template.clone()));
        let expected = expected.map(|(f, t)| (f, t.to_owned()));
        assert_eq!(found, expected, "{} ({method} {path})", op.as_str());
    }
    let get = specs
        .operation("GET", "/epayment/v1/payments/lane-01-000123-7f3a?x=1")
        .expect("a query string does not hide the operation");
    assert_eq!(
        get.path_params,
        vec![("reference".to_owned(), "lane-01-000123-7f3a".to_owned())]
    );
    assert!(specs.operation("GET", "/qr/v1/exchange").is_none());
    assert!(specs.operation("POST", "/qrx/v1/exchange").is_none());
    assert!(specs.operation("GET", "/sim/v1/faults").is_none());
}

#[test]
fn the_remote_receipt_reference_resolves_to_the_order_management_file() {
    let Some(specs) = specs() else { return };
    let schema = specs
        .json_schema(
            openapi::EPAYMENT,
            "/components/schemas/CreatePaymentRequest",
            Direction::Request,
        )
        .expect("CreatePaymentRequest converts");
    let defs = schema["$defs"].as_object().expect("refs are inlined");
    assert!(
        defs.keys()
            .any(|k| k.contains(openapi::ORDER_MANAGEMENT) && k.ends_with("Receipt")),
        "{:?}",
        defs.keys().collect::<Vec<_>>()
    );
    let mut body = payment_body();
    body["receipt"]["orderLines"] = json!([]);
    let errors = specs
        .validate_request(
            "POST",
            "/epayment/v1/payments",
            &payment_headers(),
            Some(&body),
        )
        .expect_err("an empty receipt must be rejected");
    assert!(
        errors.iter().any(|e| e.contains("/receipt/orderLines")),
        "{errors:?}"
    );
    let mut body = payment_body();
    body["receipt"]["orderLines"][0]["taxPercentage"] = json!(125);
    let errors = specs
        .validate_request(
            "POST",
            "/epayment/v1/payments",
            &payment_headers(),
            Some(&body),
        )
        .expect_err("a tax percentage over 100 must be rejected");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("/receipt/orderLines/0/taxPercentage")),
        "{errors:?}"
    );
}

#[test]
fn nullable_fields_accept_null_and_nothing_else_extra() {
    let Some(specs) = specs() else { return };
    let mut body = payment_body();
    body["receipt"]["orderLines"][0]["discount"] = Value::Null;
    body["metadata"] = Value::Null;
    let ok = specs.validate_request(
        "POST",
        "/epayment/v1/payments",
        &payment_headers(),
        Some(&body),
    );
    assert_eq!(ok, Ok(()));
    body["amount"] = Value::Null;
    assert!(
        specs
            .validate_request(
                "POST",
                "/epayment/v1/payments",
                &payment_headers(),
                Some(&body)
            )
            .is_err()
    );
}

#[test]
fn customer_takes_exactly_one_identifier() {
    let Some(specs) = specs() else { return };
    let mut body = payment_body();
    body["customer"] =
        json!({"phoneNumber": "4791234567", "personalQr": "https://qr.vipps.no/p/abc"});
    let errors = specs
        .validate_request(
            "POST",
            "/epayment/v1/payments",
            &payment_headers(),
            Some(&body),
        )
        .expect_err("two identifiers must be rejected");
    assert!(errors.iter().any(|e| e.contains("/customer")), "{errors:?}");
    body["customer"] = json!({"personalQr": "https://qr.vipps.no/p/abc"});
    let ok = specs.validate_request(
        "POST",
        "/epayment/v1/payments",
        &payment_headers(),
        Some(&body),
    );
    assert_eq!(ok, Ok(()));
}

#[test]
fn responses_are_checked_for_status_content_type_and_body() {
    let Some(specs) = specs() else { return };
    let path = "/epayment/v1/payments";
    let created = json!({"reference": "lane-01-000123-7f3a"});
    assert_eq!(
        specs.validate_response("POST", path, 201, Some("application/json"), Some(&created)),
        Ok(())
    );
    let errors = specs
        .validate_response(
            "POST",
            path,
            201,
            Some("application/json"),
            Some(&json!({})),
        )
        .expect_err("a 201 without reference must be rejected");
    assert!(
        errors.iter().any(|e| e.contains("\"reference\"")),
        "{errors:?}"
    );
    let errors = specs
        .validate_response("POST", path, 201, Some("text/plain"), Some(&created))
        .expect_err("an undeclared content type must be rejected");
    assert!(
        errors.iter().any(|e| e.contains("text/plain")),
        "{errors:?}"
    );
    let errors = specs
        .validate_response("POST", path, 204, None, None)
        .expect_err("an undeclared status must be rejected");
    assert!(errors.iter().any(|e| e.contains("204")), "{errors:?}");
    // Gateway answers are accepted on any operation, whatever their body.
    let gateway = json!({"statusCode": 429, "message": "Rate limit is exceeded."});
    assert_eq!(
        specs.validate_response("POST", path, 429, Some("application/json"), Some(&gateway)),
        Ok(())
    );
    let problem = json!({"type": "https://example.com/e", "title": "Bad Request", "status": 400,
        "traceId": "abc"});
    assert_eq!(
        specs.validate_response(
            "POST",
            path,
            400,
            Some("application/problem+json"),
            Some(&problem)
        ),
        Ok(())
    );
}

#[test]
fn listed_deviations_are_applied() {
    let Some(specs) = specs() else { return };
    let checkin = "/point-of-sale/v1/loyalty-check-in";
    for body in [json!("0f8fad5b-d9cb"), json!({"id": "0f8fad5b-d9cb"})] {
        assert_eq!(
            specs.validate_response("POST", checkin, 200, Some("application/json"), Some(&body)),
            Ok(()),
            "{body}"
        );
    }
    let modification = json!({
        "amount": {"currency": "NOK", "value": 24900},
        "state": "AUTHORIZED",
        "aggregate": {
            "authorizedAmount": {"currency": "NOK", "value": 24900},
            "cancelledAmount": {"currency": "NOK", "value": 0},
            "capturedAmount": {"currency": "NOK", "value": 24900},
            "refundedAmount": {"currency": "NOK", "value": 0}
        },
        "pspReference": "sim-1",
        "reference": "lane-01-000123-7f3a"
    });
    let capture = "/epayment/v1/payments/lane-01-000123-7f3a/capture";
    for ct in ["application/json", "application/problem+json"] {
        assert_eq!(
            specs.validate_response("POST", capture, 200, Some(ct), Some(&modification)),
            Ok(()),
            "{ct}"
        );
    }
    let events = json!([{
        "reference": "lane-01-000123-7f3a", "pspReference": "sim-1", "name": "CREATED",
        "amount": {"currency": "NOK", "value": 24900}, "timestamp": "2024-01-01T10:00:00Z",
        "idempotencyKey": null, "success": true
    }]);
    assert_eq!(
        specs.validate_response(
            "GET",
            "/epayment/v1/payments/lane-01-000123-7f3a/events",
            200,
            Some("application/json"),
            Some(&events)
        ),
        Ok(())
    );
    let token = json!({"access_token": "a.b.c", "token_type": "Bearer", "expires_in": 300,
        "id_token": "eyJ.eyJ.sig"});
    let token_path = "/access-management-1.0/access/oauth2/token";
    assert_eq!(
        specs.validate_response(
            "POST",
            token_path,
            200,
            Some("application/json"),
            Some(&token)
        ),
        Ok(())
    );
    let pending = json!({"error": "authorization_pending"});
    assert_eq!(
        specs.validate_response(
            "POST",
            token_path,
            400,
            Some("application/json"),
            Some(&pending)
        ),
        Ok(())
    );
    let ciba_poll = json!({"grant_type": "urn:openid:params:grant-type:ciba",
        "auth_req_id": "abc"});
    assert_eq!(
        specs.validate_request(
            "POST",
            token_path,
            &[
                ("Authorization", "Basic c2ltOnNlY3JldA=="),
                ("Content-Type", "application/x-www-form-urlencoded")
            ],
            Some(&ciba_poll)
        ),
        Ok(())
    );
    let userinfo = json!({"sub": "c06c4afe", "phone_number": "4791234567", "name": "Ada"});
    assert_eq!(
        specs.validate_response(
            "GET",
            "/vipps-userinfo-api/userinfo",
            200,
            Some("application/json;charset=UTF-8"),
            Some(&userinfo)
        ),
        Ok(())
    );
    assert_eq!(
        specs.validate_request(
            "GET",
            "/vipps-userinfo-api/userinfo",
            &[("Authorization", "Bearer login.token")],
            None
        ),
        Ok(())
    );
    let cancel = "/epayment/v1/payments/lane-01-000123-7f3a/cancel";
    assert_eq!(
        specs.validate_request(
            "POST",
            cancel,
            &payment_headers(),
            Some(&json!({"cancelTransactionOnly": true}))
        ),
        Ok(())
    );
}

#[test]
fn every_deviation_is_documented() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/vipps-spec-deviations.md"
    ))
    .expect("docs/vipps-spec-deviations.md exists");
    for d in DEVIATIONS {
        assert!(
            doc.contains(d.file)
                && (d.pointer.is_empty() || doc.contains(&format!("`{}`", d.pointer))),
            "docs/vipps-spec-deviations.md does not list {} `{}`",
            d.file,
            d.pointer
        );
    }
}
