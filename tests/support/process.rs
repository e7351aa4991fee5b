//! The real `lanehub` binary as a child process of a test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

pub const BIN: &str = env!("CARGO_BIN_EXE_lanehub");

/// A child process, killed (SIGKILL) when dropped so no test leaves one behind, and the file its
/// stderr (the log) goes to, if any.
pub struct Process {
    pub child: Child,
    pub log: Option<PathBuf>,
}

impl Process {
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
        let mut line = String::new();
        stdout.read_line(&mut line).expect("stdout is readable");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            url.starts_with("http://"),
            "unexpected first line: {line:?}"
        );
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
