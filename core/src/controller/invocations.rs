//! Asynchronous invocations in the Store: documents of kind `invocations`,
//! keyed by id (which starts with the function's name, so one function's
//! invocations are one prefix, in creation order). Every change is a
//! read-modify-write with the Store's compare-and-set, so the edge that
//! accepts an invocation, the invoker that runs it and the API that retries a
//! dead letter never lose each other's writes. An invocation is written, with
//! fsync on a durable Store, before anyone is told it was accepted.

use std::sync::Arc;

use crate::model::{CallbackState, FunctionName, Invocation, InvocationId, InvocationState};
use crate::ports::{Doc, DocKey, DocKind, DocQuery, Store, StoreError};

/// How often an update reads again after a conflicting write before it gives up.
const TRIES: usize = 16;
/// Documents read per Store call while scanning.
const PAGE: usize = 256;

/// What [`InvocationStore::redrive`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Redrive {
    /// Queued again.
    Requeued(Box<Invocation>),
    /// It is not a dead letter (it is in this state).
    NotDead(InvocationState),
    /// It is not kept (never was, or past its retention).
    Missing,
}

/// The invocations kept in a [`Store`].
#[derive(Clone)]
pub struct InvocationStore {
    store: Arc<dyn Store>,
    kind: DocKind,
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { source: format!("invocation `{key}` cannot be read: {e}").into(), retryable: false }
}

fn decode(doc: Doc) -> Result<Invocation, StoreError> {
    let mut inv: Invocation = serde_json::from_slice(&doc.value).map_err(|e| corrupt(&doc.key, e))?;
    if inv.id.as_str() != doc.key {
        return Err(corrupt(&doc.key, format!("it says it is `{}`", inv.id)));
    }
    inv.revision = doc.revision;
    Ok(inv)
}

fn encode(inv: &Invocation) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(inv).map_err(|e| StoreError::Backend { source: Box::new(e), retryable: false })
}

/// When `inv` next needs the invoker: its next attempt while it is queued or
/// running, its callback's next attempt once it is final; `None` when nothing
/// is left to do.
pub fn due_at(inv: &Invocation) -> Option<u64> {
    match inv.state {
        InvocationState::Queued | InvocationState::Running => Some(inv.next_attempt_ms.unwrap_or(0)),
        _ => inv
            .callback
            .as_ref()
            .filter(|c| c.state == CallbackState::Pending && inv.callback_url.is_some())
            .map(|c| c.next_attempt_ms.unwrap_or(0)),
    }
}

impl InvocationStore {
    /// The invocations in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, kind: DocKind::new("invocations").unwrap_or_else(|_| unreachable!("a valid kind")) }
    }

    fn key(&self, id: &InvocationId) -> Result<DocKey, StoreError> {
        DocKey::new(&self.kind, id.as_str())
    }

    /// Records a new invocation; it is durable when this returns. Its id must be new.
    pub async fn create(&self, mut inv: Invocation) -> Result<Invocation, StoreError> {
        inv.revision = self.store.doc_put(&self.key(&inv.id)?, None, encode(&inv)?).await?;
        Ok(inv)
    }

    /// One invocation, if it is kept.
    pub async fn get(&self, id: &InvocationId) -> Result<Option<Invocation>, StoreError> {
        self.store.doc_get(&self.key(id)?).await?.map(decode).transpose()
    }

    /// Reads `id`, lets `change` edit it and writes it back with a
    /// compare-and-set; on a conflict it reads again and calls `change` again
    /// (so `change` must be a pure function of what it is given). `change`
    /// returns `false` to write nothing. Returns the invocation as it is
    /// after; `None` when it is not kept.
    pub async fn update(
        &self,
        id: &InvocationId,
        mut change: impl FnMut(&mut Invocation) -> bool,
    ) -> Result<Option<Invocation>, StoreError> {
        let key = self.key(id)?;
        for _ in 0..TRIES {
            let Some(mut inv) = self.store.doc_get(&key).await?.map(decode).transpose()? else { return Ok(None) };
            if !change(&mut inv) {
                return Ok(Some(inv));
            }
            match self.store.doc_put(&key, Some(inv.revision), encode(&inv)?).await {
                Ok(revision) => {
                    inv.revision = revision;
                    return Ok(Some(inv));
                }
                Err(StoreError::DocConflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!("invocation `{id}` kept changing under concurrent writes; try again")))
    }

    /// Puts a dead invocation back in the queue, due at once, with its
    /// attempts, last answer and reason cleared (a dead letter's redrive).
    pub async fn redrive(&self, id: &InvocationId) -> Result<Redrive, StoreError> {
        let mut was = None;
        let now = crate::support::now_ms();
        let after = self
            .update(id, |i| {
                was = Some(i.state);
                if i.state != InvocationState::Dead {
                    return false;
                }
                i.state = InvocationState::Queued;
                i.attempts.clear();
                i.response = None;
                i.reason = None;
                i.finished_ms = None;
                i.next_attempt_ms = Some(now);
                // Its new outcome is called back again.
                i.callback = None;
                true
            })
            .await?;
        Ok(match (after, was) {
            (None, _) => Redrive::Missing,
            (Some(i), Some(InvocationState::Dead)) => Redrive::Requeued(Box::new(i)),
            (Some(i), _) => Redrive::NotDead(i.state),
        })
    }

    /// `function`'s invocations in creation order, those in `state` only when
    /// given, after `after` (the last id of the previous page), at most `limit`.
    pub async fn list(
        &self,
        function: &FunctionName,
        state: Option<InvocationState>,
        after: Option<&InvocationId>,
        limit: usize,
    ) -> Result<Vec<Invocation>, StoreError> {
        let mut query = DocQuery::prefix(format!("{function}."), PAGE);
        query.after = after.map(|a| a.as_str().to_owned());
        let mut out = Vec::new();
        while out.len() < limit {
            let page = self.store.doc_list(&self.kind, &query).await?;
            let last = page.last().map(|d| d.key.clone());
            for doc in page {
                let inv = decode(doc)?;
                if state.is_none_or(|s| s == inv.state) && out.len() < limit {
                    out.push(inv);
                }
            }
            match last {
                Some(l) if out.len() < limit => query.after = Some(l),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Every kept invocation, one page of the Store at a time; `visit` is
    /// called for each, in id order. A scan reads the whole kind: the
    /// invoker's periodic look for due work and the retention sweep use it.
    async fn scan(&self, mut visit: impl FnMut(Invocation)) -> Result<(), StoreError> {
        let mut query = DocQuery::prefix("", PAGE);
        loop {
            let page = self.store.doc_list(&self.kind, &query).await?;
            let Some(last) = page.last().map(|d| d.key.clone()) else { return Ok(()) };
            let full = page.len() == PAGE;
            for doc in page {
                visit(decode(doc)?);
            }
            if !full {
                return Ok(());
            }
            query.after = Some(last);
        }
    }

    /// What is due at `now_ms`, earliest first, at most `limit`: queued
    /// invocations (and those left `running` by a process that died: their
    /// attempt is due again), and finished ones whose callback is pending.
    pub async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<Invocation>, StoreError> {
        let mut due = Vec::new();
        self.scan(|inv| {
            if due_at(&inv).is_some_and(|t| t <= now_ms) {
                due.push(inv);
            }
        })
        .await?;
        due.sort_by_key(|i| (due_at(i).unwrap_or(0), i.id.clone()));
        due.truncate(limit);
        Ok(due)
    }

    /// Removes invocations that reached a final state before `finished_before_ms`;
    /// how many went. One that changed since it was read is left for the next sweep.
    pub async fn prune(&self, finished_before_ms: u64) -> Result<usize, StoreError> {
        let mut old = Vec::new();
        self.scan(|inv| {
            if due_at(&inv).is_none() && inv.finished_ms.is_some_and(|f| f < finished_before_ms) {
                old.push(inv);
            }
        })
        .await?;
        let mut removed = 0;
        for inv in old {
            match self.store.doc_delete(&self.key(&inv.id)?, inv.revision).await {
                Ok(()) => removed += 1,
                Err(StoreError::DocConflict { .. } | StoreError::DocNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::model::InvocationRequest;

    fn f(n: &str) -> FunctionName {
        FunctionName::new(n).unwrap()
    }

    fn queued(function: &str, at_ms: u64) -> Invocation {
        let id = InvocationId::generate(&f(function), at_ms).unwrap();
        Invocation::queued(id, InvocationRequest::new("POST", "/", vec![], b"x".to_vec()).unwrap(), None)
    }

    #[tokio::test]
    async fn created_invocations_read_back_and_list_per_function_in_order() {
        let s = InvocationStore::new(Arc::new(MemoryStore::new()));
        let mut made = Vec::new();
        for t in [30, 10, 20] {
            made.push(s.create(queued("a", t)).await.unwrap());
        }
        s.create(queued("ab", 5)).await.unwrap();
        let back = s.get(&made[0].id).await.unwrap().unwrap();
        assert_eq!(back, made[0]);
        assert!(s.create(made[0].clone()).await.is_err(), "an id is written once");
        let listed: Vec<u64> = s.list(&f("a"), None, None, 10).await.unwrap().iter().map(|i| i.created_ms).collect();
        assert_eq!(listed, [10, 20, 30], "one function (not `ab`), oldest first");
        let first = s.list(&f("a"), None, None, 1).await.unwrap();
        let next = s.list(&f("a"), None, Some(&first[0].id), 10).await.unwrap();
        assert_eq!(next.iter().map(|i| i.created_ms).collect::<Vec<_>>(), [20, 30], "pages");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_updates_all_land() {
        let s = InvocationStore::new(Arc::new(MemoryStore::new()));
        let inv = s.create(queued("a", 1)).await.unwrap();
        let updates: Vec<_> = (0..16u32)
            .map(|i| {
                let (s, id) = (s.clone(), inv.id.clone());
                tokio::spawn(async move {
                    s.update(&id, move |v| {
                        v.attempts.push(crate::model::InvocationAttempt {
                            number: i,
                            started_ms: 0,
                            duration_ms: 0,
                            status: None,
                            error: None,
                        });
                        true
                    })
                    .await
                })
            })
            .collect();
        for u in updates {
            u.await.unwrap().unwrap().unwrap();
        }
        let mut numbers: Vec<u32> = s.get(&inv.id).await.unwrap().unwrap().attempts.iter().map(|a| a.number).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (0..16).collect::<Vec<_>>(), "no update was lost");
        let missing = InvocationId::generate(&f("a"), 2).unwrap();
        assert!(s.update(&missing, |_| true).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn due_work_and_the_retention_sweep() {
        let s = InvocationStore::new(Arc::new(MemoryStore::new()));
        let now = 1_000;
        let soon = s.create(queued("a", 900)).await.unwrap();
        let later = s.create(queued("b", 500)).await.unwrap();
        s.update(&later.id, |i| {
            i.next_attempt_ms = Some(now + 50);
            true
        })
        .await
        .unwrap();
        let old_done = s.create(queued("a", 100)).await.unwrap();
        s.update(&old_done.id, |i| {
            i.state = InvocationState::Succeeded;
            i.next_attempt_ms = None;
            i.finished_ms = Some(200);
            true
        })
        .await
        .unwrap();
        let due = s.due(now, 10).await.unwrap();
        assert_eq!(due.iter().map(|i| &i.id).collect::<Vec<_>>(), [&soon.id]);
        assert_eq!(s.due(now + 50, 10).await.unwrap().len(), 2, "the later one is due later");
        assert_eq!(s.prune(150).await.unwrap(), 0, "finished after the cut: kept");
        assert_eq!(s.prune(300).await.unwrap(), 1);
        assert!(s.get(&old_done.id).await.unwrap().is_none());
        assert!(s.get(&soon.id).await.unwrap().is_some(), "queued ones are never pruned");
    }

    #[tokio::test]
    async fn only_a_dead_letter_is_redriven_and_it_starts_afresh() {
        let s = InvocationStore::new(Arc::new(MemoryStore::new()));
        let inv = s.create(queued("a", 1)).await.unwrap();
        assert!(matches!(s.redrive(&inv.id).await.unwrap(), Redrive::NotDead(InvocationState::Queued)));
        s.update(&inv.id, |i| {
            i.state = InvocationState::Dead;
            i.attempts.push(crate::model::InvocationAttempt {
                number: 1,
                started_ms: 2,
                duration_ms: 1,
                status: Some(503),
                error: None,
            });
            i.reason = Some("5 attempts failed".into());
            i.finished_ms = Some(3);
            i.next_attempt_ms = None;
            true
        })
        .await
        .unwrap();
        let Redrive::Requeued(again) = s.redrive(&inv.id).await.unwrap() else { panic!("not requeued") };
        assert_eq!(
            (again.state, again.attempts.len(), again.reason, again.finished_ms),
            (InvocationState::Queued, 0, None, None)
        );
        assert_eq!(s.due(u64::MAX, 10).await.unwrap().len(), 1, "due again");
        let missing = InvocationId::generate(&f("a"), 9).unwrap();
        assert!(matches!(s.redrive(&missing).await.unwrap(), Redrive::Missing));
    }

    #[tokio::test]
    async fn a_corrupt_document_is_an_error_not_a_panic() {
        let store = Arc::new(MemoryStore::new());
        let s = InvocationStore::new(store.clone());
        let id = InvocationId::generate(&f("a"), 1).unwrap();
        let key = DocKey::new(&DocKind::new("invocations").unwrap(), id.as_str()).unwrap();
        store.doc_put(&key, None, b"{not json".to_vec()).await.unwrap();
        assert!(matches!(s.get(&id).await, Err(StoreError::Backend { retryable: false, .. })));
    }
}
