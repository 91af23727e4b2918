//! The plan for people (a coloured diff, Terraform-style) and for machines (JSON).

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use super::{FieldDiff, Item, Plan};

const ADD: Style = AnsiColor::Green.on_default();
const CHANGE: Style = AnsiColor::Yellow.on_default();
const REMOVE: Style = AnsiColor::Red.on_default();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

/// The items of one consumer (or of shared resources), each with its sign.
type Group<'a> = (Option<&'a str>, Vec<(char, &'a Item)>);

/// The plan as styled text. Write it through `anstream`, which drops the styles when the
/// output is not a terminal or `NO_COLOR` is set.
pub fn print_text(plan: &Plan, heading: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{BOLD}{heading}{BOLD:#}");
    if plan.is_empty() && plan.unmanaged.is_empty() {
        let _ = writeln!(
            out,
            "\nNo changes. {} resources are up to date.",
            plan.unchanged
        );
        return out;
    }
    let mut groups: Vec<Group<'_>> = Vec::new();
    let all = plan
        .create
        .iter()
        .map(|i| ('+', i))
        .chain(plan.change.iter().map(|i| ('~', i)))
        .chain(plan.delete.iter().map(|i| ('-', i)))
        .chain(plan.unmanaged.iter().map(|i| ('?', i)));
    for (sign, item) in all {
        let consumer = item.consumer.as_deref();
        match groups.iter_mut().find(|(c, _)| *c == consumer) {
            Some((_, items)) => items.push((sign, item)),
            None => groups.push((consumer, vec![(sign, item)])),
        }
    }
    groups.sort_by_key(|(c, _)| *c);
    for (consumer, mut items) in groups {
        items.sort_by_key(|(_, i)| (i.kind, i.name.clone()));
        let _ = match consumer {
            Some(c) => writeln!(out, "\n{BOLD}consumer {c}{BOLD:#}"),
            None => writeln!(out, "\n{BOLD}shared{BOLD:#}"),
        };
        for (sign, item) in items {
            let (style, verb) = match sign {
                '+' => (ADD, "create"),
                '~' => (CHANGE, "change"),
                '-' => (REMOVE, "delete (with --prune)"),
                _ => (DIM, "unmanaged: not declared, left alone"),
            };
            let _ = writeln!(
                out,
                "  {style}{sign} {} {}{style:#}  {DIM}{verb}{DIM:#}",
                item.kind.as_str(),
                item.name
            );
            for f in &item.fields {
                field(&mut out, f);
            }
        }
    }
    let _ = writeln!(
        out,
        "\nPlan: {ADD}{} to create{ADD:#}, {CHANGE}{} to change{CHANGE:#}, {REMOVE}{} to delete{REMOVE:#}, {} unchanged.",
        plan.create.len(),
        plan.change.len(),
        plan.delete.len(),
        plan.unchanged
    );
    out
}

fn field(out: &mut String, f: &FieldDiff) {
    let _ = match (&f.before, &f.after) {
        (None, Some(a)) => writeln!(out, "      {ADD}+ {} = {}{ADD:#}", f.path, show(a)),
        (Some(b), None) => writeln!(out, "      {REMOVE}- {} = {}{REMOVE:#}", f.path, show(b)),
        (Some(b), Some(a)) => writeln!(
            out,
            "      {CHANGE}~ {}: {} → {}{CHANGE:#}",
            f.path,
            show(b),
            show(a)
        ),
        (None, None) => Ok(()),
    };
}

fn show(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The plan as JSON: `{environment, project, create, change, delete, unmanaged, unchanged}`.
pub fn to_json(plan: &Plan, project: &str, environment: &str) -> Value {
    let mut v = serde_json::to_value(plan).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("project".into(), Value::from(project));
        map.insert("environment".into(), Value::from(environment));
        map.insert(
            "summary".into(),
            serde_json::json!({
                "create": plan.create.len(),
                "change": plan.change.len(),
                "delete": plan.delete.len(),
                "unchanged": plan.unchanged,
            }),
        );
    }
    crate::render::canonical(&v)
}
