use serde::{Deserialize, Serialize};

use super::instance::Endpoint;
use super::spec::FunctionSpec;

/// Where a function is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Phase {
    /// Accepted and recorded; no worker has picked it up yet.
    Pending,
    /// The runtime is preparing and starting instances.
    Deploying,
    /// Instances answer and the edge routes to them.
    Ready,
    /// The last attempt failed; `message` says why and `will_retry` whether it goes on.
    Failed,
    /// Being removed.
    Deleting,
    /// Removed: its instances stopped and its route gone. Only ever seen in events.
    Deleted,
}

impl Phase {
    /// The phase's name as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Deploying => "deploying",
            Phase::Ready => "ready",
            Phase::Failed => "failed",
            Phase::Deleting => "deleting",
            Phase::Deleted => "deleted",
        }
    }
}

/// What the workers last reported about a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionStatus {
    /// Where it is.
    pub phase: Phase,
    /// The generation this status is about.
    pub generation: u64,
    /// Its public URL.
    pub url: Option<String>,
    /// The reason of the last failure, or progress text.
    pub message: Option<String>,
    /// For `Failed`: whether the work is retried (`false` once it was dead-lettered).
    #[serde(default)]
    pub will_retry: bool,
    /// Endpoints the edge routes to.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

impl FunctionStatus {
    /// A status with only a phase and generation.
    pub fn new(phase: Phase, generation: u64) -> Self {
        Self { phase, generation, url: None, message: None, will_retry: false, endpoints: Vec::new() }
    }
}

/// The durable record of one function: its spec, its generation and its status.
///
/// `generation` goes up by one with every change the user asks for (deploy,
/// update, delete); the store compares and sets on it, and workers ignore events
/// about older generations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// What was asked for.
    pub spec: FunctionSpec,
    /// The generation of `spec` (or of the delete).
    pub generation: u64,
    /// Whether a delete was asked for.
    #[serde(default)]
    pub deleted: bool,
    /// What the workers last reported.
    pub status: FunctionStatus,
}
