//! An ECS service's spec, in one type: what the manifest and environment want
//! ([`ServiceSpec::desired`]), what a live service has ([`ServiceSpec::live`]), the JSON the
//! plan compares ([`ServiceSpec::to_json`]) and the SDK's request parts. A new setting is one
//! field here, and the three cannot drift apart.

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration,
    NetworkConfiguration, Service,
};
use serde::Serialize;
use serde_json::Value;

use super::rollout;
use crate::manifest::{Consumer, Environment};
use crate::render::family;

/// A Fargate service as shoal runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    pub cluster: String,
    /// The task definition's family (the revision is the deploy's to choose).
    pub task_definition: String,
    pub launch_type: String,
    pub desired_count: i32,
    pub network_configuration: Network,
    /// Left out where a live answer has none (moto gives none); the plan then compares
    /// without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_configuration: Option<Deployment>,
}

/// `networkConfiguration`: the awsvpc settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    pub awsvpc_configuration: AwsVpc,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsVpc {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// `ENABLED` or `DISABLED`.
    pub assign_public_ip: String,
}

/// `deploymentConfiguration`: the circuit breaker and the rolling percentages.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub deployment_circuit_breaker: CircuitBreaker,
    pub minimum_healthy_percent: Option<i32>,
    pub maximum_percent: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

impl ServiceSpec {
    /// What a consumer's service should be in `env`: Fargate, the environment's network, the
    /// circuit breaker with rollback, no capacity dip during a rollout.
    pub fn desired(env: &Environment, project: &str, consumer: &Consumer) -> ServiceSpec {
        let count = i32::try_from(consumer.initial_count()).unwrap_or(i32::MAX);
        ServiceSpec::new(env, &family(project, &consumer.name), count)
    }

    /// A service of task family `family` with `desired_count` replicas in `env`.
    pub fn new(env: &Environment, family: &str, desired_count: i32) -> ServiceSpec {
        ServiceSpec {
            cluster: env.cluster.clone(),
            task_definition: family.to_string(),
            launch_type: "FARGATE".to_string(),
            desired_count,
            network_configuration: Network {
                awsvpc_configuration: AwsVpc {
                    subnets: env.subnets.clone(),
                    security_groups: env.security_groups.clone(),
                    assign_public_ip: if env.assign_public_ip {
                        "ENABLED"
                    } else {
                        "DISABLED"
                    }
                    .to_string(),
                },
            },
            deployment_configuration: Some(Deployment {
                deployment_circuit_breaker: CircuitBreaker {
                    enable: true,
                    rollback: true,
                },
                minimum_healthy_percent: Some(100),
                maximum_percent: Some(200),
            }),
        }
    }

    /// What a live service has. moto leaves `deploymentConfiguration` and `assignPublicIp` out
    /// of its answers: ECS's default for `assignPublicIp` is DISABLED, so an absent value
    /// reads as that, and an absent deployment configuration stays absent.
    pub fn live(cluster: &str, service: &Service) -> ServiceSpec {
        let family = service
            .task_definition()
            .map(|arn| rollout::revision(arn).split(':').next().unwrap_or_default())
            .unwrap_or_default();
        let vpc = service
            .network_configuration()
            .and_then(NetworkConfiguration::awsvpc_configuration);
        ServiceSpec {
            cluster: cluster.to_string(),
            task_definition: family.to_string(),
            launch_type: service
                .launch_type()
                .map(|l| l.as_str())
                .unwrap_or("FARGATE")
                .to_string(),
            desired_count: service.desired_count(),
            network_configuration: Network {
                awsvpc_configuration: AwsVpc {
                    subnets: vpc.map(|v| v.subnets().to_vec()).unwrap_or_default(),
                    security_groups: vpc
                        .map(|v| v.security_groups().to_vec())
                        .unwrap_or_default(),
                    assign_public_ip: vpc
                        .and_then(|v| v.assign_public_ip())
                        .map(|a| a.as_str())
                        .unwrap_or("DISABLED")
                        .to_string(),
                },
            },
            deployment_configuration: service.deployment_configuration().map(|dc| {
                let cb = dc.deployment_circuit_breaker();
                Deployment {
                    deployment_circuit_breaker: CircuitBreaker {
                        enable: cb.is_some_and(|c| c.enable()),
                        rollback: cb.is_some_and(|c| c.rollback()),
                    },
                    minimum_healthy_percent: dc.minimum_healthy_percent(),
                    maximum_percent: dc.maximum_percent(),
                }
            }),
        }
    }

    /// The JSON the plan compares and shows.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The request's `networkConfiguration`.
    pub fn network(&self) -> Result<NetworkConfiguration, aws_sdk_ecs::error::BuildError> {
        let v = &self.network_configuration.awsvpc_configuration;
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(v.subnets.clone()))
            .set_security_groups(Some(v.security_groups.clone()))
            .assign_public_ip(AssignPublicIp::from(v.assign_public_ip.as_str()))
            .build()?;
        Ok(NetworkConfiguration::builder()
            .awsvpc_configuration(vpc)
            .build())
    }

    /// The request's `deploymentConfiguration`, when the spec has one.
    pub fn deployment(&self) -> Option<DeploymentConfiguration> {
        self.deployment_configuration.as_ref().map(|d| {
            let breaker = DeploymentCircuitBreaker::builder()
                .enable(d.deployment_circuit_breaker.enable)
                .rollback(d.deployment_circuit_breaker.rollback)
                .build();
            DeploymentConfiguration::builder()
                .deployment_circuit_breaker(breaker)
                .set_minimum_healthy_percent(d.minimum_healthy_percent)
                .set_maximum_percent(d.maximum_percent)
                .build()
        })
    }
}
