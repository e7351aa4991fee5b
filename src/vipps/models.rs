//! Request and response bodies of the Vipps APIs lanehub calls, as the OpenAPI files and
//! `VIPPS.md` describe them: camelCase for ePayment, QR, check-in and webhooks; snake_case for the
//! OAuth-style Login and userinfo APIs.
//!
//! Money is always [`Amount`] in integer minor units. Readers tolerate the documented spec defects
//! (see each type); writers send exactly what the specs ask. Secrets (tokens, webhook secrets)
//! are `SecretString` so their `Debug` never shows them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::{Amount, Currency, InvalidValue, Msisdn, PaymentReference};

// ---------------------------------------------------------------------------------------------
// Access token

/// `POST /accesstoken/get` as Vipps sends it: every field is a string, `expires_in` included.
#[derive(Deserialize)]
pub(crate) struct AccessTokenResponse {
    pub access_token: SecretString,
    #[serde(deserialize_with = "string_or_number")]
    pub expires_in: String,
}

/// A merchant access token and how long it lives from when it was requested.
#[derive(Clone)]
pub struct AccessToken {
    token: SecretString,
    expires_in: Duration,
}

impl AccessToken {
    pub fn new(token: SecretString, expires_in: Duration) -> Self {
        Self { token, expires_in }
    }

    /// Lifetime as Vipps stated it (`expires_in`).
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    pub(crate) fn bearer(&self) -> &str {
        self.token.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// QR exchange and check-in

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QrExchangeRequest<'a> {
    pub qr_code: &'a str,
}

/// The phone number behind a scanned personal QR code.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QrExchange {
    pub msisdn: Msisdn,
    /// QR format version, `"1.0"` or `"2.0"`.
    pub version: String,
    /// When a version 2.0 code was generated (epoch seconds).
    #[serde(default)]
    pub timestamp: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CheckInRequest<'a> {
    pub phone_number: &'a str,
    pub is_member: bool,
}

/// Check-in's 200 answer: a GUID for debugging. The spec declares both a bare string and
/// `{"id": …}`; either (or an empty body) is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckIn {
    pub id: Option<String>,
}

impl CheckIn {
    pub(crate) fn from_body(body: &[u8]) -> Result<CheckIn, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(CheckIn::default());
        }
        match serde_json::from_slice::<serde_json::Value>(body).map_err(|e| e.to_string())? {
            serde_json::Value::String(id) => Ok(CheckIn { id: Some(id) }),
            serde_json::Value::Object(o) => Ok(CheckIn {
                id: o.get("id").and_then(|v| v.as_str()).map(str::to_owned),
            }),
            serde_json::Value::Null => Ok(CheckIn::default()),
            other => Err(format!("expected a string or {{\"id\"}}, got {other}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Login from phone number (CIBA)

/// The text shown in the app during a Login request: `^[A-Z0-9\-]{5,8}$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingMessage(String);

impl BindingMessage {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BindingMessage {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(5..=8).contains(&s.len())
            || !s
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(InvalidValue {
                what: "binding message",
                reason: "expected 5 to 8 characters of A-Z, 0-9 and -".into(),
            });
        }
        Ok(Self(s.to_owned()))
    }
}

/// A Login from phone number request.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    pub phone_number: Msisdn,
    /// OIDC scopes such as `name`, `phoneNumber`, `email`, `delegatedConsents`; `openid` is added.
    pub scopes: Vec<String>,
    pub binding_message: Option<BindingMessage>,
    /// How long the customer has to answer: 60 s to 900 s.
    pub requested_expiry: Option<Duration>,
}

impl LoginRequest {
    /// The form body of the backchannel authentication call, after checking the expiry range.
    pub(crate) fn form(&self) -> Result<Vec<(&'static str, String)>, String> {
        let mut scopes: Vec<&str> = vec!["openid"];
        for s in &self.scopes {
            if s.is_empty() || s.contains(char::is_whitespace) {
                return Err(format!("scope `{s}` is empty or contains spaces"));
            }
            if !scopes.contains(&s.as_str()) {
                scopes.push(s);
            }
        }
        let mut form = vec![
            (
                "login_hint",
                format!("urn:msisdn:{}", self.phone_number.as_str()),
            ),
            ("scope", scopes.join(" ")),
        ];
        if let Some(m) = &self.binding_message {
            form.push(("binding_message", m.as_str().to_owned()));
        }
        if let Some(e) = self.requested_expiry {
            let secs = e.as_secs();
            if !(60..=900).contains(&secs) {
                return Err(format!(
                    "requested_expiry must be 60 to 900 seconds, not {secs}"
                ));
            }
            form.push(("requested_expiry", secs.to_string()));
        }
        Ok(form)
    }
}

/// Identifies one Login request while it is being polled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthReqId(pub String);

impl AuthReqId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginAuthenticationResponse {
    pub auth_req_id: AuthReqId,
    #[serde(deserialize_with = "secs_lenient")]
    pub expires_in: Duration,
    #[serde(default, deserialize_with = "opt_secs_lenient")]
    pub interval: Option<Duration>,
}

/// A started Login request: poll the token endpoint no faster than `interval`, until `expires_in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAuthentication {
    pub auth_req_id: AuthReqId,
    pub expires_in: Duration,
    pub interval: Duration,
}

/// The CIBA default when Vipps leaves `interval` out.
pub const DEFAULT_LOGIN_INTERVAL: Duration = Duration::from_secs(5);

impl From<LoginAuthenticationResponse> for LoginAuthentication {
    fn from(r: LoginAuthenticationResponse) -> Self {
        LoginAuthentication {
            auth_req_id: r.auth_req_id,
            expires_in: r.expires_in,
            interval: r.interval.unwrap_or(DEFAULT_LOGIN_INTERVAL),
        }
    }
}

/// The Login token endpoint's answer. The spec types `id_token` as an integer; it is a JWT
/// string, and either is accepted.
#[derive(Deserialize)]
pub(crate) struct LoginTokenResponse {
    pub access_token: SecretString,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default, deserialize_with = "opt_secs_lenient")]
    pub expires_in: Option<Duration>,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub id_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// A Login access token: only good for userinfo, for about ten minutes.
#[derive(Clone)]
pub struct LoginToken {
    access_token: SecretString,
    pub token_type: String,
    pub expires_in: Option<Duration>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
}

impl LoginToken {
    pub fn new(access_token: SecretString) -> Self {
        Self {
            access_token,
            token_type: "Bearer".into(),
            expires_in: None,
            id_token: None,
            scope: None,
        }
    }

    pub(crate) fn bearer(&self) -> &str {
        self.access_token.expose_secret()
    }
}

impl From<LoginTokenResponse> for LoginToken {
    fn from(r: LoginTokenResponse) -> Self {
        LoginToken {
            access_token: r.access_token,
            token_type: r.token_type.unwrap_or_else(|| "Bearer".into()),
            expires_in: r.expires_in,
            id_token: r.id_token,
            scope: r.scope,
        }
    }
}

impl fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginToken")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// One poll of the Login token endpoint.
#[derive(Debug, Clone)]
pub enum LoginPoll {
    /// `authorization_pending`: the customer has not answered yet.
    Pending,
    /// `slow_down`: polled too fast; add 5 seconds to the interval.
    SlowDown,
    /// `access_denied`: the customer declined.
    Denied,
    /// `expired_token`: the customer did not answer in time.
    Expired,
    /// The customer consented.
    Success(LoginToken),
}

impl LoginPoll {
    /// The OAuth error codes that are outcomes of a poll rather than failures.
    pub(crate) fn from_oauth_error(error: &str) -> Option<LoginPoll> {
        match error {
            "authorization_pending" => Some(LoginPoll::Pending),
            "slow_down" => Some(LoginPoll::SlowDown),
            "access_denied" => Some(LoginPoll::Denied),
            "expired_token" => Some(LoginPoll::Expired),
            _ => None,
        }
    }

    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            LoginPoll::Pending => "pending",
            LoginPoll::SlowDown => "slow_down",
            LoginPoll::Denied => "denied",
            LoginPoll::Expired => "expired",
            LoginPoll::Success(_) => "success",
        }
    }
}

/// What the customer shared. Userinfo's spec gives `phone_number` the pattern `^\d{15}$`; real
/// numbers are 10 to 15 digits and are read as such.
#[derive(Debug, Clone, Deserialize)]
pub struct Userinfo {
    pub sub: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub phone_number: Option<Msisdn>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub birthdate: Option<String>,
    #[serde(default)]
    pub address: Option<UserinfoAddress>,
    /// Marketing consents, present with the `delegatedConsents` scope.
    #[serde(default)]
    pub consents: Vec<Consent>,
    /// The `delegatedConsents` scope's answer, where Vipps puts the `consents` list.
    #[serde(default, rename = "delegatedConsents")]
    pub delegated_consents: Option<DelegatedConsents>,
}

/// The consent screen the customer answered (`delegatedConsents`).
#[derive(Debug, Clone, Deserialize)]
pub struct DelegatedConsents {
    #[serde(default)]
    pub consents: Vec<Consent>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserinfoAddress {
    #[serde(default)]
    pub address_type: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub formatted: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub street_address: Option<String>,
}

/// One delegated consent the customer was shown.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    pub id: String,
    pub accepted: bool,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub text_displayed_to_user: Option<String>,
}

/// The Login provider's OpenID configuration (cache it for an hour).
#[derive(Debug, Clone, Deserialize)]
pub struct OpenIdConfiguration {
    pub issuer: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub backchannel_authentication_endpoint: Option<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// ePayment

/// Who pays: exactly one of phone number, personal QR or customer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PaymentCustomer {
    #[serde(rename = "phoneNumber")]
    PhoneNumber(Msisdn),
    /// The complete scanned text of the customer's personal QR.
    #[serde(rename = "personalQr")]
    PersonalQr(String),
    #[serde(rename = "customerToken")]
    CustomerToken(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentMethodType {
    Wallet,
    Card,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    #[serde(rename = "type")]
    pub kind: PaymentMethodType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserFlow {
    PushMessage,
    NativeRedirect,
    WebRedirect,
    Qr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CustomerInteraction {
    CustomerPresent,
    /// The spec's default when a request leaves it out.
    #[default]
    CustomerNotPresent,
}

/// `POST /epayment/v1/payments`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePaymentRequest {
    pub amount: Amount,
    pub payment_method: PaymentMethod,
    pub customer: PaymentCustomer,
    pub reference: PaymentReference,
    pub user_flow: UserFlow,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_interaction: Option<CustomerInteraction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_description: Option<String>,
    /// Attach at creation: a receipt can be sent only once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl CreatePaymentRequest {
    /// An in-store push payment: WALLET, PUSH_MESSAGE, CUSTOMER_PRESENT.
    pub fn in_store(
        reference: PaymentReference,
        amount: Amount,
        phone_number: Msisdn,
        description: impl Into<String>,
    ) -> Self {
        CreatePaymentRequest {
            amount,
            payment_method: PaymentMethod {
                kind: PaymentMethodType::Wallet,
            },
            customer: PaymentCustomer::PhoneNumber(phone_number),
            reference,
            user_flow: UserFlow::PushMessage,
            customer_interaction: Some(CustomerInteraction::CustomerPresent),
            payment_description: Some(description.into()),
            receipt: None,
            metadata: None,
        }
    }

    /// Checks what the spec constrains and Vipps would refuse with a 400.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(d) = &self.payment_description {
            let n = d.chars().count();
            if !(3..=100).contains(&n) {
                return Err(format!(
                    "paymentDescription must be 3 to 100 characters, not {n}"
                ));
            }
        }
        if self.amount.value > MAX_AMOUNT_MINOR_UNITS {
            return Err(format!(
                "amount {} is above the maximum of {MAX_AMOUNT_MINOR_UNITS} minor units",
                self.amount.value
            ));
        }
        if let PaymentCustomer::PersonalQr(qr) = &self.customer {
            let n = qr.chars().count();
            if !(5..=255).contains(&n) {
                return Err(format!("personalQr must be 5 to 255 characters, not {n}"));
            }
        }
        if let Some(r) = &self.receipt {
            if r.order_lines.is_empty() {
                return Err("a receipt needs at least one order line".into());
            }
            if r.order_lines.iter().any(|l| l.tax_rate > 10_000) {
                return Err("an order line's taxRate must be 0 to 10000 (percent × 100)".into());
            }
        }
        Ok(())
    }
}

/// The largest amount ePayment accepts, in minor units.
pub const MAX_AMOUNT_MINOR_UNITS: u64 = 65_000_000;

/// A receipt shown in the app (Order Management's `Receipt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub order_lines: Vec<OrderLine>,
    pub bottom_line: BottomLine,
}

/// One receipt line; every amount in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub name: String,
    pub id: String,
    pub total_amount: u64,
    pub total_amount_excluding_tax: u64,
    pub total_tax_amount: u64,
    /// Percent × 100 (2500 is 25 %): Order Management's `taxRate`, which replaced the deprecated
    /// `taxPercentage`.
    pub tax_rate: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_info: Option<UnitInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_return: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitInfo {
    pub unit_price: u64,
    /// Integer or decimal quantity as text (`"2"`, `"0.822"`), only for display.
    pub quantity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_unit: Option<QuantityUnit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QuantityUnit {
    Pcs,
    Kg,
    Km,
    Minute,
    Litre,
    Kwh,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BottomLine {
    pub currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tip_amount: Option<u64>,
}

/// `201` to a create.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePaymentResponse {
    pub reference: PaymentReference,
    #[serde(default)]
    pub redirect_url: Option<String>,
}

pub use crate::session::PaymentState;

/// What happened to a payment's money so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Aggregate {
    pub authorized_amount: Amount,
    pub cancelled_amount: Amount,
    pub captured_amount: Amount,
    pub refunded_amount: Amount,
}

/// `GET /epayment/v1/payments/{reference}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub reference: PaymentReference,
    pub state: PaymentState,
    pub amount: Amount,
    pub aggregate: Aggregate,
    #[serde(default)]
    pub psp_reference: Option<String>,
    #[serde(default)]
    pub payment_method: Option<PaymentMethod>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// The answer to cancel, capture and refund (declared as problem+json in the spec; it is not).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModificationResponse {
    pub reference: PaymentReference,
    pub state: PaymentState,
    pub amount: Amount,
    pub aggregate: Aggregate,
    #[serde(default)]
    pub psp_reference: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentEventName {
    Created,
    Aborted,
    Expired,
    Cancelled,
    Captured,
    Refunded,
    Authorized,
    Terminated,
}

impl PaymentEventName {
    /// The Webhooks API event this is delivered as.
    pub fn webhook_event(self) -> &'static str {
        match self {
            PaymentEventName::Created => "epayments.payment.created.v1",
            PaymentEventName::Aborted => "epayments.payment.aborted.v1",
            PaymentEventName::Expired => "epayments.payment.expired.v1",
            PaymentEventName::Cancelled => "epayments.payment.cancelled.v1",
            PaymentEventName::Captured => "epayments.payment.captured.v1",
            PaymentEventName::Refunded => "epayments.payment.refunded.v1",
            PaymentEventName::Authorized => "epayments.payment.authorized.v1",
            PaymentEventName::Terminated => "epayments.payment.terminated.v1",
        }
    }
}

/// One entry of a payment's event log. The spec requires `paymentAction` but names the field
/// `name`; either spelling is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentEvent {
    pub reference: PaymentReference,
    #[serde(default)]
    pub psp_reference: Option<String>,
    #[serde(alias = "paymentAction")]
    pub name: PaymentEventName,
    pub amount: Amount,
    pub timestamp: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    pub success: bool,
}

/// An ePayment webhook delivery's payload: a signal to read the payment back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentWebhookEvent {
    pub msn: String,
    pub reference: PaymentReference,
    #[serde(default)]
    pub psp_reference: Option<String>,
    pub name: PaymentEventName,
    pub amount: Amount,
    pub timestamp: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    pub success: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CancelRequest {
    pub cancel_transaction_only: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModificationRequest {
    pub modification_amount: Amount,
}

// ---------------------------------------------------------------------------------------------
// Webhooks

#[derive(Debug, Clone, Serialize)]
pub struct RegisterWebhookRequest {
    pub url: String,
    pub events: Vec<String>,
}

/// A new registration. The secret is shown only once: store it durably.
#[derive(Clone, Deserialize)]
pub struct RegisteredWebhook {
    pub id: String,
    pub secret: SecretString,
}

impl fmt::Debug for RegisteredWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredWebhook")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

// ---------------------------------------------------------------------------------------------
// Lenient readers for the spec defects

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Sn {
        S(String),
        N(serde_json::Number),
    }
    Ok(match Sn::deserialize(d)? {
        Sn::S(s) => s,
        Sn::N(n) => n.to_string(),
    })
}

fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "string_or_number")] String);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// Seconds as a number or a numeric string.
pub(crate) fn parse_secs(raw: &str) -> Result<Duration, String> {
    raw.trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{raw}` is not a whole number of seconds"))
}

fn secs_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = string_or_number(d)?;
    parse_secs(&raw).map_err(serde::de::Error::custom)
}

fn opt_secs_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "secs_lenient")] Duration);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn access_token_fields_are_strings() {
        let body = json!({"token_type":"Bearer","expires_in":"3600","ext_expires_in":"0",
            "expires_on":"1547823408","not_before":"1547819508",
            "resource":"00000002-0000-0000-c000-000000000000","access_token":"eyJ0eXAi"});
        let r: AccessTokenResponse = serde_json::from_value(body).unwrap();
        assert_eq!(
            parse_secs(&r.expires_in).unwrap(),
            Duration::from_secs(3600)
        );
        let t = AccessToken::new(r.access_token, Duration::from_secs(3600));
        assert!(!format!("{t:?}").contains("eyJ0eXAi"));
    }

    #[test]
    fn create_request_matches_the_spec() {
        let mut req = CreatePaymentRequest::in_store(
            "lane1-000042".parse().unwrap(),
            Amount::nok(23990),
            "4791234567".parse().unwrap(),
            "Purchase at Demo Store",
        );
        req.receipt = Some(Receipt {
            order_lines: vec![OrderLine {
                name: "socks".into(),
                id: "1234567890".into(),
                total_amount: 1000,
                total_amount_excluding_tax: 800,
                total_tax_amount: 200,
                tax_rate: 2500,
                unit_info: Some(UnitInfo {
                    unit_price: 500,
                    quantity: "2".into(),
                    quantity_unit: Some(QuantityUnit::Pcs),
                }),
                discount: None,
                is_return: None,
            }],
            bottom_line: BottomLine {
                currency: Currency::Nok,
                pos_id: Some("lane-1".into()),
                receipt_number: Some("42".into()),
                tip_amount: None,
            },
        });
        assert_eq!(req.validate(), Ok(()));
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({
                "amount": {"currency": "NOK", "value": 23990},
                "paymentMethod": {"type": "WALLET"},
                "customer": {"phoneNumber": "4791234567"},
                "reference": "lane1-000042",
                "userFlow": "PUSH_MESSAGE",
                "customerInteraction": "CUSTOMER_PRESENT",
                "paymentDescription": "Purchase at Demo Store",
                "receipt": {
                    "orderLines": [{"name": "socks", "id": "1234567890", "totalAmount": 1000,
                        "totalAmountExcludingTax": 800, "totalTaxAmount": 200, "taxRate": 2500,
                        "unitInfo": {"unitPrice": 500, "quantity": "2", "quantityUnit": "PCS"}}],
                    "bottomLine": {"currency": "NOK", "posId": "lane-1", "receiptNumber": "42"}
                }
            })
        );
    }

    #[test]
    fn create_request_validation_names_the_field() {
        let mut req = CreatePaymentRequest::in_store(
            "lane1-000042".parse().unwrap(),
            Amount::nok(100),
            "4791234567".parse().unwrap(),
            "ok",
        );
        assert!(req.validate().unwrap_err().contains("paymentDescription"));
        req.payment_description = None;
        req.amount = Amount::nok(MAX_AMOUNT_MINOR_UNITS + 1);
        assert!(req.validate().unwrap_err().contains("maximum"));
    }

    #[test]
    fn payment_and_modification_answers() {
        let amount = json!({"currency": "NOK", "value": 1000});
        let zero = json!({"currency": "NOK", "value": 0});
        let body = json!({
            "aggregate": {"authorizedAmount": amount, "cancelledAmount": zero,
                "capturedAmount": amount, "refundedAmount": zero},
            "amount": amount, "state": "AUTHORIZED",
            "paymentMethod": {"type": "WALLET", "cardBin": "540185"},
            "profile": {"sub": "c06c4afe"}, "pspReference": "psp-1",
            "reference": "acme-shop-123-order123abc"
        });
        let p: Payment = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(p.state, PaymentState::Authorized);
        assert_eq!(p.aggregate.captured_amount.value, 1000);
        let m: ModificationResponse = serde_json::from_value(body).unwrap();
        assert!(m.state.is_final());
        let bad = json!({"aggregate": {}, "amount": amount, "state": "AUTHORIZED",
            "reference": "acme-shop-123"});
        assert!(serde_json::from_value::<Payment>(bad).is_err());
        let float = json!({"currency": "NOK", "value": 10.5});
        assert!(serde_json::from_value::<Amount>(float).is_err());
    }

    #[test]
    fn payment_events_accept_name_or_payment_action() {
        let events = json!([
            {"reference": "acme-shop-123", "pspReference": "1", "name": "CREATED",
             "amount": {"currency": "NOK", "value": 1000}, "timestamp": "2022-12-31T00:00:00Z",
             "idempotencyKey": "k1", "success": true},
            {"reference": "acme-shop-123", "pspReference": "2", "paymentAction": "AUTHORIZED",
             "amount": {"currency": "NOK", "value": 1000}, "timestamp": "2022-12-31T00:00:05Z",
             "idempotencyKey": null, "success": true}
        ]);
        let e: Vec<PaymentEvent> = serde_json::from_value(events).unwrap();
        assert_eq!(e[0].name, PaymentEventName::Created);
        assert_eq!(e[1].name, PaymentEventName::Authorized);
        assert_eq!(e[1].idempotency_key, None);
    }

    #[test]
    fn check_in_answer_in_either_shape() {
        assert_eq!(
            CheckIn::from_body(b"\"6f1c\"").unwrap().id.as_deref(),
            Some("6f1c")
        );
        assert_eq!(
            CheckIn::from_body(br#"{"id":"6f1c"}"#)
                .unwrap()
                .id
                .as_deref(),
            Some("6f1c")
        );
        assert_eq!(CheckIn::from_body(b"").unwrap(), CheckIn::default());
        assert!(CheckIn::from_body(b"[1]").is_err());
    }

    #[test]
    fn login_bodies() {
        let req = LoginRequest {
            phone_number: "4791234567".parse().unwrap(),
            scopes: vec!["name".into(), "phoneNumber".into(), "openid".into()],
            binding_message: Some("AB-12".parse().unwrap()),
            requested_expiry: Some(Duration::from_secs(120)),
        };
        let form = req.form().unwrap();
        assert_eq!(form[0], ("login_hint", "urn:msisdn:4791234567".to_owned()));
        assert_eq!(form[1], ("scope", "openid name phoneNumber".to_owned()));
        assert_eq!(form[2], ("binding_message", "AB-12".to_owned()));
        assert_eq!(form[3], ("requested_expiry", "120".to_owned()));
        let too_long = LoginRequest {
            requested_expiry: Some(Duration::from_secs(901)),
            ..req
        };
        assert!(too_long.form().unwrap_err().contains("requested_expiry"));
        assert!("ab-12".parse::<BindingMessage>().is_err());
        assert!("ABCDEFGHI".parse::<BindingMessage>().is_err());

        let auth: LoginAuthentication = serde_json::from_value::<LoginAuthenticationResponse>(
            json!({"auth_req_id": "abc", "expires_in": 600, "interval": 5}),
        )
        .unwrap()
        .into();
        assert_eq!(auth.interval, Duration::from_secs(5));
        assert_eq!(auth.expires_in, Duration::from_secs(600));

        // The spec types id_token as an integer; the example is a JWT string.
        for id_token in [json!("eyJhbGciOi.x.y"), json!(12345)] {
            let t: LoginToken = serde_json::from_value::<LoginTokenResponse>(json!({
                "access_token": "secret-token", "token_type": "Bearer", "expires_in": 300,
                "id_token": id_token, "scope": "openid name"
            }))
            .unwrap()
            .into();
            assert!(t.id_token.is_some());
            assert!(!format!("{t:?}").contains("secret-token"));
        }
    }

    #[test]
    fn userinfo_reads_ten_digit_numbers_and_consents() {
        let u: Userinfo = serde_json::from_value(json!({
            "sub": "c06c4afe", "name": "Ada Lovelace", "phone_number": "4791234567",
            "email": "ada@example.com",
            "consents": [{"id": "email", "accepted": true, "required": false,
                "textDisplayedToUser": "Email"}]
        }))
        .unwrap();
        assert_eq!(u.phone_number.unwrap().as_str(), "4791234567");
        assert!(u.consents[0].accepted);
        assert!(
            serde_json::from_value::<Userinfo>(json!({"sub": "x", "phone_number": "12"})).is_err()
        );
    }

    #[test]
    fn webhooks() {
        let r: RegisteredWebhook = serde_json::from_value(
            json!({"id": "497f6eca-6276-4993-bfeb-53cbbbba6f08", "secret": "s3cr3t"}),
        )
        .unwrap();
        assert!(!format!("{r:?}").contains("s3cr3t"));
        let list: WebhookList = serde_json::from_value(json!({"webhooks": [
            {"id": "a", "url": "https://example.com/cb", "events": ["epayments.payment.captured.v1"]}
        ]}))
        .unwrap();
        assert_eq!(list.webhooks.len(), 1);
    }
}
