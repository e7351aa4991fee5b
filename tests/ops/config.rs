//! Configuration: layering, environment overrides, and errors that name source, key and problem.

use std::path::PathBuf;

use lanehub::config::{LoginClientAuth, Settings, SimProfile, VippsMode};
use secrecy::ExposeSecret;

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lanehub-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The built-in defaults with the environment `pairs` on top.
fn load_env(pairs: &[(&str, &str)]) -> Result<Settings, lanehub::config::ConfigError> {
    Settings::load(None, env(pairs))
}

/// The built-in defaults with a file `name` holding `text` on top.
fn load_file(name: &str, text: &str) -> Result<Settings, lanehub::config::ConfigError> {
    Settings::load(Some(&temp_file(name, text)), Vec::new())
}

#[test]
fn built_in_defaults_are_the_documented_ones() {
    let s = load_env(&[]).unwrap();
    assert_eq!(s.vipps.mode, VippsMode::Simulator);
    assert_eq!(s.api.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.vipps.client_id, "sim-client");
    assert_eq!(s.vipps.merchant_serial_number, "123456");
    assert_eq!(s.sim.payment_expiry.as_secs(), 600);
    let phones: Vec<&str> = s
        .sim
        .customers
        .iter()
        .map(|c| c.phone_number.as_str())
        .collect();
    assert!(phones.contains(&"4791234567") && phones.contains(&"4798765432"));
    assert_eq!(s.lanes.len(), 2);
    assert_eq!(s.sim.profile, SimProfile::Default);
    assert_eq!(
        s.vipps.login_client_auth,
        LoginClientAuth::ClientSecretBasic
    );
}

#[test]
fn simulator_profile_and_login_client_auth_take_their_documented_values() {
    let s = load_env(&[
        ("LANEHUB__SIM__PROFILE", "test-environment"),
        ("LANEHUB__VIPPS__LOGIN_CLIENT_AUTH", "client_secret_post"),
    ])
    .unwrap();
    assert_eq!(s.sim.profile, SimProfile::TestEnvironment);
    assert_eq!(s.vipps.login_client_auth, LoginClientAuth::ClientSecretPost);

    let err = load_env(&[("LANEHUB__SIM__PROFILE", "production")]).unwrap_err();
    assert_eq!(err.key, "sim.profile");
    assert!(err.message.contains("test-environment"), "{err}");
    let err = load_env(&[("LANEHUB__VIPPS__LOGIN_CLIENT_AUTH", "private_key_jwt")]).unwrap_err();
    assert_eq!(err.key, "vipps.login_client_auth");
    assert!(err.message.contains("client_secret_post"), "{err}");
}

#[test]
fn a_file_overrides_only_what_it_names() {
    let s = load_file("partial.toml", "[api]\nlisten = \"127.0.0.2:9000\"\n").unwrap();
    assert_eq!(s.api.listen.to_string(), "127.0.0.2:9000");
    assert_eq!(s.vipps.client_id, "sim-client");
}

#[test]
fn environment_overrides_any_key_with_its_type() {
    let s = load_env(&[
        ("LANEHUB__VIPPS__CLIENT_SECRET", "from-env"),
        ("LANEHUB__VIPPS__MERCHANT_SERIAL_NUMBER", "654321"),
        ("LANEHUB__SIM__RATE_LIMITS", "false"),
        ("LANEHUB__LANES__1__TOKEN", "a-long-lane-token-from-env"),
        ("UNRELATED", "ignored"),
    ])
    .unwrap();
    assert_eq!(s.vipps.client_secret.expose_secret(), "from-env");
    assert_eq!(s.vipps.merchant_serial_number, "654321");
    assert!(!s.sim.rate_limits);
    assert_eq!(
        s.lanes[1].token.expose_secret(),
        "a-long-lane-token-from-env"
    );
}

#[test]
fn unknown_key_in_file_names_file_and_key() {
    let path = temp_file("unknown.toml", "[vipps]\nclient_sekret = \"x\"\n");
    let err = Settings::load(Some(&path), Vec::new()).unwrap_err();
    assert_eq!(err.origin, path.display().to_string());
    assert_eq!(err.key, "vipps.client_sekret");
    assert!(err.message.contains("unknown field"), "{err}");
}

#[test]
fn unknown_key_from_environment_names_the_variable() {
    let err = load_env(&[("LANEHUB__API__LISTN", "x")]).unwrap_err();
    assert_eq!(err.origin, "environment variable LANEHUB__API__LISTN");
    assert_eq!(err.key, "api.listn");
}

#[test]
fn wrong_values_name_key_and_problem() {
    let err = load_file(
        "bad-duration.toml",
        "[sim]\npayment_expiry = \"ten minutes\"\n",
    )
    .unwrap_err();
    assert_eq!(err.key, "sim.payment_expiry");
    assert!(err.to_string().contains("not a duration"), "{err}");

    let err = load_env(&[("LANEHUB__VIPPS__MODE", "cloud")]).unwrap_err();
    assert_eq!(err.key, "vipps.mode");
    assert_eq!(err.origin, "environment variable LANEHUB__VIPPS__MODE");

    let err = load_env(&[("LANEHUB__API__LISTEN", "nowhere")]).unwrap_err();
    assert_eq!(err.key, "api.listen");

    let err = load_file(
        "bad-phone.toml",
        "[[sim.customers]]\nphone_number = \"12\"\nname = \"x\"\nemail = \"x\"\npayment = \"approve\"\npayment_delay = \"1s\"\nlogin = \"consent\"\nlogin_delay = \"1s\"\n",
    )
    .unwrap_err();
    assert_eq!(err.key, "sim.customers[0].phone_number");
    assert!(err.message.contains("phone number"), "{err}");
}

#[test]
fn broken_toml_names_the_file_and_line() {
    let path = temp_file("broken.toml", "[api\nlisten = 1\n");
    let err = Settings::load(Some(&path), Vec::new()).unwrap_err();
    assert_eq!(err.origin, path.display().to_string());
    assert!(
        err.message.contains("not valid TOML") && err.message.contains("line 1"),
        "{err}"
    );
}

#[test]
fn missing_file_is_named() {
    let err = Settings::load(
        Some(std::path::Path::new("/nonexistent/lanehub.toml")),
        Vec::new(),
    )
    .unwrap_err();
    assert_eq!(err.origin, "/nonexistent/lanehub.toml");
    assert!(err.message.contains("cannot read"), "{err}");
}

#[test]
fn remote_mode_refuses_demo_tokens() {
    let err = load_env(&[("LANEHUB__VIPPS__MODE", "remote")]).unwrap_err();
    assert_eq!(err.key, "api.admin_token");
    assert!(err.message.contains("lanes[0].token"), "{err}");

    let ok = load_env(&[
        ("LANEHUB__VIPPS__MODE", "remote"),
        ("LANEHUB__API__ADMIN_TOKEN", "a-real-admin-token-1234"),
        ("LANEHUB__LANES__0__TOKEN", "a-real-lane-token-0001"),
        ("LANEHUB__LANES__1__TOKEN", "a-real-lane-token-0002"),
    ]);
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn semantic_checks() {
    let err = load_env(&[("LANEHUB__VIPPS__MERCHANT_SERIAL_NUMBER", "12")]).unwrap_err();
    assert_eq!(err.key, "vipps.merchant_serial_number");

    let err = load_file(
        "dup-lanes.toml",
        "[[lanes]]\nid = \"a\"\ntoken = \"0123456789abcdef\"\n[[lanes]]\nid = \"a\"\ntoken = \"0123456789abcdeg\"\n",
    )
    .unwrap_err();
    assert_eq!(err.key, "lanes[1].id");
}

#[test]
fn secrets_do_not_print() {
    let s = load_env(&[("LANEHUB__VIPPS__CLIENT_SECRET", "super-secret-value")]).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("super-secret-value"));
    assert!(!debug.contains("sim-subscription-key"));
    assert!(!debug.contains("demo-admin-token"));
}

#[test]
fn shutdown_deadline_and_registration_backoff_have_documented_defaults() {
    let s = load_env(&[]).unwrap();
    assert_eq!(s.supervisor.shutdown_deadline.as_secs(), 30);
    assert_eq!(s.vipps.webhook_registration_backoff.as_secs(), 5);
    assert_eq!(s.vipps.webhook_registration_max_backoff.as_secs(), 300);

    let s = load_env(&[("LANEHUB__SUPERVISOR__SHUTDOWN_DEADLINE", "1500ms")]).unwrap();
    assert_eq!(s.supervisor.shutdown_deadline.as_millis(), 1500);

    let err = load_env(&[("LANEHUB__SUPERVISOR__SHUTDOWN_DEADLINE", "soon")]).unwrap_err();
    assert_eq!(err.key, "supervisor.shutdown_deadline");
    assert!(err.message.contains("not a duration"), "{err}");

    let err = load_env(&[("LANEHUB__VIPPS__WEBHOOK_REGISTRATION_MAX_BACKOFF", "1s")]).unwrap_err();
    assert_eq!(err.key, "vipps.webhook_registration_max_backoff");
    let err = load_env(&[("LANEHUB__VIPPS__WEBHOOK_REGISTRATION_BACKOFF", "0s")]).unwrap_err();
    assert_eq!(err.key, "vipps.webhook_registration_backoff");
}

#[test]
fn late_enrollment_follow_up_has_documented_defaults_and_refuses_zero() {
    let s = load_env(&[]).unwrap();
    assert_eq!(s.supervisor.late_enrollment_interval.as_secs(), 5);
    assert_eq!(s.supervisor.late_enrollment_window.as_secs(), 600);

    let s = load_env(&[("LANEHUB__SUPERVISOR__LATE_ENROLLMENT_INTERVAL", "250ms")]).unwrap();
    assert_eq!(s.supervisor.late_enrollment_interval.as_millis(), 250);

    for key in [
        "late_enrollment_interval",
        "late_enrollment_window",
        "unconfirmed_payment_interval",
    ] {
        let var = format!("LANEHUB__SUPERVISOR__{}", key.to_uppercase());
        let err = load_env(&[(var.as_str(), "0s")]).unwrap_err();
        assert_eq!(err.key, format!("supervisor.{key}"), "{err}");
        assert!(err.message.contains("above 0"), "{err}");
    }
}

#[test]
fn a_duration_past_thirty_days_is_refused_instead_of_overflowing_a_timer() {
    let err = load_env(&[(
        "LANEHUB__SUPERVISOR__LATE_ENROLLMENT_INTERVAL",
        "100000000y",
    )])
    .unwrap_err();
    assert_eq!(err.key, "supervisor.late_enrollment_interval", "{err}");
    assert!(err.message.contains("longer than 30 days"), "{err}");
    let s = load_env(&[("LANEHUB__SIM__WEBHOOK_RETRY_FOR", "30d")]);
    assert!(s.is_ok(), "{s:?}");
}

/// Real tokens, so that checks other than the demo-token ones are what a test meets.
const REAL_TOKENS: [(&str, &str); 3] = [
    ("LANEHUB__API__ADMIN_TOKEN", "a-real-admin-token-1234"),
    ("LANEHUB__LANES__0__TOKEN", "a-real-lane-token-0001"),
    ("LANEHUB__LANES__1__TOKEN", "a-real-lane-token-0002"),
];

fn with_real_tokens(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = env(&REAL_TOKENS);
    all.extend(env(pairs));
    all
}

#[test]
fn remote_mode_takes_https_or_http_to_loopback_only() {
    for url in [
        "http://api.vipps.no",
        "http://192.168.1.5:8090",
        "http://127.evil.example",
        "ftp://127.0.0.1",
        "not a url",
    ] {
        let err = Settings::load(
            None,
            with_real_tokens(&[
                ("LANEHUB__VIPPS__MODE", "remote"),
                ("LANEHUB__VIPPS__BASE_URL", url),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.key, "vipps.base_url", "{url}: {err}");
        assert!(err.message.contains("https"), "{err}");
    }
    for url in [
        "https://apitest.vipps.no",
        "http://127.0.0.1:8090",
        "http://localhost:8090",
        "http://[::1]:8090",
    ] {
        let ok = Settings::load(
            None,
            with_real_tokens(&[
                ("LANEHUB__VIPPS__MODE", "remote"),
                ("LANEHUB__VIPPS__BASE_URL", url),
            ]),
        );
        assert!(ok.is_ok(), "{url}: {ok:?}");
    }
    // The webhook URL follows the same rule in every mode.
    let err = load_env(&[(
        "LANEHUB__VIPPS__WEBHOOK_PUBLIC_URL",
        "http://127.evil.example/hook",
    )])
    .unwrap_err();
    assert_eq!(err.key, "vipps.webhook_public_url", "{err}");
}

#[test]
fn remote_mode_refuses_test_hooks() {
    let err = Settings::load(
        None,
        with_real_tokens(&[
            ("LANEHUB__VIPPS__MODE", "remote"),
            ("LANEHUB__API__TEST_HOOKS", "true"),
        ]),
    )
    .unwrap_err();
    assert_eq!(err.key, "api.test_hooks", "{err}");
    let ok = load_env(&[("LANEHUB__API__TEST_HOOKS", "true")]);
    assert!(
        ok.is_ok(),
        "test hooks stay possible with the simulator: {ok:?}"
    );
}

#[test]
fn a_lane_token_shared_with_the_admin_or_another_lane_is_refused() {
    let err = Settings::load(
        None,
        with_real_tokens(&[("LANEHUB__LANES__1__TOKEN", "a-real-admin-token-1234")]),
    )
    .unwrap_err();
    assert_eq!(err.key, "lanes[1].token", "{err}");
    assert!(err.message.contains("api.admin_token"), "{err}");
    assert!(
        !err.to_string().contains("a-real-admin-token-1234"),
        "{err}"
    );

    let err = Settings::load(
        None,
        with_real_tokens(&[("LANEHUB__LANES__1__TOKEN", "a-real-lane-token-0001")]),
    )
    .unwrap_err();
    assert_eq!(err.key, "lanes[1].token", "{err}");
    assert!(err.message.contains("lanes[0].token"), "{err}");
    assert!(!err.to_string().contains("a-real-lane-token-0001"), "{err}");
}

#[test]
fn listening_beyond_loopback_refuses_demo_tokens() {
    let err = load_env(&[("LANEHUB__API__LISTEN", "0.0.0.0:8080")]).unwrap_err();
    assert_eq!(err.key, "api.listen", "{err}");
    assert!(
        err.message.contains("api.admin_token") && err.message.contains("lanes[1].token"),
        "{err}"
    );
    // One demo token left is enough to refuse.
    let mut pairs = REAL_TOKENS.to_vec();
    pairs.pop();
    pairs.push(("LANEHUB__API__LISTEN", "192.168.10.5:8080"));
    let err = load_env(&pairs).unwrap_err();
    assert_eq!(err.key, "api.listen", "{err}");
    assert!(err.message.contains("lanes[1].token"), "{err}");

    let ok = Settings::load(
        None,
        with_real_tokens(&[("LANEHUB__API__LISTEN", "0.0.0.0:8080")]),
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn request_limits_have_documented_defaults_and_bounds() {
    let s = load_env(&[]).unwrap();
    assert_eq!(s.api.max_connections, 512);
    assert_eq!(s.api.body_timeout.as_secs(), 5);
    assert_eq!(s.api.max_websockets_per_lane, 4);
    for (var, value, key) in [
        ("LANEHUB__API__MAX_CONNECTIONS", "0", "api.max_connections"),
        (
            "LANEHUB__API__MAX_WEBSOCKETS_PER_LANE",
            "0",
            "api.max_websockets_per_lane",
        ),
        ("LANEHUB__API__BODY_TIMEOUT", "0s", "api.body_timeout"),
        ("LANEHUB__API__BODY_TIMEOUT", "11s", "api.body_timeout"),
    ] {
        let err = load_env(&[(var, value)]).unwrap_err();
        assert_eq!(err.key, key, "{var}={value}: {err}");
    }
}

/// Every way a secret can be written wrong, in a file or a variable: the error names the key or
/// line, never the value.
#[test]
fn no_config_error_prints_a_secret() {
    const SECRET: &str = "Zq7-secret-value-xK2";
    let files = [
        format!("[api]\nadmin_token = \"{SECRET}\n"),
        format!("[api]\nadmin_token = \"{SECRET}\" junk\n"),
        format!("[api]\nadmin_token = {SECRET}\n"),
        format!("[api]\nadmin_token = '{SECRET}\nlisten = 1\n"),
        "[api]\nadmin_token = 918273645546372819\n".to_owned(),
        format!("[vipps]\nclient_secret = [\"{SECRET}\"]\n"),
        format!("[vipps]\nsubscription_key = {{ v = \"{SECRET}\" }}\n"),
        format!("[[lanes]]\nid = \"bad id!\"\ntoken = \"{SECRET}\"\n"),
        "[[lanes]]\nid = \"a\"\ntoken = 918273645546372819\n".to_owned(),
        format!("[[lanes]]\nid = \"a\"\ntoken = \"{SECRET}\"\nextra = \"{SECRET}\"\n"),
        format!(
            "[[sim.merchants]]\nname = \"x\"\nclient_id = \"x\"\nclient_secret = true\nsubscription_key = \"{SECRET}\"\nmerchant_serial_number = 1\n"
        ),
        format!("[api]\nadmin_token = \"{SECRET}\"\nadmin_token = \"{SECRET}\"\n"),
        format!("[api]\nadmin_token = \"{SECRET}\"\nlisten = \"{SECRET}\"\n"),
    ];
    let mut errors = vec![];
    for (i, text) in files.iter().enumerate() {
        errors.push(load_file(&format!("secret-{i}.toml"), text).unwrap_err());
    }
    for pairs in [
        vec![("LANEHUB__API__ADMIN_TOKEN", "short-secret")],
        vec![
            ("LANEHUB__API__ADMIN_TOKEN", SECRET),
            ("LANEHUB__LANES__0__TOKEN", SECRET),
        ],
        vec![
            ("LANEHUB__LANES__0__TOKEN", SECRET),
            ("LANEHUB__LANES__1__TOKEN", SECRET),
        ],
        vec![("LANEHUB__LANES__7__TOKEN", SECRET)],
        vec![("LANEHUB__API__ADMIN_TOKEN__X", SECRET)],
        vec![
            ("LANEHUB__API__ADMIN_TOKEN", SECRET),
            ("LANEHUB__API__LISTEN", SECRET),
        ],
        vec![
            ("LANEHUB__VIPPS__CLIENT_SECRET", SECRET),
            ("LANEHUB__VIPPS__MODE", SECRET),
        ],
    ] {
        errors.push(load_env(&pairs).unwrap_err());
    }
    for err in &errors {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(SECRET), "a secret in: {text}");
            assert!(!text.contains("short-secret"), "a secret in: {text}");
            assert!(!text.contains("918273645546372819"), "a secret in: {text}");
        }
    }
    // The errors still say where: the line of a broken file, the key of a wrong value.
    assert!(errors[0].message.contains("line 2"), "{}", errors[0]);
    assert_eq!(errors[4].key, "api.admin_token", "{}", errors[4]);
    assert_eq!(errors[12].key, "api.listen", "{}", errors[12]);
    // A misplaced key named like a secret is still reported as unknown.
    let err = load_file("secret-misplaced.toml", "[api]\ntoken = \"x\"\n").unwrap_err();
    assert_eq!(err.key, "api.token", "{err}");
    assert!(err.message.contains("unknown field"), "{err}");
}

#[test]
fn database_settings_read_only_store_and_log() {
    use lanehub::config::DatabaseSettings;
    // Everything a service-only check would refuse: demo tokens beyond loopback and in remote
    // mode, a lane token equal to the admin's.
    let pairs = env(&[
        ("LANEHUB__VIPPS__MODE", "remote"),
        ("LANEHUB__API__LISTEN", "0.0.0.0:8080"),
        ("LANEHUB__LANES__0__TOKEN", "demo-admin-token"),
        ("LANEHUB__STORE__DATA_DIR", "/tmp/lanehub-db-only"),
    ]);
    assert!(Settings::load(None, pairs.clone()).is_err());
    let db = DatabaseSettings::load(None, pairs).unwrap();
    assert_eq!(db.store.data_dir, PathBuf::from("/tmp/lanehub-db-only"));
    // Its own sections are still checked.
    let err = DatabaseSettings::load(None, env(&[("LANEHUB__STORE__DATA_DIRR", "x")])).unwrap_err();
    assert_eq!(err.key, "store.data_dirr", "{err}");
}

#[test]
fn journal_retention_defaults_to_90_days_and_is_bounded() {
    let day = 24 * 60 * 60;
    let s = load_env(&[]).unwrap();
    assert_eq!(s.store.journal_retention.as_secs(), 90 * day);
    let s = load_env(&[("LANEHUB__STORE__JOURNAL_RETENTION", "400d")]).unwrap();
    assert_eq!(s.store.journal_retention.as_secs(), 400 * day);

    for (value, problem) in [
        ("12h", "not between 1 day and 3650 days"),
        ("3651d", "not between 1 day and 3650 days"),
        ("soon", "not a duration like \"90d\""),
    ] {
        let err = load_env(&[("LANEHUB__STORE__JOURNAL_RETENTION", value)]).unwrap_err();
        assert_eq!(err.key, "store.journal_retention", "{err}");
        assert!(err.message.contains(problem), "{value}: {err}");
    }
    // The enrollment follower reads closed sessions' journals within its window.
    let err = load_env(&[
        ("LANEHUB__STORE__JOURNAL_RETENTION", "2d"),
        ("LANEHUB__SUPERVISOR__LATE_ENROLLMENT_WINDOW", "3d"),
    ])
    .unwrap_err();
    assert_eq!(err.key, "store.journal_retention", "{err}");
    assert!(err.message.contains("late_enrollment_window"), "{err}");
}

#[test]
fn login_scopes_default_without_delegated_consents_and_bad_ones_are_named() {
    let s = load_env(&[]).unwrap();
    assert_eq!(
        s.vipps.login_scopes,
        ["openid", "name", "phoneNumber", "email"]
    );
    let s = load_file(
        "scopes-ok.toml",
        "[vipps]\nlogin_scopes = [\"openid\", \"name\", \"delegatedConsents\"]\n",
    )
    .unwrap();
    assert_eq!(s.vipps.login_scopes.last().unwrap(), "delegatedConsents");
    for (name, scopes, want) in [
        ("no-openid.toml", "[\"name\"]", "must include \"openid\""),
        (
            "spaced.toml",
            "[\"openid\", \"name email\"]",
            "`name email` is not a scope name",
        ),
    ] {
        let err = load_file(name, &format!("[vipps]\nlogin_scopes = {scopes}\n")).unwrap_err();
        assert_eq!(err.key, "vipps.login_scopes", "{err}");
        assert!(err.message.contains(want), "{err}");
    }
}
