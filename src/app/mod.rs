//! Resolves the command line into settings (the project, the environment) and runs the
//! command. Commands below return values; this module and `output` alone print them.

mod output;
mod topics;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde_json::{json, Value};
use tracing::info;

use crate::cli::{Cli, Command, LogsArgs, Output, RenderArgs, SimMembers, SimPolicy, SimulateArgs};
use crate::deploy::{DeployError, DeployOptions, Platform as DeployPlatform};
use crate::discover::{self, context, Fleet};
use crate::error::{exit, Error, Result};
use crate::manifest::{Environment, Platform, Project, PROJECT_FILE};
use crate::plan;
use crate::render::{self, Renderer, Target};
use crate::report;
use crate::scale::{self, sim};

/// Runs a parsed command line. The binary runs it on its one tokio runtime.
pub async fn run(cli: Cli) -> Result<i32> {
    if let Command::Completions { shell } = cli.command {
        let mut cmd = Cli::command();
        clap_complete::generate(shell, &mut cmd, "shoal", &mut std::io::stdout());
        return Ok(exit::OK);
    }
    if let Command::Simulate(args) = &cli.command {
        return simulate(args, cli.output);
    }
    let root = project_root(cli.project_dir.as_deref())?;
    let project = Project::load(&root).map_err(Error::Invalid)?;
    let ctx = Ctx {
        env_name: cli
            .env
            .clone()
            .unwrap_or_else(|| project.default_env.clone()),
        env_given: cli.env.is_some(),
        project,
        output: cli.output,
    };
    match cli.command {
        Command::New(args) => new_consumer(&ctx.project.root, &args, ctx.output),
        Command::Discover => ctx.discover(),
        Command::Validate => ctx.validate(),
        Command::Render(args) => ctx.render(&args),
        Command::Plan => ctx.on_platform(OnPlatform::Plan).await,
        Command::Deploy(args) => {
            ctx.on_platform(OnPlatform::Deploy(DeployOptions {
                prune: args.prune,
                jobs: args.jobs,
                wait: crate::platform::Wait::with_timeout(args.timeout),
            }))
            .await
        }
        Command::Status => ctx.on_platform(OnPlatform::Status).await,
        Command::Down => ctx.on_platform(OnPlatform::Down).await,
        Command::Dashboard => {
            let r = ctx.resolve_ecs()?;
            let put = crate::platform::ecs::put_dashboard(&r.ctx(&ctx.project)).await?;
            output::dashboard(ctx.output, &put);
            Ok(exit::OK)
        }
        Command::Lag { consumer, sample } => {
            ctx.on_platform(OnPlatform::Lag { consumer, sample }).await
        }
        Command::Autoscale(args) => {
            ctx.on_platform(OnPlatform::Autoscale(crate::scale::command::Options {
                once: args.once,
                dry_run: args.dry_run,
                interval: args.interval,
                listen: (!args.once).then(|| args.listen.clone()),
                scale_in_window: args.scale_in_window,
            }))
            .await
        }
        Command::Logs(args) => ctx.on_platform(OnPlatform::Logs(args)).await,
        Command::Rollback { consumer, timeout } => {
            let r = ctx.resolve_ecs()?;
            let done = crate::platform::ecs::rollback(
                &r.ctx(&ctx.project),
                &consumer,
                crate::platform::Wait::with_timeout(timeout),
            )
            .await?;
            output::rolled_back(ctx.output, &done);
            Ok(exit::OK)
        }
        Command::Topics(args) => {
            let env = ctx.env()?;
            let fleet = match args.command {
                crate::cli::TopicsCommand::Delete { .. } => None,
                _ => Some(ctx.fleet_for(&env)?),
            };
            topics::command(
                &args.command,
                &ctx.project.name,
                &env,
                fleet.as_ref(),
                ctx.output,
            )
            .await
        }
        Command::Completions { .. } | Command::Simulate(_) => Ok(exit::OK),
    }
}

/// A command that runs on the environment's platform.
enum OnPlatform {
    Plan,
    Deploy(DeployOptions),
    Status,
    Down,
    Logs(LogsArgs),
    Lag {
        consumer: Option<String>,
        sample: std::time::Duration,
    },
    Autoscale(crate::scale::command::Options),
}

/// Everything a platform command works on, resolved from the project and environment.
struct Resolved {
    env: Environment,
    fleet: Fleet,
    hashes: BTreeMap<String, context::ContextHash>,
    renderer: Renderer,
}

impl Resolved {
    fn ctx<'a>(&'a self, project: &'a Project) -> crate::deploy::Ctx<'a> {
        crate::deploy::Ctx {
            root: &project.root,
            project: &project.name,
            env: &self.env,
            fleet: &self.fleet,
            hashes: &self.hashes,
            renderer: &self.renderer,
            session: crate::deploy::Session::new(&self.env),
        }
    }
}

/// Runs one platform command on `p` and renders what it returns.
async fn run_on<P: DeployPlatform>(
    p: &P,
    c: &crate::deploy::Ctx<'_>,
    command: OnPlatform,
    out: Output,
) -> Result<i32> {
    let place = p.place();
    match command {
        OnPlatform::Plan => {
            let plan = p.plan().await?;
            output::plan(out, c, &place, &plan);
        }
        OnPlatform::Deploy(options) => {
            let mut show = |plan: &plan::Plan| output::plan_before_deploy(out, c, &place, plan);
            let deployed = p.deploy(&options, &mut show).await?;
            output::deployed(out, c, &deployed);
            if let Some(e) = deployed.failure {
                return Err(e.into());
            }
        }
        OnPlatform::Status => {
            let rows = p.status().await?;
            output::status(out, c, &place, &rows);
        }
        OnPlatform::Down => {
            let removed = p.down().await?;
            output::down(out, c, &removed);
        }
        OnPlatform::Logs(args) => {
            let query = crate::platform::logs::LogQuery {
                consumer: args.consumer,
                since: args.since,
                filter: args.filter,
                follow: args.follow,
            };
            let mut printer = output::LogPrinter::new(out);
            let mut sink =
                |lines: Vec<crate::platform::logs::LogLine>| printer.print(&query.consumer, &lines);
            p.logs(&query, &mut sink).await?;
        }
        OnPlatform::Lag { consumer, sample } => {
            let rows = crate::scale::command::lag_rows(p, c, consumer.as_deref(), sample).await?;
            output::lag(out, &rows);
        }
        OnPlatform::Autoscale(options) => {
            let on_tick =
                |outcomes: &[crate::scale::daemon::Outcome]| output::outcomes(out, outcomes);
            return crate::scale::command::run(p, c, &on_tick, &options).await;
        }
    }
    Ok(exit::OK)
}

/// `shoal simulate`: runs the policies over a trace; needs no project.
fn simulate(args: &SimulateArgs, output: Output) -> Result<i32> {
    let setup = sim::Setup {
        partitions: args.partitions,
        startup_seconds: args.startup_seconds,
        per_replica_rate: args.per_replica_rate,
        max_lag_seconds: args.max_lag_seconds,
        min: args.min,
        max: args.max.unwrap_or(args.partitions),
        lag_threshold: args.lag_threshold,
        interval_seconds: args.interval,
        duty_cycle: !args.no_duty_cycle,
        rebalance_seconds: args.rebalance_seconds,
        commit_interval_seconds: args.commit_interval,
        members: match args.members {
            SimMembers::Group => scale::policy::MemberSource::Group,
            SimMembers::Platform => scale::policy::MemberSource::Platform,
        },
        partition_weights: args
            .partition_weights
            .as_deref()
            .map(sim::parse_partition_weights)
            .transpose()
            .map_err(Error::Usage)?,
    };
    setup.check().map_err(Error::Usage)?;
    let bad_trace = |e: sim::TraceError| Error::Usage(e.to_string());
    let trace = sim::Trace::load(&args.trace).map_err(bad_trace)?;
    trace.check(setup.partitions).map_err(bad_trace)?;
    let policies: &[sim::Which] = match args.policy {
        SimPolicy::Shoal => &[sim::Which::Shoal],
        SimPolicy::Keda => &[sim::Which::Keda],
        SimPolicy::Both => &[sim::Which::Shoal, sim::Which::Keda],
    };
    let result = scale::Comparison::run(&trace, &setup, policies);
    if let Some(path) = &args.plot {
        let runs: Vec<_> = result.runs.iter().map(|(w, r)| (*w, r)).collect();
        let title = format!("shoal simulate --trace {}", args.trace.display());
        scale::plot::draw(path, &title, &runs).map_err(|e| Error::Cause(Box::new(e)))?;
        info!(plot = %path.display(), "drew the plot");
    }
    match output {
        Output::Json => {
            report::outln(&serde_json::to_string_pretty(&result.to_json()).unwrap_or_default())
        }
        Output::Text => report::out(&result.to_text(&trace, &setup)),
    }
    Ok(exit::OK)
}

/// `shoal new`: writes the consumer folder and says what to do next.
fn new_consumer(root: &Path, args: &crate::cli::NewArgs, output: Output) -> Result<i32> {
    use crate::scaffold::{self, Kind, Lang, ScaffoldError};
    let kind = match args.kind {
        crate::cli::NewKind::Worker => Kind::Worker,
        crate::cli::NewKind::Api => Kind::Api,
    };
    let lang = match args.lang {
        crate::cli::NewLang::Rust => Lang::Rust,
        crate::cli::NewLang::Python => Lang::Python,
    };
    let created = scaffold::create(root, &args.name, kind, lang, args.topic.as_deref()).map_err(
        |e| match e {
            ScaffoldError::Name { .. } | ScaffoldError::Topic { .. } | ScaffoldError::Exists(_) => {
                Error::Usage(e.to_string())
            }
            _ => Error::Cause(Box::new(e)),
        },
    )?;
    if let Some(problem) = &created.lockfile_problem {
        tracing::warn!(
            "could not make Cargo.lock ({problem}); run `cargo generate-lockfile` in {} before the first deploy",
            created.dir.display()
        );
    }
    if output == Output::Json {
        let files: Vec<String> = created
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        report::outln(&json!({ "consumer": args.name, "files": files }).to_string());
        return Ok(exit::OK);
    }
    for file in &created.files {
        report::outln(&format!("created {}", file.display()));
    }
    report::outln(&format!(
        "\nNext: `shoal validate`, then `shoal deploy` to run it on the local platform.\nIts code is in {}.",
        created.program.display()
    ));
    Ok(exit::OK)
}

/// The folder holding shoal.toml: the one given, or the nearest above the current directory.
fn project_root(given: Option<&Path>) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(|e| Error::Cause(Box::new(e)))?;
    if let Some(dir) = given {
        let dir = cwd.join(dir);
        if dir.join(PROJECT_FILE).is_file() {
            return Ok(dir);
        }
        return Err(Error::Usage(format!(
            "{} has no {PROJECT_FILE}",
            dir.display()
        )));
    }
    for dir in cwd.ancestors() {
        if dir.join(PROJECT_FILE).is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    Err(Error::Usage(format!(
        "no {PROJECT_FILE} in {} or any folder above it; run shoal inside a project or pass --project-dir DIR",
        cwd.display()
    )))
}

struct Ctx {
    project: Project,
    env_name: String,
    env_given: bool,
    output: Output,
}

/// One consumer's discovery result, as `discover` prints it.
#[derive(serde::Serialize)]
struct Found<'a> {
    name: &'a str,
    kind: &'a str,
    /// The manifest's path, or `defaults` for a folder with a Dockerfile and no manifest.
    manifest: String,
    defaults: bool,
    tag: String,
    digest: String,
    files: usize,
    bytes: u64,
    group: Option<&'a str>,
    topics: Vec<&'a str>,
    scaling: Option<String>,
}

impl Ctx {
    fn env(&self) -> Result<Environment> {
        self.project
            .environment(&self.env_name)
            .map_err(Error::Invalid)
    }

    fn fleet(&self) -> Result<Fleet> {
        discover::discover(&self.project.root).map_err(Error::Invalid)
    }

    /// The workloads that deploy to `env`, their `[env]` expanded from this process's
    /// environment.
    fn fleet_for(&self, env: &Environment) -> Result<Fleet> {
        self.fleet()?
            .for_env(env, &|k| std::env::var(k).ok())
            .map_err(Error::Invalid)
    }

    /// Fails with every problem when `env` cannot run `fleet` as it stands.
    fn deployable(&self, env: &Environment, fleet: &Fleet) -> Result<()> {
        let problems = self.project.check_deployable(env, &fleet.consumers);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(problems))
        }
    }

    fn hashes(&self, fleet: &Fleet) -> Result<BTreeMap<String, context::ContextHash>> {
        fleet
            .consumers
            .iter()
            .map(|c| {
                context::hash(&c.build)
                    .map(|h| (c.name.clone(), h))
                    .map_err(|source| Error::Context {
                        consumer: c.name.clone(),
                        source,
                    })
            })
            .collect()
    }

    fn print_json(&self, v: &Value) {
        report::outln(&serde_json::to_string_pretty(v).unwrap_or_default());
    }

    fn discover(&self) -> Result<i32> {
        let fleet = self.fleet()?;
        let hashes = self.hashes(&fleet)?;
        let found: Vec<Found<'_>> = fleet
            .consumers
            .iter()
            .map(|c| {
                let h = &hashes[&c.name];
                Found {
                    name: &c.name,
                    kind: c.kind.as_str(),
                    manifest: if c.defaults {
                        "defaults".to_string()
                    } else {
                        c.manifest.display().to_string()
                    },
                    defaults: c.defaults,
                    tag: h.tag().to_string(),
                    digest: h.digest.clone(),
                    files: h.files,
                    bytes: h.bytes,
                    group: c.kafka.as_ref().map(|k| k.group.as_str()),
                    topics: c
                        .kafka
                        .as_ref()
                        .map(|k| k.topics.iter().map(String::as_str).collect())
                        .unwrap_or_default(),
                    scaling: c
                        .scaling
                        .map(|s| format!("{}..{} under {}s lag", s.min, s.max, s.max_lag_seconds)),
                }
            })
            .collect();
        if self.output == Output::Json {
            let skipped: Vec<String> = fleet
                .skipped
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            self.print_json(&json!({"consumers": found, "skipped": skipped}));
            return Ok(exit::OK);
        }
        if found.is_empty() {
            report::outln(
                "No consumers: add a folder under consumers/ with a Dockerfile (and a consumer.toml for more than the defaults).",
            );
            return Ok(exit::OK);
        }
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|f| {
                vec![
                    f.name.to_string(),
                    f.kind.to_string(),
                    if f.defaults {
                        "defaults".to_string()
                    } else {
                        "consumer.toml".to_string()
                    },
                    f.tag.clone(),
                    f.group.unwrap_or("-").to_string(),
                    if f.topics.is_empty() {
                        "-".to_string()
                    } else {
                        f.topics.join(",")
                    },
                    f.scaling.clone().unwrap_or_else(|| "-".to_string()),
                    format!("{} files", f.files),
                ]
            })
            .collect();
        report::out(&report::table(
            &[
                "CONSUMER",
                "KIND",
                "MANIFEST",
                "IMAGE TAG",
                "GROUP",
                "TOPICS",
                "SCALING",
                "CONTEXT",
            ],
            &rows,
        ));
        Ok(exit::OK)
    }

    fn validate(&self) -> Result<i32> {
        let fleet = self.fleet()?;
        // Every environment was checked on load; the selected one is also expanded when it was
        // asked for explicitly, since only then must its ${VAR}s be set, and checked against
        // its workloads: what they require is set, and no credential is plain on ECS.
        if self.env_given {
            let env = self.env()?;
            self.deployable(&env, &self.fleet_for(&env)?)?;
        }
        let topics: usize = fleet.consumers.iter().map(|c| c.topics.len()).sum();
        let defaults: Vec<_> = fleet.consumers.iter().filter(|c| c.defaults).collect();
        if self.output == Output::Json {
            let defaults: Vec<_> = defaults
                .iter()
                .map(|c| json!({"consumer": c.name, "hint": discover::manifest_hint(c)}))
                .collect();
            self.print_json(&json!({
                "valid": true,
                "consumers": fleet.consumers.len(),
                "topics": topics,
                "environments": self.project.env_names(),
                "defaults": defaults,
            }));
        } else {
            let with_defaults = match defaults.len() {
                0 => String::new(),
                n => format!(" ({n} with the defaults, no manifest)"),
            };
            let consumers = match fleet.consumers.len() {
                1 => "1 consumer".to_string(),
                n => format!("{n} consumers"),
            };
            report::outln(&format!(
                "ok: {PROJECT_FILE} ({} environments: {}) and {consumers}{with_defaults}, {} topics",
                self.project.env_names().len(),
                self.project.env_names().join(", "),
                topics
            ));
            for c in defaults {
                report::outln(&format!("\nnote: {}", discover::manifest_hint(c)));
            }
        }
        Ok(exit::OK)
    }

    /// Renders task definitions: `(consumer, pretty JSON)` for the selection.
    fn renderings(&self, only: Option<&str>) -> Result<Vec<(String, Value)>> {
        let env = self.env()?;
        let fleet = self.fleet_for(&env)?;
        let selected: Vec<_> = match only {
            Some(name) => vec![consumer_named(&fleet, &env, name)?],
            None => fleet.consumers.iter().collect(),
        };
        let renderer = Renderer::for_project(&self.project.root)?;
        info!(template = renderer.origin(), "rendering task definitions");
        let target = Target {
            project: &self.project.name,
            env: &env,
            bootstrap: env.kafka.static_bootstrap(),
        };
        let mut out = Vec::new();
        for c in selected {
            let hash = context::hash(&c.build).map_err(|source| Error::Context {
                consumer: c.name.clone(),
                source,
            })?;
            let image = plan::image_uri(&env, &self.project.name, &c.name, hash.tag());
            out.push((c.name.clone(), renderer.render(&target, c, &image)?));
        }
        Ok(out)
    }

    fn render(&self, args: &RenderArgs) -> Result<i32> {
        // What is printed or written shows no credential (a plain one is refused on ECS).
        let mut renderings = self.renderings(args.consumer.as_deref())?;
        for (_, v) in &mut renderings {
            crate::manifest::credential::redact_json(v);
        }
        if let Some(dir) = &args.write {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
            for (name, v) in &renderings {
                let path = dir.join(format!("{name}.json"));
                std::fs::write(&path, render::to_pretty(v))
                    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
                report::outln(&format!("wrote {}", path.display()));
            }
            return Ok(exit::OK);
        }
        if let Some(dir) = &args.check {
            return check_renderings(dir, &renderings);
        }
        match (&args.consumer, renderings.as_slice()) {
            (Some(_), [(_, v)]) => report::out(&render::to_pretty(v)),
            _ => {
                let all: serde_json::Map<String, Value> = renderings.into_iter().collect();
                report::out(&render::to_pretty(&Value::Object(all)));
            }
        }
        Ok(exit::OK)
    }

    /// The environment, its fleet, their content hashes and the template, for a command
    /// that needs all of them.
    fn resolve(&self) -> Result<Resolved> {
        let env = self.env()?;
        let fleet = self.fleet_for(&env)?;
        let hashes = self.hashes(&fleet)?;
        let renderer = Renderer::for_project(&self.project.root)?;
        Ok(Resolved {
            env,
            fleet,
            hashes,
            renderer,
        })
    }

    /// [`Ctx::resolve`] for an ECS-only command (rollback, dashboard).
    fn resolve_ecs(&self) -> Result<Resolved> {
        let env = self.env()?;
        if env.platform != Platform::Ecs {
            return Err(Error::Usage(format!(
                "environment {} uses the {} platform, and this command is for ecs environments only; use an ecs environment such as sandbox (after `scripts/stack up`)",
                env.name,
                env.platform.as_str()
            )));
        }
        self.resolve()
    }

    /// Runs a command on the environment's platform: the one place a platform is chosen.
    async fn on_platform(&self, command: OnPlatform) -> Result<i32> {
        let r = self.resolve()?;
        match &command {
            OnPlatform::Plan | OnPlatform::Deploy(_) => self.deployable(&r.env, &r.fleet)?,
            OnPlatform::Logs(args) => {
                consumer_named(&r.fleet, &r.env, &args.consumer)?;
            }
            _ => {}
        }
        let c = r.ctx(&self.project);
        match r.env.platform {
            Platform::Ecs => run_on(&crate::platform::ecs::Ecs(&c), &c, command, self.output).await,
            Platform::Docker => {
                run_on(
                    &crate::platform::docker::Docker(&c),
                    &c,
                    command,
                    self.output,
                )
                .await
            }
        }
    }
}

/// The consumer called `name` in the fleet of `env`, or a usage error that says why not.
fn consumer_named<'a>(
    fleet: &'a Fleet,
    env: &Environment,
    name: &str,
) -> Result<&'a crate::manifest::Consumer> {
    if let Some(c) = fleet.get(name) {
        return Ok(c);
    }
    if fleet.elsewhere.iter().any(|e| e == name) {
        return Err(Error::Usage(format!(
            "{name} does not deploy to environment {} (its consumer.toml sets `platforms` without {})",
            env.name,
            env.platform.as_str()
        )));
    }
    Err(Error::Usage(format!(
        "no consumer named {name:?}; consumers: {}",
        fleet
            .consumers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Compares renderings with `dir/<consumer>.json`; prints a unified diff per difference.
fn check_renderings(dir: &Path, renderings: &[(String, Value)]) -> Result<i32> {
    let mut differ = Vec::new();
    for (name, v) in renderings {
        let path = dir.join(format!("{name}.json"));
        let want = render::to_pretty(v);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have == want {
            continue;
        }
        let diff = similar::TextDiff::from_lines(&have, &want);
        report::out(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&path.display().to_string(), &format!("{name} (rendered)"))
                .to_string(),
        );
        differ.push(name.clone());
    }
    if differ.is_empty() {
        report::outln(&format!(
            "ok: {} task definitions match {}",
            renderings.len(),
            dir.display()
        ));
        Ok(exit::OK)
    } else {
        Err(Error::Drift(format!(
            "{} of {} task definitions differ from {}: {}",
            differ.len(),
            renderings.len(),
            dir.display(),
            differ.join(", ")
        )))
    }
}

impl From<DeployError> for Error {
    fn from(e: DeployError) -> Error {
        match e {
            DeployError::Rollouts(_) => Error::Rollout(e.to_string()),
            DeployError::Render(r) => Error::Render(r),
            DeployError::Unsupported { .. } | DeployError::NoSuchService { .. } => {
                Error::Usage(e.to_string())
            }
            other => Error::Cause(Box::new(other)),
        }
    }
}

impl From<crate::kafka::KafkaError> for Error {
    fn from(e: crate::kafka::KafkaError) -> Error {
        match e {
            crate::kafka::KafkaError::NeedsYes { .. } => Error::Usage(e.to_string()),
            other => Error::Cause(Box::new(other)),
        }
    }
}
