use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::consume::{Attempt, EventHandler};
use super::error::HandlerError;
use crate::events::Event;
use crate::model::{FunctionStatus, Phase};
use crate::ports::{Store, StoreError};

/// Consumes `status`: records each function's latest status in the Store, for
/// the API and for `wait_ready`. A status about another generation than the
/// stored one is stale and ignored.
pub struct StatusWorker {
    store: Arc<dyn Store>,
    changed: watch::Sender<u64>,
}

impl StatusWorker {
    /// A worker over `store`; `changed` is bumped after every recorded change.
    pub fn new(store: Arc<dyn Store>, changed: watch::Sender<u64>) -> Self {
        Self { store, changed }
    }
}

#[async_trait]
impl EventHandler for StatusWorker {
    async fn handle(&self, event: Event, _attempt: Attempt) -> Result<(), HandlerError> {
        let Event::StatusChanged { name, generation, phase, url, message, will_retry, endpoints } = event else {
            return Ok(());
        };
        // A compare-and-set loop: the API may bump the generation between our read and write.
        for _ in 0..8 {
            let Some(mut record) = self.store.get(&name).await? else { return Ok(()) };
            if record.generation != generation {
                tracing::debug!(stored = record.generation, "status of another generation ignored");
                return Ok(());
            }
            let url = match phase {
                Phase::Deleted => None,
                _ => url.clone().or_else(|| record.status.url.clone()),
            };
            record.status = FunctionStatus {
                phase,
                generation,
                url,
                message: message.clone(),
                will_retry,
                endpoints: endpoints.clone(),
            };
            match self.store.compare_and_set(Some(generation), record).await {
                Ok(()) => {
                    self.changed.send_modify(|n| *n = n.wrapping_add(1));
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(HandlerError::retry(format!("status of `{name}` kept changing under concurrent writes")))
    }
}
