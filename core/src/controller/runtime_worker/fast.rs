//! The activation fast path: when the edge and the runtime worker share a
//! process (the embedded default), the activator asks the worker to resume a
//! paused instance at once, instead of recording the ask and waiting for the
//! reconcile that the queue's nudge starts and for the route that reconcile
//! publishes. What it saves is the round trip through the queue, the
//! reconcile's list of the function's instances and the route's trip back
//! to the edge; the engine's unpause is the same on both paths.
//!
//! The result is the slow path's: the function is held exclusively while the
//! instance is resumed (as a reconcile would hold it, so nothing resumes an
//! instance twice), and dropping the [`FastResume`] asks for a reconcile that
//! lists the instance as running, publishes the route, records the
//! observation and refills the pool.

use std::sync::Arc;

use tokio::time::Instant;

use super::super::workqueue::WorkQueue;
use super::RuntimeWorker;
use crate::model::{Endpoint, FunctionName, InstanceId, InstanceState};

/// An instance the fast path resumed. Holds its function exclusively until
/// dropped; the drop asks for a reconcile of the function, so drop it only
/// once the desired scale that keeps the instance running is recorded.
pub struct FastResume {
    endpoint: Endpoint,
    instance: InstanceId,
    _claim: Claim,
}

impl FastResume {
    /// Where the resumed instance answers.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The resumed instance.
    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }
}

/// The function in hand outside the worker's loops. Released on drop; once
/// something was tried on the runtime, with a reconcile due at once.
struct Claim {
    work: Arc<WorkQueue>,
    name: FunctionName,
    touched: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.touched {
            self.work.schedule(&self.name, Instant::now());
        }
        self.work.done(&self.name);
    }
}

impl RuntimeWorker {
    /// Resumes a paused instance of `name` now, if the fast path applies:
    /// no reconcile has the function in hand, the stored record is live and
    /// of the generation last observed, that observation shows no running
    /// instance of it and at least one paused one. `None` otherwise, or when
    /// the resume fails: the caller then takes the ordinary path (a recorded
    /// desired scale and a reconcile), which also heals whatever made the
    /// observation wrong.
    ///
    /// No probe follows the resume: a paused instance was answering when it
    /// was paused (the pool pauses an instance only once it is ready, a
    /// scale-down only one that was routed), and its listening socket kept
    /// its place through the pause, so once the engine has thawed it, it answers.
    pub async fn resume_now(&self, name: &FunctionName) -> Option<FastResume> {
        if !self.work.try_claim(name) {
            return None;
        }
        let mut claim = Claim { work: Arc::clone(&self.work), name: name.clone(), touched: false };
        let record = match self.store.get(name).await {
            Ok(Some(r)) if !r.deleted => r,
            _ => return None,
        };
        let observed = {
            let memory = self.memory.lock();
            let (observation, _) = memory.get(name)?.observed.as_ref()?;
            if observation.generation != record.generation {
                return None;
            }
            observation.instances.clone()
        };
        let candidate = {
            let leaving = self.leaving.lock();
            let mine: Vec<_> =
                observed.iter().filter(|i| i.generation == record.generation && !leaving.contains_key(&i.id)).collect();
            if mine.iter().any(|i| i.state == InstanceState::Running) {
                return None;
            }
            mine.iter().filter(|i| i.state == InstanceState::Paused).map(|i| i.id.clone()).min()
        }?;
        claim.touched = true;
        let began = Instant::now();
        match self.runtime.resume(&candidate).await {
            Ok(instance) => {
                let took = began.elapsed();
                if let Some(m) = self.memory.lock().get_mut(name) {
                    // What was seen before this resume is stale now: a pass's list, and the
                    // last observation (so the next activation waits for the reconcile's).
                    m.finished = Some(Instant::now());
                    m.observed = None;
                }
                metrics::histogram!("pilotlight_cold_start_seconds", "function" => name.to_string(), "tier" => "resume")
                    .record(took.as_secs_f64());
                tracing::info!(
                    function = %name,
                    instance = %candidate,
                    took_ms = took.as_secs_f64() * 1e3,
                    "cold start (activation fast path)"
                );
                Some(FastResume { endpoint: instance.endpoint, instance: candidate, _claim: claim })
            }
            Err(e) => {
                tracing::debug!(function = %name, instance = %candidate, error = %e, "fast resume failed; reconciling");
                None
            }
        }
    }
}
