//! The simulator's virtual customers: who they are, whether they are in the merchant's club, and
//! what they do with a payment or Login request. Behaviour can change at run time.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{LoginBehaviour, PaymentBehaviour, SimCustomer};
use crate::domain::Msisdn;

/// A virtual customer as the simulator holds it now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub phone_number: Msisdn,
    pub name: String,
    pub email: String,
    pub member: bool,
    pub behaviour: Behaviour,
    /// The tokenised personal QR (`https://qr.vipps.no/p/<token>`) the simulator issued.
    pub qr_token_url: String,
    /// The clear-text Vipps personal QR, as today's Vipps app shows it (Norwegian numbers only).
    pub qr_clear_text_url: Option<String>,
    /// A personal QR of a shape no scanner integration knows yet
    /// (`https://qr.vipps.no/c/<token>?v=3`): Vipps may change the content at any time, and only
    /// the QR exchange understands it.
    pub qr_future_url: String,
}

/// What a customer does when asked, and how long it takes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Behaviour {
    pub payment: PaymentBehaviour,
    #[serde(with = "millis")]
    pub payment_delay: Duration,
    pub login: LoginBehaviour,
    #[serde(with = "millis")]
    pub login_delay: Duration,
}

/// Durations in the control API are integer milliseconds.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// All virtual customers, by phone number.
#[derive(Debug, Default)]
pub struct Customers {
    by_phone: BTreeMap<Msisdn, Customer>,
}

/// The QR token the simulator issues for a phone number: stable across restarts so a printed
/// demo code keeps working.
pub fn qr_token(phone: &Msisdn) -> String {
    let digest = Sha256::digest(format!("lanehub-sim-qr:{}", phone.as_str()).as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

impl Customers {
    pub fn from_config(customers: &[SimCustomer]) -> Self {
        let mut out = Customers::default();
        for c in customers {
            out.insert(Customer {
                phone_number: c.phone_number.clone(),
                name: c.name.clone(),
                email: c.email.clone(),
                member: c.member,
                behaviour: Behaviour {
                    payment: c.payment,
                    payment_delay: c.payment_delay,
                    login: c.login,
                    login_delay: c.login_delay,
                },
                qr_token_url: String::new(),
                qr_clear_text_url: None,
                qr_future_url: String::new(),
            });
        }
        out
    }

    /// Adds or replaces a customer, filling in their QR codes.
    pub fn insert(&mut self, mut c: Customer) {
        c.qr_token_url = format!("https://qr.vipps.no/p/{}", qr_token(&c.phone_number));
        c.qr_future_url = format!("https://qr.vipps.no/c/{}?v=3", qr_token(&c.phone_number));
        c.qr_clear_text_url = c.phone_number.is_norwegian().then(|| {
            format!(
                "https://qr.vipps.no/28/2/01/031/{}?v=1",
                c.phone_number.as_str()
            )
        });
        self.by_phone.insert(c.phone_number.clone(), c);
    }

    pub fn get(&self, phone: &Msisdn) -> Option<&Customer> {
        self.by_phone.get(phone)
    }

    pub fn get_mut(&mut self, phone: &Msisdn) -> Option<&mut Customer> {
        self.by_phone.get_mut(phone)
    }

    /// The customer whose tokenised QR carries `token`.
    pub fn by_qr_token(&self, token: &str) -> Option<&Customer> {
        self.by_phone
            .values()
            .find(|c| c.qr_token_url.rsplit('/').next() == Some(token))
    }

    /// The customer whose future-shape QR is exactly `qr`.
    pub fn by_qr_future_url(&self, qr: &str) -> Option<&Customer> {
        self.by_phone.values().find(|c| c.qr_future_url == qr)
    }

    pub fn all(&self) -> impl Iterator<Item = &Customer> {
        self.by_phone.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_are_issued_and_found() {
        let cfg = crate::config::Settings::load(None, Vec::new()).unwrap();
        let customers = Customers::from_config(&cfg.sim.customers);
        let kari: Msisdn = "4791234567".parse().unwrap();
        let c = customers.get(&kari).unwrap();
        assert_eq!(
            c.qr_clear_text_url.as_deref(),
            Some("https://qr.vipps.no/28/2/01/031/4791234567?v=1")
        );
        let token = c.qr_token_url.rsplit('/').next().unwrap();
        assert_eq!(customers.by_qr_token(token).unwrap().phone_number, kari);
        assert_eq!(
            c.qr_future_url,
            format!("https://qr.vipps.no/c/{token}?v=3")
        );
        let future = customers.by_qr_future_url(&c.qr_future_url).unwrap();
        assert_eq!(future.phone_number, kari);
        let dane: Msisdn = "4512345678".parse().unwrap();
        assert!(customers.get(&dane).unwrap().qr_clear_text_url.is_none());
    }
}
