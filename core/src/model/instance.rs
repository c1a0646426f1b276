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

/// Where an instance answers HTTP: an address on loopback or a platform
/// network, and, for a container reached without a published port, the
/// network namespace that address is in (a path such as
/// `/var/run/docker/netns/<id>`). Two instances may share an address in two
/// namespaces, so an endpoint is the pair.
///
/// It serializes as the bare address when there is no namespace, as it
/// always did, and as `{"addr", "netns"}` otherwise; both read back.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    addr: SocketAddr,
    netns: Option<std::sync::Arc<str>>,
    /// Set when `addr` is another node's gateway, which serves the function
    /// (multi-node): the edge forwards there with a hop header.
    node: Option<std::sync::Arc<str>>,
}

impl Endpoint {
    /// An address in the platform's own network namespace.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, netns: None, node: None }
    }
    /// An address inside the network namespace at `netns`.
    pub fn in_namespace(addr: SocketAddr, netns: impl Into<std::sync::Arc<str>>) -> Self {
        Self { addr, netns: Some(netns.into()), node: None }
    }
    /// The gateway of node `node` at `addr`, which runs the function: a
    /// request sent there is forwarded once more at most.
    pub fn node_gateway(addr: SocketAddr, node: impl Into<std::sync::Arc<str>>) -> Self {
        Self { addr, netns: None, node: Some(node.into()) }
    }
    /// The node whose gateway this is, when it is one (not an instance).
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }
    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The network namespace the address is in, when it is not the platform's own.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.netns, &self.node) {
            (_, Some(node)) => write!(f, "{} (node {node})", self.addr),
            (None, None) => self.addr.fmt(f),
            (Some(ns), None) => write!(f, "{} in {ns}", self.addr),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum EndpointRepr {
    Plain(SocketAddr),
    InNamespace { addr: SocketAddr, netns: String },
    Node { addr: SocketAddr, node: String },
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (&self.netns, &self.node) {
            (_, Some(node)) => EndpointRepr::Node { addr: self.addr, node: node.to_string() }.serialize(s),
            (None, None) => self.addr.serialize(s),
            (Some(ns), None) => EndpointRepr::InNamespace { addr: self.addr, netns: ns.to_string() }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match EndpointRepr::deserialize(d)? {
            EndpointRepr::Plain(addr) => Self::new(addr),
            EndpointRepr::InNamespace { addr, netns } => Self::in_namespace(addr, netns),
            EndpointRepr::Node { addr, node } => Self::node_gateway(addr, node),
        })
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
