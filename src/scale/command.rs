//! `shoal autoscale`: the daemon loop around [`super::daemon::Autoscaler`] on the
//! environment's platform (its `deploy::Platform::hands`), with `/healthz` and a Prometheus `/metrics` endpoint, back-off when AWS
//! throttles, and a clean stop on SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use super::daemon::{Autoscaler, GroupRead, Outcome, ReadLag, Target};
use super::policy::{Config, Observation};
use crate::deploy::{Ctx, Platform};
use crate::discover::Fleet;
use crate::error::{exit, Error, Result};
use crate::kafka::lag::{LagReader, MemberSource, Members};
use crate::kafka::KafkaError;
use crate::manifest::OffsetReset;
use crate::platform::{Publish, Scale};

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub once: bool,
    pub dry_run: bool,
    pub interval: Duration,
    /// Where `/healthz` and `/metrics` listen; `None` serves nothing.
    pub listen: Option<String>,
    /// How long the recommendation must stay below the count before scaling in.
    pub scale_in_window: Duration,
}

/// The consumers with `[scaling]`, each on every topic its group reads, with the policy
/// ticking every `interval` and scaling in after `scale_in_window`.
pub fn targets(fleet: &Fleet, interval: Duration, scale_in_window: Duration) -> Vec<Target> {
    fleet
        .consumers
        .iter()
        .filter_map(|c| {
            let (scaling, kafka) = (c.scaling?, c.kafka.as_ref()?);
            let config = Config::new(scaling)
                .with_offset_reset(kafka.offset_reset)
                .with_interval_seconds(interval.as_secs_f64())
                .with_scale_in_window_seconds(scale_in_window.as_secs_f64());
            Some(Target {
                consumer: c.name.clone(),
                service: c.name.clone(),
                group: kafka.group.clone(),
                topics: kafka.topics.clone(),
                config,
                dlq_topic: c.alarms.as_ref().and_then(|a| a.dlq_topic.clone()),
            })
        })
        .collect()
}

/// rdkafka's calls block: each read runs on the blocking pool. A tick's reads are one batch
/// ([`LagReader::read_all`]).
struct Lag(Arc<LagReader>);

impl ReadLag for Lag {
    async fn read(&self, group: &str, topics: &[String]) -> Result<Observation, KafkaError> {
        let (reader, group, topics) = (self.0.clone(), group.to_string(), topics.to_vec());
        tokio::task::spawn_blocking(move || reader.read(&group, &topics)).await?
    }

    async fn read_all(&self, reads: Vec<GroupRead>) -> Vec<Result<Observation, KafkaError>> {
        let (reader, count) = (self.0.clone(), reads.len());
        match tokio::task::spawn_blocking(move || reader.read_all(&reads)).await {
            Ok(observations) => observations,
            Err(e) => {
                let message = format!("the lag read stopped: {e}");
                (0..count)
                    .map(|_| {
                        Err(KafkaError::Broker {
                            op: "read",
                            bootstrap: self.0.bootstrap().to_string(),
                            message: message.clone(),
                        })
                    })
                    .collect()
            }
        }
    }
}

/// Runs the daemon until it is stopped (or for one tick with `once`), with the platform's
/// hands: on ECS it sets services' desired counts and publishes to CloudWatch; on docker it
/// adds and removes containers and publishes nothing (the figures are on `/metrics`).
pub async fn run<P: Platform>(
    platform: &P,
    ctx: &Ctx<'_>,
    on_tick: &dyn Fn(&[Outcome]),
    opts: &Options,
) -> Result<i32> {
    let targets = targets(ctx.fleet, opts.interval, opts.scale_in_window);
    if targets.is_empty() {
        return Err(Error::Usage(
            "no consumer has both [scaling] and [kafka]; nothing to autoscale".to_string(),
        ));
    }
    let reader = LagReader::with(ctx.session.kafka().await?.clone(), Duration::from_secs(10));
    let lag = Lag(Arc::new(reader));
    let hands = platform.hands().await?;
    info!(environment = %ctx.env.name, platform = %platform.place(), "autoscaling");
    run_loop(ctx.project, targets, &lag, &hands, on_tick, opts).await
}

async fn run_loop<H: Scale + Publish>(
    project: &str,
    targets: Vec<Target>,
    lag: &Lag,
    hands: &H,
    on_tick: &dyn Fn(&[Outcome]),
    opts: &Options,
) -> Result<i32> {
    {
        let mut autoscaler = Autoscaler::new(project, targets);
        let figures = Arc::new(Figures::default());
        if let Some(addr) = &opts.listen {
            serve(addr, figures.clone()).await?;
        }
        let mut waits = throttled_waits(opts.interval);
        loop {
            let tick = autoscaler.tick(lag, hands, hands, opts.dry_run).await;
            on_tick(&tick.outcomes);
            let delay = if tick.throttled() {
                waits.next().unwrap_or(THROTTLED_MAX)
            } else {
                waits = throttled_waits(opts.interval);
                opts.interval
            };
            figures.record(&tick.outcomes);
            if opts.once {
                return Ok(exit::OK);
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown() => {
                    info!("stopping: signal received");
                    return Ok(exit::OK);
                }
            }
        }
    }
}

/// The longest wait between throttled ticks, before jitter (unless twice the interval is longer).
const THROTTLED_MAX: Duration = Duration::from_secs(300);

/// The waits after throttled ticks in a row: twice the interval, doubling up to
/// [`THROTTLED_MAX`], each plus a random jitter of up to as much again.
fn throttled_waits(interval: Duration) -> impl Iterator<Item = Duration> {
    let first = interval * 2;
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_factor(2.0)
        .with_max_delay(THROTTLED_MAX.max(first))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `/healthz` answers 200; `/metrics` gives the last tick's figures in Prometheus text.
async fn serve(addr: &str, figures: Arc<Figures>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))?;
    info!(%addr, "serving /healthz and /metrics");
    let app = router(figures);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "the /healthz and /metrics server stopped");
        }
    });
    Ok(())
}

/// The routes of [`serve`]; anything else is 404.
fn router(figures: Arc<Figures>) -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    const TEXT: [(header::HeaderName, &str); 1] =
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    const METRICS: [(header::HeaderName, &str); 1] =
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)];
    axum::Router::new()
        .route("/healthz", get(|| async { (TEXT, "ok\n") }))
        .route(
            "/metrics",
            get(move || async move { (METRICS, figures.encode()) }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, TEXT, "not found\n") })
}

/// The label of every figure: the consumer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConsumerLabel {
    consumer: String,
}

/// The last tick's figures, served on `/metrics`.
#[derive(Debug)]
struct Figures {
    registry: Registry,
    lag: Family<ConsumerLabel, Gauge<u64, AtomicU64>>,
    lag_seconds: Family<ConsumerLabel, Gauge<f64, AtomicU64>>,
    desired: Family<ConsumerLabel, Gauge<u32, AtomicU32>>,
}

impl Default for Figures {
    fn default() -> Figures {
        let (lag, lag_seconds, desired) = Default::default();
        let mut registry = Registry::default();
        registry.register(
            "shoal_consumer_lag",
            "Messages behind, over the partitions that are not stuck",
            Family::clone(&lag),
        );
        registry.register(
            "shoal_consumer_lag_seconds",
            "Seconds of lag at the current rates, when they are known",
            Family::clone(&lag_seconds),
        );
        registry.register(
            "shoal_desired_count",
            "The replica count the policy decided",
            Family::clone(&desired),
        );
        Figures {
            registry,
            lag,
            lag_seconds,
            desired,
        }
    }
}

impl Figures {
    /// Keeps a tick's outcomes; a consumer whose lag seconds are unknown has none.
    fn record(&self, outcomes: &[Outcome]) {
        for o in outcomes {
            let label = ConsumerLabel {
                consumer: o.consumer.clone(),
            };
            self.lag.get_or_create(&label).set(o.decision.lag);
            match o.decision.lag_seconds {
                Some(s) => {
                    self.lag_seconds.get_or_create(&label).set(s);
                }
                None => {
                    self.lag_seconds.remove(&label);
                }
            }
            self.desired.get_or_create(&label).set(o.decision.desired);
        }
    }

    /// The figures in Prometheus text (version 0.0.4).
    fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// One partition's row of `shoal lag`.
#[derive(Debug, serde::Serialize)]
pub struct LagRow {
    pub consumer: String,
    pub group: String,
    pub topic: String,
    pub partition: usize,
    pub end_offset: i64,
    pub committed_offset: Option<i64>,
    /// Messages behind: from the committed offset, or where the group never committed, from
    /// the log start under `offset_reset = "earliest"`; `None` there under `latest` (the
    /// group starts wherever the end is when it first reads).
    pub lag: Option<i64>,
    /// Messages per second arriving, over the sample.
    pub arrival_rate: f64,
    /// Messages per second the group committed, over the sample.
    pub consume_rate: f64,
    /// Seconds of lag at the arrival rate (or, with nothing arriving, at the consume rate).
    pub lag_seconds: Option<f64>,
    /// The group's serving members and where the count came from: the broker's
    /// DescribeGroups, or the platform's running count when the broker cannot answer; `None`
    /// when neither could be read.
    pub members: Option<Members>,
}

/// Reads each group twice, `sample` apart, and describes every partition, with the group's
/// members as the autoscaler counts them.
pub async fn lag_rows<P: Platform>(
    platform: &P,
    ctx: &Ctx<'_>,
    only: Option<&str>,
    sample: Duration,
) -> Result<Vec<LagRow>> {
    let reader = LagReader::with(ctx.session.kafka().await?.clone(), Duration::from_secs(10));
    let chosen: Vec<_> = ctx
        .fleet
        .consumers
        .iter()
        .filter(|c| only.is_none_or(|o| o == c.name))
        .filter_map(|c| Some((c, c.kafka.as_ref()?)))
        .collect();
    if chosen.is_empty() {
        return Err(Error::Usage(match only {
            Some(name) => format!("no consumer named {name:?} with a [kafka] section"),
            None => "no consumer has a [kafka] section".to_string(),
        }));
    }
    let wanted: Vec<(String, Vec<String>)> = chosen
        .iter()
        .map(|(_, k)| (k.group.clone(), k.topics.clone()))
        .collect();
    let read_all = || -> Result<Vec<Observation>> {
        // rdkafka's reads block; this command has nothing else to run meanwhile.
        tokio::task::block_in_place(|| reader.read_all(&wanted))
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(Error::from)
    };
    let first = read_all()?;
    tokio::time::sleep(sample).await;
    let second = read_all()?;
    let running = if second.iter().any(|o| o.members.is_none()) {
        platform_running(platform, &chosen).await
    } else {
        BTreeMap::new()
    };
    let mut rows = Vec::new();
    for ((c, k), (a, b)) in chosen.iter().zip(first.iter().zip(&second)) {
        let members = b.members.or_else(|| {
            running.get(&c.name).map(|&count| Members {
                count,
                source: MemberSource::Platform,
            })
        });
        let dt = (b.at - a.at).max(1e-3);
        let topic_of = b
            .topics
            .iter()
            .flat_map(|t| (0..t.partitions as usize).map(move |p| (t.name.clone(), p)));
        for ((topic, partition), (x, y)) in topic_of.zip(a.partitions.iter().zip(&b.partitions)) {
            let arrival_rate = (y.end_offset - x.end_offset).max(0) as f64 / dt;
            let consume_rate = match (x.committed_offset, y.committed_offset) {
                (Some(u), Some(v)) => (v - u).max(0) as f64 / dt,
                _ => 0.0,
            };
            let start = match (y.committed_offset, k.offset_reset) {
                (Some(c), _) => Some(c),
                (None, OffsetReset::Earliest) => Some(y.log_start_offset.unwrap_or(0)),
                (None, OffsetReset::Latest) => None,
            };
            let lag = start.map(|c| (y.end_offset - c).max(0));
            let lag_seconds = lag.and_then(|l| {
                if l == 0 {
                    Some(0.0)
                } else if arrival_rate > 0.0 {
                    Some(l as f64 / arrival_rate)
                } else if consume_rate > 0.0 {
                    Some(l as f64 / consume_rate)
                } else {
                    None
                }
            });
            rows.push(LagRow {
                consumer: c.name.clone(),
                group: k.group.clone(),
                topic,
                partition,
                end_offset: y.end_offset,
                committed_offset: y.committed_offset,
                lag,
                arrival_rate,
                consume_rate,
                lag_seconds,
                members,
            });
        }
    }
    Ok(rows)
}

/// The running counts of the chosen consumers' services, for groups the broker could not
/// describe; empty (with a warning) when the platform cannot be read either.
async fn platform_running<P: Platform>(
    platform: &P,
    chosen: &[(&crate::manifest::Consumer, &crate::manifest::KafkaUse)],
) -> BTreeMap<String, u32> {
    let services: Vec<String> = chosen.iter().map(|(c, _)| c.name.clone()).collect();
    match platform.counts(&services).await {
        Ok(counts) => counts.into_iter().map(|(s, c)| (s, c.running)).collect(),
        Err(e) => {
            warn!(error = %e, "cannot read the platform's running counts; members unknown");
            BTreeMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::policy::Decision;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    fn outcome(consumer: &str, lag: u64, lag_seconds: Option<f64>, desired: u32) -> Outcome {
        Outcome {
            consumer: consumer.to_string(),
            service: consumer.to_string(),
            decision: Decision {
                desired,
                changed: false,
                reason: String::new(),
                lag,
                lag_seconds,
                stuck: Vec::new(),
            },
            acted: false,
            error: None,
        }
    }

    async fn get(figures: &Arc<Figures>, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let answer = router(figures.clone())
            .oneshot(request)
            .await
            .expect("answer");
        let status = answer.status();
        let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn throttled_waits_double_with_jitter_up_to_five_minutes() {
        let waits: Vec<Duration> = throttled_waits(Duration::from_secs(30)).take(6).collect();
        for (wait, base) in waits.iter().zip([60, 120, 240, 300, 300, 300]) {
            let base = Duration::from_secs(base);
            assert!(*wait >= base && *wait < base * 2, "{waits:?}");
        }
        let long = throttled_waits(Duration::from_secs(600)).nth(3);
        assert!(
            long.is_some_and(|w| w >= Duration::from_secs(1200)),
            "{long:?}"
        );
    }

    #[tokio::test]
    async fn healthz_metrics_and_anything_else() {
        let figures = Arc::new(Figures::default());
        figures.record(&[outcome("a", 7, None, 2), outcome("b", 5, Some(1.0), 1)]);
        figures.record(&[outcome("a", 120, Some(4.5), 3), outcome("b", 0, None, 1)]);
        assert_eq!(
            get(&figures, "/healthz").await,
            (StatusCode::OK, "ok\n".into())
        );
        let (status, body) = get(&figures, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        for line in [
            "# TYPE shoal_consumer_lag gauge",
            "# TYPE shoal_consumer_lag_seconds gauge",
            "# TYPE shoal_desired_count gauge",
            "shoal_consumer_lag{consumer=\"a\"} 120",
            "shoal_consumer_lag_seconds{consumer=\"a\"} 4.5",
            "shoal_desired_count{consumer=\"a\"} 3",
            "shoal_consumer_lag{consumer=\"b\"} 0",
            "shoal_desired_count{consumer=\"b\"} 1",
        ] {
            assert!(body.lines().any(|l| l == line), "{line}:\n{body}");
        }
        assert!(
            !body.contains("shoal_consumer_lag_seconds{consumer=\"b\"}"),
            "{body}"
        );
        assert_eq!(
            get(&figures, "/nope").await,
            (StatusCode::NOT_FOUND, "not found\n".into())
        );
    }
}
