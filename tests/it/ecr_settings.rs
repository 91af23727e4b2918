//! ECR settings converge (moto): a repository whose scan on push, tag immutability or
//! lifecycle policy drifted (set by hand, or a create interrupted before its
//! PutLifecyclePolicy) shows as a change in `plan`, and the next `deploy` puts it right; a
//! changed `keep_images` reaches the policy of an existing repository.

use shoal::aws;

use crate::support::{assert_ok, text, Sandbox};

fn consumer(sb: &Sandbox) -> String {
    let name = format!("ecr-{}", &sb.project[3..sb.project.len().min(11)]);
    sb.payload_consumer(&name, "kind = \"worker\"\n", "ecr settings");
    name
}

/// The repository's settings read back from moto: scan on push, IMMUTABLE, and the
/// lifecycle policy's count (None when there is no policy).
async fn settings(ecr: &aws_sdk_ecr::Client, repo: &str) -> (bool, bool, Option<u64>) {
    let described = ecr
        .describe_repositories()
        .repository_names(repo)
        .send()
        .await
        .expect("DescribeRepositories");
    let r = &described.repositories()[0];
    let policy = match ecr
        .get_lifecycle_policy()
        .repository_name(repo)
        .send()
        .await
    {
        Ok(p) => {
            let v: serde_json::Value =
                serde_json::from_str(p.lifecycle_policy_text().unwrap_or_default())
                    .expect("policy JSON");
            v["rules"][0]["selection"]["countNumber"].as_u64()
        }
        Err(_) => None,
    };
    (
        r.image_scanning_configuration()
            .is_some_and(|c| c.scan_on_push()),
        r.image_tag_mutability() == Some(&aws_sdk_ecr::types::ImageTagMutability::Immutable),
        policy,
    )
}

/// The ECR fields `plan -o json` changes for `repo`.
fn planned_changes(sb: &Sandbox, repo: &str) -> Vec<String> {
    let out = sb.shoal(&["plan", "--env", "sandbox", "-o", "json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let mut fields: Vec<String> = v["change"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["kind"] == "ecr-repository" && i["name"] == repo)
        .flat_map(|i| i["fields"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f["path"].as_str().map(str::to_string))
        .collect();
    fields.sort();
    fields
}

#[tokio::test(flavor = "multi_thread")]
async fn drifted_repository_settings_show_in_the_plan_and_a_deploy_puts_them_right() {
    let sb = Sandbox::new();
    let name = consumer(&sb);
    let repo = format!("{}/{name}", sb.project);
    assert_ok(&sb.shoal(&["deploy", "--env", "sandbox", "--timeout", "30s"]));
    let ecr = aws::ecr(&sb.aws_config(&sb.env()).await);
    assert_eq!(settings(&ecr, &repo).await, (true, true, Some(7)));
    assert_eq!(planned_changes(&sb, &repo), Vec::<String>::new());

    // Each setting wrong: scan on push off, MUTABLE tags, and no lifecycle policy, as after a
    // CreateRepository whose PutLifecyclePolicy never came (an interrupted deploy). Made by
    // re-creating the repository, because the SDK cannot turn scan on push off in place on moto: it
    // leaves a false `scanOnPush` out of PutImageScanningConfiguration's body, which ECR reads
    // as false and moto ignores.
    ecr.delete_repository()
        .repository_name(&repo)
        .force(true)
        .send()
        .await
        .expect("DeleteRepository");
    ecr.create_repository()
        .repository_name(&repo)
        .image_tag_mutability(aws_sdk_ecr::types::ImageTagMutability::Mutable)
        .send()
        .await
        .expect("CreateRepository");
    assert_eq!(settings(&ecr, &repo).await, (false, false, None));
    assert_eq!(settings(&ecr, &repo).await, (false, false, None));

    assert_eq!(
        planned_changes(&sb, &repo),
        vec![
            "imageScanningConfiguration.scanOnPush",
            "imageTagMutability",
            "lifecyclePolicy",
            "lifecyclePolicy.keepImages",
        ]
    );
    let out = sb.shoal(&["plan", "--env", "sandbox"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("~ ecr-repository {repo}")),
        "{shown}"
    );

    let out = sb.shoal(&["deploy", "--env", "sandbox", "--timeout", "30s"]);
    assert_ok(&out);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!(
            "put right: {repo} (scan on push, tag immutability, lifecycle policy)"
        )),
        "{shown}"
    );
    assert_eq!(settings(&ecr, &repo).await, (true, true, Some(7)));
    assert_eq!(planned_changes(&sb, &repo), Vec::<String>::new());

    // A changed keep_images reaches the existing repository.
    let toml = std::fs::read_to_string(sb.root().join("shoal.toml")).expect("read");
    std::fs::write(
        sb.root().join("shoal.toml"),
        toml.replace("keep_images = 7", "keep_images = 9"),
    )
    .expect("write");
    assert_eq!(
        planned_changes(&sb, &repo),
        vec!["lifecyclePolicy.keepImages"]
    );
    assert_ok(&sb.shoal(&["deploy", "--env", "sandbox", "--timeout", "30s"]));
    assert_eq!(settings(&ecr, &repo).await, (true, true, Some(9)));
}
