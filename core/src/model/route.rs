use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::instance::Endpoint;
use super::names::FunctionName;

/// How the edge reaches one function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The function, served at `<name>.<domain>`.
    pub name: FunctionName,
    /// The generation whose instances these are.
    pub generation: u64,
    /// Ready instances; empty means "no instance ready" (the activator's case).
    pub endpoints: Vec<Endpoint>,
    /// Per-request timeout, in milliseconds.
    pub timeout_ms: u64,
}

impl Route {
    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Everything the edge serves. A [`crate::Router`] makes the edge serve exactly this.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    routes: BTreeMap<FunctionName, Route>,
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds or replaces a route.
    pub fn upsert(&mut self, route: Route) {
        self.routes.insert(route.name.clone(), route);
    }
    /// Removes a function's route.
    pub fn remove(&mut self, name: &FunctionName) -> Option<Route> {
        self.routes.remove(name)
    }
    /// One function's route.
    pub fn get(&self, name: &FunctionName) -> Option<&Route> {
        self.routes.get(name)
    }
    /// Every route, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }
    /// How many functions are routed.
    pub fn len(&self) -> usize {
        self.routes.len()
    }
    /// Whether nothing is routed.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}
