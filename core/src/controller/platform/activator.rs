//! Waking a function for the edge, from the Store and the queue alone.

use std::sync::Arc;

use async_trait::async_trait;

use crate::controller::records;
use crate::events::{Event, topics};
use crate::model::{DesiredScale, FunctionName};
use crate::ports::{ActivationError, Activator, Queue, Store};
use crate::support::now_ms;

/// Wakes functions for an edge: records a desired scale of at least one in
/// the Store (so the ask outlives a restart and any node sees it), then
/// nudges the runtime worker, which resumes a paused instance if the pool has
/// one. Also asks for a reconcile when the edge finds a function's instances
/// refusing connections.
///
/// Built from the queue and the Store only, so an edge can be given its
/// activator before the platform exists, and holds no reference back to it.
pub struct StoreActivator {
    queue: Arc<dyn Queue>,
    store: Arc<dyn Store>,
}

impl StoreActivator {
    /// An activator writing to `store` and nudging through `queue`.
    pub fn new(queue: Arc<dyn Queue>, store: Arc<dyn Store>) -> Self {
        Self { queue, store }
    }
}

fn unavailable(e: impl std::fmt::Display) -> ActivationError {
    ActivationError::Unavailable(e.to_string())
}

#[async_trait]
impl Activator for StoreActivator {
    async fn activate(&self, name: &FunctionName) -> Result<(), ActivationError> {
        let record = records::update(self.store.as_ref(), name, |r| {
            if r.deleted || r.wanted() >= 1 {
                return false;
            }
            r.scale =
                DesiredScale { running: Some(1), reason: "a request is waiting at the edge".into(), at_ms: now_ms() };
            true
        })
        .await
        .map_err(unavailable)?;
        match record {
            Some(r) if !r.deleted => {}
            _ => return Err(ActivationError::NotFound(name.clone())),
        }
        let event = Event::ActivationRequested { name: name.clone() };
        self.queue.publish(topics::DEPLOYMENTS, event.to_message()).await.map_err(unavailable)?;
        tracing::debug!(function = %name, "activation: desired scale recorded, runtime worker asked");
        Ok(())
    }

    async fn unreachable(&self, name: &FunctionName) -> Result<(), ActivationError> {
        let event = Event::ReconcileRequested {
            name: name.clone(),
            reason: "the edge found its instances refusing connections".into(),
        };
        self.queue.publish(topics::DEPLOYMENTS, event.to_message()).await.map_err(unavailable)
    }
}
