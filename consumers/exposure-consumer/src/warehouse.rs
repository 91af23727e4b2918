//! The warehouse connection and the batch transaction.

use std::time::Duration;

use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Transaction};
use warehouse_tls::{Database, MakeTlsConnector};

use crate::dialect::{Dialect, Load};
use crate::event::Exposure;

/// Longest a connect or a batch may take before the connection is given up as broken and the
/// batch retried: a warehouse that stops answering must not hang the consumer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct WarehouseError {
    pub message: String,
    /// The server refused the rows themselves (SQLSTATE class 22, data exception, or 23,
    /// integrity constraint violation): writing them again fails the same way.
    pub rejects_data: bool,
}

impl WarehouseError {
    fn new(message: impl Into<String>) -> WarehouseError {
        WarehouseError {
            message: message.into(),
            rejects_data: false,
        }
    }
}

impl std::fmt::Display for WarehouseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<tokio_postgres::Error> for WarehouseError {
    fn from(e: tokio_postgres::Error) -> Self {
        let rejects_data = e
            .code()
            .is_some_and(|c| matches!(&c.code()[..2], "22" | "23"));
        WarehouseError {
            message: warehouse_tls::describe(&e),
            rejects_data,
        }
    }
}

/// What one write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Rows new to the table.
    pub inserted: u64,
    /// Its COPY straight into the table met an exposure the table holds, so it went through
    /// the staging table ([`Dialect::direct`]).
    pub staged: bool,
}

/// One connection, opened on first use and again after it breaks; the schema is created once
/// per process.
pub struct Warehouse {
    config: tokio_postgres::Config,
    tls: MakeTlsConnector,
    dialect: Dialect,
    client: Option<Client>,
    schema_ready: bool,
}

impl Warehouse {
    pub fn new(database: &Database, dialect: Dialect) -> Result<Warehouse, WarehouseError> {
        let tls = database.tls().map_err(WarehouseError::new)?;
        tracing::info!(tls = %database, "warehouse connection");
        let mut config = database.config.clone();
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        // DATABASE_URL may name the connection (`application_name=`); else it is ours.
        if config.get_application_name().is_none() {
            config.application_name("exposure-consumer");
        }
        Ok(Warehouse {
            config,
            tls,
            dialect,
            client: None,
            schema_ready: false,
        })
    }

    async fn client(&mut self) -> Result<&mut Client, WarehouseError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            let (client, connection) =
                tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(self.tls.clone()))
                    .await
                    .map_err(|_| WarehouseError::new("connecting timed out"))??;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "warehouse connection ended");
                }
            });
            self.client = Some(client);
        }
        if !self.schema_ready {
            let client = self.client.as_mut().ok_or_else(disconnected)?;
            let tx = client.transaction().await?;
            if let Some(guard) = self.dialect.ddl_guard() {
                tx.batch_execute(&guard).await?;
            }
            for stmt in self.dialect.ddl() {
                tx.batch_execute(&stmt).await?;
            }
            tx.commit().await?;
            self.schema_ready = true;
            tracing::info!("warehouse schema ready");
        }
        self.client.as_mut().ok_or_else(disconnected)
    }

    /// Drops the connection, so that the next call connects anew.
    pub fn reset(&mut self) {
        self.client = None;
    }

    /// A cheap round trip, for /health when no batch has run for a while.
    pub async fn ping(&mut self) -> Result<(), WarehouseError> {
        let fut = async {
            self.client().await?.simple_query("SELECT 1").await?;
            Ok::<(), WarehouseError>(())
        };
        let result = bounded(fut).await;
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Writes the exposures in one transaction; returns how many rows were new. Duplicates
    /// within `rows` and rows already in the table are skipped: a COPY straight into the table
    /// first, and where it meets one, through the staging table ([`Dialect::direct`]).
    pub async fn write(&mut self, rows: &[&Exposure]) -> Result<Written, WarehouseError> {
        self.transaction(rows, true).await
    }

    /// Runs the same transaction as [`Warehouse::write`] for `rows`, then rolls it back: whether
    /// the warehouse would take them, leaving no trace.
    pub async fn try_write(&mut self, rows: &[&Exposure]) -> Result<(), WarehouseError> {
        self.transaction(rows, false).await.map(|_| ())
    }

    async fn transaction(
        &mut self,
        rows: &[&Exposure],
        commit: bool,
    ) -> Result<Written, WarehouseError> {
        let dialect = self.dialect;
        let fut = async {
            let client = self.client().await?;
            let mut tx = client.transaction().await?;
            if let Some(direct) = dialect.direct() {
                // In `exposure_id` order, as the merge inserts, so that replicas writing the
                // same exposures take the index's locks in one order.
                let mut sorted = rows.to_vec();
                sorted.sort_unstable_by(|a, b| a.exposure_id.cmp(&b.exposure_id));
                let savepoint = tx.savepoint("direct").await?;
                match copy_binary(&savepoint, &direct, &sorted).await {
                    Ok(inserted) => {
                        savepoint.commit().await?;
                        if commit {
                            tx.commit().await?;
                        } else {
                            tx.rollback().await?;
                        }
                        return Ok(Written {
                            inserted,
                            staged: false,
                        });
                    }
                    // An exposure the table holds (a redelivery, a client's retry): stage.
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                        savepoint.rollback().await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            tx.batch_execute(&dialect.create_staging()).await?;
            match dialect.load() {
                Load::CopyBinary(copy) => {
                    copy_binary(&tx, &copy, rows).await?;
                }
                Load::InsertValues { rows_per_statement } => {
                    let attrs: Vec<String> =
                        rows.iter().map(|e| e.attributes.to_string()).collect();
                    for (chunk, attrs) in rows
                        .chunks(rows_per_statement)
                        .zip(attrs.chunks(rows_per_statement))
                    {
                        let sql = dialect.insert_values(chunk.len());
                        let mut params: Vec<&(dyn ToSql + Sync)> =
                            Vec::with_capacity(chunk.len() * 7);
                        for (e, a) in chunk.iter().zip(attrs) {
                            let row: [&(dyn ToSql + Sync); 7] = [
                                &e.exposure_id,
                                &e.ds_user_id,
                                &e.experiment_id,
                                &e.variation_id,
                                &e.ts,
                                a,
                                &e.source,
                            ];
                            params.extend_from_slice(&row);
                        }
                        tx.execute(&sql, &params).await?;
                    }
                }
            }
            let inserted = match dialect.count_new() {
                Some(count) => {
                    let n: i64 = tx.query_one(&count, &[]).await?.get(0);
                    tx.execute(&dialect.merge(), &[]).await?;
                    n as u64
                }
                None => tx.execute(&dialect.merge(), &[]).await?,
            };
            if let Some(drop) = dialect.drop_staging() {
                tx.batch_execute(&drop).await?;
            }
            if commit {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok::<Written, WarehouseError>(Written {
                inserted,
                staged: dialect.direct().is_some(),
            })
        };
        let result = bounded(fut).await;
        // After a failed transaction or a timeout the connection's state is unknown.
        if result.is_err() {
            self.reset();
        }
        result
    }
}

/// Copies `rows` in with `copy` (a `COPY … FROM STDIN (FORMAT binary)` of the seven columns);
/// the number of rows copied.
async fn copy_binary(
    tx: &Transaction<'_>,
    copy: &str,
    rows: &[&Exposure],
) -> Result<u64, tokio_postgres::Error> {
    let sink = tx.copy_in(copy).await?;
    let types = [
        Type::VARCHAR,
        Type::VARCHAR,
        Type::VARCHAR,
        Type::VARCHAR,
        Type::TIMESTAMPTZ,
        Type::JSONB,
        Type::VARCHAR,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for e in rows {
        writer.as_mut().write(&row(e)).await?;
    }
    writer.finish().await
}

/// Runs `fut` with a time limit.
async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, WarehouseError>>,
) -> Result<T, WarehouseError> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(WarehouseError::new(format!(
            "no answer within {}s",
            STATEMENT_TIMEOUT.as_secs()
        ))),
    }
}

fn disconnected() -> WarehouseError {
    WarehouseError::new("not connected")
}

fn row(e: &Exposure) -> [&(dyn ToSql + Sync); 7] {
    [
        &e.exposure_id,
        &e.ds_user_id,
        &e.experiment_id,
        &e.variation_id,
        &e.ts,
        &e.attributes,
        &e.source,
    ]
}
