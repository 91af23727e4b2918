//! What a deploy did, step by step: printed at the end, written as JSON, and appended to the
//! GitHub job summary when `GITHUB_STEP_SUMMARY` is set.

use std::fmt::Write as _;

use serde::Serialize;

use crate::image::Outcome;
use crate::plan::Plan;

/// One step of a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    pub seconds: f64,
}

impl Step {
    pub fn ok(name: &'static str, detail: String, seconds: f64) -> Step {
        Step {
            name,
            ok: true,
            detail,
            seconds,
        }
    }

    pub fn failed(name: &'static str, detail: String, seconds: f64) -> Step {
        Step {
            name,
            ok: false,
            detail,
            seconds,
        }
    }
}

/// The record of one deploy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub steps: Vec<Step>,
    /// Each consumer's image outcome.
    pub images: Vec<(String, Outcome)>,
    /// Services whose rollout was waited for.
    pub services: Vec<String>,
    /// AWS API calls made, reads included.
    pub aws_calls: u64,
}

impl Summary {
    /// Records what the images step did to each consumer's image.
    pub fn record_images(&mut self, report: &crate::image::Report) {
        self.images = report
            .outcomes()
            .map(|(c, o)| (c.to_string(), o.clone()))
            .collect();
    }

    /// Steps as aligned text lines, then the number of AWS calls.
    pub fn text(&self) -> String {
        let width = self.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for s in &self.steps {
            let mark = if s.ok { "ok" } else { "FAILED" };
            let detail = s.detail.lines().next().unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<width$}  {mark:<6}  {:>6.1}s  {detail}",
                s.name, s.seconds
            );
        }
        // The docker platform makes none: no line rather than "0 AWS API calls".
        if self.aws_calls > 0 {
            let _ = writeln!(out, "  {} AWS API calls", self.aws_calls);
        }
        out
    }

    /// The GitHub job summary: the plan's counts, a table of what changed and each step's time.
    pub fn markdown(&self, project: &str, env: &str, plan: &Plan) -> String {
        let mut md = String::new();
        let failed = self.steps.iter().any(|s| !s.ok);
        let _ = writeln!(
            md,
            "## shoal deploy: {project} → {env} {}\n",
            if failed { "failed" } else { "succeeded" }
        );
        let _ = writeln!(
            md,
            "{} to create, {} to change, {} to delete, {} unchanged.\n",
            plan.create.len(),
            plan.change.len(),
            plan.delete.len(),
            plan.unchanged
        );
        if !plan.is_empty() {
            let _ = writeln!(md, "| action | kind | name |\n| --- | --- | --- |");
            for (action, items) in [
                ("create", &plan.create),
                ("change", &plan.change),
                ("delete", &plan.delete),
            ] {
                for i in items {
                    let _ = writeln!(md, "| {action} | {} | `{}` |", i.kind.as_str(), i.name);
                }
            }
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "| step | result | seconds | detail |\n| --- | --- | ---: | --- |"
        );
        for s in &self.steps {
            let detail = s.detail.replace('\n', "<br>").replace('|', "\\|");
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {detail} |",
                s.name,
                if s.ok { "✅" } else { "❌" },
                s.seconds
            );
        }
        md
    }
}
