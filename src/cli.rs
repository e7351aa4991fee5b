//! The command line: `run` (the default), `demo`, `sim`, `check-config`, `check-vipps`,
//! `members import|export`, `backup`, `bench`, `scanner`.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, DatabaseSettings, LogSettings, Settings};
use crate::scanner::cli::ScannerCommand;
use crate::sim::Simulator;
use crate::startup::Application;
use crate::store::{StoreError, admin};

/// Exit statuses other than 0 (success) and 1 (any other failure). systemd does not restart
/// lanehub after these (`RestartPreventExitStatus=` in packaging/lanehub.service): only a person
/// can fix them.
pub mod exit {
    /// The configuration is invalid; the message names the file or variable and the key.
    pub const INVALID_CONFIG: u8 = 2;
    /// The database was written by a newer lanehub (a downgrade); it is left untouched.
    pub const NEWER_DATABASE: u8 = 3;
    /// The database has damaged pages; it is left untouched for a restore from backup.
    pub const CORRUPT_DATABASE: u8 = 4;
}

#[derive(Debug, Parser)]
#[command(
    name = "lanehub",
    version,
    about = "Store controller for Vipps MobilePay Loyalty at the POS"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run lanehub (the default): lanes, terminal API, metrics, and the embedded simulator in
    /// simulator mode.
    Run {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, env = "LANEHUB_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run lanehub with the embedded simulator while virtual customers and cashiers keep every
    /// lane busy (for dashboards, the UI and demonstrations).
    Demo(crate::demo::DemoArgs),
    /// Serve the Vipps simulator alone.
    Sim {
        /// Address to listen on (default: `sim.listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[arg(long, env = "LANEHUB_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file (with the environment's overrides) and exit.
    CheckConfig { path: PathBuf },
    /// Check the configured Vipps credentials and endpoints before going live (never creates a
    /// payment); exits 1 if payments would not work.
    CheckVipps {
        #[arg(long, env = "LANEHUB_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List HID scanners, or decode recorded HID reports.
    Scanner {
        #[command(subcommand)]
        command: ScannerCommand,
    },
    /// Import or export loyalty members as CSV (with every `members.provider`); the CRM
    /// outbox.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Write a consistent copy of the database to PATH (a new file or a directory) while
    /// lanehub runs.
    Backup {
        path: PathBuf,
        #[arg(long, env = "LANEHUB_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Benchmarks against the simulator: `bench --lanes N --duration S [--rate R]` (lanes through
    /// whole checkouts against the floor of the same Vipps calls, back to back or arriving at R
    /// per second), `bench vipps` (the Vipps actor).
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Import members from CSV (phone_number,name,email,consents,enrolled_at,enrolled_lane,
    /// source): every row is validated first, then all are upserted in one transaction.
    Import {
        path: PathBuf,
        #[arg(long, env = "LANEHUB_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Export every member as CSV to PATH, or to stdout when PATH is `-` or left out.
    Export {
        path: Option<PathBuf>,
        #[arg(long, env = "LANEHUB_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Enrollments waiting for the merchant's CRM or refused by it (`members.provider =
    /// "http"`): list them, or retry.
    Outbox {
        #[command(subcommand)]
        action: Option<crate::members::cli::OutboxAction>,
        #[arg(long, env = "LANEHUB_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
}

/// Prints one line for whoever started lanehub. A service outlives the reader of its stdout (a
/// closed pipe, a stopped terminal), so a failed write is ignored instead of ending the process.
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Run { config: None });
    match command {
        Command::Run { config } => with_settings(config, |settings| {
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(settings)?;
                // The first stdout line tells scripts and tests where lanehub listens.
                announce(&format!("lanehub listening on {}", app.url()));
                if let Some(sim) = app.simulator() {
                    announce(&format!("Vipps simulator listening on {}", sim.base_url()));
                }
                notify_ready_when_lanes_up(&app).await;
                app.run_until_stopped().await?;
                Ok(())
            })
        }),
        Command::Demo(args) => with_settings(args.config.clone(), |settings| {
            crate::demo::run(args, settings)
        }),
        Command::Sim { listen, config } => with_settings(config, |settings| {
            let listen = listen.unwrap_or(settings.sim.listen);
            actix_web::rt::System::new().block_on(async move {
                crate::install_crypto_provider();
                let listener = TcpListener::bind(listen)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
                let sim = Simulator::new(settings.sim).serve(listener)?;
                announce(&format!("Vipps simulator listening on {}", sim.base_url()));
                tokio::signal::ctrl_c().await?;
                sim.stop().await;
                Ok(())
            })
        }),
        Command::Members {
            command: MembersCommand::Import { path, config },
        } => with_database_settings(config, |settings| {
            println!("{}", crate::members::cli::import(&settings, &path)?);
            Ok(())
        }),
        Command::Members {
            command: MembersCommand::Export { path, config },
        } => with_database_settings(config, |settings| {
            let n = crate::members::cli::export(&settings, path.as_deref())?;
            eprintln!("exported {n} members");
            Ok(())
        }),
        Command::Members {
            command: MembersCommand::Outbox { action, config },
        } => with_database_settings(config, |settings| {
            crate::members::cli::outbox(&settings, action)
        }),
        Command::Backup { path, config } => with_database_settings(config, |settings| {
            println!("{}", admin::backup_database(&settings.store, &path)?);
            Ok(())
        }),
        Command::CheckConfig { path } => match Settings::load_from_process(Some(&path)) {
            Ok(settings) => {
                println!(
                    "{}: configuration is valid ({} lanes, Vipps mode {:?})",
                    path.display(),
                    settings.lanes.len(),
                    settings.vipps.mode
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(exit::INVALID_CONFIG)
            }
        },
        Command::CheckVipps { config } => match Settings::load_from_process(config.as_deref()) {
            Ok(settings) => crate::vipps::check::run(&settings),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(exit::INVALID_CONFIG)
            }
        },
        Command::Scanner { command } => crate::scanner::cli::run(command),
        Command::Bench(args) => with_settings(None, |settings| crate::bench::run(settings, args)),
    }
}

fn with_settings(
    config: Option<PathBuf>,
    f: impl FnOnce(Settings) -> anyhow::Result<()>,
) -> ExitCode {
    run_with(
        Settings::load_from_process(config.as_deref()),
        |s| &s.log,
        f,
    )
}

/// For commands that only touch the database: they work with the store's configuration alone,
/// whatever the state of tokens and Vipps credentials (which live in the service's environment).
fn with_database_settings(
    config: Option<PathBuf>,
    f: impl FnOnce(DatabaseSettings) -> anyhow::Result<()>,
) -> ExitCode {
    run_with(
        DatabaseSettings::load_from_process(config.as_deref()),
        |s| &s.log,
        f,
    )
}

fn run_with<S>(
    loaded: Result<S, ConfigError>,
    log: impl FnOnce(&S) -> &LogSettings,
    f: impl FnOnce(S) -> anyhow::Result<()>,
) -> ExitCode {
    let settings = match loaded {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::INVALID_CONFIG);
        }
    };
    crate::telemetry::init(log(&settings));
    match f(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "lanehub stopped");
            eprintln!("error: {e:#}");
            exit_code(&e)
        }
    }
}

/// The exit status for an error: [`exit::NEWER_DATABASE`] or [`exit::CORRUPT_DATABASE`] when a
/// store refused the database file anywhere in the chain, else 1.
fn exit_code(e: &anyhow::Error) -> ExitCode {
    let store_error = e.chain().find_map(|c| {
        c.downcast_ref::<StoreError>()
            .or_else(|| match c.downcast_ref() {
                Some(admin::AdminError::Store(s)) => Some(s),
                _ => None,
            })
    });
    match store_error {
        Some(StoreError::NewerSchema { .. }) => ExitCode::from(exit::NEWER_DATABASE),
        Some(StoreError::CorruptDatabase { .. }) => ExitCode::from(exit::CORRUPT_DATABASE),
        _ => ExitCode::FAILURE,
    }
}

/// systemd (`Type=notify`) counts lanehub as started once every lane is up; a lane that is not
/// up after `READY_WAIT` is left to the supervisor and `/readyz`.
async fn notify_ready_when_lanes_up(app: &Application) {
    const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    while !app.lanes().all().iter().all(|l| l.is_up()) && tokio::time::Instant::now() < deadline {
        tick.tick().await;
    }
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot tell systemd that lanehub is ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_or_corrupt_database_anywhere_in_the_chain_exits_3_or_4() {
        let newer = StoreError::NewerSchema {
            path: "/var/lib/lanehub/lanehub.db".into(),
            found: 3,
            known: 2,
        };
        let e = anyhow::Error::new(newer).context("cannot open the store in /var/lib/lanehub");
        assert_eq!(exit_code(&e), ExitCode::from(exit::NEWER_DATABASE));
        let corrupt = StoreError::CorruptDatabase {
            path: "/var/lib/lanehub/lanehub.db".into(),
            detail: "quick_check: Page 7: btreeInitPage() returns error code 11".into(),
        };
        let e = anyhow::Error::new(corrupt).context("cannot open the store in /var/lib/lanehub");
        assert_eq!(exit_code(&e), ExitCode::from(exit::CORRUPT_DATABASE));
        // The store commands wrap it in their own error.
        let corrupt = admin::AdminError::Store(StoreError::CorruptDatabase {
            path: "lanehub.db".into(),
            detail: "database disk image is malformed".into(),
        });
        assert_eq!(
            exit_code(&anyhow::Error::new(corrupt)),
            ExitCode::from(exit::CORRUPT_DATABASE)
        );
        let other = anyhow::Error::new(StoreError::Closed).context("cannot open the store");
        assert_eq!(exit_code(&other), ExitCode::FAILURE);
    }
}
