//! Pushing one image through the Docker Engine with ECR's credentials.

use bollard::auth::DockerCredentials;
use bollard::query_parameters::PushImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use super::build::{is_connection, Engine};
use super::progress::Task;
use super::{ImageError, ImageJob};
use crate::aws::ecr::RegistryAuth;

/// Pushes `job`'s image to `host` with `auth`. Returns `false` when the registry already held
/// the tag (another deploy pushed it meanwhile: an IMMUTABLE repository refuses the second
/// push, and the content hash says the image is the same).
pub(crate) async fn push(
    docker: &Docker,
    engine: &Engine,
    job: &ImageJob,
    host: &str,
    auth: &RegistryAuth,
    task: &Task,
) -> Result<bool, ImageError> {
    let credentials = DockerCredentials {
        username: Some(auth.username.clone()),
        password: Some(auth.password.clone()),
        serveraddress: Some(host.to_string()),
        ..Default::default()
    };
    let options = PushImageOptionsBuilder::new().tag(&job.tag).build();
    let mut stream = docker.push_image(&job.name, Some(options), Some(credentials));
    // The engine's per-layer lines carry a layer id, but bollard's `PushImageInfo` drops it:
    // count the layers that are done instead.
    let mut done = 0usize;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                let status = info.status.unwrap_or_default();
                if status == "Pushed"
                    || status == "Layer already exists"
                    || status.starts_with("Mounted from")
                {
                    done += 1;
                    task.step(&format!("pushing: {done} layers done ({status})"));
                } else if status.contains("digest: sha256:") {
                    task.step(&format!("pushed {status}"));
                } else if let Some((c, t)) = info
                    .progress_detail
                    .and_then(|p| Some((p.current?, p.total?)))
                {
                    task.detail(&format!(
                        "pushing: {done} layers done, {} / {} kB",
                        c / 1024,
                        t / 1024
                    ));
                } else if !status.is_empty() {
                    task.detail(&status);
                }
            }
            Err(e) if is_connection(&e) => {
                return Err(engine.unreachable(&job.consumer, e.into()));
            }
            Err(e) => {
                let detail = match e {
                    bollard::errors::Error::DockerStreamError { error } => error,
                    bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                    other => other.to_string(),
                };
                let detail = detail.trim().to_string();
                if already_there(&detail) {
                    return Ok(false);
                }
                return Err(if refused(&detail) {
                    ImageError::Credentials {
                        consumer: job.consumer.clone(),
                        registry: host.to_string(),
                        detail,
                    }
                } else {
                    ImageError::Push {
                        consumer: job.consumer.clone(),
                        registry: host.to_string(),
                        detail,
                    }
                });
            }
        }
    }
    Ok(true)
}

/// Whether a push error means the registry refused the credentials.
fn refused(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("unauthorized")
        || d.contains("authentication required")
        || d.contains("no basic auth credentials")
        || d.contains("denied")
        || d.contains("401")
}

/// Whether a push error means an IMMUTABLE repository already holds the tag (ECR's words).
fn already_there(detail: &str) -> bool {
    detail.contains("cannot be overwritten because the repository is immutable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_refusals_and_immutable_tags() {
        assert!(refused("unauthorized: authentication required"));
        assert!(refused("denied: Your authorization token has expired"));
        assert!(!refused("blob upload unknown"));
        assert!(already_there(
            "tag invalid: The image tag 'abc' already exists in the 'p/c' repository and \
             cannot be overwritten because the repository is immutable."
        ));
    }
}
