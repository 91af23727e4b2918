//! exposure-consumer: Kafka → warehouse, one row per exposure_id on an at-least-once pipe.
//! See README.md.

mod breaker;
mod config;
mod consumer;
mod dialect;
mod event;
mod http;
mod metrics;
mod warehouse;

use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        return print_sql(&args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = match config::Settings::from_vars(std::env::vars_os()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("exposure-consumer: {e}");
            return ExitCode::from(2);
        }
    };
    // Before anything else: a task without credentials for MSK IAM stops here, and says so.
    let iam = match settings
        .iam
        .as_ref()
        .map(msk_iam::Signer::start)
        .transpose()
    {
        Ok(iam) => iam,
        Err(e) => {
            eprintln!("exposure-consumer: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("exposure-consumer: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, iam)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exposure-consumer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `exposure-consumer sql postgres|redshift`: prints, as JSON, every statement the dialect runs
/// (`[{"step": ..., "sql": ...}, ...]`), e.g. for a DBA to review or to create the table by hand.
fn print_sql(args: &[String]) -> ExitCode {
    let dialect = match args {
        [cmd, d] if cmd == "sql" && d == "postgres" => dialect::Dialect::Postgres,
        [cmd, d] if cmd == "sql" && d == "redshift" => dialect::Dialect::Redshift,
        _ => {
            eprintln!(
                "exposure-consumer: unexpected arguments {args:?}; it takes none (its settings are environment variables, see README.md), or `sql postgres` / `sql redshift` to print its SQL"
            );
            return ExitCode::from(2);
        }
    };
    let steps: Vec<serde_json::Value> = dialect
        .statements()
        .into_iter()
        .map(|(step, sql)| serde_json::json!({ "step": step, "sql": sql }))
        .collect();
    println!("{}", serde_json::Value::Array(steps));
    ExitCode::SUCCESS
}

async fn run(settings: config::Settings, iam: Option<msk_iam::Signer>) -> Result<(), String> {
    let metrics = Arc::new(metrics::Metrics::new(iam.clone()));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", settings.port))
        .await
        .map_err(|e| format!("PORT: cannot listen on {}: {e}", settings.port))?;
    let app = http::router(metrics.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    consumer::run(settings, iam, metrics, stop_rx).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
