//! The resolved settings a platform's commands work on.

use std::collections::BTreeMap;

use super::Inputs;
use crate::discover::context::ContextHash;
use crate::discover::Fleet;
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
}

impl Ctx<'_> {
    /// The plan's inputs, with the workloads' brokers looked up (MSK: two AWS calls).
    pub async fn inputs(&self) -> Result<Inputs<'_>, super::DeployError> {
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
}
