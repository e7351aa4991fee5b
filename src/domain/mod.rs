//! Validated domain types shared by every module: phone numbers, money, references, lane ids.
//!
//! Each type can only be built through its parser, so code that holds one never re-checks it.
//! Phone numbers never print in full: `Display` masks them as `47******67`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value was rejected, naming the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub reason: String,
}

impl InvalidValue {
    fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }
}

macro_rules! string_serde {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A phone number in MSISDN form: country code and number, digits only (`^\d{10,15}$`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn(String);

impl Msisdn {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Check-in only accepts Norwegian numbers (`^47[0-9]{8}$`).
    pub fn is_norwegian(&self) -> bool {
        self.0.len() == 10 && self.0.starts_with("47")
    }

    /// The masked form used in logs and terminal snapshots: `47******67`.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

/// Masks all but the first two and last two characters of a phone number.
pub fn mask_phone(raw: &str) -> String {
    let n = raw.chars().count();
    if n <= 4 {
        return "*".repeat(n);
    }
    raw.chars()
        .enumerate()
        .map(|(i, c)| if i < 2 || i >= n - 2 { c } else { '*' })
        .collect()
}

impl FromStr for Msisdn {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix('+').unwrap_or(s);
        if !(10..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidValue::new(
                "phone number",
                "expected 10 to 15 digits with the country code, such as 4791234567",
            ));
        }
        Ok(Self(digits.to_owned()))
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Msisdn({})", self.masked())
    }
}

string_serde!(Msisdn);

/// The currencies ePayment accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Currency {
    #[serde(rename = "NOK")]
    Nok,
    #[serde(rename = "DKK")]
    Dkk,
    #[serde(rename = "EUR")]
    Eur,
}

impl Currency {
    pub const ALL: [Currency; 3] = [Currency::Nok, Currency::Dkk, Currency::Eur];

    pub fn as_str(self) -> &'static str {
        match self {
            Currency::Nok => "NOK",
            Currency::Dkk => "DKK",
            Currency::Eur => "EUR",
        }
    }
}

impl FromStr for Currency {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "NOK" => Ok(Currency::Nok),
            "DKK" => Ok(Currency::Dkk),
            "EUR" => Ok(Currency::Eur),
            _ => Err(InvalidValue::new("currency", "expected NOK, DKK or EUR")),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money in minor units (øre, cents). Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Amount {
    pub currency: Currency,
    /// Minor units; ePayment takes a non-negative integer.
    pub value: u64,
}

impl Amount {
    pub fn new(currency: Currency, value: u64) -> Self {
        Self { currency, value }
    }

    pub fn nok(value: u64) -> Self {
        Self::new(Currency::Nok, value)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:02} {}",
            self.value / 100,
            self.value % 100,
            self.currency
        )
    }
}

/// A merchant's payment reference: `^[a-zA-Z0-9-]{8,64}$`, unique per merchant serial number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentReference(String);

impl PaymentReference {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PaymentReference {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(8..=64).contains(&s.len())
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(InvalidValue::new(
                "payment reference",
                "expected 8 to 64 characters of a-z, A-Z, 0-9 and -",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for PaymentReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(PaymentReference);

/// A checkout lane's id from configuration: 1 to 32 characters of a-z, A-Z, 0-9, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneId(String);

impl LaneId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LaneId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(1..=32).contains(&s.len())
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(InvalidValue::new(
                "lane id",
                "expected 1 to 32 characters of a-z, A-Z, 0-9, - and _",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for LaneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(LaneId);

/// An ePayment `Idempotency-Key`: 1 to 50 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IdempotencyKey {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(1..=50).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::new(
                "idempotency key",
                "expected 1 to 50 printable ASCII characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(IdempotencyKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msisdn_accepts_digits_and_masks() {
        let m: Msisdn = "4791234567".parse().unwrap();
        assert!(m.is_norwegian());
        assert_eq!(m.to_string(), "47******67");
        assert_eq!(format!("{m:?}"), "Msisdn(47******67)");
        assert_eq!("+4791234567".parse::<Msisdn>().unwrap(), m);
        assert!(!"4512345678".parse::<Msisdn>().unwrap().is_norwegian());
    }

    #[test]
    fn msisdn_rejects_bad_input() {
        for bad in ["", "123", "47912345a7", "4791234567890123", "47 91234567"] {
            assert!(bad.parse::<Msisdn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reference_pattern() {
        assert!("abcd-1234".parse::<PaymentReference>().is_ok());
        assert!("short".parse::<PaymentReference>().is_err());
        assert!("has space 123".parse::<PaymentReference>().is_err());
        assert!("a".repeat(65).parse::<PaymentReference>().is_err());
    }

    #[test]
    fn amount_serialises_in_minor_units() {
        let a = Amount::nok(23990);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"currency":"NOK","value":23990}"#
        );
        assert_eq!(a.to_string(), "239.90 NOK");
        assert!(serde_json::from_str::<Amount>(r#"{"currency":"NOK","value":1.5}"#).is_err());
        assert!(serde_json::from_str::<Amount>(r#"{"currency":"SEK","value":1}"#).is_err());
    }

    #[test]
    fn lane_id_and_key() {
        assert!("lane-1".parse::<LaneId>().is_ok());
        assert!("".parse::<LaneId>().is_err());
        assert!("lane 1".parse::<LaneId>().is_err());
        assert!("k".repeat(50).parse::<IdempotencyKey>().is_ok());
        assert!("k".repeat(51).parse::<IdempotencyKey>().is_err());
    }
}
