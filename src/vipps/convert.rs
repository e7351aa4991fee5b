//! Conversions between the Vipps client's types and lanehub's: errors to what the session needs
//! to know, payment states and aggregates, the create request with its receipt, userinfo, the
//! Login token, and the member an enrollment stores.

use secrecy::SecretString;

use crate::domain::{LaneId, Msisdn};
use crate::session::{Aggregate, CallError, CreatePaymentRequest, LoginAccessToken, Userinfo};
use crate::store::{Consent, Member, MemberSource};
use crate::vipps::error::VippsError;
use crate::vipps::models::{self, LoginToken};

/// Maps a client error to what the session needs to know: sent or not, final or not.
pub fn call_error(e: &VippsError) -> CallError {
    let detail = e.to_string();
    match e {
        VippsError::Unavailable { .. }
        | VippsError::Overloaded { .. }
        | VippsError::InvalidRequest(_)
        | VippsError::Shutdown => CallError::Unavailable { detail },
        VippsError::Status { status, .. } if (400..500).contains(status) && !e.is_retryable() => {
            CallError::Rejected {
                status: *status,
                detail,
            }
        }
        VippsError::DeadlineExceeded { attempts: 0, .. } => CallError::Unavailable { detail },
        _ => CallError::Unknown { detail },
    }
}

pub fn aggregate(a: &models::Aggregate) -> Aggregate {
    Aggregate {
        authorized: a.authorized_amount.value,
        captured: a.captured_amount.value,
        cancelled: a.cancelled_amount.value,
        refunded: a.refunded_amount.value,
    }
}

pub fn create_request(r: &CreatePaymentRequest) -> models::CreatePaymentRequest {
    let mut req = models::CreatePaymentRequest::in_store(
        r.reference.clone(),
        r.amount,
        r.msisdn.clone(),
        r.description.clone(),
    );
    req.receipt = r.receipt.as_ref().map(|receipt| models::Receipt {
        order_lines: receipt
            .order_lines
            .iter()
            .map(|l| models::OrderLine {
                name: l.name.clone(),
                id: l.id.clone(),
                total_amount: l.total,
                total_amount_excluding_tax: l.total.saturating_sub(l.vat_amount),
                total_tax_amount: l.vat_amount,
                tax_rate: u16::from(l.vat_percent) * 100,
                unit_info: Some(models::UnitInfo {
                    unit_price: l.unit_price,
                    quantity: l.quantity.to_string(),
                    quantity_unit: None,
                }),
                discount: None,
                is_return: None,
            })
            .collect(),
        bottom_line: models::BottomLine {
            currency: r.amount.currency,
            pos_id: Some(receipt.pos_id.to_string()),
            receipt_number: receipt.receipt_number.clone(),
            tip_amount: None,
        },
    });
    req
}

/// The session's form of a userinfo answer.
pub fn userinfo(u: models::Userinfo) -> Userinfo {
    Userinfo {
        name: u.name,
        email: u.email,
        phone_number: u.phone_number,
        // Vipps nests them in `delegatedConsents`; a top-level list is read too.
        consents: u
            .consents
            .into_iter()
            .chain(u.delegated_consents.into_iter().flat_map(|d| d.consents))
            .map(|c| crate::session::Consent {
                id: c.id,
                accepted: c.accepted,
                required: c.required,
                text: c.text_displayed_to_user,
            })
            .collect(),
    }
}

/// The member an enrollment at `lane` stores: name, e-mail and consents from userinfo.
pub fn enrolled_member(lane: &LaneId, msisdn: Msisdn, userinfo: Userinfo) -> Member {
    Member {
        phone_number: msisdn,
        name: userinfo.name.unwrap_or_default(),
        email: userinfo.email.unwrap_or_default(),
        consents: userinfo
            .consents
            .into_iter()
            .map(|c| Consent {
                id: c.id,
                accepted: c.accepted,
                required: c.required,
                text: c.text.unwrap_or_default(),
            })
            .collect(),
        enrolled_at: chrono::Utc::now(),
        enrolled_lane: Some(lane.clone()),
        source: MemberSource::Enrollment,
    }
}

/// The session's form of a Login access token (journalled, never shown by `Debug`).
pub fn login_access_token(token: &LoginToken) -> LoginAccessToken {
    LoginAccessToken::new(SecretString::from(token.bearer().to_owned()))
}
