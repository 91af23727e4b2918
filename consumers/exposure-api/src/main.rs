//! exposure-api: HTTP → Kafka for experiment exposure events. See README.md.

mod auth;
mod config;
mod cursor;
mod event;
mod http;
mod metrics;
mod producer;
mod warehouse;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use crate::config::Settings;

/// A bad setting: a one-line error naming the variable.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// `exposure-api healthcheck`: the container's health check (the image has no curl). It asks
/// the running server's `/health` and passes when the server answers at all: a 503 there
/// means the broker is unreachable, which replacing this process would not fix.
fn healthcheck() -> ExitCode {
    use std::io::{Read, Write};
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8080);
    let answered = (|| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let status = answer.split_whitespace().nth(1)?.to_string();
        Some(status == "200" || status == "503")
    })();
    if answered == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run() -> Result<(), (u8, String)> {
    let settings = Settings::from_env().map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    producer::check_rdkafka_settings(&settings)
        .map_err(|(var, e)| (EXIT_CONFIG, format!("{var}: {e}")))?;
    // Before anything else: a task without credentials for MSK IAM stops here, and says so.
    let iam = settings
        .iam
        .as_ref()
        .map(msk_iam::Signer::start)
        .transpose()
        .map_err(|e| (EXIT_CONFIG, e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(settings, iam))
}

async fn serve(settings: Settings, iam: Option<msk_iam::Signer>) -> Result<(), (u8, String)> {
    let kafka = producer::Kafka::new(&settings, iam.clone()).map_err(|e| {
        (
            EXIT_CONFIG,
            format!("KAFKA_BOOTSTRAP/RDKAFKA_*: cannot create the producer: {e}"),
        )
    })?;
    let warehouse = match &settings.database {
        None => None,
        Some(db) => Some(
            warehouse::Warehouse::new(db)
                .map_err(|e| (EXIT_CONFIG, format!("DATABASE_URL: {e}")))?,
        ),
    };
    if settings.auth_none {
        warn!(
            "AUTH=none: POST /exposure and /exposures accept events from anyone without \
             credentials; reads still need API_KEYS or JWT_SECRET"
        );
    }
    let state = Arc::new(http::AppState {
        kafka,
        warehouse,
        metrics: metrics::Metrics::new(iam),
        auth: auth::Auth::new(
            settings.api_keys.clone(),
            settings.jwt_secret.as_deref(),
            settings.auth_none,
        ),
        max_batch: settings.max_batch,
        message_max_bytes: settings.message_max_bytes,
        shed_queue_messages: settings.shed_queue_messages,
        openapi: http::openapi_json(),
    });
    let app = http::router(
        state.clone(),
        http::Limits {
            max_body_bytes: settings.max_body_bytes,
            max_concurrency: settings.max_concurrency,
            request_timeout: settings.request_timeout,
        },
    );
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], settings.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| (1, format!("cannot listen on {addr}: {e}")))?;
    info!(
        %addr,
        topic = %settings.topic,
        bootstrap = %settings.kafka_bootstrap,
        reads = state.warehouse.is_some(),
        auth = settings.auth_required(),
        "listening"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| (1, format!("server error: {e}")))?;
    info!("stopped accepting; flushing the producer");
    state
        .kafka
        .flush(settings.produce_timeout + Duration::from_secs(1))
        .await;
    info!("bye");
    Ok(())
}

/// Resolves on SIGTERM (ECS stopping the task) or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT"),
    }
}
