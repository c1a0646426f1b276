use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::consume::{Attempt, EventHandler};
use super::error::HandlerError;
use crate::events::{Event, topics};
use crate::model::{
    FunctionName, FunctionRecord, FunctionSpec, FunctionStatus, Instance, InstanceId, InstanceState, Phase,
};
use crate::ports::{LoadSource, Queue, Runtime, RuntimeError, RuntimeEvent, Store};

/// Consumes `deployments`: converges each function's instances on the Runtime
/// to its spec, then tells the router worker which endpoints serve it.
///
/// The plan for one function at generation `g` (events about older
/// generations are ignored): run the wanted number of instances of `g`,
/// resuming paused ones, then starting created ones, before creating new
/// ones; publish their endpoints; drain and stop other generations; refill the
/// pool of paused instances and the created ones.
/// The wanted number starts at `max(min, 1)` and then follows
/// `ScaleRequested` (the autoscaler) and `ActivationRequested` (a request
/// waiting at the edge).
///
/// Every step reads the Runtime's own list first, so running it twice does
/// nothing the second time. On a failure the status says why; on the last
/// attempt the instances of `g` are stopped, so an older generation that
/// still runs keeps serving.
pub struct RuntimeWorker {
    queue: Arc<dyn Queue>,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    config: RuntimeWorkerConfig,
    /// Instances to run per function, with the generation they were asked for.
    desired: Mutex<HashMap<FunctionName, (u64, u32)>>,
    /// Instances being stopped in the background: not counted as live until
    /// their stop returns, or a converge right after would route to them.
    leaving: Arc<Mutex<HashSet<InstanceId>>>,
    /// The edge's per-endpoint request counts, when it has them: an instance
    /// leaves only once no request is in flight on it.
    load: Option<Arc<dyn LoadSource>>,
}

/// Settings of a [`RuntimeWorker`].
#[derive(Clone, Debug)]
pub struct RuntimeWorkerConfig {
    /// The sum of the memory limits of all instances (running and paused)
    /// stays within this many MiB; `None` checks nothing.
    pub memory_budget_mb: Option<u64>,
    /// After a new generation's endpoints are published, instances of older
    /// generations keep running at least this long, so the edge switches and
    /// requests already on them finish (default 2 s). With the edge's counts
    /// ([`RuntimeWorker::with_load_source`]), an instance still serving a
    /// request after that is stopped only once the request ends (bounded by
    /// the function's timeout).
    pub drain: Duration,
}

impl Default for RuntimeWorkerConfig {
    fn default() -> Self {
        Self { memory_budget_mb: None, drain: Duration::from_secs(2) }
    }
}

/// Whether the edge has no request in flight on `instance`, waiting up to
/// `limit` for that. Without per-endpoint counts there is nothing to wait for.
async fn idle_within(load: Option<&dyn LoadSource>, instance: &Instance, limit: Duration) -> bool {
    let Some(load) = load else { return true };
    if instance.state != InstanceState::Running {
        return true;
    }
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match load.endpoint_in_flight(instance.endpoint.addr()) {
            None | Some(0) => return true,
            Some(n) if tokio::time::Instant::now() >= deadline => {
                tracing::debug!(instance = %instance.id, in_flight = n, "still serving");
                return false;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Keeps the instances that started; the first failure is the outcome (each
/// failed start removed its instance, per the Runtime contract).
fn collect_started(
    results: Vec<Result<Instance, RuntimeError>>,
    running: &mut Vec<Instance>,
) -> Result<(), HandlerError> {
    let mut first_error = None;
    for r in results {
        match r {
            Ok(instance) => running.push(instance),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

impl RuntimeWorker {
    /// A worker over these ports. `store` holds the desired specs (the platform's
    /// Store when embedded; a local one when the worker runs on its own).
    pub fn new(queue: Arc<dyn Queue>, runtime: Arc<dyn Runtime>, store: Arc<dyn Store>) -> Self {
        Self::with_config(queue, runtime, store, RuntimeWorkerConfig::default())
    }

    /// A worker with these settings.
    pub fn with_config(
        queue: Arc<dyn Queue>,
        runtime: Arc<dyn Runtime>,
        store: Arc<dyn Store>,
        config: RuntimeWorkerConfig,
    ) -> Self {
        Self { queue, runtime, store, config, desired: Mutex::default(), leaving: Arc::default(), load: None }
    }

    /// Reads the edge's per-endpoint request counts during drains, so a
    /// request longer than `drain` on a leaving instance is not cut.
    pub fn with_load_source(mut self, load: Arc<dyn LoadSource>) -> Self {
        self.load = Some(load);
        self
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
        let all = self.runtime.list().await?;
        let leaving = self.leaving.lock().unwrap_or_else(|p| p.into_inner());
        Ok(all.into_iter().filter(|i| &i.function == name && !leaving.contains(&i.id)).collect())
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

    /// Instances to run for `spec` at `generation`: what the autoscaler or an
    /// activation last asked for, clamped to `min..=max`. A new generation
    /// starts with what the old one ran (at least `max(min, 1)`, so a new
    /// function answers at once).
    fn want(&self, spec: &FunctionSpec, generation: u64) -> usize {
        let s = spec.scaling();
        let mut desired = self.desired.lock().unwrap_or_else(|p| p.into_inner());
        let n = match desired.get(spec.name()) {
            Some((g, n)) if *g == generation => *n,
            Some((_, n)) => (*n).max(s.initial_instances()),
            None => s.initial_instances(),
        };
        let n = n.clamp(s.min(), s.max());
        desired.insert(spec.name().clone(), (generation, n));
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    fn set_desired(&self, name: &FunctionName, generation: u64, running: u32, at_least: bool) {
        let mut desired = self.desired.lock().unwrap_or_else(|p| p.into_inner());
        let entry = desired.entry(name.clone()).or_insert((generation, running));
        if entry.0 != generation {
            *entry = (generation, running);
        } else if at_least {
            entry.1 = entry.1.max(running);
        } else {
            entry.1 = running;
        }
    }

    async fn converge_or_report(
        &self,
        spec: &FunctionSpec,
        generation: u64,
        attempt: Attempt,
    ) -> Result<(), HandlerError> {
        let started = Instant::now();
        // Whether this generation already serves: a failure then must not take it down.
        tracing::debug!("converging");
        let serving = self
            .store
            .get(spec.name())
            .await?
            .is_some_and(|r| r.status.generation == generation && r.status.phase == Phase::Ready);
        match self.converge(spec, generation, serving, started).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let will_retry = attempt.will_retry(&e);
                if !will_retry && !serving {
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

    /// The plan, in the order that gets a waiting request served soonest:
    /// 1. remove exited instances;
    /// 2. run `want` instances of this generation, fastest tier first: resume
    ///    paused ones (milliseconds), then start created ones, then create and
    ///    start new ones (each waits for readiness);
    /// 3. publish the endpoints of the `want` running ones; the edge switches atomically;
    /// 4. let the edge drain, then pause (into the pool) or stop the extras,
    ///    and stop old generations;
    /// 5. refill the pool to `prewarm` paused instances (start, ready, pause)
    ///    and `precreate` created ones, after the endpoints are out, so it
    ///    never delays a request.
    async fn converge(
        &self,
        spec: &FunctionSpec,
        generation: u64,
        serving: bool,
        started: Instant,
    ) -> Result<(), HandlerError> {
        let name = spec.name();
        let (exited, live): (Vec<Instance>, Vec<Instance>) =
            self.instances_of(name).await?.into_iter().partition(|i| i.state == InstanceState::Exited);
        // What died (crash, OOM, killed) is removed; it is replaced below.
        for dead in &exited {
            tracing::info!(instance = %dead.id, "removing an exited instance");
            self.runtime.stop(&dead.id).await?;
        }
        tracing::debug!(elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "listed instances");
        let (mine, others): (Vec<Instance>, Vec<Instance>) = live.into_iter().partition(|i| i.generation == generation);
        let (mut paused, mut created, mut running) = (Vec::new(), Vec::new(), Vec::new());
        for i in mine {
            match i.state {
                InstanceState::Paused => paused.push(i),
                InstanceState::Created => created.push(i),
                _ => running.push(i),
            }
        }
        let want = self.want(spec, generation);
        let prewarm = usize::try_from(spec.scaling().prewarm()).unwrap_or(0);
        let precreate = usize::try_from(spec.scaling().precreate()).unwrap_or(0);
        if !serving || !others.is_empty() {
            self.status(name, generation, Phase::Deploying, None, false).await;
        }
        let cold = running.is_empty() && want > 0;
        let mut tier = None;
        let mut prepared = false;
        while running.len() < want {
            let Some(p) = paused.pop() else { break };
            running.push(self.runtime.resume(&p.id).await?);
            tier.get_or_insert("resume");
            tracing::debug!(elapsed_ms = started.elapsed().as_secs_f64() * 1e3, instance = %p.id, "resumed");
        }
        if running.len() < want && !created.is_empty() {
            let n = (want - running.len()).min(created.len());
            self.check_capacity(spec, n).await?;
            let chosen: Vec<Instance> = created.drain(..n).collect();
            let results =
                futures::future::join_all(chosen.iter().map(|c| self.runtime.start_created(spec, &c.id))).await;
            collect_started(results, &mut running)?;
            tier.get_or_insert("start_created");
            tracing::debug!(elapsed_ms = started.elapsed().as_secs_f64() * 1e3, n, "started created instances");
        }
        if running.len() < want {
            let n = want - running.len();
            self.runtime.prepare(spec).await?;
            prepared = true;
            self.check_capacity(spec, n).await?;
            let results = futures::future::join_all((0..n).map(|_| self.runtime.start(spec, generation))).await;
            collect_started(results, &mut running)?;
            tier.get_or_insert("create");
        }
        // Instances beyond `want` leave the edge first, and are paused or stopped after the drain.
        let extras = if running.len() > want { running.split_off(want) } else { Vec::new() };
        let mut endpoints: Vec<_> = running.iter().map(|i| i.endpoint).collect();
        endpoints.sort();
        let timeout_ms = u64::try_from(spec.timeout().as_millis()).unwrap_or(u64::MAX);
        self.publish(
            Event::EndpointsChanged { name: name.clone(), generation, endpoints, timeout_ms, removed: false },
            topics::ROUTES,
        )
        .await?;
        if let (true, Some(tier)) = (cold, tier) {
            let took = started.elapsed();
            metrics::histogram!("pilotlight_cold_start_seconds", "function" => name.to_string(), "tier" => tier)
                .record(took.as_secs_f64());
            tracing::info!(function = %name, tier, took_ms = took.as_secs_f64() * 1000.0, "cold start");
        }
        if !extras.is_empty() || !others.is_empty() {
            // The edge gets the new endpoints through the router worker; requests
            // already on the instances that leave get `drain` to finish.
            tokio::time::sleep(self.config.drain).await;
        }
        let mut leaving = Vec::new();
        for mut extra in extras {
            // Pausing freezes what runs: an extra still serving a request leaves
            // the other way (stopped once idle), and the pool is refilled below.
            if paused.len() < prewarm && idle_within(self.load.as_deref(), &extra, self.config.drain).await {
                self.runtime.pause(&extra.id).await?;
                extra.state = InstanceState::Paused;
                paused.push(extra);
            } else {
                leaving.push(extra);
            }
        }
        leaving.extend(others);
        self.stop_in_background(leaving, spec.timeout());
        while paused.len() > prewarm {
            if let Some(extra) = paused.pop() {
                self.runtime.stop(&extra.id).await?;
            }
        }
        let missing = prewarm.saturating_sub(paused.len());
        if missing > 0 {
            match self.refill(spec, generation, missing, prepared).await {
                Ok(()) => prepared = true,
                Err(e) => {
                    tracing::warn!(function = %name, error = %e.message, "the pool of paused instances was not refilled")
                }
            }
        }
        if created.len() > precreate {
            self.stop_in_background(created.split_off(precreate), Duration::ZERO);
        }
        let missing = precreate - created.len();
        if missing > 0
            && let Err(e) = self.precreate(spec, generation, missing, prepared).await
        {
            tracing::warn!(function = %name, error = %e.message, "the created (not started) instances were not made");
        }
        Ok(())
    }

    /// Creates `n` instances without starting them (the pool's second tier).
    /// A runtime that cannot is not an error: the tier is skipped.
    async fn precreate(
        &self,
        spec: &FunctionSpec,
        generation: u64,
        n: usize,
        prepared: bool,
    ) -> Result<(), HandlerError> {
        if !prepared {
            self.runtime.prepare(spec).await?;
        }
        for _ in 0..n {
            match self.runtime.create(spec, generation).await {
                Ok(_) => {}
                Err(RuntimeError::Unsupported(what)) => {
                    tracing::debug!(function = %spec.name(), %what, "the runtime cannot create without starting; precreate skipped");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Stops instances that no longer serve without holding up this
    /// function's next event: a stop can take the runtime's whole grace period
    /// (a container whose process ignores SIGTERM), and an activation waiting
    /// behind it would wait that long. They are out of the routes already; a
    /// stop that fails is retried by the next reconcile, which sees them.
    ///
    /// With the edge's counts, each waits until no request is in flight on it,
    /// up to `patience` (the function's timeout: the edge gives up on a
    /// request by then anyway).
    fn stop_in_background(&self, instances: Vec<Instance>, patience: Duration) {
        if instances.is_empty() {
            return;
        }
        let runtime = Arc::clone(&self.runtime);
        let leaving = Arc::clone(&self.leaving);
        let load = self.load.clone();
        leaving.lock().unwrap_or_else(|p| p.into_inner()).extend(instances.iter().map(|i| i.id.clone()));
        tokio::spawn(async move {
            for i in &instances {
                if !idle_within(load.as_deref(), i, patience).await {
                    tracing::warn!(instance = %i.id, ?patience, "requests still in flight after the function's timeout; stopping anyway");
                }
            }
            for i in instances {
                tracing::info!(instance = %i.id, generation = i.generation, "stopping an instance that left the routes");
                if let Err(e) = runtime.stop(&i.id).await {
                    tracing::warn!(instance = %i.id, error = %e, "cannot stop an instance that left the routes");
                }
                leaving.lock().unwrap_or_else(|p| p.into_inner()).remove(&i.id);
            }
        });
    }

    /// Starts `n` instances, waits for each to be ready, and pauses it.
    async fn refill(&self, spec: &FunctionSpec, generation: u64, n: usize, prepared: bool) -> Result<(), HandlerError> {
        if !prepared {
            self.runtime.prepare(spec).await?;
        }
        self.check_capacity(spec, n).await?;
        let one = || async {
            let instance = self.runtime.start(spec, generation).await?;
            if let Err(e) = self.runtime.pause(&instance.id).await {
                let _ = self.runtime.stop(&instance.id).await;
                return Err(HandlerError::from(e));
            }
            Ok::<_, HandlerError>(())
        };
        for r in futures::future::join_all((0..n).map(|_| one())).await {
            r?;
        }
        Ok(())
    }

    /// Refuses to start `n` more instances of `spec` when their memory limits
    /// would take the sum over the budget. Checked before anything starts, so
    /// a refused scale-up leaves nothing half-created.
    async fn check_capacity(&self, spec: &FunctionSpec, n: usize) -> Result<(), HandlerError> {
        let Some(budget) = self.config.memory_budget_mb else { return Ok(()) };
        let memory: HashMap<FunctionName, u64> = self
            .store
            .list()
            .await?
            .into_iter()
            .map(|r| (r.spec.name().clone(), u64::from(r.spec.limits().memory_mb())))
            .collect();
        // Created (not started) instances hold no memory until they start, and then they are counted.
        let live: Vec<Instance> = self
            .runtime
            .list()
            .await?
            .into_iter()
            .filter(|i| matches!(i.state, InstanceState::Running | InstanceState::Paused))
            .collect();
        let default = u64::from(crate::model::Limits::DEFAULT_MEMORY_MB);
        let used: u64 = live.iter().map(|i| memory.get(&i.function).copied().unwrap_or(default)).sum();
        let need = u64::try_from(n).unwrap_or(u64::MAX).saturating_mul(u64::from(spec.limits().memory_mb()));
        if used.saturating_add(need) > budget {
            return Err(HandlerError::fatal(format!(
                "capacity: {n} more instance(s) of `{}` need {need} MiB, but {used} MiB of the {budget} MiB memory budget \
                 are held by {} instance(s); delete functions, lower limits.memory_mb or scaling, or raise the budget",
                spec.name(),
                live.len()
            )));
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
            Event::ScaleRequested { name, generation, running, reason } => match self.store.get(&name).await? {
                Some(r) if r.generation == generation && !r.deleted => {
                    tracing::info!(function = %name, running, %reason, "scale");
                    self.set_desired(&name, generation, running, false);
                    self.converge_or_report(&r.spec, r.generation, attempt).await
                }
                _ => {
                    tracing::debug!(function = %name, generation, "scale for another generation ignored");
                    Ok(())
                }
            },
            Event::ActivationRequested { name } => match self.store.get(&name).await? {
                Some(r) if !r.deleted => {
                    self.set_desired(&name, r.generation, 1, true);
                    self.converge_or_report(&r.spec, r.generation, attempt).await
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}
