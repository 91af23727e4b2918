//! ECR as the image pipeline uses it: which content-hash tags a repository already holds (one
//! BatchGetImage per repository, asking for exactly the tags wanted), and the registry
//! credentials (GetAuthorizationToken). It sits below the platforms because `image` pushes
//! with it. The repositories themselves, and their settings, are the ECS platform's
//! resources (`platform/ecs/repositories.rs`).
//!
//! Checked against moto 5.2 (the local stack, `tests/it/image.rs`, `tests/it/ecr_settings.rs`):
//! DescribeRepositories, CreateRepository (scan on push, tag mutability),
//! PutImageScanningConfiguration, PutImageTagMutability, PutLifecyclePolicy / GetLifecyclePolicy,
//! BatchGetImage with `imageIds` (missing tags under `failures`), DescribeImages and
//! GetAuthorizationToken all work. moto's token is always `AWS:<account>-auth-token` for its
//! default account, whatever the access key.

use std::collections::BTreeSet;

use aws_sdk_ecr::types::ImageIdentifier;
use base64::Engine as _;

use super::AwsError;

const SERVICE: &str = "ECR";

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
    fn token_is_user_and_password() {
        let t = base64::engine::general_purpose::STANDARD.encode("AWS:secret:with:colons");
        assert_eq!(
            decode_token(&t),
            Some(("AWS".to_string(), "secret:with:colons".to_string()))
        );
        assert_eq!(decode_token("not base64!"), None);
    }
}
