//! shardctl: the admin and rebalancing toolkit for federated MySQL.
//!
//! Domain logic (placement, routing, targets, doctor rules) is pure and lives apart from the
//! code that talks to servers (`ring`, `replica`, `sandbox`) and from the command layer.

pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod docs;
pub mod doctor;
pub mod error;
pub mod exit_codes;
#[macro_use]
pub mod failpoint;
pub mod lock;
pub mod maintenance;
pub mod migrate;
pub mod output;
pub mod parallel;
pub mod process;
pub mod rebalance;
pub mod ring;
pub mod sandbox;
pub mod shard;
pub mod signals;
pub mod top;
pub mod types;

use std::ffi::OsString;

use clap::Parser;

use crate::output::{fail, write_stdout, Format, Ui};

/// True when the raw arguments ask for JSON, so even a parse error is printed as JSON.
fn wants_json(args: &[OsString]) -> bool {
    args.windows(2)
        .any(|w| w[0] == "--format" && w[1] == "json")
        || args.iter().any(|a| a == "--format=json")
}

/// Parses, runs, prints; returns the process exit code.
pub fn run(args: Vec<OsString>) -> u8 {
    let json = wants_json(&args);
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = write_stdout(&e.render().to_string());
            return exit_codes::OK;
        }
        Err(e) => {
            // clap names the offending argument on the lines after the first; keep everything
            // before the usage block (`fail` folds it onto one line).
            let text = e.render().to_string();
            let detail = text
                .split("\n\nUsage:")
                .next()
                .unwrap_or("invalid arguments");
            let detail = detail
                .split("\n\nFor more information")
                .next()
                .unwrap_or(detail);
            return fail(
                "usage",
                detail.trim_start_matches("error: "),
                json,
                exit_codes::USAGE,
            );
        }
    };
    let format = cli.global.format;
    let ui = Ui::new(cli.global.quiet, cli.global.verbose, format);
    match commands::dispatch(cli, ui) {
        Ok(outcome) => match outcome.print(format) {
            Ok(()) => outcome.code,
            Err(e) => fail(
                "failed",
                &format!("writing output: {e}"),
                false,
                exit_codes::FAILED,
            ),
        },
        Err(e) => fail(
            e.kind(),
            &e.to_string(),
            format == Format::Json,
            e.exit_code(),
        ),
    }
}
