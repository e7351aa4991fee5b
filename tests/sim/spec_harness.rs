//! Self-tests of the OpenAPI conformance harness (tests/common/openapi.rs): the official examples
//! satisfy their own schemas, broken messages fail with errors naming the field, every operation
//! lanehub performs maps to its place in the files, and the remote `Receipt` reference resolves.

use crate::common::openapi::{
    self, ACCESS_TOKEN, CHECK_IN, DEVIATIONS, Direction, EPAYMENT, Fix, LOGIN, QR, Specs, USERINFO,
    WEBHOOKS,
};
use crate::common::sim::store_payment;
use lanehub::vipps::Operation;
use serde_json::{Value, json};

const PAYMENTS: &str = "/epayment/v1/payments";

fn specs() -> Option<&'static Specs> {
    openapi::specs()
}

/// A payment as lanehub creates it in a store, with a receipt.
fn payment_body() -> Value {
    store_payment("lane-01-000123-7f3a", "4791234567", 24900)
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

/// The harness's verdict on a payment request with `headers` and `body`.
fn check_payment(specs: &Specs, headers: &[(&str, &str)], body: &Value) -> Result<(), Vec<String>> {
    specs.validate_request("POST", PAYMENTS, headers, Some(body))
}

/// The harness's verdict on a payment request with the usual headers and [`payment_body`]
/// changed by `edit`.
fn check_edited(specs: &Specs, edit: impl FnOnce(&mut Value)) -> Result<(), Vec<String>> {
    let mut body = payment_body();
    edit(&mut body);
    check_payment(specs, &payment_headers(), &body)
}

/// Asserts that `verdict` is a rejection (`why` says why it must be) with an error that
/// contains `field`.
fn assert_names(verdict: Result<(), Vec<String>>, why: &str, field: &str) {
    let errors = verdict.expect_err(why);
    assert!(
        errors.iter().any(|e| e.contains(field)),
        "{why}: no error names {field}: {errors:?}"
    );
}

/// A body change, what it must be rejected for and what the error must name.
type Broken = (fn(&mut Value), &'static str, &'static str);

/// Asserts of each case that the changed [`payment_body`] is rejected naming its field.
fn assert_broken(specs: &Specs, cases: &[Broken]) {
    for &(edit, why, field) in cases {
        assert_names(check_edited(specs, edit), why, field);
    }
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
    assert_eq!(check_edited(specs, |_| {}), Ok(()));
}

#[test]
fn a_broken_body_fails_with_an_error_naming_the_field() {
    let Some(specs) = specs() else { return };
    let cases: [Broken; 2] = [
        (
            |b| b["amount"]["value"] = json!("24900"),
            "a string amount must be rejected",
            "/amount/value",
        ),
        (
            |b| {
                b.as_object_mut()
                    .expect("the body is an object")
                    .remove("reference");
            },
            "a missing reference must be rejected",
            "\"reference\"",
        ),
    ];
    assert_broken(specs, &cases);
}

#[test]
fn missing_required_headers_and_credentials_are_named() {
    let Some(specs) = specs() else { return };
    let headers: Vec<_> = payment_headers()
        .into_iter()
        .filter(|(k, _)| *k != "Idempotency-Key" && *k != "Authorization")
        .collect();
    let why = "missing headers must be rejected";
    let verdict = check_payment(specs, &headers, &payment_body());
    assert_names(verdict.clone(), why, "`Idempotency-Key`");
    assert_names(verdict, why, "missing credentials");

    let mut headers = payment_headers();
    headers.retain(|(k, _)| *k != "Vipps-System-Name");
    headers.push((
        "Vipps-System-Name",
        "a-system-name-longer-than-thirty-chars",
    ));
    assert_names(
        check_payment(specs, &headers, &payment_body()),
        "a too long system name must be rejected",
        "`Vipps-System-Name`",
    );
}

#[test]
fn an_invalid_path_parameter_is_named() {
    let Some(specs) = specs() else { return };
    let path = format!("{PAYMENTS}/short");
    assert_names(
        specs.validate_request("GET", &path, &merchant_headers(), None),
        "a reference under 8 characters must be rejected",
        "`reference`",
    );
}

/// Each operation lanehub performs that the files describe: the file and the path template.
const OPERATIONS: &[(Operation, &str, &str, &str)] = &[
    (
        Operation::AccessToken,
        "POST",
        ACCESS_TOKEN,
        "/accesstoken/get",
    ),
    (Operation::QrExchange, "POST", QR, "/v1/exchange"),
    (Operation::CheckIn, "POST", CHECK_IN, "/v1/loyalty-check-in"),
    (
        Operation::LoginToken,
        "POST",
        LOGIN,
        "/access-management-1.0/access/oauth2/token",
    ),
    (
        Operation::Userinfo,
        "GET",
        USERINFO,
        "/vipps-userinfo-api/userinfo/",
    ),
    (
        Operation::Discovery,
        "GET",
        LOGIN,
        "/access-management-1.0/access/.well-known/openid-configuration",
    ),
    (
        Operation::PaymentCreate,
        "POST",
        EPAYMENT,
        "/epayment/v1/payments",
    ),
    (
        Operation::PaymentGet,
        "GET",
        EPAYMENT,
        "/epayment/v1/payments/{reference}",
    ),
    (
        Operation::PaymentEvents,
        "GET",
        EPAYMENT,
        "/epayment/v1/payments/{reference}/events",
    ),
    (
        Operation::PaymentCancel,
        "POST",
        EPAYMENT,
        "/epayment/v1/payments/{reference}/cancel",
    ),
    (
        Operation::PaymentCapture,
        "POST",
        EPAYMENT,
        "/epayment/v1/payments/{reference}/capture",
    ),
    (
        Operation::PaymentRefund,
        "POST",
        EPAYMENT,
        "/epayment/v1/payments/{reference}/refund",
    ),
    (
        Operation::PaymentApprove,
        "POST",
        EPAYMENT,
        "/epayment/v1/test/payments/{reference}/approve",
    ),
    (Operation::WebhookRegister, "POST", WEBHOOKS, "/v1/webhooks"),
    (Operation::WebhookList, "GET", WEBHOOKS, "/v1/webhooks"),
    (
        Operation::WebhookDelete,
        "DELETE",
        WEBHOOKS,
        "/v1/webhooks/{id}",
    ),
];

/// CIBA authentication is documented only in prose, not in any OpenAPI file.
const CIBA: (Operation, &str, &str) = (
    Operation::LoginAuthenticate,
    "POST",
    "/vipps-login-ciba/api/backchannel/authentication",
);

/// The path lanehub calls for `template` of `file`: below the file's server path, with sample
/// path parameters and without a trailing slash.
fn sample_path(file: &str, template: &str) -> String {
    let server = match file {
        QR => "/qr",
        CHECK_IN => "/point-of-sale",
        WEBHOOKS => "/webhooks",
        _ => "",
    };
    let path = template
        .replace("{reference}", "lane-01-000123-7f3a")
        .replace("{id}", "0f8fad5b-d9cb-469f-a165-70867728950e");
    format!("{server}{}", path.trim_end_matches('/'))
}

#[test]
fn every_lanehub_operation_matches_its_place_in_the_files() {
    let Some(specs) = specs() else { return };
    for op in Operation::ALL {
        assert!(
            op == CIBA.0 || OPERATIONS.iter().any(|(o, ..)| *o == op),
            "{} has no sample request in this test",
            op.as_str()
        );
    }
    let (op, method, path) = CIBA;
    assert_eq!(
        Operation::from_request(method, path),
        Some(op),
        "{method} {path}"
    );
    assert!(specs.operation(method, path).is_none(), "{method} {path}");
    for &(op, method, file, template) in OPERATIONS {
        let path = sample_path(file, template);
        assert_eq!(
            Operation::from_request(method, &path),
            Some(op),
            "{method} {path}"
        );
        let found = specs
            .operation(method, &path)
            .map(|o| (o.file, o.template.clone()));
        assert_eq!(
            found,
            Some((file, template.to_owned())),
            "{} ({method} {path})",
            op.as_str()
        );
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
    let cases: [Broken; 2] = [
        (
            |b| b["receipt"]["orderLines"] = json!([]),
            "an empty receipt must be rejected",
            "/receipt/orderLines",
        ),
        (
            |b| b["receipt"]["orderLines"][0]["taxPercentage"] = json!(125),
            "a tax percentage over 100 must be rejected",
            "/receipt/orderLines/0/taxPercentage",
        ),
    ];
    assert_broken(specs, &cases);
}

#[test]
fn nullable_fields_accept_null_and_nothing_else_extra() {
    let Some(specs) = specs() else { return };
    let nulls = |b: &mut Value| {
        b["receipt"]["orderLines"][0]["discount"] = Value::Null;
        b["metadata"] = Value::Null;
    };
    assert_eq!(check_edited(specs, nulls), Ok(()));
    let verdict = check_edited(specs, |b| {
        nulls(b);
        b["amount"] = Value::Null;
    });
    assert!(verdict.is_err());
}

#[test]
fn customer_takes_exactly_one_identifier() {
    let Some(specs) = specs() else { return };
    let verdict = check_edited(specs, |b| {
        b["customer"] =
            json!({"phoneNumber": "4791234567", "personalQr": "https://qr.vipps.no/p/abc"});
    });
    assert_names(verdict, "two identifiers must be rejected", "/customer");
    let verdict = check_edited(specs, |b| {
        b["customer"] = json!({"personalQr": "https://qr.vipps.no/p/abc"});
    });
    assert_eq!(verdict, Ok(()));
}

/// A response: method, path, status, content type and body.
type Answer<'a> = (&'a str, &'a str, u16, Option<&'a str>, Option<Value>);

/// The harness's verdict on `answer`.
fn check_answer(specs: &Specs, answer: &Answer) -> Result<(), Vec<String>> {
    let (method, path, status, content_type, body) = answer;
    specs.validate_response(method, path, *status, *content_type, body.as_ref())
}

#[test]
fn responses_are_checked_for_status_content_type_and_body() {
    let Some(specs) = specs() else { return };
    let created = json!({"reference": "lane-01-000123-7f3a"});
    let json = Some("application/json");
    let accepted: [Answer; 3] = [
        ("POST", PAYMENTS, 201, json, Some(created.clone())),
        // Gateway answers are accepted on any operation, whatever their body.
        (
            "POST",
            PAYMENTS,
            429,
            json,
            Some(json!({"statusCode": 429, "message": "Rate limit is exceeded."})),
        ),
        (
            "POST",
            PAYMENTS,
            400,
            Some("application/problem+json"),
            Some(
                json!({"type": "https://example.com/e", "title": "Bad Request", "status": 400,
                "traceId": "abc"}),
            ),
        ),
    ];
    for answer in &accepted {
        assert_eq!(check_answer(specs, answer), Ok(()), "{answer:?}");
    }
    let refused: [(Answer, &str, &str); 3] = [
        (
            ("POST", PAYMENTS, 201, json, Some(json!({}))),
            "a 201 without reference must be rejected",
            "\"reference\"",
        ),
        (
            ("POST", PAYMENTS, 201, Some("text/plain"), Some(created)),
            "an undeclared content type must be rejected",
            "text/plain",
        ),
        (
            ("POST", PAYMENTS, 204, None, None),
            "an undeclared status must be rejected",
            "204",
        ),
    ];
    for (answer, why, named) in &refused {
        assert_names(check_answer(specs, answer), why, named);
    }
}

#[test]
fn listed_deviations_are_applied() {
    let Some(specs) = specs() else { return };
    let checkin = "/point-of-sale/v1/loyalty-check-in";
    let capture = "/epayment/v1/payments/lane-01-000123-7f3a/capture";
    let events = "/epayment/v1/payments/lane-01-000123-7f3a/events";
    let token_path = "/access-management-1.0/access/oauth2/token";
    let userinfo = "/vipps-userinfo-api/userinfo";
    let json = Some("application/json");
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
    let answers: [Answer; 8] = [
        ("POST", checkin, 200, json, Some(json!("0f8fad5b-d9cb"))),
        (
            "POST",
            checkin,
            200,
            json,
            Some(json!({"id": "0f8fad5b-d9cb"})),
        ),
        ("POST", capture, 200, json, Some(modification.clone())),
        (
            "POST",
            capture,
            200,
            Some("application/problem+json"),
            Some(modification),
        ),
        (
            "GET",
            events,
            200,
            json,
            Some(json!([{
                "reference": "lane-01-000123-7f3a", "pspReference": "sim-1", "name": "CREATED",
                "amount": {"currency": "NOK", "value": 24900}, "timestamp": "2024-01-01T10:00:00Z",
                "idempotencyKey": null, "success": true
            }])),
        ),
        (
            "POST",
            token_path,
            200,
            json,
            Some(
                json!({"access_token": "a.b.c", "token_type": "Bearer", "expires_in": 300,
                "id_token": "eyJ.eyJ.sig"}),
            ),
        ),
        (
            "POST",
            token_path,
            400,
            json,
            Some(json!({"error": "authorization_pending"})),
        ),
        (
            "GET",
            userinfo,
            200,
            Some("application/json;charset=UTF-8"),
            Some(json!({"sub": "c06c4afe", "phone_number": "4791234567", "name": "Ada"})),
        ),
    ];
    for answer in &answers {
        assert_eq!(check_answer(specs, answer), Ok(()), "{answer:?}");
    }

    let ciba_poll = json!({"grant_type": "urn:openid:params:grant-type:ciba",
        "auth_req_id": "abc"});
    let form_headers = [
        ("Authorization", "Basic c2ltOnNlY3JldA=="),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let cancel_body = json!({"cancelTransactionOnly": true});
    let requests = [
        ("POST", token_path, form_headers.to_vec(), Some(&ciba_poll)),
        (
            "GET",
            userinfo,
            vec![("Authorization", "Bearer login.token")],
            None,
        ),
        (
            "POST",
            "/epayment/v1/payments/lane-01-000123-7f3a/cancel",
            payment_headers(),
            Some(&cancel_body),
        ),
    ];
    for (method, path, headers, body) in requests {
        assert_eq!(
            specs.validate_request(method, path, &headers, body),
            Ok(()),
            "{method} {path}"
        );
    }
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
