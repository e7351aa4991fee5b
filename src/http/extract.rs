//! Request extractors for the terminal API: who is calling (bearer tokens) and JSON bodies whose
//! errors name the offending field.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::problem::ApiError;
use crate::config::Settings;
use crate::domain::LaneId;

/// Largest JSON body the terminal API accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The configured bearer tokens.
#[derive(Debug, Clone)]
pub struct ApiTokens {
    admin: SecretString,
    lanes: Vec<(LaneId, SecretString)>,
}

impl ApiTokens {
    pub fn from_settings(settings: &Settings) -> Self {
        ApiTokens {
            admin: settings.api.admin_token.clone(),
            lanes: settings
                .lanes
                .iter()
                .map(|l| (l.id.clone(), l.token.clone()))
                .collect(),
        }
    }

    /// Who `token` belongs to. Every candidate is compared in constant time.
    pub fn identify(&self, token: &str) -> Option<Caller> {
        let eq =
            |s: &SecretString| bool::from(s.expose_secret().as_bytes().ct_eq(token.as_bytes()));
        let mut found = None;
        if eq(&self.admin) {
            found = Some(Caller::Admin);
        }
        for (lane, secret) in &self.lanes {
            if eq(secret) && found.is_none() {
                found = Some(Caller::Lane(lane.clone()));
            }
        }
        found
    }
}

/// The authenticated caller of a terminal API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Lane(LaneId),
}

impl Caller {
    /// Whether this caller may act on `lane`.
    pub fn may_act_on(&self, lane: &LaneId) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Lane(own) => own == lane,
        }
    }

    pub fn require_lane(&self, lane: &LaneId) -> Result<(), ApiError> {
        if self.may_act_on(lane) {
            Ok(())
        } else {
            Err(ApiError::OtherLane)
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Lane(_) => Err(ApiError::AdminOnly),
        }
    }
}

/// The bearer token of `Authorization: Bearer …`.
fn bearer(req: &HttpRequest) -> Option<String> {
    let h = req.headers().get("authorization")?.to_str().ok()?;
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let (scheme, token) = h.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The `access_token` query parameter. Only the lane WebSocket takes it (browsers cannot set
/// headers on a WebSocket); anywhere else a token in a URL would end up in logs and histories.
fn query_token(req: &HttpRequest) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("access_token").cloned())
}

fn identify(req: &HttpRequest, token: Option<String>) -> Result<Caller, ApiError> {
    let tokens = req.app_data::<web::Data<ApiTokens>>();
    match (tokens, token) {
        (Some(tokens), Some(token)) => tokens.identify(&token).ok_or(ApiError::Unauthorized),
        _ => Err(ApiError::Unauthorized),
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(identify(req, bearer(req)))
    }
}

/// The caller of the lane WebSocket: the `Authorization` header, or `?access_token=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketCaller(pub Caller);

impl FromRequest for SocketCaller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req).or_else(|| query_token(req));
        std::future::ready(identify(req, token).map(SocketCaller))
    }
}

/// A JSON object body; errors name the field (`amount.value`) and what is wrong with it.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let mut payload = payload.take();
        Box::pin(async move {
            if json != Some(true) {
                return Err(ApiError::InvalidBody {
                    field: None,
                    detail: "expected a JSON body with Content-Type: application/json".into(),
                });
            }
            let mut bytes = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::InvalidBody {
                    field: None,
                    detail: format!("could not read the body: {e}"),
                })?;
                if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(ApiError::InvalidBody {
                        field: None,
                        detail: format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            parse_object(&bytes, "the body").map(Body)
        })
    }
}

/// Parses a JSON object (`what` names it in the error otherwise), naming the path of the
/// first offending field.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    // serde would take an array for a struct, field by position; nothing taken here is one.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        return Err(ApiError::InvalidBody {
            field: None,
            detail: format!("{what} must be a JSON object"),
        });
    }
    parse_json(bytes)
}

/// Parses JSON, naming the path of the first offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(named)
}

/// Reads `T` from JSON already parsed, naming the path of the first offending field as
/// [`parse_json`] does.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(named)
}

/// A deserialisation error as the API answers it: the offending field's dotted path, and what
/// is wrong with it.
fn named(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::InvalidBody {
            field: None,
            detail: format!("malformed JSON: {inner}"),
        };
    }
    let path = e.path().to_string();
    // A path with an empty key (`{"": 1}`) has no dotted name to report; the detail then
    // still quotes the key.
    let parent =
        (path != "." && path != "?" && !path.split('.').any(str::is_empty)).then_some(path);
    // A missing or unknown field is reported at its parent; name the field itself.
    let message = inner.to_string();
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
        .filter(|n| !n.is_empty());
    let field = match (parent, named) {
        (Some(p), Some(n)) if !p.ends_with(n) => Some(format!("{p}.{n}")),
        (None, Some(n)) => Some(n.to_owned()),
        (parent, _) => parent,
    };
    let detail = match &field {
        Some(f) => format!("field `{f}`: {inner}"),
        None => format!("the body is not of the expected shape: {inner}"),
    };
    ApiError::InvalidBody { field, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Pay {
        amount: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        value: u64,
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = parse_json::<Pay>(br#"{"amount": {"value": 1.5}}"#).unwrap_err();
        match err {
            ApiError::InvalidBody { field, detail } => {
                assert_eq!(field.as_deref(), Some("amount.value"));
                assert!(detail.contains("amount.value"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let err = parse_json::<Pay>(b"{not json").unwrap_err();
        assert!(err.to_string().contains("malformed JSON"), "{err}");
    }

    fn field_of(body: &[u8]) -> Option<String> {
        match parse_json::<Pay>(body).unwrap_err() {
            ApiError::InvalidBody { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_and_unknown_fields_are_named_with_their_path() {
        assert_eq!(field_of(b"{}").as_deref(), Some("amount"));
        assert_eq!(
            field_of(br#"{"amount": {}}"#).as_deref(),
            Some("amount.value")
        );
        assert_eq!(
            field_of(br#"{"amount": {"value": 1}, "tip": 5}"#).as_deref(),
            Some("tip")
        );
        assert_eq!(field_of(b"[]"), None);
    }

    #[test]
    fn tokens_identify_callers() {
        let settings = Settings::load(None, Vec::new()).unwrap();
        let tokens = ApiTokens::from_settings(&settings);
        assert_eq!(tokens.identify("demo-admin-token"), Some(Caller::Admin));
        let lane1: LaneId = "1".parse().unwrap();
        let lane2: LaneId = "2".parse().unwrap();
        assert_eq!(
            tokens.identify("demo-lane-1-token"),
            Some(Caller::Lane(lane1.clone()))
        );
        assert_eq!(tokens.identify("demo-lane-1-tokem"), None);
        let caller = Caller::Lane(lane1.clone());
        assert!(caller.require_lane(&lane1).is_ok());
        assert!(caller.require_lane(&lane2).is_err());
        assert!(caller.require_admin().is_err());
    }
}
