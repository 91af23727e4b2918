//! Reads from the warehouse table the exposure-consumer fills:
//! `growthbook.experiment_exposures`, newest first, paged by a keyset cursor.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;
use warehouse_tls::{describe, Database};

use crate::cursor::Cursor;
use crate::event::rfc3339;

/// One stored exposure.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoredExposure {
    pub exposure_id: String,
    pub ds_user_id: String,
    pub experiment_id: String,
    pub variation_id: String,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    pub source: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// RFC 3339, UTC: when the warehouse stored it.
    pub created_at: String,
}

/// A page of exposures, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page {
    pub items: Vec<StoredExposure>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Which exposures to list.
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    User(&'a str),
    Experiment(&'a str),
}

/// The warehouse could not answer.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::error::Error for Unavailable {}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct Warehouse {
    pool: Pool,
}

impl Warehouse {
    /// A lazy pool: no connection is made until the first read.
    pub fn new(database: &Database) -> Result<Warehouse, String> {
        let tls = database.tls()?;
        tracing::info!(tls = %database, "warehouse reads");
        let mut config = database.config.clone();
        config.connect_timeout(Duration::from_secs(2));
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(2)))
            .create_timeout(Some(Duration::from_secs(3)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Warehouse { pool })
    }

    /// Up to `limit` exposures older than `after` (in `(ts, exposure_id)` order), newest
    /// first. A table that does not exist yet reads as empty.
    pub async fn page(
        &self,
        by: By<'_>,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page, Unavailable> {
        let client = self.pool.get().await.map_err(|e| {
            Unavailable(match e {
                PoolError::Backend(e) => format!("warehouse connection: {}", describe(&e)),
                other => format!("warehouse connection: {other}"),
            })
        })?;
        let (column, value) = match by {
            By::User(v) => ("ds_user_id", v),
            By::Experiment(v) => ("experiment_id", v),
        };
        let sql = format!(
            "SELECT exposure_id, ds_user_id, experiment_id, variation_id, attributes, source, ts, created_at \
             FROM growthbook.experiment_exposures \
             WHERE {column} = $1 AND ($2::timestamptz IS NULL OR (ts, exposure_id) < ($2::timestamptz, $3::varchar)) \
             ORDER BY ts DESC, exposure_id DESC LIMIT $4"
        );
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let (ts, id) = match after {
            Some(c) => (Some(c.ts), Some(c.exposure_id.as_str())),
            None => (None, None),
        };
        let rows = match client.query(&sql, &[&value, &ts, &id, &fetch]).await {
            Ok(rows) => rows,
            Err(e)
                if e.code() == Some(&SqlState::UNDEFINED_TABLE)
                    || e.code() == Some(&SqlState::INVALID_SCHEMA_NAME) =>
            {
                return Ok(Page {
                    items: vec![],
                    next_cursor: None,
                })
            }
            Err(e) => return Err(Unavailable(format!("warehouse query: {}", describe(&e)))),
        };
        let mut items = Vec::with_capacity(rows.len().min(limit));
        let mut last = None;
        for row in rows.iter().take(limit) {
            let get =
                |e: tokio_postgres::Error| Unavailable(format!("warehouse row: {}", describe(&e)));
            let ts: DateTime<Utc> = row.try_get(6).map_err(get)?;
            let created_at: DateTime<Utc> = row.try_get(7).map_err(get)?;
            let item = StoredExposure {
                exposure_id: row.try_get(0).map_err(get)?,
                ds_user_id: row.try_get(1).map_err(get)?,
                experiment_id: row.try_get(2).map_err(get)?,
                variation_id: row.try_get(3).map_err(get)?,
                attributes: row.try_get(4).map_err(get)?,
                source: row.try_get(5).map_err(get)?,
                timestamp: rfc3339_micros(ts),
                created_at: rfc3339(created_at),
            };
            last = Some(Cursor {
                ts,
                exposure_id: item.exposure_id.clone(),
            });
            items.push(item);
        }
        let next_cursor = if rows.len() > limit {
            last.map(|c| c.encode())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}

/// Stored timestamps keep their microseconds.
fn rfc3339_micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
