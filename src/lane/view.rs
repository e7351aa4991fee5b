//! What a lane shows the outside world: the snapshot served by `GET /api/v1/lanes/{lane}` and sent
//! over the lane's WebSocket, and the commands a terminal may give. Phone numbers appear only
//! masked (`47******67`).

use std::sync::OnceLock;

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Amount, LaneId};
use crate::session::CashierCode;

/// A lane as a terminal sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaneSnapshot {
    #[schema(value_type = String, example = "1")]
    pub lane: LaneId,
    /// Whether the lane's actor runs; a lane past its restart budget is down.
    pub up: bool,
    /// The session state label, e.g. `idle`, `awaiting_payment`.
    pub state: String,
    /// The checkout in progress; null while the lane is idle.
    pub session: Option<SessionView>,
    /// The checkout that ended last, with its `outcome`, until the next one begins.
    pub last_session: Option<SessionView>,
    /// The message the cashier should see for the latest outcome, if any.
    pub message: Option<CashierMessage>,
    pub scanners: Vec<ScannerView>,
    pub terminal_connected: bool,
}

impl LaneSnapshot {
    /// A lane as terminals see it before its actor first runs: down and idle.
    pub fn before_start(lane: &LaneId) -> Self {
        LaneSnapshot {
            lane: lane.clone(),
            up: false,
            state: "idle".into(),
            session: None,
            last_session: None,
            message: None,
            scanners: vec![],
            terminal_connected: false,
        }
    }
}

/// A checkout with a payment that ended but whose end is not on disk yet. Until it is,
/// terminals keep seeing the checkout as it was: a restart meanwhile recovers it from the
/// journal, so no restart can contradict the outcome the cashier is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub session: String,
    /// The checkout as terminals saw it before it ended.
    pub state: &'static str,
    pub view: Option<SessionView>,
    /// What they are told once the end is durable.
    pub told: Option<SessionView>,
    pub told_message: Option<CashierMessage>,
}

/// A checkout: the one in progress, or the one that ended last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub customer: Option<CustomerView>,
    /// `starting`, `awaiting_consent`, `storing_member`, then how it ended: `enrolled`, `denied`,
    /// `expired`, `failed`, `unavailable` or `abandoned`; null when no enrollment was asked.
    pub enrollment: Option<String>,
    pub payment: Option<PaymentView>,
    /// How the checkout ended (`paid`, `cancelled`, `failed`, `unavailable`, …); null while it
    /// runs.
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    /// Masked as `47******67`; never in full.
    pub phone_number: String,
    /// Unknown until the membership lookup answers.
    pub member: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub reference: String,
    #[schema(value_type = MoneyDto)]
    pub amount: Amount,
    /// The Vipps state as last read (`CREATED`, `AUTHORIZED`, …) or lanehub's view of it.
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScannerView {
    pub role: String,
    pub source: String,
    /// `closed`, `claimed`, `enabled` or `offline`.
    pub state: String,
}

/// A message for the cashier: a stable code for terminals and a sentence for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CashierMessage {
    /// e.g. `member_welcomed`, `payment_approved`, `vipps_unavailable`, `store_unavailable`.
    #[schema(value_type = String, example = "payment_approved")]
    pub code: CashierCode,
    pub text: String,
}

/// Money as the terminal API takes and gives it: integer minor units.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyDto {
    /// Integer minor units (øre): 23990 is 239.90 NOK. Payments and refunds take 1 to 65000000.
    #[schema(minimum = 0, maximum = 65_000_000, example = 23990)]
    pub value: u64,
    #[schema(value_type = CurrencyCode, example = "NOK")]
    pub currency: String,
}

/// The currencies the API takes (those of ePayment).
#[derive(Debug, Clone, Copy, ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum CurrencyCode {
    Nok,
    Dkk,
    Eur,
}

/// A change on a lane, as sent over its WebSocket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaneEvent {
    /// Increases by one with every event of this lane; a gap means the terminal missed events.
    pub seq: u64,
    /// `snapshot` (on connect, after a lag, after a lane restart), `changed`, `scan` (a product
    /// barcode), `scan_rejected`, `check_in`, `terminal`, `scanner`, `up`, `down`, `draining`.
    #[schema(value_type = String, example = "changed")]
    pub kind: LaneEventKind,
    pub snapshot: LaneSnapshot,
    /// Extra data for the kind: `scan` `{barcode, format}`, `scan_rejected` `{reason}`,
    /// `check_in` `{code, text}`; null for the others.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// The event as JSON text, made by the first WebSocket that sends it and shared by the rest.
    #[serde(skip)]
    text: OnceLock<ByteString>,
}

impl LaneEvent {
    pub fn new(
        seq: u64,
        kind: LaneEventKind,
        snapshot: LaneSnapshot,
        data: Option<serde_json::Value>,
    ) -> Self {
        LaneEvent {
            seq,
            kind,
            snapshot,
            data,
            text: OnceLock::new(),
        }
    }

    /// The event as JSON text, serialised once however many terminals it goes to.
    pub fn text(&self) -> ByteString {
        self.text
            .get_or_init(|| {
                // Strings, numbers and a JSON value: nothing in an event can fail to serialise.
                let text = serde_json::to_string(self).expect("a lane event serialises");
                ByteString::from(text)
            })
            .clone()
    }
}

/// What a lane event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneEventKind {
    /// The whole lane: on connect, after a lag, after a lane restart.
    Snapshot,
    /// The session or the cashier's message changed.
    Changed,
    /// A product barcode was scanned (`data`: `{barcode, format}`).
    Scan,
    /// A scan was refused (`data`: `{reason}`).
    ScanRejected,
    /// The check-in's outcome (`data`: the cashier message).
    CheckIn,
    /// A terminal connected to or left the lane.
    Terminal,
    /// A scanner's state changed.
    Scanner,
    /// The lane's actor runs again.
    Up,
    /// The lane's actor stopped.
    Down,
    /// lanehub is shutting down (`data`: `{message, deadlineSecs}`).
    Draining,
    /// The last event before lanehub closes the WebSocket for shutdown.
    Shutdown,
}
