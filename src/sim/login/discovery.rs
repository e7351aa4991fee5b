//! OpenID Connect discovery (`login-api.yaml`'s `WellKnown`) and the JWKS it points to.
//!
//! Every URL is built from the address the request came to, so a client that discovers the
//! endpoints keeps talking to this simulator whatever port it listens on. ID tokens are unsigned
//! (`alg: none`), so the key set is empty and the document says so.

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use serde_json::json;

use super::ciba::{CIBA_GRANT, SCOPES};
use crate::sim::problem::Problem;

const CONFIGURATION_PATH: &str = "/access-management-1.0/access/.well-known/openid-configuration";
const JWKS_PATH: &str = "/access-management-1.0/access/.well-known/jwks.json";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    let not_allowed = || {
        web::to(|req: HttpRequest| async move {
            Problem::method_not_allowed_oauth(&req, "GET").error_response()
        })
    };
    cfg.service(
        web::resource(CONFIGURATION_PATH)
            .route(web::get().to(configuration))
            .default_service(not_allowed()),
    )
    .service(
        web::resource(JWKS_PATH)
            .route(web::get().to(jwks))
            .default_service(not_allowed()),
    );
}

/// `scheme://host[:port]` of the request, as the client addressed the simulator.
pub(super) fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// The issuer identifier, also the `iss` of ID tokens.
pub(super) fn issuer(req: &HttpRequest) -> String {
    format!("{}/access-management-1.0/access/", base_url(req))
}

async fn configuration(req: HttpRequest) -> HttpResponse {
    let base = base_url(&req);
    HttpResponse::Ok()
        // VIPPS.md: clients cache the document for an hour.
        .insert_header(("cache-control", "public, max-age=3600"))
        .json(json!({
            "issuer": issuer(&req),
            "authorization_endpoint": format!("{base}/access-management-1.0/access/oauth2/auth"),
            "token_endpoint": format!("{base}/access-management-1.0/access/oauth2/token"),
            "userinfo_endpoint": format!("{base}/vipps-userinfo-api/userinfo/"),
            "jwks_uri": format!("{base}{JWKS_PATH}"),
            "backchannel_authentication_endpoint":
                format!("{base}/vipps-login-ciba/api/backchannel/authentication"),
            "backchannel_token_delivery_modes_supported": ["poll", "ping"],
            "backchannel_user_code_parameter_supported": false,
            "grant_types_supported": ["authorization_code", CIBA_GRANT],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["none"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": SCOPES,
            "claims_supported": [
                "sub", "name", "given_name", "family_name", "email", "email_verified",
                "phone_number", "phone_number_verified", "address", "other_addresses",
                "birthdate", "delegatedConsents",
            ],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "require_request_uri_registration": false,
        }))
}

async fn jwks() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=3600"))
        .json(json!({ "keys": [] }))
}
