//! lanehub in-process, as zero2prod's `spawn_app()`: `Application::build` on free ports with a
//! private data directory and the embedded simulator, and [`Api`], the terminal API as the admin
//! calls it (also for a lanehub that runs as a child process).

use std::ops::Deref;

use lanehub::config::{LaneSettings, Settings};
use lanehub::domain::Msisdn;
use lanehub::startup::Application;
use lanehub::store::{MembershipStore, Store};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::sim::SimControl;
use super::{ADMIN, AMOUNT, PATIENCE, POLL, ms, temp_dir};

/// Settings on free ports with the embedded simulator and a private data dir.
pub fn test_settings() -> Settings {
    let mut settings = Settings::load(None, Vec::new()).expect("built-in defaults load");
    settings.api.listen = "127.0.0.1:0".parse().unwrap();
    settings.sim.listen = "127.0.0.1:0".parse().unwrap();
    settings.store.data_dir = temp_dir("data");
    settings
}

/// [`test_settings`] made fast, with the test hooks on: customers answer in 150 ms, payments
/// are read back every 250 ms, and enrollments store consents.
pub fn fast_settings() -> Settings {
    let mut s = test_settings();
    s.api.test_hooks = true;
    for c in &mut s.sim.customers {
        c.payment_delay = ms(150);
        c.login_delay = ms(150);
    }
    // The lane polls Login at most every second; the consent ping makes it poll at once.
    s.sim.login_interval = ms(200);
    s.session.payment_first_poll = ms(100);
    s.session.payment_poll_interval = ms(250);
    // The simulator's merchant has delegatedConsents activated: enrollments store consents.
    s.vipps.login_scopes.push("delegatedConsents".into());
    s
}

/// Lanes `ids`, each with the token `token-for-lane-<id>` and no scanner.
pub fn lanes(ids: &[&str]) -> Vec<LaneSettings> {
    ids.iter()
        .map(|id| LaneSettings {
            id: id.parse().unwrap(),
            token: format!("token-for-lane-{id}").into(),
            scanners: vec![],
        })
        .collect()
}

/// A lanehub running in this process with its embedded simulator. Used as its [`Api`].
pub struct TestApp {
    pub api: Api,
    pub sim: SimControl,
    pub store: Store,
    /// Removed when the app is dropped, if the test made it a temporary directory.
    _data: Option<tempfile::TempDir>,
}

impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// Starts lanehub inside the current actix system and returns at once.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

/// [`spawn_app`] with `settings`.
pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let app = Application::build(settings.clone()).expect("application builds");
    launch(app, &settings, None)
}

/// Runs a built application (a test may change it first, e.g. set simulator faults).
pub fn launch(app: Application, settings: &Settings, data: Option<tempfile::TempDir>) -> TestApp {
    let test_app = TestApp {
        api: Api::new(format!("http://{}", app.addr()), ADMIN),
        // The embedded simulator, or the one a remote-mode lanehub is pointed at.
        sim: SimControl::new(
            app.simulator()
                .map_or_else(|| settings.vipps.base_url.clone(), |sim| sim.base_url()),
        ),
        store: app.store().clone(),
        _data: data,
    };
    actix_web::rt::spawn(app.run_until_stopped());
    test_app
}

/// Starts lanehub on a temporary data directory and waits until it is ready: every lane up
/// and the simulator's members seeded into the club.
pub async fn start(settings: Settings) -> TestApp {
    start_on(settings, tempfile::tempdir().unwrap()).await
}

/// [`start`] on `data`, a data directory that may hold a journal already.
pub async fn start_on(mut settings: Settings, data: tempfile::TempDir) -> TestApp {
    settings.store.data_dir = data.path().to_owned();
    let app = Application::build(settings.clone()).expect("lanehub builds");
    let app = launch(app, &settings, Some(data));
    // Lanes attach once they have read their journal.
    for lane in &settings.lanes {
        app.wait_lane(&lane.id.to_string(), "up", |s| s["up"] == true)
            .await;
    }
    let members = settings.sim.customers.iter().filter(|c| c.member);
    wait_seeded(&app.store, members.map(|c| &c.phone_number)).await;
    app
}

/// Waits until the simulator's `members` are in the club: lanehub seeds them in the background
/// at start, and a scan before that would meet a non-member.
pub async fn wait_seeded(store: &Store, members: impl IntoIterator<Item = &Msisdn>) {
    let deadline = Instant::now() + PATIENCE;
    for phone in members {
        while store.member(phone).await.unwrap().is_none() {
            assert!(Instant::now() < deadline, "member {phone} was never seeded");
            tokio::time::sleep(POLL).await;
        }
    }
}

impl TestApp {
    /// Waits until the journal has closed every session (the close is written just after the
    /// outcome reaches the terminal).
    pub async fn assert_journal_closed(&self) {
        assert_journal_closed(&self.store).await;
    }
}

/// Waits until the journal in `store` has closed every session.
pub async fn assert_journal_closed(store: &Store) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let open = store.all_open_sessions().await.unwrap();
        if open.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "sessions left open: {open:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Asserts that the journal's last record of `session` on `lane` closes it with `outcome`.
pub async fn assert_closed_with(store: &Store, lane: &str, session: &str, outcome: &str) {
    let records = store
        .session_records(&lane.parse().unwrap(), session)
        .await
        .unwrap();
    let last = records.last().expect("the session is journalled");
    assert_eq!(
        (last.kind.as_str(), &last.payload["outcome"]),
        ("closed", &json!(outcome))
    );
}

/// lanehub's terminal API with a bearer token (the admin's unless said otherwise).
#[derive(Clone)]
pub struct Api {
    /// e.g. `http://127.0.0.1:41234`.
    pub address: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(address: String, token: &str) -> Api {
        Api {
            address,
            token: token.to_owned(),
            http: super::http_client(),
        }
    }

    /// `method path` with the token; the status, the content type and the body as JSON (null
    /// if it is none).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let url = format!("{}{path}", self.address);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = res.status().as_u16();
        let content_type = super::content_type(&res).to_owned();
        let text = res.text().await.unwrap_or_default();
        (
            status,
            content_type,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// [`Api::send`] without the content type.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, _, body) = self.send(method, path, body).await;
        (status, body)
    }

    /// GET `path` without a token; the answer as it came.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.address);
        let res = self.http.get(&url).send().await;
        res.unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// [`Api::call`] that must succeed; the body.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(method, path, body).await;
        assert!((200..300).contains(&status), "{path}: {status} {body}");
        body
    }

    /// A cashier command (`scans`, `payment`, `enroll`, `cancel`, `reset`) on `lane`.
    pub async fn command(&self, lane: &str, cmd: &str, body: Value) -> (u16, Value) {
        let path = format!("/api/v1/lanes/{lane}/{cmd}");
        self.call(reqwest::Method::POST, &path, Some(body)).await
    }

    pub async fn scan(&self, lane: &str, text: &str) -> (u16, Value) {
        self.command(lane, "scans", json!({ "text": text })).await
    }

    /// Asks for [`AMOUNT`] for groceries.
    pub async fn pay(&self, lane: &str) -> (u16, Value) {
        self.command(lane, "payment", payment_body()).await
    }

    /// The lane's snapshot.
    pub async fn lane(&self, lane: &str) -> Value {
        let path = format!("/api/v1/lanes/{lane}");
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "GET lane {lane}: {body}");
        body
    }

    /// Polls the lane's snapshot until `done` holds, for at most [`PATIENCE`].
    pub async fn wait_lane(&self, lane: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.wait_lane_until(lane, what, Instant::now() + PATIENCE, done)
            .await
    }

    /// Polls the lane's snapshot until `done` holds, failing at `deadline`.
    pub async fn wait_lane_until(
        &self,
        lane: &str,
        what: &str,
        deadline: Instant,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        loop {
            let snapshot = self.lane(lane).await;
            if done(&snapshot) {
                return snapshot;
            }
            assert!(
                Instant::now() < deadline,
                "lane {lane} never {what}: {snapshot}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the cashier's message `code` on `lane`.
    pub async fn wait_message(&self, lane: &str, code: &str) -> Value {
        self.wait_lane(lane, code, |s| s["message"]["code"] == code)
            .await
    }

    /// A sample's value from `/metrics`: the first series of `name` with all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .find(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

/// A payment request for [`AMOUNT`], for groceries.
pub fn payment_body() -> Value {
    json!({"amount": {"value": AMOUNT, "currency": "NOK"}, "description": "Groceries"})
}
