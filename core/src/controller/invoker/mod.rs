//! Running asynchronous invocations.
//!
//! ```text
//! edge: Prefer: respond-async ─ StoreIntake::accept ─ InvocationStore::create (durable) ─ 202 + id
//!                                                  └─ wakes the Invoker in this process
//! Invoker (woken, and every scan_period): due invocations ─ claim (queued → running, compare-and-set)
//!   ─ Dispatch through the edge (activation from zero) with X-Call-Id and X-Attempt
//!   ─ record the attempt: succeeded / failed, or queued again with backoff, or dead after max_attempts
//!   ─ final, with an X-Callback-Url: the callback is pending in the same document
//! Invoker (same scan): pending callbacks ─ claim ─ POST the outcome ─ delivered, retried with backoff, or failed
//! ```
//!
//! Level-triggered like the runtime worker: the Store holds every accepted
//! invocation, a wake-up only makes the scan happen sooner, and a claim
//! leaves the next attempt due once the function's timeout (and a grace)
//! has passed, so an invocation whose invoker died mid-attempt is run again
//! (at least once; the function gets `X-Call-Id` to tell repeats apart).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod callback;

use super::invocations::{InvocationStore, due_at};
use super::workqueue::jitter;
use crate::model::{
    AsyncPolicy, CallbackDelivery, CallbackHosts, CallbackUrl, FunctionName, Invocation, InvocationAttempt,
    InvocationId, InvocationRequest, InvocationState, ValidationError,
};
use crate::ports::{CallbackSender, Dispatch, Dispatched, IntakeError, InvocationIntake, Store};
use crate::support::now_ms;

/// Settings of an [`Invoker`].
#[derive(Clone, Debug)]
pub struct InvokerConfig {
    /// Attempts before an invocation is dead (default 5).
    pub max_attempts: u32,
    /// The wait after the first failed attempt (default 1 s); it doubles per attempt.
    pub backoff_min: Duration,
    /// The longest wait between attempts (default 60 s).
    pub backoff_max: Duration,
    /// Attempts under way at once per running instance of a function (default 1;
    /// a function's `async.per_instance` overrides it).
    pub per_instance: usize,
    /// How often the whole Store is scanned for due invocations (default 2 s):
    /// the backstop that finds what no hint told this invoker of (accepted or
    /// retried by another process, or a hint lost in a crash).
    pub scan_period: Duration,
    /// Bytes of a response body kept with the invocation (default 64 KiB).
    pub response_cap: usize,
    /// How long a finished invocation is kept (default 24 h).
    pub retention: Duration,
    /// Retry every 5xx, not only 502, 503 and 504 (default off).
    pub retry_any_5xx: bool,
    /// The hosts callbacks may go to (default: any); checked when an
    /// invocation is accepted and again before each delivery.
    pub callback_hosts: CallbackHosts,
    /// Attempts to deliver a callback before it is recorded as failed
    /// (default 10: with the default backoff, about five minutes).
    pub callback_max_attempts: u32,
    /// How long a callback receiver has to answer (default 10 s).
    pub callback_timeout: Duration,
    /// Callbacks under way at once (default 64).
    pub callback_concurrency: usize,
}

impl Default for InvokerConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            per_instance: 1,
            scan_period: Duration::from_secs(2),
            response_cap: 64 * 1024,
            retention: Duration::from_secs(24 * 3600),
            retry_any_5xx: false,
            callback_hosts: CallbackHosts::any(),
            callback_max_attempts: 10,
            callback_timeout: Duration::from_secs(10),
            callback_concurrency: 64,
        }
    }
}

/// An attempt's outcome, as the invoker classifies it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Succeeded,
    Failed,
    /// Worth another attempt, after at least this long.
    Retry(Option<Duration>),
}

pub(crate) fn verdict(result: &Result<Dispatched, crate::ports::DispatchError>, retry_any_5xx: bool) -> Verdict {
    match result {
        Err(_) => Verdict::Retry(None),
        Ok(d) => match d.response.status {
            429 | 502..=504 => Verdict::Retry(d.retry_after),
            500..=599 if retry_any_5xx => Verdict::Retry(d.retry_after),
            200..=399 => Verdict::Succeeded,
            _ => Verdict::Failed,
        },
    }
}

impl InvokerConfig {
    /// The wait after failed attempt `number` (1-based): `backoff_min`
    /// doubled per attempt, at most `backoff_max`, less up to 20% of jitter.
    fn backoff(&self, number: u32) -> Duration {
        let base = self.backoff_min.saturating_mul(2u32.saturating_pow(number.saturating_sub(1).min(20)));
        base.min(self.backoff_max).mul_f64(0.8 + 0.2 * jitter())
    }
}

/// Invocations an invoker knows are due, by due time: attempts to make, and
/// callbacks to send (kept apart, since each has its own limit on what runs).
#[derive(Default)]
struct Hints {
    attempts: BTreeSet<(u64, InvocationId)>,
    callbacks: BTreeSet<(u64, InvocationId)>,
}

impl Hints {
    fn first_due(&self) -> Option<u64> {
        [self.attempts.first(), self.callbacks.first()].into_iter().flatten().map(|(at, _)| *at).min()
    }

    /// Takes the hint of `inv`'s next step (attempt or callback) at `at`.
    fn add(&mut self, inv: &Invocation, at: u64) {
        if inv.state.is_final() {
            self.callbacks.insert((at, inv.id.clone()));
        } else {
            self.attempts.insert((at, inv.id.clone()));
        }
    }
}

/// Tells an [`Invoker`] in this process that an invocation is due (at a
/// time), so it looks at that one document rather than waiting for its next
/// full scan of the Store. A hint only makes work happen sooner: the full
/// scan every `scan_period` still finds everything that is due.
#[derive(Clone)]
pub struct InvokerNudge {
    wake: Arc<Notify>,
    hints: Arc<Mutex<Hints>>,
}

impl InvokerNudge {
    /// `id` is due at `at_ms` (ms since the epoch); wakes the invoker.
    pub fn due(&self, id: &InvocationId, at_ms: u64) {
        self.hints.lock().attempts.insert((at_ms, id.clone()));
        self.wake.notify_one();
    }

    /// Wakes the invoker for a full scan soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Records accepted invocations in the Store and wakes the invoker of this
/// process; another process's invoker finds them at its next scan.
pub struct StoreIntake {
    store: Arc<dyn Store>,
    invocations: InvocationStore,
    nudge: InvokerNudge,
    callback_hosts: CallbackHosts,
}

impl StoreIntake {
    /// An intake into `store` with no invoker of its own to wake (one that
    /// scans the Store finds what it accepts), allowing callbacks to `callback_hosts`.
    pub fn new(store: Arc<dyn Store>, callback_hosts: CallbackHosts) -> Self {
        Self {
            invocations: InvocationStore::new(Arc::clone(&store)),
            store,
            nudge: InvokerNudge { wake: Arc::new(Notify::new()), hints: Arc::default() },
            callback_hosts,
        }
    }
}

#[async_trait]
impl InvocationIntake for StoreIntake {
    async fn policy(&self, function: &FunctionName) -> Result<AsyncPolicy, IntakeError> {
        match self.store.get(function).await.map_err(|e| IntakeError::Unavailable(e.to_string()))? {
            Some(r) if !r.deleted => Ok(r.spec.asynchronous().clone()),
            _ => Err(IntakeError::NotFound(function.clone())),
        }
    }

    async fn accept(
        &self,
        function: &FunctionName,
        request: InvocationRequest,
        callback: Option<CallbackUrl>,
    ) -> Result<InvocationId, IntakeError> {
        let unavailable = |e: crate::ports::StoreError| IntakeError::Unavailable(e.to_string());
        if let Some(url) = callback.as_ref().filter(|u| !self.callback_hosts.allows(u)) {
            return Err(IntakeError::Invalid(ValidationError::new(
                "callback_url",
                format!(
                    "host `{}` is not in this platform's callback allow-list ({}); nothing was accepted",
                    url.host(),
                    self.callback_hosts.entries().join(", ")
                ),
            )));
        }
        match self.store.get(function).await.map_err(unavailable)? {
            Some(r) if !r.deleted => {}
            _ => return Err(IntakeError::NotFound(function.clone())),
        }
        let id = InvocationId::generate(function, now_ms()).map_err(|e| IntakeError::Unavailable(e.to_string()))?;
        let created = self.invocations.create(Invocation::queued(id, request, callback)).await.map_err(unavailable)?;
        metrics::counter!("pilotlight_invocations_accepted_total", "function" => function.to_string()).increment(1);
        tracing::debug!(function = %function, id = %created.id, "invocation accepted");
        self.nudge.due(&created.id, created.created_ms);
        Ok(created.id)
    }
}

/// Runs due invocations; see the module docs.
pub struct Invoker {
    store: Arc<dyn Store>,
    invocations: InvocationStore,
    dispatch: Arc<dyn Dispatch>,
    callbacks: Arc<dyn CallbackSender>,
    config: InvokerConfig,
    wake: Arc<Notify>,
    /// Invocations known to be due (accepted here, retried here), by due time.
    hints: Arc<Mutex<Hints>>,
    /// Attempts each function may have under way at once, as last read.
    limits: Mutex<HashMap<FunctionName, usize>>,
    running: Mutex<HashMap<FunctionName, usize>>,
    /// Callback deliveries under way.
    calling: Mutex<usize>,
    /// Functions the queued gauge was last set for (to zero those that emptied).
    queued_seen: Mutex<std::collections::HashSet<FunctionName>>,
    attempts: Mutex<JoinSet<()>>,
}

impl Invoker {
    /// An invoker of the invocations in `store`, sending them through
    /// `dispatch` and their outcomes through `callbacks`.
    pub fn new(
        store: Arc<dyn Store>,
        dispatch: Arc<dyn Dispatch>,
        callbacks: Arc<dyn CallbackSender>,
        config: InvokerConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            invocations: InvocationStore::new(Arc::clone(&store)),
            store,
            dispatch,
            callbacks,
            config,
            wake: Arc::new(Notify::new()),
            hints: Arc::default(),
            limits: Mutex::default(),
            running: Mutex::default(),
            calling: Mutex::new(0),
            queued_seen: Mutex::default(),
            attempts: Mutex::new(JoinSet::new()),
        })
    }

    /// The intake an edge hands accepted invocations to: it records them in
    /// this invoker's Store and wakes this invoker.
    pub fn intake(&self) -> StoreIntake {
        StoreIntake {
            store: Arc::clone(&self.store),
            invocations: self.invocations.clone(),
            nudge: self.waker(),
            callback_hosts: self.config.callback_hosts.clone(),
        }
    }

    /// What tells it an invocation is due (a cron scheduler does, when a tick fired).
    pub fn waker(&self) -> InvokerNudge {
        InvokerNudge { wake: Arc::clone(&self.wake), hints: Arc::clone(&self.hints) }
    }

    /// The invocations it runs.
    pub fn invocations(&self) -> &InvocationStore {
        &self.invocations
    }

    /// Scans and runs until `cancel` fires; attempts under way then are cut
    /// and run again later (their claim expires), so nothing is lost.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut last_prune = tokio::time::Instant::now();
        let mut last_scan: Option<tokio::time::Instant> = None;
        loop {
            let full = last_scan.is_none_or(|t| t.elapsed() >= self.config.scan_period);
            if full {
                last_scan = Some(tokio::time::Instant::now());
            }
            if let Err(e) = self.tick(full).await {
                tracing::warn!(error = %e, "invoker: cannot read due invocations; trying again");
            }
            if last_prune.elapsed() > Duration::from_secs(60) {
                last_prune = tokio::time::Instant::now();
                let cut = now_ms().saturating_sub(u64::try_from(self.config.retention.as_millis()).unwrap_or(u64::MAX));
                match self.invocations.prune(cut).await {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "invocations past retention removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "invoker: retention sweep failed"),
                }
            }
            // Until the next full scan, or the next hinted retry, or a wake-up.
            let mut wait = self.config.scan_period.saturating_sub(last_scan.map_or(Duration::ZERO, |t| t.elapsed()));
            if let Some(at) = self.hints.lock().first_due() {
                wait = wait.min(Duration::from_millis(at.saturating_sub(now_ms())));
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
            }
        }
        let mut attempts = std::mem::take(&mut *self.attempts.lock());
        attempts.shutdown().await;
    }

    /// Claims and starts every due invocation its function has room for:
    /// all of the Store's (`full`), or those hinted as due by now. What is
    /// due but has no room yet is kept as a hint for the next tick.
    async fn tick(self: &Arc<Self>, full: bool) -> Result<(), crate::ports::StoreError> {
        // Reap the attempts that ended, so the set holds only those under way.
        while self.attempts.lock().try_join_next().is_some() {}
        let now = now_ms();
        let due = if full {
            let due = self.invocations.due(now, 1024).await?;
            self.observe_backlog(&due, now);
            due
        } else {
            let hinted = self.take_hints(now);
            let mut due = Vec::with_capacity(hinted.len());
            for id in hinted {
                if let Some(inv) = self.invocations.get(&id).await?
                    && due_at(&inv).is_some_and(|t| t <= now)
                {
                    due.push(inv);
                }
            }
            due
        };
        let mut limits: HashMap<FunctionName, Option<(usize, Duration)>> = HashMap::new();
        for inv in due {
            if inv.state.is_final() {
                self.start_callback(inv, now).await?;
                continue;
            }
            let function = inv.function();
            if !limits.contains_key(&function) {
                let record = self.store.get(&function).await?;
                let limit = record.filter(|r| !r.deleted).map(|r| {
                    let instances = r.status.endpoints.len().max(1);
                    let per_instance =
                        r.spec.asynchronous().per_instance.map_or(self.config.per_instance, |n| n as usize).max(1);
                    (instances.saturating_mul(per_instance), r.spec.timeout())
                });
                if let Some((n, _)) = limit {
                    self.limits.lock().insert(function.clone(), n);
                }
                limits.insert(function.clone(), limit);
            }
            let Some((limit, timeout)) = limits.get(&function).copied().flatten() else {
                self.bury(&inv.id, "the function was deleted before the invocation ran").await;
                continue;
            };
            if self.running.lock().get(&function).copied().unwrap_or(0) >= limit {
                // No room now: looked at again when an attempt of this function ends.
                self.hints.lock().attempts.insert((now, inv.id.clone()));
                continue;
            }
            let lease = u64::try_from((timeout + Duration::from_secs(10)).as_millis()).unwrap_or(u64::MAX);
            let mut claimed = false;
            let inv = self
                .invocations
                .update(&inv.id, |i| {
                    claimed = matches!(i.state, InvocationState::Queued | InvocationState::Running)
                        && i.next_attempt_ms.is_none_or(|t| t <= now);
                    if claimed {
                        i.state = InvocationState::Running;
                        i.next_attempt_ms = Some(now.saturating_add(lease));
                    }
                    claimed
                })
                .await?;
            let Some(inv) = inv.filter(|_| claimed) else { continue };
            let in_flight = {
                let mut running = self.running.lock();
                let n = running.entry(function.clone()).or_default();
                *n += 1;
                *n
            };
            metrics::gauge!("pilotlight_invocations_in_flight", "function" => function.to_string())
                .set(in_flight as f64);
            let me = Arc::clone(self);
            self.attempts.lock().spawn(async move { me.attempt(inv, timeout).await });
        }
        Ok(())
    }

    /// One attempt: dispatch, then record what happened.
    async fn attempt(self: Arc<Self>, inv: Invocation, timeout: Duration) {
        let function = inv.function();
        let number = u32::try_from(inv.attempts.len()).unwrap_or(u32::MAX).saturating_add(1);
        let started = now_ms();
        let began = tokio::time::Instant::now();
        let headers = vec![("x-call-id".to_owned(), inv.id.to_string()), ("x-attempt".to_owned(), number.to_string())];
        let result = self.dispatch.dispatch(&function, &inv.request, headers, timeout, self.config.response_cap).await;
        let duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        let verdict = verdict(&result, self.config.retry_any_5xx);
        let attempt = InvocationAttempt {
            number,
            started_ms: started,
            duration_ms,
            status: result.as_ref().ok().map(|d| d.response.status),
            error: result.as_ref().err().map(ToString::to_string),
        };
        let backoff = self.config.backoff(number);
        let response = result.ok().map(|d| d.response);
        let max_attempts = self.config.max_attempts.max(1);
        let recorded = self
            .invocations
            .update(&inv.id, |i| {
                // Another attempt took over after this one's claim expired: the later one records.
                if i.attempts.iter().any(|a| a.number >= number) || i.state != InvocationState::Running {
                    return false;
                }
                i.attempts.push(attempt.clone());
                if response.is_some() {
                    i.response.clone_from(&response);
                }
                let now = now_ms();
                match &verdict {
                    Verdict::Succeeded | Verdict::Failed => {
                        i.callback = i.callback_url.as_ref().map(|_| CallbackDelivery::pending(now));
                        i.state = if verdict == Verdict::Succeeded {
                            InvocationState::Succeeded
                        } else {
                            InvocationState::Failed
                        };
                        i.next_attempt_ms = None;
                        i.finished_ms = Some(now);
                        i.reason = (verdict == Verdict::Failed)
                            .then(|| format!("the function answered {}", attempt.status.unwrap_or(0)));
                    }
                    Verdict::Retry(_) if number >= max_attempts => {
                        i.callback = i.callback_url.as_ref().map(|_| CallbackDelivery::pending(now));
                        i.state = InvocationState::Dead;
                        i.next_attempt_ms = None;
                        i.finished_ms = Some(now);
                        i.reason = Some(format!(
                            "{number} attempts failed; the last: {}",
                            attempt.error.clone().unwrap_or_else(|| format!("status {}", attempt.status.unwrap_or(0)))
                        ));
                    }
                    Verdict::Retry(after) => {
                        let wait = after.map_or(backoff, |a| a.max(backoff)).min(self.config.backoff_max.max(backoff));
                        i.state = InvocationState::Queued;
                        i.next_attempt_ms = Some(now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(0)));
                    }
                }
                true
            })
            .await;
        match recorded {
            Ok(Some(i)) => {
                let outcome = match i.state {
                    InvocationState::Succeeded => "succeeded",
                    InvocationState::Failed => "failed",
                    InvocationState::Dead => "dead",
                    _ => "retried",
                };
                metrics::counter!("pilotlight_invocation_attempts_total", "function" => function.to_string(), "outcome" => outcome)
                    .increment(1);
                if let Some(at) = due_at(&i) {
                    self.hints.lock().add(&i, at);
                }
                if i.state.is_final() {
                    let took = i.finished_ms.unwrap_or(0).saturating_sub(i.created_ms);
                    metrics::histogram!("pilotlight_invocation_seconds", "function" => function.to_string())
                        .record(Duration::from_millis(took).as_secs_f64());
                }
                tracing::debug!(id = %i.id, attempt = number, state = outcome, "invocation attempt recorded");
            }
            Ok(None) => tracing::debug!(id = %inv.id, "invocation removed while it ran"),
            // The claim expires and the attempt runs again.
            Err(e) => {
                tracing::warn!(id = %inv.id, error = %e, "cannot record an invocation attempt; it will run again")
            }
        }
        let left = self.running.lock().get_mut(&function).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        metrics::gauge!("pilotlight_invocations_in_flight", "function" => function.to_string())
            .set(left.unwrap_or(0) as f64);
        self.wake.notify_one();
    }

    /// The hinted ids due by `now` that there is room to start: per
    /// function, up to its limit less what runs (one to learn the limit of a
    /// function not seen yet); callbacks up to their concurrency. The others
    /// stay hinted, unread, so a large backlog costs nothing per tick.
    fn take_hints(&self, now: u64) -> Vec<InvocationId> {
        let mut hints = self.hints.lock();
        let running = self.running.lock();
        let limits = self.limits.lock();
        let mut room: HashMap<FunctionName, usize> = HashMap::new();
        let mut taken = Vec::new();
        let due: Vec<(u64, InvocationId)> = hints.attempts.iter().take_while(|(at, _)| *at <= now).cloned().collect();
        for key in due {
            let function = key.1.function();
            let left = room.entry(function.clone()).or_insert_with(|| {
                let limit = limits.get(&function).copied().unwrap_or(1);
                limit.saturating_sub(running.get(&function).copied().unwrap_or(0))
            });
            if *left > 0 {
                *left -= 1;
                hints.attempts.remove(&key);
                taken.push(key.1);
            }
        }
        let mut callback_room = self.config.callback_concurrency.max(1).saturating_sub(*self.calling.lock());
        while callback_room > 0 && hints.callbacks.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, id)) = hints.callbacks.pop_first() {
                taken.push(id);
            }
            callback_room -= 1;
        }
        taken
    }

    /// Gauges of the backlog: invocations due per function, and the queue
    /// lag (how long the longest-waiting due one has been due).
    fn observe_backlog(&self, due: &[Invocation], now: u64) {
        let mut queued: HashMap<FunctionName, usize> = HashMap::new();
        let mut lag_ms = 0u64;
        for inv in due.iter().filter(|i| !i.state.is_final()) {
            *queued.entry(inv.function()).or_default() += 1;
            lag_ms = lag_ms.max(now.saturating_sub(due_at(inv).unwrap_or(now)));
        }
        let mut seen = self.queued_seen.lock();
        for function in seen.iter().filter(|f| !queued.contains_key(*f)) {
            metrics::gauge!("pilotlight_invocations_queued", "function" => function.to_string()).set(0.0);
        }
        for (function, n) in &queued {
            metrics::gauge!("pilotlight_invocations_queued", "function" => function.to_string()).set(*n as f64);
        }
        *seen = queued.into_keys().collect();
        metrics::gauge!("pilotlight_invocation_queue_lag_seconds").set(Duration::from_millis(lag_ms).as_secs_f64());
    }

    /// Ends an invocation that can never run.
    async fn bury(&self, id: &InvocationId, reason: &str) {
        let result = self
            .invocations
            .update(id, |i| {
                if i.state.is_final() {
                    return false;
                }
                i.state = InvocationState::Dead;
                i.next_attempt_ms = None;
                i.finished_ms = Some(now_ms());
                i.reason = Some(reason.to_owned());
                i.callback = i.callback_url.as_ref().map(|_| CallbackDelivery::pending(now_ms()));
                true
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(%id, error = %e, "cannot end an invocation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InvocationResponse;
    use crate::ports::DispatchError;

    fn answered(status: u16, retry_after: Option<u64>) -> Result<Dispatched, DispatchError> {
        Ok(Dispatched {
            response: InvocationResponse { status, headers: vec![], body: vec![], truncated: false },
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    #[test]
    fn what_is_retried() {
        assert_eq!(verdict(&answered(200, None), false), Verdict::Succeeded);
        assert_eq!(verdict(&answered(302, None), false), Verdict::Succeeded);
        assert_eq!(verdict(&answered(404, None), false), Verdict::Failed);
        assert_eq!(verdict(&answered(500, None), false), Verdict::Failed);
        assert_eq!(verdict(&answered(500, None), true), Verdict::Retry(None));
        assert_eq!(verdict(&answered(429, Some(7)), false), Verdict::Retry(Some(Duration::from_secs(7))));
        for s in [502, 503, 504] {
            assert_eq!(verdict(&answered(s, None), false), Verdict::Retry(None));
        }
        assert_eq!(verdict(&Err(DispatchError::Connect("refused".into())), false), Verdict::Retry(None));
        assert_eq!(verdict(&Err(DispatchError::Timeout(Duration::from_secs(1))), false), Verdict::Retry(None));
    }
}
