//! Shared by every test binary (each includes it with `#[path = "../common/mod.rs"] mod common;`):
//! the constants below, lanehub in-process (`app::spawn_app`), the real binary as a child process
//! (`process`), the simulator's control API (`sim`), typed lane snapshots (`snapshot`), the
//! official Vipps OpenAPI files (`openapi`) and a scripted stand-in Vipps (`vipps`).
#![allow(dead_code)] // each test binary uses only part of this module

pub mod app;
pub mod openapi;
pub mod process;
pub mod sim;
pub mod snapshot;
pub mod vipps;

use std::path::PathBuf;
use std::time::Duration;

/// The built-in admin token (the defaults' demo token; remote mode refuses it).
pub const ADMIN: &str = "demo-admin-token";

// The simulator's built-in customers; the delays are the defaults, `fast_settings` shortens them.
/// In the club (seeded from the simulator's customers); consents to Login, approves payments.
pub const MEMBER: &str = "4791234567";
/// Not in the club; consents to Login and approves payments.
pub const NON_MEMBER: &str = "4798765432";
/// Not in the club; denies Login and declines payments.
pub const DECLINER: &str = "4790000001";
/// Not in the club; ignores Login and payments (they expire unless the test approves them).
pub const IGNORER: &str = "4790000002";
/// A MobilePay user: shows only a tokenised QR.
pub const MOBILEPAY_USER: &str = "4512345678";

/// What the tests' checkouts cost, in øre.
pub const AMOUNT: u64 = 23990;
/// The longest any step may take before the test fails, saying what it saw.
pub const PATIENCE: Duration = Duration::from_secs(15);
/// Between two reads of something that has no event (a snapshot, the simulator, the metrics).
pub const POLL: Duration = Duration::from_millis(25);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An HTTP client that drops idle connections well before the servers' keep-alive (5 s) ends
/// them, so that a request never goes out on a connection being closed.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .expect("an HTTP client")
}

/// Held by each load test (many lanes, random kills or faults for a minute or more) while it
/// runs: tests in one binary run in parallel, and two load tests at once on a small machine
/// stretch every step past what the tests allow. Other tests run beside a load test.
pub async fn load_test_slot() -> tokio::sync::MutexGuard<'static, ()> {
    static SLOT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SLOT.lock().await
}

/// The seed of a randomised test: `$var` if set, else the clock; printed so a run can be repeated.
pub fn seed(var: &str, test: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    println!("{test} test seed: {seed} (repeat with {var}={seed})");
    seed
}

/// An answer's content type, empty if it has none.
pub fn content_type(res: &reqwest::Response) -> &str {
    let value = res.headers().get("content-type");
    value.and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The one integer `sql` selects from the SQLite database `conn` (a count, a page number).
pub fn sql_int(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A fresh, unique directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lanehub-test-{tag}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
