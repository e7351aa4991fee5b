//! `GET /vipps-userinfo-api/userinfo` with a Login access token, and the claims it answers.
//!
//! Only the Login access token is checked (no subscription key, as VIPPS.md says). The claims
//! follow `userinfo-api.yaml` and are fixed when the token is issued: `sub` always, then per
//! scope `name` (name, given_name, family_name), `email` (email, email_verified), `phoneNumber`
//! (phone_number, phone_number_verified), `address` (address, other_addresses), `birthDate`
//! (birthdate) and `delegatedConsents` (the live API's `delegatedConsents` object with its
//! `consents[{id, accepted, required, textDisplayedToUser}]`). Address and birth date of virtual
//! customers are synthetic but stable per phone number. Errors use the spec's `UserinfoError`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{ConsentChoices, Login};
use crate::domain::Msisdn;
use crate::sim::SimState;
use crate::sim::customers::Customer;
use crate::sim::problem::Problem;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    // The spec writes the path with a trailing slash, VIPPS.md without; both are served.
    for path in [
        "/vipps-userinfo-api/userinfo",
        "/vipps-userinfo-api/userinfo/",
    ] {
        cfg.service(
            web::resource(path)
                .route(web::get().to(userinfo))
                .default_service(web::to(method_not_allowed)),
        );
    }
}

/// An error in the spec's `UserinfoError` shape.
fn error(status: StatusCode, detail: &str) -> Problem {
    Problem {
        status,
        body: json!({
            "type": "https://developer.vippsmobilepay.com/docs/knowledge-base/errors",
            "title": status.canonical_reason().unwrap_or("Error"),
            // The spec types `status` as a string.
            "status": status.as_u16().to_string(),
            "detail": detail,
            "instance": uuid::Uuid::new_v4().to_string(),
        }),
        content_type: "application/json;charset=UTF-8",
        headers: vec![],
    }
}

/// A 401 with the bearer challenge of RFC 6750.
fn unauthorized(detail: &str) -> Problem {
    error(StatusCode::UNAUTHORIZED, detail)
        .with_header("www-authenticate", "Bearer error=\"invalid_token\"")
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let detail = format!("{} is not allowed on {}; use GET", req.method(), req.path());
    error(StatusCode::METHOD_NOT_ALLOWED, &detail)
        .with_header("allow", "GET")
        .error_response()
}

async fn userinfo(state: web::Data<SimState>, req: HttpRequest) -> Result<HttpResponse, Problem> {
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, t)| t.trim())
        .ok_or_else(|| unauthorized("a Login access token is required: Authorization: Bearer …"))?;
    if let Some(name) = crate::sim::auth::long_system_header(&req) {
        let detail = format!("header {name} is longer than 30 characters");
        return Err(error(StatusCode::BAD_REQUEST, &detail));
    }
    let now = state.clock.now();
    let logins = super::lock(&state);
    let grant = logins
        .grant(token, now)
        .ok_or_else(|| unauthorized("the access token is unknown or has expired"))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json;charset=UTF-8")
        .body(grant.claims.to_string()))
}

/// The customer's `sub`: a UUID that stays the same for a phone number, as the live `sub` does
/// for a person.
pub fn sub_for(phone: &Msisdn) -> String {
    let digest = Sha256::digest(format!("lanehub-sim-sub:{}", phone.as_str()).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A stable number in `0..modulus` derived from the phone number, for synthetic profile data.
fn stable(phone: &Msisdn, salt: &str, modulus: u32) -> u32 {
    let digest = Sha256::digest(format!("{salt}:{}", phone.as_str()).as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % modulus.max(1)
}

fn address(phone: &Msisdn) -> Value {
    let number = stable(phone, "street", 120) + 1;
    let (street, postal_code, region, country) = match phone.as_str() {
        p if p.starts_with("45") => (format!("Testvej {number}"), "1050", "København", "DK"),
        p if p.starts_with("358") => (format!("Testitie {number}"), "00100", "Helsinki", "FI"),
        _ => (format!("Testveien {number}"), "0150", "Oslo", "NO"),
    };
    json!({
        "address_type": "home",
        "country": country,
        "default": true,
        "formatted": format!("{street}\n{postal_code} {region}"),
        "postal_code": postal_code,
        "region": region,
        "street_address": street,
    })
}

fn birthdate(phone: &Msisdn) -> String {
    // Adults only: born 1950 to 1999.
    let year = 1950 + stable(phone, "year", 50);
    let month = 1 + stable(phone, "month", 12);
    let day = 1 + stable(phone, "day", 28);
    format!("{year:04}-{month:02}-{day:02}")
}

fn delegated_consents(choices: ConsentChoices, merchant: &str, at: &str) -> Value {
    json!({
        "language": "en",
        "heading": format!("Join the {merchant} customer club"),
        "termsDescription": "Membership is free. You can leave the club at any time.",
        "confirmConsentButtonText": "Join",
        "links": {
            "termsLinkText": "Membership terms",
            "termsLinkUrl": "https://example.com/membership-terms",
            "privacyStatementLinkText": "Privacy statement",
            "privacyStatementLinkUrl": "https://example.com/privacy",
        },
        "timeOfConsent": at,
        "consents": [
            {
                "id": "membership_terms",
                "accepted": true,
                "required": true,
                "textDisplayedToUser": "I accept the membership terms",
            },
            {
                "id": "email_marketing",
                "accepted": choices.email_marketing,
                "required": false,
                "textDisplayedToUser": format!("Yes, I want offers and news from {merchant} by email"),
            },
            {
                "id": "sms_marketing",
                "accepted": choices.sms_marketing,
                "required": false,
                "textDisplayedToUser": format!("Yes, I want offers and news from {merchant} by SMS"),
            },
        ],
    })
}

/// The userinfo answer for a completed `login` of `customer` (`None` if the customer was
/// replaced meanwhile: then only `sub` and the phone number are known).
pub(super) fn claims(
    login: &Login,
    customer: Option<&Customer>,
    choices: ConsentChoices,
    merchant: &str,
) -> Value {
    let has = |scope: &str| login.asked.scopes.iter().any(|s| s == scope);
    let mut c = Map::new();
    c.insert("sub".into(), sub_for(&login.asked.phone).into());
    if let Some(customer) = customer {
        if has("name") {
            let name = customer.name.trim();
            let (given, family) = name.rsplit_once(' ').unwrap_or((name, ""));
            c.insert("name".into(), name.into());
            c.insert("given_name".into(), given.into());
            c.insert("family_name".into(), family.into());
        }
        if has("email") {
            c.insert("email".into(), customer.email.clone().into());
            c.insert("email_verified".into(), true.into());
        }
    }
    if has("phoneNumber") {
        c.insert("phone_number".into(), login.asked.phone.as_str().into());
        c.insert("phone_number_verified".into(), true.into());
    }
    if has("address") {
        c.insert("address".into(), address(&login.asked.phone));
        c.insert("other_addresses".into(), json!([]));
    }
    if has("birthDate") {
        c.insert("birthdate".into(), birthdate(&login.asked.phone).into());
    }
    if has("delegatedConsents") {
        let at = login
            .changed_at
            .map(|t| login.wall(t))
            .unwrap_or(login.created.wall)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        c.insert(
            "delegatedConsents".into(),
            delegated_consents(choices, merchant, &at),
        );
    }
    Value::Object(c)
}

/// An unsigned (`alg: none`) JWT carrying the OpenID Connect ID token claims. Good enough to be
/// read; the simulator has no keys to sign with, and its discovery document says so.
pub(super) fn id_token(
    issuer: &str,
    client_id: &str,
    login: &Login,
    now: chrono::DateTime<chrono::Utc>,
    lifetime_secs: u64,
) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let iat = now.timestamp();
    let auth_time = login
        .changed_at
        .map_or(login.created.wall, |t| login.wall(t))
        .timestamp();
    let header = json!({"alg": "none", "typ": "JWT"});
    let payload = json!({
        "iss": issuer,
        "sub": sub_for(&login.asked.phone),
        "aud": [client_id],
        "iat": iat,
        "exp": iat + i64::try_from(lifetime_secs).unwrap_or(i64::MAX / 2),
        "auth_time": auth_time,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    format!("{}.{}.", b64(header), b64(payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::login::LoginState;
    use tokio::time::Instant;

    fn login(scopes: &[&str]) -> Login {
        Login {
            state: LoginState::Completed,
            polls: 1,
            ..Login::example(Instant::now(), scopes)
        }
    }

    fn kari() -> Customer {
        let settings = crate::config::Settings::load(None, Vec::new()).unwrap();
        let customers = crate::sim::customers::Customers::from_config(&settings.sim.customers);
        customers
            .get(&"4791234567".parse().unwrap())
            .unwrap()
            .clone()
    }

    #[test]
    fn claims_follow_the_scopes() {
        let only_openid = claims(
            &login(&["openid"]),
            Some(&kari()),
            ConsentChoices::default(),
            "M",
        );
        let keys: Vec<&String> = only_openid.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["sub"]);

        let all = [
            "openid",
            "name",
            "email",
            "phoneNumber",
            "address",
            "birthDate",
            "delegatedConsents",
        ];
        let choices = ConsentChoices {
            email_marketing: false,
            sms_marketing: true,
        };
        let c = claims(&login(&all), Some(&kari()), choices, "Demo Store");
        assert_eq!(c["name"], "Kari Nordmann");
        assert_eq!(c["given_name"], "Kari");
        assert_eq!(c["family_name"], "Nordmann");
        assert_eq!(c["email"], "kari.nordmann@example.com");
        assert_eq!(c["phone_number"], "4791234567");
        assert_eq!(c["address"]["country"], "NO");
        assert_eq!(c["birthdate"].as_str().unwrap().len(), 10);
        let consents = c["delegatedConsents"]["consents"].as_array().unwrap();
        let accepted: Vec<(&str, bool)> = consents
            .iter()
            .map(|x| (x["id"].as_str().unwrap(), x["accepted"].as_bool().unwrap()))
            .collect();
        assert_eq!(
            accepted,
            [
                ("membership_terms", true),
                ("email_marketing", false),
                ("sms_marketing", true)
            ]
        );
        assert_eq!(c["sub"], sub_for(&"4791234567".parse().unwrap()));
    }

    #[test]
    fn sub_is_stable_and_distinct() {
        let a: Msisdn = "4791234567".parse().unwrap();
        let b: Msisdn = "4798765432".parse().unwrap();
        assert_eq!(sub_for(&a), sub_for(&a));
        assert_ne!(sub_for(&a), sub_for(&b));
        assert!(uuid::Uuid::parse_str(&sub_for(&a)).is_ok());
    }

    #[test]
    fn id_token_is_an_unsigned_jwt() {
        let t = id_token(
            "http://x/",
            "client",
            &login(&["openid"]),
            chrono::Utc::now(),
            300,
        );
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[2].is_empty());
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap();
        let payload: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(payload["iss"], "http://x/");
        assert_eq!(payload["aud"][0], "client");
        assert_eq!(
            payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
            300
        );
    }
}
