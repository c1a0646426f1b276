//! The runtime worker: converges each function's instances on the Runtime to
//! what its record in the Store asks for, level-triggered.
//!
//! ```text
//! nudges: "deployments" events, runtime exits, the edge, a finished drain ─┐
//! periodic pass (every ~30 s, jittered): one Store list + one Runtime list ─┼─▶ work queue (by name)
//! backoff after a failure (1 s … 5 min, never gives up) ───────────────────┘        │
//!   reconcile(name): read the record ─ list instances ─ plan (pure) ─ execute ─ publish "Observed"
//! ```
//!
//! Events carry no intent: the record does (spec, generation, deleted,
//! desired scale). An event only makes a reconcile happen now instead of at
//! the next pass, so a lost event, a missed engine event or a container
//! removed behind the platform's back heals within one period.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod fast;

pub use fast::FastResume;

use super::cluster::{Membership, Ownership};
use super::consume::{Attempt, EventHandler};
use super::error::HandlerError;
use super::plan::{Plan, PlanInput, Step, plan};
use super::records;
use super::workqueue::{Backoff, Snapshot, WorkQueue, jitter};
use crate::events::{Event, topics};
use crate::model::{
    DesiredScale, Endpoint, FunctionName, FunctionRecord, FunctionSpec, Instance, InstanceId, InstanceState, NodeId,
    NodeInfo, Phase, Region,
};
use crate::ports::{LoadSource, Queue, Runtime, RuntimeError, RuntimeEvent, Store, StoreChanges};
use crate::support::now_ms;

/// Settings of a [`RuntimeWorker`].
#[derive(Clone, Debug)]
pub struct RuntimeWorkerConfig {
    /// The sum of the memory limits of all instances (running and paused)
    /// stays within this many MiB; `None` checks nothing.
    pub memory_budget_mb: Option<u64>,
    /// An instance taken out of the routes keeps running at least this long,
    /// so the edge switches and requests already on it finish (default 2 s).
    /// With the edge's counts ([`RuntimeWorker::with_load_source`]), one still
    /// serving a request after that leaves only once the request ends
    /// (bounded by the function's timeout). The drain runs in the background:
    /// the function's next reconcile never waits for it.
    pub drain: Duration,
    /// How often every function is reconciled even if nothing asked
    /// (default 30 s, jittered by ±10%). Drift from any cause heals within it.
    pub resync_period: Duration,
    /// The first retry after a failure (default 1 s); it doubles per failure.
    pub backoff_min: Duration,
    /// The longest wait between retries (default 5 min). A failure that will
    /// not go away by itself (an image that cannot be had) waits this long.
    pub backoff_max: Duration,
    /// How many functions are reconciled at once (default 16; one reconcile
    /// per function at a time whatever this is).
    pub concurrency: usize,
}

impl Default for RuntimeWorkerConfig {
    fn default() -> Self {
        Self {
            memory_budget_mb: None,
            drain: Duration::from_secs(2),
            resync_period: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            concurrency: 16,
        }
    }
}

/// What one pass looked at, for logs and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Functions scheduled for a reconcile.
    pub functions: usize,
    /// Instances the runtime listed (its one `list` call).
    pub instances: usize,
    /// Functions left alone because they back off after a failure.
    pub backing_off: usize,
}

/// What the worker remembers of a function between reconciles. None of it is
/// intent: a restart loses it and the first pass rebuilds it.
#[derive(Default)]
struct Memory {
    generation: u64,
    /// The endpoints the edge was last asked to route, and for which generation.
    published: Option<(u64, Vec<Endpoint>)>,
    failures: u32,
    next_retry: Option<Instant>,
    /// When the last reconcile ended: a pass snapshot older than that is stale.
    finished: Option<Instant>,
    /// The last observation published, and when.
    observed: Option<(Observation, Instant)>,
    /// Since when this node, no longer the owner, waits for the new owner to
    /// serve before it stops its instances (a handover).
    handing_over: Option<Instant>,
}

/// The least a node that loses a function waits for the new owner to serve
/// it before it stops serving it anyway (three TTLs when that is longer).
const HANDOVER_PATIENCE: Duration = Duration::from_secs(10);

/// What in a record is intent: a change of it is a reconcile on every node.
/// (Status changes are not: they come from the reconciles themselves, every
/// node would reconcile again on each, and a node waiting on one, in a
/// handover, looks again every 250 ms.)
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    generation: u64,
    deleted: bool,
    running: Option<u32>,
}

impl Fingerprint {
    fn of(r: &FunctionRecord) -> Self {
        Self { generation: r.generation, deleted: r.deleted, running: r.scale.running }
    }
}

/// What a reconcile ended with.
enum Outcome {
    /// Nothing is left of the function (no record, or its delete is complete).
    Gone,
    /// The record and the instances as they are after the steps.
    Converged(Box<FunctionRecord>, Option<Vec<Instance>>),
    /// Another node runs it (or this node is fenced): nothing to report.
    NotOurs,
}

/// This worker's node in a cluster.
#[derive(Clone)]
struct Node {
    membership: Arc<Membership>,
    /// The region of specs that name none.
    region: Region,
    /// How long a fenced node keeps its instances before it stops them.
    grace: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Observation {
    generation: u64,
    instances: Vec<Instance>,
    wanted: u32,
    published: Vec<Endpoint>,
    error: Option<String>,
    permanent: bool,
    attempts: u32,
}

struct Leaving {
    function: FunctionName,
    into_pool: bool,
}

/// A failed reconcile, with what was seen before it failed.
struct Failure {
    error: HandlerError,
    record: Option<FunctionRecord>,
    world: Option<Vec<Instance>>,
}

impl<E: Into<HandlerError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure { error: e.into(), record: None, world: None }
    }
}

/// Converges functions on the Runtime; see the module docs.
pub struct RuntimeWorker {
    queue: Arc<dyn Queue>,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    config: RuntimeWorkerConfig,
    load: Option<Arc<dyn LoadSource>>,
    work: Arc<WorkQueue>,
    memory: Mutex<HashMap<FunctionName, Memory>>,
    /// Instances retiring in the background: not the planner's to see until
    /// their drain ends (paused into the pool, or stopped).
    leaving: Arc<Mutex<HashMap<InstanceId, Leaving>>>,
    background: Mutex<JoinSet<()>>,
    stop_background: CancellationToken,
    can_precreate: AtomicBool,
    pass_enabled: AtomicBool,
    passes: AtomicU64,
    node: Option<Node>,
    changes: Option<Arc<dyn StoreChanges>>,
}

impl RuntimeWorker {
    /// A worker over these ports. `store` holds the records (the platform's
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
        Self {
            queue,
            runtime,
            store,
            config,
            load: None,
            work: Arc::new(WorkQueue::new()),
            memory: Mutex::default(),
            leaving: Arc::default(),
            background: Mutex::new(JoinSet::new()),
            stop_background: CancellationToken::new(),
            can_precreate: AtomicBool::new(true),
            pass_enabled: AtomicBool::new(true),
            passes: AtomicU64::new(0),
            node: None,
            changes: None,
        }
    }

    /// Reconciles a function as soon as its record changes in the Store,
    /// whoever changed it (another node, through a shared Store), not only
    /// when a nudge or the periodic pass asks.
    pub fn with_store_changes(mut self, changes: Arc<dyn StoreChanges>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// Runs as one node of a cluster: only the functions `membership` says
    /// this node owns run here (with their pools); for the others it routes
    /// to the owner's gateway and stops what it has, once the owner serves.
    /// Specs without a region are in `region`. Cut off from the membership
    /// backend beyond its TTL it takes no ownership action, and after
    /// `grace` more it stops its instances.
    pub fn with_membership(mut self, membership: Arc<Membership>, region: Region, grace: Duration) -> Self {
        self.node = Some(Node { membership, region, grace });
        self
    }

    fn node_id(&self) -> Option<NodeId> {
        self.node.as_ref().filter(|n| n.membership.is_clustered()).map(|n| n.membership.id().clone())
    }

    /// Reads the edge's per-endpoint request counts during drains, so a
    /// request longer than `drain` on a leaving instance is not cut.
    pub fn with_load_source(mut self, load: Arc<dyn LoadSource>) -> Self {
        self.load = Some(load);
        self
    }

    /// Turns the periodic pass (and the re-list after a runtime reconnect)
    /// off or on. Only for tests that show what the pass is for.
    pub fn set_pass_enabled(&self, enabled: bool) {
        self.pass_enabled.store(enabled, Ordering::SeqCst);
    }

    /// How many passes ran.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::SeqCst)
    }

    /// Runs the worker's loops until `cancel` fires: `concurrency` reconcile
    /// loops, the periodic pass (the first one at once) and the runtime's
    /// event watch. [`shutdown`](Self::shutdown) then stops background drains.
    pub fn spawn(self: &Arc<Self>, tasks: &mut JoinSet<()>, cancel: &CancellationToken) {
        for _ in 0..self.config.concurrency.max(1) {
            tasks.spawn(Arc::clone(self).reconcile_loop(cancel.clone()));
        }
        tasks.spawn(Arc::clone(self).pass_loop(cancel.clone()));
        tasks.spawn(Arc::clone(self).watch_runtime(cancel.clone()));
        if let Some(changes) = &self.changes {
            let mut stream = changes.changes();
            let worker = Arc::clone(self);
            let cancel = cancel.clone();
            tasks.spawn(async move {
                // Only a change of intent (spec, delete, scale); not the status writes.
                let mut seen: HashMap<FunctionName, Fingerprint> = HashMap::new();
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        next = stream.next() => match next {
                            Some((name, record)) => {
                                let print = record.as_ref().map(Fingerprint::of);
                                if print.is_none() || seen.get(&name) != print.as_ref() {
                                    worker.nudge_gently(&name);
                                }
                                match print {
                                    Some(p) => seen.insert(name, p),
                                    None => seen.remove(&name),
                                };
                            }
                            None => return,
                        },
                    }
                }
            });
        }
    }

    /// Stops the drains still running in the background. The instances they
    /// held stay as they are; the next start's first pass sees them and
    /// retires them again.
    pub async fn shutdown(&self) {
        self.stop_background.cancel();
        let mut set = std::mem::take(&mut *self.background.lock());
        while set.join_next().await.is_some() {}
    }

    /// Asks for a reconcile of `name` now.
    pub fn nudge(&self, name: &FunctionName) {
        self.work.schedule(name, Instant::now());
    }

    /// Asks for a reconcile of `name` now, unless it is backing off after a
    /// failure (then at its next retry): for signals that say "something may
    /// have changed" rather than "the user asked".
    fn nudge_gently(&self, name: &FunctionName) {
        let at = self.memory.lock().get(name).and_then(|m| m.next_retry).unwrap_or_else(Instant::now);
        self.work.schedule(name, at.max(Instant::now()));
    }

    /// Runs one pass now and waits until every reconcile it scheduled has
    /// ended. For benchmarks and tests; the worker's loops must be running.
    pub async fn pass_and_settle(&self) -> Result<PassReport, HandlerError> {
        let report = self.pass(true).await?;
        while self.work.len() > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(report)
    }

    async fn reconcile_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            // A reconcile in hand finishes; only the wait for the next one is cut.
            let (name, snapshot) = tokio::select! {
                _ = cancel.cancelled() => return,
                next = self.work.next() => next,
            };
            let span = tracing::info_span!("reconcile", function = %name);
            self.reconcile_and_record(&name, snapshot).instrument(span).await;
            self.work.done(&name);
        }
    }

    async fn pass_loop(self: Arc<Self>, cancel: CancellationToken) {
        let mut first = true;
        let mut nodes = self.node.as_ref().map(|n| n.membership.subscribe());
        loop {
            if !first {
                let period = self.config.resync_period.mul_f64(0.9 + 0.2 * jitter());
                let nodes_changed = async {
                    if let Some(rx) = nodes.as_mut()
                        && rx.changed().await.is_ok()
                    {
                        return;
                    }
                    std::future::pending::<()>().await;
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                    // The live nodes changed: functions may have moved, here or away.
                    () = nodes_changed => first = true,
                }
            }
            // The first pass (at start) takes everything, backoff or not: nothing is known yet.
            if let Err(e) = self.pass(first).await {
                tracing::warn!(error = %e.message, "periodic pass failed; trying again at the next one");
            }
            first = false;
        }
    }

    /// Turns the runtime's events into reconciles: an exit, the function now;
    /// a reconnect (events may have been missed), a pass.
    async fn watch_runtime(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let mut events = self.runtime.events();
            loop {
                let event = tokio::select! {
                    _ = cancel.cancelled() => return,
                    e = events.next() => e,
                };
                match event {
                    Some(RuntimeEvent::Exited { id, function, generation, reason }) => {
                        tracing::warn!(%function, instance = %id, generation, ?reason, "instance exited; reconciling");
                        self.nudge_gently(&function);
                    }
                    Some(RuntimeEvent::Resync { reason }) => {
                        tracing::info!(%reason, "runtime events may have been missed; listing everything again");
                        if let Err(e) = self.pass(true).await {
                            tracing::warn!(error = %e.message, "pass after a runtime resync failed");
                        }
                    }
                    #[allow(unreachable_patterns)]
                    Some(_) => {}
                    None => break,
                }
            }
            // The stream ended (a runtime that cannot watch): listen again, the pass covers the gap.
            tracing::debug!("runtime event stream ended; subscribing again");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One look at everything: one Store list and one Runtime list, then a
    /// reconcile of every function (with what the list saw), and of every
    /// function that has instances but no live record (they are stopped).
    /// `ignore_backoff` also takes functions that back off after a failure.
    pub async fn pass(&self, ignore_backoff: bool) -> Result<PassReport, HandlerError> {
        if !self.pass_enabled.load(Ordering::SeqCst) {
            return Ok(PassReport::default());
        }
        self.passes.fetch_add(1, Ordering::SeqCst);
        let records = self.store.list().await?;
        let listed = match self.runtime.list().await {
            Ok(l) => Some(l),
            Err(e) => {
                // Each reconcile will say so in its function's status.
                tracing::warn!(error = %e, "pass: the runtime cannot list its instances");
                None
            }
        };
        let taken = Instant::now();
        let mut by_function: HashMap<FunctionName, Vec<Instance>> = HashMap::new();
        for i in listed.iter().flatten() {
            by_function.entry(i.function.clone()).or_default().push(i.clone());
        }
        let mut names: Vec<FunctionName> = records
            .iter()
            .filter(|r| !is_gone(r) || by_function.contains_key(r.spec.name()))
            .map(|r| r.spec.name().clone())
            .collect();
        let known: HashSet<FunctionName> = records.iter().map(|r| r.spec.name().clone()).collect();
        names.extend(by_function.keys().filter(|n| !known.contains(*n)).cloned());
        let mut report = PassReport { instances: listed.as_ref().map_or(0, Vec::len), ..PassReport::default() };
        let now = Instant::now();
        for name in names {
            let backing_off = self.memory.lock().get(&name).and_then(|m| m.next_retry).is_some_and(|t| t > now);
            if backing_off && !ignore_backoff {
                report.backing_off += 1;
                continue;
            }
            report.functions += 1;
            match &listed {
                Some(_) => {
                    let instances = by_function.remove(&name).unwrap_or_default();
                    self.work.schedule_with(&name, Snapshot { instances, taken });
                }
                None => self.work.schedule(&name, now),
            }
        }
        tracing::debug!(?report, "pass scheduled");
        metrics::counter!("pilotlight_reconcile_passes_total").increment(1);
        Ok(report)
    }

    async fn reconcile_and_record(&self, name: &FunctionName, snapshot: Option<Snapshot>) {
        // The pass asked, but a reconcile ended after its list: that one already looked.
        if let Some(s) = &snapshot
            && self.memory.lock().get(name).and_then(|m| m.finished).is_some_and(|f| f > s.taken)
        {
            return;
        }
        let began = Instant::now();
        tracing::debug!(function = %name, from_pass = snapshot.is_some(), "reconcile begins");
        let outcome = self.reconcile(name, snapshot).await;
        let Some(event) = self.record_outcome(name, outcome) else { return };
        if let Err(e) = self.queue.publish(topics::STATUS, event.to_message()).await {
            tracing::warn!(error = %e, "cannot publish the observation; the next reconcile will");
            if let Some(m) = self.memory.lock().get_mut(name) {
                m.observed = None;
            }
        }
        tracing::debug!(took_ms = began.elapsed().as_secs_f64() * 1e3, "reconciled");
    }

    /// Updates the function's memory after a reconcile (failures, backoff)
    /// and returns the observation to publish, unless it is unchanged and recent.
    #[allow(clippy::type_complexity)]
    fn record_outcome(&self, name: &FunctionName, outcome: Result<Outcome, Failure>) -> Option<Event> {
        let mut memory = self.memory.lock();
        let (record, world, failure) = match outcome {
            Ok(Outcome::Gone) => {
                memory.remove(name);
                metrics::counter!("pilotlight_reconcile_total", "outcome" => "ok").increment(1);
                return None;
            }
            Ok(Outcome::NotOurs) => {
                let m = memory.entry(name.clone()).or_default();
                m.finished = Some(Instant::now());
                m.failures = 0;
                m.next_retry = None;
                // Should it come back here, its first observation is written.
                m.observed = None;
                return None;
            }
            Ok(Outcome::Converged(record, world)) => {
                let record = *record;
                let m = memory.entry(name.clone()).or_default();
                m.finished = Some(Instant::now());
                m.failures = 0;
                m.next_retry = None;
                metrics::counter!("pilotlight_reconcile_total", "outcome" => "ok").increment(1);
                (record, world, None)
            }
            Err(Failure { error, record, world }) => {
                let m = memory.entry(name.clone()).or_default();
                m.finished = Some(Instant::now());
                m.failures = m.failures.saturating_add(1);
                let backoff = Backoff { min: self.config.backoff_min, max: self.config.backoff_max };
                let delay = backoff.delay(m.failures, !error.retryable);
                m.next_retry = Some(Instant::now() + delay);
                self.work.schedule(name, Instant::now() + delay);
                tracing::warn!(
                    error = %error.message,
                    attempt = m.failures,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    permanent = !error.retryable,
                    "reconcile failed; backing off"
                );
                metrics::counter!("pilotlight_reconcile_total", "outcome" => "error").increment(1);
                match record {
                    Some(r) => (r, world, Some((error, delay))),
                    None => return None,
                }
            }
        };
        let m = memory.entry(name.clone()).or_default();
        let failures = m.failures;
        let published = m.published.as_ref().filter(|(g, _)| *g == record.generation).map(|(_, e)| e.clone());
        let observation = Observation {
            generation: record.generation,
            instances: world.clone().unwrap_or_else(|| record.status.instances.clone()),
            wanted: record.wanted(),
            published: published.unwrap_or_else(|| record.status.published.clone()),
            error: failure.as_ref().map(|(e, _)| e.message.clone()),
            permanent: failure.as_ref().is_some_and(|(e, _)| !e.retryable),
            attempts: failures,
        };
        // Unchanged and recent: nothing to write. Once per period it is
        // written anyway, so readers can tell a fresh observation from a stale one.
        let fresh = m
            .observed
            .as_ref()
            .is_some_and(|(o, at)| *o == observation && at.elapsed() < self.config.resync_period.mul_f64(0.9));
        if fresh {
            return None;
        }
        m.observed = Some((observation.clone(), Instant::now()));
        let at_ms = if world.is_some() { now_ms() } else { record.status.observed_at_ms };
        Some(Event::Observed {
            name: name.clone(),
            generation: observation.generation,
            instances: observation.instances,
            wanted: observation.wanted,
            published: observation.published,
            error: observation.error,
            permanent: observation.permanent,
            attempts: observation.attempts,
            next_retry_ms: failure.map(|(_, d)| now_ms() + u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            at_ms,
            node: self.node_id(),
        })
    }

    /// One reconcile.
    async fn reconcile(&self, name: &FunctionName, snapshot: Option<Snapshot>) -> Result<Outcome, Failure> {
        let record = self.store.get(name).await?;
        let Some(record) = record else {
            for i in self.instances(name, snapshot).await? {
                tracing::info!(instance = %i.id, "stopping an instance no stored function wants");
                self.runtime.stop(&i.id).await?;
            }
            return Ok(Outcome::Gone);
        };
        {
            let mut memory = self.memory.lock();
            let m = memory.entry(name.clone()).or_default();
            if m.generation != record.generation {
                // A new generation (a deploy, a delete) starts afresh.
                m.generation = record.generation;
                m.failures = 0;
                m.next_retry = None;
            }
        }
        let fail =
            |error: HandlerError, world: Option<Vec<Instance>>| Failure { error, record: Some(record.clone()), world };
        let instances = self.instances(name, snapshot).await.map_err(|e| fail(e, None))?;
        if record.deleted {
            return self.remove(&record, instances).await.map_err(|(e, w)| fail(e, Some(w)));
        }
        if let Some(node) = &self.node {
            match node.membership.ownership(&record.spec, &node.region, node.grace) {
                Ownership::Here => {
                    self.take_over(&record, &instances, &node.membership).await.map_err(|e| fail(e, None))?;
                }
                Ownership::There(owner) => {
                    return self.hand_over(&record, instances, &owner).await.map_err(|e| fail(e, None));
                }
                Ownership::Nowhere(why) => {
                    self.stop_all(&record, instances, &[]).await.map_err(|e| fail(e, None))?;
                    // One node says so, the same one on every node: the first live one.
                    let reporter = node.membership.nodes().first().map(|n| n.id.clone());
                    if reporter.as_ref() != Some(node.membership.id()) {
                        return Ok(Outcome::NotOurs);
                    }
                    return Err(fail(HandlerError::fatal(why.to_string()), Some(Vec::new())));
                }
                Ownership::Fenced { drain: false } => {
                    tracing::warn!("this node cannot renew its registration: no change until it can");
                    return Ok(Outcome::NotOurs);
                }
                Ownership::Fenced { drain: true } => {
                    tracing::warn!("this node has been cut off beyond its grace period: stopping its instances");
                    self.stop_all(&record, instances, &[]).await.map_err(|e| fail(e, None))?;
                    return Ok(Outcome::NotOurs);
                }
            }
        }
        let mut world = instances;
        match self.converge(&record, &mut world).await {
            Ok(()) => Ok(Outcome::Converged(Box::new(record), Some(world))),
            Err(e) => Err(fail(e, Some(world))),
        }
    }

    /// A function this node owns. If another node reported it last, this
    /// node takes it over: its edge forwards to that node (when it still
    /// serves this generation) until its own instances serve, and its next
    /// publish is reported as its own, which tells the other node to stop.
    async fn take_over(
        &self,
        record: &FunctionRecord,
        instances: &[Instance],
        membership: &Membership,
    ) -> Result<(), HandlerError> {
        let name = record.spec.name();
        let s = &record.status;
        let Some(previous) = s.node.as_ref().filter(|n| *n != membership.id()) else {
            if let Some(m) = self.memory.lock().get_mut(name) {
                m.handing_over = None;
            }
            return Ok(());
        };
        let serving_here =
            instances.iter().any(|i| i.generation == record.generation && i.state == InstanceState::Running);
        let live = membership.nodes().iter().find(|n| &n.id == previous).cloned();
        let published = self.memory.lock().get(name).and_then(|m| m.published.clone());
        let forwarding = published.as_ref().is_some_and(|(_, e)| e.iter().any(|e| e.node().is_some()));
        if let Some(previous) = live.filter(|_| !serving_here && s.routed_generation == record.generation)
            && !s.endpoints.is_empty()
        {
            let route = vec![Endpoint::node_gateway(previous.gateway, previous.id.as_str())];
            if published.as_ref() != Some(&(record.generation, route.clone())) {
                tracing::info!(from = %previous.id, "taking over: forwarding to the node that serves it until this one does");
                self.publish_route(record, &route).await?;
            }
        } else if !forwarding {
            // What this node published is not reported as its own yet: publish it again, so its edge reports it.
            if let Some(m) = self.memory.lock().get_mut(name) {
                m.published = None;
            }
        }
        Ok(())
    }

    /// Asks the edge to route `record`'s generation to `route`, and remembers that it did.
    async fn publish_route(&self, record: &FunctionRecord, route: &[Endpoint]) -> Result<(), HandlerError> {
        let name = record.spec.name();
        let event = Event::EndpointsChanged {
            name: name.clone(),
            generation: record.generation,
            endpoints: route.to_vec(),
            timeout_ms: u64::try_from(record.spec.timeout().as_millis()).unwrap_or(u64::MAX),
            removed: false,
            node: self.node_id(),
        };
        self.queue.publish(topics::ROUTES, event.to_message()).await?;
        self.memory.lock().entry(name.clone()).or_default().published = Some((record.generation, route.to_vec()));
        Ok(())
    }

    /// A function another node owns: this node routes it to that node's
    /// gateway and runs none of it. While this node still serves it (it was
    /// the owner) or routes it elsewhere (the node it moved away from), that
    /// stays as it is until the owner reports that it serves this generation
    /// itself, or three TTLs (at least 10 s) have passed (the owner may be
    /// unable to), so a move loses no request.
    async fn hand_over(
        &self,
        record: &FunctionRecord,
        instances: Vec<Instance>,
        owner: &NodeInfo,
    ) -> Result<Outcome, HandlerError> {
        let name = record.spec.name();
        let route = [Endpoint::node_gateway(owner.gateway, owner.id.as_str())];
        let serving = instances.iter().any(|i| i.state == InstanceState::Running);
        let elsewhere = self
            .memory
            .lock()
            .get(name)
            .and_then(|m| m.published.clone())
            .is_some_and(|(_, e)| !e.is_empty() && e != route);
        let s = &record.status;
        let owner_serves = s.node.as_ref() == Some(&owner.id)
            && s.routed_generation == record.generation
            && !s.endpoints.is_empty()
            && s.endpoints.iter().all(|e| e.node().is_none());
        let patience = self.node.as_ref().map_or(Duration::ZERO, |n| (n.membership.ttl() * 3).max(HANDOVER_PATIENCE));
        if (serving || elsewhere) && !owner_serves {
            let since =
                *self.memory.lock().entry(name.clone()).or_default().handing_over.get_or_insert_with(Instant::now);
            if since.elapsed() < patience {
                tracing::debug!(owner = %owner.id, serving, "keeping the route until the new owner serves");
                self.work.schedule(name, Instant::now() + Duration::from_millis(250));
                return Ok(Outcome::NotOurs);
            }
            tracing::warn!(owner = %owner.id, ?patience, "the new owner does not serve yet; handing over anyway");
        }
        self.stop_all(record, instances, &route).await?;
        if let Some(m) = self.memory.lock().get_mut(name) {
            m.handing_over = None;
        }
        Ok(Outcome::NotOurs)
    }

    /// Routes `record`'s function to `route` (another node's gateway, or
    /// nowhere) and takes its instances here out of service: running ones
    /// drain first, the others stop now.
    async fn stop_all(
        &self,
        record: &FunctionRecord,
        instances: Vec<Instance>,
        route: &[Endpoint],
    ) -> Result<(), HandlerError> {
        let name = record.spec.name();
        let published = self.memory.lock().get(name).and_then(|m| m.published.clone());
        if published.as_ref() != Some(&(record.generation, route.to_vec())) {
            self.publish_route(record, route).await?;
            tracing::info!(route = ?route.iter().map(ToString::to_string).collect::<Vec<_>>(), "not run here: routed on");
        }
        for i in instances {
            if i.state == InstanceState::Running {
                self.retire(i, false, record.spec.timeout());
            } else {
                tracing::info!(instance = %i.id, "stopping an instance of a function another node runs");
                self.runtime.stop(&i.id).await?;
            }
        }
        Ok(())
    }

    /// The function's instances: from the pass's snapshot when nothing ran
    /// for it since, else from a fresh list; without those leaving.
    async fn instances(&self, name: &FunctionName, snapshot: Option<Snapshot>) -> Result<Vec<Instance>, HandlerError> {
        let finished = self.memory.lock().get(name).and_then(|m| m.finished);
        let instances = match snapshot {
            Some(s) if finished.is_none_or(|f| s.taken >= f) => s.instances,
            _ => self.runtime.list_function(name).await?,
        };
        let leaving = self.leaving.lock();
        Ok(instances.into_iter().filter(|i| !leaving.contains_key(&i.id)).collect())
    }

    /// A deleted function: every instance stops and the route goes.
    async fn remove(
        &self,
        record: &FunctionRecord,
        instances: Vec<Instance>,
    ) -> Result<Outcome, (HandlerError, Vec<Instance>)> {
        let name = record.spec.name();
        let mut world = instances;
        while let Some(i) = world.first().cloned() {
            if let Err(e) = self.runtime.stop(&i.id).await {
                return Err((e.into(), world));
            }
            world.remove(0);
        }
        let already = self.memory.lock().get(name).and_then(|m| m.published.clone());
        if already != Some((record.generation, Vec::new())) || record.status.phase != Phase::Deleted {
            let event = Event::EndpointsChanged {
                name: name.clone(),
                generation: record.generation,
                endpoints: Vec::new(),
                timeout_ms: 0,
                removed: true,
                node: self.node_id(),
            };
            if let Err(e) = self.queue.publish(topics::ROUTES, event.to_message()).await {
                return Err((e.into(), world));
            }
            self.memory.lock().entry(name.clone()).or_default().published = Some((record.generation, Vec::new()));
        }
        if is_gone(record) {
            return Ok(Outcome::Gone);
        }
        Ok(Outcome::Converged(Box::new(record.clone()), Some(world)))
    }

    /// Plans and executes for a live function; `world` follows every step.
    async fn converge(&self, record: &FunctionRecord, world: &mut Vec<Instance>) -> Result<(), HandlerError> {
        let name = record.spec.name();
        let published = self
            .memory
            .lock()
            .get(name)
            .and_then(|m| m.published.clone())
            .filter(|(g, _)| *g == record.generation)
            .map(|(_, e)| e);
        let retiring_to_pool = self.leaving.lock().values().filter(|l| &l.function == name && l.into_pool).count();
        let plan = plan(&PlanInput {
            spec: &record.spec,
            generation: record.generation,
            wanted: usize::try_from(record.wanted()).unwrap_or(usize::MAX),
            instances: world,
            retiring_to_pool,
            published: published.as_deref(),
            can_precreate: self.can_precreate.load(Ordering::Relaxed),
        });
        if plan.is_empty() {
            return Ok(());
        }
        tracing::debug!(steps = ?plan.steps, "plan");
        self.execute(record, &plan, world).await
    }

    /// Carries out `plan` in order and stops at the first failure (so old
    /// instances retire only once the new ones were published).
    async fn execute(
        &self,
        record: &FunctionRecord,
        plan: &Plan,
        world: &mut Vec<Instance>,
    ) -> Result<(), HandlerError> {
        let spec = &record.spec;
        let generation = record.generation;
        let began = Instant::now();
        let cold = !world.iter().any(|i| i.generation == generation && i.state == InstanceState::Running);
        let to_start: usize = plan
            .steps
            .iter()
            .map(|s| match s {
                Step::StartCreated(_) => 1,
                Step::Create(n) => *n,
                _ => 0,
            })
            .sum();
        let mut capacity_checked = false;
        let mut prepared = false;
        let mut started: Vec<Endpoint> = Vec::new();
        let mut tier = None;
        for step in &plan.steps {
            match step {
                Step::Remove(id) | Step::Stop(id) => {
                    tracing::info!(instance = %id, "stopping");
                    self.runtime.stop(id).await?;
                    world.retain(|i| &i.id != id);
                }
                Step::Resume(id) => {
                    let i = self.runtime.resume(id).await?;
                    tracing::debug!(instance = %id, "resumed and answering");
                    tier.get_or_insert("resume");
                    started.push(i.endpoint.clone());
                    replace(world, i);
                }
                Step::StartCreated(id) => {
                    if !capacity_checked {
                        self.check_capacity(spec, to_start).await?;
                        capacity_checked = true;
                    }
                    let i =
                        self.runtime.start_created(spec, id).await.inspect_err(|_| world.retain(|i| &i.id != id))?;
                    tier.get_or_insert("start_created");
                    started.push(i.endpoint.clone());
                    replace(world, i);
                }
                Step::Create(n) => {
                    self.runtime.prepare(spec).await?;
                    prepared = true;
                    if !capacity_checked {
                        self.check_capacity(spec, to_start).await?;
                        capacity_checked = true;
                    }
                    let results =
                        futures::future::join_all((0..*n).map(|_| self.runtime.start(spec, generation))).await;
                    let mut first_error = None;
                    for r in results {
                        match r {
                            Ok(i) => {
                                started.push(i.endpoint.clone());
                                world.push(i);
                            }
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    if let Some(e) = first_error {
                        return Err(e.into());
                    }
                    tier.get_or_insert("create");
                }
                Step::Publish => {
                    let mut endpoints: Vec<Endpoint> = world
                        .iter()
                        .filter(|i| plan.keep.contains(&i.id))
                        .map(|i| i.endpoint.clone())
                        .chain(started.iter().cloned())
                        .collect();
                    endpoints.sort();
                    endpoints.dedup();
                    self.publish_route(record, &endpoints).await?;
                    if let (true, Some(tier)) = (cold, tier) {
                        let took = began.elapsed();
                        metrics::histogram!("pilotlight_cold_start_seconds", "function" => spec.name().to_string(), "tier" => tier)
                            .record(took.as_secs_f64());
                        tracing::info!(tier, took_ms = took.as_secs_f64() * 1000.0, "cold start");
                    }
                }
                Step::Retire { id, into_pool } => {
                    if let Some(i) = world.iter().find(|i| &i.id == id) {
                        self.retire(i.clone(), *into_pool, spec.timeout());
                    }
                }
                Step::Refill(n) => {
                    // The pool only makes the next start faster: a failure to fill it is logged, not fatal.
                    match self.refill(spec, generation, *n, prepared).await {
                        Ok(made) => {
                            prepared = true;
                            world.extend(made);
                        }
                        Err(e) => tracing::warn!(error = %e.message, "the pool of paused instances was not refilled"),
                    }
                }
                Step::Precreate(n) => match self.precreate(spec, generation, *n, prepared).await {
                    Ok(made) => world.extend(made),
                    Err(e) => tracing::warn!(error = %e.message, "the created (not started) instances were not made"),
                },
            }
        }
        Ok(())
    }

    /// Takes an instance out of service in the background: after the drain,
    /// and once no request is in flight on it (up to `patience`), it is paused
    /// into the pool or stopped; then its function is reconciled again.
    fn retire(&self, instance: Instance, into_pool: bool, patience: Duration) {
        self.leaving.lock().insert(instance.id.clone(), Leaving { function: instance.function.clone(), into_pool });
        let runtime = Arc::clone(&self.runtime);
        let leaving = Arc::clone(&self.leaving);
        let work = Arc::clone(&self.work);
        let load = self.load.clone();
        let drain = self.config.drain;
        let cancel = self.stop_background.clone();
        self.background.lock().spawn(async move {
            let id = instance.id.clone();
            let done = async {
                tokio::time::sleep(drain).await;
                let idle = idle_within(load.as_deref(), &instance, patience).await;
                if into_pool && idle {
                    match runtime.pause(&id).await {
                        Ok(()) => return,
                        Err(e) => tracing::warn!(instance = %id, error = %e, "cannot pause into the pool; stopping"),
                    }
                } else if !idle {
                    tracing::warn!(instance = %id, ?patience, "requests still in flight after the function's timeout; stopping anyway");
                }
                tracing::info!(instance = %id, generation = instance.generation, "stopping an instance that left the routes");
                if let Err(e) = runtime.stop(&id).await {
                    tracing::warn!(instance = %id, error = %e, "cannot stop an instance that left the routes; the next reconcile will");
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = done => {}
            }
            leaving.lock().remove(&id);
            work.schedule(&instance.function, Instant::now());
        });
    }

    /// Starts `n` instances, waits until each is ready, and pauses it.
    async fn refill(
        &self,
        spec: &FunctionSpec,
        generation: u64,
        n: usize,
        prepared: bool,
    ) -> Result<Vec<Instance>, HandlerError> {
        if !prepared {
            self.runtime.prepare(spec).await?;
        }
        self.check_capacity(spec, n).await?;
        let one = || async {
            let mut instance = self.runtime.start(spec, generation).await?;
            if let Err(e) = self.runtime.pause(&instance.id).await {
                let _ = self.runtime.stop(&instance.id).await;
                return Err(HandlerError::from(e));
            }
            instance.state = InstanceState::Paused;
            Ok::<_, HandlerError>(instance)
        };
        let mut made = Vec::new();
        let mut first_error = None;
        for r in futures::future::join_all((0..n).map(|_| one())).await {
            match r {
                Ok(i) => made.push(i),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if made.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(error = %e.message, made = made.len(), "the pool was refilled only in part");
                Ok(made)
            }
            None => Ok(made),
        }
    }

    /// Creates `n` instances without starting them (the pool's second tier).
    /// A runtime that cannot is not an error: the tier is skipped from then on.
    async fn precreate(
        &self,
        spec: &FunctionSpec,
        generation: u64,
        n: usize,
        prepared: bool,
    ) -> Result<Vec<Instance>, HandlerError> {
        if !prepared {
            self.runtime.prepare(spec).await?;
        }
        let mut made = Vec::new();
        for _ in 0..n {
            match self.runtime.create(spec, generation).await {
                Ok(i) => made.push(i),
                Err(RuntimeError::Unsupported(what)) => {
                    tracing::debug!(%what, "the runtime cannot create without starting; precreate skipped");
                    self.can_precreate.store(false, Ordering::Relaxed);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(made)
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

    /// A worker that keeps its own Store (the split deployment) learns the
    /// spec from the event; with the platform's Store it is already there.
    async fn accept(&self, spec: FunctionSpec, generation: u64, deleted: bool) -> Result<(), HandlerError> {
        let name = spec.name().clone();
        for _ in 0..16 {
            let stored = self.store.get(&name).await?;
            let expected = match &stored {
                Some(s) if s.generation >= generation => return Ok(()),
                Some(s) => Some(s.revision),
                None => None,
            };
            let mut record = stored.unwrap_or_else(|| FunctionRecord::new(spec.clone(), generation));
            record.spec = spec.clone();
            record.generation = generation;
            record.deleted = deleted;
            record.status.phase = record.status.derive_phase(generation, deleted);
            match self.store.compare_and_set(expected, record).await {
                Ok(_) => return Ok(()),
                Err(crate::ports::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(HandlerError::retry(format!("`{name}` kept changing while its spec was recorded")))
    }

    /// Records a scale asked through the queue in this worker's Store (a
    /// no-op when the asker wrote the same Store).
    async fn accept_scale(
        &self,
        name: &FunctionName,
        generation: Option<u64>,
        change: impl Fn(Option<u32>) -> Option<u32>,
        reason: &str,
    ) -> Result<(), HandlerError> {
        records::update(self.store.as_ref(), name, |r| {
            if r.deleted || generation.is_some_and(|g| g != r.generation) {
                return false;
            }
            let running = change(r.scale.running);
            if running == r.scale.running {
                return false;
            }
            r.scale = DesiredScale { running, reason: reason.to_owned(), at_ms: now_ms() };
            true
        })
        .await?;
        Ok(())
    }
}

fn replace(world: &mut Vec<Instance>, instance: Instance) {
    match world.iter_mut().find(|i| i.id == instance.id) {
        Some(slot) => *slot = instance,
        None => world.push(instance),
    }
}

/// A delete that has completed: kept as a tombstone so generations keep rising.
pub(crate) fn is_gone(r: &FunctionRecord) -> bool {
    r.deleted && r.status.phase == Phase::Deleted && r.status.generation == r.generation
}

/// Whether the edge has no request in flight on `instance`, waiting up to
/// `limit` for that. Without per-endpoint counts there is nothing to wait for.
async fn idle_within(load: Option<&dyn LoadSource>, instance: &Instance, limit: Duration) -> bool {
    let Some(load) = load else { return true };
    if instance.state != InstanceState::Running {
        return true;
    }
    let deadline = Instant::now() + limit;
    loop {
        match load.endpoint_in_flight(&instance.endpoint) {
            None | Some(0) => return true,
            Some(n) if Instant::now() >= deadline => {
                tracing::debug!(instance = %instance.id, in_flight = n, "still serving");
                return false;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The `deployments` consumer: every event is a nudge. Those that carry
/// intent (a deploy, a delete, a scale, an activation) are first recorded in
/// this worker's Store, which is a no-op when the sender wrote the same Store.
/// Handling acks at once: the reconcile itself runs in the worker's loops,
/// which retry with backoff and never give up while the function exists.
#[async_trait]
impl EventHandler for RuntimeWorker {
    async fn handle(&self, event: Event, _attempt: Attempt) -> Result<(), HandlerError> {
        match event {
            Event::DeployRequested { spec, generation } => {
                let name = spec.name().clone();
                self.accept(spec, generation, false).await?;
                self.nudge(&name);
            }
            Event::DeleteRequested { name, generation } => {
                if let Some(stored) = self.store.get(&name).await? {
                    self.accept(stored.spec, generation, true).await?;
                }
                self.nudge(&name);
            }
            Event::ScaleRequested { name, generation, running, reason } => {
                tracing::info!(function = %name, running, %reason, "scale");
                self.accept_scale(&name, Some(generation), |_| Some(running), &reason).await?;
                self.nudge(&name);
            }
            Event::ActivationRequested { name } => {
                self.accept_scale(
                    &name,
                    None,
                    |r| match r {
                        Some(0) => Some(1),
                        other => other,
                    },
                    "a request is waiting at the edge",
                )
                .await?;
                self.nudge(&name);
            }
            Event::ReconcileRequested { name, reason } => {
                tracing::debug!(function = %name, %reason, "reconcile requested");
                self.nudge_gently(&name);
            }
            _ => {}
        }
        Ok(())
    }
}
