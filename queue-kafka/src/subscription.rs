//! One member of a consumer group: a task that reads from Kafka and hands
//! out deliveries one key at a time, retries nacked ones locally with backoff,
//! and commits each partition's offset only up to its oldest unsettled message.
//!
//! Why locally: Kafka has no per-message redelivery. Re-publishing a nacked
//! message would put it behind its key's later messages; holding it here keeps
//! the key's order (the next message of the key waits). If this process dies,
//! nothing past the oldest unsettled offset was committed, so the group's next
//! member reads those messages again: at-least-once, nothing lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pilotlight_core::ports::{Delivery, Message};
use pilotlight_core::support::{KeyGate, Settled, deliver, retry_after};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::queue::Shared;

/// Rebalance events, handed from librdkafka's callback to the task.
pub(crate) enum Assignment {
    Assigned,
    Revoked,
}

/// The consumer's context: forwards rebalances to the task.
pub(crate) struct Ctx {
    pub(crate) events: mpsc::UnboundedSender<Assignment>,
    pub(crate) assigned: watch::Sender<u64>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let _ = self.events.send(Assignment::Revoked);
        }
    }
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            let _ = self.events.send(Assignment::Assigned);
            self.assigned.send_modify(|n| *n += 1);
        }
    }
}

pub(crate) type KafkaConsumer = StreamConsumer<Ctx>;

/// Identifies a delivery to the task: (epoch, partition, offset).
type Id = (u64, i32, i64);

#[derive(Default)]
struct Partition {
    /// Received and not settled, by offset.
    gate: KeyGate<i64>,
    /// One past the newest offset received.
    next: i64,
    /// The offset last committed.
    committed: i64,
}

struct State {
    topic: String,
    kafka_topic: String,
    shared: Arc<Shared>,
    consumer: Arc<KafkaConsumer>,
    /// Bumped on every revoke: settlements from before are ignored (the
    /// partitions' new owner delivers those messages again).
    epoch: u64,
    partitions: HashMap<i32, Partition>,
    ready: mpsc::UnboundedSender<Delivery>,
    settled: mpsc::UnboundedSender<(Id, Settled)>,
    retry_due: mpsc::UnboundedSender<Id>,
}

impl State {
    fn received(&mut self, partition: i32, offset: i64, message: Message) {
        let p = self.partitions.entry(partition).or_insert_with(|| Partition {
            next: offset,
            committed: offset,
            ..Default::default()
        });
        if offset < p.next && !p.gate.contains(offset) {
            return; // already settled (a re-fetch after a reconnect)
        }
        p.next = p.next.max(offset + 1);
        if p.gate.hold(offset, message) {
            self.dispatch(partition, offset);
        }
    }

    fn dispatch(&self, partition: i32, offset: i64) {
        let Some(held) = self.partitions.get(&partition).and_then(|p| p.gate.get(offset)) else { return };
        let id = (self.epoch, partition, offset);
        let policy = self.shared.config.retry_policy();
        let _ = self.ready.send(deliver(&self.topic, held, id, &self.settled, self.shared.clone(), policy));
    }

    fn settle(&mut self, id @ (epoch, partition, offset): Id, how: Settled) {
        if epoch != self.epoch {
            return;
        }
        let Some(p) = self.partitions.get_mut(&partition) else { return };
        match how {
            Settled::Retry(after) => {
                if p.gate.retry(offset) {
                    retry_after(after, id, &self.retry_due);
                }
            }
            Settled::Dropped => {
                if p.gate.retry(offset) {
                    self.dispatch(partition, offset);
                }
            }
            Settled::Done => {
                let Some(next) = p.gate.release(offset) else { return };
                let low = p.gate.oldest().unwrap_or(p.next);
                if low > p.committed {
                    p.committed = low;
                    self.commit(partition, low);
                }
                if let Some(o) = next {
                    self.dispatch(partition, o);
                }
            }
        }
    }

    fn commit(&self, partition: i32, offset: i64) {
        let mut tpl = TopicPartitionList::new();
        if tpl.add_partition_offset(&self.kafka_topic, partition, Offset::Offset(offset)).is_ok()
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            warn!(topic = %self.kafka_topic, partition, offset, error = %e, "offset commit failed; the messages may be delivered again");
        }
    }

    fn revoked(&mut self) {
        self.epoch += 1;
        self.partitions.clear();
    }
}

/// Closes a consumer away from the async runtime. Dropping the last handle
/// of a librdkafka consumer leaves its group and destroys the client, which
/// blocks until the brokers answer; on a runtime worker that stalls every
/// task on it (CI saw a whole test freeze, timers included). The thread waits
/// until it holds the last handle, then drops it.
struct CloseOffRuntime(Arc<KafkaConsumer>);

impl Drop for CloseOffRuntime {
    fn drop(&mut self) {
        let consumer = self.0.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while Arc::strong_count(&consumer) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(consumer);
        });
    }
}

/// The task behind a subscription: it feeds `ready` until the subscription is dropped.
pub(crate) async fn run(
    topic: String,
    shared: Arc<Shared>,
    consumer: Arc<KafkaConsumer>,
    mut assignments: mpsc::UnboundedReceiver<Assignment>,
    ready: mpsc::UnboundedSender<Delivery>,
) {
    // Whenever this task ends (the subscription was dropped, so it is aborted),
    // the consumer is closed on a thread of its own.
    let _close = CloseOffRuntime(consumer.clone());
    let (settled_tx, mut settled) = mpsc::unbounded_channel();
    let (retry_tx, mut retry_due) = mpsc::unbounded_channel();
    let kafka_topic = shared.kafka_name(&topic);
    let mut state = State {
        topic,
        kafka_topic,
        shared,
        consumer: consumer.clone(),
        epoch: 0,
        partitions: HashMap::new(),
        ready,
        settled: settled_tx,
        retry_due: retry_tx,
    };
    loop {
        tokio::select! {
            biased;
            Some(a) = assignments.recv() => match a {
                Assignment::Revoked => state.revoked(),
                Assignment::Assigned => debug!(topic = %state.topic, "partitions assigned"),
            },
            Some((id, how)) = settled.recv() => state.settle(id, how),
            Some((epoch, partition, offset)) = retry_due.recv() => {
                if epoch == state.epoch {
                    state.dispatch(partition, offset);
                }
            }
            m = consumer.recv() => match m {
                Ok(m) => {
                    // A rebalance callback may have run inside this poll.
                    while let Ok(a) = assignments.try_recv() {
                        if let Assignment::Revoked = a {
                            state.revoked();
                        }
                    }
                    let mut message = Message::new(
                        m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
                        m.payload().unwrap_or_default().to_vec(),
                    );
                    if let Some(h) = m.headers() {
                        for i in 0..h.count() {
                            let hd = h.get(i);
                            message.headers.insert(hd.key.to_owned(), String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned());
                        }
                    }
                    state.received(m.partition(), m.offset(), message);
                }
                Err(e) => {
                    warn!(topic = %state.topic, error = %e, "kafka consumer error; librdkafka retries");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
        if state.ready.is_closed() {
            return;
        }
    }
}
