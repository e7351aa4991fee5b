//! The real binary: version, check-config, and `run`/`sim` coming up on their listeners.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_lanehub");

/// Kills the child when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the URLs it announced on stdout.
fn start(args: &[&str], env: &[(&str, &str)], lines: usize) -> (Running, Vec<String>) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("LANEHUB__STORE__DATA_DIR", crate::helpers::temp_dir("cli"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut urls = vec![];
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(url.starts_with("http://"), "unexpected line: {line:?}");
        urls.push(url);
    }
    (Running(child), urls)
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
    let out = Command::new(BIN)
        .args(["check-config", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn check_config_names_file_key_and_problem() {
    let dir = crate::helpers::temp_dir("check");
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
    lanehub::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let health = reqwest::get(format!("{}/healthz", urls[0])).await.unwrap();
        assert_eq!(health.status(), 200);
        let client = reqwest::Client::new();
        let token = client
            .post(format!("{}/accesstoken/get", urls[1]))
            .header("client_id", "sim-client")
            .header("client_secret", "sim-secret")
            .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
            .send()
            .await
            .unwrap();
        assert_eq!(token.status(), 200);
    });
}

#[test]
fn sim_serves_the_simulator_alone() {
    let (_child, urls) = start(&["sim", "--listen", "127.0.0.1:0"], &[], 1);
    lanehub::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
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
        .env("LANEHUB__STORE__DATA_DIR", crate::helpers::temp_dir("cli"))
        .env("LANEHUB__API__LISTEN", format!("127.0.0.1:{port}"))
        .env("LANEHUB__SIM__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    // The reader goes away before lanehub announces itself: its write meets a closed pipe.
    drop(child.stdout.take());
    let mut running = Running(child);

    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status() == 200
        {
            break;
        }
        assert!(
            running.0.try_wait().unwrap().is_none(),
            "lanehub exited: {:?}",
            running.0.try_wait()
        );
        assert!(tokio::time::Instant::now() < deadline, "never healthy");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(running.0.try_wait().unwrap().is_none(), "lanehub exited");
}
