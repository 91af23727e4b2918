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
  shoal deploy -e sandbox            build, push, register, update and wait for the rollouts
  shoal logs exposure-consumer -f    every replica's new lines as they are written
  shoal autoscale -e prod --once --dry-run
                                     what the autoscaler would decide now, and why
  shoal topics plan -e sandbox       what topics apply would create, grow or reconfigure
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

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The consumer's name: the folder under consumers/, and its ECS service and repository.
    pub name: String,

    /// worker: consumes the topic. api: an HTTP API that produces to it.
    #[arg(long, value_enum, default_value_t = NewKind::Worker)]
    pub kind: NewKind,

    /// rust: a Rust crate (rdkafka) built in rust:X.Y-bookworm, run on debian:bookworm-slim.
    /// python: main.py (confluent-kafka) with a pinned requirements.txt, on
    /// python:3.11-slim-bookworm.
    #[arg(long, value_enum, default_value_t = NewLang::Rust)]
    pub lang: NewLang,

    /// The topic it consumes or produces to. Default: the consumer's name.
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NewKind {
    Worker,
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NewLang {
    Rust,
    Python,
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
    /// Every folder under consumers/ with a consumer.toml is a workload, and so is one with
    /// only a Dockerfile: it runs with the defaults (a worker, 256 CPU / 512 MiB, one
    /// replica, no scaling, no [kafka]) and shows as "defaults". -v names the folders with
    /// neither, which are skipped. The image tag is the hash of the build context after
    /// .dockerignore, the Dockerfile, the build args and the target.
    Discover,

    /// Check shoal.toml and every consumer.toml, reporting every problem at once.
    ///
    /// Each problem names the file, the line, the key and what to do. With --env, that
    /// environment's ${VAR} references are also expanded and checked.
    Validate,

    /// Start a new workload: consumers/NAME with a manifest, a Dockerfile and its code.
    ///
    /// A worker consumes its topic as a consumer group, committing after each message; an
    /// api produces what it is sent to its topic, answering once the broker has acknowledged
    /// it; both stop cleanly on SIGTERM. The code is a Rust crate (the default) or, with
    /// --lang python, a main.py with a pinned requirements.txt, which logs JSON lines and
    /// serves GET /health (the worker on PORT, default 9100). Either deploys as it is, to the
    /// local platform and to ECS; the topic is created by the deploy.
    #[command(after_help = "\
Examples:
  shoal new orders-worker              a Rust worker on the topic orders-worker
  shoal new orders-api --kind api --topic orders
  shoal new orders-py --lang python    a Python worker (confluent-kafka)
  shoal new intake --lang python --kind api --topic orders
  shoal deploy                         build it and run it on the local platform")]
    New(NewArgs),

    /// Print the ECS task definition of one consumer, or of all of them.
    #[command(after_help = "\
Examples:
  shoal render exposure-consumer -e sandbox
  shoal render --write rendered/ && shoal render --check rendered/")]
    Render(RenderArgs),

    /// Show what a deploy would create, change and delete, without changing anything.
    ///
    /// On the ecs platform the plan compares the manifests with what exists: ECR
    /// repositories, log groups, each family's active task definition (after dropping the
    /// fields ECS fills in) and the project's services. On the docker platform it compares
    /// each consumer with the labels of its live containers (docs/local-platform.md).
    Plan,

    /// Build, push and roll out every consumer that changed, then wait for the rollouts.
    ///
    /// The plan is printed first. Images whose content-hash tag is already in the registry
    /// are neither built nor pushed; task definitions are registered only when they differ
    /// from the active revision; services are updated only when something changed, keeping
    /// the desired count the autoscaler set (within the manifest's min and max). A rollout
    /// that ECS rolls back, that fails or that times out fails the deploy (exit 5) and names
    /// the service, the reason and ECS's last events.
    ///
    /// On the docker platform images are built on the local engine (not pushed) and each
    /// changed consumer is replaced container by container: the new revision starts next to
    /// the old one, the old containers go once the new ones are healthy, and a new revision
    /// that exits or is not healthy is removed while the old one keeps serving (exit 5, with
    /// the container's last log lines). See docs/local-platform.md.
    #[command(after_help = "\
Examples:
  shoal deploy --env sandbox
  shoal deploy --env prod --jobs 8 --timeout 15m
  shoal deploy --env prod --prune      also delete services whose consumer folder is gone")]
    Deploy(DeployArgs),

    /// Show each service: desired/running/pending, revision, image tag, rollout, last event.
    ///
    /// On the docker platform: each consumer's revision, desired/running containers, image
    /// tag, the ports its API replicas listen on, and every container.
    ///
    /// ALARMS shows the states of each consumer's `[alarms]` (lag, no-lag-data,
    /// below-desired, dlq): CloudWatch's on ECS; on docker the same conditions judged now,
    /// from two lag reads 2 s apart and the running containers. An alarm that is not OK is
    /// listed under the table with its reason.
    ///
    /// no-lag-data means on ECS that `shoal autoscale` published no lag for no_data_minutes
    /// (the daemon is down, or runs and cannot read the lag); on docker, where the autoscaler
    /// publishes nothing, that status itself cannot read the lag from the broker now.
    #[command(after_help = "\
Examples:
  shoal status --env prod                 a row per service; alarms not OK follow the table
  shoal status -o json | jq '.services[] | {consumer, alarms}'")]
    Status,

    /// Remove every container of the project in a docker environment.
    #[command(after_help = "\
Examples:
  shoal down --env local")]
    Down,

    /// Keep each service's desired count matched to its consumer group's lag.
    ///
    /// Every tick reads the lag of each consumer with [scaling] and [kafka] (committed offsets
    /// first, then end offsets), decides with shoal's policy (time lag under max_lag_seconds,
    /// only replica counts where the busiest replica's partition share drops, scale out at
    /// once, scale in after a window, no change when lag cannot be read), sets the ECS desired
    /// count when it changes, and publishes ConsumerLag, ConsumerLagSeconds and DesiredCount
    /// to CloudWatch. Serves /healthz and Prometheus /metrics; stops on SIGTERM. On the
    /// docker platform it adds and removes containers instead, and publishes nothing to
    /// CloudWatch.
    #[command(after_help = "\
Examples:
  shoal autoscale --env prod
  shoal autoscale --env sandbox --once --dry-run     decide once and print why, change nothing")]
    Autoscale(AutoscaleArgs),

    /// Create or update the project's CloudWatch dashboard: per scaled consumer, lag, lag
    /// seconds (with the max_lag_seconds line), and desired against running counts.
    Dashboard,

    /// Show each partition's lag, lag seconds and rates for the consumers' groups.
    ///
    /// Reads every group twice, --sample apart, to measure the arrival and consume rates. A
    /// partition the group never committed on shows no lag: its reset policy decides.
    #[command(after_help = "\
Examples:
  shoal lag --env sandbox
  shoal lag --env prod --consumer exposure-consumer -o json")]
    Lag {
        /// Only this consumer.
        #[arg(long, value_name = "NAME")]
        consumer: Option<String>,

        /// Time between the two reads that measure rates.
        #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
        sample: std::time::Duration,
    },

    /// Print a consumer's logs: every replica's lines in time order, each after its replica.
    ///
    /// On ECS the lines come from CloudWatch Logs (the consumer's log group, one stream per
    /// task, named by its task id); on the docker platform from each of its containers
    /// through the Docker Engine API (named by container). In a terminal each replica has a
    /// colour of its own; `-o json` prints one object per line: timestamp, consumer, replica,
    /// message. With --follow it keeps printing new lines until stopped (Ctrl-C): on ECS
    /// through a CloudWatch Live Tail session where the endpoint has one, else by polling every
    /// 2s; on docker also from the containers a deploy or the autoscaler starts meanwhile.
    #[command(after_help = "\
Examples:
  shoal logs exposure-consumer                  the last 10 minutes, every replica
  shoal logs exposure-consumer --since 2h --filter ERROR
  shoal logs exposure-api -e sandbox --follow   keep printing new lines until Ctrl-C
  shoal logs exposure-api --since 2026-12-03T09:00:00Z -o json | jq .message
  shoal status                                  which replicas run now")]
    Logs(LogsArgs),

    /// Return a consumer's service to the task-definition revision before its current one.
    #[command(after_help = "\
Examples:
  shoal rollback exposure-consumer --env prod")]
    Rollback {
        /// The consumer whose service goes back one revision.
        consumer: String,

        /// How long to wait for the rollout, e.g. 600s or 10m.
        #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
        timeout: std::time::Duration,
    },

    /// Run the autoscaler's tick and a model of KEDA+HPA over a produce-rate trace.
    ///
    /// shoal's side is the daemon's own tick (`shoal autoscale`), against a simulated broker
    /// and platform: it reads end and committed offsets (committed every --commit-interval)
    /// and the member count from --members, every --interval. Each change in the group's
    /// members pauses the group for --rebalance-seconds, under either policy.
    ///
    /// The trace is a CSV of `t_seconds,produce_rate` rows (header optional, `#` comments
    /// allowed), interpolated linearly; repeat a time to make a step. An optional third column
    /// names partitions stuck from that row until the next (space-separated numbers; empty or
    /// `-` for none). Prints peak and p99 lag seconds, replica-seconds, scale actions and
    /// seconds spent rebalancing per policy. Needs no project.
    #[command(after_help = "\
Examples:
  shoal simulate --trace benches/traces/spike.csv
  shoal simulate --trace benches/traces/diurnal.csv --plot diurnal.svg
  shoal simulate --trace load.csv --partitions 24 --per-replica-rate 250 --max-lag-seconds 30
  shoal simulate --trace load.csv --policy keda --lag-threshold 5000 -o json
  shoal simulate --trace benches/traces/skewed.csv --partition-weights 6,1,1,1,1,1,1,1,1,1,1,1
  shoal simulate --trace benches/traces/ramp.csv --members platform --rebalance-seconds 0")]
    Simulate(SimulateArgs),

    /// Plan, apply or delete the Kafka topics the consumers declare with [[topic]].
    ///
    /// Topics are never deleted by omission: a live topic nothing declares shows as
    /// unmanaged. Partitions only grow; a lower partition count or another replication factor
    /// is refused before anything changes. Configs are compared only where set on the topic,
    /// and changed with IncrementalAlterConfigs.
    #[command(after_help = "\
Examples:
  shoal topics plan --env sandbox
  shoal topics plan --env sandbox -o json
  shoal topics apply --env sandbox     create, grow and reconfigure; a second run changes nothing
  shoal topics delete old-orders --env sandbox --yes")]
    Topics(TopicsArgs),

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
pub struct LogsArgs {
    /// The consumer whose logs to print (a folder name under consumers/).
    pub consumer: String,

    /// Keep printing new lines as the replicas write them, until stopped.
    #[arg(short, long)]
    pub follow: bool,

    /// The oldest line to print: a duration back from now (90s, 10m, 2h, 1d) or a time
    /// (2026-12-03T09:00:00Z).
    #[arg(long, default_value = "10m", value_parser = parse_since, value_name = "DURATION|TIME")]
    pub since: std::time::SystemTime,

    /// Only lines that contain this text (case-sensitive).
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
}

/// `--since`: a duration back from now (as [`parse_duration`] reads it) or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at);
    }
    let back = parse_duration(text).map_err(|_| {
        format!("{text:?} is neither a duration nor a time; write e.g. 90s, 10m, 2h, 1d or 2026-12-03T09:00:00Z")
    })?;
    std::time::SystemTime::now()
        .checked_sub(back)
        .ok_or_else(|| format!("{text:?} reaches back before the clock's start"))
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

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    pub command: TopicsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Show what apply would create, grow and reconfigure, and the unmanaged topics.
    Plan,
    /// Create missing topics, grow partitions and set configs, logging each step.
    Apply,
    /// Delete one topic and its data.
    #[command(after_help = "\
Examples:
  shoal topics delete old-orders --env sandbox --yes")]
    Delete {
        /// The topic to delete.
        name: String,
        /// Confirm the deletion; without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
}

/// Where `shoal simulate` gets the group's member count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimMembers {
    Group,
    Platform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimPolicy {
    Shoal,
    Keda,
    Both,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The produce-rate trace: CSV rows `t_seconds,produce_rate[,stuck]`.
    #[arg(long, value_name = "FILE.csv")]
    pub trace: PathBuf,

    /// Partitions of the topic; arrivals are split evenly over them.
    #[arg(long, default_value_t = 12, value_name = "N")]
    pub partitions: u32,

    /// Seconds from a replica's launch until it consumes (it is paid for from its launch).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub startup_seconds: u64,

    /// Messages per second one replica processes, split over the partitions it owns.
    #[arg(long, default_value_t = 100.0, value_name = "MSG_PER_S")]
    pub per_replica_rate: f64,

    /// The lag target both policies get.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub max_lag_seconds: f64,

    /// Fewest replicas (0 allows scaling to zero).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub min: u32,

    /// Most replicas. Default: the partition count.
    #[arg(long, value_name = "N")]
    pub max: Option<u32>,

    /// Which policies to run.
    #[arg(long, value_enum, default_value_t = SimPolicy::Both)]
    pub policy: SimPolicy,

    /// KEDA's lagThreshold (messages per replica). Default: per-replica rate × max lag
    /// seconds.
    #[arg(long, value_name = "MESSAGES")]
    pub lag_threshold: Option<f64>,

    /// Seconds between shoal's policy ticks.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub interval: u64,

    /// Never alternate between two replica counts: settle at one that keeps up (as
    /// `duty_cycle = false` in [scaling]). Fewer rebalances, more replica-seconds.
    #[arg(long)]
    pub no_duty_cycle: bool,

    /// Seconds each change in the group's members pauses the whole group (eager assignor's
    /// rebalance); 0 models cooperative-sticky. Both policies pay it.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub rebalance_seconds: u64,

    /// Seconds between a replica's offset commits (librdkafka's auto.commit.interval.ms,
    /// 5000 by default); both policies read the committed offsets, as in production.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub commit_interval: u64,

    /// Where shoal's tick gets the group's member count: `group` (the broker's
    /// DescribeGroups: the replicas that joined) or `platform` (the broker cannot say; the
    /// platform's running count, which includes replicas still starting, like ECS
    /// runningCount).
    #[arg(long, value_enum, default_value_t = SimMembers::Group)]
    pub members: SimMembers,

    /// One weight per partition, e.g. 4,1,1,1: each partition gets its weight's share of the
    /// trace's rate. Default: even.
    #[arg(long, value_name = "W0,W1,...")]
    pub partition_weights: Option<String>,

    /// Also draw lag seconds and replicas over time for each policy into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Delete the services of consumers whose folder was removed (scale to 0, then delete).
    #[arg(long)]
    pub prune: bool,

    /// Images built and pushed at once.
    #[arg(short, long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,

    /// How long to wait for each rollout, e.g. 600s or 10m.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: std::time::Duration,
}

/// A duration as humantime reads it (`90s`, `15m`, `2m30s`, `1h`), or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = text
            .parse()
            .map_err(|_| format!("{text:?} is too many seconds"))?;
        return Ok(std::time::Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. 90s, 15m, 2m30s or 1h"))
}

#[derive(Debug, Args)]
pub struct AutoscaleArgs {
    /// Run one tick and exit.
    #[arg(long)]
    pub once: bool,

    /// Decide and log, but set no desired count and publish no metrics.
    #[arg(long)]
    pub dry_run: bool,

    /// Time between ticks, e.g. 30s or 1m.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: std::time::Duration,

    /// Address for /healthz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "HOST:PORT")]
    pub listen: String,

    /// How long the recommendation must stay below the current count before scaling in.
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DURATION")]
    pub scale_in_window: std::time::Duration,
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_since};
    use std::time::{Duration, SystemTime};

    #[test]
    fn durations_with_units_or_bare_seconds() {
        for (text, seconds) in [
            ("90", 90),
            ("90s", 90),
            ("30s", 30),
            ("10m", 600),
            ("2m30s", 150),
            ("1h", 3600),
            ("1h 5m", 3900),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn a_bad_duration_says_what_to_write() {
        for text in ["", "ten", "5x", "-5s", "m"] {
            let e = parse_duration(text).expect_err(text);
            assert!(e.starts_with(&format!("{text:?} is not a duration")), "{e}");
            assert!(e.ends_with("write e.g. 90s, 15m, 2m30s or 1h"), "{e}");
        }
    }

    #[test]
    fn since_is_a_time_or_a_duration_back_from_now() {
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z"),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        let ten_minutes_ago = parse_since("10m").expect("a duration");
        let back = SystemTime::now()
            .duration_since(ten_minutes_ago)
            .expect("in the past");
        assert!(
            back >= Duration::from_secs(600) && back < Duration::from_secs(610),
            "{back:?}"
        );
        let e = parse_since("yesterday").expect_err("not a time");
        assert_eq!(
            e,
            "\"yesterday\" is neither a duration nor a time; write e.g. 90s, 10m, 2h, 1d or 2026-12-03T09:00:00Z"
        );
    }
}
