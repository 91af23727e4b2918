//! The command line exactly as typed (clap types, no I/O). `app` resolves it.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  shoal discover                     list the workloads under consumers/ and their image tags
  shoal validate                     check shoal.toml and every consumer.toml, all errors at once
  shoal render exposure-api -e sandbox
                                     print one consumer's ECS task definition
  shoal render --write deploy/td     write every task definition to deploy/td/<consumer>.json
  shoal render --check deploy/td     fail with a diff when those files are out of date
  shoal plan -e sandbox -o json      what a deploy would create, change and delete, as JSON
  shoal completions bash > /etc/bash_completion.d/shoal

The environment comes from --env, else SHOAL_ENV, else default_env in shoal.toml.
Exit codes: 0 ok, 1 failed, 2 usage, 3 invalid manifests or templates, 4 drift found by --check.";

/// Deploy and autoscale a fleet of Kafka consumer workloads on AWS ECS Fargate.
///
/// shoal reads shoal.toml (the project and its environments) and consumers/*/consumer.toml
/// (one workload each), builds each workload's image tagged by the hash of its build
/// context, renders ECS task definitions from templates/, and plans the changes before
/// applying them.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, after_help = EXAMPLES, max_term_width = 100)]
pub struct Cli {
    /// Environment from shoal.toml to work on.
    #[arg(short, long, global = true, env = "SHOAL_ENV", value_name = "NAME")]
    pub env: Option<String>,

    /// Output format: text for people, json for programs.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Project root (the folder with shoal.toml). Default: the nearest one above the current
    /// directory.
    #[arg(short = 'C', long, global = true, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the workloads under consumers/ with their kind, image tag, group and topics.
    ///
    /// Every folder under consumers/ with a consumer.toml is a workload; -v names the
    /// folders that were skipped. The image tag is the hash of the build context after
    /// .dockerignore, the Dockerfile, the build args and the target.
    Discover,

    /// Check shoal.toml and every consumer.toml, reporting every problem at once.
    ///
    /// Each problem names the file, the line, the key and what to do. With --env, that
    /// environment's ${VAR} references are also expanded and checked.
    Validate,

    /// Print the ECS task definition of one consumer, or of all of them.
    #[command(after_help = "\
Examples:
  shoal render exposure-consumer -e sandbox
  shoal render --write rendered/ && shoal render --check rendered/")]
    Render(RenderArgs),

    /// Show what a deploy would create, change and delete, without changing anything.
    Plan,

    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  shoal completions bash > ~/.local/share/bash-completion/completions/shoal
  shoal completions zsh > \"${fpath[1]}/_shoal\"")]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The consumer to render (a folder name under consumers/). Default: all of them.
    pub consumer: Option<String>,

    /// Compare the renderings with DIR/<consumer>.json and show a unified diff of each
    /// difference. Exits 4 when anything differs.
    #[arg(long, value_name = "DIR", conflicts_with = "write")]
    pub check: Option<PathBuf>,

    /// Write the renderings to DIR/<consumer>.json.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}
