//! The resolved settings a platform's commands work on.

use std::collections::BTreeMap;

use super::Inputs;
use crate::cli::Output;
use crate::discover::context::ContextHash;
use crate::discover::Fleet;
use crate::error::Result;
use crate::manifest::Environment;
use crate::render::Renderer;

/// What a platform's commands work on: the project, the environment, the fleet and its
/// content hashes, resolved once by `app`.
pub struct Ctx<'a> {
    pub root: &'a std::path::Path,
    pub project: &'a str,
    pub env: &'a Environment,
    pub fleet: &'a Fleet,
    pub hashes: &'a BTreeMap<String, ContextHash>,
    pub renderer: &'a Renderer,
    pub output: Output,
}

impl Ctx<'_> {
    /// The plan's inputs, with the workloads' brokers looked up (MSK: two AWS calls).
    pub async fn inputs(&self) -> Result<Inputs<'_>> {
        Ok(Inputs {
            root: self.root,
            project: self.project,
            env: self.env,
            fleet: self.fleet,
            renderer: self.renderer,
            hashes: self.hashes,
            bootstrap: super::workload_bootstrap(self.env).await?,
        })
    }

    /// A plan's heading: what, where (`place`), and which workloads this platform leaves out.
    pub fn heading_at(&self, verb: &str, place: &str) -> String {
        let mut heading = format!(
            "{verb} for project {} in environment {} ({place})",
            self.project, self.env.name
        );
        if !self.fleet.elsewhere.is_empty() {
            heading.push_str(&format!(
                "; left out on {} by their `platforms`: {}",
                self.env.platform.as_str(),
                self.fleet.elsewhere.join(", ")
            ));
        }
        heading
    }
}
