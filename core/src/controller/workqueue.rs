//! The runtime worker's queue of functions to reconcile: keyed by name,
//! deduplicated, each entry due at a time. A function is handed to one
//! reconcile at a time; a nudge that arrives while it is being reconciled
//! makes it run once more right after, never twice at once.
//!
//! This queue is in memory on purpose: it holds no intent (that is in the
//! Store), only "look at this function soon". A restart loses it and the
//! first periodic pass fills it again.

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::model::{FunctionName, Instance};

/// What the periodic pass saw of a function, so its reconcile need not list again.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub instances: Vec<Instance>,
    pub taken: Instant,
}

#[derive(Default)]
struct State {
    due: HashMap<FunctionName, Instant>,
    active: HashSet<FunctionName>,
    /// Nudged while active: due again as soon as the reconcile in hand ends.
    again: HashSet<FunctionName>,
    snapshots: HashMap<FunctionName, Snapshot>,
}

pub(crate) struct WorkQueue {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl WorkQueue {
    pub fn new() -> Self {
        Self { state: Mutex::default(), changed: watch::Sender::new(0) }
    }

    /// Asks for a reconcile of `name` at `at` (the earliest ask wins). A
    /// pass's snapshot queued for it is dropped: whoever asks wants a fresh look.
    pub fn schedule(&self, name: &FunctionName, at: Instant) {
        {
            let mut s = self.state.lock();
            s.snapshots.remove(name);
            if s.active.contains(name) && at <= Instant::now() {
                s.again.insert(name.clone());
            } else {
                s.due.entry(name.clone()).and_modify(|t| *t = (*t).min(at)).or_insert(at);
            }
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Asks for a reconcile of `name` now on behalf of the periodic pass,
    /// with what its list saw. If the function is already queued (someone
    /// asked for a fresh look) or in hand, the pass adds nothing.
    pub fn schedule_with(&self, name: &FunctionName, snapshot: Snapshot) {
        {
            let mut s = self.state.lock();
            if s.due.contains_key(name) || s.active.contains(name) {
                return;
            }
            s.snapshots.insert(name.clone(), snapshot);
            s.due.insert(name.clone(), Instant::now());
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// When `name` is due, if it is queued.
    #[cfg(test)]
    pub fn due(&self, name: &FunctionName) -> Option<Instant> {
        self.state.lock().due.get(name).copied()
    }

    /// How many functions are queued or in hand.
    pub fn len(&self) -> usize {
        let s = self.state.lock();
        s.due.len() + s.active.len()
    }

    /// Waits for the next due function that no one is reconciling, marks it
    /// active and returns it with the pass's snapshot, if any.
    pub async fn next(&self) -> (FunctionName, Option<Snapshot>) {
        let mut changed = self.changed.subscribe();
        loop {
            changed.mark_unchanged();
            let wait = {
                let mut s = self.state.lock();
                let now = Instant::now();
                // Asked-for work first, then the pass's (it carries a snapshot), each earliest first.
                let earliest = s
                    .due
                    .iter()
                    .filter(|(n, _)| !s.active.contains(*n))
                    .min_by_key(|(n, at)| (**at > now, s.snapshots.contains_key(*n), **at))
                    .map(|(n, at)| (n.clone(), *at));
                match earliest {
                    Some((name, at)) if at <= now => {
                        s.due.remove(&name);
                        s.active.insert(name.clone());
                        let snapshot = s.snapshots.remove(&name);
                        return (name, snapshot);
                    }
                    Some((_, at)) => Some(at),
                    None => None,
                }
            };
            match wait {
                Some(at) => {
                    tokio::select! {
                        _ = changed.changed() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => {
                    let _ = changed.changed().await;
                }
            }
        }
    }

    /// Takes `name` in hand now, outside the loops, if no one is reconciling
    /// it: the activation fast path's exclusive hold. [`done`](Self::done)
    /// gives it back. Queued work for it stays queued and runs after.
    pub fn try_claim(&self, name: &FunctionName) -> bool {
        self.state.lock().active.insert(name.clone())
    }

    /// The reconcile of `name` ended; it runs again at once if it was nudged meanwhile.
    pub fn done(&self, name: &FunctionName) {
        {
            let mut s = self.state.lock();
            s.active.remove(name);
            if s.again.remove(name) {
                let now = Instant::now();
                s.due.entry(name.clone()).and_modify(|t| *t = (*t).min(now)).or_insert(now);
            }
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Capped exponential backoff with jitter: `min * 2^(attempt-1)` up to `max`,
/// each delay between 80% and 100% of that, so functions that failed together
/// do not all come back at the same instant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub min: std::time::Duration,
    pub max: std::time::Duration,
}

impl Backoff {
    /// The delay after `attempt` failures in a row; a permanent failure waits the cap.
    pub fn delay(&self, attempt: u32, permanent: bool) -> std::time::Duration {
        let base = if permanent {
            self.max
        } else {
            let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
            self.min.saturating_mul(factor).min(self.max)
        };
        base.mul_f64(0.8 + 0.2 * jitter())
    }
}

/// A number in `0.0..1.0`, different each call.
pub(crate) fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one(std::time::SystemTime::now());
    (n >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn name(n: &str) -> FunctionName {
        n.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn one_at_a_time_and_a_nudge_in_between_runs_once_more() {
        let q = WorkQueue::new();
        q.schedule(&name("a"), Instant::now());
        q.schedule(&name("a"), Instant::now());
        let (n, _) = q.next().await;
        assert_eq!(n.as_str(), "a");
        assert_eq!(q.due(&name("a")), None, "deduplicated");
        // Nudged while in hand: not handed out again until done.
        q.schedule(&name("a"), Instant::now());
        q.schedule(&name("b"), Instant::now());
        let (n, _) = q.next().await;
        assert_eq!(n.as_str(), "b");
        q.done(&name("a"));
        let (n, _) = tokio::time::timeout(Duration::from_secs(1), q.next()).await.unwrap();
        assert_eq!(n.as_str(), "a");
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_excludes_the_loops_and_its_release_runs_queued_work() {
        let q = WorkQueue::new();
        assert!(q.try_claim(&name("a")));
        assert!(!q.try_claim(&name("a")), "one hold at a time");
        q.schedule(&name("a"), Instant::now());
        assert!(
            tokio::time::timeout(Duration::from_secs(1), q.next()).await.is_err(),
            "a claimed function is not handed to a reconcile"
        );
        q.done(&name("a"));
        let (n, _) = tokio::time::timeout(Duration::from_secs(1), q.next()).await.unwrap();
        assert_eq!(n.as_str(), "a", "the nudge made during the claim runs after it");
        assert!(!q.try_claim(&name("a")), "not while a reconcile has it");
    }

    #[tokio::test(start_paused = true)]
    async fn later_entries_wait_and_the_earliest_ask_wins() {
        let q = WorkQueue::new();
        let t0 = Instant::now();
        q.schedule(&name("a"), t0 + Duration::from_secs(10));
        q.schedule(&name("a"), t0 + Duration::from_secs(3));
        let (n, _) = q.next().await;
        assert_eq!(n.as_str(), "a");
        assert!(Instant::now() >= t0 + Duration::from_secs(3) && Instant::now() < t0 + Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn asked_for_work_goes_before_the_pass_and_a_nudge_drops_the_snapshot() {
        let q = WorkQueue::new();
        let snapshot = || Snapshot { instances: Vec::new(), taken: Instant::now() };
        q.schedule_with(&name("pass"), snapshot());
        q.schedule_with(&name("nudged"), snapshot());
        q.schedule(&name("nudged"), Instant::now());
        q.schedule(&name("user"), Instant::now());
        let (first, s1) = q.next().await;
        let (second, s2) = q.next().await;
        let (third, s3) = q.next().await;
        let mut asked = [first.to_string(), second.to_string()];
        asked.sort();
        assert_eq!(asked, ["nudged", "user"]);
        assert!(s1.is_none() && s2.is_none(), "a nudge wants a fresh look");
        assert_eq!((third.as_str(), s3.is_some()), ("pass", true));
        // The pass adds nothing to a function in hand: the reconcile in hand ends after its list.
        q.schedule_with(&name("user"), snapshot());
        q.done(&name("user"));
        assert!(tokio::time::timeout(std::time::Duration::from_secs(1), q.next()).await.is_err());
        // Once idle, it is the pass's again.
        q.schedule_with(&name("user"), snapshot());
        let (again, s) = q.next().await;
        assert_eq!((again.as_str(), s.is_some()), ("user", true));
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_permanent_failures_wait_the_cap() {
        let b = Backoff { min: Duration::from_secs(1), max: Duration::from_secs(300) };
        let d = |a, p| b.delay(a, p).as_secs_f64();
        assert!((0.8..=1.0).contains(&d(1, false)));
        assert!((3.2..=4.0).contains(&d(3, false)));
        assert!((240.0..=300.0).contains(&d(20, false)));
        assert!((240.0..=300.0).contains(&d(1, true)));
    }
}
