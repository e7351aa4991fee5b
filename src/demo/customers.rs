//! The demo's virtual customers: each lane's members and newcomers, their names, and how a
//! paying customer behaves.

use super::*;

/// Share of product scans that misread the label first.
pub(super) const MISREAD_SHARE: f64 = 0.02;
/// Customer payment delays in milliseconds.
pub(super) const PAY_DELAY_MS: Range<u64> = 1_000..3_000;
/// Customer Login answer delays in milliseconds.
pub(super) const LOGIN_DELAY_MS: Range<u64> = 1_000..3_000;

/// A customer who approves payments and consents to enrollment.
pub(super) fn paying_customer() -> Behaviour {
    Behaviour {
        payment: PaymentBehaviour::Approve,
        payment_delay: Duration::from_millis(PAY_DELAY_MS.start),
        login: LoginBehaviour::Consent,
        login_delay: Duration::from_millis(LOGIN_DELAY_MS.start),
    }
}

/// One lane's virtual customers: a few club members and an endless line of newcomers.
#[derive(Debug, Clone)]
pub(super) struct Cast {
    position: u16,
    next_member: u32,
    pub(super) next_newcomer: u32,
}

pub(super) const FIRST_NAMES: [&str; 12] = [
    "Kari", "Ola", "Ingrid", "Lars", "Sofie", "Jonas", "Emma", "Henrik", "Nora", "Magnus", "Ida",
    "Sander",
];
pub(super) const LAST_NAMES: [&str; 10] = [
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Berg",
];

impl Cast {
    pub(super) fn new(position: u16) -> Self {
        Cast {
            position,
            next_member: 0,
            // Start somewhere in the range, so a restart on the same data meets new people.
            next_newcomer: rand::random_range(0..NEWCOMERS_PER_LANE),
        }
    }

    pub(super) fn number(prefix: &str, position: u16, n: u32) -> Msisdn {
        format!("{prefix}{position:02}{n:04}")
            .parse()
            .expect("47, two digits, two lane digits and four digits make a valid msisdn")
    }

    /// The lane's `k`th club member (1-based).
    pub(super) fn member(&self, k: u32) -> Msisdn {
        Self::number("4795", self.position, k)
    }

    /// The next club member, round robin.
    pub(super) fn next_member(&mut self) -> Msisdn {
        self.next_member = self.next_member % MEMBERS_PER_LANE + 1;
        self.member(self.next_member)
    }

    pub(super) fn next_newcomer(&mut self) -> Msisdn {
        self.next_newcomer = (self.next_newcomer + 1) % NEWCOMERS_PER_LANE;
        Self::number("4796", self.position, self.next_newcomer)
    }

    /// A stable name and e-mail address for a number.
    pub(super) fn name(phone: &Msisdn) -> (String, String) {
        let n: usize = phone.as_str()[4..].parse().unwrap_or(0);
        let first = FIRST_NAMES[n % FIRST_NAMES.len()];
        let last = LAST_NAMES[(n / FIRST_NAMES.len()) % LAST_NAMES.len()];
        let email = format!("{first}.{last}.{}@example.com", &phone.as_str()[4..]).to_lowercase();
        (format!("{first} {last}"), email)
    }
}
