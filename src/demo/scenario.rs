//! The checkouts the demo plays, with their weights and what the customer does in each.

use super::*;

/// What one checkout acts out; its label is the variant's name in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Scenario {
    /// A club member pays.
    MemberPaid,
    /// A non-member enrolls (Vipps Login consent), then pays.
    EnrollThenPay,
    /// A non-member declines the enrollment request, then pays.
    EnrollmentDeclined,
    /// The cashier pays while the customer has not answered the enrollment yet.
    EnrollmentAbandoned,
    /// A non-member pays without being asked to enroll.
    NonMemberPaid,
    /// The customer declines the payment in the app.
    Declined,
    /// The customer ignores the payment request until it expires.
    Expired,
    /// The cashier cancels the payment request while the customer hesitates.
    CashierCancel,
    /// The customer pays by card after all: the cashier closes the session.
    PaidByCard,
}

impl Scenario {
    /// Every scenario with its relative frequency.
    pub const WEIGHTS: [(Scenario, u32); 9] = [
        (Scenario::MemberPaid, 30),
        (Scenario::EnrollThenPay, 14),
        (Scenario::EnrollmentDeclined, 7),
        (Scenario::EnrollmentAbandoned, 4),
        (Scenario::NonMemberPaid, 12),
        (Scenario::Declined, 12),
        (Scenario::Expired, 4),
        (Scenario::CashierCancel, 10),
        (Scenario::PaidByCard, 5),
    ];

    /// The sum of the weights: `pick` takes a roll below it.
    pub fn total_weight() -> u32 {
        Self::WEIGHTS.iter().map(|(_, w)| w).sum()
    }

    /// The scenario a roll in `0..total_weight()` lands on.
    pub fn pick(roll: u32) -> Scenario {
        let mut left = roll % Self::total_weight();
        for (scenario, weight) in Self::WEIGHTS {
            if left < weight {
                return scenario;
            }
            left -= weight;
        }
        Scenario::MemberPaid
    }

    pub(super) fn label(self) -> &'static str {
        self.into()
    }

    pub(super) fn newcomer(self) -> bool {
        matches!(
            self,
            Scenario::EnrollThenPay
                | Scenario::EnrollmentDeclined
                | Scenario::EnrollmentAbandoned
                | Scenario::NonMemberPaid
        )
    }

    pub(super) fn payment(self) -> PaymentBehaviour {
        match self {
            Scenario::Declined => PaymentBehaviour::Decline,
            Scenario::Expired | Scenario::CashierCancel => PaymentBehaviour::Ignore,
            _ => PaymentBehaviour::Approve,
        }
    }

    pub(super) fn login(self) -> LoginBehaviour {
        match self {
            Scenario::EnrollmentDeclined => LoginBehaviour::Deny,
            Scenario::EnrollmentAbandoned => LoginBehaviour::Ignore,
            _ => LoginBehaviour::Consent,
        }
    }

    pub(super) fn enrolls(self) -> bool {
        matches!(
            self,
            Scenario::EnrollThenPay | Scenario::EnrollmentDeclined | Scenario::EnrollmentAbandoned
        )
    }
}
