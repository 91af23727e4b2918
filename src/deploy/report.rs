//! The end of a command on either platform: what it prints, as text or JSON, and the GitHub
//! job summary.

use serde_json::{json, Value};

use super::{Ctx, DeployError, Summary};
use crate::cli::Output;
use crate::error::{exit, Error, Result};
use crate::plan;
use crate::report;

impl From<DeployError> for Error {
    fn from(e: DeployError) -> Error {
        match e {
            DeployError::Rollouts(_) => Error::Rollout(e.to_string()),
            DeployError::Render(r) => Error::Render(r),
            other => Error::Failed(other.to_string()),
        }
    }
}

/// The end of a deploy on either platform: the GitHub job summary when
/// `GITHUB_STEP_SUMMARY` is set, the steps (text) or plan and summary (JSON, the same shape
/// on every platform), and the exit code.
pub fn report_deploy(
    ctx: &Ctx<'_>,
    the_plan: &plan::Plan,
    summary: &Summary,
    failure: Option<DeployError>,
) -> Result<i32> {
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        let md = summary.markdown(ctx.project, &ctx.env.name, the_plan);
        append(&path, &md);
    }
    if ctx.output == Output::Json {
        let v = json!({
            "project": ctx.project,
            "environment": ctx.env.name,
            "platform": ctx.env.platform.as_str(),
            "plan": plan::to_json(the_plan, ctx.project, &ctx.env.name),
            "summary": summary,
            "ok": failure.is_none(),
        });
        report::outln(&serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        report::outln(&format!("\nDeploy steps:\n{}", summary.text()));
    }
    match failure {
        None => Ok(exit::OK),
        Some(e) => Err(Error::from(e)),
    }
}

pub fn append(path: &std::ffi::OsStr, text: &str) {
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(path = %std::path::Path::new(path).display(), error = %e, "cannot write the GitHub job summary");
    }
}

/// Prints `shoal status` on either platform: `header` with the rows as `services` for JSON,
/// the `empty` line when there are none, else a table of `cells` under `headers`.
pub fn print_status<R: serde::Serialize>(
    output: Output,
    mut header: Value,
    rows: &[R],
    empty: &str,
    headers: &[&str],
    cells: impl Fn(&R) -> Vec<String>,
) {
    if output == Output::Json {
        header["services"] = json!(rows);
        report::outln(&serde_json::to_string_pretty(&header).unwrap_or_default());
    } else if rows.is_empty() {
        report::outln(empty);
    } else {
        let cells: Vec<Vec<String>> = rows.iter().map(cells).collect();
        report::out(&report::table(headers, &cells));
    }
}
