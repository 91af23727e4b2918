//! What the platform commands print: text for people, JSON for programs, the same shapes on
//! every platform, and the GitHub job summary when `GITHUB_STEP_SUMMARY` is set. Every
//! credential is redacted on the way out (`manifest::credential`): plans by the name of
//! each field, JSON documents by their `{name, value}` pairs, and free text by its URLs.

use serde_json::{json, Value};

use crate::cli::Output;
use crate::deploy::{Ctx, Deployed, StatusRow};
use crate::manifest::credential::{redact_json, redact_text};
use crate::plan::{self, Plan};
use crate::platform::ecs::{Dashboard, RolledBack};
use crate::platform::logs::LogLine;
use crate::report;
use crate::scale::command::LagRow;
use crate::scale::daemon::Outcome;

/// A plan's heading: what, where (`place`), and which workloads this platform leaves out.
fn heading(c: &Ctx<'_>, verb: &str, place: &str) -> String {
    let mut heading = format!(
        "{verb} for project {} in environment {} ({place})",
        c.project, c.env.name
    );
    if !c.fleet.elsewhere.is_empty() {
        heading.push_str(&format!(
            "; left out on {} by their `platforms`: {}",
            c.env.platform.as_str(),
            c.fleet.elsewhere.join(", ")
        ));
    }
    heading
}

/// A plan as JSON: the plan's own form, with the platform it was read from.
fn plan_json(c: &Ctx<'_>, the_plan: &Plan) -> Value {
    let mut v = plan::to_json(the_plan, c.project, &c.env.name);
    if let Value::Object(m) = &mut v {
        m.insert("platform".into(), Value::from(c.env.platform.as_str()));
        m.insert("live_state".into(), Value::from("read"));
    }
    v
}

fn pretty(v: &Value) {
    let mut v = v.clone();
    redact_json(&mut v);
    report::outln(&serde_json::to_string_pretty(&v).unwrap_or_default());
}

/// `shoal plan`.
pub fn plan(out: Output, c: &Ctx<'_>, place: &str, the_plan: &Plan) {
    let the_plan = &the_plan.redacted();
    match out {
        Output::Json => pretty(&plan_json(c, the_plan)),
        Output::Text => report::out(&plan::print_text(the_plan, &heading(c, "Plan", place))),
    }
}

/// The plan a deploy is about to apply; as JSON it is part of the deploy's one document.
pub fn plan_before_deploy(out: Output, c: &Ctx<'_>, place: &str, the_plan: &Plan) {
    let the_plan = &the_plan.redacted();
    if out == Output::Text {
        report::out(&plan::print_text(the_plan, &heading(c, "Deploy", place)));
    }
}

/// The end of a deploy: the GitHub job summary, then the steps (text) or the plan and
/// summary (JSON).
pub fn deployed(out: Output, c: &Ctx<'_>, d: &Deployed) {
    let shown_plan = d.plan.redacted();
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        let markdown = d.summary.markdown(c.project, &c.env.name, &shown_plan);
        append(&path, &redact_text(&markdown));
    }
    match out {
        Output::Json => pretty(&json!({
            "project": c.project,
            "environment": c.env.name,
            "platform": c.env.platform.as_str(),
            "plan": plan::to_json(&shown_plan, c.project, &c.env.name),
            "summary": d.summary,
            "ok": d.failure.is_none(),
        })),
        Output::Text => report::outln(&format!(
            "\nDeploy steps:\n{}",
            redact_text(&d.summary.text())
        )),
    }
}

fn append(path: &std::ffi::OsStr, text: &str) {
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

/// `shoal status`: a row per workload, as a table or as `services` in JSON.
pub fn status(out: Output, c: &Ctx<'_>, place: &str, rows: &[StatusRow]) {
    if out == Output::Json {
        pretty(&json!({
            "project": c.project,
            "environment": c.env.name,
            "platform": c.env.platform.as_str(),
            "services": rows,
        }));
        return;
    }
    if rows.is_empty() {
        report::outln(&format!(
            "Nothing of project {} runs in environment {} ({place}); run `shoal deploy --env {}`.",
            c.project, c.env.name, c.env.name
        ));
        return;
    }
    let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.consumer.clone(),
                match r.pending {
                    Some(p) => format!("{}/{}/{p}", r.desired, r.running),
                    None => format!("{}/{}/-", r.desired, r.running),
                },
                r.revision.clone(),
                r.image_tag.clone(),
                r.rollout.clone(),
                dash(
                    r.ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                dash(r.last_event.clone().unwrap_or_default()),
                alarms_cell(&r.alarms),
            ]
        })
        .collect();
    report::out(&redact_text(&report::table(
        &[
            "CONSUMER",
            "DESIRED/RUN/PEND",
            "REVISION",
            "IMAGE TAG",
            "ROLLOUT",
            "PORTS",
            "LAST EVENT",
            "ALARMS",
        ],
        &cells,
    )));
    for r in rows {
        for a in r.alarms.iter().filter(|a| a.state != "OK") {
            report::outln(&redact_text(&format!(
                "{} {}: {} ({})",
                r.consumer, a.alarm, a.state, a.reason
            )));
        }
    }
}

/// A consumer's alarms in one cell: `ok (4)` when every one is OK, else the others' states.
fn alarms_cell(alarms: &[crate::deploy::AlarmStatus]) -> String {
    if alarms.is_empty() {
        return "-".to_string();
    }
    let other: Vec<String> = alarms
        .iter()
        .filter(|a| a.state != "OK")
        .map(|a| format!("{} {}", a.alarm, a.state))
        .collect();
    if other.is_empty() {
        format!("ok ({})", alarms.len())
    } else {
        other.join(", ")
    }
}

/// `shoal down`.
pub fn down(out: Output, c: &Ctx<'_>, removed: &[String]) {
    match out {
        Output::Json => report::outln(
            &json!({"project": c.project, "environment": c.env.name, "removed": removed})
                .to_string(),
        ),
        Output::Text => report::outln(&format!(
            "removed {} container(s) of project {} in environment {}",
            removed.len(),
            c.project,
            c.env.name
        )),
    }
}

/// `shoal rollback`.
pub fn rolled_back(out: Output, done: &RolledBack) {
    match out {
        Output::Json => report::outln(&json!(done).to_string()),
        Output::Text => report::outln(&format!(
            "{}: rolled back from {} to {}",
            done.consumer, done.from, done.to
        )),
    }
}

/// `shoal dashboard`.
pub fn dashboard(out: Output, put: &Dashboard) {
    match out {
        Output::Json => report::outln(&json!(put).to_string()),
        Output::Text => report::outln(&format!(
            "dashboard {}: {} graphs",
            put.dashboard, put.widgets
        )),
    }
}

/// One autoscaler tick: a line per consumer, or the outcomes as one JSON line.
pub fn outcomes(output: Output, outcomes: &[Outcome]) {
    if output == Output::Json {
        report::outln(&serde_json::to_string(outcomes).unwrap_or_default());
        return;
    }
    for o in outcomes {
        let note = o
            .error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        report::outln(&format!(
            "{}: desired {}{} — {}{note}",
            o.consumer,
            o.decision.desired,
            if o.acted { " (set)" } else { "" },
            o.decision.reason
        ));
    }
}

/// `shoal lag`: the rows as a table or JSON.
pub fn lag(output: Output, rows: &[LagRow]) {
    if output == Output::Json {
        pretty(&json!(rows));
        return;
    }
    let dash = || "-".to_string();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.consumer.clone(),
                r.topic.clone(),
                r.partition.to_string(),
                r.lag.map_or_else(dash, |l| l.to_string()),
                r.lag_seconds.map_or_else(dash, |s| format!("{s:.1}")),
                format!("{:.1}", r.arrival_rate),
                format!("{:.1}", r.consume_rate),
                r.end_offset.to_string(),
                r.members
                    .map_or_else(dash, |m| format!("{} ({})", m.count, m.source.name())),
            ]
        })
        .collect();
    let out = report::table(
        &[
            "CONSUMER", "TOPIC", "PART", "LAG", "LAG S", "IN/S", "OUT/S", "END", "MEMBERS",
        ],
        &cells,
    );
    report::out(&out);
}

/// `shoal logs`: prints lines as they come, each after its replica; in a terminal each
/// replica keeps one colour (anstream drops the colours elsewhere). As JSON, one object per
/// line.
pub struct LogPrinter {
    out: Output,
    colours: std::collections::HashMap<String, anstyle::Style>,
    width: usize,
}

/// The replicas' colours, in the order replicas first appear.
const REPLICA_COLOURS: [anstyle::AnsiColor; 6] = [
    anstyle::AnsiColor::Cyan,
    anstyle::AnsiColor::Yellow,
    anstyle::AnsiColor::Green,
    anstyle::AnsiColor::Magenta,
    anstyle::AnsiColor::Blue,
    anstyle::AnsiColor::Red,
];

impl LogPrinter {
    pub fn new(out: Output) -> LogPrinter {
        LogPrinter {
            out,
            colours: std::collections::HashMap::new(),
            width: 0,
        }
    }

    pub fn print(&mut self, consumer: &str, lines: &[LogLine]) {
        let mut text = String::new();
        for line in lines {
            if self.out == Output::Json {
                let v = json!({
                    "timestamp": line.time(),
                    "consumer": consumer,
                    "replica": line.replica,
                    "message": line.message,
                });
                text.push_str(&v.to_string());
                text.push('\n');
                continue;
            }
            let next = self.colours.len() % REPLICA_COLOURS.len();
            let style = *self
                .colours
                .entry(line.replica.clone())
                .or_insert_with(|| REPLICA_COLOURS[next].on_default());
            self.width = self.width.max(line.replica.chars().count());
            let dim = anstyle::Style::new().dimmed();
            text.push_str(&format!(
                "{dim}{}{dim:#} {style}{:<w$} |{style:#} {}\n",
                line.time(),
                line.replica,
                line.message,
                w = self.width
            ));
        }
        if !text.is_empty() {
            report::out(&text);
        }
    }
}
