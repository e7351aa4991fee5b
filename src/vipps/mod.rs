//! Everything lanehub says to Vipps: the operations it performs and webhook signatures.
//!
//! The client and its actor live here too; the simulator in `crate::sim` answers the same
//! operations so that code which works against one works against the other.

pub mod actor;
pub mod check;
pub mod circuit;
pub mod client;
pub mod convert;
pub mod error;
pub mod handle;
pub mod models;
pub mod ratelimit;
pub mod registration;
pub mod signature;

/// Every webhook event of Vipps' that lanehub knows, by its name on the wire: the one list the
/// receiver's metric labels and the simulator use. lanehub subscribes to
/// [`SUBSCRIBED_WEBHOOK_EVENTS`] of them.
pub const WEBHOOK_EVENTS: [&str; 9] = [
    "epayments.payment.created.v1",
    "epayments.payment.authorized.v1",
    "epayments.payment.aborted.v1",
    "epayments.payment.expired.v1",
    "epayments.payment.cancelled.v1",
    "epayments.payment.captured.v1",
    "epayments.payment.refunded.v1",
    "epayments.payment.terminated.v1",
    "login.merchant-initiated.ping.v1",
];

/// The events lanehub registers for: those that tell it something it does not already know.
/// The customer approving, declining or letting the request expire happens on the phone, and a
/// Login consent in the Vipps app. Created, captured, cancelled, terminated (cancelled before
/// approval) and refunded follow lanehub's own calls, whose answers already say so; a lane reads
/// a payment back only while it waits for the customer, so those deliveries would cost a request
/// and a read each and change nothing.
pub const SUBSCRIBED_WEBHOOK_EVENTS: [&str; 4] = [
    "epayments.payment.authorized.v1",
    "epayments.payment.aborted.v1",
    "epayments.payment.expired.v1",
    "login.merchant-initiated.ping.v1",
];

pub use actor::{ApiStatus, VippsActorSettings, VippsHandle};
pub use client::VippsClient;
pub use error::VippsError;

/// Every Vipps call lanehub makes; `as_str()` is the `operation` metric label and the simulator's
/// fault-injection key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    AccessToken,
    QrExchange,
    CheckIn,
    LoginAuthenticate,
    LoginToken,
    Userinfo,
    Discovery,
    PaymentCreate,
    PaymentGet,
    PaymentEvents,
    PaymentCancel,
    PaymentCapture,
    PaymentRefund,
    PaymentApprove,
    WebhookRegister,
    WebhookList,
    WebhookDelete,
}

/// The Vipps APIs lanehub calls. Each has its own circuit breaker, so one failing API (the
/// best-effort check-in, which the test environment answers with 500) never stops another
/// (ePayment). `as_str()` is the `api` metric label and the `/readyz` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    AccessToken,
    Qr,
    CheckIn,
    Login,
    Epayment,
    Webhooks,
}

impl Api {
    pub const ALL: [Api; 6] = [
        Api::AccessToken,
        Api::Qr,
        Api::CheckIn,
        Api::Login,
        Api::Epayment,
        Api::Webhooks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::AccessToken => "access_token",
            Api::Qr => "qr",
            Api::CheckIn => "check_in",
            Api::Login => "login",
            Api::Epayment => "epayment",
            Api::Webhooks => "webhooks",
        }
    }

    /// Whether checkouts need this API: its circuit open makes lanehub not ready.
    pub fn needed_for_payments(self) -> bool {
        matches!(self, Api::AccessToken | Api::Epayment)
    }
}

impl Operation {
    pub const ALL: [Operation; 17] = [
        Operation::AccessToken,
        Operation::QrExchange,
        Operation::CheckIn,
        Operation::LoginAuthenticate,
        Operation::LoginToken,
        Operation::Userinfo,
        Operation::Discovery,
        Operation::PaymentCreate,
        Operation::PaymentGet,
        Operation::PaymentEvents,
        Operation::PaymentCancel,
        Operation::PaymentCapture,
        Operation::PaymentRefund,
        Operation::PaymentApprove,
        Operation::WebhookRegister,
        Operation::WebhookList,
        Operation::WebhookDelete,
    ];

    /// Whether sending this request again after a lost answer is harmless: an Idempotency-Key or
    /// no effect at Vipps. A Login start would start a second Login, a token poll asks for a
    /// token handed out once, a webhook registration would register twice: these are sent again
    /// only when Vipps' answer says it did not process them (see
    /// [`VippsError::refused_unprocessed`](crate::vipps::VippsError::refused_unprocessed)).
    pub fn safe_to_repeat(self) -> bool {
        !matches!(
            self,
            Operation::LoginAuthenticate | Operation::LoginToken | Operation::WebhookRegister
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::AccessToken => "access_token",
            Operation::QrExchange => "qr_exchange",
            Operation::CheckIn => "check_in",
            Operation::LoginAuthenticate => "login_authenticate",
            Operation::LoginToken => "login_token",
            Operation::Userinfo => "userinfo",
            Operation::Discovery => "discovery",
            Operation::PaymentCreate => "payment_create",
            Operation::PaymentGet => "payment_get",
            Operation::PaymentEvents => "payment_events",
            Operation::PaymentCancel => "payment_cancel",
            Operation::PaymentCapture => "payment_capture",
            Operation::PaymentRefund => "payment_refund",
            Operation::PaymentApprove => "payment_approve",
            Operation::WebhookRegister => "webhook_register",
            Operation::WebhookList => "webhook_list",
            Operation::WebhookDelete => "webhook_delete",
        }
    }

    /// The API the operation belongs to (and whose circuit it counts toward).
    pub fn api(self) -> Api {
        match self {
            Operation::AccessToken => Api::AccessToken,
            Operation::QrExchange => Api::Qr,
            Operation::CheckIn => Api::CheckIn,
            Operation::LoginAuthenticate
            | Operation::LoginToken
            | Operation::Userinfo
            | Operation::Discovery => Api::Login,
            Operation::PaymentCreate
            | Operation::PaymentGet
            | Operation::PaymentEvents
            | Operation::PaymentCancel
            | Operation::PaymentCapture
            | Operation::PaymentRefund
            | Operation::PaymentApprove => Api::Epayment,
            Operation::WebhookRegister | Operation::WebhookList | Operation::WebhookDelete => {
                Api::Webhooks
            }
        }
    }

    /// Which operation a request to the Vipps API is, from its method and path.
    pub fn from_request(method: &str, path: &str) -> Option<Operation> {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let op = match (method, segs.as_slice()) {
            ("POST", ["accesstoken", "get"]) => Operation::AccessToken,
            ("POST", ["qr", "v1", "exchange"]) => Operation::QrExchange,
            ("POST", ["point-of-sale", "v1", "loyalty-check-in"]) => Operation::CheckIn,
            ("POST", ["vipps-login-ciba", "api", "backchannel", "authentication"]) => {
                Operation::LoginAuthenticate
            }
            ("POST", ["access-management-1.0", "access", "oauth2", "token"]) => {
                Operation::LoginToken
            }
            ("GET", ["vipps-userinfo-api", "userinfo"]) => Operation::Userinfo,
            (
                "GET",
                [
                    "access-management-1.0",
                    "access",
                    ".well-known",
                    "openid-configuration",
                ],
            ) => Operation::Discovery,
            ("POST", ["epayment", "v1", "payments"]) => Operation::PaymentCreate,
            ("GET", ["epayment", "v1", "payments", _]) => Operation::PaymentGet,
            ("GET", ["epayment", "v1", "payments", _, "events"]) => Operation::PaymentEvents,
            ("POST", ["epayment", "v1", "payments", _, "cancel"]) => Operation::PaymentCancel,
            ("POST", ["epayment", "v1", "payments", _, "capture"]) => Operation::PaymentCapture,
            ("POST", ["epayment", "v1", "payments", _, "refund"]) => Operation::PaymentRefund,
            ("POST", ["epayment", "v1", "test", "payments", _, "approve"]) => {
                Operation::PaymentApprove
            }
            ("POST", ["webhooks", "v1", "webhooks"]) => Operation::WebhookRegister,
            ("GET", ["webhooks", "v1", "webhooks"]) => Operation::WebhookList,
            ("DELETE", ["webhooks", "v1", "webhooks", _]) => Operation::WebhookDelete,
            _ => return None,
        };
        Some(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_through_labels_and_paths() {
        for op in Operation::ALL {
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(json, format!("\"{}\"", op.as_str()));
        }
        assert_eq!(
            Operation::from_request("GET", "/epayment/v1/payments/abc-12345/events"),
            Some(Operation::PaymentEvents)
        );
        assert_eq!(
            Operation::from_request("POST", "/epayment/v1/payments"),
            Some(Operation::PaymentCreate)
        );
        assert_eq!(Operation::from_request("GET", "/sim/v1/payments"), None);
    }

    #[test]
    fn lanehub_subscribes_to_known_events_only() {
        for event in SUBSCRIBED_WEBHOOK_EVENTS {
            assert!(WEBHOOK_EVENTS.contains(&event), "{event}");
        }
    }

    #[test]
    fn every_api_has_operations_and_check_in_is_alone_in_its_own() {
        for api in Api::ALL {
            assert!(Operation::ALL.iter().any(|op| op.api() == api), "{api:?}");
            let json = serde_json::to_string(&api).unwrap();
            assert_eq!(json, format!("\"{}\"", api.as_str()));
        }
        let check_in: Vec<Operation> = Operation::ALL
            .into_iter()
            .filter(|op| op.api() == Api::CheckIn)
            .collect();
        assert_eq!(check_in, [Operation::CheckIn]);
        assert!(!Api::CheckIn.needed_for_payments());
        assert!(Api::Epayment.needed_for_payments() && Api::AccessToken.needed_for_payments());
    }
}
