//! shoal: deploy and autoscale a fleet of Kafka consumer workloads on AWS ECS Fargate.
//!
//! The binary is a thin wrapper around [`run`]: parse the command line, start the one async
//! runtime, run the command, turn the outcome into an exit code. Modules point downwards
//! only; the README's "The module map" gives the layers, and tests/it/architecture.rs
//! checks them.

pub mod app;
pub mod aws;
pub mod cli;
pub mod deploy;
pub mod discover;
pub mod error;
pub mod image;
pub mod kafka;
pub mod manifest;
pub mod plan;
pub mod platform;
pub mod render;
pub mod report;
pub mod scaffold;
pub mod scale;

use std::ffi::OsString;

use clap::Parser;

pub use error::{exit, Error};

/// Runs shoal with these arguments (the first is the program name) and returns the exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
        }
    };
    report::init_logging(cli.verbose);
    let output = cli.output;
    // The one async runtime: every command runs on it.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = Error::io("cannot start the async runtime", e);
            report::error(&e, output);
            return e.exit_code();
        }
    };
    match runtime.block_on(app::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            report::error(&e, output);
            e.exit_code()
        }
    }
}
