use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::consume::{Attempt, EventHandler};
use super::error::HandlerError;
use super::records;
use crate::events::Event;
use crate::model::{FunctionStatus, Phase};
use crate::ports::Store;

/// Consumes `status`: merges what the runtime worker observed (`Observed`)
/// and what the router confirmed (`StatusChanged`) into each function's
/// record, and derives the phase from them, for the API and `wait_ready`.
/// An observation of another generation than the stored one is stale and
/// ignored; a router confirmation moves the routed endpoints forward only.
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
        let name = event.function().clone();
        // Whether a reader would see a difference: the once-per-period
        // refresh of an unchanged observation moves only `observed_at_ms`,
        // and must not wake every status stream (each re-lists the Store).
        let mut visible = false;
        match event {
            Event::Observed {
                generation,
                instances,
                wanted,
                published,
                error,
                permanent,
                attempts,
                next_retry_ms,
                at_ms,
                ..
            } => {
                records::update(self.store.as_ref(), &name, |r| {
                    if r.generation != generation {
                        tracing::debug!(stored = r.generation, generation, "observation of another generation ignored");
                        return false;
                    }
                    let before = r.status.clone();
                    let s = &mut r.status;
                    s.generation = generation;
                    s.instances = instances.clone();
                    s.wanted = wanted;
                    s.published = published.clone();
                    s.message = error.clone();
                    s.permanent = permanent;
                    s.attempts = attempts;
                    s.next_retry_ms = next_retry_ms;
                    s.will_retry = attempts > 0;
                    if at_ms > 0 {
                        s.observed_at_ms = at_ms;
                    }
                    s.phase = s.derive_phase(r.generation, r.deleted);
                    visible = *s != FunctionStatus { observed_at_ms: s.observed_at_ms, ..before.clone() };
                    *s != before
                })
                .await?;
            }
            Event::StatusChanged { generation, phase, url, message, endpoints, .. } => {
                records::update(self.store.as_ref(), &name, |r| {
                    let before = r.status.clone();
                    let s = &mut r.status;
                    match phase {
                        // The route is gone: the delete is complete once it is the stored one.
                        Phase::Deleted if r.deleted && r.generation == generation => {
                            s.endpoints.clear();
                            s.routed_generation = generation;
                            s.generation = generation;
                            s.url = None;
                            s.phase = Phase::Deleted;
                            visible = *s != before;
                            return visible;
                        }
                        Phase::Ready if generation >= s.routed_generation && generation <= r.generation => {
                            s.endpoints = endpoints.clone();
                            s.routed_generation = generation;
                            if url.is_some() {
                                s.url = url.clone();
                            }
                            // A message the edge left earlier is no longer true.
                            if s.attempts == 0 && s.message.as_deref().is_some_and(|m| m.starts_with("edge: ")) {
                                s.message = None;
                            }
                        }
                        Phase::Failed if generation == r.generation => {
                            s.message = message.clone();
                        }
                        _ => return false,
                    }
                    s.phase = s.derive_phase(r.generation, r.deleted);
                    visible = *s != before;
                    visible
                })
                .await?;
            }
            _ => return Ok(()),
        }
        if visible {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(())
    }
}
