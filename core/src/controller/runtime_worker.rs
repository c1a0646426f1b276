use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::consume::{Attempt, EventHandler};
use super::error::HandlerError;
use crate::events::{Event, topics};
use crate::model::{FunctionName, FunctionRecord, FunctionSpec, FunctionStatus, Instance, InstanceState, Phase};
use crate::ports::{Queue, Runtime, RuntimeEvent, Store};

/// Consumes `deployments`: converges each function's instances on the Runtime
/// to its spec, then tells the router worker which endpoints serve it.
///
/// The plan for one function at generation `g`:
/// 1. ignore the event if the Store already holds a newer generation;
/// 2. prepare the image or executable;
/// 3. resume paused instances of `g`, start more until `max(min, 1)` run
///    (each start waits for readiness), stop extras;
/// 4. publish `EndpointsChanged` with the ready endpoints of `g`;
/// 5. stop instances of other generations.
///
/// Every step reads the Runtime's own list first, so running it twice does
/// nothing the second time. On a failure the status says why; on the last
/// attempt the instances of `g` are stopped, so an older generation that
/// still runs keeps serving.
pub struct RuntimeWorker {
    queue: Arc<dyn Queue>,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
}

impl RuntimeWorker {
    /// A worker over these ports. `store` holds the desired specs (the platform's
    /// Store when embedded; a local one when the worker runs on its own).
    pub fn new(queue: Arc<dyn Queue>, runtime: Arc<dyn Runtime>, store: Arc<dyn Store>) -> Self {
        Self { queue, runtime, store }
    }

    /// On start: stops instances no stored function wants, and asks for a
    /// reconcile of every stored function (which starts missing instances and
    /// republishes endpoints, re-seeding the router).
    pub async fn resync(&self) -> Result<(), HandlerError> {
        let records = self.store.list().await?;
        let wanted: HashSet<&FunctionName> = records.iter().filter(|r| !r.deleted).map(|r| r.spec.name()).collect();
        for instance in self.runtime.list().await? {
            if !wanted.contains(&instance.function) {
                tracing::info!(function = %instance.function, instance = %instance.id, "resync: stopping an instance no stored function wants");
                self.runtime.stop(&instance.id).await?;
            }
        }
        for record in &records {
            let event =
                Event::ReconcileRequested { name: record.spec.name().clone(), reason: "resync on start".into() };
            self.queue.publish(topics::DEPLOYMENTS, event.to_message()).await?;
        }
        tracing::info!(functions = records.len(), "runtime resync done");
        Ok(())
    }

    /// Turns the runtime's exit reports into reconcile requests, so a crashed
    /// or killed instance is replaced. Runs until `cancel` fires.
    pub async fn watch_exits(&self, cancel: CancellationToken) {
        let mut events = self.runtime.events();
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                e = events.next() => match e { Some(e) => e, None => return },
            };
            let RuntimeEvent::Exited { id, function, generation, reason } = event;
            {
                tracing::warn!(%function, instance = %id, generation, ?reason, "instance exited; reconciling");
                let ev =
                    Event::ReconcileRequested { name: function, reason: format!("instance {id} exited: {reason:?}") };
                if let Err(e) = self.queue.publish(topics::DEPLOYMENTS, ev.to_message()).await {
                    tracing::error!(error = %e, "cannot publish the reconcile after an exit; resync will catch it");
                }
            }
        }
    }

    async fn publish(&self, event: Event, topic: &str) -> Result<(), HandlerError> {
        self.queue.publish(topic, event.to_message()).await.map_err(Into::into)
    }

    async fn status(
        &self,
        name: &FunctionName,
        generation: u64,
        phase: Phase,
        message: Option<String>,
        will_retry: bool,
    ) {
        let ev = Event::StatusChanged {
            name: name.clone(),
            generation,
            phase,
            url: None,
            message,
            will_retry,
            endpoints: Vec::new(),
        };
        if let Err(e) = self.publish(ev, topics::STATUS).await {
            tracing::warn!(error = %e, "cannot publish status");
        }
    }

    async fn instances_of(&self, name: &FunctionName) -> Result<Vec<Instance>, HandlerError> {
        Ok(self.runtime.list().await?.into_iter().filter(|i| &i.function == name).collect())
    }

    /// Records `generation` as wanted if it is new; returns false if the Store has a newer one.
    async fn accept(&self, record: FunctionRecord) -> Result<bool, HandlerError> {
        let stored = self.store.get(record.spec.name()).await?;
        match stored {
            Some(s) if s.generation > record.generation => {
                tracing::debug!(stored = s.generation, "stale event ignored");
                Ok(false)
            }
            Some(s) if s.generation == record.generation => Ok(true),
            other => {
                // A worker with its own store (not the API's) learns the spec from the event.
                self.store.compare_and_set(other.map(|s| s.generation), record).await?;
                Ok(true)
            }
        }
    }

    async fn deploy(&self, spec: FunctionSpec, generation: u64, attempt: Attempt) -> Result<(), HandlerError> {
        let record = FunctionRecord {
            status: FunctionStatus::new(Phase::Pending, generation),
            spec: spec.clone(),
            generation,
            deleted: false,
        };
        if !self.accept(record).await? {
            return Ok(());
        }
        self.converge_or_report(&spec, generation, attempt).await
    }

    async fn converge_or_report(
        &self,
        spec: &FunctionSpec,
        generation: u64,
        attempt: Attempt,
    ) -> Result<(), HandlerError> {
        match self.converge(spec, generation).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let will_retry = attempt.will_retry(&e);
                if !will_retry {
                    // Give up cleanly: remove what this generation started; an older one keeps serving.
                    if let Ok(instances) = self.instances_of(spec.name()).await {
                        for i in instances.iter().filter(|i| i.generation == generation) {
                            if let Err(err) = self.runtime.stop(&i.id).await {
                                tracing::warn!(instance = %i.id, error = %err, "cannot stop after final failure");
                            }
                        }
                    }
                }
                let message = if will_retry {
                    format!("{} (attempt {} of {}, retrying)", e.message, attempt.number, attempt.max)
                } else {
                    format!("{} (gave up after attempt {} of {})", e.message, attempt.number, attempt.max)
                };
                self.status(spec.name(), generation, Phase::Failed, Some(message), will_retry).await;
                Err(e)
            }
        }
    }

    async fn converge(&self, spec: &FunctionSpec, generation: u64) -> Result<(), HandlerError> {
        let name = spec.name();
        let (exited, live): (Vec<Instance>, Vec<Instance>) =
            self.instances_of(name).await?.into_iter().partition(|i| i.state == InstanceState::Exited);
        // What died (crash, OOM, killed) is removed; it is replaced below.
        for dead in &exited {
            tracing::info!(instance = %dead.id, "removing an exited instance");
            self.runtime.stop(&dead.id).await?;
        }
        let (mut current, others): (Vec<Instance>, Vec<Instance>) =
            live.into_iter().partition(|i| i.generation == generation);
        let want = usize::try_from(spec.scaling().initial_instances()).unwrap_or(1);
        let paused = current.iter().filter(|i| i.state == InstanceState::Paused).count();
        let busy = current.len() < want || paused > 0 || !others.is_empty();
        if busy {
            self.status(name, generation, Phase::Deploying, None, false).await;
        }
        self.runtime.prepare(spec).await?;
        for instance in current.iter_mut().filter(|i| i.state == InstanceState::Paused) {
            *instance = self.runtime.resume(&instance.id).await?;
        }
        if current.len() < want {
            let starts = (current.len()..want).map(|_| self.runtime.start(spec, generation));
            let results = futures::future::join_all(starts).await;
            let mut first_error = None;
            for r in results {
                match r {
                    Ok(instance) => current.push(instance),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e.into());
            }
        }
        while current.len() > want {
            if let Some(extra) = current.pop() {
                self.runtime.stop(&extra.id).await?;
            }
        }
        let mut endpoints: Vec<_> = current.iter().map(|i| i.endpoint).collect();
        endpoints.sort();
        let timeout_ms = u64::try_from(spec.timeout().as_millis()).unwrap_or(u64::MAX);
        self.publish(
            Event::EndpointsChanged { name: name.clone(), generation, endpoints, timeout_ms, removed: false },
            topics::ROUTES,
        )
        .await?;
        for old in others {
            tracing::info!(instance = %old.id, generation = old.generation, "stopping an instance of another generation");
            self.runtime.stop(&old.id).await?;
        }
        Ok(())
    }

    async fn delete(&self, name: &FunctionName, generation: u64) -> Result<(), HandlerError> {
        match self.store.get(name).await? {
            Some(s) if s.generation > generation => {
                tracing::debug!(stored = s.generation, "stale delete ignored");
                return Ok(());
            }
            Some(s) if s.generation < generation => {
                let tombstone = FunctionRecord {
                    generation,
                    deleted: true,
                    status: FunctionStatus::new(Phase::Deleting, generation),
                    spec: s.spec.clone(),
                };
                self.store.compare_and_set(Some(s.generation), tombstone).await?;
            }
            _ => {}
        }
        for instance in self.instances_of(name).await? {
            self.runtime.stop(&instance.id).await?;
        }
        self.publish(
            Event::EndpointsChanged {
                name: name.clone(),
                generation,
                endpoints: Vec::new(),
                timeout_ms: 0,
                removed: true,
            },
            topics::ROUTES,
        )
        .await
    }

    async fn reconcile(&self, name: &FunctionName, attempt: Attempt) -> Result<(), HandlerError> {
        match self.store.get(name).await? {
            None => {
                for instance in self.instances_of(name).await? {
                    self.runtime.stop(&instance.id).await?;
                }
                Ok(())
            }
            Some(r) if r.deleted => self.delete(name, r.generation).await,
            Some(r) => self.converge_or_report(&r.spec, r.generation, attempt).await,
        }
    }
}

#[async_trait]
impl EventHandler for RuntimeWorker {
    async fn handle(&self, event: Event, attempt: Attempt) -> Result<(), HandlerError> {
        match event {
            Event::DeployRequested { spec, generation } => self.deploy(spec, generation, attempt).await,
            Event::DeleteRequested { name, generation } => self.delete(&name, generation).await,
            Event::ReconcileRequested { name, reason } => {
                tracing::debug!(%reason, "reconcile requested");
                self.reconcile(&name, attempt).await
            }
            _ => Ok(()),
        }
    }
}
