//! Waking a function for the edge: from the Store and the queue, and, when
//! the runtime worker runs in the same process, at once.

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;

use crate::controller::records;
use crate::controller::runtime_worker::RuntimeWorker;
use crate::events::{Event, topics};
use crate::model::{DesiredScale, FunctionName, FunctionRecord};
use crate::ports::{Activation, ActivationError, Activator, Queue, Store, StoreError};
use crate::support::now_ms;

/// Where a platform puts its runtime worker once it starts, so an activator
/// made before the platform (for the edge) can reach it. Weak: the edge holds
/// its activator, and the worker holds the edge (its load source), so a
/// strong reference here would keep both, and the Store, alive forever.
pub(crate) type WorkerSlot = Arc<OnceLock<Weak<RuntimeWorker>>>;

/// Wakes functions for an edge.
///
/// The ordinary path records a desired scale of at least one in the Store
/// (so the ask outlives a restart and any node sees it), then nudges the
/// runtime worker through the queue; the worker resumes a paused instance if
/// the pool has one and publishes the route, which releases the edge's held
/// requests.
///
/// The fast path, when this process also runs the runtime worker (the
/// embedded default; see [`PlatformBuilder::activator`](super::PlatformBuilder::activator)):
/// the desired scale is written while the worker resumes a paused instance
/// directly ([`RuntimeWorker::resume_now`]), and the edge gets the instance's
/// endpoint back from [`activate`](Activator::activate) at once. The route
/// table and the recorded observation follow right behind, from the
/// reconcile the resume asks for once the desired scale is stored. Where the
/// fast path does not apply (nothing paused, another reconcile holds the
/// function), it falls back to the ordinary path.
///
/// Also asks for a reconcile when the edge finds a function's instances
/// refusing connections.
pub struct StoreActivator {
    queue: Arc<dyn Queue>,
    store: Arc<dyn Store>,
    local: WorkerSlot,
}

impl StoreActivator {
    /// An activator writing to `store` and nudging through `queue`. Given to
    /// a platform's builder, it also takes the fast path once that platform runs.
    pub fn new(queue: Arc<dyn Queue>, store: Arc<dyn Store>) -> Self {
        Self { queue, store, local: WorkerSlot::default() }
    }

    pub(crate) fn with_slot(queue: Arc<dyn Queue>, store: Arc<dyn Store>, local: WorkerSlot) -> Self {
        Self { queue, store, local }
    }

    pub(crate) fn slot(&self) -> WorkerSlot {
        Arc::clone(&self.local)
    }

    /// Records a desired scale of at least one; the record as it is after.
    async fn record_wanted(&self, name: &FunctionName) -> Result<FunctionRecord, ActivationError> {
        let record = records::update(self.store.as_ref(), name, |r| {
            if r.deleted || r.wanted() >= 1 {
                return false;
            }
            r.scale =
                DesiredScale { running: Some(1), reason: "a request is waiting at the edge".into(), at_ms: now_ms() };
            true
        })
        .await
        .map_err(|e: StoreError| unavailable(e))?;
        match record {
            Some(r) if !r.deleted => Ok(r),
            _ => Err(ActivationError::NotFound(name.clone())),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> ActivationError {
    ActivationError::Unavailable(e.to_string())
}

#[async_trait]
impl Activator for StoreActivator {
    async fn activate(&self, name: &FunctionName) -> Result<Activation, ActivationError> {
        if let Some(worker) = self.local.get().and_then(Weak::upgrade) {
            let (recorded, resumed) = tokio::join!(self.record_wanted(name), worker.resume_now(name));
            if let Some(resumed) = resumed {
                // The resume's reconcile runs once `resumed` drops, after the write it must read.
                recorded?;
                tracing::debug!(function = %name, instance = %resumed.instance(), "activation: resumed in process, desired scale recorded");
                return Ok(Activation::Ready(vec![resumed.endpoint().clone()]));
            }
            recorded?;
        } else {
            self.record_wanted(name).await?;
        }
        let event = Event::ActivationRequested { name: name.clone() };
        self.queue.publish(topics::DEPLOYMENTS, event.to_message()).await.map_err(unavailable)?;
        tracing::debug!(function = %name, "activation: desired scale recorded, runtime worker asked");
        Ok(Activation::Requested)
    }

    async fn unreachable(&self, name: &FunctionName) -> Result<(), ActivationError> {
        let event = Event::ReconcileRequested {
            name: name.clone(),
            reason: "the edge found its instances refusing connections".into(),
        };
        self.queue.publish(topics::DEPLOYMENTS, event.to_message()).await.map_err(unavailable)
    }
}
