//! Every change of any function's status, as a stream read from the Store.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Platform;
use crate::controller::runtime_worker::is_gone;
use crate::model::{FunctionName, FunctionRecord, Phase};
use crate::ports::Store;

impl Platform {
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
    /// Running instances wanted.
    pub wanted: u32,
    /// Failed reconciles in a row.
    pub attempts: u32,
    /// When the next try is due, in milliseconds since the Unix epoch.
    pub next_retry_ms: Option<u64>,
    /// The failure will not go away by itself (retried at the backoff cap).
    pub permanent: bool,
}

impl StatusUpdate {
    /// The status a record shows: `pending` until the workers report on its newest generation.
    pub fn of(r: &FunctionRecord) -> Self {
        let s = &r.status;
        Self {
            name: r.spec.name().clone(),
            generation: r.generation,
            phase: s.derive_phase(r.generation, r.deleted),
            url: s.url.clone(),
            message: s.message.clone(),
            will_retry: s.will_retry,
            ready_instances: s.endpoints.len(),
            wanted: r.wanted(),
            attempts: s.attempts,
            next_retry_ms: s.next_retry_ms,
            permanent: s.permanent,
        }
    }
}
