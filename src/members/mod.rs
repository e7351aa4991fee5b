//! Membership providers: where the loyalty club lives (`[members] provider`).
//!
//! Lanes see one `Arc<dyn MembershipStore>`; this module builds it from the configuration:
//! the store's own SQLite (the default), a PostgreSQL database shared by the chain
//! ([`postgres`]), or the merchant's CRM over HTTP ([`crm`]).

pub mod cli;
pub mod crm;
pub mod postgres;

use std::sync::Arc;

use crate::config::{MembersProvider, MembersSettings};
use crate::store::{MembershipStore, Store};

pub use crm::CrmMembers;
pub use postgres::PostgresMembers;

/// The membership provider the configuration names. Builds without connecting, so a database
/// or CRM that is down at start delays no checkout: its lookups count as "membership unknown"
/// until it answers. Must run inside a tokio runtime (it spawns the provider's background work).
pub fn start(
    settings: &MembersSettings,
    store_name: &str,
    store: &Store,
) -> anyhow::Result<Arc<dyn MembershipStore>> {
    use secrecy::ExposeSecret;
    match settings.provider {
        MembersProvider::Sqlite => Ok(Arc::new(store.clone())),
        MembersProvider::Postgres => {
            let pg = PostgresMembers::new(settings.postgres_url.expose_secret(), store_name)
                .map_err(|why| anyhow::anyhow!("members.postgres_url: {why}"))?;
            let first = pg.clone();
            tokio::spawn(async move {
                match first.ready().await {
                    Ok(()) => {
                        let tls = first.encrypted().await.ok();
                        tracing::info!(?tls, "the PostgreSQL membership provider is ready");
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "the PostgreSQL membership provider is not reachable yet; lookups count \
                         as membership unknown until it is"
                    ),
                }
            });
            Ok(Arc::new(pg))
        }
        MembersProvider::Http => {
            let crm = CrmMembers::new(
                &settings.http_base_url,
                settings.http_token.clone(),
                settings.http_timeout,
                store_name,
                store.clone(),
                crm::DELIVERY_BACKOFF,
            )
            .map_err(|why| anyhow::anyhow!("members.http_base_url: {why}"))?;
            tokio::spawn(crm.clone().deliver_forever());
            Ok(Arc::new(crm))
        }
    }
}
