use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::autoscaler::{Autoscaler, AutoscalerConfig};
use super::consume::{EventHandler, run_consumer};
use super::error::PlatformError;
use super::groups;
use super::router_worker::RouterWorker;
use super::runtime_worker::{RuntimeWorker, RuntimeWorkerConfig};
use super::status_worker::StatusWorker;
use super::urls::PublicUrls;
use crate::events::{Event, topics};
use crate::model::{
    Domain, FunctionName, FunctionRecord, FunctionSpec, FunctionStatus, Phase, Region, ValidationError,
};
use crate::model::{Instance, InstanceId, InstanceState};
use crate::ports::{
    ActivationError, Activator, LoadSource, LogLine, LogOptions, Queue, Router, Runtime, RuntimeError, Store,
    StoreError,
};

/// What a deploy or delete call accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployReceipt {
    /// The function.
    pub name: FunctionName,
    /// The generation that will be (or was) converged to.
    pub generation: u64,
    /// The phase right after the call.
    pub phase: Phase,
    /// The public URL.
    pub url: String,
}

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
    runtime_concurrency: usize,
    status_group: String,
    worker: RuntimeWorkerConfig,
    autoscaler: Option<(Arc<dyn LoadSource>, AutoscalerConfig)>,
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
            runtime_concurrency: 16,
            status_group: groups::STATUS.to_owned(),
            worker: RuntimeWorkerConfig::default(),
            autoscaler: None,
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
    /// How many deployment events the runtime worker handles at once (default 16).
    pub fn runtime_concurrency(mut self, n: usize) -> Self {
        self.runtime_concurrency = n.max(1);
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

    /// How long old instances keep serving after a new generation's
    /// endpoints are published, so requests on them finish (default 2 s).
    pub fn drain(mut self, drain: Duration) -> Self {
        self.worker.drain = drain;
        self
    }

    /// Runs the autoscaler on the edge's load (e.g. the gateway). Without it,
    /// functions run `max(min, 1)` instances and scale only from zero on a request.
    /// The same counts let drains wait for requests in flight on leaving instances.
    pub fn autoscaler(mut self, load: Arc<dyn LoadSource>, config: AutoscalerConfig) -> Self {
        self.autoscaler = Some((load, config));
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
                runtime_concurrency: self.runtime_concurrency,
                status_group: self.status_group,
                worker: self.worker,
                autoscaler: Mutex::new(self.autoscaler),
                changed: watch::Sender::new(0),
                cancel: CancellationToken::new(),
                tasks: Mutex::new(JoinSet::new()),
            }),
        })
    }
}

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
    runtime_concurrency: usize,
    status_group: String,
    worker: RuntimeWorkerConfig,
    autoscaler: Mutex<Option<(Arc<dyn LoadSource>, AutoscalerConfig)>>,
    changed: watch::Sender<u64>,
    cancel: CancellationToken,
    tasks: Mutex<JoinSet<()>>,
}

/// How often a deploy retries its compare-and-set against concurrent writers.
const CAS_TRIES: usize = 8;

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

    /// Subscribes the workers, resyncs (stops orphans, reconciles every stored
    /// function, re-applies the route table) and runs them until [`shutdown`](Self::shutdown).
    pub async fn start(&self) -> Result<(), PlatformError> {
        let inner = &self.inner;
        let mut tasks = inner.tasks.lock().await;
        // Subscribe every group before publishing anything, so no event falls before a group exists.
        let status_sub = inner.queue.subscribe(topics::STATUS, &inner.status_group).await?;
        let status = Arc::new(StatusWorker::new(Arc::clone(&inner.store), inner.changed.clone()));
        tasks.spawn(run_consumer("status", status_sub, status, 1, inner.cancel.clone()));

        if let Some(router) = &inner.router {
            let sub = inner.queue.subscribe(topics::ROUTES, groups::ROUTER).await?;
            let worker = RouterWorker::new(Arc::clone(&inner.queue), Arc::clone(router), inner.urls.clone());
            let records = inner.store.list().await?;
            worker.resync(&records).await.map_err(|e| PlatformError::Config(format!("router resync: {e}")))?;
            tasks.spawn(run_consumer(
                "router",
                sub,
                Arc::new(worker) as Arc<dyn EventHandler>,
                1,
                inner.cancel.clone(),
            ));
        }

        if let Some(runtime) = &inner.runtime {
            let sub = inner.queue.subscribe(topics::DEPLOYMENTS, groups::RUNTIME).await?;
            let mut worker = RuntimeWorker::with_config(
                Arc::clone(&inner.queue),
                Arc::clone(runtime),
                Arc::clone(&inner.store),
                inner.worker.clone(),
            );
            if let Some((load, _)) = inner.autoscaler.lock().await.as_ref() {
                worker = worker.with_load_source(Arc::clone(load));
            }
            let worker = Arc::new(worker);
            worker.resync().await.map_err(|e| PlatformError::Config(format!("runtime resync: {e}")))?;
            let watcher = Arc::clone(&worker);
            let cancel = inner.cancel.clone();
            tasks.spawn(async move { watcher.watch_exits(cancel).await });
            tasks.spawn(run_consumer("runtime", sub, worker, inner.runtime_concurrency, inner.cancel.clone()));
        }
        if let Some((load, config)) = inner.autoscaler.lock().await.take() {
            let scaler = Autoscaler::new(Arc::clone(&inner.queue), Arc::clone(&inner.store), load, config);
            tasks.spawn(scaler.run(inner.cancel.clone()));
        }
        tracing::info!(
            domain = %inner.urls.domain,
            region = %inner.region,
            runtime = inner.runtime.is_some(),
            router = inner.router.is_some(),
            "platform started"
        );
        Ok(())
    }

    /// The activator an edge calls to wake a function with no ready instance.
    pub fn activator(&self) -> Arc<dyn Activator> {
        Arc::new(PlatformActivator(Arc::downgrade(&self.inner)))
    }

    /// Stops the workers: they finish the events in hand (up to 30 s) and take no more.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let mut tasks = self.inner.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
    }

    /// Creates or updates a function. Checks the region, records the spec with
    /// the next generation and queues the deploy; if the queue refuses, the
    /// record is put back as it was. Deploying the spec that is already wanted
    /// changes nothing and returns its current generation.
    pub async fn deploy(&self, spec: FunctionSpec) -> Result<DeployReceipt, PlatformError> {
        let spec = match spec.region() {
            None => spec.with_region(self.inner.region.clone()),
            Some(r) if *r == self.inner.region => spec,
            Some(r) => {
                return Err(ValidationError::new(
                    "region",
                    format!("this node serves region `{}`, not `{r}`", self.inner.region),
                )
                .into());
            }
        };
        let name = spec.name().clone();
        for _ in 0..CAS_TRIES {
            let previous = self.inner.store.get(&name).await?;
            if let Some(p) = previous.as_ref().filter(|p| !p.deleted && p.spec == spec) {
                return Ok(self.receipt(p));
            }
            let generation = previous.as_ref().map_or(1, |p| p.generation + 1);
            let record = FunctionRecord {
                spec: spec.clone(),
                generation,
                deleted: false,
                status: FunctionStatus {
                    url: Some(self.url_for(&name)),
                    ..FunctionStatus::new(Phase::Pending, generation)
                },
            };
            let event = Event::DeployRequested { spec: spec.clone(), generation };
            match self.write_then_publish(previous, record.clone(), event).await {
                Ok(()) => return Ok(self.receipt(&record)),
                Err(PlatformError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(PlatformError::Conflict(name))
    }

    /// Asks for `running` instances of a function now (clamped to its `min`
    /// and `max`), as the autoscaler does; the autoscaler may change it again
    /// on its next tick. `0` scales to zero: the pool stays paused.
    pub async fn scale(&self, name: &FunctionName, running: u32) -> Result<(), PlatformError> {
        let record = self.get(name).await?.ok_or_else(|| PlatformError::NotFound(name.clone()))?;
        let event = Event::ScaleRequested {
            name: name.clone(),
            generation: record.generation,
            running,
            reason: "asked through Platform::scale".into(),
        };
        self.inner.queue.publish(topics::DEPLOYMENTS, event.to_message()).await?;
        Ok(())
    }

    /// Deletes a function: its instances stop and its route goes. Idempotent.
    pub async fn delete(&self, name: &FunctionName) -> Result<DeployReceipt, PlatformError> {
        for _ in 0..CAS_TRIES {
            let previous = self.inner.store.get(name).await?.ok_or_else(|| PlatformError::NotFound(name.clone()))?;
            if previous.deleted {
                if previous.status.phase == Phase::Deleted {
                    return Err(PlatformError::NotFound(name.clone()));
                }
                return Ok(self.receipt(&previous));
            }
            let generation = previous.generation + 1;
            let record = FunctionRecord {
                spec: previous.spec.clone(),
                generation,
                deleted: true,
                status: FunctionStatus::new(Phase::Deleting, generation),
            };
            let event = Event::DeleteRequested { name: name.clone(), generation };
            match self.write_then_publish(Some(previous), record.clone(), event).await {
                Ok(()) => return Ok(self.receipt(&record)),
                Err(PlatformError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(PlatformError::Conflict(name.clone()))
    }

    /// Stores `record` over `previous`, then publishes `event`. If publishing
    /// fails the store is put back, so a refused call leaves nothing behind.
    async fn write_then_publish(
        &self,
        previous: Option<FunctionRecord>,
        record: FunctionRecord,
        event: Event,
    ) -> Result<(), PlatformError> {
        let store = &self.inner.store;
        let name = record.spec.name().clone();
        let generation = record.generation;
        store.compare_and_set(previous.as_ref().map(|p| p.generation), record).await?;
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
        if let Err(e) = self.inner.queue.publish(topics::DEPLOYMENTS, event.to_message()).await {
            let undo = match previous {
                Some(p) => store.compare_and_set(Some(generation), p).await,
                None => store.delete(&name, generation).await,
            };
            if let Err(undo) = undo {
                tracing::error!(function = %name, error = %undo, "cannot undo the record after the queue refused; resync will converge it");
            }
            return Err(e.into());
        }
        Ok(())
    }

    fn receipt(&self, r: &FunctionRecord) -> DeployReceipt {
        DeployReceipt {
            name: r.spec.name().clone(),
            generation: r.generation,
            phase: r.status.phase,
            url: self.url_for(r.spec.name()),
        }
    }

    /// One function's record; `None` once it is deleted.
    pub async fn get(&self, name: &FunctionName) -> Result<Option<FunctionRecord>, PlatformError> {
        Ok(self.inner.store.get(name).await?.filter(|r| !is_gone(r)))
    }

    /// Every function that is not deleted, by name.
    pub async fn list(&self) -> Result<Vec<FunctionRecord>, PlatformError> {
        Ok(self.inner.store.list().await?.into_iter().filter(|r| !is_gone(r)).collect())
    }

    /// Waits until the function's current generation is ready and returns its
    /// record; fails at once if it failed for good, or when `timeout` passes.
    pub async fn wait_ready(&self, name: &FunctionName, timeout: Duration) -> Result<FunctionRecord, PlatformError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.inner.changed.subscribe();
        loop {
            changed.mark_unchanged();
            let record = self.inner.store.get(name).await?.ok_or_else(|| PlatformError::NotFound(name.clone()))?;
            let status = &record.status;
            if record.deleted {
                return Err(PlatformError::NotFound(name.clone()));
            }
            if status.generation == record.generation {
                match status.phase {
                    Phase::Ready => return Ok(record),
                    Phase::Failed if !status.will_retry => {
                        return Err(PlatformError::Failed {
                            name: name.clone(),
                            message: status.message.clone().unwrap_or_default(),
                        });
                    }
                    _ => {}
                }
            }
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                return Err(PlatformError::Timeout {
                    name: name.clone(),
                    waited: timeout,
                    phase: record.status.phase,
                    message: record.status.message.clone(),
                });
            }
        }
    }

    /// Waits until a deleted function is completely gone (instances stopped, route removed).
    pub async fn wait_deleted(&self, name: &FunctionName, timeout: Duration) -> Result<(), PlatformError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.inner.changed.subscribe();
        loop {
            changed.mark_unchanged();
            let record = self.inner.store.get(name).await?;
            let Some(record) = record.filter(|r| !is_gone(r)) else { return Ok(()) };
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                return Err(PlatformError::Timeout {
                    name: name.clone(),
                    waited: timeout,
                    phase: record.status.phase,
                    message: record.status.message,
                });
            }
        }
    }
}

impl Platform {
    /// The instances of a function that this process's runtime runs (running,
    /// paused or created); `None` when the runtime runs in another process.
    pub async fn instances(&self, name: &FunctionName) -> Result<Option<Vec<Instance>>, PlatformError> {
        let Some(runtime) = &self.inner.runtime else { return Ok(None) };
        let mut all: Vec<Instance> = runtime.list().await?.into_iter().filter(|i| &i.function == name).collect();
        all.sort_by(|a, b| b.generation.cmp(&a.generation).then_with(|| a.id.cmp(&b.id)));
        Ok(Some(all))
    }

    /// The logs of the function's instances, merged as lines arrive. `tail`
    /// applies to each instance present at the call. With `follow`, the
    /// stream stays open until the function is deleted (or the reader goes),
    /// and instances that start later join it with everything they wrote.
    pub async fn logs(
        &self,
        name: &FunctionName,
        options: LogOptions,
    ) -> Result<futures::stream::BoxStream<'static, Result<InstanceLogLine, RuntimeError>>, PlatformError> {
        use futures::StreamExt;
        if self.get(name).await?.is_none() {
            return Err(PlatformError::NotFound(name.clone()));
        }
        let Some(runtime) = &self.inner.runtime else {
            return Err(PlatformError::Unsupported(
                "this process runs no runtime, so it holds no logs; ask the process that runs the instances".into(),
            ));
        };
        // Subscribed before the first listing, so an instance that starts
        // right after it is seen by the follow below.
        let changed = self.inner.changed.subscribe();
        let mut streams = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for instance in runtime.list().await?.into_iter().filter(|i| &i.function == name) {
            // A created (not started) instance has written nothing; it joins once it runs.
            if instance.state == InstanceState::Created {
                continue;
            }
            match runtime.logs(&instance.id, options).await {
                Ok(s) => {
                    seen.insert(instance.id.clone());
                    streams.push(labelled(instance.id, s));
                }
                // It stopped between the list and now: it has nothing to say.
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let merged = futures::stream::select_all(streams);
        if !options.follow {
            return Ok(merged.boxed());
        }
        let follow = FollowedLogs {
            runtime: Arc::clone(runtime),
            store: Arc::clone(&self.inner.store),
            name: name.clone(),
            changed,
            seen,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(follow.run(merged, tx));
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
    }

    /// Every change of any function's status, as it is recorded here. With
    /// `snapshot`, the stream first yields the current status of every
    /// function, so a reader needs nothing else to stay in sync. A function
    /// that is deleted for good yields one last update with phase `deleted`.
    pub fn status_changes(&self, snapshot: bool) -> futures::stream::BoxStream<'static, StatusUpdate> {
        use futures::StreamExt;
        use std::collections::{BTreeMap, VecDeque};
        struct State {
            store: Arc<dyn Store>,
            changed: watch::Receiver<u64>,
            last: Option<BTreeMap<FunctionName, StatusUpdate>>,
            snapshot: bool,
            ready: VecDeque<StatusUpdate>,
        }
        let state = State {
            store: Arc::clone(&self.inner.store),
            changed: self.inner.changed.subscribe(),
            last: None,
            snapshot,
            ready: VecDeque::new(),
        };
        futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(u) = st.ready.pop_front() {
                    return Some((u, st));
                }
                if st.last.is_some() && st.changed.changed().await.is_err() {
                    return None;
                }
                st.changed.mark_unchanged();
                let records = match st.store.list().await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "status changes: cannot list functions");
                        continue;
                    }
                };
                let now: BTreeMap<FunctionName, StatusUpdate> = records
                    .iter()
                    .filter(|r| !is_gone(r))
                    .map(|r| (r.spec.name().clone(), StatusUpdate::of(r)))
                    .collect();
                match st.last.take() {
                    None if st.snapshot => st.ready.extend(now.values().cloned()),
                    None => {}
                    Some(last) => {
                        st.ready.extend(now.iter().filter(|(n, u)| last.get(*n) != Some(u)).map(|(_, u)| u.clone()));
                        st.ready.extend(last.into_iter().filter(|(n, _)| !now.contains_key(n)).map(|(_, mut u)| {
                            u.phase = Phase::Deleted;
                            u.ready_instances = 0;
                            u
                        }));
                    }
                }
                st.last = Some(now);
            }
        })
        .boxed()
    }
}

/// Wakes functions for an edge by asking the runtime worker to run at least
/// one instance (it resumes a paused one if the pool has one). Made by [`Platform::activator`].
///
/// It holds the platform weakly: the platform holds its router (the edge) and
/// the edge holds its activator, so a strong handle would be a cycle that keeps
/// both (and the store file) alive forever.
pub struct PlatformActivator(std::sync::Weak<Inner>);

#[async_trait::async_trait]
impl Activator for PlatformActivator {
    async fn activate(&self, name: &FunctionName) -> Result<(), ActivationError> {
        let inner =
            self.0.upgrade().ok_or_else(|| ActivationError::Unavailable("the platform has shut down".into()))?;
        match inner.store.get(name).await {
            Ok(Some(r)) if !r.deleted => {}
            Ok(_) => return Err(ActivationError::NotFound(name.clone())),
            Err(e) => return Err(ActivationError::Unavailable(e.to_string())),
        }
        let event = Event::ActivationRequested { name: name.clone() };
        inner
            .queue
            .publish(topics::DEPLOYMENTS, event.to_message())
            .await
            .map_err(|e| ActivationError::Unavailable(e.to_string()))
    }
}

/// One change of a function's status, as [`Platform::status_changes`] yields it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The function.
    pub name: FunctionName,
    /// The generation asked for.
    pub generation: u64,
    /// Where it is; `deleted` once it is gone.
    pub phase: Phase,
    /// Its public URL.
    pub url: Option<String>,
    /// Why it failed, or progress.
    pub message: Option<String>,
    /// For `failed`: whether the work is retried.
    pub will_retry: bool,
    /// How many ready endpoints the edge routes to.
    pub ready_instances: usize,
}

impl StatusUpdate {
    /// The status a record shows: `pending` until the workers report on its newest generation.
    pub fn of(r: &FunctionRecord) -> Self {
        // Until the workers report on the newest generation, it is pending.
        let current = r.status.generation == r.generation;
        Self {
            name: r.spec.name().clone(),
            generation: r.generation,
            phase: if current {
                r.status.phase
            } else if r.deleted {
                Phase::Deleting
            } else {
                Phase::Pending
            },
            url: r.status.url.clone(),
            message: r.status.message.clone(),
            will_retry: r.status.will_retry,
            ready_instances: r.status.endpoints.len(),
        }
    }
}

/// One log line of one instance, as [`Platform::logs`] yields it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceLogLine {
    /// The instance that wrote it.
    pub instance: InstanceId,
    /// The line.
    #[serde(flatten)]
    pub line: LogLine,
}

/// A delete that has completed: kept as a tombstone so generations keep rising.
fn is_gone(r: &FunctionRecord) -> bool {
    r.deleted && r.status.phase == Phase::Deleted && r.status.generation == r.generation
}

type LogLines = futures::stream::BoxStream<'static, Result<InstanceLogLine, RuntimeError>>;

fn labelled(id: InstanceId, s: crate::ports::LogStream) -> LogLines {
    use futures::StreamExt;
    s.map(move |line| line.map(|line| InstanceLogLine { instance: id.clone(), line })).boxed()
}

/// A followed log stream that adds instances as they start: on every status
/// change it lists the function's instances again and joins the new ones.
struct FollowedLogs {
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    name: FunctionName,
    changed: watch::Receiver<u64>,
    seen: std::collections::HashSet<InstanceId>,
}

impl FollowedLogs {
    async fn run(
        mut self,
        mut merged: futures::stream::SelectAll<LogLines>,
        tx: tokio::sync::mpsc::Sender<Result<InstanceLogLine, RuntimeError>>,
    ) {
        use futures::StreamExt;
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                line = merged.next(), if !merged.is_empty() => {
                    if let Some(line) = line
                        && tx.send(line).await.is_err()
                    {
                        return;
                    }
                }
                changed = self.changed.changed() => {
                    if changed.is_err() {
                        return; // the platform is gone
                    }
                    match self.store.get(&self.name).await {
                        Ok(Some(r)) if !r.deleted => {}
                        Ok(_) => return, // deleted: nothing more will come
                        Err(e) => {
                            tracing::debug!(error = %e, "followed logs: cannot read the function; trying at the next change");
                            continue;
                        }
                    }
                    let Ok(list) = self.runtime.list().await else { continue };
                    for i in list {
                        if i.function != self.name || i.state == InstanceState::Created || self.seen.contains(&i.id) {
                            continue;
                        }
                        // From its first line: it started after the reader asked.
                        if let Ok(s) = self.runtime.logs(&i.id, LogOptions { tail: None, follow: true }).await {
                            self.seen.insert(i.id.clone());
                            merged.push(labelled(i.id, s));
                        }
                    }
                }
            }
        }
    }
}
