//! `shoal topics plan|apply|delete`: the topic plan against the live broker, printed as a
//! diff or JSON, then applied.

use serde_json::json;
use tracing::info;

use crate::cli::{Output, TopicsCommand};
use crate::discover::Fleet;
use crate::error::{exit, Error, Result};
use crate::kafka::admin::Admin;
use crate::kafka::topics::{apply, plan_live};
use crate::kafka::KafkaError;
use crate::manifest::Environment;
use crate::plan;
use crate::report;

/// `shoal topics plan|apply|delete`. `fleet` is `None` only for `delete`.
pub async fn command(
    cmd: &TopicsCommand,
    project: &str,
    env: &Environment,
    fleet: Option<&Fleet>,
    output: Output,
) -> Result<i32> {
    let admin = Admin::with(crate::deploy::Session::new(env).kafka().await?)?;
    let heading = |verb: &str| {
        format!(
            "{verb} for the topics of project {project} in environment {} (brokers {})",
            env.name, admin.bootstrap
        )
    };
    match (cmd, fleet) {
        (TopicsCommand::Delete { name, yes }, _) => {
            if !yes {
                return Err(KafkaError::NeedsYes { name: name.clone() }.into());
            }
            let live = admin.live_topics().await?;
            if !live.contains_key(name) {
                return Err(KafkaError::NoSuchTopic {
                    name: name.clone(),
                    bootstrap: admin.bootstrap.clone(),
                }
                .into());
            }
            info!(topic = %name, "deleting");
            admin.delete_topic(name).await?;
            // A broker that deletes more than it was asked to (tansu 0.6 deletes every
            // topic on any DeleteTopics) must not go unnoticed.
            let after = admin.live_topics().await?;
            let gone: Vec<&str> = live
                .keys()
                .filter(|t| *t != name && !after.contains_key(*t))
                .map(String::as_str)
                .collect();
            if !gone.is_empty() {
                return Err(Error::Failed(format!(
                    "deleted topic {name}, but {} other topics are gone too: {}; the broker deleted more than the one topic it was asked to",
                    gone.len(),
                    gone.join(", ")
                )));
            }
            if output == Output::Json {
                report::outln(
                    &serde_json::to_string_pretty(&json!({"deleted": name})).unwrap_or_default(),
                );
            } else {
                report::outln(&format!("deleted topic {name}"));
            }
            Ok(exit::OK)
        }
        (TopicsCommand::Plan, Some(fleet)) => {
            let tp = plan_live(&admin, fleet).await?;
            if output == Output::Json {
                // One JSON document on stdout: the plan, or the error.
                tp.check()?;
                let v = plan::to_json(&tp.plan, project, &env.name);
                report::outln(&serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                report::out(&plan::print_text(&tp.plan, &heading("Topic plan")));
                tp.check()?;
            }
            Ok(exit::OK)
        }
        (TopicsCommand::Apply, Some(fleet)) => {
            let tp = plan_live(&admin, fleet).await?;
            if output == Output::Text {
                report::out(&plan::print_text(&tp.plan, &heading("Topic plan")));
            }
            tp.check()?;
            let done = apply(&admin, &tp.steps).await?;
            if output == Output::Json {
                let v = json!({
                    "plan": plan::to_json(&tp.plan, project, &env.name),
                    "applied": done,
                });
                report::outln(&serde_json::to_string_pretty(&v).unwrap_or_default());
            } else if done.is_empty() {
                // print_text already says so when there is nothing else to show.
                if !tp.plan.unmanaged.is_empty() {
                    report::outln(&format!(
                        "\nNo changes. {} topics are up to date.",
                        tp.plan.unchanged
                    ));
                }
            } else {
                report::outln("\nApplied:");
                for d in &done {
                    report::outln(&format!("  {d}"));
                }
            }
            Ok(exit::OK)
        }
        (_, None) => Err(Error::Failed("topics plan and apply need the fleet".into())),
    }
}
