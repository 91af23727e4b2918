//! ECR repositories, the ECS platform's resource: each consumer's repository exists, with
//! scan on push, IMMUTABLE tags and the lifecycle policy that keeps the environment's last
//! `keep_images` images.
//!
//! Calls are batched so that a deploy with nothing to do stays cheap: one (paginated)
//! DescribeRepositories lists every repository. A repository's settings are read on every
//! plan, one GetLifecyclePolicy per repository of the project, and put right by a deploy when
//! they drift ([`converge`]).
//!
//! Checked against moto 5.2 (`tests/it/ecr_settings.rs`): DescribeRepositories,
//! CreateRepository (scan on push, tag mutability), PutImageScanningConfiguration,
//! PutImageTagMutability and PutLifecyclePolicy / GetLifecyclePolicy.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability};

use crate::aws::AwsError;

const SERVICE: &str = "ECR";

/// The settings every ECR repository is created with, as the plan compares them.
pub fn repository_spec(keep_images: u32) -> serde_json::Value {
    serde_json::json!({
        "imageScanningConfiguration": {"scanOnPush": true},
        "imageTagMutability": "IMMUTABLE",
        "lifecyclePolicy": {"keepImages": keep_images},
    })
}

/// What [`ensure_repositories`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ensured {
    /// Repositories that were created (with scan on push, IMMUTABLE tags and the lifecycle
    /// policy).
    pub created: Vec<String>,
    /// Repositories that already existed, with their URIs.
    pub existing: BTreeMap<String, String>,
}

/// The lifecycle policy that keeps the last `keep` images of a repository.
pub fn lifecycle_policy(keep: u32) -> String {
    serde_json::json!({
        "rules": [{
            "rulePriority": 1,
            "description": format!("keep the last {keep} images"),
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": keep,
            },
            "action": {"type": "expire"},
        }]
    })
    .to_string()
}

/// Every repository name in the registry (one DescribeRepositories, paginated), with its URI.
pub async fn repositories(
    client: &aws_sdk_ecr::Client,
) -> Result<BTreeMap<String, String>, AwsError> {
    Ok(described(client)
        .await?
        .into_iter()
        .map(|(name, r)| (name, r.uri))
        .collect())
}

/// A repository as DescribeRepositories answers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub uri: String,
    pub scan_on_push: bool,
    pub immutable: bool,
}

/// Every repository in the registry with the settings DescribeRepositories gives (one call,
/// paginated).
pub async fn described(
    client: &aws_sdk_ecr::Client,
) -> Result<BTreeMap<String, Described>, AwsError> {
    let mut out = BTreeMap::new();
    let mut pages = client
        .describe_repositories()
        .max_results(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk(SERVICE, "DescribeRepositories", e))?;
        for r in page.repositories() {
            if let Some(name) = r.repository_name() {
                out.insert(
                    name.to_string(),
                    Described {
                        uri: r.repository_uri().unwrap_or_default().to_string(),
                        scan_on_push: r
                            .image_scanning_configuration()
                            .is_some_and(|c| c.scan_on_push()),
                        immutable: r.image_tag_mutability() == Some(&ImageTagMutability::Immutable),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// A repository's lifecycle policy, as far as shoal reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// None is set (a create interrupted before PutLifecyclePolicy, or one removed by hand).
    Missing,
    /// shoal's own policy ([`lifecycle_policy`]), keeping the last N images.
    Keeps(u32),
    /// A policy of another shape, as its text.
    Other(String),
}

impl Lifecycle {
    /// The policy as the plan compares it with `{"keepImages": N}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Lifecycle::Missing => serde_json::Value::Null,
            Lifecycle::Keeps(n) => serde_json::json!({ "keepImages": n }),
            Lifecycle::Other(text) => serde_json::json!({ "other": text }),
        }
    }
}

/// Reads a repository's lifecycle policy (GetLifecyclePolicy).
pub async fn lifecycle(client: &aws_sdk_ecr::Client, name: &str) -> Result<Lifecycle, AwsError> {
    let answer = match client
        .get_lifecycle_policy()
        .repository_name(name)
        .send()
        .await
    {
        Ok(a) => a,
        Err(e) => {
            let e = AwsError::from_sdk(SERVICE, "GetLifecyclePolicy", e);
            return match e.code() {
                Some("LifecyclePolicyNotFoundException") => Ok(Lifecycle::Missing),
                _ => Err(e),
            };
        }
    };
    let text = answer.lifecycle_policy_text().unwrap_or_default();
    Ok(parse_lifecycle(text))
}

/// Which policy a text is: shoal's own shape with its count, or another.
fn parse_lifecycle(text: &str) -> Lifecycle {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Lifecycle::Other(text.to_string());
    };
    let keep = v["rules"][0]["selection"]["countNumber"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok());
    match keep {
        Some(n)
            if v == serde_json::from_str::<serde_json::Value>(&lifecycle_policy(n))
                .unwrap_or_default() =>
        {
            Lifecycle::Keeps(n)
        }
        _ => Lifecycle::Other(text.to_string()),
    }
}

/// Which of a repository's settings to put right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drift {
    pub scan_on_push: bool,
    pub immutable: bool,
    pub lifecycle: bool,
}

/// Puts a repository's drifted settings back: scan on push, IMMUTABLE tags, the lifecycle
/// policy keeping the last `keep_images` images. Returns the settings it put.
pub async fn converge(
    client: &aws_sdk_ecr::Client,
    name: &str,
    drift: Drift,
    keep_images: u32,
) -> Result<Vec<&'static str>, AwsError> {
    let mut put = Vec::new();
    if drift.scan_on_push {
        client
            .put_image_scanning_configuration()
            .repository_name(name)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(SERVICE, "PutImageScanningConfiguration", e))?;
        put.push("scan on push");
    }
    if drift.immutable {
        client
            .put_image_tag_mutability()
            .repository_name(name)
            .image_tag_mutability(ImageTagMutability::Immutable)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(SERVICE, "PutImageTagMutability", e))?;
        put.push("tag immutability");
    }
    if drift.lifecycle {
        put_lifecycle_policy(client, name, keep_images).await?;
        put.push("lifecycle policy");
    }
    Ok(put)
}

async fn put_lifecycle_policy(
    client: &aws_sdk_ecr::Client,
    name: &str,
    keep_images: u32,
) -> Result<(), AwsError> {
    client
        .put_lifecycle_policy()
        .repository_name(name)
        .lifecycle_policy_text(lifecycle_policy(keep_images))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(SERVICE, "PutLifecyclePolicy", e))?;
    Ok(())
}

/// Makes sure each named repository exists. Missing ones are created with scan on push,
/// IMMUTABLE tags and a lifecycle policy keeping the last `keep_images` images. Existing
/// ones are left as they are: the plan reads their settings, and [`converge`] puts them
/// right.
pub async fn ensure_repositories(
    client: &aws_sdk_ecr::Client,
    names: &[String],
    keep_images: u32,
) -> Result<Ensured, AwsError> {
    let live = repositories(client).await?;
    let mut out = Ensured::default();
    let wanted: BTreeSet<&String> = names.iter().collect();
    for name in wanted {
        if let Some(uri) = live.get(name) {
            out.existing.insert(name.clone(), uri.clone());
            continue;
        }
        create_repository(client, name, keep_images).await?;
        out.created.push(name.clone());
    }
    Ok(out)
}

/// Creates one repository with scan on push, IMMUTABLE tags and the lifecycle policy. A
/// repository that appeared meanwhile (another deploy) is not an error.
pub async fn create_repository(
    client: &aws_sdk_ecr::Client,
    name: &str,
    keep_images: u32,
) -> Result<(), AwsError> {
    let created = client
        .create_repository()
        .repository_name(name)
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(true)
                .build(),
        )
        .image_tag_mutability(ImageTagMutability::Immutable)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(SERVICE, "CreateRepository", e));
    match created {
        Ok(_) => {}
        Err(e) if e.code() == Some("RepositoryAlreadyExistsException") => {}
        Err(e) => return Err(e),
    }
    put_lifecycle_policy(client, name, keep_images).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_keeps_the_last_n_images() {
        let v: serde_json::Value = serde_json::from_str(&lifecycle_policy(20)).expect("valid JSON");
        let rule = &v["rules"][0];
        assert_eq!(rule["selection"]["countType"], "imageCountMoreThan");
        assert_eq!(rule["selection"]["countNumber"], 20);
        assert_eq!(rule["selection"]["tagStatus"], "any");
        assert_eq!(rule["action"]["type"], "expire");
    }

    #[test]
    fn a_lifecycle_policy_is_shoals_own_or_another() {
        assert_eq!(parse_lifecycle(&lifecycle_policy(7)), Lifecycle::Keeps(7));
        let other = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":3},"action":{"type":"expire"}}]}"#;
        assert_eq!(parse_lifecycle(other), Lifecycle::Other(other.to_string()));
        assert_eq!(parse_lifecycle("nope"), Lifecycle::Other("nope".into()));
    }
}
