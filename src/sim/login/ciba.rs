//! The CIBA endpoints: start a Login from a phone number, and poll the token endpoint for it.
//!
//! Both take the client credentials of a configured merchant, as Basic auth
//! (`client_secret_basic`) or as `client_id` and `client_secret` in the form body
//! (`client_secret_post`), and answer errors OAuth style (`{error, error_description}`): 401
//! `invalid_client` for bad credentials, 400 for everything the client sent wrong, 429 with
//! `Retry-After` while another request to the same customer is pending. Basic credentials are
//! checked before the rest of the body is read.

use actix_web::error::UrlencodedError;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde_json::json;

use super::{
    ACCESS_TOKEN_LIFETIME, AccessGrant, Asked, Login, PollError, discovery, secs_ceil, userinfo,
};
use crate::config::SimMerchant;
use crate::domain::Msisdn;
use crate::sim::SimState;
use crate::sim::customers::Customer;
use crate::sim::problem::Problem;

const AUTHENTICATION_PATH: &str = "/vipps-login-ciba/api/backchannel/authentication";
const TOKEN_PATH: &str = "/access-management-1.0/access/oauth2/token";
/// The grant type of a CIBA token request.
pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";
/// Largest form body accepted.
const MAX_FORM_BYTES: usize = 8 * 1024;
/// Scopes a Login client may ask for. `nin` exists but needs a special agreement.
pub const SCOPES: [&str; 8] = [
    "openid",
    "name",
    "phoneNumber",
    "email",
    "address",
    "birthDate",
    "delegatedConsents",
    "api_version_2",
];
/// Bounds of `requested_expiry`, in seconds.
const REQUESTED_EXPIRY_SECS: std::ops::RangeInclusive<u64> = 60..=900;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    let form = || {
        web::FormConfig::default()
            .limit(MAX_FORM_BYTES)
            .error_handler(|err, _| form_problem(&err).into())
    };
    let not_allowed = || {
        web::to(|req: HttpRequest| async move {
            Problem::method_not_allowed_oauth(&req, "POST").error_response()
        })
    };
    cfg.service(
        web::resource(AUTHENTICATION_PATH)
            .app_data(form())
            .route(web::post().to(authenticate))
            .default_service(not_allowed()),
    )
    .service(
        web::resource(TOKEN_PATH)
            .app_data(form())
            .route(web::post().to(token))
            .default_service(not_allowed()),
    );
}

/// VIPPS.md: every call's `Vipps-System-*` headers are at most 30 characters.
fn check_system_headers(req: &HttpRequest) -> Result<(), Problem> {
    match crate::sim::auth::long_system_header(req) {
        Some(name) => Err(invalid_request(&format!(
            "header {name} is longer than 30 characters"
        ))),
        None => Ok(()),
    }
}

fn invalid_request(description: &str) -> Problem {
    Problem::oauth(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn form_problem(err: &UrlencodedError) -> Problem {
    let description = match err {
        UrlencodedError::ContentType => {
            "Content-Type must be application/x-www-form-urlencoded".to_owned()
        }
        UrlencodedError::Overflow { limit, .. } => {
            format!("the form body is larger than {limit} bytes")
        }
        other => format!("the form body could not be read: {other}"),
    };
    invalid_request(&description)
}

/// The merchant whose credentials the request carries: Basic (`client_secret_basic`) or, without
/// an Authorization header, `client_id` and `client_secret` in the form (`client_secret_post`).
fn client_from_basic(
    state: &SimState,
    req: &HttpRequest,
    form: Option<&[(String, String)]>,
) -> Result<SimMerchant, Problem> {
    let invalid = |why: &str| {
        Problem::oauth(StatusCode::UNAUTHORIZED, "invalid_client", why)
            .with_header("www-authenticate", "Basic realm=\"vipps-login\"")
    };
    let field = |name: &str| {
        form.and_then(|f| f.iter().find(|(n, _)| n == name))
            .map(|(_, v)| v.as_str())
    };
    let posted = field("client_id").zip(field("client_secret"));
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let value = match (header, posted) {
        (Some(_), Some(_)) => {
            return Err(invalid_request(
                "use one client authentication method: Basic or client_secret_post, not both",
            ));
        }
        (None, Some((id, secret))) => {
            return merchant(state, id, secret)
                .ok_or_else(|| invalid("unknown client_id or wrong client_secret"));
        }
        (Some(value), None) => value,
        (None, None) => {
            return Err(invalid(
                "Basic authentication (or client_id and client_secret in the form) is required",
            ));
        }
    };
    let credentials = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, c)| c.trim())
        .ok_or_else(|| invalid("the Authorization header must use the Basic scheme"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            invalid("the Basic credentials are not base64 of client_id:client_secret")
        })?;
    let (id, secret) = decoded.split_once(':').ok_or_else(|| {
        invalid("the Basic credentials are not base64 of client_id:client_secret")
    })?;
    merchant(state, id, secret).ok_or_else(|| invalid("unknown client_id or wrong client_secret"))
}

fn merchant(state: &SimState, id: &str, secret: &str) -> Option<SimMerchant> {
    state
        .settings
        .merchants
        .iter()
        .find(|m| m.client_id == id && m.client_secret.expose_secret() == secret)
        .cloned()
}

/// What both CIBA endpoints check first: the client's credentials, the `Vipps-System-*`
/// headers, and the form (each parameter once).
fn client_and_params(
    state: &SimState,
    req: &HttpRequest,
    form: Result<web::Form<Vec<(String, String)>>, actix_web::Error>,
) -> Result<(SimMerchant, Params), actix_web::Error> {
    let client = client_from_basic(state, req, form.as_ref().ok().map(|f| f.0.as_slice()))?;
    check_system_headers(req)?;
    let params = Params::new(form?.into_inner())?;
    Ok((client, params))
}

/// The simulated customer with `phone`, if there is one.
fn customer(state: &SimState, phone: &Msisdn) -> Option<Customer> {
    state.customers().get(phone).cloned()
}

/// Form parameters; each may be given once.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(pairs: Vec<(String, String)>) -> Result<Self, Problem> {
        for (i, (name, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(invalid_request(&format!(
                    "parameter {name} is given more than once"
                )));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, Problem> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid_request(&format!("{name} is required")))
    }
}

/// A validated authentication request.
#[derive(Debug, PartialEq, Eq)]
struct AuthenticationRequest {
    phone: Msisdn,
    scopes: Vec<String>,
    binding_message: Option<String>,
    requested_expiry_secs: Option<u64>,
}

/// The scope Vipps enables per Login client on request (marketing consents).
pub const DELEGATED_CONSENTS: &str = "delegatedConsents";

fn parse_authentication(
    params: &Params,
    delegated_consents: bool,
) -> Result<AuthenticationRequest, Problem> {
    if params.get("login_hint_token").is_some() || params.get("id_token_hint").is_some() {
        return Err(invalid_request(
            "only login_hint (urn:msisdn:<phone number>) identifies the user",
        ));
    }
    let scope = params.required("scope")?;
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
    let invalid_scope = |d: &str| Problem::oauth(StatusCode::BAD_REQUEST, "invalid_scope", d);
    if scopes.is_empty() {
        return Err(invalid_request("scope is required"));
    }
    if !scopes.iter().any(|s| s == "openid") {
        return Err(invalid_scope("scope must include openid"));
    }
    if let Some(s) = scopes.iter().find(|s| s.as_str() == "nin") {
        return Err(invalid_scope(&format!(
            "scope {s} needs a special agreement and is not enabled for this client"
        )));
    }
    if let Some(unknown) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(invalid_scope(&format!(
            "unknown scope {unknown}; known scopes: {}",
            SCOPES.join(" ")
        )));
    }
    // As Vipps: the scope works only once Vipps activated it for the client.
    if !delegated_consents && scopes.iter().any(|s| s == DELEGATED_CONSENTS) {
        return Err(invalid_scope(&format!(
            "scope {DELEGATED_CONSENTS} is not activated for this client"
        )));
    }
    let hint = params.required("login_hint")?;
    let number = hint.strip_prefix("urn:msisdn:").ok_or_else(|| {
        invalid_request(
            "login_hint must be urn:msisdn:<phone number>, such as urn:msisdn:4791234567",
        )
    })?;
    let phone: Msisdn = number
        .parse()
        .map_err(|e: crate::domain::InvalidValue| invalid_request(&format!("login_hint: {e}")))?;
    let binding_message = match params.get("binding_message") {
        None => None,
        Some(m) => {
            let valid = (5..=8).contains(&m.len())
                && m.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(Problem::oauth(
                    StatusCode::BAD_REQUEST,
                    "invalid_binding_message",
                    "binding_message must be 5 to 8 characters of A-Z, 0-9 and - (^[A-Z0-9\\-]{5,8}$)",
                ));
            }
            Some(m.to_owned())
        }
    };
    let requested_expiry_secs = match params.get("requested_expiry") {
        None => None,
        Some(raw) => Some(
            raw.parse::<u64>()
                .ok()
                .filter(|s| REQUESTED_EXPIRY_SECS.contains(s))
                .ok_or_else(|| {
                    invalid_request(
                        "requested_expiry must be a whole number of seconds from 60 to 900",
                    )
                })?,
        ),
    };
    Ok(AuthenticationRequest {
        phone,
        scopes,
        binding_message,
        requested_expiry_secs,
    })
}

/// `POST /vipps-login-ciba/api/backchannel/authentication`.
async fn authenticate(
    state: web::Data<SimState>,
    req: HttpRequest,
    form: Result<web::Form<Vec<(String, String)>>, actix_web::Error>,
) -> Result<HttpResponse, actix_web::Error> {
    let (client, params) = client_and_params(&state, &req, form)?;
    let request = parse_authentication(&params, delegated_consents_activated(&state.settings))?;
    if customer(&state, &request.phone).is_none() {
        return Err(Problem::oauth(
            StatusCode::BAD_REQUEST,
            "unknown_user_id",
            "no Vipps MobilePay user has this phone number",
        )
        .into());
    }
    let created = state.clock.moment();
    let now = created.instant;
    let expires_in = request
        .requested_expiry_secs
        .map_or(state.settings.login_expiry, std::time::Duration::from_secs);
    let interval = state.settings.login_interval;
    let mut logins = super::lock(&state);
    if let Some(pending) = logins.pending_for(&request.phone, now) {
        // The earliest moment a new request is sure to be accepted: when this one expires.
        let wait = pending.expires_at().saturating_duration_since(now);
        return Err(Problem::oauth(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "a login to this user is already waiting for an answer",
        )
        .with_header("retry-after", secs_ceil(wait).max(1))
        .into());
    }
    let auth_req_id = uuid::Uuid::new_v4().to_string();
    tracing::debug!(phone = %request.phone, scopes = ?request.scopes, "LoginStarted");
    let asked = Asked {
        phone: request.phone,
        client_id: client.client_id.clone(),
        merchant_serial_number: client.merchant_serial_number.clone(),
        scopes: request.scopes,
        binding_message: request.binding_message,
    };
    let login = Login::new(auth_req_id.clone(), asked, created, expires_in, interval);
    logins.insert(login);
    drop(logins);
    Ok(HttpResponse::Ok().json(json!({
        "auth_req_id": auth_req_id,
        "expires_in": secs_ceil(expires_in),
        "interval": secs_ceil(interval),
    })))
}

fn poll_problem(err: PollError) -> Problem {
    Problem::oauth(StatusCode::BAD_REQUEST, err.kind(), &err.to_string())
}

/// `POST /access-management-1.0/access/oauth2/token` with the CIBA grant.
async fn token(
    state: web::Data<SimState>,
    req: HttpRequest,
    form: Result<web::Form<Vec<(String, String)>>, actix_web::Error>,
) -> Result<HttpResponse, actix_web::Error> {
    let (client, params) = client_and_params(&state, &req, form)?;
    let grant_type = params.required("grant_type")?;
    if grant_type != CIBA_GRANT {
        return Err(Problem::oauth(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("the simulator's token endpoint supports only {CIBA_GRANT}"),
        )
        .into());
    }
    let auth_req_id = params.required("auth_req_id")?;
    let now = state.clock.now();
    let login = {
        let mut logins = super::lock(&state);
        let login = logins
            .get_mut(auth_req_id)
            // Another client's request is as unknown as a made-up one.
            .filter(|l| l.asked.client_id == client.client_id)
            .ok_or_else(|| {
                Problem::oauth(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown auth_req_id",
                )
            })?;
        login.poll(now).map_err(poll_problem)?;
        tracing::debug!(phone = %login.asked.phone, "LoginTokenIssued");
        login.clone()
    };
    let customer = customer(&state, &login.asked.phone);
    let issuer = discovery::issuer(&req);
    let access_token = format!("sim-login.{}", uuid::Uuid::new_v4().simple());
    let wall = state.clock.wall();
    let lifetime_secs = secs_ceil(ACCESS_TOKEN_LIFETIME);
    let id_token = userinfo::id_token(&issuer, &client.client_id, &login, wall, lifetime_secs);
    {
        let mut logins = super::lock(&state);
        let choices = logins.consent_choices(&login.asked.phone);
        let claims = userinfo::claims(&login, customer.as_ref(), choices, &client.name);
        logins.insert_token(
            access_token.clone(),
            AccessGrant {
                auth_req_id: login.auth_req_id.clone(),
                expires_at: now + ACCESS_TOKEN_LIFETIME,
                claims,
            },
        );
    }
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .insert_header(("pragma", "no-cache"))
        .json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime_secs,
            "id_token": id_token,
            "scope": login.asked.scopes.join(" "),
        })))
}

/// Whether the simulated merchants' Login clients may ask for `delegatedConsents`: the test
/// environment, like a client Vipps has not activated it for, may not.
fn delegated_consents_activated(settings: &crate::config::SimSettings) -> bool {
    settings.login_delegated_consents
        && settings.profile != crate::config::SimProfile::TestEnvironment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        )
        .unwrap()
    }

    fn error_of(p: &Params) -> String {
        let err = parse_authentication(p, true).expect_err("should be rejected");
        err.body["error"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_full_request_parses() {
        let p = params(&[
            ("login_hint", "urn:msisdn:4791234567"),
            ("scope", "openid name  phoneNumber delegatedConsents"),
            ("binding_message", "AB-123"),
            ("requested_expiry", "120"),
        ]);
        let r = parse_authentication(&p, true).unwrap();
        assert_eq!(r.phone.as_str(), "4791234567");
        assert_eq!(
            r.scopes,
            ["openid", "name", "phoneNumber", "delegatedConsents"]
        );
        assert_eq!(r.binding_message.as_deref(), Some("AB-123"));
        assert_eq!(r.requested_expiry_secs, Some(120));
    }

    #[test]
    fn bad_requests_get_their_oauth_error() {
        let hint = ("login_hint", "urn:msisdn:4791234567");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![hint], "invalid_request"),
            (vec![hint, ("scope", " ")], "invalid_request"),
            (vec![hint, ("scope", "name email")], "invalid_scope"),
            (vec![hint, ("scope", "openid shoeSize")], "invalid_scope"),
            (vec![hint, ("scope", "openid nin")], "invalid_scope"),
            (vec![("scope", "openid")], "invalid_request"),
            (
                vec![("login_hint", "4791234567"), ("scope", "openid")],
                "invalid_request",
            ),
            (
                vec![("login_hint", "urn:msisdn:47"), ("scope", "openid")],
                "invalid_request",
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(error_of(&params(&pairs)), want, "{pairs:?}");
        }
        // A valid request but for one more parameter.
        let valid = [hint, ("scope", "openid")];
        for (extra, want) in [
            (("binding_message", "ab-123"), "invalid_binding_message"),
            (("binding_message", "ABCD"), "invalid_binding_message"),
            (("binding_message", "ABCDEFGHI"), "invalid_binding_message"),
            (("requested_expiry", "59"), "invalid_request"),
            (("requested_expiry", "901"), "invalid_request"),
            (("requested_expiry", "1e2"), "invalid_request"),
            (("id_token_hint", "x"), "invalid_request"),
        ] {
            let pairs = [valid.as_slice(), &[extra]].concat();
            assert_eq!(error_of(&params(&pairs)), want, "{pairs:?}");
        }
    }

    #[test]
    fn the_test_environment_profile_has_no_delegated_consents() {
        let mut settings = crate::config::Settings::load(None, Vec::new())
            .expect("built-in defaults load")
            .sim;
        assert!(delegated_consents_activated(&settings));
        settings.profile = crate::config::SimProfile::TestEnvironment;
        assert!(!delegated_consents_activated(&settings));
    }

    #[test]
    fn delegated_consents_is_refused_unless_activated() {
        let p = params(&[
            ("login_hint", "urn:msisdn:4791234567"),
            ("scope", "openid name delegatedConsents"),
        ]);
        let err = parse_authentication(&p, false).expect_err("not activated");
        assert_eq!(err.body["error"], "invalid_scope");
        assert!(
            err.body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("delegatedConsents")),
            "{}",
            err.body
        );
        let without = params(&[
            ("login_hint", "urn:msisdn:4791234567"),
            ("scope", "openid name"),
        ]);
        assert!(parse_authentication(&without, false).is_ok());
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let pairs = vec![
            ("scope".to_owned(), "openid".to_owned()),
            ("scope".to_owned(), "openid".to_owned()),
        ];
        let err = Params::new(pairs).err().expect("duplicate");
        assert_eq!(err.body["error"], "invalid_request");
    }
}
