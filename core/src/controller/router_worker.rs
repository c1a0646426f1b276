use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::consume::{Attempt, EventHandler};
use super::error::HandlerError;
use super::urls::PublicUrls;
use crate::events::{Event, topics};
use crate::model::{FunctionName, FunctionRecord, NodeId, Phase, Route, RouteTable};
use crate::ports::{Queue, Router};

/// Consumes `routes`: keeps the whole route table, applies it to the Router on
/// every change, and reports what the edge routes (or that a route is gone)
/// once the edge serves it. Every period it applies the whole table again
/// ([`reapply`](Self::reapply)), so a route dropped from the edge behind the
/// platform's back comes back within one period.
///
/// The table only moves forward: an `EndpointsChanged` older than the
/// generation already applied for that function is ignored, including after a
/// delete (the last generation of a deleted function is remembered). If the
/// Router fails, the table is left as it was and the event is retried.
///
/// On a node of a cluster ([`with_node`](Self::with_node)) it takes only
/// the routes its own runtime worker published: those are its instances, or
/// the gateway of the node that runs a function. It reports only what it
/// serves itself: a route to another node's gateway is that node's to report.
pub struct RouterWorker {
    queue: Arc<dyn Queue>,
    router: Arc<dyn Router>,
    urls: PublicUrls,
    state: Mutex<State>,
    node: Option<NodeId>,
}

#[derive(Default)]
struct State {
    table: RouteTable,
    /// Last generation applied per function, kept after a delete.
    applied: HashMap<FunctionName, u64>,
}

impl RouterWorker {
    /// A worker over these ports, writing URLs with `urls`.
    pub fn new(queue: Arc<dyn Queue>, router: Arc<dyn Router>, urls: PublicUrls) -> Self {
        Self { queue, router, urls, state: Mutex::default(), node: None }
    }

    /// Takes only the routes published by node `node`'s runtime worker.
    pub fn with_node(mut self, node: NodeId) -> Self {
        self.node = Some(node);
        self
    }

    /// On start: re-applies the table, seeded from the endpoints each record
    /// says the edge routed last (the runtime worker's first pass publishes
    /// what runs now, and corrects anything stale).
    pub async fn resync(&self, records: &[FunctionRecord]) -> Result<(), HandlerError> {
        let mut state = self.state.lock().await;
        for r in records {
            // Another node's instances are not reachable from here; the first pass routes to that node.
            let ours = self.node.is_none() || r.status.node == self.node;
            if ours && !r.deleted && r.status.routed_generation > 0 {
                state.table.upsert(Route {
                    name: r.spec.name().clone(),
                    generation: r.status.routed_generation,
                    endpoints: r.status.endpoints.clone(),
                    timeout_ms: u64::try_from(r.spec.timeout().as_millis()).unwrap_or(u64::MAX),
                });
                state.applied.insert(r.spec.name().clone(), r.status.routed_generation);
            }
        }
        self.router.apply(&state.table).await?;
        tracing::info!(routes = state.table.len(), "router resync done");
        Ok(())
    }

    /// Applies the whole table again: the edge's drift (a route removed or
    /// changed behind the platform's back, an edge restarted empty) heals.
    pub async fn reapply(&self) -> Result<(), HandlerError> {
        let state = self.state.lock().await;
        self.router.apply(&state.table).await?;
        Ok(())
    }

    /// Re-applies the table every `period` (jittered by ±10%) until `cancel` fires.
    pub async fn run_reapply(
        self: std::sync::Arc<Self>,
        period: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let wait = period.mul_f64(0.9 + 0.2 * super::workqueue::jitter());
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if let Err(e) = self.reapply().await {
                tracing::warn!(error = %e.message, "re-applying the route table failed; trying at the next period");
            }
        }
    }

    /// The table as last applied.
    pub async fn table(&self) -> RouteTable {
        self.state.lock().await.table.clone()
    }

    async fn endpoints_changed(&self, route: Route, removed: bool, attempt: Attempt) -> Result<(), HandlerError> {
        let name = route.name.clone();
        let generation = route.generation;
        let mut state = self.state.lock().await;
        if state.applied.get(&name).is_some_and(|g| *g > generation) {
            tracing::debug!("stale endpoints ignored");
            return Ok(());
        }
        let mut table = state.table.clone();
        if removed {
            table.remove(&name);
        } else {
            table.upsert(route.clone());
        }
        if let Err(e) = self.router.apply(&table).await {
            let e = HandlerError::from(e);
            let ev = Event::StatusChanged {
                name: name.clone(),
                generation,
                phase: Phase::Failed,
                url: None,
                message: Some(format!("edge: {}", e.message)),
                will_retry: attempt.will_retry(&e),
                endpoints: Vec::new(),
                node: self.node.clone(),
            };
            if let Err(err) = self.queue.publish(topics::STATUS, ev.to_message()).await {
                tracing::warn!(error = %err, "cannot publish status");
            }
            return Err(e);
        }
        state.table = table;
        state.applied.insert(name.clone(), generation);
        drop(state);
        tracing::debug!(function = %name, generation, removed, "route applied to the edge");
        if !removed && !route.endpoints.is_empty() && route.endpoints.iter().all(|e| e.node().is_some()) {
            return Ok(());
        }
        let ev = Event::StatusChanged {
            url: (!removed).then(|| self.urls.url_for(&name)),
            name,
            generation,
            phase: if removed { Phase::Deleted } else { Phase::Ready },
            message: None,
            will_retry: false,
            endpoints: route.endpoints,
            node: self.node.clone(),
        };
        self.queue.publish(topics::STATUS, ev.to_message()).await.map_err(Into::into)
    }
}

#[async_trait]
impl EventHandler for RouterWorker {
    async fn handle(&self, event: Event, attempt: Attempt) -> Result<(), HandlerError> {
        match event {
            Event::EndpointsChanged { node, .. } if self.node.is_some() && node != self.node => Ok(()),
            Event::EndpointsChanged { name, generation, endpoints, timeout_ms, removed, .. } => {
                self.endpoints_changed(Route { name, generation, endpoints, timeout_ms }, removed, attempt).await
            }
            _ => Ok(()),
        }
    }
}
