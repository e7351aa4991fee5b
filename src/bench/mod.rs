//! `lanehub bench`: in-process benchmarks that need no network beyond loopback. Each one starts
//! what it measures (the simulator, lanehub or the Vipps actor) itself, prints a readable table
//! or, with `--json`, one JSON object on stdout, and leaves logs on stderr.
//!
//! - `bench --lanes N --duration S`: lanes through complete checkouts against the floor of the
//!   same Vipps calls made directly (see [`lanes`]), back to back, or with `--rate R` as
//!   checkouts arrive (see [`arrivals`]).
//! - `bench vipps`: the Vipps actor alone (see [`vipps`]).

pub mod arrivals;
pub mod lanes;
pub mod report;
pub mod sim;
pub mod vipps;

use clap::{Args, Subcommand};

use crate::config::Settings;

/// `lanehub bench [--lanes N --duration S [--rate R]] | lanehub bench vipps …`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub lanes: lanes::LanesBenchArgs,
}

/// The benchmarks besides the default (lanes).
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The Vipps actor against the embedded simulator: the latency it adds over the plain
    /// client, and whether a global ceiling holds under 3× the load without any 429.
    Vipps(vipps::VippsBenchArgs),
}

/// Runs the chosen benchmark with `settings` (the defaults plus the environment's overrides).
pub fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<()> {
    let system = actix_web::rt::System::new();
    match args.command {
        Some(BenchCommand::Vipps(a)) => {
            let report = system.block_on(vipps::run(settings, &a))?;
            show(a.json, || report.to_json(), || report.to_table());
        }
        None => {
            let report = system.block_on(lanes::run(settings, &args.lanes))?;
            show(args.lanes.json, || report.to_json(), || report.to_table());
        }
    }
    Ok(())
}

/// Prints a report as one JSON object, or as a table.
fn show(
    json: bool,
    to_json: impl FnOnce() -> serde_json::Value,
    to_table: impl FnOnce() -> String,
) {
    if json {
        println!("{}", to_json());
    } else {
        print!("{}", to_table());
    }
}
