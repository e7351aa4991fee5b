//! The real binary: version, check-config, `run`/`sim` coming up on their listeners, and what
//! `run` refuses or warns about before it lets the network in.

use std::io::BufReader;
use std::process::{Command, Stdio};

use crate::common::sim::merchant_token;

use crate::common::process::{BIN, Process, announced_url, succeeded};

/// Starts the binary and returns it with the URLs it announced on stdout.
fn start(args: &[&str], env: &[(&str, &str)], lines: usize) -> (Process, Vec<String>) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("LANEHUB__STORE__DATA_DIR", crate::common::temp_dir("cli"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let urls = (0..lines).map(|_| announced_url(&mut reader)).collect();
    (Process::killed_at_end(child), urls)
}

/// A runtime for what these synchronous tests ask of the binary they started.
fn runtime() -> tokio::runtime::Runtime {
    lanehub::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn version_is_printed() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        format!("lanehub {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_accepts_the_shipped_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/lanehub.toml");
    let args = ["check-config", path];
    let stdout = succeeded(Command::new(BIN).args(args).output().unwrap(), args);
    assert!(stdout.contains("configuration is valid"));
}

#[test]
fn check_config_names_file_key_and_problem() {
    let dir = crate::common::temp_dir("check");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[vipps]\nmode = \"cloud\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains("vipps.mode"), "{err}");
    assert!(err.contains("unknown variant"), "{err}");
}

#[test]
fn run_serves_healthz_with_the_embedded_simulator() {
    let (_child, urls) = start(
        &["run"],
        &[
            ("LANEHUB__API__LISTEN", "127.0.0.1:0"),
            ("LANEHUB__SIM__LISTEN", "127.0.0.1:0"),
        ],
        2,
    );
    runtime().block_on(async {
        let health = reqwest::get(format!("{}/healthz", urls[0])).await.unwrap();
        assert_eq!(health.status(), 200);
        let client = reqwest::Client::new();
        merchant_token(&client, &urls[1]).await;
    });
}

#[test]
fn sim_serves_the_simulator_alone() {
    let (_child, urls) = start(&["sim", "--listen", "127.0.0.1:0"], &[], 1);
    runtime().block_on(async {
        let res = reqwest::get(format!("{}/sim/v1/customers", urls[0]))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let customers: serde_json::Value = res.json().await.unwrap();
        assert!(
            customers
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["phoneNumber"] == "4791234567")
        );
        // The simulator alone does not serve lanehub's own API.
        let health = reqwest::get(format!("{}/healthz", urls[0])).await.unwrap();
        assert_eq!(health.status(), 404);
    });
}

#[actix_web::test]
async fn run_keeps_serving_when_nobody_reads_its_stdout() {
    lanehub::install_crypto_provider();
    // A free port, so the address need not be read from stdout.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .arg("run")
        .env("LANEHUB__STORE__DATA_DIR", crate::common::temp_dir("cli"))
        .env("LANEHUB__API__LISTEN", format!("127.0.0.1:{port}"))
        .env("LANEHUB__SIM__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    // The reader goes away before lanehub announces itself: its write meets a closed pipe.
    drop(child.stdout.take());
    let mut running = Process::killed_at_end(child);

    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status() == 200
        {
            break;
        }
        assert!(
            running.child.try_wait().unwrap().is_none(),
            "lanehub exited: {:?}",
            running.child.try_wait()
        );
        assert!(tokio::time::Instant::now() < deadline, "never healthy");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "lanehub exited"
    );
}

/// Real tokens, so that a test meets the check it is about rather than the demo-token ones.
const REAL_TOKENS: [(&str, &str); 3] = [
    ("LANEHUB__API__ADMIN_TOKEN", "a-real-admin-token-1234"),
    ("LANEHUB__LANES__0__TOKEN", "a-real-lane-token-0001"),
    ("LANEHUB__LANES__1__TOKEN", "a-real-lane-token-0002"),
];

/// Runs `lanehub args…`, which must exit within 20 s; its exit code and stderr.
fn exit_of(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = crate::common::temp_dir("exit");
    let err_path = dir.join("stderr");
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("LANEHUB_CONFIG")
        .env("LANEHUB__STORE__DATA_DIR", dir.join("data"))
        .env("LANEHUB__API__LISTEN", "127.0.0.1:0")
        .env("LANEHUB__SIM__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Process::killed_at_end(cmd.spawn().expect("binary starts"));
    // 800 polls 25 ms apart: 20 s.
    let mut polls = 0;
    let status = loop {
        if let Some(status) = child.child.try_wait().unwrap() {
            break status;
        }
        polls += 1;
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        assert!(polls < 800, "lanehub {args:?} still runs; stderr: {stderr}");
        std::thread::sleep(std::time::Duration::from_millis(25));
    };
    (status.code(), std::fs::read_to_string(&err_path).unwrap())
}

#[test]
fn run_refuses_what_must_not_face_a_network() {
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = REAL_TOKENS.to_vec();
        env.extend_from_slice(extra);
        env
    };
    let cases: [(Vec<(&str, &str)>, &str); 5] = [
        // Remote mode: https only, but http to a loopback `lanehub sim`.
        (
            with(&[
                ("LANEHUB__VIPPS__MODE", "remote"),
                ("LANEHUB__VIPPS__BASE_URL", "http://192.0.2.10:8090"),
            ]),
            "vipps.base_url",
        ),
        (
            with(&[
                ("LANEHUB__VIPPS__MODE", "remote"),
                ("LANEHUB__VIPPS__BASE_URL", "http://127.0.0.1:9"),
                ("LANEHUB__API__TEST_HOOKS", "true"),
            ]),
            "api.test_hooks",
        ),
        // Beyond loopback with the shipped demo tokens.
        (vec![("LANEHUB__API__LISTEN", "0.0.0.0:0")], "api.listen"),
        // A lane token that is also the admin's, or another lane's.
        (
            with(&[("LANEHUB__LANES__1__TOKEN", "a-real-admin-token-1234")]),
            "lanes[1].token",
        ),
        (
            with(&[("LANEHUB__LANES__1__TOKEN", "a-real-lane-token-0001")]),
            "lanes[1].token",
        ),
    ];
    for (env, key) in cases {
        let (code, stderr) = exit_of(&["run"], &env);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(key), "{env:?}: {stderr}");
        for (_, token) in REAL_TOKENS {
            assert!(!stderr.contains(token), "a token in: {stderr}");
        }
    }
}

#[test]
fn run_never_prints_a_secret_of_a_broken_configuration() {
    const SECRET: &str = "Zq7-secret-value-xK2";
    let dir = crate::common::temp_dir("secret");
    for (i, text) in [
        format!("[api]\nadmin_token = \"{SECRET}\n"),
        "[[lanes]]\nid = \"1\"\ntoken = 918273645546372819\n".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(format!("broken-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        let (code, stderr) = exit_of(&["run", "--config", path], &[]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(path), "{stderr}");
        assert!(
            !stderr.contains(SECRET) && !stderr.contains("918273645546372819"),
            "a secret in: {stderr}"
        );
    }
    let (code, stderr) = exit_of(
        &["run"],
        &[
            ("LANEHUB__API__ADMIN_TOKEN", SECRET),
            ("LANEHUB__VIPPS__MODE", SECRET),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("vipps.mode"), "{stderr}");
    assert!(!stderr.contains(SECRET), "a secret in: {stderr}");
}

#[actix_web::test]
async fn run_beyond_loopback_without_tls_warns_at_start() {
    const WARNING: &str = "reachable from the network without TLS";
    let dir = crate::common::temp_dir("warn");
    let mut env: Vec<(&str, String)> = REAL_TOKENS
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    env.push((
        "LANEHUB__STORE__DATA_DIR",
        dir.join("data").display().to_string(),
    ));
    env.push(("LANEHUB__SIM__LISTEN", "127.0.0.1:0".into()));
    for (listen, warned) in [("127.0.0.1:0", false), ("0.0.0.0:0", true)] {
        let log = dir.join(format!("{warned}.log"));
        let mut env = env.clone();
        env.push(("LANEHUB__API__LISTEN", listen.into()));
        let (process, url) = crate::common::process::Process::start(&["run"], &env, &log);
        let port = url.rsplit(':').next().unwrap();
        let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        process.kill();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.contains(WARNING), warned, "{listen}: {text}");
    }
}

#[actix_web::test]
async fn run_stops_accepting_at_max_connections_and_says_so() {
    use futures_util::StreamExt;
    const LIMIT_LINE: &str = "connection limit reached (api.max_connections)";
    let dir = crate::common::temp_dir("conns");
    let log = dir.join("lanehub.log");
    let env = [
        (
            "LANEHUB__STORE__DATA_DIR",
            dir.join("data").display().to_string(),
        ),
        ("LANEHUB__API__LISTEN", "127.0.0.1:0".to_owned()),
        ("LANEHUB__SIM__LISTEN", "127.0.0.1:0".to_owned()),
        ("LANEHUB__API__MAX_CONNECTIONS", "2".to_owned()),
    ];
    let (_process, url) = crate::common::process::Process::start(&["run"], &env, &log);
    let ws = url.replacen("http", "ws", 1);
    let open =
        |lane: &str| format!("{ws}/api/v1/lanes/{lane}/events?access_token=demo-admin-token");
    // Two WebSockets hold both connections.
    let (mut first, _) = tokio_tungstenite::connect_async(open("1")).await.unwrap();
    let (mut second, _) = tokio_tungstenite::connect_async(open("2")).await.unwrap();
    for socket in [&mut first, &mut second] {
        socket.next().await.unwrap().unwrap();
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(1500))
        .build()
        .unwrap();
    let health = format!("{url}/healthz");
    let refused = client.get(&health).send().await;
    assert!(
        refused.as_ref().is_err_and(|e| e.is_timeout()),
        "a third connection was served: {refused:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches(LIMIT_LINE).count(), 1, "{text}");

    // One closes: the waiting connection is served.
    first.close(None).await.unwrap();
    drop(first);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let res = client.get(&health).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// `lanehub check-vipps` with the built-in defaults pointed at `sim`, changed by `env`: its exit
/// code and stdout.
fn check_vipps(sim: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("check-vipps")
        .env_remove("LANEHUB_CONFIG")
        .env("LANEHUB__VIPPS__BASE_URL", sim)
        .env("LANEHUB__VIPPS__REQUEST_TIMEOUT", "5s")
        .env(
            "LANEHUB__STORE__DATA_DIR",
            crate::common::temp_dir("check-vipps"),
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("check-vipps runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The line of `check` in a report.
fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| {
            l.get(4..)
                .is_some_and(|rest| rest.starts_with(&format!("{check}:")))
        })
        .unwrap_or_else(|| panic!("no line for {check} in:\n{report}"))
}

#[test]
fn check_vipps_passes_with_right_credentials_and_names_the_wrong_one() {
    let (_sim, urls) = start(&["sim", "--listen", "127.0.0.1:0"], &[], 1);
    let sim = urls[0].as_str();

    let (code, report) = check_vipps(sim, &[]);
    assert_eq!(code, Some(0), "{report}");
    for check in [
        "access token",
        "merchant serial number",
        "login discovery",
        "login scopes",
        "login client",
        "check-in",
    ] {
        assert!(line(&report, check).starts_with('✔'), "{report}");
    }
    assert!(line(&report, "webhooks").starts_with('⚠'), "{report}");
    assert!(report.contains("Ready for payments."), "{report}");

    let wrong = [
        (
            "LANEHUB__VIPPS__CLIENT_SECRET",
            "not-the-secret",
            "access token",
            "vipps.client_secret",
        ),
        (
            "LANEHUB__VIPPS__CLIENT_ID",
            "not-a-client",
            "access token",
            "vipps.client_id",
        ),
        (
            "LANEHUB__VIPPS__SUBSCRIPTION_KEY",
            "not-the-key",
            "access token",
            "vipps.subscription_key",
        ),
        (
            "LANEHUB__VIPPS__MERCHANT_SERIAL_NUMBER",
            "999999",
            "merchant serial number",
            "vipps.merchant_serial_number",
        ),
    ];
    for (var, value, check, names) in wrong {
        let (code, report) = check_vipps(sim, &[(var, value)]);
        assert_eq!(code, Some(1), "{var}: {report}");
        let failed = line(&report, check);
        assert!(
            failed.starts_with('✘') && failed.contains(names),
            "{var}: {report}"
        );
        if check != "access token" {
            // Only the wrong credential's line fails.
            assert!(
                line(&report, "access token").starts_with('✔'),
                "{var}: {report}"
            );
        }
        assert!(report.contains("Not ready for payments"), "{var}: {report}");
    }

    // Nothing was created at Vipps: no payment, no Login; check-ins only to a number nobody has.
    runtime().block_on(async {
        let get = |path: &'static str| async move {
            reqwest::get(format!("{sim}{path}"))
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        };
        for path in ["/sim/v1/payments", "/sim/v1/logins"] {
            assert_eq!(get(path).await, serde_json::json!([]), "{path}");
        }
        let checkins = get("/sim/v1/checkins").await;
        assert!(
            checkins
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["phoneNumber"] == "4700000000" && c["shown"].is_null()),
            "{checkins}"
        );
    });
}

#[test]
fn check_vipps_counts_the_webhook_registrations_for_the_public_url() {
    let (_sim, urls) = start(&["sim", "--listen", "127.0.0.1:0"], &[], 1);
    let sim = urls[0].as_str();
    let hook = "https://store.example/vipps/webhooks";
    let rt = runtime();
    let data = crate::common::temp_dir("check-vipps");
    let register = || {
        rt.block_on(async {
            let client = reqwest::Client::new();
            let token = merchant_token(&client, sim).await;
            let res = client
                .post(format!("{sim}/webhooks/v1/webhooks"))
                .bearer_auth(token)
                .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
                .header("Merchant-Serial-Number", "123456")
                .json(&serde_json::json!({"url": hook, "events": ["epayments.payment.created.v1"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            let registered: serde_json::Value = res.json().await.unwrap();
            registered["id"].as_str().unwrap().to_owned()
        })
    };
    let data_dir = data.to_str().unwrap();
    let env = [
        ("LANEHUB__VIPPS__WEBHOOK_PUBLIC_URL", hook),
        ("LANEHUB__STORE__DATA_DIR", data_dir),
    ];

    // check-vipps's webhooks line starts with `mark` and says all of `says`; its exit code and report.
    let webhooks = |mark: char, says: &[&str]| {
        let (code, report) = check_vipps(sim, &env);
        let webhooks = line(&report, "webhooks");
        assert!(
            webhooks.starts_with(mark) && says.iter().all(|s| webhooks.contains(s)),
            "{report}"
        );
        (code, report)
    };

    let (code, report) = webhooks('⚠', &["none registered"]);
    assert_eq!(code, Some(0), "{report}");

    let id = register();
    // No lanehub database yet: one registration is taken to be lanehub's.
    webhooks('✔', &["1 registration", "no lanehub database"]);
    // lanehub's database holds another registration's secret: this one is an orphan.
    let store = |held: &str| {
        let held = held.to_owned();
        rt.block_on(async {
            let store = lanehub::store::Store::open(&data).await.unwrap();
            store.put_setting("webhook.id", &held).await.unwrap();
            store.put_setting("webhook.url", hook).await.unwrap();
            store
                .put_secret_setting("webhook.secret", &"a-secret".to_owned().into())
                .await
                .unwrap();
        })
    };
    store("another-registration");
    webhooks('⚠', &["1 of them orphans"]);
    store(&id);
    let (_, report) = webhooks('✔', &[]);
    assert!(
        line(&report, "webhooks").ends_with("no orphans (1 in all)"),
        "{report}"
    );

    // A second one, as a registration whose answer was lost leaves: an orphan.
    register();
    let (code, report) = webhooks('⚠', &["2 registrations", "orphans"]);
    assert_eq!(
        code,
        Some(0),
        "webhooks are not needed for payments: {report}"
    );
}
