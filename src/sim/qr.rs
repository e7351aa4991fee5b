//! QR exchange: `POST /qr/v1/exchange` turns a scanned personal QR into a phone number.
//!
//! Three kinds of code are understood: today's clear-text Vipps personal QR
//! (`https://qr.vipps.no/28/2/01/031/4791234567?v=1`, answered as version `1.0`), the tokenised
//! `https://qr.vipps.no/p/<token>` the simulator issues for its virtual customers (version `2.0`,
//! with a timestamp), and a shape no integration knows yet that it also issues
//! (`https://qr.vipps.no/c/<token>?v=3`, answered as `2.0`): Vipps may change the content at any
//! time, and a client that sends only the shapes it knows misses those customers. Everything else is a 400 in the spec's `QrExchangeErrorResponse` shape
//! (`{title, status, detail, extraDetails[{name, reason}]}`) naming what is wrong. The merchant
//! token is checked before the body, as the API gateway does.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::{Value, json};

use super::SimState;
use super::auth::{self, MsnHeader};
use super::problem::{Problem, body_reason};
use crate::domain::Msisdn;

/// Largest request body accepted; a QR code is a few hundred bytes at most.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the spec's example says when `qrCode` is missing.
const QR_REQUIRED: &str = "The complete data contained in the QR code is required.";

pub(super) fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/qr/v1/exchange")
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_BODY_BYTES)
                    .error_handler(|err, _| body_problem(&err).into()),
            )
            .route(web::post().to(exchange))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    Problem::params(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        &format!(
            "{} is not allowed on {}; use POST.",
            req.method(),
            req.path()
        ),
        &[("method", "Only POST is allowed.")],
    )
    .with_header("allow", "POST")
    .error_response()
}

/// A 400 in the exchange's error shape naming the offending field.
fn bad_request(name: &str, reason: &str) -> Problem {
    Problem::params(
        StatusCode::BAD_REQUEST,
        "Bad request",
        "The request body contains one or more invalid parameters.",
        &[(name, reason)],
    )
}

/// Maps a body that is not JSON (wrong content type, syntax error, too large) to the error shape.
fn body_problem(err: &JsonPayloadError) -> Problem {
    bad_request("body", &body_reason(err))
}

/// What a scanned personal QR code holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScannedQr {
    /// Today's Vipps personal QR with the number in clear text.
    ClearText(Msisdn),
    /// A tokenised personal QR (`https://qr.vipps.no/p/<token>`).
    Token(String),
}

/// Classifies the complete scanned text of a personal QR code, or says why it is not one.
pub fn classify(qr: &str) -> Result<ScannedQr, &'static str> {
    if qr.is_empty() {
        return Err(QR_REQUIRED);
    }
    if qr.trim() != qr {
        return Err("qrCode has leading or trailing whitespace; send the scanned text unchanged");
    }
    const NOT_PERSONAL: &str = "qrCode is not a Vipps MobilePay personal QR code";
    let (scheme, rest) = qr.split_once("://").ok_or(NOT_PERSONAL)?;
    if !scheme.eq_ignore_ascii_case("https") {
        return Err(NOT_PERSONAL);
    }
    let (host, path_and_query) = rest.split_once('/').ok_or(NOT_PERSONAL)?;
    if !host.eq_ignore_ascii_case("qr.vipps.no") {
        return Err(NOT_PERSONAL);
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["p", token] => {
            let valid = !token.is_empty()
                && token.len() <= 256
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            // A token QR carries nothing but the token.
            if !valid || query.is_some() {
                return Err("qrCode holds a malformed personal QR token");
            }
            Ok(ScannedQr::Token((*token).to_owned()))
        }
        [prefix @ .., number]
            if !prefix.is_empty()
                && prefix
                    .iter()
                    .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) =>
        {
            let norwegian = number.len() == 10
                && number.starts_with("47")
                && number.bytes().all(|b| b.is_ascii_digit());
            if !norwegian {
                return Err(
                    "the phone number in the clear-text QR code is not a Norwegian MSISDN (47 and 8 digits)",
                );
            }
            number
                .parse()
                .map(ScannedQr::ClearText)
                .map_err(|_| "the phone number in the clear-text QR code is not valid")
        }
        _ => Err(NOT_PERSONAL),
    }
}

/// Reads `qrCode` and checks `requestedData` (only `MSISDN` is defined).
fn parse_request(body: &Value) -> Result<&str, Problem> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad_request("body", "the body must be a JSON object"))?;
    if let Some(requested) = obj.get("requestedData").filter(|v| !v.is_null()) {
        let items = requested
            .as_array()
            .ok_or_else(|| bad_request("requestedData", "requestedData must be an array"))?;
        if items.iter().any(|i| i.as_str() != Some("MSISDN")) {
            return Err(bad_request("requestedData", "only MSISDN can be requested"));
        }
    }
    match obj.get("qrCode") {
        None | Some(Value::Null) => Err(bad_request("qrCode", QR_REQUIRED)),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(bad_request("qrCode", "qrCode must be a string")),
    }
}

async fn exchange(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: Result<web::Json<Value>, actix_web::Error>,
) -> Result<HttpResponse, actix_web::Error> {
    auth::authorize(&state, &req, MsnHeader::Optional)?;
    let body = body?;
    let qr = parse_request(&body)?;
    let future = state
        .customers()
        .by_qr_future_url(qr)
        .map(|c| c.phone_number.clone());
    if let Some(phone) = future {
        return Ok(HttpResponse::Ok().json(json!({
            "msisdn": phone.as_str(),
            "version": "2.0",
            "timestamp": state.clock.wall().timestamp(),
        })));
    }
    let answer = match classify(qr).map_err(|reason| bad_request("qrCode", reason))? {
        ScannedQr::ClearText(phone) => json!({"msisdn": phone.as_str(), "version": "1.0"}),
        ScannedQr::Token(token) => {
            let customers = state.customers();
            let customer = customers
                .by_qr_token(&token)
                .ok_or_else(|| bad_request("qrCode", "unknown or expired personal QR token"))?;
            // The app draws a fresh code each time it shows one, so "generated" is now.
            json!({
                "msisdn": customer.phone_number.as_str(),
                "version": "2.0",
                "timestamp": state.clock.wall().timestamp(),
            })
        }
    };
    Ok(HttpResponse::Ok().json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(s: &str) -> ScannedQr {
        ScannedQr::ClearText(s.parse().unwrap())
    }

    #[test]
    fn personal_qr_codes_are_classified() {
        let ok = [
            (
                "https://qr.vipps.no/28/2/01/031/4791234567?v=1",
                phone("4791234567"),
            ),
            (
                "https://qr.vipps.no/28/2/01/031/4791234567",
                phone("4791234567"),
            ),
            (
                "HTTPS://QR.VIPPS.NO/28/2/01/031/4798765432?v=2",
                phone("4798765432"),
            ),
            (
                "https://qr.vipps.no/p/abc-DEF_123",
                ScannedQr::Token("abc-DEF_123".into()),
            ),
        ];
        for (qr, want) in ok {
            assert_eq!(classify(qr), Ok(want), "{qr}");
        }
    }

    #[test]
    fn everything_else_is_rejected_with_a_reason() {
        let bad = [
            "",
            " https://qr.vipps.no/28/2/01/031/4791234567?v=1",
            "https://qr.vipps.no/28/2/01/031/4791234567?v=1\r\n",
            "http://qr.vipps.no/28/2/01/031/4791234567?v=1",
            "https://qr.example.com/28/2/01/031/4791234567?v=1",
            "https://qr.vipps.no/28/2/01/031/4512345678?v=1",
            "https://qr.vipps.no/28/2/01/031/479123456?v=1",
            "https://qr.vipps.no/28/2/01/031/47912345678?v=1",
            "https://qr.vipps.no/28/x/01/031/4791234567?v=1",
            "https://qr.vipps.no/4791234567",
            "https://qr.vipps.no/p/",
            "https://qr.vipps.no/p/abc?x=1",
            "https://qr.vipps.no/p/ab%20c",
            "https://qr.vipps.no/p/abc/def",
            "4791234567",
            "7038010001234",
            "garbage",
        ];
        for qr in bad {
            let err = classify(qr).expect_err(qr);
            assert!(!err.is_empty());
        }
    }

    #[test]
    fn request_fields_are_checked() {
        let cases = [
            (json!({}), "qrCode"),
            (json!({"qrCode": null}), "qrCode"),
            (json!({"qrCode": 47}), "qrCode"),
            (json!([]), "body"),
            (
                json!({"qrCode": "x", "requestedData": "MSISDN"}),
                "requestedData",
            ),
            (
                json!({"qrCode": "x", "requestedData": ["NAME"]}),
                "requestedData",
            ),
        ];
        for (body, field) in cases {
            let err = parse_request(&body).expect_err(&body.to_string());
            assert_eq!(err.body["extraDetails"][0]["name"], field, "{body}");
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
        }
        let body = json!({"qrCode": "x", "requestedData": ["MSISDN"]});
        assert_eq!(parse_request(&body).unwrap(), "x");
    }
}
