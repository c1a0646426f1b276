//! Cron triggers: each tick of a function's schedule becomes one
//! asynchronous invocation, retried and dead-lettered like any other.
//!
//! ```text
//! every period: functions (Store) ─ per cron trigger: its mark (Store doc `cron-marks/<function>.<n>`)
//!   ─ plan (pure): nothing | start (first sight: mark the latest past tick, fire nothing)
//!                  | fire the latest tick (catch-up `one`, or `none` when it is recent) | skip it
//!   ─ fire: create the invocation with an id made from (function, tick, trigger), then move the mark
//! ```
//!
//! A tick fires once because its invocation's id is deterministic and a
//! Store create of an existing id fails: a second scheduler sharing the
//! Store, or this one after a crash between the create and the mark, finds
//! the tick already recorded and only moves the mark. The mark is what makes
//! catch-up cheap: after downtime only the latest missed tick is looked at,
//! so it fires once rather than once per missed tick.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::invocations::InvocationStore;
use super::invoker::InvokerNudge;
use crate::model::{CatchUp, CronTrigger, FunctionName, Invocation, InvocationId, InvocationRequest, Trigger};
use crate::ports::{DocKey, DocKind, DocQuery, Store, StoreError};
use crate::support::now_ms;

/// Settings of a [`CronScheduler`].
#[derive(Clone, Debug)]
pub struct CronConfig {
    /// How often schedules are looked at (default 250 ms: a per-second
    /// schedule fires within a quarter of a second of its tick).
    pub period: Duration,
    /// With catch-up `none`, a tick this late still fires (default 5 s);
    /// older ones were missed and are skipped.
    pub late: Duration,
}

impl Default for CronConfig {
    fn default() -> Self {
        Self { period: Duration::from_millis(250), late: Duration::from_secs(5) }
    }
}

/// The last tick of one trigger that was fired or skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    /// What the trigger was when marked; a changed trigger starts afresh.
    trigger: String,
    last_tick_ms: u64,
}

/// What to do about one trigger now.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TickPlan {
    /// Nothing is due.
    Nothing,
    /// First sight of this trigger (or it changed): mark its latest past
    /// tick without firing it, so a new schedule does not fire for the past.
    Start { mark_ms: u64 },
    /// Fire this tick and mark it.
    Fire { tick_ms: u64 },
    /// Mark this tick without firing it (catch-up `none`, too late).
    Skip { tick_ms: u64 },
}

/// Plans one trigger (pure): `mark` is its stored mark, `identity` what the trigger is now.
fn plan_tick(trigger: &CronTrigger, identity: &str, mark: Option<&Mark>, now_ms: u64, late: Duration) -> TickPlan {
    let Some(latest) = trigger.schedule.latest_at_or_before(now_ms) else { return TickPlan::Nothing };
    let mark = match mark {
        Some(m) if m.trigger == identity => m,
        _ => return TickPlan::Start { mark_ms: latest },
    };
    if latest <= mark.last_tick_ms {
        return TickPlan::Nothing;
    }
    let late_ms = u64::try_from(late.as_millis()).unwrap_or(u64::MAX);
    match trigger.catch_up {
        CatchUp::One => TickPlan::Fire { tick_ms: latest },
        CatchUp::None if now_ms.saturating_sub(latest) <= late_ms => TickPlan::Fire { tick_ms: latest },
        CatchUp::None => TickPlan::Skip { tick_ms: latest },
    }
}

/// What a pass did, for tests and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CronPass {
    /// Ticks fired by this pass: (function, tick in ms).
    pub fired: Vec<(FunctionName, u64)>,
    /// Ticks another scheduler (or an earlier life of this one) had fired already.
    pub already: usize,
    /// Ticks skipped (catch-up `none`).
    pub skipped: usize,
}

/// Fires the cron triggers of the functions in a Store; see the module docs.
pub struct CronScheduler {
    store: Arc<dyn Store>,
    invocations: InvocationStore,
    kind: DocKind,
    config: CronConfig,
    wake: Option<InvokerNudge>,
}

fn identity(t: &CronTrigger) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        t.schedule.expression(),
        t.schedule.time_zone().unwrap_or("UTC"),
        t.catch_up.as_str(),
        t.path,
        t.body.len()
    )
}

impl CronScheduler {
    /// A scheduler of the functions in `store`; `wake` (an invoker's) is
    /// notified when a tick fired.
    pub fn new(store: Arc<dyn Store>, config: CronConfig, wake: Option<InvokerNudge>) -> Self {
        Self {
            invocations: InvocationStore::new(Arc::clone(&store)),
            store,
            kind: DocKind::new("cron-marks").unwrap_or_else(|_| unreachable!("a valid kind")),
            config,
            wake,
        }
    }

    /// Runs passes until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut passes: u64 = 0;
        loop {
            match self.pass(now_ms()).await {
                Ok(p) if !p.fired.is_empty() => tracing::debug!(fired = p.fired.len(), "cron ticks fired"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cron: cannot read schedules; trying again"),
            }
            passes += 1;
            if passes.is_multiple_of(240)
                && let Err(e) = self.forget_stale().await
            {
                tracing::warn!(error = %e, "cron: cannot remove the marks of removed triggers");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.config.period) => {}
            }
        }
    }

    fn key(&self, function: &FunctionName, index: usize) -> Result<DocKey, StoreError> {
        DocKey::new(&self.kind, format!("{function}.{index}"))
    }

    /// One look at every schedule as of `now_ms`.
    pub async fn pass(&self, now_ms: u64) -> Result<CronPass, StoreError> {
        let mut pass = CronPass::default();
        for record in self.store.list().await? {
            if record.deleted {
                continue;
            }
            let function = record.spec.name().clone();
            for (index, trigger) in record.spec.triggers().iter().enumerate() {
                let Trigger::Cron(cron) = trigger else { continue };
                if let Err(e) = self.one(&function, index, cron, now_ms, &mut pass).await {
                    tracing::warn!(%function, trigger = index, error = %e, "cron: a tick could not be recorded; trying again");
                }
            }
        }

        Ok(pass)
    }

    async fn one(
        &self,
        function: &FunctionName,
        index: usize,
        trigger: &CronTrigger,
        now_ms: u64,
        pass: &mut CronPass,
    ) -> Result<(), StoreError> {
        let key = self.key(function, index)?;
        let stored = self.store.doc_get(&key).await?;
        let (mark, revision) = match &stored {
            Some(doc) => (serde_json::from_slice::<Mark>(&doc.value).ok(), Some(doc.revision)),
            None => (None, None),
        };
        let identity = identity(trigger);
        let tick = match plan_tick(trigger, &identity, mark.as_ref(), now_ms, self.config.late) {
            TickPlan::Nothing => return Ok(()),
            TickPlan::Start { mark_ms } => mark_ms,
            TickPlan::Skip { tick_ms } => {
                pass.skipped += 1;
                metrics::counter!("pilotlight_cron_ticks_total", "function" => function.to_string(), "outcome" => "skipped")
                    .increment(1);
                tick_ms
            }
            TickPlan::Fire { tick_ms } => {
                let id = InvocationId::for_trigger(function, tick_ms, &format!("cron:{index}"));
                let mut headers = vec![
                    ("x-pilotlight-trigger".to_owned(), "cron".to_owned()),
                    ("x-cron-tick".to_owned(), tick_name(tick_ms)),
                ];
                if !trigger.body.is_empty() {
                    headers.push(("content-type".to_owned(), "text/plain; charset=utf-8".to_owned()));
                }
                let request = InvocationRequest::new("POST", &trigger.path, headers, trigger.body.as_bytes().to_vec())
                    .map_err(|e| StoreError::Backend { source: Box::new(e), retryable: false })?;
                match self.invocations.create(Invocation::queued(id.clone(), request, None)).await {
                    Ok(_) => {
                        if let Some(w) = &self.wake {
                            w.due(&id, tick_ms);
                        }
                        pass.fired.push((function.clone(), tick_ms));
                        metrics::counter!("pilotlight_cron_ticks_total", "function" => function.to_string(), "outcome" => "fired")
                            .increment(1);
                        tracing::debug!(%function, trigger = index, tick = %tick_name(tick_ms), "cron tick fired");
                    }
                    Err(StoreError::DocConflict { .. }) => pass.already += 1,
                    Err(e) => return Err(e),
                }
                tick_ms
            }
        };
        let mark = Mark { trigger: identity, last_tick_ms: tick };
        let value =
            serde_json::to_vec(&mark).map_err(|e| StoreError::Backend { source: Box::new(e), retryable: false })?;
        match self.store.doc_put(&key, revision, value).await {
            // Another scheduler moved the mark: its write stands (it saw the same ticks).
            Ok(_) | Err(StoreError::DocConflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the marks of triggers that are gone (a function deleted, or
    /// with fewer cron triggers than it had).
    pub async fn forget_stale(&self) -> Result<usize, StoreError> {
        let records = self.store.list().await?;
        let mut removed = 0;
        let mut query = DocQuery::prefix("", 256);
        loop {
            let page = self.store.doc_list(&self.kind, &query).await?;
            let Some(last) = page.last().map(|d| d.key.clone()) else { break };
            let full = page.len() == 256;
            for doc in page {
                let live = doc.key.rsplit_once('.').is_some_and(|(function, index)| {
                    let index: usize = index.parse().unwrap_or(usize::MAX);
                    records.iter().any(|r| {
                        !r.deleted
                            && r.spec.name().as_str() == function
                            && matches!(r.spec.triggers().get(index), Some(Trigger::Cron(_)))
                    })
                });
                if !live {
                    let key = DocKey::new(&self.kind, &doc.key)?;
                    match self.store.doc_delete(&key, doc.revision).await {
                        Ok(()) => removed += 1,
                        Err(StoreError::DocConflict { .. } | StoreError::DocNotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            if !full {
                break;
            }
            query.after = Some(last);
        }
        Ok(removed)
    }
}

/// A tick as RFC 3339 (UTC), for the `X-Cron-Tick` header.
fn tick_name(tick_ms: u64) -> String {
    i64::try_from(tick_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| tick_ms.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::model::{CronSchedule, FunctionSpecInput, TriggerInput};

    fn every_second(catch_up: CatchUp) -> CronTrigger {
        CronTrigger {
            schedule: CronSchedule::parse("t", "* * * * * *", None).unwrap(),
            path: "/tick".into(),
            body: String::new(),
            catch_up,
        }
    }

    #[test]
    fn the_planner_fires_the_latest_tick_once_and_starts_without_firing() {
        let t = every_second(CatchUp::One);
        let id = identity(&t);
        let late = Duration::from_secs(5);
        assert_eq!(plan_tick(&t, &id, None, 10_500, late), TickPlan::Start { mark_ms: 10_000 });
        let mark = |ms| Mark { trigger: id.clone(), last_tick_ms: ms };
        assert_eq!(plan_tick(&t, &id, Some(&mark(10_000)), 10_900, late), TickPlan::Nothing);
        assert_eq!(plan_tick(&t, &id, Some(&mark(10_000)), 11_100, late), TickPlan::Fire { tick_ms: 11_000 });
        // Down for a minute: one fire, for the latest tick.
        assert_eq!(plan_tick(&t, &id, Some(&mark(10_000)), 70_200, late), TickPlan::Fire { tick_ms: 70_000 });
        let changed = Mark { trigger: "something else".into(), last_tick_ms: 10_000 };
        assert_eq!(plan_tick(&t, &id, Some(&changed), 70_200, late), TickPlan::Start { mark_ms: 70_000 });
        let none = every_second(CatchUp::None);
        let id = identity(&none);
        let mark = Mark { trigger: id.clone(), last_tick_ms: 10_000 };
        assert_eq!(
            plan_tick(&none, &id, Some(&mark), 13_100, late),
            TickPlan::Fire { tick_ms: 13_000 },
            "late, but within 5 s"
        );
        // After downtime the latest tick is recent too (the schedule ticks every second): it fires.
        assert_eq!(plan_tick(&none, &id, Some(&mark), 70_200, late), TickPlan::Fire { tick_ms: 70_000 });
        let hourly = CronTrigger { schedule: CronSchedule::parse("t", "0 * * * *", None).unwrap(), ..none };
        let id = identity(&hourly);
        let mark = Mark { trigger: id.clone(), last_tick_ms: 0 };
        assert_eq!(
            plan_tick(&hourly, &id, Some(&mark), 3_600_000 + 60_000, late),
            TickPlan::Skip { tick_ms: 3_600_000 }
        );
    }

    async fn store_with(triggers: Vec<TriggerInput>) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut input = FunctionSpecInput::exec("ticker", "/bin/true", &[], 8080);
        input.triggers = triggers;
        let record = crate::model::FunctionRecord::new(input.validate().unwrap(), 1);
        store.compare_and_set(None, record).await.unwrap();
        store
    }

    #[tokio::test]
    async fn two_schedulers_on_one_store_fire_each_tick_once_and_downtime_fires_one_tick() {
        let store = store_with(vec![TriggerInput { cron: Some("* * * * * *".into()), ..Default::default() }]).await;
        let a = CronScheduler::new(Arc::clone(&store), CronConfig::default(), None);
        let b = CronScheduler::new(Arc::clone(&store), CronConfig::default(), None);
        let t0 = 1_000_000_000;
        assert!(a.pass(t0 + 100).await.unwrap().fired.is_empty(), "first sight fires nothing");
        let mut fired = Vec::new();
        for s in 1..=10u64 {
            // Both look at every tick, in either order.
            let (first, second) = if s % 2 == 0 { (&a, &b) } else { (&b, &a) };
            for sched in [first, second] {
                fired.extend(sched.pass(t0 + s * 1000 + 50).await.unwrap().fired.into_iter().map(|(_, t)| t));
            }
        }
        assert_eq!(fired, (1..=10u64).map(|s| t0 + s * 1000).collect::<Vec<_>>(), "each tick once");
        // Down for 5 s: the next pass fires only the latest tick.
        let after = a.pass(t0 + 16_200).await.unwrap();
        assert_eq!(after.fired.iter().map(|(_, t)| *t).collect::<Vec<_>>(), [t0 + 16_000]);
        let all = InvocationStore::new(store).list(&"ticker".parse().unwrap(), None, None, 100).await.unwrap();
        assert_eq!(all.len(), 11);
        assert!(all.iter().all(|i| i.request.path() == "/" && i.request.method() == "POST"));
    }

    #[tokio::test]
    async fn a_tick_recorded_before_a_crash_is_not_fired_again() {
        let store = store_with(vec![TriggerInput { cron: Some("* * * * * *".into()), ..Default::default() }]).await;
        let s = CronScheduler::new(Arc::clone(&store), CronConfig::default(), None);
        let t0 = 2_000_000_000;
        s.pass(t0 + 10).await.unwrap();
        // The crash: the invocation of tick t0+1000 was created, its mark never moved.
        let function: FunctionName = "ticker".parse().unwrap();
        let id = InvocationId::for_trigger(&function, t0 + 1000, "cron:0");
        let request = InvocationRequest::new("POST", "/", vec![], vec![]).unwrap();
        InvocationStore::new(Arc::clone(&store)).create(Invocation::queued(id, request, None)).await.unwrap();
        let pass = s.pass(t0 + 1_100).await.unwrap();
        assert_eq!((pass.fired.len(), pass.already), (0, 1), "{pass:?}");
        assert_eq!(s.pass(t0 + 1_200).await.unwrap(), CronPass::default(), "and the mark moved on");
    }

    #[tokio::test]
    async fn marks_of_removed_triggers_are_forgotten() {
        let store = store_with(vec![TriggerInput { cron: Some("* * * * *".into()), ..Default::default() }]).await;
        let s = CronScheduler::new(Arc::clone(&store), CronConfig::default(), None);
        s.pass(5_000_000).await.unwrap();
        assert_eq!(s.forget_stale().await.unwrap(), 0);
        let mut record = store.get(&"ticker".parse().unwrap()).await.unwrap().unwrap();
        let revision = record.revision;
        record.deleted = true;
        store.compare_and_set(Some(revision), record).await.unwrap();
        assert_eq!(s.forget_stale().await.unwrap(), 1);
    }
}
