use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ports::{
    Acknowledge, Delivery, Message, Queue, QueueError, Subscription, check_topic_name, dead_letter_topic, headers,
};

/// Retry policy of the [`MemoryQueue`].
#[derive(Clone, Debug)]
pub struct MemoryQueueConfig {
    /// Deliveries before a message is dead-lettered.
    pub max_attempts: u32,
    /// Backoff after the first nack; doubles with each further one.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
}

impl Default for MemoryQueueConfig {
    fn default() -> Self {
        Self { max_attempts: 5, backoff_base: Duration::from_millis(200), backoff_max: Duration::from_secs(10) }
    }
}

impl MemoryQueueConfig {
    /// The delay before delivery number `attempt + 1`, after `attempt` failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }
}

/// The embedded queue: consumer groups, at-least-once delivery, per-key order,
/// retries with backoff and a dead-letter topic, all inside this process.
///
/// "Durable" here means durable for the life of the process; a platform that
/// must survive restarts uses Kafka or RabbitMQ, or resyncs from its Store on
/// start (which the controller does). Every group of a topic sees each message
/// published after the group was created; the first group of a topic also gets
/// what was published before any group existed, so nothing published during
/// start-up is lost.
#[derive(Clone, Default)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    config: MemoryQueueConfig,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
    next_seq: u64,
    closed: bool,
}

#[derive(Default)]
struct Topic {
    groups: HashMap<String, Group>,
    /// Messages published while the topic had no group, for its first group.
    backlog: Vec<Entry>,
}

#[derive(Default)]
struct Group {
    /// Undelivered messages (and those waiting out a backoff), by sequence number.
    entries: Vec<Entry>,
    /// Keys with a delivery outstanding: their later messages wait.
    busy: HashSet<String>,
}

#[derive(Clone)]
struct Entry {
    seq: u64,
    message: Message,
    /// Deliveries so far.
    attempts: u32,
    not_before: Option<Instant>,
}

impl MemoryQueue {
    /// A queue with the default retry policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// A queue with the given retry policy.
    pub fn with_config(config: MemoryQueueConfig) -> Self {
        Self { inner: Arc::new(Inner { config, ..Inner::default() }) }
    }

    /// Ends every subscription: waiting and later `next` calls return `Closed`.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.inner.changed.notify_waiters();
    }

    /// Messages not yet acked by `group` on `topic` (waiting, backing off or out for delivery is not counted).
    pub fn pending(&self, topic: &str, group: &str) -> usize {
        let state = self.inner.lock();
        state.topics.get(topic).and_then(|t| t.groups.get(group)).map_or(0, |g| g.entries.len())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.state.lock()
    }
}

impl State {
    fn push(&mut self, topic: &str, message: Message) {
        self.next_seq += 1;
        let entry = Entry { seq: self.next_seq, message, attempts: 0, not_before: None };
        let t = self.topics.entry(topic.to_owned()).or_default();
        if t.groups.is_empty() {
            t.backlog.push(entry);
        } else {
            for g in t.groups.values_mut() {
                g.entries.push(entry.clone());
            }
        }
    }

    fn group(&mut self, topic: &str, group: &str) -> Option<&mut Group> {
        self.topics.get_mut(topic)?.groups.get_mut(group)
    }
}

impl Group {
    /// Takes the first deliverable entry, or tells when the earliest backoff ends.
    fn take(&mut self, now: Instant) -> Result<Entry, Option<Instant>> {
        let mut blocked: HashSet<&str> = HashSet::new();
        let mut next_due: Option<Instant> = None;
        let mut found = None;
        for (i, e) in self.entries.iter().enumerate() {
            let key = e.message.key.as_str();
            if self.busy.contains(key) || blocked.contains(key) {
                continue;
            }
            match e.not_before {
                Some(t) if t > now => {
                    blocked.insert(key);
                    next_due = Some(next_due.map_or(t, |d| d.min(t)));
                }
                _ => {
                    found = Some(i);
                    break;
                }
            }
        }
        match found {
            Some(i) => {
                let entry = self.entries.remove(i);
                self.busy.insert(entry.message.key.clone());
                Ok(entry)
            }
            None => Err(next_due),
        }
    }

    /// Puts an entry back in sequence order and frees its key.
    fn requeue(&mut self, entry: Entry) {
        self.busy.remove(&entry.message.key);
        let at = self.entries.partition_point(|e| e.seq < entry.seq);
        self.entries.insert(at, entry);
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn publish(&self, topic: &str, message: Message) -> Result<(), QueueError> {
        check_topic_name("topic", topic)?;
        {
            let mut state = self.inner.lock();
            if state.closed {
                return Err(QueueError::Closed);
            }
            state.push(topic, message);
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, QueueError> {
        check_topic_name("topic", topic)?;
        check_topic_name("group", group)?;
        let mut state = self.inner.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        let t = state.topics.entry(topic.to_owned()).or_default();
        if !t.groups.contains_key(group) {
            let entries = std::mem::take(&mut t.backlog);
            t.groups.insert(group.to_owned(), Group { entries, busy: HashSet::new() });
        }
        Ok(Box::new(MemorySubscription {
            inner: Arc::clone(&self.inner),
            topic: topic.to_owned(),
            group: group.to_owned(),
        }))
    }
}

struct MemorySubscription {
    inner: Arc<Inner>,
    topic: String,
    group: String,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait_until = {
                let mut state = self.inner.lock();
                if state.closed {
                    return Err(QueueError::Closed);
                }
                let group = state.group(&self.topic, &self.group).ok_or(QueueError::Closed)?;
                match group.take(Instant::now()) {
                    Ok(mut entry) => {
                        entry.attempts += 1;
                        let max = self.inner.config.max_attempts;
                        return Ok(Delivery::new(
                            self.topic.clone(),
                            entry.message.clone(),
                            entry.attempts,
                            max,
                            Box::new(MemoryAcker {
                                inner: Arc::clone(&self.inner),
                                topic: self.topic.clone(),
                                group: self.group.clone(),
                                entry: Some(entry),
                            }),
                        ));
                    }
                    Err(next_due) => next_due,
                }
            };
            match wait_until {
                Some(t) => {
                    tokio::select! {
                        _ = &mut changed => {}
                        _ = tokio::time::sleep_until(t) => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// Settles one delivery; if dropped unsettled, the message is delivered again.
struct MemoryAcker {
    inner: Arc<Inner>,
    topic: String,
    group: String,
    entry: Option<Entry>,
}

impl MemoryAcker {
    fn settle(&mut self, f: impl FnOnce(&mut State, &str, &str, Entry)) {
        if let Some(entry) = self.entry.take() {
            {
                let mut state = self.inner.lock();
                f(&mut state, &self.topic, &self.group, entry);
            }
            self.inner.changed.notify_waiters();
        }
    }
}

fn dead_letter(state: &mut State, topic: &str, group: &str, entry: Entry, reason: String) {
    if let Some(g) = state.group(topic, group) {
        g.busy.remove(&entry.message.key);
    }
    let mut message = entry.message;
    message.headers.insert(headers::DEAD_LETTER_REASON.into(), reason);
    message.headers.insert(headers::ATTEMPTS.into(), entry.attempts.to_string());
    message.headers.insert(headers::ORIGINAL_TOPIC.into(), topic.to_owned());
    tracing::warn!(topic, group, key = %message.key, attempts = entry.attempts, "message dead-lettered");
    state.push(&dead_letter_topic(topic), message);
}

#[async_trait]
impl Acknowledge for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.settle(|state, topic, group, entry| {
            if let Some(g) = state.group(topic, group) {
                g.busy.remove(&entry.message.key);
            }
        });
        Ok(())
    }

    async fn nack(mut self: Box<Self>, reason: String) -> Result<(), QueueError> {
        let config = self.inner.config.clone();
        self.settle(|state, topic, group, mut entry| {
            if entry.attempts >= config.max_attempts {
                dead_letter(state, topic, group, entry, reason);
            } else if let Some(g) = state.group(topic, group) {
                entry.not_before = Some(Instant::now() + config.backoff(entry.attempts));
                g.requeue(entry);
            }
        });
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, reason: String) -> Result<(), QueueError> {
        self.settle(|state, topic, group, entry| dead_letter(state, topic, group, entry, reason));
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        // The consumer went away without settling: deliver it again at once.
        self.settle(|state, topic, group, entry| {
            if let Some(g) = state.group(topic, group) {
                g.requeue(entry);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = MemoryQueueConfig {
            max_attempts: 9,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
        };
        let got: Vec<_> = (1..=5).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
    }

    #[tokio::test]
    async fn dropped_delivery_is_delivered_again() {
        let q = MemoryQueue::new();
        let mut sub = q.subscribe("t", "g").await.unwrap();
        q.publish("t", Message::new("k", "x")).await.unwrap();
        let d = sub.next().await.unwrap();
        drop(d);
        let d = sub.next().await.unwrap();
        assert_eq!(d.attempt(), 2);
        d.ack().await.unwrap();
        assert_eq!(q.pending("t", "g"), 0);
    }

    #[tokio::test]
    async fn close_ends_subscriptions() {
        let q = MemoryQueue::new();
        let mut sub = q.subscribe("t", "g").await.unwrap();
        let waiter = tokio::spawn(async move { sub.next().await.map(|_| ()) });
        tokio::task::yield_now().await;
        q.close();
        assert!(matches!(waiter.await.unwrap(), Err(QueueError::Closed)));
    }
}
