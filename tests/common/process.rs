//! The real `lanehub` binary as a child process of a test, and [`Rig`]: a `lanehub sim` and a
//! data directory that `lanehub run` starts, is killed and restarts on.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use lanehub::store::Store;
use serde_json::json;
use tokio::time::Instant;

use super::app::{Api, assert_closed_with, assert_journal_closed, payment_body};
use super::sim::SimControl;
use super::snapshot::ids;

pub const BIN: &str = env!("CARGO_BIN_EXE_lanehub");

/// The URL lanehub announces at the end of its next stdout line (`… listening on http://…`).
pub fn announced_url(stdout: &mut impl BufRead) -> String {
    let mut line = String::new();
    stdout.read_line(&mut line).expect("stdout is readable");
    let url = line.trim().rsplit(' ').next().unwrap_or_default();
    assert!(url.starts_with("http://"), "unexpected line: {line:?}");
    url.to_owned()
}

/// The stdout of a command that must have succeeded (`what` and its stderr say why not).
pub fn succeeded(out: Output, what: impl std::fmt::Debug) -> String {
    assert!(
        out.status.success(),
        "{what:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// The stderr of a command that must have failed.
pub fn failed(out: Output, what: impl std::fmt::Debug) -> String {
    assert!(!out.status.success(), "{what:?} should fail");
    String::from_utf8(out.stderr).expect("stderr is UTF-8")
}

/// A child process, killed (SIGKILL) when dropped so no test leaves one behind, and the file its
/// stderr (the log) goes to, if any.
pub struct Process {
    pub child: Child,
    pub log: Option<PathBuf>,
}

impl Process {
    /// A child started elsewhere, killed when the test ends, pass or fail.
    pub fn killed_at_end(child: Child) -> Process {
        Process { child, log: None }
    }

    /// Starts `lanehub args…` (stderr appended to `log_path`) and returns it with the URL it
    /// announces on its first stdout line.
    pub fn start(args: &[&str], env: &[(&str, String)], log_path: &Path) -> (Process, String) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("the log file opens");
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("LANEHUB_CONFIG")
            .env("LANEHUB__LOG__LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("lanehub starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let url = announced_url(&mut stdout);
        // Keep the pipe drained so the child never blocks on a full stdout.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let log = Some(log_path.to_owned());
        (Process { child, log }, url)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().expect("the killed child is reaped");
    }

    /// SIGTERM, as systemd stops the service.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn exited_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                return status;
            }
            if Instant::now() >= deadline {
                let log = self.log.as_ref().map(std::fs::read_to_string);
                panic!("lanehub still runs after {limit:?}; log: {log:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin token of every lanehub a [`Rig`] starts (remote mode refuses the demo tokens).
pub const RIG_ADMIN: &str = "rig-admin-token-0123456789";

/// One `lanehub sim` and the data directory lanehub (re)starts on; logs go to a directory of
/// their own, so that a full data disk does not stop them.
pub struct Rig {
    _sim: Process,
    pub sim: SimControl,
    /// Declared before `data`: the file system is unmounted before the directory is removed.
    disk: Option<SmallDisk>,
    pub data: tempfile::TempDir,
    logs: tempfile::TempDir,
}

impl Rig {
    pub fn new() -> Rig {
        let data = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let env = [("LANEHUB__SIM__LOGIN_INTERVAL", "200ms".to_owned())];
        let log = logs.path().join("sim.log");
        let (sim, url) = Process::start(&["sim", "--listen", "127.0.0.1:0"], &env, &log);
        lanehub::install_crypto_provider();
        Rig {
            _sim: sim,
            sim: SimControl::new(url),
            disk: None,
            data,
            logs,
        }
    }

    /// A rig whose data directory is a small file system of its own that a test can fill;
    /// `None` (said loudly) where this machine cannot mount one, a failure under `CI=true`.
    pub fn on_small_disk() -> Option<Rig> {
        let mut rig = Rig::new();
        rig.disk = Some(SmallDisk::mount(rig.data.path())?);
        Some(rig)
    }

    pub fn disk(&self) -> &SmallDisk {
        self.disk.as_ref().expect("a rig on a small disk")
    }

    /// Starts `lanehub run` in remote mode against the rig's simulator on its data dir, with two
    /// lanes and `extra` settings (they win); waits until both lanes are up.
    pub async fn lanehub(&self, extra: &[(&str, &str)]) -> (Process, Api) {
        let mut env = vec![
            ("LANEHUB__VIPPS__MODE", "remote".to_owned()),
            ("LANEHUB__VIPPS__BASE_URL", self.sim.url.clone()),
            ("LANEHUB__VIPPS__WEBHOOK_PUBLIC_URL", String::new()),
            ("LANEHUB__API__LISTEN", "127.0.0.1:0".to_owned()),
            ("LANEHUB__API__ADMIN_TOKEN", RIG_ADMIN.to_owned()),
            (
                "LANEHUB__LANES__0__TOKEN",
                "rig-lane-1-token-0123456789".to_owned(),
            ),
            (
                "LANEHUB__LANES__1__TOKEN",
                "rig-lane-2-token-0123456789".to_owned(),
            ),
            (
                "LANEHUB__STORE__DATA_DIR",
                self.data.path().display().to_string(),
            ),
            ("LANEHUB__SESSION__PAYMENT_FIRST_POLL", "100ms".to_owned()),
            (
                "LANEHUB__SESSION__PAYMENT_POLL_INTERVAL",
                "250ms".to_owned(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let log = self.logs.path().join("lanehub.log");
        let (process, url) = Process::start(&["run"], &env, &log);
        let api = Api::new(url, RIG_ADMIN);
        for lane in ["1", "2"] {
            api.wait_lane(lane, "up", |s| s["up"] == true).await;
        }
        (process, api)
    }

    /// The log of every lanehub run on this rig.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("lanehub.log")).unwrap_or_default()
    }

    /// Scans the customer's QR on `lane` and waits until the lane may take a payment.
    pub async fn identify(&self, api: &Api, lane: &str, phone: &str) {
        let qr = self.sim.qr(phone, false).await;
        let path = format!("/api/v1/lanes/{lane}/scans");
        api.ok(reqwest::Method::POST, &path, Some(json!({ "text": qr })))
            .await;
        api.wait_lane(lane, "ready for payment", |s| {
            s["state"] == "ready_for_payment"
        })
        .await;
    }

    /// Identifies the customer on `lane` and asks for the tests' amount.
    pub async fn checkout(&self, api: &Api, lane: &str, phone: &str) {
        self.identify(api, lane, phone).await;
        let path = format!("/api/v1/lanes/{lane}/payment");
        api.ok(reqwest::Method::POST, &path, Some(payment_body()))
            .await;
    }

    /// Asks for the payment on an identified `lane` and waits until Vipps holds it; returns
    /// (session id, reference).
    pub async fn pay(&self, api: &Api, lane: &str) -> (String, String) {
        let path = format!("/api/v1/lanes/{lane}/payment");
        api.ok(reqwest::Method::POST, &path, Some(payment_body()))
            .await;
        let waiting = api
            .wait_lane(lane, "saw the payment created", |s| {
                s["session"]["payment"]["state"] == "CREATED"
            })
            .await;
        ids(&waiting)
    }

    /// The store on the rig's data dir (SQLite lets this process read while lanehub runs).
    pub async fn store(&self) -> Store {
        Store::open(self.data.path()).await.unwrap()
    }

    /// The sessions the journal holds open, as (lane, session) pairs.
    pub async fn open_sessions(&self) -> Vec<(String, String)> {
        let open = self.store().await.all_open_sessions().await.unwrap();
        open.into_iter()
            .map(|j| (j.lane.to_string(), j.session))
            .collect()
    }

    /// The journal closed the session with `outcome` (lanehub writes the close just after the
    /// outcome reaches the lane, so this waits for it), and the payments index agrees with Vipps.
    pub async fn assert_journal(
        &self,
        lane: &str,
        session: &str,
        reference: &str,
        outcome: &str,
        captured: u64,
    ) {
        let store = self.store().await;
        assert_journal_closed(&store).await;
        assert_closed_with(&store, lane, session, outcome).await;
        let payment = store
            .payment(&reference.parse().unwrap())
            .await
            .unwrap()
            .expect("the payment is indexed");
        assert_eq!(payment.captured, captured, "{payment:?}");
    }
}

/// A 4 MiB tmpfs mounted on a directory, to be filled up as a store's disk fills up.
pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path) -> Option<SmallDisk> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk {
                dir: dir.to_owned(),
            }),
            other => {
                let why =
                    format!("cannot mount a tmpfs for the full-disk test (needs root): {other:?}");
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
                eprintln!("SKIPPED, NOT TESTED: {why}");
                None
            }
        }
    }

    /// Fills the file system to the last byte.
    pub fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.dir.join("filler")).unwrap();
        for chunk in [65_536, 4096, 512, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        let _ = file.sync_all();
    }

    /// Gives the space back.
    pub fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
