//! ECR: the repositories images go to, which content-hash tags they already hold, and the
//! registry credentials (GetAuthorizationToken).
//!
//! Calls are batched so that a deploy with nothing to do stays cheap: one (paginated)
//! DescribeRepositories lists every repository, and one BatchGetImage per repository asks for
//! exactly the tags wanted.
//!
//! Checked against moto 5.2 (the local stack, `tests/it/image.rs`): DescribeRepositories,
//! CreateRepository (scan on push, tag mutability), PutLifecyclePolicy / GetLifecyclePolicy,
//! BatchGetImage with `imageIds` (missing tags under `failures`), DescribeImages and
//! GetAuthorizationToken all work. moto's token is always `AWS:<account>-auth-token` for its
//! default account, whatever the access key.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ImageTagMutability};
use base64::Engine as _;

use super::AwsError;

const SERVICE: &str = "ECR";

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
                    r.repository_uri().unwrap_or_default().to_string(),
                );
            }
        }
    }
    Ok(out)
}

/// Makes sure each named repository exists. Missing ones are created with scan on push,
/// IMMUTABLE tags and a lifecycle policy keeping the last `keep_images` images.
///
/// The lifecycle policy is put only when the repository is created: checking it on every
/// deploy would cost one call per repository.
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
    client
        .put_lifecycle_policy()
        .repository_name(name)
        .lifecycle_policy_text(lifecycle_policy(keep_images))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(SERVICE, "PutLifecyclePolicy", e))?;
    Ok(())
}

/// Which of `tags` the repository already holds: one BatchGetImage call naming them all.
/// A repository that does not exist holds none.
///
/// BatchGetImage rather than DescribeImages: DescribeImages fails the whole call with
/// `ImageNotFoundException` when any one named tag is missing (ECR and moto alike), while
/// BatchGetImage lists the missing ones under `failures` and answers for the rest.
pub async fn existing_tags(
    client: &aws_sdk_ecr::Client,
    repository: &str,
    tags: &[String],
) -> Result<BTreeSet<String>, AwsError> {
    const OP: &str = "BatchGetImage";
    if tags.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut request = client.batch_get_image().repository_name(repository);
    for t in tags {
        request = request.image_ids(ImageIdentifier::builder().image_tag(t).build());
    }
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => {
            let e = AwsError::from_sdk(SERVICE, OP, e);
            return match e.code() {
                Some("RepositoryNotFoundException") => Ok(BTreeSet::new()),
                _ => Err(e),
            };
        }
    };
    let wanted: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
    Ok(answer
        .images()
        .iter()
        .filter_map(|i| i.image_id().and_then(|id| id.image_tag()))
        .filter(|t| wanted.contains(t))
        .map(str::to_string)
        .collect())
}

/// Registry credentials from GetAuthorizationToken.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    /// The registry the token is for, as ECR names it (`https://<account>.dkr.ecr...`).
    pub proxy_endpoint: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"(hidden)")
            .field("proxy_endpoint", &self.proxy_endpoint)
            .finish()
    }
}

/// Gets registry credentials: GetAuthorizationToken's token is base64 of `user:password`.
pub async fn authorization(client: &aws_sdk_ecr::Client) -> Result<RegistryAuth, AwsError> {
    const OP: &str = "GetAuthorizationToken";
    let answer = client
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(SERVICE, OP, e))?;
    let data = answer
        .authorization_data()
        .first()
        .ok_or_else(|| AwsError::missing(SERVICE, OP, "authorizationData"))?;
    let token = data
        .authorization_token()
        .ok_or_else(|| AwsError::missing(SERVICE, OP, "authorizationToken"))?;
    let (username, password) = decode_token(token).ok_or_else(|| AwsError::Other {
        service: SERVICE,
        operation: OP,
        problem: "the authorization token is not base64 of `user:password`".into(),
    })?;
    Ok(RegistryAuth {
        username,
        password,
        proxy_endpoint: data.proxy_endpoint().unwrap_or_default().to_string(),
    })
}

fn decode_token(token: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
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
    fn token_is_user_and_password() {
        let t = base64::engine::general_purpose::STANDARD.encode("AWS:secret:with:colons");
        assert_eq!(
            decode_token(&t),
            Some(("AWS".to_string(), "secret:with:colons".to_string()))
        );
        assert_eq!(decode_token("not base64!"), None);
    }
}
