//! Changing a consumer's replica count, and the autoscaler's hands on the docker platform.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bollard::Docker;
use tracing::{info, warn};

use crate::manifest::Environment;
use crate::platform::{Counts, RolloutError, ScaleError};

use super::*;

/// The lowest replica numbers not used by `existing`, `n` of them.
pub fn free_replicas(existing: &[Container], n: u32) -> Vec<u32> {
    let used: BTreeSet<u32> = existing.iter().map(|c| c.replica).collect();
    (0..)
        .filter(|i| !used.contains(i))
        .take(n as usize)
        .collect()
}

/// Scales a consumer's current revision to `count` containers: starts the missing ones
/// from `template` (and waits until they are healthy), or removes the highest-numbered ones.
pub async fn scale_to(
    docker: &Docker,
    set: &LiveSet,
    template: &Template,
    all: &[Container],
    count: u32,
    timeout: Duration,
) -> Result<(), RolloutError> {
    let have = set.desired();
    let err = |e: DockerError| RolloutError::Container {
        service: set.consumer.clone(),
        container: String::new(),
        reason: e.to_string(),
        logs: Vec::new(),
    };
    if count > have {
        let mut ports = Ports::new(all);
        let mut started = Vec::new();
        for replica in free_replicas(&set.current, count - have) {
            started.push(
                start(docker, template, replica, &mut ports)
                    .await
                    .map_err(err)?,
            );
        }
        if let Err(e) = wait_healthy(
            docker,
            &set.consumer,
            &started,
            template.api.as_ref(),
            timeout,
        )
        .await
        {
            for s in &started {
                if let Err(e) = remove(docker, &s.id).await {
                    warn!(container = %s.name, error = %e, "cannot remove a failed container");
                }
            }
            return Err(e);
        }
    } else if count < have {
        let mut victims = set.current.clone();
        // Stopped ones first, then the highest replica numbers.
        victims.sort_by_key(|c| (c.running(), std::cmp::Reverse(c.replica)));
        for c in victims.into_iter().take((have - count) as usize) {
            remove(docker, &c.id).await.map_err(err)?;
        }
    }
    Ok(())
}

/// The autoscaler's view of the docker platform: a consumer's desired count is the number of
/// containers of the revision it runs.
#[derive(Debug, Clone)]
pub struct DockerScale {
    pub docker: Docker,
    pub project: String,
    pub env: String,
    /// For a consumer with no container at all (scaling from zero): the deploy's spec.
    pub fallback: BTreeMap<String, Template>,
    /// How long new containers may take to become healthy.
    pub timeout: Duration,
}

impl DockerScale {
    pub fn new(docker: Docker, env: &Environment, project: &str) -> DockerScale {
        DockerScale {
            docker,
            project: project.to_string(),
            env: env.name.clone(),
            fallback: BTreeMap::new(),
            timeout: Duration::from_secs(120),
        }
    }

    async fn set_of(
        &self,
        consumer: &str,
    ) -> Result<(Vec<Container>, Option<LiveSet>), ScaleError> {
        let all = list(&self.docker, &self.project, &self.env)
            .await
            .map_err(engine_error)?;
        let set = live_sets(&all).remove(consumer);
        Ok((all, set))
    }
}

impl crate::platform::Scale for DockerScale {
    async fn counts(&self, service: &str) -> Result<Counts, ScaleError> {
        let (_, set) = self.set_of(service).await?;
        Ok(set.map_or(Counts::NONE, |s| s.counts()))
    }

    /// One container list for all of them.
    async fn counts_many(
        &self,
        services: &[String],
    ) -> Result<BTreeMap<String, Counts>, ScaleError> {
        let all = list(&self.docker, &self.project, &self.env)
            .await
            .map_err(engine_error)?;
        let mut sets = live_sets(&all);
        Ok(services
            .iter()
            .map(|s| {
                let counts = sets.remove(s).map_or(Counts::NONE, |set| set.counts());
                (s.clone(), counts)
            })
            .collect())
    }

    async fn set(&self, service: &str, count: u32) -> Result<(), ScaleError> {
        let (all, set) = self.set_of(service).await?;
        let (set, template) = match set {
            Some(set) => {
                let Some(first) = set.current.first() else {
                    let empty = DockerError::Other(format!("{service} has no containers"));
                    return Err(engine_error(empty));
                };
                let t = Template::from_container(&self.docker, &first.id)
                    .await
                    .map_err(engine_error)?;
                (set, t)
            }
            None => {
                let Some(t) = self.fallback.get(service).cloned() else {
                    return Err(ScaleError::NotDeployed {
                        service: service.to_string(),
                        env: self.env.clone(),
                    });
                };
                let set = LiveSet {
                    consumer: service.to_string(),
                    revision: t.revision.clone(),
                    spec: None,
                    current: Vec::new(),
                    others: Vec::new(),
                };
                (set, t)
            }
        };
        info!(
            consumer = service,
            from = set.desired(),
            to = count,
            "scaling containers"
        );
        scale_to(&self.docker, &set, &template, &all, count, self.timeout).await?;
        Ok(())
    }
}

/// The docker platform has no CloudWatch: the autoscaler's figures are only served on its
/// `/metrics`.
impl crate::platform::Publish for DockerScale {
    async fn publish(
        &self,
        _metrics: Vec<crate::aws::cloudwatch::Metric>,
    ) -> Result<(), crate::aws::AwsError> {
        Ok(())
    }
}

/// The Docker Engine's error, kept whole.
fn engine_error(e: DockerError) -> ScaleError {
    ScaleError::Platform(Box::new(e))
}
