//! The Docker Registry HTTP API v2, used only to ask whether a tag is already there:
//! `HEAD /v2/<repository>/manifests/<tag>` with basic authentication.
//!
//! Loopback registries (`127.*`, `localhost`, `[::1]`) are spoken to over plain HTTP, as the
//! Docker Engine does by default; every other registry over HTTPS with the system's roots.
//! Only basic authentication is sent: a registry whose challenge is a bearer-token flow
//! answers 401 here, which is reported as refused credentials.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::aws::ecr::RegistryAuth;

/// The manifest types a pushed image may have; without them a registry may answer 404 for an
/// OCI or list manifest.
const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json";

const TIMEOUT: Duration = Duration::from_secs(30);

/// Why the registry could not say whether a tag is there.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 401 or 403: the credentials were refused.
    #[error("HTTP {status}")]
    Refused { status: u16 },
    /// Not reachable (refused, timed out, TLS).
    #[error("could not reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// Any other answer.
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
}

/// A small HTTP client for registries.
#[derive(Clone)]
pub struct RegistryApi {
    client: Arc<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>>,
}

impl std::fmt::Debug for RegistryApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryApi")
    }
}

impl RegistryApi {
    pub fn new() -> std::io::Result<RegistryApi> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(RegistryApi {
            client: Arc::new(client),
        })
    }

    /// Whether `host` holds `repository:tag`.
    pub async fn manifest_exists(
        &self,
        host: &str,
        repository: &str,
        tag: &str,
        auth: &RegistryAuth,
    ) -> Result<bool, RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{tag}", base_url(host));
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", auth.username, auth.password),
        );
        let request = http::Request::head(&url)
            .header(http::header::ACCEPT, ACCEPT)
            .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
            .body(Empty::new())
            .map_err(|e| RegistryError::Unreachable {
                url: url.clone(),
                cause: e.to_string(),
            })?;
        let answer = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| RegistryError::Unreachable {
                url: url.clone(),
                cause: format!("no answer in {} s", TIMEOUT.as_secs()),
            })?
            .map_err(|e| RegistryError::Unreachable {
                url: url.clone(),
                cause: crate::error::innermost(&e),
            })?;
        match answer.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status @ (401 | 403) => Err(RegistryError::Refused { status }),
            status => Err(RegistryError::Status { url, status }),
        }
    }
}

/// `http://` for loopback registries, `https://` for the rest.
pub fn base_url(host: &str) -> String {
    let name = host
        .strip_prefix('[')
        .and_then(|h| h.split_once(']').map(|(n, _)| n))
        .unwrap_or_else(|| host.split(':').next().unwrap_or(host));
    let loopback = name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        format!("http://{host}")
    } else {
        format!("https://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_plain_http() {
        assert_eq!(base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(base_url("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(
            base_url("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
    }
}
