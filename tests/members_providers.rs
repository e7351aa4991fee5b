//! The membership providers against the real thing: a PostgreSQL server these tests start from
//! the system's `postgresql` package (initdb in a temporary directory, a free port), and the
//! configuration that picks a provider.
//!
//! Where the PostgreSQL binaries are missing the PostgreSQL tests say so loudly and pass, except
//! under `CI=true`, where they fail.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use lanehub::config::{MembersProvider, Settings};
use lanehub::domain::Msisdn;
use lanehub::members::PostgresMembers;
use lanehub::store::{Consent, Member, MemberSource, MembershipStore, Upserted};

// ---------------------------------------------------------------------------------------------
// A real PostgreSQL server.

/// A PostgreSQL server in a temporary directory, stopped when dropped.
struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Set when the tests run as root: PostgreSQL refuses to, so it runs as `postgres`.
    run_as: Option<String>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding initdb and pg_ctl.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("`id -u` runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

impl PgServer {
    /// Starts a server, or returns `None` after a loud warning when the binaries are missing
    /// (and panics under `CI=true`).
    fn start() -> Option<PgServer> {
        let Some(bin) = pg_bin() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "the PostgreSQL binaries are missing under /usr/lib/postgresql/*/bin; under \
                     CI=true the PostgreSQL tests must not be skipped (apt-get install postgresql)"
                );
            }
            eprintln!(
                "\n\
                 ************************************************************************\n\
                 WARNING: no PostgreSQL under /usr/lib/postgresql/*/bin\n\
                 The PostgreSQL membership tests are SKIPPED: apt-get install postgresql\n\
                 ************************************************************************\n"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let run_as = is_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            // PostgreSQL will not run as root: its directory belongs to its own user.
            let status = Command::new("chown")
                .args([&format!("{user}:"), dir.path().to_str().unwrap()])
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of the PostgreSQL directory failed");
        }
        let server = PgServer {
            bin,
            port: free_port(),
            run_as,
            dir,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "lanehub",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            server.port,
            server.dir.path().display()
        );
        let log = server.dir.path().join("postgres.log");
        server.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        Some(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let output = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&path)
                .args(args)
                .output(),
            None => Command::new(&path).args(args).output(),
        }
        .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        assert!(
            output.status.success(),
            "{program} failed: {}{}\n{log}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A new, empty database on this server and its URL.
    async fn database(&self, name: &str) -> String {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=lanehub dbname=postgres",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("the test server accepts connections");
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
        format!(
            "postgres://lanehub@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data_dir();
        let path = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&path)
                .args(args)
                .output(),
            None => Command::new(&path).args(args).output(),
        };
    }
}

fn member(phone: &str, name: &str, lane: &str) -> Member {
    Member {
        phone_number: phone.parse().unwrap(),
        name: name.to_owned(),
        email: "kari@example.no".to_owned(),
        consents: vec![Consent {
            id: "marketing".into(),
            accepted: true,
            required: false,
            text: "Tilbud på e-post".into(),
        }],
        enrolled_at: "2024-05-01T10:00:00.123456Z".parse().unwrap(),
        enrolled_lane: Some(lane.parse().unwrap()),
        source: MemberSource::Enrollment,
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

#[tokio::test]
async fn two_stores_sharing_one_postgres_share_one_club() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.database("club").await;
    let oslo = PostgresMembers::new(&url, "oslo").unwrap();
    let bergen = PostgresMembers::new(&url, "bergen").unwrap();
    let kari = member("4791234567", "Kari", "3");
    let phone: Msisdn = kari.phone_number.clone();

    assert_eq!(bergen.member(&phone).await.unwrap(), None);
    assert_eq!(
        oslo.upsert_member(kari.clone()).await.unwrap(),
        Upserted::Inserted
    );
    // Enrolled in Oslo, a member in Bergen, with what Oslo stored.
    assert_eq!(bergen.member(&phone).await.unwrap(), Some(kari.clone()));
    assert_eq!(
        oslo.upsert_member(kari.clone()).await.unwrap(),
        Upserted::Unchanged
    );

    // Bergen enrolls her again with a new name: one member, the latest name, the first
    // enrollment's store, lane and time.
    let again = Member {
        name: "Kari Nordmann".into(),
        enrolled_lane: Some("1".parse().unwrap()),
        enrolled_at: "2025-01-01T00:00:00Z".parse().unwrap(),
        ..kari.clone()
    };
    assert_eq!(
        bergen.upsert_member(again).await.unwrap(),
        Upserted::Updated
    );
    let stored = oslo.member(&phone).await.unwrap().unwrap();
    assert_eq!(stored.name, "Kari Nordmann");
    assert_eq!(stored.enrolled_lane, kari.enrolled_lane);
    assert_eq!(stored.enrolled_at, kari.enrolled_at);
    assert_eq!(
        oslo.enrolled_store(&phone).await.unwrap().as_deref(),
        Some("oslo")
    );
    assert_eq!(bergen.member_count().await.unwrap(), 1);

    let ola = member("4798765432", "Ola", "2");
    let counts = bergen
        .import(vec![ola.clone(), kari.clone()])
        .await
        .unwrap();
    assert_eq!((counts.inserted, counts.updated), (1, 1));
    let all = oslo.members().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|m| m.phone_number.as_str())
            .collect::<Vec<_>>(),
        ["4791234567", "4798765432"]
    );
    // An invalid member in an import changes nothing.
    let bad = Member {
        email: "not an address".into(),
        ..member("4700000001", "X", "1")
    };
    assert!(bergen.import(vec![ola.clone(), bad]).await.is_err());
    assert_eq!(oslo.member_count().await.unwrap(), 2);
}

#[tokio::test]
async fn stores_starting_and_enrolling_at_once_migrate_once_and_keep_one_member() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.database("club").await;
    // Eight stores start together against a fresh database, each migrating on first use.
    let stores: Vec<Arc<PostgresMembers>> = (0..8)
        .map(|i| Arc::new(PostgresMembers::new(&url, &format!("store-{i}")).unwrap()))
        .collect();
    let ready = futures_util::future::join_all(stores.iter().map(|s| s.ready())).await;
    for r in ready {
        r.expect("every store starts");
    }
    let applied = stores[0].migrations().await.unwrap();
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(applied[0].0, 1);

    // The same customer enrolled at every store at the same moment: one member, inserted once.
    let enrolled = futures_util::future::join_all(
        stores
            .iter()
            .enumerate()
            .map(|(i, s)| s.upsert_member(member("4791234567", "Kari", &(i + 1).to_string()))),
    )
    .await;
    let outcomes: Vec<Upserted> = enrolled.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Upserted::Inserted)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(stores[3].member_count().await.unwrap(), 1);
    let phone: Msisdn = "4791234567".parse().unwrap();
    let first = stores[0].enrolled_store(&phone).await.unwrap().unwrap();
    let lane = stores[0]
        .member(&phone)
        .await
        .unwrap()
        .unwrap()
        .enrolled_lane;
    // The store and lane kept are those of the one enrollment that inserted.
    let i = outcomes
        .iter()
        .position(|o| *o == Upserted::Inserted)
        .unwrap();
    assert_eq!(first, format!("store-{i}"));
    assert_eq!(lane.unwrap().as_str(), (i + 1).to_string());
}

#[tokio::test]
async fn an_unreachable_database_fails_lookups_fast_and_recovers() {
    let port = free_port();
    let pg = PostgresMembers::new(
        &format!("postgres://lanehub@127.0.0.1:{port}/club?sslmode=disable"),
        "oslo",
    )
    .unwrap();
    let phone: Msisdn = "4791234567".parse().unwrap();
    let started = tokio::time::Instant::now();
    let e = pg.member(&phone).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4), "{e}");
    assert_eq!(e.kind(), "provider");
    assert!(!e.to_string().contains("4791234567"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Configuration

fn load(pairs: &[(&str, &str)]) -> Result<Settings, lanehub::config::ConfigError> {
    Settings::load(
        None,
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    )
}

#[test]
fn members_provider_defaults_to_sqlite_and_is_set_from_the_environment() {
    let settings = load(&[]).unwrap();
    assert_eq!(settings.members.provider, MembersProvider::Sqlite);
    assert_eq!(settings.members.http_timeout, Duration::from_secs(2));
    assert_eq!(settings.store.name, "");
    let settings = load(&[
        ("LANEHUB__MEMBERS__PROVIDER", "postgres"),
        (
            "LANEHUB__MEMBERS__POSTGRES_URL",
            "postgres://lanehub:pw@db.example/club?sslmode=verify-full",
        ),
        ("LANEHUB__STORE__NAME", "oslo-sentrum"),
    ])
    .unwrap();
    assert_eq!(settings.members.provider, MembersProvider::Postgres);
    assert_eq!(settings.store.name, "oslo-sentrum");
}

#[test]
fn members_settings_name_the_key_that_is_wrong_without_showing_secrets() {
    let secret_url = "postgres://lanehub:hunter2pw@db.example/club?sslmode=verify-ca";
    for (pairs, key, says) in [
        (
            vec![("LANEHUB__MEMBERS__PROVIDER", "postgres")],
            "store.name",
            "needed",
        ),
        (
            vec![
                ("LANEHUB__MEMBERS__PROVIDER", "postgres"),
                ("LANEHUB__STORE__NAME", "oslo"),
            ],
            "members.postgres_url",
            "needed",
        ),
        (
            vec![
                ("LANEHUB__MEMBERS__PROVIDER", "postgres"),
                ("LANEHUB__STORE__NAME", "oslo"),
                ("LANEHUB__MEMBERS__POSTGRES_URL", secret_url),
            ],
            "members.postgres_url",
            "verify-full",
        ),
        (
            vec![
                ("LANEHUB__MEMBERS__PROVIDER", "postgres"),
                ("LANEHUB__STORE__NAME", "oslo"),
                (
                    "LANEHUB__MEMBERS__POSTGRES_URL",
                    "https://lanehub:hunter2pw@db.example/club",
                ),
            ],
            "members.postgres_url",
            "scheme",
        ),
        (
            vec![
                ("LANEHUB__MEMBERS__PROVIDER", "http"),
                ("LANEHUB__STORE__NAME", "oslo"),
            ],
            "members.http_base_url",
            "needed",
        ),
        (
            vec![
                ("LANEHUB__MEMBERS__PROVIDER", "http"),
                ("LANEHUB__STORE__NAME", "oslo"),
                ("LANEHUB__MEMBERS__HTTP_BASE_URL", "http://crm.example/v1"),
                ("LANEHUB__MEMBERS__HTTP_TOKEN", "hunter2token"),
            ],
            "members.http_base_url",
            "https",
        ),
        (
            vec![
                ("LANEHUB__MEMBERS__PROVIDER", "http"),
                ("LANEHUB__STORE__NAME", "oslo"),
                ("LANEHUB__MEMBERS__HTTP_BASE_URL", "https://crm.example/v1"),
            ],
            "members.http_token",
            "needed",
        ),
        (
            vec![
                ("LANEHUB__MEMBERS__PROVIDER", "http"),
                ("LANEHUB__STORE__NAME", "oslo"),
                ("LANEHUB__MEMBERS__HTTP_BASE_URL", "https://crm.example/v1"),
                ("LANEHUB__MEMBERS__HTTP_TOKEN", "hunter2token"),
                ("LANEHUB__MEMBERS__HTTP_TIMEOUT", "0s"),
            ],
            "members.http_timeout",
            "above 0",
        ),
        (
            vec![("LANEHUB__MEMBERS__PROVIDER", "mysql")],
            "members.provider",
            "unknown variant",
        ),
        (
            vec![("LANEHUB__STORE__NAME", "oslo sentrum")],
            "store.name",
            "not a store name",
        ),
    ] {
        let e = load(&pairs).unwrap_err();
        assert_eq!(e.key, key, "{pairs:?}: {e}");
        let text = e.to_string();
        assert!(text.contains(says), "{pairs:?}: {text}");
        for secret in ["hunter2pw", "hunter2token"] {
            assert!(!text.contains(secret), "{pairs:?}: {text}");
        }
    }
}

#[test]
fn a_members_secret_of_the_wrong_type_is_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lanehub.toml");
    std::fs::write(&file, "[members]\nhttp_token = 987654321987\n").unwrap();
    let e = Settings::load(Some(&file), Vec::new()).unwrap_err();
    assert_eq!(e.key, "members.http_token");
    assert!(e.to_string().contains("secret"), "{e}");
    assert!(!e.to_string().contains("987654321987"), "{e}");
}

#[test]
fn a_postgres_url_with_a_password_never_reaches_debug_output() {
    let settings = load(&[
        ("LANEHUB__MEMBERS__PROVIDER", "postgres"),
        ("LANEHUB__STORE__NAME", "oslo"),
        (
            "LANEHUB__MEMBERS__POSTGRES_URL",
            "postgres://lanehub:hunter2pw@db.example/club",
        ),
        ("LANEHUB__MEMBERS__HTTP_TOKEN", "hunter2token"),
    ])
    .unwrap();
    let shown = format!("{settings:?}");
    assert!(!shown.contains("hunter2pw"), "{shown}");
    assert!(!shown.contains("hunter2token"), "{shown}");
    let pg = PostgresMembers::new("postgres://lanehub:hunter2pw@db.example/club", "oslo").unwrap();
    assert!(!format!("{pg:?}").contains("hunter2pw"));
}
