//! The platform: the calls an API or an embedding program makes (deploy,
//! scale, delete, read), and the workers it runs.
//!
//! - `builder`: assembling it from its ports;
//! - `calls`: deploy, scale, delete, get, list, wait;
//! - `activator`: waking a function for the edge, from the Store and the queue;
//! - `logs`: the instances' log streams merged;
//! - `secrets`: rolling functions whose secrets changed;
//! - `status_stream`: every status change, as a stream.

mod activator;
mod builder;
mod calls;
mod logs;
mod secrets;
mod status_stream;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use activator::StoreActivator;
pub use builder::PlatformBuilder;
pub use calls::DeployReceipt;
pub use logs::InstanceLogLine;
pub use status_stream::StatusUpdate;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::autoscaler::{Autoscaler, AutoscalerConfig};
use super::cluster::Membership;
use super::consume::{EventHandler, run_consumer};
use super::error::PlatformError;
use super::groups;
use super::router_worker::RouterWorker;
use super::runtime_worker::{PassReport, RuntimeWorker, RuntimeWorkerConfig};
use super::status_worker::StatusWorker;
use super::urls::PublicUrls;
use crate::events::topics;
use crate::model::{Domain, FunctionName, Region};
use crate::ports::{Activator, LoadSource, Queue, Router, Runtime, Store};

/// The platform: deploy, inspect and delete functions; run the workers.
///
/// Cheap to clone; every clone is the same platform.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Arc<dyn Queue>,
    runtime: Option<Arc<dyn Runtime>>,
    router: Option<Arc<dyn Router>>,
    store: Arc<dyn Store>,
    urls: PublicUrls,
    region: Region,
    status_group: String,
    worker: RuntimeWorkerConfig,
    autoscaler: Mutex<Option<(Arc<dyn LoadSource>, AutoscalerConfig)>>,
    changed: watch::Sender<u64>,
    cancel: CancellationToken,
    tasks: Mutex<JoinSet<()>>,
    runtime_worker: OnceLock<Arc<RuntimeWorker>>,
    /// The runtime worker, weakly, for the activators this platform made or was given: their fast path.
    fast_path: activator::WorkerSlot,
    /// This node among others, when it is one of a cluster.
    membership: Option<Arc<Membership>>,
    fence_grace: Duration,
    store_changes: Option<Arc<dyn crate::ports::StoreChanges>>,
}

impl Platform {
    /// Starts assembling a platform.
    pub fn builder() -> PlatformBuilder {
        PlatformBuilder::default()
    }

    /// The domain functions are served under.
    pub fn domain(&self) -> &Domain {
        &self.inner.urls.domain
    }

    /// The region this node serves.
    pub fn region(&self) -> &Region {
        &self.inner.region
    }

    /// The public URL of a function.
    pub fn url_for(&self, name: &FunctionName) -> String {
        self.inner.urls.url_for(name)
    }

    /// This node among the live nodes, when it is one of a cluster.
    pub fn membership(&self) -> Option<&Arc<Membership>> {
        self.inner.membership.as_ref()
    }

    /// How often every function is reconciled even when nothing asked. An
    /// observation older than two periods is stale.
    pub fn resync_period(&self) -> Duration {
        self.inner.worker.resync_period
    }

    /// Subscribes the workers, re-applies the recorded routes, and runs the
    /// workers until [`shutdown`](Self::shutdown). The runtime worker's first
    /// pass runs at once: it stops instances no stored function wants and
    /// converges every stored function. A runtime that cannot be reached now
    /// does not stop the start: the pass says so in each function's status
    /// and is tried again.
    pub async fn start(&self) -> Result<(), PlatformError> {
        let inner = &self.inner;
        let mut tasks = inner.tasks.lock().await;
        // Subscribe every group before publishing anything, so no event falls before a group exists.
        let cluster = inner.membership.as_ref().filter(|m| m.is_clustered());
        let group = |base: &str| match cluster {
            Some(m) => format!("{base}.{}", m.id()),
            None => base.to_owned(),
        };
        let status_sub = inner.queue.subscribe(topics::STATUS, &inner.status_group).await?;
        let mut status = StatusWorker::new(Arc::clone(&inner.store), inner.changed.clone());
        if let Some(m) = cluster {
            status = status.with_membership(Arc::clone(m), inner.region.clone());
        }
        let status = Arc::new(status);
        tasks.spawn(run_consumer("status", status_sub, status, 8, inner.cancel.clone()));

        if let Some(router) = &inner.router {
            let sub = inner.queue.subscribe(topics::ROUTES, &group(groups::ROUTER)).await?;
            let mut worker = RouterWorker::new(Arc::clone(&inner.queue), Arc::clone(router), inner.urls.clone());
            if let Some(m) = cluster {
                worker = worker.with_node(m.id().clone());
            }
            let worker = Arc::new(worker);
            let records = inner.store.list().await?;
            worker.resync(&records).await.map_err(|e| PlatformError::Config(format!("router resync: {e}")))?;
            tasks.spawn(Arc::clone(&worker).run_reapply(inner.worker.resync_period, inner.cancel.clone()));
            tasks.spawn(run_consumer("router", sub, worker as Arc<dyn EventHandler>, 1, inner.cancel.clone()));
        }

        if let Some(runtime) = &inner.runtime {
            let sub = inner.queue.subscribe(topics::DEPLOYMENTS, &group(groups::RUNTIME)).await?;
            let mut worker = RuntimeWorker::with_config(
                Arc::clone(&inner.queue),
                Arc::clone(runtime),
                Arc::clone(&inner.store),
                inner.worker.clone(),
            );
            if let Some((load, _)) = inner.autoscaler.lock().await.as_ref() {
                worker = worker.with_load_source(Arc::clone(load));
            }
            if let Some(m) = cluster {
                worker = worker.with_membership(Arc::clone(m), inner.region.clone(), inner.fence_grace);
            }
            if let Some(changes) = &inner.store_changes {
                worker = worker.with_store_changes(Arc::clone(changes));
            }
            let worker = Arc::new(worker);
            worker.spawn(&mut tasks, &inner.cancel);
            tasks.spawn(run_consumer(
                "runtime",
                sub,
                Arc::clone(&worker) as Arc<dyn EventHandler>,
                16,
                inner.cancel.clone(),
            ));
            let _ = inner.fast_path.set(Arc::downgrade(&worker));
            let _ = inner.runtime_worker.set(worker);
            tasks.spawn(Self::run_secret_rolls(
                Arc::downgrade(&self.inner),
                inner.worker.resync_period,
                inner.cancel.clone(),
            ));
        }
        if let Some((load, config)) = inner.autoscaler.lock().await.take() {
            let mut scaler = Autoscaler::new(Arc::clone(&inner.queue), Arc::clone(&inner.store), load, config);
            if let Some(m) = cluster {
                scaler = scaler.with_membership(Arc::clone(m), inner.region.clone());
            }
            tasks.spawn(scaler.run(inner.cancel.clone()));
        }
        tracing::info!(
            domain = %inner.urls.domain,
            region = %inner.region,
            runtime = inner.runtime.is_some(),
            router = inner.router.is_some(),
            resync_period_ms = u64::try_from(inner.worker.resync_period.as_millis()).unwrap_or(u64::MAX),
            "platform started"
        );
        Ok(())
    }

    /// The activator an edge calls to wake a function with no ready instance:
    /// made from this platform's Store and queue, holding no reference back
    /// to the platform, and taking the fast path once this platform runs its
    /// runtime worker. (An edge that needs its activator before the platform
    /// exists builds one with [`StoreActivator::new`] and gives it to
    /// [`PlatformBuilder::activator`].)
    pub fn activator(&self) -> Arc<dyn Activator> {
        Arc::new(StoreActivator::with_slot(
            Arc::clone(&self.inner.queue),
            Arc::clone(&self.inner.store),
            Arc::clone(&self.inner.fast_path),
        ))
    }

    /// An intake of asynchronous invocations straight into this platform's
    /// Store, allowing callbacks to `callback_hosts`, for an invoker that
    /// scans it (the server's own invoker hands out one that also wakes it).
    pub fn invocation_intake(&self, callback_hosts: crate::model::CallbackHosts) -> super::invoker::StoreIntake {
        super::invoker::StoreIntake::new(Arc::clone(&self.inner.store), callback_hosts)
    }

    /// The asynchronous invocations kept in this platform's Store.
    pub fn invocations(&self) -> super::invocations::InvocationStore {
        super::invocations::InvocationStore::new(Arc::clone(&self.inner.store))
    }

    /// The runtime worker, once started (none when this process runs no runtime).
    pub fn runtime_worker(&self) -> Option<&Arc<RuntimeWorker>> {
        self.inner.runtime_worker.get()
    }

    /// Runs a pass of the runtime worker now (every function, backoff or
    /// not) and waits until its reconciles ended. For tests and benchmarks.
    pub async fn reconcile_all(&self) -> Result<PassReport, PlatformError> {
        let worker = self
            .runtime_worker()
            .ok_or_else(|| PlatformError::Unsupported("this process runs no runtime worker".into()))?;
        worker.pass_and_settle().await.map_err(|e| PlatformError::Unsupported(e.message))
    }

    /// Stops the workers: they finish the reconciles in hand and take no
    /// more; drains still running in the background stop where they are.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let mut tasks = self.inner.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
        if let Some(worker) = self.inner.runtime_worker.get() {
            worker.shutdown().await;
        }
    }
}
