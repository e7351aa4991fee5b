//! `lanehub bench`: in-process benchmarks that need no network beyond loopback. Each one starts
//! what it measures (the embedded simulator, the Vipps actor) itself, prints a readable table or,
//! with `--json`, one JSON object on stdout, and leaves logs on stderr.
//!
//! Today: `bench vipps` (see [`vipps`]). `BenchArgs` is a struct rather than a bare subcommand so
//! that options for the whole command (e.g. a lane benchmark's `--lanes N`) can join it later
//! without touching `cli.rs`.

pub mod vipps;

use clap::{Args, Subcommand};

use crate::config::Settings;

/// `lanehub bench …`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The Vipps actor against the embedded simulator: the latency it adds over the plain
    /// client, and whether a global ceiling holds under 3× the load without any 429.
    Vipps(vipps::VippsBenchArgs),
}

/// Runs the chosen benchmark with `settings` (the defaults plus the environment's overrides).
pub fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Vipps(vipps_args) => {
            let report =
                actix_web::rt::System::new().block_on(vipps::run(settings, &vipps_args))?;
            if vipps_args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            Ok(())
        }
    }
}
