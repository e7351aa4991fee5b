//! The error shapes the Vipps APIs answer with, so the simulator fails exactly like Vipps does.
//!
//! - ePayment and webhooks: RFC 7807 `application/problem+json` with `extraDetails`.
//! - QR exchange and check-in: `{title, status?, detail, instance, invalidParams/extraDetails}`.
//! - Login and access token: OAuth `{error, error_description}`.
//! - The API gateway (401 before any API sees the request): `{statusCode, message}`.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};

/// An error answer, ready to send.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub body: Value,
    pub content_type: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.content_type(self.content_type);
        for (k, v) in &self.headers {
            res.insert_header((k.clone(), v.clone()));
        }
        res.body(self.body.to_string())
    }
}

impl Problem {
    /// Adds a header, e.g. `Retry-After`.
    pub fn with_header(mut self, name: &'static str, value: impl ToString) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    /// ePayment's problem+json. `error_code` goes to `extraDetails` as `ErrorCode`, as the live API
    /// does for its numbered errors (6080, 6250, 7010, …).
    pub fn epayment(
        status: StatusCode,
        title: &str,
        detail: &str,
        extra: &[(&str, &str)],
        error_code: Option<u32>,
    ) -> Self {
        let mut extra_details: Vec<Value> = extra
            .iter()
            .map(|(name, reason)| json!({"name": name, "reason": reason}))
            .collect();
        if let Some(code) = error_code {
            extra_details.push(json!({"name": "ErrorCode", "reason": code.to_string()}));
        }
        let body = json!({
            "type": format!("https://developer.vippsmobilepay.com/docs/APIs/epayment-api/api-guide/errors#{}", status.as_u16()),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "instance": format!("/epayment/v1/errors/{}", uuid::Uuid::new_v4()),
            "traceId": uuid::Uuid::new_v4().simple().to_string(),
            "extraDetails": extra_details,
        });
        Self {
            status,
            body,
            content_type: "application/problem+json",
            headers: vec![],
        }
    }

    /// A 400 in ePayment's shape naming the offending field.
    pub fn epayment_invalid(field: &str, reason: &str) -> Self {
        Self::epayment(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "One or more validation errors occurred.",
            &[(field, reason)],
            None,
        )
    }

    /// The QR and check-in APIs' error shape, with `invalidParams` (check-in) and `extraDetails`
    /// (QR exchange) both filled so either reader finds the offending field.
    pub fn params(status: StatusCode, title: &str, detail: &str, invalid: &[(&str, &str)]) -> Self {
        let params: Vec<Value> = invalid
            .iter()
            .map(|(name, reason)| json!({"name": name, "reason": reason}))
            .collect();
        let body = json!({
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "instance": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "invalidParams": params,
            "extraDetails": params,
        });
        Self {
            status,
            body,
            content_type: "application/json",
            headers: vec![],
        }
    }

    /// OAuth 2.0 error (`invalid_request`, `authorization_pending`, …).
    pub fn oauth(status: StatusCode, error: &str, description: &str) -> Self {
        Self {
            status,
            body: json!({"error": error, "error_description": description}),
            content_type: "application/json",
            headers: vec![],
        }
    }

    /// A 405 in the OAuth shape, naming the allowed methods (access token and Login).
    pub fn method_not_allowed_oauth(req: &actix_web::HttpRequest, allow: &str) -> Self {
        Self::oauth(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            &format!(
                "{} is not allowed on {}; use {allow}",
                req.method(),
                req.path()
            ),
        )
        .with_header("allow", allow)
    }

    /// What the API gateway answers before any API sees the request.
    pub fn gateway(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: json!({"statusCode": status.as_u16(), "message": message}),
            content_type: "application/json",
            headers: vec![],
        }
    }

    /// A 429 from the gateway with `Retry-After` in seconds.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::gateway(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit is exceeded. Try again later.",
        )
        .with_header("retry-after", retry_after_secs.max(1))
    }
}

/// Why a JSON body could not be read (wrong content type, syntax error, too large), as the QR and
/// check-in APIs word it in `invalidParams`.
pub fn body_reason(err: &JsonPayloadError) -> String {
    match err {
        JsonPayloadError::ContentType => "Content-Type must be application/json".to_owned(),
        JsonPayloadError::Deserialize(e) => format!("the body is not valid JSON: {e}"),
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            format!("the body is larger than {limit} bytes")
        }
        other => format!("the body could not be read: {other}"),
    }
}
