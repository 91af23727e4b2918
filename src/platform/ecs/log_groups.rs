//! CloudWatch Logs groups, the ECS platform's resource: each consumer's log group exists,
//! with the environment's retention.

use std::collections::BTreeMap;

use aws_sdk_cloudwatchlogs::Client;
use tracing::info;

use crate::aws::AwsError;

/// The log groups under `prefix` and their retention in days (`None`: kept forever).
pub async fn groups(
    client: &Client,
    prefix: &str,
) -> Result<BTreeMap<String, Option<i32>>, AwsError> {
    let mut out = BTreeMap::new();
    let mut pages = client
        .describe_log_groups()
        .log_group_name_prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| AwsError::from_sdk("CloudWatch Logs", "DescribeLogGroups", e))?;
        for g in page.log_groups() {
            if let Some(name) = g.log_group_name() {
                out.insert(name.to_string(), g.retention_in_days());
            }
        }
    }
    Ok(out)
}

/// Creates the group when missing and sets its retention when it differs.
pub async fn ensure(
    client: &Client,
    name: &str,
    retention_days: i32,
    live: Option<Option<i32>>,
) -> Result<(), AwsError> {
    if live.is_none() {
        info!(log_group = name, "creating log group");
        client
            .create_log_group()
            .log_group_name(name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("CloudWatch Logs", "CreateLogGroup", e))?;
    }
    if live.flatten() != Some(retention_days) {
        info!(log_group = name, retention_days, "setting log retention");
        client
            .put_retention_policy()
            .log_group_name(name)
            .retention_in_days(retention_days)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("CloudWatch Logs", "PutRetentionPolicy", e))?;
    }
    Ok(())
}
