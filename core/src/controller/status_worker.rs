use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::cluster::Membership;
use super::consume::{Attempt, EventHandler};
use super::error::HandlerError;
use super::records;
use crate::events::Event;
use crate::model::{FunctionRecord, FunctionStatus, NodeId, Phase, Region};
use crate::ports::Store;

/// Consumes `status`: merges what the runtime worker observed (`Observed`)
/// and what the router confirmed (`StatusChanged`) into each function's
/// record, and derives the phase from them, for the API and `wait_ready`.
/// An observation of another generation than the stored one is stale and
/// ignored; a router confirmation moves the routed endpoints forward only.
///
/// With several nodes, only the function's owner reports it: a report from
/// another node (a late one from the node it moved away from) is ignored,
/// and the first report of a new owner drops the endpoints the previous one
/// routed, so nobody reads them as the new owner's.
pub struct StatusWorker {
    store: Arc<dyn Store>,
    changed: watch::Sender<u64>,
    cluster: Option<(Arc<Membership>, Region)>,
}

impl StatusWorker {
    /// A worker over `store`; `changed` is bumped after every recorded change.
    pub fn new(store: Arc<dyn Store>, changed: watch::Sender<u64>) -> Self {
        Self { store, changed, cluster: None }
    }

    /// Takes reports only from each function's owner among `membership`'s
    /// live nodes (`region` for specs that name none).
    pub fn with_membership(mut self, membership: Arc<Membership>, region: Region) -> Self {
        self.cluster = Some((membership, region));
        self
    }

    /// Whether a report from `from` about `r` is the owner's, and so taken.
    fn is_owners_report(&self, r: &FunctionRecord, from: Option<&NodeId>) -> bool {
        match (&self.cluster, from) {
            (Some((m, region)), Some(from)) if m.is_clustered() => match m.owner_of(&r.spec, region) {
                Ok(owner) => &owner.id == from,
                // Nobody may run it: whoever says so is heard.
                Err(_) => true,
            },
            _ => true,
        }
    }
}

/// Takes `from` as the node that reports `s`; a new one's endpoints are not the old one's.
fn take_reporter(s: &mut FunctionStatus, from: Option<&NodeId>) {
    if s.node.as_ref() != from {
        if s.node.is_some() {
            s.endpoints.clear();
        }
        s.node = from.cloned();
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
                node,
                ..
            } => {
                records::update(self.store.as_ref(), &name, |r| {
                    if r.generation != generation {
                        tracing::debug!(stored = r.generation, generation, "observation of another generation ignored");
                        return false;
                    }
                    if !self.is_owners_report(r, node.as_ref()) {
                        tracing::debug!(from = ?node, "observation of a node that does not own the function ignored");
                        return false;
                    }
                    let before = r.status.clone();
                    let s = &mut r.status;
                    take_reporter(s, node.as_ref());
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
            Event::StatusChanged { generation, phase, url, message, endpoints, node, .. } => {
                records::update(self.store.as_ref(), &name, |r| {
                    if !self.is_owners_report(r, node.as_ref()) {
                        tracing::debug!(from = ?node, "edge report of a node that does not own the function ignored");
                        return false;
                    }
                    let before = r.status.clone();
                    let s = &mut r.status;
                    take_reporter(s, node.as_ref());
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
