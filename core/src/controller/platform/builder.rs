//! Assembling a [`Platform`] from its ports.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::activator::WorkerSlot;
use super::{Inner, Platform, StoreActivator};
use crate::controller::autoscaler::AutoscalerConfig;
use crate::controller::cluster::Membership;
use crate::controller::error::PlatformError;
use crate::controller::groups;
use crate::controller::runtime_worker::RuntimeWorkerConfig;
use crate::controller::urls::PublicUrls;
use crate::model::{Domain, Region, ValidationError};
use crate::ports::{LoadSource, Queue, Router, Runtime, Store, StoreChanges};

/// Assembles a [`Platform`] from its ports.
///
/// The queue and the store are required. Without a runtime (or router) this
/// platform runs no runtime (or router) worker: that work is then done by
/// another process sharing the queue.
pub struct PlatformBuilder {
    queue: Option<Arc<dyn Queue>>,
    runtime: Option<Arc<dyn Runtime>>,
    router: Option<Arc<dyn Router>>,
    store: Option<Arc<dyn Store>>,
    domain: Domain,
    region: Region,
    scheme: &'static str,
    port: Option<u16>,
    status_group: String,
    worker: RuntimeWorkerConfig,
    autoscaler: Option<(Arc<dyn LoadSource>, AutoscalerConfig)>,
    worker_slot: Option<WorkerSlot>,
    membership: Option<Arc<Membership>>,
    fence_grace: Option<Duration>,
    store_changes: Option<Arc<dyn StoreChanges>>,
}

impl Default for PlatformBuilder {
    fn default() -> Self {
        Self {
            queue: None,
            runtime: None,
            router: None,
            store: None,
            domain: Domain::new("localhost").unwrap_or_else(|_| unreachable!("`localhost` is a valid domain")),
            region: Region::new("local").unwrap_or_else(|_| unreachable!("`local` is a valid region")),
            scheme: "http",
            port: None,
            status_group: groups::STATUS.to_owned(),
            worker: RuntimeWorkerConfig::default(),
            autoscaler: None,
            worker_slot: None,
            membership: None,
            fence_grace: None,
            store_changes: None,
        }
    }
}

impl PlatformBuilder {
    /// The work queue.
    pub fn queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }
    /// The runtime that runs instances (omit to run no runtime worker here).
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }
    /// The edge (omit to run no router worker here).
    pub fn router(mut self, router: Arc<dyn Router>) -> Self {
        self.router = Some(router);
        self
    }
    /// The durable record of functions.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }
    /// The domain functions are served under (default `localhost`).
    pub fn domain(mut self, domain: &str) -> Result<Self, ValidationError> {
        self.domain = Domain::new(domain)?;
        Ok(self)
    }
    /// The region this node serves (default `local`).
    pub fn region(mut self, region: &str) -> Result<Self, ValidationError> {
        self.region = Region::new(region)?;
        Ok(self)
    }
    /// How public URLs are written: scheme and edge port (default `http`, port 80).
    pub fn public_url(mut self, https: bool, port: Option<u16>) -> Self {
        self.scheme = if https { "https" } else { "http" };
        self.port = port;
        self
    }
    /// How many functions the runtime worker reconciles at once (default 16).
    pub fn runtime_concurrency(mut self, n: usize) -> Self {
        self.worker.concurrency = n.max(1);
        self
    }

    /// The consumer group this platform's status worker joins on `status`
    /// (default `status`). Processes that share a queue but keep their own
    /// store (the split deployment: an API, a deployer, a router) each need a
    /// group of their own, so each sees every status change.
    pub fn status_group(mut self, group: &str) -> Result<Self, PlatformError> {
        crate::ports::check_topic_name("status_group", group).map_err(|e| PlatformError::Config(e.to_string()))?;
        self.status_group = group.to_owned();
        Ok(self)
    }

    /// The capacity guard: the sum of the memory limits of all instances
    /// (running and paused) stays within `mib`; a deploy or scale-up beyond it
    /// fails with a clear error before anything starts. Default: no guard.
    pub fn memory_budget_mb(mut self, mib: u64) -> Self {
        self.worker.memory_budget_mb = Some(mib);
        self
    }

    /// How long an instance taken out of the routes keeps running, so
    /// requests on it finish (default 2 s).
    pub fn drain(mut self, drain: Duration) -> Self {
        self.worker.drain = drain;
        self
    }

    /// How often every function is reconciled, and the route table applied
    /// again, even when nothing asked (default 30 s, jittered by ±10%).
    /// Drift from any cause (a lost event, a container removed behind the
    /// platform's back, a route dropped from the edge) heals within it.
    pub fn resync_period(mut self, period: Duration) -> Self {
        self.worker.resync_period = period.max(Duration::from_millis(10));
        self
    }

    /// The backoff of failed reconciles: the first retry after `min`, doubling
    /// up to `max` (defaults 1 s and 5 min). A function is retried until it
    /// converges, is redeployed or is deleted.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.worker.backoff_min = min;
        self.worker.backoff_max = max.max(min);
        self
    }

    /// Runs the autoscaler on the edge's load (e.g. the gateway). Without it,
    /// functions run `max(min, 1)` instances and scale only from zero on a request.
    /// The same counts let drains wait for requests in flight on leaving instances.
    pub fn autoscaler(mut self, load: Arc<dyn LoadSource>, config: AutoscalerConfig) -> Self {
        self.autoscaler = Some((load, config));
        self
    }

    /// Lets `activator`, made before the platform for an edge that needed
    /// it first, take the fast path through this platform's runtime worker
    /// once it starts. Give the same Store and queue to both.
    pub fn activator(mut self, activator: &StoreActivator) -> Self {
        self.worker_slot = Some(activator.slot());
        self
    }

    /// Runs as one node of a cluster that shares the Store and the queue:
    /// each function runs on the node `membership` places it on, the others
    /// route to it; this node's runtime and router workers take every nudge
    /// in groups of their own (`runtime.<node>`, `router.<node>`), and only
    /// the owner's reports reach a function's status. Without it the
    /// platform is one node that runs everything.
    pub fn membership(mut self, membership: Arc<Membership>) -> Self {
        self.membership = Some(membership);
        self
    }

    /// The Store's changes (a Store shared by several nodes): the runtime
    /// worker reconciles a function when another node changed its record.
    pub fn store_changes(mut self, changes: Arc<dyn StoreChanges>) -> Self {
        self.store_changes = Some(changes);
        self
    }

    /// How long a node cut off from the membership backend beyond its TTL
    /// keeps its instances before it stops them (default: one TTL).
    pub fn fence_grace(mut self, grace: Duration) -> Self {
        self.fence_grace = Some(grace);
        self
    }

    /// Builds the platform; call [`Platform::start`] to run its workers.
    pub fn build(self) -> Result<Platform, PlatformError> {
        let queue =
            self.queue.ok_or_else(|| PlatformError::Config("no queue given (PlatformBuilder::queue)".into()))?;
        let store =
            self.store.ok_or_else(|| PlatformError::Config("no store given (PlatformBuilder::store)".into()))?;
        let urls = PublicUrls { scheme: self.scheme, domain: self.domain, port: self.port };
        Ok(Platform {
            inner: Arc::new(Inner {
                queue,
                runtime: self.runtime,
                router: self.router,
                store,
                urls,
                region: self.region,
                status_group: self.status_group,
                worker: self.worker,
                autoscaler: Mutex::new(self.autoscaler),
                changed: watch::Sender::new(0),
                cancel: CancellationToken::new(),
                tasks: Mutex::new(JoinSet::new()),
                runtime_worker: OnceLock::new(),
                fast_path: self.worker_slot.unwrap_or_default(),
                fence_grace: self.fence_grace.unwrap_or_else(|| {
                    self.membership.as_ref().map_or(Duration::from_secs(10), |m| m.ttl().min(Duration::from_secs(3600)))
                }),
                membership: self.membership,
                store_changes: self.store_changes,
            }),
        })
    }
}
