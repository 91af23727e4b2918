//! The SQL each warehouse speaks. The PostgreSQL dialect runs in every integration test; the
//! Redshift one is checked as text below and executed on PostgreSQL, where it is valid there,
//! by tests/it/exposure_consumer.rs (the README lists what only Redshift runs, and why).
//!
//! Every batch is one transaction: create a staging table, load the batch into it, move the rows
//! whose `exposure_id` is new into the exposures table, drop the staging table (PostgreSQL drops
//! it at commit), commit.

/// The table the exposures land in; exposure-api reads it.
pub const TABLE: &str = "growthbook.experiment_exposures";
/// The per-transaction staging table.
pub const STAGING: &str = "exposures_staging";
/// The columns written per exposure, in load order (`created_at` is the warehouse's own).
pub const COLUMNS: [&str; 7] = [
    "exposure_id",
    "ds_user_id",
    "experiment_id",
    "variation_id",
    "ts",
    "attributes",
    "source",
];

/// An arbitrary but fixed key for `pg_advisory_xact_lock`, held while the schema is created so
/// that replicas starting together do not race on the catalog.
pub const DDL_LOCK_KEY: i64 = 0x7368_6f61_6c65_7870; // "shoalexp"

/// How a batch gets into the staging table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// `COPY ... FROM STDIN (FORMAT binary)` through tokio-postgres' `copy_in`.
    CopyBinary(String),
    /// Multi-row `INSERT ... VALUES` with bind parameters, this many rows per statement
    /// (Redshift has no `COPY FROM STDIN`: its COPY reads S3).
    InsertValues { rows_per_statement: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Redshift,
}

impl Dialect {
    /// Statements run before the schema is created, in the same transaction.
    pub fn ddl_guard(self) -> Option<String> {
        match self {
            Dialect::Postgres => Some(format!("SELECT pg_advisory_xact_lock({DDL_LOCK_KEY})")),
            // No advisory locks on Redshift; its DDL is serialized, and a racing replica's
            // error is retried by the caller, after which IF NOT EXISTS holds.
            Dialect::Redshift => None,
        }
    }

    /// Creates the schema and the exposures table when they are missing.
    pub fn ddl(self) -> Vec<String> {
        match self {
            Dialect::Postgres => vec![
                "CREATE SCHEMA IF NOT EXISTS growthbook".to_string(),
                "CREATE TABLE IF NOT EXISTS growthbook.experiment_exposures (
  exposure_id varchar(64) PRIMARY KEY, ds_user_id varchar(256) NOT NULL,
  experiment_id varchar(256) NOT NULL, variation_id varchar(256) NOT NULL,
  ts timestamptz NOT NULL, attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
  source varchar(256) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
                    .to_string(),
            ],
            Dialect::Redshift => vec![
                "CREATE SCHEMA IF NOT EXISTS growthbook".to_string(),
                // PRIMARY KEY is informational on Redshift: the MERGE is what keeps one row per
                // exposure_id. DISTKEY puts each MERGE's matches on one slice.
                "CREATE TABLE IF NOT EXISTS growthbook.experiment_exposures (
  exposure_id VARCHAR(64) NOT NULL PRIMARY KEY, ds_user_id VARCHAR(256) NOT NULL,
  experiment_id VARCHAR(256) NOT NULL, variation_id VARCHAR(256) NOT NULL,
  ts TIMESTAMPTZ NOT NULL, attributes SUPER,
  source VARCHAR(256) NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT GETDATE())
DISTKEY (exposure_id) SORTKEY (ts)"
                    .to_string(),
            ],
        }
    }

    /// A COPY straight into the table, tried first under a savepoint where the dialect has
    /// one: a batch with no exposure the table already holds needs nothing more. A duplicate
    /// fails it with unique_violation, and the batch goes through the staging table instead.
    /// Redshift's COPY reads S3, so it always stages.
    pub fn direct(self) -> Option<String> {
        match self {
            Dialect::Postgres => Some(format!(
                "COPY {TABLE} ({}) FROM STDIN (FORMAT binary)",
                COLUMNS.join(", ")
            )),
            Dialect::Redshift => None,
        }
    }

    /// Creates the staging table, inside the batch's transaction.
    pub fn create_staging(self) -> String {
        match self {
            Dialect::Postgres => format!(
                "CREATE TEMPORARY TABLE {STAGING} (exposure_id varchar(64), ds_user_id varchar(256), \
experiment_id varchar(256), variation_id varchar(256), ts timestamptz, attributes jsonb, \
source varchar(256)) ON COMMIT DROP"
            ),
            Dialect::Redshift => format!(
                "CREATE TEMPORARY TABLE {STAGING} (exposure_id VARCHAR(64), ds_user_id VARCHAR(256), \
experiment_id VARCHAR(256), variation_id VARCHAR(256), ts TIMESTAMPTZ, attributes SUPER, \
source VARCHAR(256))"
            ),
        }
    }

    pub fn load(self) -> Load {
        match self {
            Dialect::Postgres => Load::CopyBinary(format!(
                "COPY {STAGING} ({}) FROM STDIN (FORMAT binary)",
                COLUMNS.join(", ")
            )),
            // 7 parameters a row: 1000 rows stay far below the protocol's 32767 parameters.
            Dialect::Redshift => Load::InsertValues {
                rows_per_statement: 1000,
            },
        }
    }

    /// A multi-row insert into the staging table for `rows` rows (Load::InsertValues).
    pub fn insert_values(self, rows: usize) -> String {
        let n = COLUMNS.len();
        let tuples = (0..rows)
            .map(|r| {
                let p = |i: usize| r * n + i + 1;
                let attrs = match self {
                    Dialect::Redshift => format!("JSON_PARSE(${})", p(5)),
                    Dialect::Postgres => format!("${}::jsonb", p(5)),
                };
                format!(
                    "(${}, ${}, ${}, ${}, ${}, {attrs}, ${})",
                    p(0),
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(6)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {STAGING} ({}) VALUES {tuples}",
            COLUMNS.join(", ")
        )
    }

    /// Moves the new exposures from staging into the table; its row count is the number of
    /// rows inserted. Duplicates within the batch are removed first (the caller dedupes too;
    /// Redshift's MERGE fails when one target row matches two source rows). Rows go in
    /// `exposure_id` order so that concurrent replicas take index locks in the same order.
    pub fn merge(self) -> String {
        let cols = COLUMNS.join(", ");
        match self {
            Dialect::Postgres => format!(
                "INSERT INTO {TABLE} ({cols}) SELECT DISTINCT ON (exposure_id) {cols} FROM {STAGING} \
ORDER BY exposure_id ON CONFLICT (exposure_id) DO NOTHING"
            ),
            // Redshift's MERGE needs a WHEN MATCHED clause; this one rewrites the key with
            // itself, leaving the row as it was.
            Dialect::Redshift => {
                let values = COLUMNS
                    .iter()
                    .map(|c| format!("s.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "MERGE INTO {TABLE} USING {STAGING} AS s ON {TABLE}.exposure_id = s.exposure_id \
WHEN MATCHED THEN UPDATE SET exposure_id = s.exposure_id \
WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})"
                )
            }
        }
    }

    /// Drops the staging table before commit, where it is not dropped at commit.
    pub fn drop_staging(self) -> Option<String> {
        match self {
            Dialect::Postgres => None,
            Dialect::Redshift => Some(format!("DROP TABLE {STAGING}")),
        }
    }

    /// Counts the staged exposures that are new to the table, run just before [`Dialect::merge`]
    /// where the merge's row count also counts matched rows (Redshift counts the no-op updates).
    pub fn count_new(self) -> Option<String> {
        match self {
            Dialect::Postgres => None,
            Dialect::Redshift => Some(format!(
                "SELECT count(*) FROM {STAGING} s WHERE NOT EXISTS \
(SELECT 1 FROM {TABLE} t WHERE t.exposure_id = s.exposure_id)"
            )),
        }
    }

    /// Every statement this dialect runs, in order, named by its step: the schema, then one
    /// batch (its load for two rows): its direct COPY, then, when that meets a duplicate, the
    /// staging steps. `exposure-consumer sql <dialect>` prints them, and
    /// tests/it/exposure_consumer.rs runs the Redshift ones on PostgreSQL.
    pub fn statements(self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        if let Some(guard) = self.ddl_guard() {
            out.push(("ddl_guard", guard));
        }
        let ddl = self.ddl();
        out.extend(["create_schema", "create_table"].into_iter().zip(ddl));
        if let Some(direct) = self.direct() {
            out.push(("direct", direct));
        }
        out.push(("create_staging", self.create_staging()));
        out.push((
            "load",
            match self.load() {
                Load::CopyBinary(copy) => copy,
                Load::InsertValues { .. } => self.insert_values(2),
            },
        ));
        if let Some(count) = self.count_new() {
            out.push(("count_new", count));
        }
        out.push(("merge", self.merge()));
        if let Some(drop) = self.drop_staging() {
            out.push(("drop_staging", drop));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_in_order() {
        let steps = |d: Dialect| -> Vec<&'static str> {
            d.statements().into_iter().map(|(s, _)| s).collect()
        };
        assert_eq!(
            steps(Dialect::Postgres),
            [
                "ddl_guard",
                "create_schema",
                "create_table",
                "direct",
                "create_staging",
                "load",
                "merge"
            ]
        );
        assert_eq!(
            steps(Dialect::Redshift),
            [
                "create_schema",
                "create_table",
                "create_staging",
                "load",
                "count_new",
                "merge",
                "drop_staging"
            ]
        );
        let redshift = Dialect::Redshift.statements();
        assert_eq!(redshift[3].1, Dialect::Redshift.insert_values(2));
        assert_eq!(redshift[5].1, Dialect::Redshift.merge());
    }

    #[test]
    fn postgres_ddl_is_the_agreed_one() {
        let ddl = Dialect::Postgres.ddl();
        assert_eq!(ddl[0], "CREATE SCHEMA IF NOT EXISTS growthbook");
        assert_eq!(
            ddl[1],
            "CREATE TABLE IF NOT EXISTS growthbook.experiment_exposures (
  exposure_id varchar(64) PRIMARY KEY, ds_user_id varchar(256) NOT NULL,
  experiment_id varchar(256) NOT NULL, variation_id varchar(256) NOT NULL,
  ts timestamptz NOT NULL, attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
  source varchar(256) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        );
        assert_eq!(
            Dialect::Postgres.ddl_guard().unwrap(),
            "SELECT pg_advisory_xact_lock(8316019176160721008)"
        );
    }

    #[test]
    fn postgres_batch() {
        let d = Dialect::Postgres;
        assert_eq!(
            d.create_staging(),
            "CREATE TEMPORARY TABLE exposures_staging (exposure_id varchar(64), ds_user_id varchar(256), \
experiment_id varchar(256), variation_id varchar(256), ts timestamptz, attributes jsonb, \
source varchar(256)) ON COMMIT DROP"
        );
        assert_eq!(
            d.load(),
            Load::CopyBinary(
                "COPY exposures_staging (exposure_id, ds_user_id, experiment_id, variation_id, ts, \
attributes, source) FROM STDIN (FORMAT binary)"
                    .to_string()
            )
        );
        assert_eq!(
            d.merge(),
            "INSERT INTO growthbook.experiment_exposures (exposure_id, ds_user_id, experiment_id, \
variation_id, ts, attributes, source) SELECT DISTINCT ON (exposure_id) exposure_id, ds_user_id, \
experiment_id, variation_id, ts, attributes, source FROM exposures_staging ORDER BY exposure_id \
ON CONFLICT (exposure_id) DO NOTHING"
        );
        assert_eq!(
            d.direct().unwrap(),
            "COPY growthbook.experiment_exposures (exposure_id, ds_user_id, experiment_id, \
variation_id, ts, attributes, source) FROM STDIN (FORMAT binary)"
        );
        assert_eq!(d.drop_staging(), None);
        assert_eq!(d.count_new(), None);
    }

    /// Each table holds whatever the contract lets through: its text columns are as wide as
    /// the contract's byte limits (Redshift's VARCHAR counts bytes, PostgreSQL's characters),
    /// and Redshift distributes rows by the id its MERGE matches on.
    #[test]
    fn tables_are_as_wide_as_the_contract() {
        use exposure_event::{EXPOSURE_ID_MAX_BYTES, TEXT_MAX_BYTES};
        assert_eq!(Dialect::Redshift.ddl_guard(), None);
        for d in [Dialect::Postgres, Dialect::Redshift] {
            let [schema, table] = &d.ddl()[..] else {
                panic!("{d:?}: a schema and a table");
            };
            assert_eq!(schema, "CREATE SCHEMA IF NOT EXISTS growthbook");
            let table = table.to_lowercase();
            let id = format!("exposure_id varchar({EXPOSURE_ID_MAX_BYTES})");
            assert!(table.contains(&id), "{d:?}: {table}");
            for column in ["ds_user_id", "experiment_id", "variation_id", "source"] {
                let text = format!("{column} varchar({TEXT_MAX_BYTES}) not null");
                assert!(table.contains(&text), "{d:?}: {table}");
            }
        }
        let redshift = &Dialect::Redshift.ddl()[1];
        assert!(redshift.contains("PRIMARY KEY"), "{redshift}");
        assert!(redshift.contains("DISTKEY (exposure_id)"), "{redshift}");
        assert!(redshift.contains("attributes SUPER"), "{redshift}");
    }

    #[test]
    fn redshift_batch() {
        let d = Dialect::Redshift;
        assert_eq!(d.direct(), None);
        assert_eq!(
            d.create_staging(),
            "CREATE TEMPORARY TABLE exposures_staging (exposure_id VARCHAR(64), ds_user_id VARCHAR(256), \
experiment_id VARCHAR(256), variation_id VARCHAR(256), ts TIMESTAMPTZ, attributes SUPER, \
source VARCHAR(256))"
        );
        assert_eq!(
            d.load(),
            Load::InsertValues {
                rows_per_statement: 1000
            }
        );
        assert_eq!(
            d.insert_values(2),
            "INSERT INTO exposures_staging (exposure_id, ds_user_id, experiment_id, variation_id, ts, \
attributes, source) VALUES ($1, $2, $3, $4, $5, JSON_PARSE($6), $7), \
($8, $9, $10, $11, $12, JSON_PARSE($13), $14)"
        );
        assert_eq!(
            d.merge(),
            "MERGE INTO growthbook.experiment_exposures USING exposures_staging AS s \
ON growthbook.experiment_exposures.exposure_id = s.exposure_id \
WHEN MATCHED THEN UPDATE SET exposure_id = s.exposure_id \
WHEN NOT MATCHED THEN INSERT (exposure_id, ds_user_id, experiment_id, variation_id, ts, \
attributes, source) VALUES (s.exposure_id, s.ds_user_id, s.experiment_id, s.variation_id, s.ts, \
s.attributes, s.source)"
        );
        assert_eq!(d.drop_staging().unwrap(), "DROP TABLE exposures_staging");
        assert_eq!(
            d.count_new().unwrap(),
            "SELECT count(*) FROM exposures_staging s WHERE NOT EXISTS \
(SELECT 1 FROM growthbook.experiment_exposures t WHERE t.exposure_id = s.exposure_id)"
        );
    }
}
