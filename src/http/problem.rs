//! lanehub's own API errors: one enum mapped to `application/problem+json` answers in one place.

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 7807 problem as lanehub's API answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable code, e.g. `unauthorized`, `invalid_body`, `not_allowed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The offending field (dotted path into the body), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Every way a terminal API call can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// A lane token on another lane, or on one that does not exist: the same answer for both.
    #[error("a lane token acts on its own lane only")]
    OtherLane,
    /// A command on a lane WebSocket that names another lane than the socket's.
    #[error("this WebSocket takes commands for lane {0} only")]
    OtherSocketLane(String),
    #[error("only the admin token may do this")]
    AdminOnly,
    #[error("{0}")]
    NotFound(String),
    #[error("this endpoint only answers {0}")]
    MethodNotAllowed(Method),
    #[error("{detail}")]
    InvalidBody {
        field: Option<String>,
        detail: String,
    },
    #[error("{0}")]
    NotAllowed(String),
    /// Too many calls to Vipps now, e.g. refunds of one payment beyond Vipps' limit per minute.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    /// lanehub is draining for shutdown: nothing new starts; cancel, reset and reads still work.
    #[error("lanehub is shutting down")]
    ShuttingDown,
    /// lanehub cannot write its database: nothing new starts until it can.
    #[error("{0}")]
    StoreUnavailable(String),
    #[error("{0}")]
    BadGateway(String),
    /// The request's body did not arrive within `api.body_timeout`.
    #[error("the request body did not arrive within {0}")]
    BodyTimeout(String),
}

impl ApiError {
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::OtherLane | ApiError::OtherSocketLane(_) | ApiError::AdminOnly => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::InvalidBody { .. } => "invalid_body",
            ApiError::NotAllowed(_) => "not_allowed",
            ApiError::TooManyRequests(_) => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::BadGateway(_) => "vipps_error",
            ApiError::BodyTimeout(_) => "body_timeout",
        }
    }

    /// The problem this error is answered with, over HTTP or on the lane WebSocket.
    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let field = match self {
            ApiError::InvalidBody { field, .. } => field.clone(),
            _ => None,
        };
        Problem {
            kind: self.kind().to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            field,
        }
    }

    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::InvalidBody {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::OtherLane | ApiError::OtherSocketLane(_) | ApiError::AdminOnly => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::InvalidBody { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotAllowed(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::ShuttingDown | ApiError::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/problem+json");
        match self {
            ApiError::Unauthorized => {
                res.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::MethodNotAllowed(allow) => {
                res.insert_header(("Allow", allow.as_str()));
            }
            _ => {}
        }
        res.json(self.problem())
    }
}
