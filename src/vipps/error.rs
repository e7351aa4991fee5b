//! What can go wrong talking to Vipps: [`VippsError`], its retry class and metric label, and the
//! problem body ([`ApiProblem`]) when Vipps sent one.
//!
//! What must stay true: whether an error is retryable depends only on the transport and the HTTP
//! status, never on the body, because the API gateway answers some 401, 403, 422 and 429 in its
//! own format. The body is parsed when it can be, for people and for `ErrorCode`s. `Display`
//! masks long digit runs so a phone number echoed by Vipps never reaches a log in full.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{Api, Operation};

/// An error from a Vipps call, or from lanehub's own guards in front of Vipps.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VippsError {
    /// No answer within the request timeout (connect or whole request).
    #[error("{}: no answer within the timeout", .operation.as_str())]
    Timeout { operation: Operation },
    /// The connection could not be made or broke before a full answer arrived.
    #[error("{}: connection failed: {message}", .operation.as_str())]
    Connection {
        operation: Operation,
        message: String,
    },
    /// Vipps answered with a status that is not the documented success.
    #[error("{}: HTTP {status}{}", .operation.as_str(), problem_suffix(.problem.as_deref()))]
    Status {
        operation: Operation,
        status: u16,
        /// The parsed error body, when there was one we could read (boxed: errors stay small).
        problem: Option<Box<ApiProblem>>,
        /// `Retry-After`, as seconds or an HTTP date, turned into a wait from when it arrived.
        retry_after: Option<Duration>,
    },
    /// A success answer whose body lanehub could not read.
    #[error("{}: unexpected answer: {message}", .operation.as_str())]
    Decode {
        operation: Operation,
        message: String,
    },
    /// lanehub refused to send the request: the input or the configuration is wrong.
    #[error("invalid Vipps request: {0}")]
    InvalidRequest(String),
    /// The API's circuit breaker is open: it failed repeatedly, so calls fail fast for a while.
    #[error("Vipps {} is unavailable; calls fail fast for another {}s", .api.as_str(), .retry_in.as_secs())]
    Unavailable { api: Api, retry_in: Duration },
    /// lanehub's own rate limiter has too many requests waiting, or the wait would be too long.
    #[error("{}: too many Vipps requests waiting in lanehub", .operation.as_str())]
    Overloaded { operation: Operation },
    /// Retries did not succeed before the call's deadline.
    #[error("{}: gave up after {attempts} attempt(s){}", .operation.as_str(), last_suffix(.last.as_deref()))]
    DeadlineExceeded {
        operation: Operation,
        attempts: u32,
        /// The last error seen, if any attempt completed.
        last: Option<Box<VippsError>>,
    },
    /// The Vipps actor is gone (lanehub is shutting down).
    #[error("the Vipps client has stopped")]
    Shutdown,
}

fn problem_suffix(problem: Option<&ApiProblem>) -> String {
    problem.map_or_else(String::new, |p| format!(" ({p})"))
}

fn last_suffix(last: Option<&VippsError>) -> String {
    last.map_or_else(String::new, |e| format!("; last error: {e}"))
}

impl VippsError {
    /// Whether the same request (with the same Idempotency-Key) may be sent again: 423, 429, 5xx,
    /// timeouts and connection errors. Other 4xx answers are final for that request.
    pub fn is_retryable(&self) -> bool {
        match self {
            VippsError::Timeout { .. } | VippsError::Connection { .. } => true,
            VippsError::Status { status, .. } => {
                matches!(status, 423 | 429) || (500..=599).contains(status)
            }
            _ => false,
        }
    }

    /// Whether Vipps answered that it did not process the request (423 Locked, 429 Too Many
    /// Requests), so it is certainly safe to send again. A timeout, a broken connection or a 5xx
    /// may come after Vipps acted.
    pub fn refused_unprocessed(&self) -> bool {
        matches!(
            self,
            VippsError::Status {
                status: 423 | 429,
                ..
            }
        )
    }

    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            VippsError::Timeout { .. } => "timeout",
            VippsError::Connection { .. } => "connection",
            VippsError::Status { status, .. } => match status {
                400 => "bad_request",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                409 => "conflict",
                422 => "unprocessable",
                423 => "locked",
                429 => "rate_limited",
                500..=599 => "server_error",
                _ => "client_error",
            },
            VippsError::Decode { .. } => "decode",
            VippsError::InvalidRequest(_) => "invalid_request",
            VippsError::Unavailable { .. } => "unavailable",
            VippsError::Overloaded { .. } => "overloaded",
            VippsError::DeadlineExceeded { .. } => "deadline_exceeded",
            VippsError::Shutdown => "shutdown",
        }
    }

    /// How long Vipps asked us to wait before trying again, if it said.
    /// The `outcome` label of `lanehub_vipps_requests_total` for this error.
    pub fn request_outcome(&self) -> crate::metrics::RequestOutcome {
        use crate::metrics::RequestOutcome as O;
        match self {
            VippsError::Timeout { .. } | VippsError::DeadlineExceeded { .. } => O::Timeout,
            VippsError::Connection { .. } | VippsError::Shutdown => O::Connection,
            VippsError::Status { status, .. } => O::from_status(*status),
            VippsError::Decode { .. } => O::Decode,
            VippsError::InvalidRequest(_) => O::ClientError,
            VippsError::Unavailable { .. } => O::CircuitOpen,
            VippsError::Overloaded { .. } => O::Overloaded,
        }
    }

    /// The `reason` label of `lanehub_vipps_retries_total`, for errors that are retried.
    pub fn retry_reason(&self) -> Option<crate::metrics::RetryReason> {
        use crate::metrics::RetryReason as R;
        match self {
            VippsError::Timeout { .. } => Some(R::Timeout),
            VippsError::Connection { .. } => Some(R::Connection),
            VippsError::Status { status: 423, .. } => Some(R::Locked),
            VippsError::Status { status: 429, .. } => Some(R::RateLimited),
            VippsError::Status { status, .. } if (500..=599).contains(status) => {
                Some(R::ServerError)
            }
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VippsError::Status { retry_after, .. } => *retry_after,
            VippsError::Unavailable { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }

    /// The HTTP status, when Vipps answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            VippsError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The parsed error body, when Vipps sent one we could read.
    pub fn problem(&self) -> Option<&ApiProblem> {
        match self {
            VippsError::Status { problem, .. } => problem.as_deref(),
            _ => None,
        }
    }

    /// Vipps' numeric `ErrorCode` (e.g. 6080 capture before reservation), when present.
    pub fn error_code(&self) -> Option<u32> {
        self.problem().and_then(|p| p.error_code)
    }

    /// Whether the circuit breaker should count this as Vipps being unreachable or broken.
    pub fn is_outage(&self) -> bool {
        self.is_retryable() || matches!(self, VippsError::DeadlineExceeded { .. })
    }

    pub(crate) fn from_reqwest(operation: Operation, e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            return VippsError::Timeout { operation };
        }
        // The innermost cause says what happened ("connection refused", "connection reset").
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = s.to_string();
            source = s.source();
        }
        VippsError::Connection { operation, message }
    }
}

/// One `{name, reason}` entry of `extraDetails` or `invalidParams`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDetail {
    pub name: String,
    pub reason: String,
}

/// An error body in any of the shapes Vipps uses: RFC 7807 problem+json (ePayment, webhooks),
/// `{title, detail, invalidParams}` (check-in, QR), OAuth `{error, error_description}` (Login,
/// access token) and the gateway's `{statusCode, message}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiProblem {
    pub title: Option<String>,
    pub detail: Option<String>,
    pub trace_id: Option<String>,
    /// `extraDetails` and `invalidParams`, the `ErrorCode` entry included.
    pub extra_details: Vec<ExtraDetail>,
    /// The numeric `ErrorCode` from `extraDetails`.
    pub error_code: Option<u32>,
    /// OAuth `error` (`invalid_request`, `unknown_user_id`, `access_denied`, …).
    pub oauth_error: Option<String>,
    /// Login's `error_code` (`old_app`, `invalid_user`, or a number), as text.
    pub oauth_error_code: Option<String>,
}

impl ApiProblem {
    /// Reads an error body; `None` if it is not a JSON object with any field we know.
    pub fn parse(body: &[u8]) -> Option<ApiProblem> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let obj = value.as_object()?;
        let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
        let mut extra_details = Vec::new();
        for key in ["extraDetails", "invalidParams"] {
            for item in obj.get(key).and_then(Value::as_array).into_iter().flatten() {
                let field = |k: &str| item.get(k).map(value_text).unwrap_or_default();
                let detail = ExtraDetail {
                    name: field("name"),
                    reason: field("reason"),
                };
                // The simulator (and perhaps Vipps) fills both lists with the same entries.
                if !extra_details.contains(&detail) {
                    extra_details.push(detail);
                }
            }
        }
        let error_code = extra_details
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case("ErrorCode"))
            .and_then(|d| d.reason.trim().parse().ok());
        let problem = ApiProblem {
            title: text("title"),
            detail: text("detail")
                .or_else(|| text("error_description"))
                .or_else(|| text("message")),
            trace_id: text("traceId"),
            extra_details,
            error_code,
            oauth_error: text("error"),
            oauth_error_code: obj.get("error_code").map(value_text),
        };
        (problem != ApiProblem::default()).then_some(problem)
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl std::fmt::Display for ApiProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(e) = &self.oauth_error {
            parts.push(e.clone());
        }
        if let Some(c) = &self.oauth_error_code {
            parts.push(format!("error_code {c}"));
        }
        if let Some(t) = &self.title {
            parts.push(t.clone());
        }
        if let Some(c) = self.error_code {
            parts.push(format!("ErrorCode {c}"));
        }
        if let Some(d) = &self.detail {
            parts.push(d.clone());
        }
        for d in self.extra_details.iter().filter(|d| d.name != "ErrorCode") {
            parts.push(format!("{}: {}", d.name, d.reason));
        }
        f.write_str(&mask_digit_runs(&parts.join("; ")))
    }
}

/// Masks every run of 8 or more digits as a phone number, since error texts may echo one.
pub(crate) fn mask_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 8 {
            out.push_str(&crate::domain::mask_phone(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Reads `Retry-After`: delay-seconds or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> VippsError {
        VippsError::Status {
            operation: Operation::PaymentCapture,
            status,
            problem: None,
            retry_after: None,
        }
    }

    #[test]
    fn retry_class_follows_status_and_transport() {
        for s in [423, 429, 500, 502, 503, 504] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        assert!(
            VippsError::Timeout {
                operation: Operation::PaymentGet
            }
            .is_retryable()
        );
        assert!(
            VippsError::Connection {
                operation: Operation::PaymentGet,
                message: "reset".into()
            }
            .is_retryable()
        );
        assert!(
            !VippsError::Unavailable {
                api: Api::Epayment,
                retry_in: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert_eq!(status(429).kind(), "rate_limited");
        assert_eq!(status(418).kind(), "client_error");
        assert_eq!(status(503).kind(), "server_error");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Thu, 30 Mar 2023 08:38:32 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 30 Mar 2023 08:38:42 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Thu, 30 Mar 2023 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn parses_every_error_shape() {
        let epayment = br#"{"type":"https://x/errors#400","title":"Bad Request","status":400,
            "detail":"Capture before reservation","traceId":"abc",
            "extraDetails":[{"name":"ErrorCode","reason":"6080"}]}"#;
        let p = ApiProblem::parse(epayment).unwrap();
        assert_eq!(p.error_code, Some(6080));
        assert_eq!(p.trace_id.as_deref(), Some("abc"));

        let checkin = br#"{"title":"One or more validation errors occurred.","detail":"BadRequest",
            "instance":"x","invalidParams":[{"name":"phoneNumber","reason":"bad"}]}"#;
        let p = ApiProblem::parse(checkin).unwrap();
        assert_eq!(p.extra_details[0].name, "phoneNumber");
        assert_eq!(p.error_code, None);

        let oauth =
            br#"{"error":"invalid_request","error_code":"old_app","error_description":"x"}"#;
        let p = ApiProblem::parse(oauth).unwrap();
        assert_eq!(p.oauth_error.as_deref(), Some("invalid_request"));
        assert_eq!(p.oauth_error_code.as_deref(), Some("old_app"));

        let gateway = br#"{"statusCode":401,"message":"Access denied due to invalid token."}"#;
        let p = ApiProblem::parse(gateway).unwrap();
        assert_eq!(
            p.detail.as_deref(),
            Some("Access denied due to invalid token.")
        );

        assert_eq!(ApiProblem::parse(b"<html>Bad gateway</html>"), None);
        assert_eq!(ApiProblem::parse(b"\"text\""), None);
    }

    #[test]
    fn display_masks_phone_numbers() {
        let p = ApiProblem {
            detail: Some("customer 4791234567 not found".into()),
            error_code: Some(7010),
            ..ApiProblem::default()
        };
        let e = VippsError::Status {
            operation: Operation::PaymentCreate,
            status: 400,
            problem: Some(Box::new(p)),
            retry_after: None,
        };
        let shown = e.to_string();
        assert!(shown.contains("47******67"), "{shown}");
        assert!(!shown.contains("4791234567"), "{shown}");
        assert!(shown.contains("ErrorCode 7010"), "{shown}");
    }
}
