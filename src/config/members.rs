//! `[members]`: which loyalty club the lanes use, and how it is reached.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::*;

/// Where the loyalty club lives (`[members]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersSettings {
    pub provider: MembersProvider,
    /// `postgres://user:password@host:5432/db?sslmode=verify-full`; a secret, since it may
    /// carry the password.
    pub postgres_url: SecretString,
    /// The merchant's CRM, e.g. `https://crm.example/loyalty/v1`.
    pub http_base_url: String,
    /// Sent to the CRM as `Authorization: Bearer …`.
    pub http_token: SecretString,
    /// A CRM lookup not answered within this counts as "membership unknown".
    #[serde(deserialize_with = "duration")]
    pub http_timeout: Duration,
}

/// Which membership provider lanes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum MembersProvider {
    /// This store's own SQLite database.
    Sqlite,
    /// One PostgreSQL database shared by the chain's stores.
    Postgres,
    /// The merchant's CRM over HTTP.
    Http,
}

impl MembersProvider {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The longest `store.name`.
pub const MAX_STORE_NAME: usize = 64;

impl MembersSettings {
    /// The key and what is wrong with it; never a secret's value.
    pub(super) fn validate(&self, store: &StoreSettings) -> Result<(), (&'static str, String)> {
        if let Some(why) = store_name_problem(&store.name) {
            return Err(("store.name", why));
        }
        if self.provider != MembersProvider::Sqlite && store.name.is_empty() {
            return Err((
                "store.name",
                format!(
                    "is needed with members.provider = \"{}\": the chain's stores are told \
                     apart by it (e.g. \"oslo-sentrum\")",
                    self.provider.as_str()
                ),
            ));
        }
        match self.provider {
            MembersProvider::Sqlite => Ok(()),
            MembersProvider::Postgres => {
                let url = self.postgres_url.expose_secret();
                if url.is_empty() {
                    return Err((
                        "members.postgres_url",
                        "is needed with members.provider = \"postgres\"".into(),
                    ));
                }
                crate::members::postgres::check_url(url)
                    .map_err(|why| ("members.postgres_url", why))
            }
            MembersProvider::Http => {
                if self.http_base_url.is_empty() {
                    return Err((
                        "members.http_base_url",
                        "is needed with members.provider = \"http\"".into(),
                    ));
                }
                check_url(&self.http_base_url)
                    .map_err(|why| ("members.http_base_url", format!("the CRM needs {why}")))?;
                if self.http_token.expose_secret().is_empty() {
                    return Err((
                        "members.http_token",
                        "is needed with members.provider = \"http\"".into(),
                    ));
                }
                if self.http_timeout.is_zero() || self.http_timeout > MAX_HTTP_TIMEOUT {
                    return Err((
                        "members.http_timeout",
                        "must be above 0 and at most 10s (a checkout waits for it)".into(),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The longest `members.http_timeout`.
pub const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What is wrong with a store name, if anything: letters, digits, `-`, `_` and `.`, since it
/// is sent to the CRM and matched with the `store` label of the metrics.
pub fn store_name_problem(name: &str) -> Option<String> {
    let fine = name.len() <= MAX_STORE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (!fine).then(|| {
        format!("`{name}` is not a store name (at most {MAX_STORE_NAME} letters, digits, - _ .)")
    })
}
