//! [`VippsClient`]: one method per Vipps call lanehub makes, over a pooled reqwest client with
//! rustls and the connect and request timeouts from `[vipps]`.
//!
//! The client is plain and stateless: no token cache, no retries, no rate limits (the actor in
//! `vipps::actor` adds those). Merchant calls take the [`AccessToken`] explicitly. Every HTTP
//! exchange is measured: `VIPPS_REQUESTS{operation, outcome}` and `VIPPS_REQUEST_DURATION`.
//! What must stay true: every call carries the headers VIPPS.md lists (subscription key,
//! merchant serial number, `Vipps-System-*`), except the Login calls, which carry only what the
//! Login spec names (client credentials, merchant serial number, `Vipps-System-*`; no
//! subscription key), and userinfo, which carries the Login token; secrets are sensitive header
//! values and never appear in errors or logs.

use std::sync::Arc;
use std::time::SystemTime;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::Operation;
use super::error::{ApiProblem, VippsError, parse_retry_after};
use super::models::*;
use crate::config::{LoginClientAuth, VippsSettings};
use crate::domain::{Amount, IdempotencyKey, Msisdn, PaymentReference};
use crate::metrics::RequestOutcome;

/// `Vipps-System-Name`, `-Version`, `-Plugin-Name`, `-Plugin-Version` are at most this long.
pub const MAX_SYSTEM_HEADER_LEN: usize = 30;

/// A cheap-to-clone Vipps API client. Connections are pooled and shared between clones.
#[derive(Clone)]
pub struct VippsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    client_id: HeaderValue,
    client_secret: SecretString,
    subscription_key: HeaderValue,
    msn: HeaderValue,
    login_client_auth: LoginClientAuth,
    /// `Vipps-System-*`, sent on every call.
    system: HeaderMap,
}

impl std::fmt::Debug for VippsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VippsClient")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

/// How a request authenticates.
enum Auth<'a> {
    /// `Authorization: Bearer` with a merchant access token, plus subscription key and MSN.
    Merchant(&'a AccessToken),
    /// The access-token call: `client_id`/`client_secret` headers, subscription key and MSN.
    TokenRequest,
    /// Login (CIBA) endpoints: client credentials as `vipps.login_client_auth` says, and MSN.
    Login,
    /// Userinfo: only the Login access token; no subscription key.
    LoginBearer(&'a LoginToken),
    /// Discovery: public.
    Public,
}

enum Body<'a> {
    Empty,
    /// The encoded JSON, or why it could not be encoded (reported when the request is sent).
    Json(Result<Vec<u8>, String>),
    Form(&'a [(&'static str, String)]),
}

/// One call as it will be sent: built with [`Request::get`] / [`Request::post`] and the setters.
struct Request<'a> {
    op: Operation,
    method: Method,
    path: String,
    auth: Auth<'a>,
    idempotency_key: Option<&'a IdempotencyKey>,
    body: Body<'a>,
}

impl<'a> Request<'a> {
    fn new(op: Operation, method: Method, path: impl Into<String>, auth: Auth<'a>) -> Self {
        Request {
            op,
            method,
            path: path.into(),
            auth,
            idempotency_key: None,
            body: Body::Empty,
        }
    }

    fn get(op: Operation, path: impl Into<String>, auth: Auth<'a>) -> Self {
        Request::new(op, Method::GET, path, auth)
    }

    fn post(op: Operation, path: impl Into<String>, auth: Auth<'a>) -> Self {
        Request::new(op, Method::POST, path, auth)
    }

    /// A merchant call on one ePayment payment: `/epayment/v1/payments/{reference}{suffix}`.
    fn payment(
        op: Operation,
        method: Method,
        token: &'a AccessToken,
        reference: &PaymentReference,
        suffix: &str,
    ) -> Self {
        let path = format!("/epayment/v1/payments/{reference}{suffix}");
        Request::new(op, method, path, Auth::Merchant(token))
    }

    fn idempotency_key(mut self, key: &'a IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.body = Body::Json(serde_json::to_vec(value).map_err(|e| e.to_string()));
        self
    }

    /// A Login (CIBA) call: `form` posted with the client's credentials.
    fn login(op: Operation, path: &str, form: &'a [(&'static str, String)]) -> Self {
        Request {
            body: Body::Form(form),
            ..Request::post(op, path, Auth::Login)
        }
    }
}

/// An answer before interpretation.
struct Raw {
    operation: Operation,
    status: u16,
    body: Vec<u8>,
    retry_after: Option<std::time::Duration>,
}

impl Raw {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn into_error(self) -> VippsError {
        VippsError::Status {
            operation: self.operation,
            status: self.status,
            problem: ApiProblem::parse(&self.body).map(Box::new),
            retry_after: self.retry_after,
        }
    }

    /// A success body as `T`; a non-success status as [`VippsError::Status`]. The content type is
    /// ignored: ePayment declares its modification answers as problem+json.
    fn json<T: DeserializeOwned>(self) -> Result<T, VippsError> {
        if !self.is_success() {
            return Err(self.into_error());
        }
        serde_json::from_slice(&self.body).map_err(|e| VippsError::Decode {
            operation: self.operation,
            message: e.to_string(),
        })
    }

    fn empty(self) -> Result<(), VippsError> {
        if self.is_success() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}

fn header_value(name: &str, value: &str, sensitive: bool) -> Result<HeaderValue, VippsError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        VippsError::InvalidRequest(format!(
            "the value for {name} contains characters not allowed in an HTTP header"
        ))
    })?;
    v.set_sensitive(sensitive);
    Ok(v)
}

fn system_value(name: &str, value: &str) -> Result<HeaderValue, VippsError> {
    if value.chars().count() > MAX_SYSTEM_HEADER_LEN {
        return Err(VippsError::InvalidRequest(format!(
            "{name} `{value}` is longer than {MAX_SYSTEM_HEADER_LEN} characters"
        )));
    }
    header_value(name, value, false)
}

impl VippsClient {
    /// Builds a client for `settings.base_url`. Fails on a bad base URL or header value.
    pub fn new(settings: &VippsSettings) -> Result<Self, VippsError> {
        crate::install_crypto_provider();
        let base_url = settings.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(VippsError::InvalidRequest(format!(
                "vipps.base_url `{base_url}` is not an http(s) URL"
            )));
        }
        let version = env!("CARGO_PKG_VERSION");
        let mut system = HeaderMap::new();
        for (name, value) in [
            ("vipps-system-name", settings.system_name.as_str()),
            ("vipps-system-version", version),
            ("vipps-system-plugin-name", settings.plugin_name.as_str()),
            ("vipps-system-plugin-version", version),
        ] {
            system.insert(HeaderName::from_static(name), system_value(name, value)?);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("lanehub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                VippsError::InvalidRequest(format!("cannot build the HTTP client: {e}"))
            })?;
        Ok(VippsClient {
            inner: Arc::new(Inner {
                http,
                base_url,
                client_id: header_value("client_id", &settings.client_id, true)?,
                client_secret: settings.client_secret.clone(),
                subscription_key: header_value(
                    "Ocp-Apim-Subscription-Key",
                    settings.subscription_key.expose_secret(),
                    true,
                )?,
                msn: header_value(
                    "Merchant-Serial-Number",
                    &settings.merchant_serial_number,
                    false,
                )?,
                system,
                login_client_auth: settings.login_client_auth,
            }),
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    // -----------------------------------------------------------------------------------------
    // Access token

    /// `POST /accesstoken/get`: a new merchant access token. Cache it (the actor does).
    pub async fn fetch_token(&self) -> Result<AccessToken, VippsError> {
        let op = Operation::AccessToken;
        let request = Request::post(op, "/accesstoken/get", Auth::TokenRequest);
        self.exchange(request, |raw| {
            let r: AccessTokenResponse = raw.json()?;
            let expires_in = parse_secs(&r.expires_in).map_err(|message| VippsError::Decode {
                operation: op,
                message: format!("expires_in: {message}"),
            })?;
            Ok(AccessToken::new(r.access_token, expires_in))
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // QR exchange and check-in

    /// `POST /qr/v1/exchange`: the phone number behind a scanned personal QR. Send the complete
    /// scanned text.
    pub async fn exchange_qr(
        &self,
        token: &AccessToken,
        qr_code: &str,
    ) -> Result<QrExchange, VippsError> {
        if qr_code.trim().is_empty() {
            return Err(VippsError::InvalidRequest("the QR code is empty".into()));
        }
        let request = Request::post(
            Operation::QrExchange,
            "/qr/v1/exchange",
            Auth::Merchant(token),
        )
        .json(&QrExchangeRequest { qr_code });
        self.call(request).await
    }

    /// `POST /point-of-sale/v1/loyalty-check-in`: shows the check-in (member) or waiting
    /// (non-member) screen. Norwegian numbers only. Best effort: callers must not block on it.
    pub async fn check_in(
        &self,
        token: &AccessToken,
        phone_number: &Msisdn,
        is_member: bool,
    ) -> Result<CheckIn, VippsError> {
        let op = Operation::CheckIn;
        if !phone_number.is_norwegian() {
            return Err(VippsError::InvalidRequest(format!(
                "check-in accepts Norwegian numbers (47 and 8 digits) only, not {phone_number}"
            )));
        }
        let request = Request::post(
            op,
            "/point-of-sale/v1/loyalty-check-in",
            Auth::Merchant(token),
        )
        .json(&CheckInRequest {
            phone_number: phone_number.as_str(),
            is_member,
        });
        self.exchange(request, |raw| {
            if !raw.is_success() {
                return Err(raw.into_error());
            }
            CheckIn::from_body(&raw.body).map_err(|message| VippsError::Decode {
                operation: op,
                message,
            })
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Login from phone number

    /// `POST /vipps-login-ciba/api/backchannel/authentication`: asks the customer to log in.
    pub async fn login_authenticate(
        &self,
        request: &LoginRequest,
    ) -> Result<LoginAuthentication, VippsError> {
        let form = request.form().map_err(VippsError::InvalidRequest)?;
        let path = "/vipps-login-ciba/api/backchannel/authentication";
        let request = Request::login(Operation::LoginAuthenticate, path, &form);
        self.exchange(request, |raw| {
            raw.json::<LoginAuthenticationResponse>().map(Into::into)
        })
        .await
    }

    /// One poll of `POST /access-management-1.0/access/oauth2/token` for a Login request. Pending,
    /// slow-down, denial and expiry are outcomes, not errors (and are measured as `ok`: Vipps
    /// answering as it should). Succeeds at most once per request.
    pub async fn login_token(&self, auth_req_id: &AuthReqId) -> Result<LoginPoll, VippsError> {
        let form = [
            ("grant_type", "urn:openid:params:grant-type:ciba".to_owned()),
            ("auth_req_id", auth_req_id.as_str().to_owned()),
        ];
        let path = "/access-management-1.0/access/oauth2/token";
        let request = Request::login(Operation::LoginToken, path, &form);
        self.exchange(request, |raw| {
            if raw.is_success() {
                return raw
                    .json::<LoginTokenResponse>()
                    .map(|t| LoginPoll::Success(t.into()));
            }
            // OAuth answers pending/slow_down/denied/expired as 400 (some servers 401/403).
            if (400..500).contains(&raw.status) && raw.status != 429 {
                let outcome = ApiProblem::parse(&raw.body)
                    .and_then(|p| p.oauth_error)
                    .and_then(|e| LoginPoll::from_oauth_error(&e));
                if let Some(outcome) = outcome {
                    return Ok(outcome);
                }
            }
            Err(raw.into_error())
        })
        .await
    }

    /// `GET /vipps-userinfo-api/userinfo` with the Login access token (no subscription key).
    pub async fn userinfo(&self, login_token: &LoginToken) -> Result<Userinfo, VippsError> {
        self.call(Request::get(
            Operation::Userinfo,
            "/vipps-userinfo-api/userinfo",
            Auth::LoginBearer(login_token),
        ))
        .await
    }

    /// `GET /access-management-1.0/access/.well-known/openid-configuration`.
    pub async fn discovery(&self) -> Result<OpenIdConfiguration, VippsError> {
        self.call(Request::get(
            Operation::Discovery,
            "/access-management-1.0/access/.well-known/openid-configuration",
            Auth::Public,
        ))
        .await
    }

    // -----------------------------------------------------------------------------------------
    // ePayment

    /// `POST /epayment/v1/payments` with `Idempotency-Key`: sends the payment request.
    pub async fn create_payment(
        &self,
        token: &AccessToken,
        key: &IdempotencyKey,
        request: &CreatePaymentRequest,
    ) -> Result<CreatePaymentResponse, VippsError> {
        request.validate().map_err(VippsError::InvalidRequest)?;
        let request = Request::post(
            Operation::PaymentCreate,
            "/epayment/v1/payments",
            Auth::Merchant(token),
        )
        .idempotency_key(key)
        .json(request);
        self.call(request).await
    }

    /// `GET /epayment/v1/payments/{reference}`.
    pub async fn get_payment(
        &self,
        token: &AccessToken,
        reference: &PaymentReference,
    ) -> Result<Payment, VippsError> {
        self.call(Request::payment(
            Operation::PaymentGet,
            Method::GET,
            token,
            reference,
            "",
        ))
        .await
    }

    /// `GET /epayment/v1/payments/{reference}/events`: the payment's event log.
    pub async fn payment_events(
        &self,
        token: &AccessToken,
        reference: &PaymentReference,
    ) -> Result<Vec<PaymentEvent>, VippsError> {
        self.call(Request::payment(
            Operation::PaymentEvents,
            Method::GET,
            token,
            reference,
            "/events",
        ))
        .await
    }

    /// `POST …/cancel`. With `cancel_transaction_only` it cancels only a payment not yet
    /// authorised (an authorised one is left for capture or refund).
    pub async fn cancel_payment(
        &self,
        token: &AccessToken,
        reference: &PaymentReference,
        key: &IdempotencyKey,
        cancel_transaction_only: bool,
    ) -> Result<ModificationResponse, VippsError> {
        let request = Request::payment(
            Operation::PaymentCancel,
            Method::POST,
            token,
            reference,
            "/cancel",
        )
        .idempotency_key(key)
        .json(&CancelRequest {
            cancel_transaction_only,
        });
        self.call(request).await
    }

    /// `POST …/capture`. Check `aggregate.captured_amount` in the answer.
    pub async fn capture_payment(
        &self,
        token: &AccessToken,
        reference: &PaymentReference,
        key: &IdempotencyKey,
        amount: Amount,
    ) -> Result<ModificationResponse, VippsError> {
        let request = Request::payment(
            Operation::PaymentCapture,
            Method::POST,
            token,
            reference,
            "/capture",
        );
        self.modify(request.idempotency_key(key), amount).await
    }

    /// `POST …/refund`.
    pub async fn refund_payment(
        &self,
        token: &AccessToken,
        reference: &PaymentReference,
        key: &IdempotencyKey,
        amount: Amount,
    ) -> Result<ModificationResponse, VippsError> {
        let request = Request::payment(
            Operation::PaymentRefund,
            Method::POST,
            token,
            reference,
            "/refund",
        );
        self.modify(request.idempotency_key(key), amount).await
    }

    /// Capture and refund: `request` with the amount as its body, which Vipps caps.
    async fn modify(
        &self,
        request: Request<'_>,
        amount: Amount,
    ) -> Result<ModificationResponse, VippsError> {
        if amount.value > MAX_AMOUNT_MINOR_UNITS {
            return Err(VippsError::InvalidRequest(format!(
                "modificationAmount {} is above the maximum of {MAX_AMOUNT_MINOR_UNITS} minor units",
                amount.value
            )));
        }
        self.call(request.json(&ModificationRequest {
            modification_amount: amount,
        }))
        .await
    }

    /// Test environment only: `POST /epayment/v1/test/payments/{reference}/approve`.
    pub async fn approve_payment(
        &self,
        token: &AccessToken,
        reference: &PaymentReference,
        phone_number: &Msisdn,
    ) -> Result<(), VippsError> {
        let path = format!("/epayment/v1/test/payments/{reference}/approve");
        let request = Request::post(Operation::PaymentApprove, path, Auth::Merchant(token)).json(
            &serde_json::json!({
                "customer": {"phoneNumber": phone_number.as_str()}
            }),
        );
        self.exchange(request, Raw::empty).await
    }

    // -----------------------------------------------------------------------------------------
    // Webhooks

    /// `POST /webhooks/v1/webhooks`. The answer's secret is shown only once.
    pub async fn register_webhook(
        &self,
        token: &AccessToken,
        request: &RegisterWebhookRequest,
    ) -> Result<RegisteredWebhook, VippsError> {
        if request.events.is_empty() {
            return Err(VippsError::InvalidRequest(
                "a webhook needs at least one event".into(),
            ));
        }
        let request = Request::post(
            Operation::WebhookRegister,
            "/webhooks/v1/webhooks",
            Auth::Merchant(token),
        )
        .json(request);
        self.call(request).await
    }

    /// `GET /webhooks/v1/webhooks`.
    pub async fn list_webhooks(&self, token: &AccessToken) -> Result<Vec<Webhook>, VippsError> {
        let request = Request::get(
            Operation::WebhookList,
            "/webhooks/v1/webhooks",
            Auth::Merchant(token),
        );
        let list: WebhookList = self.call(request).await?;
        Ok(list.webhooks)
    }

    /// `DELETE /webhooks/v1/webhooks/{id}`.
    pub async fn delete_webhook(&self, token: &AccessToken, id: &str) -> Result<(), VippsError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(VippsError::InvalidRequest(format!(
                "webhook id `{id}` is not a UUID"
            )));
        }
        let path = format!("/webhooks/v1/webhooks/{id}");
        let request = Request::new(
            Operation::WebhookDelete,
            Method::DELETE,
            path,
            Auth::Merchant(token),
        );
        self.exchange(request, Raw::empty).await
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing

    /// Sends `request` and decodes a success body as `T`.
    async fn call<T: DeserializeOwned>(&self, request: Request<'_>) -> Result<T, VippsError> {
        self.exchange(request, Raw::json).await
    }

    /// Sends `request`, reads the answer with `read`, and records the call's duration and
    /// outcome (a request that cannot be encoded or sent counts too).
    async fn exchange<T>(
        &self,
        request: Request<'_>,
        read: impl FnOnce(Raw) -> Result<T, VippsError>,
    ) -> Result<T, VippsError> {
        let op = request.op;
        let started = Instant::now();
        let result = self.send(request).await.and_then(read);
        let outcome = match &result {
            Ok(_) => RequestOutcome::Ok,
            Err(e) => e.request_outcome(),
        };
        crate::metrics::vipps_request(op, outcome, started.elapsed());
        result
    }

    async fn send(&self, request: Request<'_>) -> Result<Raw, VippsError> {
        let Request {
            op,
            method,
            path,
            auth,
            idempotency_key,
            body,
        } = request;
        let inner = &self.inner;
        let mut req = inner
            .http
            .request(method.clone(), format!("{}{path}", inner.base_url))
            .headers(inner.system.clone());
        let form_credentials = matches!(auth, Auth::Login)
            && inner.login_client_auth == LoginClientAuth::ClientSecretPost;
        req = match auth {
            Auth::Merchant(token) => req
                .bearer_auth(token.bearer())
                .header("ocp-apim-subscription-key", inner.subscription_key.clone())
                .header("merchant-serial-number", inner.msn.clone()),
            Auth::TokenRequest => {
                let secret =
                    header_value("client_secret", inner.client_secret.expose_secret(), true)?;
                req.header("client_id", inner.client_id.clone())
                    .header("client_secret", secret)
                    .header("ocp-apim-subscription-key", inner.subscription_key.clone())
                    .header("merchant-serial-number", inner.msn.clone())
            }
            // The Login spec names no subscription key: it is not sent there.
            Auth::Login => {
                let req = req.header("merchant-serial-number", inner.msn.clone());
                match inner.login_client_auth {
                    LoginClientAuth::ClientSecretBasic => {
                        let id = inner.client_id.to_str().unwrap_or_default();
                        req.basic_auth(id, Some(inner.client_secret.expose_secret()))
                    }
                    // The credentials go into the form body below.
                    LoginClientAuth::ClientSecretPost => req,
                }
            }
            Auth::LoginBearer(token) => req.bearer_auth(token.bearer()),
            Auth::Public => req,
        };
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key.as_str());
        }
        let post = method == Method::POST;
        req = match body {
            // An empty POST still states its length, as Vipps' samples do: gateways in front of
            // its APIs answer 411 without one (the access-token call has no body).
            Body::Empty if post => req
                .header(reqwest::header::CONTENT_LENGTH, "0")
                .body(Vec::new()),
            Body::Empty => req,
            Body::Json(bytes) => {
                let bytes = bytes.map_err(|e| {
                    VippsError::InvalidRequest(format!("cannot encode the request: {e}"))
                })?;
                req.header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes)
            }
            Body::Form(form) if form_credentials => {
                let id = inner.client_id.to_str().unwrap_or_default().to_owned();
                let secret = inner.client_secret.expose_secret().to_owned();
                let mut all = form.to_vec();
                all.extend([("client_id", id), ("client_secret", secret)]);
                req.form(&all)
            }
            Body::Form(form) => req.form(form),
        };
        let res = req
            .send()
            .await
            .map_err(|e| VippsError::from_reqwest(op, &e))?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = res
            .bytes()
            .await
            .map_err(|e| VippsError::from_reqwest(op, &e))?
            .to_vec();
        Ok(Raw {
            operation: op,
            status,
            body,
            retry_after,
        })
    }
}
