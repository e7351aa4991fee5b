//! The `lanehub` binary: parses the command line and hands over to `lanehub::cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = lanehub::cli::Cli::parse();
    lanehub::cli::run(cli)
}
