//! Check-in: `POST /point-of-sale/v1/loyalty-check-in`, each call recorded for tests.
//!
//! A valid call answers 200 with a GUID as a bare JSON string. The spec declares the 200 body as
//! `type: string` with an `id` property; only a JSON string validates against that schema (the
//! properties of a string are ignored), so that is what the simulator sends. Clients must accept
//! `{"id": …}` as well (see VIPPS.md). Errors use the spec's `ErrorResponse`
//! (`{type, title, detail, instance, invalidParams[{name, reason}]}`).
//!
//! In the `test-environment` profile a valid call answers 500, as the real test environment does
//! (Vipps: check-in can only be tried in production).
//!
//! Every call that gets past the merchant token check is kept in `SimState::checkins`, including
//! rejected ones, with what the customer's app showed. At most [`MAX_RECORDS`] are kept.

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SimState;
use super::auth::{self, MsnHeader};
use super::problem::{Problem, body_reason};
use crate::config::SimProfile;

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// How many check-ins the simulator remembers; older ones are dropped first.
pub const MAX_RECORDS: usize = 1000;

/// What the customer's app showed for a check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppScreen {
    /// A member: the check-in screen with the merchant's logo.
    MemberCheckIn,
    /// Not a member: a waiting screen.
    WaitingScreen,
}

/// Whether Vipps accepted the check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckInOutcome {
    Accepted,
    Rejected,
    /// Answered 500, as the real test environment answers every valid check-in.
    ServerError,
}

/// One check-in the simulator received: what was sent, the answer, and what the app showed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckInRecord {
    /// The GUID answered; `None` for a rejected call.
    pub id: Option<String>,
    /// `phoneNumber` as sent (JSON text if it was not a string); `None` if absent.
    pub phone_number: Option<String>,
    pub is_member: Option<bool>,
    pub outcome: CheckInOutcome,
    /// Why the call was rejected, one entry per invalid parameter.
    pub errors: Vec<InvalidParam>,
    /// `None` when nothing was shown: the call was rejected, or no virtual customer has the
    /// number (a real customer's app shows the screen only if it is open).
    pub shown: Option<AppScreen>,
    pub merchant_serial_number: String,
    pub timestamp: chrono::DateTime<chrono::Utc>,
}

/// One entry of `invalidParams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidParam {
    pub name: String,
    pub reason: String,
}

impl InvalidParam {
    fn new(name: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

pub(super) fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/point-of-sale/v1/loyalty-check-in")
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_BODY_BYTES)
                    .error_handler(|err, _| validation_problem(&[body_error(&err)]).into()),
            )
            .route(web::post().to(check_in))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut problem = validation_problem(&[InvalidParam::new(
        "method",
        format!("{} is not allowed; use POST", req.method()),
    )]);
    problem.status = StatusCode::METHOD_NOT_ALLOWED;
    problem.body["status"] = StatusCode::METHOD_NOT_ALLOWED.as_u16().into();
    problem.body["title"] = "Method Not Allowed".into();
    problem.with_header("allow", "POST").error_response()
}

pub(super) fn control_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/checkins")
            .app_data(
                web::QueryConfig::default().error_handler(|err, _| query_problem(&err).into()),
            )
            .route(web::get().to(list))
            .route(web::delete().to(clear)),
    );
}

fn body_error(err: &JsonPayloadError) -> InvalidParam {
    InvalidParam::new("body", body_reason(err))
}

/// The spec's validation error: `{type, title, status, detail, instance, invalidParams}`.
fn validation_problem(invalid: &[InvalidParam]) -> Problem {
    let pairs: Vec<(&str, &str)> = invalid
        .iter()
        .map(|p| (p.name.as_str(), p.reason.as_str()))
        .collect();
    let detail = invalid
        .iter()
        .map(|p| format!("{}: {}", p.name, p.reason))
        .collect::<Vec<_>>()
        .join("; ");
    let mut problem = Problem::params(
        StatusCode::BAD_REQUEST,
        "One or more validation errors occurred.",
        &detail,
        &pairs,
    );
    problem.body["type"] = "https://datatracker.ietf.org/doc/html/rfc7231#section-6.5.1".into();
    problem
}

/// The request as far as it could be read, and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    phone_number: Option<String>,
    is_member: Option<bool>,
    errors: Vec<InvalidParam>,
}

impl Parsed {
    /// The phone number and membership flag, if the request is valid.
    fn valid(&self) -> Option<(&str, bool)> {
        if !self.errors.is_empty() {
            return None;
        }
        Some((self.phone_number.as_deref()?, self.is_member?))
    }
}

/// The `invalidParams` of a problem built by [`validation_problem`].
fn invalid_params_of(problem: &Problem) -> Vec<InvalidParam> {
    problem.body["invalidParams"]
        .as_array()
        .map(|params| {
            params
                .iter()
                .map(|p| {
                    InvalidParam::new(
                        p["name"].as_str().unwrap_or("body"),
                        p["reason"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Validates a check-in body: `phoneNumber` must match `^47[0-9]{8}$` and `isMember` must be a
/// boolean; both are required. Every invalid field is reported, not only the first.
fn parse(body: &Value) -> Parsed {
    let Some(obj) = body.as_object() else {
        return Parsed {
            phone_number: None,
            is_member: None,
            errors: vec![InvalidParam::new("body", "the body must be a JSON object")],
        };
    };
    let mut errors = vec![];
    let phone_number = match obj.get("phoneNumber") {
        None | Some(Value::Null) => {
            errors.push(InvalidParam::new("phoneNumber", "phoneNumber is required"));
            None
        }
        Some(Value::String(s)) => {
            let norwegian =
                s.len() == 10 && s.starts_with("47") && s.bytes().all(|b| b.is_ascii_digit());
            if !norwegian {
                errors.push(InvalidParam::new(
                    "phoneNumber",
                    "phoneNumber must be a Norwegian number in MSISDN format, 47 followed by 8 \
                     digits (^47[0-9]{8}$)",
                ));
            }
            Some(s.clone())
        }
        Some(other) => {
            errors.push(InvalidParam::new(
                "phoneNumber",
                "phoneNumber must be a string such as \"4791234567\"",
            ));
            Some(other.to_string())
        }
    };
    let is_member = match obj.get("isMember") {
        None | Some(Value::Null) => {
            errors.push(InvalidParam::new(
                "isMember",
                "isMember is required: true or false",
            ));
            None
        }
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            errors.push(InvalidParam::new(
                "isMember",
                "isMember must be a boolean: true or false",
            ));
            None
        }
    };
    Parsed {
        phone_number,
        is_member,
        errors,
    }
}

fn remember(state: &SimState, record: CheckInRecord) {
    let mut records = state
        .checkins
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if records.len() >= MAX_RECORDS {
        let excess = records.len() + 1 - MAX_RECORDS;
        records.drain(..excess);
    }
    records.push(record);
}

async fn check_in(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: Result<web::Json<Value>, actix_web::Error>,
) -> Result<HttpResponse, actix_web::Error> {
    let merchant = auth::authorize(&state, &req, MsnHeader::Optional)?;
    let mut parsed = match &body {
        Ok(json) => parse(json),
        Err(err) => Parsed {
            phone_number: None,
            is_member: None,
            errors: err
                .as_error::<Problem>()
                .map(invalid_params_of)
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| vec![InvalidParam::new("body", err.to_string())]),
        },
    };
    if let Some(name) = auth::long_system_header(&req) {
        parsed.errors.insert(
            0,
            InvalidParam::new(name, format!("{name} is at most 30 characters")),
        );
    }
    let mut record = CheckInRecord {
        id: None,
        phone_number: parsed.phone_number.clone(),
        is_member: parsed.is_member,
        outcome: CheckInOutcome::Rejected,
        errors: parsed.errors.clone(),
        shown: None,
        merchant_serial_number: merchant.merchant_serial_number,
        timestamp: state.clock.wall(),
    };
    let Some((phone, is_member)) = parsed.valid() else {
        tracing::debug!(errors = parsed.errors.len(), "CheckInRejected");
        remember(&state, record);
        return Err(validation_problem(&parsed.errors).into());
    };
    if state.settings.profile == SimProfile::TestEnvironment {
        // The real test environment cannot show a check-in: Vipps answers every call with 500.
        record.outcome = CheckInOutcome::ServerError;
        remember(&state, record);
        return Err(Problem::params(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "check-in is not available in the test environment",
            &[],
        )
        .into());
    }
    let known = phone
        .parse()
        .ok()
        .is_some_and(|p| state.customers().get(&p).is_some());
    let id = uuid::Uuid::new_v4().to_string();
    record.id = Some(id.clone());
    record.outcome = CheckInOutcome::Accepted;
    record.shown = known.then_some(if is_member {
        AppScreen::MemberCheckIn
    } else {
        AppScreen::WaitingScreen
    });
    tracing::debug!(
        phone = %crate::domain::mask_phone(phone),
        is_member,
        shown = ?record.shown,
        "CheckInAccepted"
    );
    remember(&state, record);
    Ok(HttpResponse::Ok().json(id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Filter {
    phone_number: Option<String>,
}

fn query_problem(err: &QueryPayloadError) -> Problem {
    Problem::params(
        StatusCode::BAD_REQUEST,
        "Bad Request",
        &format!("invalid query: {err}; the only filter is phoneNumber"),
        &[("query", &err.to_string())],
    )
}

/// `GET /sim/v1/checkins[?phoneNumber=…]`: every recorded check-in, oldest first.
async fn list(state: web::Data<SimState>, filter: web::Query<Filter>) -> HttpResponse {
    let records = state
        .checkins
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let matching: Vec<&CheckInRecord> = records
        .iter()
        .filter(|r| {
            filter
                .phone_number
                .as_deref()
                .is_none_or(|p| r.phone_number.as_deref() == Some(p))
        })
        .collect();
    HttpResponse::Ok().json(matching)
}

/// `DELETE /sim/v1/checkins`: forgets every recorded check-in.
async fn clear(state: web::Data<SimState>) -> HttpResponse {
    state
        .checkins
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    HttpResponse::NoContent().finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(p: &Parsed) -> Vec<&str> {
        p.errors.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn valid_bodies_pass() {
        for member in [true, false] {
            let p = parse(&json!({"phoneNumber": "4791234567", "isMember": member}));
            assert!(p.errors.is_empty(), "{:?}", p.errors);
            assert_eq!(p.is_member, Some(member));
            assert_eq!(p.phone_number.as_deref(), Some("4791234567"));
        }
    }

    #[test]
    fn invalid_bodies_name_every_bad_field() {
        let cases = [
            (
                json!({"phoneNumber": "4512345678", "isMember": true}),
                vec!["phoneNumber"],
            ),
            (
                json!({"phoneNumber": "+4791234567", "isMember": true}),
                vec!["phoneNumber"],
            ),
            (
                json!({"phoneNumber": "479123456", "isMember": true}),
                vec!["phoneNumber"],
            ),
            (
                json!({"phoneNumber": 4791234567u64, "isMember": true}),
                vec!["phoneNumber"],
            ),
            (json!({"phoneNumber": "4791234567"}), vec!["isMember"]),
            (
                json!({"phoneNumber": "4791234567", "isMember": null}),
                vec!["isMember"],
            ),
            (
                json!({"phoneNumber": "4791234567", "isMember": "true"}),
                vec!["isMember"],
            ),
            (json!({}), vec!["phoneNumber", "isMember"]),
            (json!("4791234567"), vec!["body"]),
        ];
        for (body, want) in cases {
            assert_eq!(names(&parse(&body)), want, "{body}");
        }
    }

    #[test]
    fn validation_problem_has_the_spec_shape() {
        let p = validation_problem(&[InvalidParam::new("isMember", "required")]);
        assert_eq!(p.status, StatusCode::BAD_REQUEST);
        for field in ["type", "title", "detail", "instance"] {
            assert!(p.body[field].is_string(), "{field}");
        }
        assert_eq!(p.body["invalidParams"][0]["name"], "isMember");
    }
}
