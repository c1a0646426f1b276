//! The calls an API makes: deploy, scale, delete, and the reads. Each writes
//! the intent to the Store first (the record is the intent) and then nudges
//! the workers through the queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Platform;
use crate::controller::error::PlatformError;
use crate::controller::runtime_worker::is_gone;
use crate::controller::{records, secrets};
use crate::events::{Event, topics};
use crate::model::{DesiredScale, FunctionName, FunctionRecord, FunctionSpec, Instance, Phase, ValidationError};
use crate::ports::StoreError;
use crate::support::now_ms;

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

/// How often a call retries its compare-and-set against concurrent writers.
const CAS_TRIES: usize = 16;

impl Platform {
    /// Creates or updates a function. Checks the region, records the spec with
    /// the next generation and queues a nudge; if the queue refuses, the
    /// record is put back as it was. Deploying the spec that is already wanted
    /// changes nothing and returns its current generation.
    ///
    /// An update keeps the desired scale (at least `max(min, 1)`), so a
    /// function scaled to 3 comes up at 3 in its new generation.
    pub async fn deploy(&self, spec: FunctionSpec) -> Result<DeployReceipt, PlatformError> {
        let cluster = self.inner.membership.as_ref().filter(|m| m.is_clustered());
        let spec = match spec.region() {
            None => spec.with_region(self.inner.region.clone()),
            Some(r) if *r == self.inner.region => spec,
            // In a cluster, any region a live node serves (checked below).
            Some(_) if cluster.is_some() => spec,
            Some(r) => {
                return Err(ValidationError::new(
                    "region",
                    format!("this node serves region `{}`, not `{r}`", self.inner.region),
                )
                .into());
            }
        };
        if let Some(m) = cluster {
            match m.owner_of(&spec, &self.inner.region) {
                Ok(_) => {}
                Err(e @ super::super::cluster::NoOwner::Region { .. }) => {
                    return Err(ValidationError::new("region", e.to_string()).into());
                }
                Err(e) => return Err(ValidationError::new("placement.labels", e.to_string()).into()),
            }
        }
        let name = spec.name().clone();
        if let Some((i, missing)) = secrets::missing_secrets(self.inner.store.as_ref(), spec.secrets()).await? {
            return Err(ValidationError::new(
                format!("secrets.{i}"),
                format!("no secret `{missing}`; create it first with `pilotlight secret set {missing}`"),
            )
            .into());
        }
        for _ in 0..CAS_TRIES {
            let previous = self.inner.store.get(&name).await?;
            let digest = secrets::secrets_digest(self.inner.store.as_ref(), spec.secrets()).await?;
            if let Some(p) = previous.as_ref().filter(|p| !p.deleted && p.spec == spec && p.secrets_digest == digest) {
                return Ok(self.receipt(p));
            }
            let generation = previous.as_ref().map_or(1, |p| p.generation + 1);
            let initial = spec.scaling().initial_instances();
            let mut record = match &previous {
                // What was observed of the older generation stays true until the new one is observed.
                Some(p) => FunctionRecord {
                    spec: spec.clone(),
                    generation,
                    deleted: false,
                    scale: DesiredScale {
                        running: p.scale.running.filter(|_| !p.deleted).map(|n| n.max(initial)),
                        reason: "deploy".into(),
                        at_ms: now_ms(),
                    },
                    ..p.clone()
                },
                None => FunctionRecord::new(spec.clone(), generation),
            };
            record.secrets_digest = digest;
            record.status.url = Some(self.url_for(&name));
            record.status.phase = record.status.derive_phase(generation, false);
            let event = Event::DeployRequested { spec: spec.clone(), generation };
            match self.write_then_publish(previous, record.clone(), event).await {
                Ok(()) => return Ok(self.receipt(&record)),
                Err(PlatformError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(PlatformError::Conflict(name))
    }

    /// Publishes a message to a user topic of the platform's queue (what a
    /// topic trigger consumes): `key` orders it among the topic's messages.
    /// It carries a new message id (returned, and given to the function as
    /// `X-Message-Id`) and `content_type`. Reserved topics are refused.
    pub async fn publish_message(
        &self,
        topic: &str,
        key: &str,
        payload: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<String, PlatformError> {
        crate::ports::check_topic_name("topic", topic)?;
        if topics::is_reserved(topic) {
            return Err(ValidationError::new(
                "topic",
                format!("`{topic}` is reserved: `deployments`, `routes`, `status`, `invocations` and `pilotlight.*` are the platform's own, `*.dlq` hold dead letters"),
            )
            .into());
        }
        if key.is_empty() || key.len() > 256 || !key.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(ValidationError::new("key", "must be 1 to 256 printable ASCII characters").into());
        }
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).map_err(|e| PlatformError::Config(format!("no randomness for a message id: {e}")))?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut message = crate::ports::Message::new(key, payload);
        message.headers.insert(crate::controller::MESSAGE_ID_HEADER.to_owned(), id.clone());
        if let Some(ct) = content_type {
            message.headers.insert("content-type".to_owned(), ct.to_owned());
        }
        self.inner.queue.publish(topic, message).await?;
        Ok(id)
    }

    /// Asks for `running` instances of a function now (clamped to its `min`
    /// and `max`), as the autoscaler does; the autoscaler may change it again
    /// on its next tick. `0` scales to zero: the pool stays paused. The ask is
    /// recorded in the Store, so it outlives a restart.
    pub async fn scale(&self, name: &FunctionName, running: u32) -> Result<(), PlatformError> {
        let reason = "asked through Platform::scale";
        let record = records::update(self.inner.store.as_ref(), name, |r| {
            if r.deleted || r.scale.running == Some(running) {
                return false;
            }
            r.scale = DesiredScale { running: Some(running), reason: reason.into(), at_ms: now_ms() };
            true
        })
        .await?
        .filter(|r| !r.deleted)
        .ok_or_else(|| PlatformError::NotFound(name.clone()))?;
        let event =
            Event::ScaleRequested { name: name.clone(), generation: record.generation, running, reason: reason.into() };
        self.inner.queue.publish(topics::DEPLOYMENTS, event.to_message()).await?;
        Ok(())
    }

    /// Deletes a function: its instances stop and its route goes. Idempotent.
    pub async fn delete(&self, name: &FunctionName) -> Result<DeployReceipt, PlatformError> {
        for _ in 0..CAS_TRIES {
            let previous = self.inner.store.get(name).await?.ok_or_else(|| PlatformError::NotFound(name.clone()))?;
            if previous.deleted {
                if is_gone(&previous) {
                    return Err(PlatformError::NotFound(name.clone()));
                }
                return Ok(self.receipt(&previous));
            }
            let generation = previous.generation + 1;
            let mut record = FunctionRecord { generation, deleted: true, ..previous.clone() };
            record.status.phase = record.status.derive_phase(generation, true);
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
    pub(super) async fn write_then_publish(
        &self,
        previous: Option<FunctionRecord>,
        record: FunctionRecord,
        event: Event,
    ) -> Result<(), PlatformError> {
        let store = &self.inner.store;
        let name = record.spec.name().clone();
        let revision = store.compare_and_set(previous.as_ref().map(|p| p.revision), record).await?;
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
        if let Err(e) = self.inner.queue.publish(topics::DEPLOYMENTS, event.to_message()).await {
            let undo = match previous {
                Some(p) => store.compare_and_set(Some(revision), p).await.map(|_| ()),
                None => store.delete(&name, revision).await,
            };
            if let Err(undo) = undo {
                tracing::error!(function = %name, error = %undo, "cannot undo the record after the queue refused; the next pass converges it");
            }
            return Err(e.into());
        }
        Ok(())
    }

    fn receipt(&self, r: &FunctionRecord) -> DeployReceipt {
        DeployReceipt {
            name: r.spec.name().clone(),
            generation: r.generation,
            phase: r.status.derive_phase(r.generation, r.deleted),
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

    /// The instances of a function as last observed (from the Store: no
    /// runtime is called, so this answers at once even while the engine is
    /// unreachable). Newest generation first.
    pub async fn instances(&self, name: &FunctionName) -> Result<Vec<Instance>, PlatformError> {
        let record = self.get(name).await?.ok_or_else(|| PlatformError::NotFound(name.clone()))?;
        let mut all = record.status.instances;
        all.sort_by(|a, b| b.generation.cmp(&a.generation).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The pull of the function's image under way, or the last one, as the
    /// runtime in this process saw it (`None` with no runtime here, or for
    /// an executable, or an image that was present already).
    pub fn pull_progress(&self, spec: &FunctionSpec) -> Option<crate::ports::PullProgress> {
        let crate::model::Source::Image(image) = spec.source() else { return None };
        self.inner.runtime.as_ref()?.pull_progress(&image.to_string())
    }

    /// Whether what was observed of `record` is older than two periods: the
    /// workers could not look at it lately (an engine outage, a stopped node).
    pub fn is_stale(&self, record: &FunctionRecord) -> bool {
        let limit = u64::try_from(self.resync_period().as_millis()).unwrap_or(u64::MAX).saturating_mul(2);
        let at = record.status.observed_at_ms;
        at > 0 && now_ms().saturating_sub(at) > limit
    }

    /// Waits until the function's current generation is ready and returns
    /// its record. Fails at once if it failed in a way that will not go away
    /// by itself (it is still retried, at the backoff cap), or when `timeout` passes.
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
                    Phase::Failed if status.permanent => {
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
