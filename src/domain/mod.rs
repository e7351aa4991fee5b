//! Validated domain types shared by every module: phone numbers, money, references, lane ids.
//!
//! Each type can only be built through its parser, so code that holds one never re-checks it.
//! Phone numbers never print in full: `Display` masks them as `47******67`.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

/// `s` when its length is in `length` and every byte passes `byte_ok`; otherwise an error naming
/// `what` and the `expected` form.
pub(crate) fn checked(
    s: &str,
    what: &'static str,
    length: RangeInclusive<usize>,
    byte_ok: impl Fn(u8) -> bool,
    expected: &str,
) -> Result<String, InvalidValue> {
    if !length.contains(&s.len()) || !s.bytes().all(byte_ok) {
        return Err(InvalidValue::new(what, expected));
    }
    Ok(s.to_owned())
}

macro_rules! string_serde {
    ($ty:ident) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <String as ::serde::Deserialize>::deserialize(d)?;
                raw.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_serde;

/// A string newtype that can only be built by [`checked`]: `as_str`, `FromStr`, `Display` as
/// the text itself, and serde as a plain string.
macro_rules! validated_string {
    (
        $(#[$meta:meta])*
        pub struct $ty:ident;
        what: $what:literal,
        length: $length:expr,
        bytes: $byte_ok:expr,
        expected: $expected:literal $(,)?
    ) => {
        $(#[$meta])*
        pub struct $ty(String);

        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::domain::InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::domain::checked(s, $what, $length, $byte_ok, $expected).map(Self)
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        $crate::domain::string_serde!($ty);
    };
}
pub(crate) use validated_string;

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
        checked(
            digits,
            "phone number",
            10..=15,
            |b| b.is_ascii_digit(),
            "expected 10 to 15 digits with the country code, such as 4791234567",
        )
        .map(Self)
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

validated_string! {
    /// A merchant's payment reference: `^[a-zA-Z0-9-]{8,64}$`, unique per merchant serial number.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct PaymentReference;
    what: "payment reference",
    length: 8..=64,
    bytes: |b| b.is_ascii_alphanumeric() || b == b'-',
    expected: "expected 8 to 64 characters of a-z, A-Z, 0-9 and -",
}

validated_string! {
    /// A checkout lane's id from configuration: 1 to 32 characters of a-z, A-Z, 0-9, `-` and `_`.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct LaneId;
    what: "lane id",
    length: 1..=32,
    bytes: |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
    expected: "expected 1 to 32 characters of a-z, A-Z, 0-9, - and _",
}

validated_string! {
    /// An ePayment `Idempotency-Key`: 1 to 50 printable ASCII characters.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct IdempotencyKey;
    what: "idempotency key",
    length: 1..=50,
    bytes: |b| b.is_ascii_graphic(),
    expected: "expected 1 to 50 printable ASCII characters",
}

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

    /// `T` accepts every `valid` text and refuses every `invalid` one with `error`.
    fn parses<T>(valid: &[&str], invalid: &[&str], error: &str)
    where
        T: FromStr<Err = InvalidValue> + fmt::Debug,
    {
        for text in valid {
            assert!(text.parse::<T>().is_ok(), "{text}");
        }
        for text in invalid {
            let err = text.parse::<T>().unwrap_err();
            assert_eq!(err.to_string(), error, "{text}");
        }
    }

    #[test]
    fn msisdn_rejects_bad_input() {
        parses::<Msisdn>(
            &[],
            &["", "123", "47912345a7", "4791234567890123", "47 91234567"],
            "invalid phone number: expected 10 to 15 digits with the country code, such as 4791234567",
        );
    }

    #[test]
    fn reference_pattern() {
        parses::<PaymentReference>(
            &["abcd-1234"],
            &["short", "has space 123", &"a".repeat(65)],
            "invalid payment reference: expected 8 to 64 characters of a-z, A-Z, 0-9 and -",
        );
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
        parses::<LaneId>(
            &["lane-1"],
            &["", "lane 1"],
            "invalid lane id: expected 1 to 32 characters of a-z, A-Z, 0-9, - and _",
        );
        parses::<IdempotencyKey>(
            &[&"k".repeat(50)],
            &[&"k".repeat(51)],
            "invalid idempotency key: expected 1 to 50 printable ASCII characters",
        );
    }
}
