//! Configuration: layering, environment overrides, and errors that name source, key and problem.

use std::path::PathBuf;

use lanehub::config::{Settings, VippsMode};
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

#[test]
fn built_in_defaults_are_the_documented_ones() {
    let s = Settings::load(None, Vec::new()).unwrap();
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
}

#[test]
fn a_file_overrides_only_what_it_names() {
    let path = temp_file("partial.toml", "[api]\nlisten = \"0.0.0.0:9000\"\n");
    let s = Settings::load(Some(&path), Vec::new()).unwrap();
    assert_eq!(s.api.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(s.vipps.client_id, "sim-client");
}

#[test]
fn environment_overrides_any_key_with_its_type() {
    let s = Settings::load(
        None,
        env(&[
            ("LANEHUB__VIPPS__CLIENT_SECRET", "from-env"),
            ("LANEHUB__VIPPS__MERCHANT_SERIAL_NUMBER", "654321"),
            ("LANEHUB__SIM__RATE_LIMITS", "false"),
            ("LANEHUB__LANES__1__TOKEN", "a-long-lane-token-from-env"),
            ("UNRELATED", "ignored"),
        ]),
    )
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
    let err = Settings::load(None, env(&[("LANEHUB__API__LISTN", "x")])).unwrap_err();
    assert_eq!(err.origin, "environment variable LANEHUB__API__LISTN");
    assert_eq!(err.key, "api.listn");
}

#[test]
fn wrong_values_name_key_and_problem() {
    let path = temp_file(
        "bad-duration.toml",
        "[sim]\npayment_expiry = \"ten minutes\"\n",
    );
    let err = Settings::load(Some(&path), Vec::new()).unwrap_err();
    assert_eq!(err.key, "sim.payment_expiry");
    assert!(err.to_string().contains("not a duration"), "{err}");

    let err = Settings::load(None, env(&[("LANEHUB__VIPPS__MODE", "cloud")])).unwrap_err();
    assert_eq!(err.key, "vipps.mode");
    assert_eq!(err.origin, "environment variable LANEHUB__VIPPS__MODE");

    let err = Settings::load(None, env(&[("LANEHUB__API__LISTEN", "nowhere")])).unwrap_err();
    assert_eq!(err.key, "api.listen");

    let path = temp_file(
        "bad-phone.toml",
        "[[sim.customers]]\nphone_number = \"12\"\nname = \"x\"\nemail = \"x\"\npayment = \"approve\"\npayment_delay = \"1s\"\nlogin = \"consent\"\nlogin_delay = \"1s\"\n",
    );
    let err = Settings::load(Some(&path), Vec::new()).unwrap_err();
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
    let err = Settings::load(None, env(&[("LANEHUB__VIPPS__MODE", "remote")])).unwrap_err();
    assert_eq!(err.key, "api.admin_token");
    assert!(err.message.contains("lanes[0].token"), "{err}");

    let ok = Settings::load(
        None,
        env(&[
            ("LANEHUB__VIPPS__MODE", "remote"),
            ("LANEHUB__API__ADMIN_TOKEN", "a-real-admin-token-1234"),
            ("LANEHUB__LANES__0__TOKEN", "a-real-lane-token-0001"),
            ("LANEHUB__LANES__1__TOKEN", "a-real-lane-token-0002"),
        ]),
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn semantic_checks() {
    let err = Settings::load(
        None,
        env(&[("LANEHUB__VIPPS__MERCHANT_SERIAL_NUMBER", "12")]),
    )
    .unwrap_err();
    assert_eq!(err.key, "vipps.merchant_serial_number");

    let path = temp_file(
        "dup-lanes.toml",
        "[[lanes]]\nid = \"a\"\ntoken = \"0123456789abcdef\"\n[[lanes]]\nid = \"a\"\ntoken = \"0123456789abcdeg\"\n",
    );
    let err = Settings::load(Some(&path), Vec::new()).unwrap_err();
    assert_eq!(err.key, "lanes[1].id");
}

#[test]
fn secrets_do_not_print() {
    let s = Settings::load(
        None,
        env(&[("LANEHUB__VIPPS__CLIENT_SECRET", "super-secret-value")]),
    )
    .unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("super-secret-value"));
    assert!(!debug.contains("sim-subscription-key"));
    assert!(!debug.contains("demo-admin-token"));
}

#[test]
fn shutdown_deadline_and_registration_backoff_have_documented_defaults() {
    let s = Settings::load(None, Vec::new()).unwrap();
    assert_eq!(s.supervisor.shutdown_deadline.as_secs(), 30);
    assert_eq!(s.vipps.webhook_registration_backoff.as_secs(), 5);
    assert_eq!(s.vipps.webhook_registration_max_backoff.as_secs(), 300);

    let s = Settings::load(
        None,
        env(&[("LANEHUB__SUPERVISOR__SHUTDOWN_DEADLINE", "1500ms")]),
    )
    .unwrap();
    assert_eq!(s.supervisor.shutdown_deadline.as_millis(), 1500);

    let err = Settings::load(
        None,
        env(&[("LANEHUB__SUPERVISOR__SHUTDOWN_DEADLINE", "soon")]),
    )
    .unwrap_err();
    assert_eq!(err.key, "supervisor.shutdown_deadline");
    assert!(err.message.contains("not a duration"), "{err}");

    let err = Settings::load(
        None,
        env(&[("LANEHUB__VIPPS__WEBHOOK_REGISTRATION_MAX_BACKOFF", "1s")]),
    )
    .unwrap_err();
    assert_eq!(err.key, "vipps.webhook_registration_max_backoff");
    let err = Settings::load(
        None,
        env(&[("LANEHUB__VIPPS__WEBHOOK_REGISTRATION_BACKOFF", "0s")]),
    )
    .unwrap_err();
    assert_eq!(err.key, "vipps.webhook_registration_backoff");
}

#[test]
fn late_enrollment_follow_up_has_documented_defaults_and_refuses_zero() {
    let s = Settings::load(None, Vec::new()).unwrap();
    assert_eq!(s.supervisor.late_enrollment_interval.as_secs(), 5);
    assert_eq!(s.supervisor.late_enrollment_window.as_secs(), 600);

    let s = Settings::load(
        None,
        env(&[("LANEHUB__SUPERVISOR__LATE_ENROLLMENT_INTERVAL", "250ms")]),
    )
    .unwrap();
    assert_eq!(s.supervisor.late_enrollment_interval.as_millis(), 250);

    for key in [
        "late_enrollment_interval",
        "late_enrollment_window",
        "unconfirmed_payment_interval",
    ] {
        let var = format!("LANEHUB__SUPERVISOR__{}", key.to_uppercase());
        let err = Settings::load(None, env(&[(var.as_str(), "0s")])).unwrap_err();
        assert_eq!(err.key, format!("supervisor.{key}"), "{err}");
        assert!(err.message.contains("above 0"), "{err}");
    }
}

#[test]
fn a_duration_past_thirty_days_is_refused_instead_of_overflowing_a_timer() {
    let err = Settings::load(
        None,
        env(&[(
            "LANEHUB__SUPERVISOR__LATE_ENROLLMENT_INTERVAL",
            "100000000y",
        )]),
    )
    .unwrap_err();
    assert_eq!(err.key, "supervisor.late_enrollment_interval", "{err}");
    assert!(err.message.contains("longer than 30 days"), "{err}");
    let s = Settings::load(None, env(&[("LANEHUB__SIM__WEBHOOK_RETRY_FOR", "30d")]));
    assert!(s.is_ok(), "{s:?}");
}

#[test]
fn login_scopes_default_without_delegated_consents_and_bad_ones_are_named() {
    let s = Settings::load(None, Vec::new()).unwrap();
    assert_eq!(
        s.vipps.login_scopes,
        ["openid", "name", "phoneNumber", "email"]
    );
    let ok = temp_file(
        "scopes-ok.toml",
        "[vipps]\nlogin_scopes = [\"openid\", \"name\", \"delegatedConsents\"]\n",
    );
    let s = Settings::load(Some(&ok), Vec::new()).unwrap();
    assert_eq!(s.vipps.login_scopes.last().unwrap(), "delegatedConsents");
    for (name, scopes, want) in [
        ("no-openid.toml", "[\"name\"]", "must include \"openid\""),
        (
            "spaced.toml",
            "[\"openid\", \"name email\"]",
            "`name email` is not a scope name",
        ),
    ] {
        let path = temp_file(name, &format!("[vipps]\nlogin_scopes = {scopes}\n"));
        let err = Settings::load(Some(&path), Vec::new()).unwrap_err();
        assert_eq!(err.key, "vipps.login_scopes", "{err}");
        assert!(err.message.contains(want), "{err}");
    }
}
