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

/// Gives `path` to `user`.
fn chown(user: &str, path: &std::path::Path) {
    let status = Command::new("chown")
        .args([&format!("{user}:"), path.to_str().unwrap()])
        .status()
        .expect("chown runs");
    assert!(status.success(), "chown {user} {} failed", path.display());
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("`id -u` runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

impl PgServer {
    /// Starts a server, or returns `None` after a loud warning when the binaries are missing
    /// (and panics under `CI=true`).
    fn start() -> Option<PgServer> {
        Self::start_with(false)
    }

    /// A server that also speaks TLS, with a certificate for `localhost` and 127.0.0.1 issued
    /// by a CA of its own (`ca.crt` in its directory).
    fn start_tls() -> Option<PgServer> {
        Self::start_with(true)
    }

    fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn start_with(tls: bool) -> Option<PgServer> {
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
            chown(user, dir.path());
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
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            server.port,
            server.dir.path().display()
        );
        if tls {
            server.make_certificates();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                server.dir.path().display()
            ));
        }
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

    /// A CA and a server certificate signed by it, made with the `openssl` command (which the
    /// `postgresql` package depends on), readable by the server only.
    fn make_certificates(&self) {
        let dir = self.dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=lanehub test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some(user) = &self.run_as {
            chown(user, &key);
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` of this server's binaries, run as the server's user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(&path);
                cmd
            }
            None => Command::new(&path),
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
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
        let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = self.command("pg_ctl").args(args).output();
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
async fn sslmode_require_encrypts_and_verify_full_checks_the_certificate() {
    let Some(pg) = PgServer::start_tls() else {
        return;
    };
    pg.database("club").await;
    let ca = pg.ca_cert();
    let base = format!("postgres://lanehub@localhost:{}/club", pg.port);
    let connect = |query: String| {
        let url = format!("{base}?{query}");
        async move {
            let club = PostgresMembers::new(&url, "oslo").unwrap();
            club.encrypted().await
        }
    };
    // Encrypted, the certificate not checked.
    assert!(connect("sslmode=require".into()).await.unwrap());
    // Encrypted and checked against the store's CA file.
    let verified = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    assert!(connect(verified).await.unwrap());
    // Checked against the system's CAs, which do not know the test CA: refused.
    let e = connect("sslmode=verify-full".into()).await.unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    // Without TLS when asked.
    assert!(!connect("sslmode=disable".into()).await.unwrap());
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

// ---------------------------------------------------------------------------------------------
// The merchant's CRM: a small CRM server of the tests' own, over real HTTP.

mod crm_server {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    use serde_json::Value;

    pub const TOKEN: &str = "crm-test-token-1234";

    /// How the CRM answers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Mode {
        Up,
        /// 503 to everything.
        Unavailable,
        /// Never answers in time.
        Hang,
        /// 422 to every PUT.
        RefusePuts,
        /// Lookups answered, 503 to every PUT.
        PutsUnavailable,
    }

    #[derive(Default)]
    pub struct State {
        pub members: Mutex<HashMap<String, Value>>,
        /// Every accepted PUT: phone number, Idempotency-Key, body.
        pub puts: Mutex<Vec<(String, String, Value)>>,
        pub mode: Mutex<Option<Mode>>,
    }

    impl State {
        pub fn set(&self, mode: Mode) {
            *self.mode.lock().unwrap() = Some(mode);
        }
        fn mode(&self) -> Mode {
            self.mode.lock().unwrap().unwrap_or(Mode::Up)
        }
        pub fn puts(&self) -> Vec<(String, String, Value)> {
            self.puts.lock().unwrap().clone()
        }
    }

    fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
        req.headers().get(name).and_then(|v| v.to_str().ok())
    }

    fn authorised(req: &HttpRequest) -> bool {
        header(req, "authorization") == Some(&format!("Bearer {TOKEN}"))
    }

    /// The answer to any request while the CRM is down or the token is wrong; `None` to serve it.
    async fn refusal(req: &HttpRequest, state: &State) -> Option<HttpResponse> {
        match state.mode() {
            Mode::Unavailable => Some(HttpResponse::ServiceUnavailable().finish()),
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Some(HttpResponse::GatewayTimeout().finish())
            }
            Mode::Up | Mode::RefusePuts | Mode::PutsUnavailable => {
                (!authorised(req)).then(|| HttpResponse::Unauthorized().finish())
            }
        }
    }

    async fn get_member(
        req: HttpRequest,
        phone: web::Path<String>,
        state: web::Data<State>,
    ) -> HttpResponse {
        if let Some(answer) = refusal(&req, &state).await {
            return answer;
        }
        match state.members.lock().unwrap().get(phone.as_str()) {
            Some(m) => HttpResponse::Ok().json(m),
            None => HttpResponse::NotFound().finish(),
        }
    }

    async fn put_member(
        req: HttpRequest,
        phone: web::Path<String>,
        body: web::Json<Value>,
        state: web::Data<State>,
    ) -> HttpResponse {
        if let Some(answer) = refusal(&req, &state).await {
            return answer;
        }
        match state.mode() {
            Mode::RefusePuts => {
                return HttpResponse::UnprocessableEntity().body("email is not accepted here");
            }
            Mode::PutsUnavailable => return HttpResponse::ServiceUnavailable().finish(),
            _ => {}
        }
        let key = header(&req, "idempotency-key")
            .unwrap_or_default()
            .to_owned();
        let body = body.into_inner();
        state
            .puts
            .lock()
            .unwrap()
            .push((phone.to_string(), key, body.clone()));
        let created = state
            .members
            .lock()
            .unwrap()
            .insert(phone.to_string(), body)
            .is_none();
        if created {
            HttpResponse::Created().finish()
        } else {
            HttpResponse::NoContent().finish()
        }
    }

    /// `GET /members?limit=&after=`: the members after `after`, in phone-number order.
    async fn list_members(
        req: HttpRequest,
        query: web::Query<HashMap<String, String>>,
        state: web::Data<State>,
    ) -> HttpResponse {
        if let Some(answer) = refusal(&req, &state).await {
            return answer;
        }
        let limit: usize = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100);
        let after = query.get("after").cloned().unwrap_or_default();
        let members = state.members.lock().unwrap();
        let mut phones: Vec<&String> = members.keys().filter(|p| **p > after).collect();
        phones.sort();
        let page: Vec<&Value> = phones.iter().take(limit).map(|p| &members[*p]).collect();
        HttpResponse::Ok().json(page)
    }

    /// Starts the CRM on a free port; its base URL and its state.
    pub fn start() -> (String, Arc<State>) {
        let state = web::Data::new(State::default());
        let shared = state.clone().into_inner();
        let server = HttpServer::new(move || {
            App::new().app_data(state.clone()).service(
                web::scope("/loyalty/v1")
                    .route("/members", web::get().to(list_members))
                    .route("/members/{phone}", web::get().to(get_member))
                    .route("/members/{phone}", web::put().to(put_member)),
            )
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        actix_web::rt::spawn(server.run());
        (format!("http://{addr}/loyalty/v1"), shared)
    }
}

use crm_server::Mode;
use lanehub::members::CrmMembers;
use lanehub::members::crm::Backoff;
use lanehub::store::Store;

const CRM_TIMEOUT: Duration = Duration::from_millis(300);

fn crm(base_url: &str, store: &Store) -> CrmMembers {
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    crm_with(base_url, store, crm_server::TOKEN, backoff)
}

/// The CRM provider for the store "oslo" with `token` and delivery `backoff`.
fn crm_with(base_url: &str, store: &Store, token: &str, backoff: Backoff) -> CrmMembers {
    let token = token.to_owned().into();
    CrmMembers::new(base_url, token, CRM_TIMEOUT, "oslo", store.clone(), backoff).unwrap()
}

/// The CRM provider at `base_url` on a new store; the store's directory (removed when dropped).
async fn crm_on_a_new_store(base_url: &str) -> (tempfile::TempDir, Store, CrmMembers) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let crm = crm(base_url, &store);
    (dir, store, crm)
}

/// Runs the delivery task's steps until the outbox is empty (or holds only refused entries),
/// or `attempts` delivery attempts were made, waiting out each backoff.
async fn deliver(crm: &CrmMembers, attempts: usize) {
    let mut made = 0;
    while made < attempts {
        match crm.deliver_next().await {
            None => made += 1,
            Some(wait) if wait >= lanehub::members::crm::OUTBOX_IDLE_POLL => return,
            Some(wait) => tokio::time::sleep(wait).await,
        }
    }
}

#[actix_web::test]
async fn crm_lookups_answer_member_non_member_or_unknown_within_the_timeout() {
    let (url, state) = crm_server::start();
    let (_dir, store, crm) = crm_on_a_new_store(&url).await;
    state.members.lock().unwrap().insert(
        "4791234567".into(),
        serde_json::json!({
            "phoneNumber": "4791234567", "name": "Kari Nordmann", "email": "kari@example.no",
            "consents": [{"id": "terms", "accepted": true, "required": true, "text": "Vilkår"}],
            "enrolledAt": "2025-03-01T09:30:00Z", "tier": "gold"
        }),
    );
    let kari: Msisdn = "4791234567".parse().unwrap();
    let ola: Msisdn = "4798765432".parse().unwrap();
    let found = crm.member(&kari).await.unwrap().unwrap();
    assert_eq!(found.name, "Kari Nordmann");
    assert_eq!(found.consents[0].id, "terms");
    assert_eq!(crm.member(&ola).await.unwrap(), None);

    for mode in [Mode::Unavailable, Mode::Hang] {
        state.set(mode);
        let started = tokio::time::Instant::now();
        let e = crm.member(&kari).await.unwrap_err();
        assert!(
            started.elapsed() < CRM_TIMEOUT + Duration::from_millis(500),
            "{mode:?}: {:?}",
            started.elapsed()
        );
        assert_eq!(e.kind(), "provider", "{mode:?}: {e}");
        assert!(!e.to_string().contains("4791234567"), "{e}");
    }
    // A wrong token is no answer either.
    state.set(Mode::Up);
    let backoff = lanehub::members::crm::DELIVERY_BACKOFF;
    let wrong = crm_with(&url, &store, "not-the-token", backoff);
    let e = wrong.member(&kari).await.unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
}

#[actix_web::test]
async fn crm_enrollments_go_through_the_outbox_in_order_and_survive_an_outage() {
    let (url, state) = crm_server::start();
    let (_dir, store, crm) = crm_on_a_new_store(&url).await;
    let ola = member("4798765432", "Ola", "2");

    // The CRM is down: the enrollment is stored at once, and Ola counts as a member here.
    state.set(Mode::Unavailable);
    assert_eq!(
        crm.upsert_member(ola.clone()).await.unwrap(),
        Upserted::Inserted
    );
    assert_eq!(store.outbox().await.unwrap().len(), 1);
    let known = crm.member(&ola.phone_number).await.unwrap().unwrap();
    assert_eq!(known.name, "Ola");
    deliver(&crm, 3).await;
    let entry = &store.outbox().await.unwrap()[0];
    assert_eq!(entry.attempts, 3);
    assert!(entry.last_error.as_deref().unwrap().contains("503"));
    assert!(state.puts().is_empty());

    // Back up: delivered, with the documented body and one Idempotency-Key for every attempt.
    state.set(Mode::Up);
    let kari = member("4791234567", "Kari", "1");
    crm.upsert_member(kari.clone()).await.unwrap();
    deliver(&crm, 10).await;
    assert!(store.outbox().await.unwrap().is_empty());
    let puts = state.puts();
    assert_eq!(
        puts.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        ["4798765432", "4791234567"],
        "delivered in the order enrolled"
    );
    assert_eq!(puts[0].1, entry.idempotency_key);
    assert_eq!(
        puts[0].2,
        serde_json::json!({
            "phoneNumber": "4798765432", "name": "Ola", "email": "kari@example.no",
            "consents": [{"id": "marketing", "accepted": true, "required": false,
                          "text": "Tilbud på e-post"}],
            "enrolledAt": "2024-05-01T10:00:00.123456Z",
            "enrolledLane": "2", "enrolledStore": "oslo"
        })
    );
    // Now the CRM itself knows Ola.
    assert_eq!(
        crm.member(&ola.phone_number).await.unwrap().unwrap().name,
        "Ola"
    );
}

#[actix_web::test]
async fn a_crm_refusal_is_kept_until_retried_and_a_restart_loses_nothing() {
    let (url, state) = crm_server::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store = Store::open(&data).await.unwrap();
        let crm = crm(&url, &store);
        state.set(Mode::RefusePuts);
        crm.upsert_member(member("4790000001", "Nora", "1"))
            .await
            .unwrap();
        deliver(&crm, 3).await;
        let entries = store.outbox().await.unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entries[0].refused_at.is_some(), "{entries:?}");
        assert!(entries[0].last_error.as_deref().unwrap().contains("422"));
        // A refused enrollment is no member.
        assert_eq!(crm.member(&entries[0].phone_number).await.unwrap(), None);
        // The CRM goes down; five more enrollments wait while lanehub stops.
        state.set(Mode::Unavailable);
        for i in 2..7 {
            crm.upsert_member(member(&format!("479000000{i}"), "X", "1"))
                .await
                .unwrap();
        }
        deliver(&crm, 2).await;
    }
    // lanehub starts again; the CRM is back.
    state.set(Mode::Up);
    let settings = lanehub::config::StoreSettings {
        name: "oslo".into(),
        data_dir: data.clone(),
        journal_retention: Duration::from_secs(90 * 24 * 60 * 60),
    };
    let store = Store::open(&data).await.unwrap();
    let crm = crm(&url, &store);
    deliver(&crm, 20).await;
    let delivered: Vec<String> = state.puts().into_iter().map(|p| p.0).collect();
    assert_eq!(
        delivered,
        (2..7).map(|i| format!("479000000{i}")).collect::<Vec<_>>()
    );
    let left = store.outbox().await.unwrap();
    assert_eq!(left.len(), 1, "only the refused one stays");
    let listing = lanehub::members::cli::render(&left, chrono::Utc::now());
    assert!(
        listing.contains("refused") && listing.contains("422"),
        "{listing}"
    );
    assert!(
        !listing.contains("4790000001"),
        "phone numbers are masked: {listing}"
    );

    // The operator retries it (as `lanehub members outbox retry ID` does) and it is delivered.
    let id = left[0].id;
    let retried = tokio::task::spawn_blocking(move || {
        lanehub::store::admin::outbox_retry(&settings, Some(id))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(retried, 1);
    deliver(&crm, 5).await;
    assert!(store.outbox().await.unwrap().is_empty());
    assert_eq!(state.puts().last().unwrap().0, "4790000001");
}

// ---------------------------------------------------------------------------------------------
// Whole lanehubs with a provider other than SQLite.

mod app {
    use std::time::Duration;

    use futures_util::StreamExt;
    use lanehub::config::Settings;
    use lanehub::startup::Application;
    use serde_json::{Value, json};
    use tokio_tungstenite::tungstenite::Message;

    pub const LANE1: &str = "demo-lane-1-token";
    pub const KARI_QR: &str = "https://qr.vipps.no/28/2/01/031/4791234567?v=1";
    pub const OLA_QR: &str = "https://qr.vipps.no/28/2/01/031/4798765432?v=1";

    /// Built-in settings on free ports, a private data dir, customers who answer at once.
    pub fn settings(data_dir: &std::path::Path, store: &str) -> Settings {
        let mut s = Settings::load(None, Vec::new()).unwrap();
        s.api.listen = "127.0.0.1:0".parse().unwrap();
        s.sim.listen = "127.0.0.1:0".parse().unwrap();
        s.store.data_dir = data_dir.to_owned();
        s.store.name = store.to_owned();
        for c in &mut s.sim.customers {
            c.payment_delay = Duration::from_millis(50);
            c.login_delay = Duration::from_millis(50);
        }
        s.sim.login_interval = Duration::from_secs(1);
        s.session.payment_first_poll = Duration::from_millis(200);
        s.session.payment_poll_interval = Duration::from_millis(200);
        s
    }

    pub struct Running {
        pub address: String,
        pub sim_url: String,
        pub client: reqwest::Client,
    }

    pub fn spawn(settings: Settings) -> Running {
        let app = Application::build(settings).expect("lanehub builds");
        let address = format!("http://{}", app.addr());
        let sim_url = app.simulator().unwrap().base_url();
        actix_web::rt::spawn(app.run_until_stopped());
        Running {
            address,
            sim_url,
            client: reqwest::Client::new(),
        }
    }

    impl Running {
        pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
            let res = self
                .client
                .post(format!("{}{path}", self.address))
                .bearer_auth(LANE1)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json().await.unwrap_or(Value::Null))
        }

        pub async fn get(&self, url: &str) -> Value {
            self.client
                .get(url)
                .bearer_auth(LANE1)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        }

        /// Lane 1's events, from its snapshot on.
        pub async fn events(&self) -> Events {
            let url = format!(
                "{}/api/v1/lanes/1/events?access_token={LANE1}",
                self.address.replacen("http", "ws", 1)
            );
            for _ in 0..100 {
                if let Ok((socket, _)) = tokio_tungstenite::connect_async(&url).await {
                    return Events { socket };
                }
                // The lanes start right after the listener.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("lane 1's events do not open");
        }

        /// Scans `qr` at lane 1.
        pub async fn scan(&self, qr: &str) -> (u16, Value) {
            self.post("/api/v1/lanes/1/scans", json!({ "text": qr }))
                .await
        }

        /// Scans Ola's QR, waits (at most `limit`) until lane 1 finds him no member, enrolls him
        /// and waits until the cashier is told he is enrolled.
        pub async fn enroll_ola(&self, events: &mut Events, limit: Duration) {
            self.scan(OLA_QR).await;
            events.until_message("non_member", limit).await;
            let (status, answer) = self.post("/api/v1/lanes/1/enroll", Value::Null).await;
            assert_eq!(status, 200, "{answer}");
            events
                .until_message("enrollment_completed", Duration::from_secs(20))
                .await;
        }

        pub async fn pay(&self) -> (u16, Value) {
            self.post(
                "/api/v1/lanes/1/payment",
                json!({
                    "amount": {"value": 4000, "currency": "NOK"},
                    "description": "Groceries",
                    "receiptNumber": "R-1",
                    "orderLines": [{"name": "Bag", "id": "7038010000002", "quantity": 1,
                        "unitPrice": 4000, "totalAmount": 4000, "taxAmount": 800,
                        "taxPercentage": 25}]
                }),
            )
            .await
        }
    }

    pub struct Events {
        socket: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    }

    impl Events {
        /// Reads events until the cashier message is `code`, within `limit`; the snapshot then.
        pub async fn until_message(&mut self, code: &str, limit: Duration) -> Value {
            let read = async {
                let mut seen = vec![];
                loop {
                    match self.socket.next().await {
                        Some(Ok(Message::Text(text))) => {
                            let ev: Value = serde_json::from_str(&text).unwrap();
                            let snapshot = ev.get("snapshot").cloned().unwrap_or(ev.clone());
                            if snapshot["message"]["code"] == code {
                                return snapshot;
                            }
                            seen.push(snapshot["message"]["code"].clone());
                        }
                        Some(Ok(_)) => continue,
                        other => panic!("the WebSocket ended: {other:?}; seen {seen:?}"),
                    }
                }
            };
            tokio::time::timeout(limit, read)
                .await
                .unwrap_or_else(|_| panic!("no `{code}` within {limit:?}"))
        }
    }
}

/// The store "oslo" with a CRM answering in `mode` as its members provider: the CRM's state,
/// the data directory (removed when dropped), lanehub and lane 1's events.
async fn lanehub_with_crm(
    mode: Mode,
) -> (
    Arc<crm_server::State>,
    tempfile::TempDir,
    app::Running,
    app::Events,
) {
    let (url, state) = crm_server::start();
    state.set(mode);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = app::settings(dir.path(), "oslo");
    settings.members.provider = MembersProvider::Http;
    settings.members.http_base_url = url;
    settings.members.http_token = crm_server::TOKEN.to_owned().into();
    settings.members.http_timeout = CRM_TIMEOUT;
    let lanehub = app::spawn(settings);
    let events = lanehub.events().await;
    (state, dir, lanehub, events)
}

#[actix_web::test]
async fn a_crm_that_does_not_answer_never_blocks_the_payment() {
    let (_state, _dir, lanehub, mut events) = lanehub_with_crm(Mode::Hang).await;

    let started = tokio::time::Instant::now();
    let (status, _) = lanehub.scan(app::KARI_QR).await;
    assert_eq!(status, 200);
    let lane = events
        .until_message("membership_unknown", Duration::from_secs(5))
        .await;
    // Identified within the CRM's timeout and a little.
    assert!(
        started.elapsed() < CRM_TIMEOUT + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        lane["session"]["customer"]["member"],
        serde_json::Value::Null
    );
    let (status, answer) = lanehub.pay().await;
    assert_eq!(status, 200, "{answer}");
    events
        .until_message("payment_approved", Duration::from_secs(10))
        .await;
    // The check-in went out as for a non-member.
    let checkins = lanehub
        .get(&format!(
            "{}/sim/v1/checkins?phoneNumber=4791234567",
            lanehub.sim_url
        ))
        .await;
    assert_eq!(checkins[0]["isMember"], false, "{checkins}");
}

#[actix_web::test]
async fn an_enrollment_at_a_lane_reaches_the_crm_after_it_comes_back() {
    let (state, _dir, lanehub, mut events) = lanehub_with_crm(Mode::PutsUnavailable).await;

    // The cashier is told "enrolled" while the CRM refuses to store anything.
    lanehub
        .enroll_ola(&mut events, Duration::from_secs(5))
        .await;
    assert!(state.puts().is_empty());
    // Ola is a member at this store already, for his next checkout.
    let (status, answer) = lanehub
        .post("/api/v1/lanes/1/reset", serde_json::Value::Null)
        .await;
    assert_eq!(status, 200, "{answer}");
    lanehub.scan(app::OLA_QR).await;
    events
        .until_message("member_welcomed", Duration::from_secs(5))
        .await;

    // The CRM comes back: the outbox delivers without anyone's help, in order: first the demo
    // member the simulator mode seeded at start, then Ola.
    state.set(Mode::Up);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.puts().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the enrollments never reached the CRM: {:?}",
            state.puts()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let puts = state.puts();
    assert_eq!(puts[0].0, "4791234567", "the seeded demo member Kari");
    let (phone, _, body) = &puts[1];
    assert_eq!(phone, "4798765432");
    assert_eq!(body["name"], "Ola Nordmann");
    assert_eq!(body["enrolledLane"], "1");
    assert_eq!(body["enrolledStore"], "oslo");
}

#[actix_web::test]
async fn a_customer_enrolled_at_one_lanehub_is_a_member_at_another_sharing_postgres() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.database("chain").await;
    let (oslo_dir, bergen_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with_pg = |dir: &std::path::Path, name: &str| {
        let mut s = app::settings(dir, name);
        s.members.provider = MembersProvider::Postgres;
        s.members.postgres_url = url.clone().into();
        s
    };
    let oslo = app::spawn(with_pg(oslo_dir.path(), "oslo"));
    let bergen = app::spawn(with_pg(bergen_dir.path(), "bergen"));

    // Ola is no member anywhere yet; he enrolls in Oslo.
    let mut oslo_events = oslo.events().await;
    oslo.enroll_ola(&mut oslo_events, Duration::from_secs(10))
        .await;

    // In Bergen he is welcomed as a member, and the club knows where he joined.
    let mut bergen_events = bergen.events().await;
    bergen.scan(app::OLA_QR).await;
    bergen_events
        .until_message("member_welcomed", Duration::from_secs(10))
        .await;
    let club = PostgresMembers::new(&url, "test").unwrap();
    let ola: Msisdn = "4798765432".parse().unwrap();
    assert_eq!(
        club.enrolled_store(&ola).await.unwrap().as_deref(),
        Some("oslo")
    );
    assert_eq!(
        club.member(&ola)
            .await
            .unwrap()
            .unwrap()
            .enrolled_lane
            .unwrap()
            .as_str(),
        "1"
    );
    // Both stores seeded the demo member Kari into the one club.
    let kari: Msisdn = "4791234567".parse().unwrap();
    assert!(club.member(&kari).await.unwrap().is_some());
}

// ---------------------------------------------------------------------------------------------
// `lanehub members import|export|outbox` with each provider, through the real binary.

fn lanehub(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanehub"));
    cmd.args(args).env_remove("LANEHUB_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("lanehub runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const CLUB_CSV: &str = "phone_number,name,email,consents,enrolled_at,enrolled_lane,source
4791234567,Kari Nordmann,kari@example.no,,2024-05-01T10:00:00Z,1,import
4798765432,Ola Nordmann,,,2024-05-02T10:00:00Z,,import
";

/// The store "oslo" on `data` with the members `provider` and its `settings`.
fn members_env<'a>(
    data: &'a std::path::Path,
    provider: &'a str,
    settings: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("LANEHUB__STORE__DATA_DIR", data.to_str().unwrap()),
        ("LANEHUB__STORE__NAME", "oslo"),
        ("LANEHUB__MEMBERS__PROVIDER", provider),
    ];
    env.extend_from_slice(settings);
    env
}

/// `lanehub members import` of [`CLUB_CSV`], written to `dir`, which must succeed; its stdout.
fn import_club(dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let csv = dir.join("club.csv");
    std::fs::write(&csv, CLUB_CSV).unwrap();
    let (ok, out, err) = lanehub(&["members", "import", csv.to_str().unwrap()], env);
    assert!(ok, "{out}{err}");
    out
}

#[tokio::test]
async fn members_import_and_export_work_on_the_shared_postgres_club() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.database("club").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = members_env(
        &data,
        "postgres",
        &[("LANEHUB__MEMBERS__POSTGRES_URL", url.as_str())],
    );
    let out = import_club(dir.path(), &env);
    assert!(out.contains("2 new"), "{out}");
    let club = PostgresMembers::new(&url, "test").unwrap();
    assert_eq!(club.member_count().await.unwrap(), 2);
    let kari: Msisdn = "4791234567".parse().unwrap();
    assert_eq!(
        club.enrolled_store(&kari).await.unwrap().as_deref(),
        Some("oslo")
    );
    // The store's own database holds no member: the club is in PostgreSQL.
    assert!(!data.join("lanehub.db").exists());
    let (ok, out, err) = lanehub(&["members", "export"], &env);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.contains("4791234567,Kari Nordmann") && out.contains("4798765432"),
        "{out}"
    );
}

#[test]
fn members_import_with_the_crm_provider_queues_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = members_env(
        &data,
        "http",
        &[
            (
                "LANEHUB__MEMBERS__HTTP_BASE_URL",
                "https://crm.example/loyalty/v1",
            ),
            ("LANEHUB__MEMBERS__HTTP_TOKEN", "hunter2token"),
        ],
    );
    let out = import_club(dir.path(), &env);
    assert!(out.contains("queued 2 members"), "{out}");
    let (ok, out, err) = lanehub(&["members", "outbox"], &env);
    assert!(ok, "{err}");
    assert_eq!(out.matches("waiting").count(), 2, "{out}");
    assert!(
        out.contains("47******67") && !out.contains("4791234567"),
        "{out}"
    );
    let (ok, _, err) = lanehub(&["members", "outbox", "retry"], &env);
    assert!(!ok && err.contains("--all"), "{err}");
    let (ok, out, err) = lanehub(&["members", "outbox", "retry", "--all"], &env);
    assert!(ok, "{err}");
    assert!(out.starts_with("2 outbox entries"), "{out}");
    let (ok, out, err) = lanehub(&["members", "outbox", "retry", "99"], &env);
    assert!(!ok && err.contains("no entry 99"), "{out}{err}");
    let (ok, _, err) = lanehub(&["members", "export"], &env);
    assert!(!ok && err.contains("members.http_base_url"), "{err}");
    assert!(!err.contains("hunter2token"));
    // A shell without the service's secrets can still back up and list the outbox.
    let without_token = &env[..env.len() - 1];
    let (ok, _, err) = lanehub(&["members", "outbox"], without_token);
    assert!(ok, "{err}");
    let backup = dir.path().join("backup.db");
    let (ok, _, err) = lanehub(&["backup", backup.to_str().unwrap()], without_token);
    assert!(ok, "{err}");
}

#[actix_web::test]
async fn members_export_with_the_crm_provider_reads_every_page_of_the_crms_listing() {
    let (url, state) = crm_server::start();
    // One more member than a page holds, so the export must ask for a second page.
    let count = lanehub::members::crm::LIST_PAGE + 1;
    for i in 0..count {
        let phone = format!("4790{i:06}");
        state.members.lock().unwrap().insert(
            phone.clone(),
            serde_json::json!({"phoneNumber": phone, "name": format!("Member {i}"),
                "email": "", "consents": [], "enrolledAt": "2026-12-01T10:00:00Z"}),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // `lanehub members export` with `token`; the CLI blocks: it runs off the test's runtime,
    // which serves the CRM.
    let export = |token: &str| {
        let env = [
            (
                "LANEHUB__STORE__DATA_DIR",
                data.to_str().unwrap().to_owned(),
            ),
            ("LANEHUB__STORE__NAME", "oslo".to_owned()),
            ("LANEHUB__MEMBERS__PROVIDER", "http".to_owned()),
            ("LANEHUB__MEMBERS__HTTP_BASE_URL", url.clone()),
            ("LANEHUB__MEMBERS__HTTP_TOKEN", token.to_owned()),
        ];
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            lanehub(&["members", "export"], &env)
        })
    };
    let (ok, out, err) = export(crm_server::TOKEN).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), count + 1, "a header and every member");
    assert!(out.contains("4790000000,Member 0") && out.contains(&format!("4790{:06}", count - 1)));

    // A wrong token is named, never printed.
    let (ok, _, err) = export("not-the-crm-token").await.unwrap();
    assert!(!ok && err.contains("401"), "{err}");
    assert!(!err.contains("not-the-crm-token"), "{err}");
}
