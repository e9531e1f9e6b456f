//! `lake`: the command line of the county data lake. Runs the pipeline embedded on a laptop
//! (no services, no credentials), checks and publishes source contracts, benchmarks the
//! transform, and operates the deployed lake.
//!
//! Boundaries: argument parsing, files and printing only; every rule lives in the library crates.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lake", version, about = "County health-data lake: contracts, embedded runs, operations")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Work with source contracts.
    #[command(subcommand)]
    Contract(ContractCmd),
    /// Benchmark the transform against the Python baselines (pandas, polars) in the same run.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum ContractCmd {
    /// Run the transform of one file with a contract and write the canonical outputs.
    ///
    /// Writes DIR/<stem>.parquet (good rows), DIR/<stem>.bad.parquet (rows missing a required
    /// field, with `missing_fields`) and DIR/<stem>.malformed.jsonl (line and reason of each
    /// malformed record; the raw text only with --keep-raw).
    Check(check::CheckArgs),
    /// Validate contracts without data; prints warnings, exits non-zero on the first invalid one.
    Validate {
        /// Contract files (TOML).
        #[arg(required = true)]
        contracts: Vec<PathBuf>,
        /// Directory of canonical schemas (default: `canonical/` next to the contract's folder,
        /// else the built-in schemas).
        #[arg(long)]
        canonical: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    layer::telemetry::init_cli();
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Contract(ContractCmd::Check(a)) => check::run_check(a),
        Cmd::Contract(ContractCmd::Validate { contracts, canonical }) => {
            check::run_validate(&contracts, canonical)
        }
        Cmd::Bench(a) => bench::run(a),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
