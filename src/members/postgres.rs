//! The chain's loyalty club in PostgreSQL: one database shared by every store's lanehub.
//!
//! tokio-postgres with a deadpool pool: async, no compile-time database, far fewer
//! dependencies than sqlx. TLS is rustls with the process's ring provider, following the URL's
//! `sslmode` as libpq does (`disable`, `prefer`, `require`: encrypted but unverified;
//! `verify-full`: chain and host name checked, against the system's CAs or `sslrootcert`).
//!
//! The schema is lanehub's own (tables prefixed `lanehub_`), migrated on first use inside one
//! transaction that holds an advisory lock, so stores starting together migrate once. Upserts
//! are single statements (`INSERT … ON CONFLICT`), so two stores enrolling one customer at the
//! same moment leave one member; the first enrollment's store, lane and time are kept, the
//! latest name, e-mail and consents win.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::sync::OnceCell;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::domain::{LaneId, Msisdn};
use crate::store::{
    Consent, ImportCounts, Member, MemberSource, MembershipStore, StoreError, StoreFuture, Upserted,
};

/// Connections one lanehub keeps to the database: lanes look members up one at a time each.
const POOL_SIZE: usize = 4;
/// How long a connect, or a wait for a free connection, may take before the call fails (and
/// the lookup counts as "membership unknown").
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The advisory lock key that serialises migrations across stores ("lanehub" + 1).
const MIGRATION_LOCK: i64 = 0x6c61_6e65_6875_6201;

/// lanehub's PostgreSQL schema, one step per version; never edit a released step.
const MIGRATIONS: &[&str] = &["CREATE TABLE lanehub_members (
        phone_number   text PRIMARY KEY,
        name           text NOT NULL,
        email          text NOT NULL,
        consents       jsonb NOT NULL,
        enrolled_at    timestamptz NOT NULL,
        enrolled_store text NOT NULL,
        enrolled_lane  text,
        source         text NOT NULL CHECK (source IN ('enrollment', 'import')),
        updated_at     timestamptz NOT NULL,
        updated_store  text NOT NULL
    )"];

/// The schema version this build migrates to.
pub const PG_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Whether `url` is a PostgreSQL URL lanehub can use; the reason never quotes the URL (it may
/// hold a password).
pub fn check_url(url: &str) -> Result<(), String> {
    ConnectSpec::parse(url).map(|_| ())
}

/// A parsed `postgres_url`: tokio-postgres' config plus what lanehub handles itself.
struct ConnectSpec {
    config: tokio_postgres::Config,
    tls: TlsMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TlsMode {
    /// `disable`, `prefer`, `require`: encrypted when asked, the certificate not checked.
    Unverified,
    /// `verify-full`: against the system's CAs, or the PEM file of `sslrootcert`.
    Verified { root_cert: Option<String> },
}

impl ConnectSpec {
    fn parse(raw: &str) -> Result<Self, String> {
        const WANTED: &str = "expected a URL like postgres://user:password@host:5432/database \
                              (the value is a secret and not shown)";
        let mut url = reqwest::Url::parse(raw).map_err(|e| format!("{WANTED}: {e}"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "{WANTED}: the scheme is `{}`, not postgres",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{WANTED}: it names no host"));
        }
        let (mut sslmode, mut root_cert, mut rest) = (None, None, vec![]);
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "sslmode" => sslmode = Some(v.into_owned()),
                "sslrootcert" => root_cert = Some(v.into_owned()),
                _ => rest.push((k.into_owned(), v.into_owned())),
            }
        }
        let (mode, tls) = match sslmode.as_deref().unwrap_or("prefer") {
            "disable" => (SslMode::Disable, TlsMode::Unverified),
            "prefer" => (SslMode::Prefer, TlsMode::Unverified),
            "require" => (SslMode::Require, TlsMode::Unverified),
            "verify-full" => (SslMode::Require, TlsMode::Verified { root_cert }),
            other => {
                return Err(format!(
                    "sslmode `{other}` is not supported: use disable, prefer, require or \
                     verify-full"
                ));
            }
        };
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
        }
        let mut config =
            tokio_postgres::Config::from_str(url.as_str()).map_err(|e| format!("{WANTED}: {e}"))?;
        config.ssl_mode(mode);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("lanehub");
        }
        Ok(ConnectSpec { config, tls })
    }

    fn tls_config(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let config = match &self.tls {
            TlsMode::Unverified => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth(),
            TlsMode::Verified {
                root_cert: Some(path),
            } => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = rustls_pki_types::pem::PemObject::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
                for cert in certs {
                    let cert: CertificateDer<'static> =
                        cert.map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            TlsMode::Verified { root_cert: None } => {
                let verifier = rustls_platform_verifier::Verifier::new(provider)
                    .map_err(|e| format!("TLS: the system's CAs: {e}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth()
            }
        };
        Ok(config)
    }
}

/// `sslmode=require` as libpq means it: encrypted, the server's certificate not checked (the
/// handshake signatures still are).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

/// A handshake-signature check of `ServerCertVerifier` (TLS 1.2 and 1.3 have one each, alike
/// but for the rustls function that checks), with the provider's algorithms.
macro_rules! verify_with {
    ($method:ident, $check:path) => {
        fn $method(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            $check(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
    };
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    verify_with!(
        verify_tls12_signature,
        rustls::crypto::verify_tls12_signature
    );
    verify_with!(
        verify_tls13_signature,
        rustls::crypto::verify_tls13_signature
    );

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The PostgreSQL membership provider; clones share the pool.
#[derive(Clone)]
pub struct PostgresMembers {
    pool: Pool,
    store_name: Arc<str>,
    /// Set once the schema is migrated; a failed migration is tried again by the next call.
    migrated: Arc<OnceCell<()>>,
}

impl std::fmt::Debug for PostgresMembers {
    // The pool's config holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresMembers")
            .field("store_name", &self.store_name)
            .finish_non_exhaustive()
    }
}

fn pg_error(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Provider {
        provider: "postgres",
        detail: crate::vipps::error::mask_digit_runs(&detail.to_string()),
    }
}

/// An error with its causes ("error performing TLS handshake: invalid peer certificate: …"):
/// the pool's and the driver's own messages leave them out.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

impl PostgresMembers {
    /// Builds the pool without connecting: the first call connects and migrates. The error
    /// names what is wrong with the URL without quoting it.
    pub fn new(url: &str, store_name: &str) -> Result<Self, String> {
        let spec = ConnectSpec::parse(url)?;
        let tls = MakeRustlsConnect::new(spec.tls_config()?);
        let manager = Manager::from_config(
            spec.config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| format!("cannot build the connection pool: {e}"))?;
        Ok(PostgresMembers {
            pool,
            store_name: store_name.into(),
            migrated: Arc::new(OnceCell::new()),
        })
    }

    /// Connects and migrates the schema unless that was done already.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| migrate(&self.pool, &self.store_name))
            .await
            .map(|_| ())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.ready().await?;
        self.pool.get().await.map_err(|e| pg_error(chain(&e)))
    }

    /// Every row `sql` returns, on a connection from the pool.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        client.query(sql, params).await.map_err(pg_error)
    }

    /// Whether the connection to the database is encrypted (TLS).
    pub async fn encrypted(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    /// Which store enrolled the member first, if there is one.
    pub async fn enrolled_store(&self, phone: &Msisdn) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT enrolled_store FROM lanehub_members WHERE phone_number = $1",
                &[&phone.as_str()],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The schema versions applied, in order, with the store that applied each.
    pub async fn migrations(&self) -> Result<Vec<(u32, String)>, StoreError> {
        let sql = "SELECT version, applied_by FROM lanehub_schema_migrations ORDER BY version";
        let rows = self.query(sql, &[]).await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i32>(0).unsigned_abs(), r.get(1)))
            .collect())
    }

    /// Upserts every member in one transaction: all of them or none.
    pub async fn import(&self, members: Vec<Member>) -> Result<ImportCounts, StoreError> {
        for m in &members {
            m.validate()?;
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let mut counts = ImportCounts::default();
        for m in &members {
            match upsert(&tx, m, &self.store_name).await? {
                Upserted::Inserted => counts.inserted += 1,
                Upserted::Updated => counts.updated += 1,
                Upserted::Unchanged => counts.unchanged += 1,
            }
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(counts)
    }
}

/// Applies the missing migration steps in one transaction under the advisory lock: a store
/// that starts while another migrates waits, then finds nothing left to do.
async fn migrate(pool: &Pool, store_name: &str) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(|e| pg_error(chain(&e)))?;
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS lanehub_schema_migrations (
            version    integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now(),
            applied_by text NOT NULL
        )",
    )
    .await
    .map_err(pg_error)?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM lanehub_schema_migrations",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    let current = current.unsigned_abs();
    if current > PG_SCHEMA_VERSION {
        return Err(pg_error(format!(
            "the database was migrated by a newer lanehub (schema {current}, this build knows up \
             to {PG_SCHEMA_VERSION}); not touching it"
        )));
    }
    for (step, version) in MIGRATIONS.iter().zip(1..).skip(current as usize) {
        tx.batch_execute(step)
            .await
            .map_err(|e| pg_error(format!("migrating to schema {version}: {e}")))?;
        tx.execute(
            "INSERT INTO lanehub_schema_migrations (version, applied_by) VALUES ($1, $2)",
            &[&version, &store_name],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    if current < PG_SCHEMA_VERSION {
        tracing::info!(
            from = current,
            to = PG_SCHEMA_VERSION,
            "migrated the PostgreSQL membership schema"
        );
    }
    Ok(())
}

/// PostgreSQL keeps microseconds; a member compares equal after a round trip.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

async fn upsert(
    client: &impl deadpool_postgres::GenericClient,
    member: &Member,
    store_name: &str,
) -> Result<Upserted, StoreError> {
    let consents = Json(&member.consents);
    // The WHERE makes an identical member return no row (unchanged); `xmax = 0` tells an
    // inserted row from an updated one.
    let row = client
        .query_opt(
            "INSERT INTO lanehub_members AS m (phone_number, name, email, consents, enrolled_at,
                 enrolled_store, enrolled_lane, source, updated_at, updated_store)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), $6)
             ON CONFLICT (phone_number) DO UPDATE SET
                 name = excluded.name, email = excluded.email, consents = excluded.consents,
                 updated_at = now(), updated_store = excluded.updated_store
             WHERE (m.name, m.email, m.consents)
                   IS DISTINCT FROM (excluded.name, excluded.email, excluded.consents)
             RETURNING (xmax = 0) AS inserted",
            &[
                &member.phone_number.as_str(),
                &member.name,
                &member.email,
                &consents,
                &micros(member.enrolled_at),
                &store_name,
                &member.enrolled_lane.as_ref().map(LaneId::as_str),
                &member.source.as_str(),
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(match row {
        None => Upserted::Unchanged,
        Some(r) if r.get::<_, bool>(0) => Upserted::Inserted,
        Some(_) => Upserted::Updated,
    })
}

const SELECT_MEMBERS: &str = "SELECT phone_number, name, email, consents, enrolled_at,
    enrolled_lane, source FROM lanehub_members";

fn parse_row(row: &tokio_postgres::Row) -> Result<Member, StoreError> {
    let corrupt = |what: &'static str, e: &dyn std::fmt::Display| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    };
    let phone: String = row.get(0);
    let Json(consents): Json<Vec<Consent>> =
        row.try_get(3).map_err(|e| corrupt("member consents", &e))?;
    let lane: Option<String> = row.get(5);
    let source: String = row.get(6);
    Ok(Member {
        phone_number: phone
            .parse()
            .map_err(|e| corrupt("member phone number", &e))?,
        name: row.get(1),
        email: row.get(2),
        consents,
        enrolled_at: row.get(4),
        enrolled_lane: lane
            .map(|l| l.parse())
            .transpose()
            .map_err(|e| corrupt("member enrolled_lane", &e))?,
        source: source
            .parse::<MemberSource>()
            .map_err(|e| corrupt("member source", &e))?,
    })
}

impl MembershipStore for PostgresMembers {
    fn member(&self, phone: &Msisdn) -> StoreFuture<Option<Member>> {
        let (this, phone) = (self.clone(), phone.clone());
        Box::pin(async move {
            let client = this.client().await?;
            let row = client
                .query_opt(
                    &format!("{SELECT_MEMBERS} WHERE phone_number = $1"),
                    &[&phone.as_str()],
                )
                .await
                .map_err(pg_error)?;
            row.as_ref().map(parse_row).transpose()
        })
    }

    fn upsert_member(&self, member: Member) -> StoreFuture<Upserted> {
        let this = self.clone();
        Box::pin(async move {
            member.validate()?;
            let client = this.client().await?;
            upsert(&client, &member, &this.store_name).await
        })
    }

    fn members(&self) -> StoreFuture<Vec<Member>> {
        let this = self.clone();
        Box::pin(async move {
            let sql = format!("{SELECT_MEMBERS} ORDER BY phone_number");
            let rows = this.query(&sql, &[]).await?;
            rows.iter().map(parse_row).collect()
        })
    }

    fn member_count(&self) -> StoreFuture<u64> {
        let this = self.clone();
        Box::pin(async move {
            let client = this.client().await?;
            let n: i64 = client
                .query_one("SELECT count(*) FROM lanehub_members", &[])
                .await
                .map_err(pg_error)?
                .get(0);
            Ok(n.unsigned_abs())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_quoting_them() {
        for ok in [
            "postgres://u:p@db.example:5432/club",
            "postgresql://u@127.0.0.1/club?sslmode=require",
            "postgres://u:p@db.example/club?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "postgres://u:p@db.example/club?sslmode=disable&connect_timeout=5",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("mysql://u:s3cretpw@db/club", "scheme is `mysql`"),
            (
                "postgres://u:s3cretpw@db/club?sslmode=verify-ca",
                "verify-full",
            ),
            (
                "postgres://u:s3cretpw@db/club?sslmode=bogus",
                "not supported",
            ),
            ("postgres://u:s3cretpw@db/club?nonsense=1", "expected a URL"),
            ("not a url s3cretpw", "expected a URL"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("s3cretpw"), "{bad}: {e}");
        }
    }

    #[test]
    fn sslmode_maps_to_encryption_and_verification() {
        let spec = ConnectSpec::parse("postgres://u@h/d?sslmode=require").unwrap();
        assert_eq!(spec.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(spec.tls, TlsMode::Unverified);
        let spec = ConnectSpec::parse("postgres://u@h/d?sslmode=verify-full").unwrap();
        assert_eq!(spec.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(spec.tls, TlsMode::Verified { root_cert: None });
        let spec = ConnectSpec::parse("postgres://u@h/d").unwrap();
        assert_eq!(spec.config.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(spec.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        let missing = ConnectSpec::parse(
            "postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap()
        .tls_config()
        .unwrap_err();
        assert!(missing.contains("sslrootcert"), "{missing}");
    }
}
