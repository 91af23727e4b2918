//! How the exposure workloads reach the warehouse (Redshift, or PostgreSQL locally) over TLS,
//! the way libpq and `psql` do: `DATABASE_URL` with libpq's `sslmode` values, and
//! `DATABASE_CA_FILE`, the certificates to verify the server against.
//!
//! tokio-postgres knows `sslmode` = disable, prefer and require, and verifies nothing itself;
//! libpq also has verify-ca and verify-full. The meanings here are libpq's:
//!
//! | sslmode | encrypted | server certificate checked |
//! | --- | --- | --- |
//! | disable | no | — |
//! | prefer (the default) | when the server offers it | only with a CA file |
//! | require | yes | only with a CA file (then as verify-ca) |
//! | verify-ca | yes | chain, against the CA file or the system's roots |
//! | verify-full | yes | chain and host name |

use std::fmt;
use std::path::{Path, PathBuf};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::X509;
pub use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::SslMode as PgSslMode;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str) -> Option<SslMode> {
        match value {
            "disable" => Some(SslMode::Disable),
            // libpq's `allow` tries plain first; tokio-postgres cannot, and prefer is safer.
            "allow" | "prefer" => Some(SslMode::Prefer),
            "require" => Some(SslMode::Require),
            "verify-ca" => Some(SslMode::VerifyCa),
            "verify-full" => Some(SslMode::VerifyFull),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The warehouse's connection settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    /// tokio-postgres's settings; its `ssl_mode` is set from [`Database::mode`].
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    pub ca_file: Option<PathBuf>,
}

impl Database {
    /// Reads `url` (a `postgres://` URL or libpq's `key=value` form) and the CA file's path.
    /// The error says what is wrong, for a message naming `DATABASE_URL`.
    pub fn parse(url: &str, ca_file: Option<&str>) -> Result<Database, String> {
        let (mode, url) = take_sslmode(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("is not a PostgreSQL URL: {e}"))?;
        config.ssl_mode(match mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
        Ok(Database {
            config,
            mode,
            ca_file: ca_file.filter(|f| !f.is_empty()).map(PathBuf::from),
        })
    }

    /// Whether the server's certificate chain is checked.
    pub fn verifies_chain(&self) -> bool {
        match self.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            SslMode::Prefer | SslMode::Require => self.ca_file.is_some(),
            SslMode::Disable => false,
        }
    }

    /// A TLS connector that checks what `sslmode` asks for. Fails when the CA file cannot be
    /// read.
    pub fn tls(&self) -> Result<MakeTlsConnector, String> {
        let mut builder = SslConnector::builder(SslMethod::tls())
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        if let Some(ca) = &self.ca_file {
            // Only the file's certificates, as libpq's sslrootcert: not the system's as well.
            builder.set_cert_store(ca_store(ca)?);
        }
        builder.set_verify(if self.verifies_chain() {
            SslVerifyMode::PEER
        } else {
            SslVerifyMode::NONE
        });
        let mut tls = MakeTlsConnector::new(builder.build());
        let hostname = self.mode == SslMode::VerifyFull;
        tls.set_callback(move |connect, _| {
            connect.set_verify_hostname(hostname);
            Ok(())
        });
        Ok(tls)
    }
}

/// A certificate store holding only the PEM certificates in `path`.
fn ca_store(path: &Path) -> Result<X509Store, String> {
    let fail = |e: &dyn fmt::Display| format!("DATABASE_CA_FILE {}: {e}", path.display());
    let pem = std::fs::read(path).map_err(|e| fail(&e))?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| fail(&e))?;
    if certs.is_empty() {
        return Err(fail(&"holds no PEM certificate"));
    }
    let mut store = X509StoreBuilder::new().map_err(|e| fail(&e))?;
    for cert in certs {
        store.add_cert(cert).map_err(|e| fail(&e))?;
    }
    Ok(store.build())
}

impl fmt::Display for Database {
    /// For logs: the mode and what is verified, never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sslmode {}", self.mode.as_str())?;
        match (&self.ca_file, self.mode) {
            (_, SslMode::Disable) => Ok(()),
            (Some(ca), _) => write!(f, ", verified against {}", ca.display()),
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
                write!(f, ", verified against the system's roots")
            }
            (None, _) => write!(f, ", server certificate not verified"),
        }
    }
}

/// A warehouse error as an operator needs it: the server's message and code when the server
/// answered (the bare Display says only "db error"), else the whole chain of causes (a TLS
/// failure's Display says only "error performing TLS handshake", its cause says why).
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Takes `sslmode` out of `url` (tokio-postgres rejects libpq's verify-ca and verify-full),
/// returning it (prefer when absent) and the rest of the URL.
fn take_sslmode(url: &str) -> Result<(SslMode, String), String> {
    const KEY: &str = "sslmode=";
    let Some(start) = url
        .find(KEY)
        .filter(|&i| i == 0 || matches!(url.as_bytes()[i - 1], b'?' | b'&' | b' ' | b'\t'))
    else {
        return Ok((SslMode::Prefer, url.to_string()));
    };
    let value_start = start + KEY.len();
    let value_end = url[value_start..]
        .find(['&', ' ', '\t'])
        .map_or(url.len(), |i| value_start + i);
    let value = &url[value_start..value_end];
    let mode = SslMode::parse(value).ok_or_else(|| {
        format!("sslmode {value:?} is not one of disable, prefer, require, verify-ca, verify-full")
    })?;
    // Drop the pair, and the separator that joined it to the rest.
    let mut rest = format!("{}{}", &url[..start], &url[value_end..]);
    rest = rest.replace("?&", "?").replace("&&", "&");
    let rest = rest
        .strip_suffix('?')
        .or_else(|| rest.strip_suffix('&'))
        .unwrap_or(&rest)
        .trim()
        .to_string();
    Ok((mode, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> Database {
        Database::parse(url, None).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn sslmode_comes_out_of_the_url_in_either_form() {
        let cases = [
            ("postgres://u:p@h/db", SslMode::Prefer),
            (
                "postgres://u:p@h/db?sslmode=verify-full",
                SslMode::VerifyFull,
            ),
            (
                "postgres://u:p@h/db?sslmode=verify-ca&application_name=x",
                SslMode::VerifyCa,
            ),
            (
                "postgres://u:p@h/db?connect_timeout=3&sslmode=require",
                SslMode::Require,
            ),
            ("host=h user=u sslmode=disable dbname=db", SslMode::Disable),
            (
                "host=h user=u dbname=db sslmode=verify-full",
                SslMode::VerifyFull,
            ),
            ("postgres://h/db?sslmode=allow", SslMode::Prefer),
        ];
        for (url, mode) in cases {
            let db = parsed(url);
            assert_eq!(db.mode, mode, "{url}");
            assert_eq!(db.config.get_hosts().len(), 1, "{url}");
            assert_eq!(db.config.get_dbname(), Some("db"), "{url}");
        }
        assert_eq!(
            parsed("postgres://u@h/db?sslmode=verify-ca&application_name=x")
                .config
                .get_application_name(),
            Some("x")
        );
        assert_eq!(
            parsed("postgres://u@h/db?sslmode=verify-full")
                .config
                .get_ssl_mode(),
            PgSslMode::Require
        );
        assert_eq!(
            parsed("postgres://u@h/db").config.get_ssl_mode(),
            PgSslMode::Prefer
        );
    }

    #[test]
    fn an_unknown_sslmode_or_url_is_an_error_that_says_which() {
        let e = Database::parse("postgres://h/db?sslmode=always", None).unwrap_err();
        assert!(e.contains("\"always\""), "{e}");
        assert!(e.contains("verify-full"), "{e}");
        let e = Database::parse("postgres://h:port/db", None).unwrap_err();
        assert!(e.contains("is not a PostgreSQL URL"), "{e}");
    }

    #[test]
    fn what_is_verified_follows_libpq() {
        let with_ca = |url: &str| Database::parse(url, Some("/ca.pem")).expect("parses");
        assert!(!parsed("postgres://h/db?sslmode=require").verifies_chain());
        assert!(with_ca("postgres://h/db?sslmode=require").verifies_chain());
        assert!(parsed("postgres://h/db?sslmode=verify-ca").verifies_chain());
        assert!(!with_ca("postgres://h/db?sslmode=disable").verifies_chain());
        assert_eq!(
            parsed("postgres://h/db?sslmode=verify-full").to_string(),
            "sslmode verify-full, verified against the system's roots"
        );
        assert_eq!(
            parsed("postgres://h/db").to_string(),
            "sslmode prefer, server certificate not verified"
        );
        assert_eq!(
            with_ca("postgres://h/db?sslmode=verify-ca").to_string(),
            "sslmode verify-ca, verified against /ca.pem"
        );
    }

    #[test]
    fn an_unreadable_ca_file_is_an_error_naming_it() {
        let db = Database::parse(
            "postgres://h/db?sslmode=verify-ca",
            Some("/nonexistent/ca.pem"),
        )
        .expect("parses");
        let e = db.tls().err().expect("no such file");
        assert!(e.contains("DATABASE_CA_FILE /nonexistent/ca.pem"), "{e}");

        let dir = std::env::temp_dir().join(format!("warehouse-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let db =
            Database::parse("postgres://h/db?sslmode=verify-ca", empty.to_str()).expect("parses");
        let e = db.tls().err().expect("no certificate in it");
        assert!(e.contains("holds no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
