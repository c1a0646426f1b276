use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::names::FunctionName;

/// A runtime's id for one instance (a container id, a process id): opaque to the controller.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(String);

impl InstanceId {
    /// Wraps a runtime's id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an instance answers HTTP, always on a loopback or platform-network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Endpoint(SocketAddr);

impl Endpoint {
    /// Wraps an address.
    pub fn new(addr: SocketAddr) -> Self {
        Self(addr)
    }
    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.0
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an instance is doing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum InstanceState {
    /// Created but not (yet) answering.
    Created,
    /// Answering requests.
    Running,
    /// Frozen (SIGSTOP, cgroup freezer); resumes in milliseconds.
    Paused,
    /// Gone; kept only so that the controller can see why.
    Exited,
}

/// One running (or paused) copy of a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The runtime's id.
    pub id: InstanceId,
    /// The function it runs.
    pub function: FunctionName,
    /// The generation of the spec it was started from.
    pub generation: u64,
    /// Where it answers.
    pub endpoint: Endpoint,
    /// What it is doing.
    pub state: InstanceState,
}
