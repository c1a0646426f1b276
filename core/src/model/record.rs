use serde::{Deserialize, Serialize};

use super::instance::{Endpoint, Instance};
use super::names::NodeId;
use super::spec::FunctionSpec;

/// Where a function is in its life. Derived from what was last observed (see
/// [`FunctionStatus::derive_phase`]), never from what was hoped.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Phase {
    /// Accepted and recorded; no reconcile has looked at this generation yet.
    Pending,
    /// A new generation is being started; nothing of it serves yet (an older
    /// generation may still serve).
    Deploying,
    /// This generation served before and serves nothing now while instances
    /// start (from zero, or after every instance was lost).
    Starting,
    /// Every wanted instance runs and the edge routes to them (scaled to zero
    /// with nothing wanted counts as ready).
    Ready,
    /// Serving, but with fewer instances than wanted, or the last reconcile
    /// failed while instances still serve.
    Degraded,
    /// Nothing serves and the last reconcile failed; `message`, `attempts` and
    /// `next_retry_ms` say why and when it is tried again.
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
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Degraded => "degraded",
            Phase::Failed => "failed",
            Phase::Deleting => "deleting",
            Phase::Deleted => "deleted",
        }
    }
}

/// The instance count asked for last (by the autoscaler, an activation at the
/// edge, or a user), kept in the record so that a restart, or another node,
/// resumes with it. The planner clamps it to the spec's `min..=max`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredScale {
    /// Running instances wanted; `None` until anyone asked (then the spec's
    /// `max(min, 1)`).
    pub running: Option<u32>,
    /// Who asked, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub at_ms: u64,
}

/// What the workers last observed about a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionStatus {
    /// Where it is (derived from the fields below).
    pub phase: Phase,
    /// The generation this status is about (the observed generation).
    pub generation: u64,
    /// Its public URL.
    pub url: Option<String>,
    /// The reason of the last failure, or progress text.
    pub message: Option<String>,
    /// Whether the platform goes on trying by itself. True while a failed
    /// function exists: failures back off and never give up.
    #[serde(default)]
    pub will_retry: bool,
    /// Endpoints the edge routes to (confirmed by the router).
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The generation whose endpoints the edge confirmed last.
    #[serde(default)]
    pub routed_generation: u64,
    /// The function's instances as the runtime listed them last.
    #[serde(default)]
    pub instances: Vec<Instance>,
    /// The endpoints the runtime worker asked the edge to route.
    #[serde(default)]
    pub published: Vec<Endpoint>,
    /// Running instances wanted (the clamped desired scale) at the last reconcile.
    #[serde(default)]
    pub wanted: u32,
    /// Failed reconciles in a row (0 once one succeeds).
    #[serde(default)]
    pub attempts: u32,
    /// When the next try is due, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub next_retry_ms: Option<u64>,
    /// The last failure is not expected to go away by itself (an image that
    /// cannot be had, a full memory budget): it is tried again at the backoff
    /// cap, and `wait_ready` stops waiting.
    #[serde(default)]
    pub permanent: bool,
    /// When the runtime was last observed for this function, in milliseconds
    /// since the Unix epoch (0: never).
    #[serde(default)]
    pub observed_at_ms: u64,
    /// The node that runs it and reported this status (multi-node); `None`
    /// on a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeId>,
}

impl FunctionStatus {
    /// A status with only a phase and generation.
    pub fn new(phase: Phase, generation: u64) -> Self {
        Self {
            phase,
            generation,
            url: None,
            message: None,
            will_retry: false,
            endpoints: Vec::new(),
            routed_generation: 0,
            instances: Vec::new(),
            published: Vec::new(),
            wanted: 0,
            attempts: 0,
            next_retry_ms: None,
            permanent: false,
            observed_at_ms: 0,
            node: None,
        }
    }

    /// The phase these observations add up to, for a record at `generation`
    /// (`deleted` when a delete was asked for).
    ///
    /// - nothing observed of this generation: `pending`;
    /// - a failure: `degraded` while the edge still routes somewhere, else `failed`;
    /// - every wanted instance of this generation runs and the edge routes
    ///   exactly the published ones: `ready`;
    /// - the edge routes something: `degraded` (fewer than wanted) or, while an
    ///   older generation still serves, `deploying`;
    /// - nothing routed: `starting` if this generation was routed before, else `deploying`.
    pub fn derive_phase(&self, generation: u64, deleted: bool) -> Phase {
        if deleted {
            return if self.phase == Phase::Deleted && self.generation == generation {
                Phase::Deleted
            } else {
                Phase::Deleting
            };
        }
        if self.generation != generation || self.observed_at_ms == 0 {
            return Phase::Pending;
        }
        let serving = !self.endpoints.is_empty();
        if self.attempts > 0 {
            return if serving { Phase::Degraded } else { Phase::Failed };
        }
        let running = self
            .instances
            .iter()
            .filter(|i| i.generation == generation && i.state == super::InstanceState::Running)
            .count();
        let wanted = usize::try_from(self.wanted).unwrap_or(usize::MAX);
        let mut routed = self.endpoints.clone();
        routed.sort();
        let mut published = self.published.clone();
        published.sort();
        let routed_now = self.routed_generation == generation && routed == published;
        if running >= wanted && published.len() >= wanted && routed_now {
            return Phase::Ready;
        }
        if serving {
            return if self.routed_generation == generation { Phase::Degraded } else { Phase::Deploying };
        }
        if self.routed_generation == generation { Phase::Starting } else { Phase::Deploying }
    }
}

/// The durable record of one function: what it is asked to be (spec,
/// generation, deleted, desired scale) and what was last observed (status).
///
/// `generation` goes up by one with every change the user asks for (deploy,
/// update, delete); workers ignore events about older generations.
/// `revision` is the Store's: it changes with every write of the record, and
/// every write compares and sets on it, so no writer overwrites another's
/// change unseen (a scale change never races a deploy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// What was asked for.
    pub spec: FunctionSpec,
    /// The generation of `spec` (or of the delete).
    pub generation: u64,
    /// Whether a delete was asked for.
    #[serde(default)]
    pub deleted: bool,
    /// The instance count asked for last.
    #[serde(default)]
    pub scale: DesiredScale,
    /// What the workers last observed.
    pub status: FunctionStatus,
    /// Which versions of the spec's secrets `generation` was started with
    /// (a digest of their Store revisions). When a secret changes, the digest
    /// no longer matches and the function rolls to a new generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_digest: Option<String>,
    /// The Store's revision of this record; set by the Store on every write.
    #[serde(default)]
    pub revision: u64,
}

impl FunctionRecord {
    /// A new record of `spec` at `generation`, nothing observed yet.
    pub fn new(spec: FunctionSpec, generation: u64) -> Self {
        Self {
            spec,
            generation,
            deleted: false,
            scale: DesiredScale::default(),
            status: FunctionStatus::new(Phase::Pending, generation),
            secrets_digest: None,
            revision: 0,
        }
    }

    /// Running instances wanted now: the desired scale (or the spec's
    /// `max(min, 1)` when nobody asked), clamped to `min..=max`.
    pub fn wanted(&self) -> u32 {
        let s = self.spec.scaling();
        self.scale.running.unwrap_or_else(|| s.initial_instances()).clamp(s.min(), s.max())
    }
}
