//! Checkout lanes: one actor per lane owns its scanners and its session state machine; callers
//! reach it through a `LaneHandle` from the `Lanes` registry.

pub mod handle;
pub mod view;

pub use handle::{CommandError, LaneCommand, LaneHandle, Lanes};

use crate::domain::Amount;

/// The cashier's "pay" command, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayRequest {
    pub amount: Amount,
    pub description: String,
    pub order_lines: Vec<OrderLine>,
    pub receipt_number: Option<String>,
}

/// One receipt line; money in minor units.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderLine {
    pub name: String,
    pub id: String,
    pub quantity: u32,
    pub unit_price: u64,
    pub total_amount: u64,
    pub total_tax_amount: u64,
    pub tax_rate_basis_points: u32,
}
