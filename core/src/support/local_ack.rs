//! Settling deliveries for queue backends whose broker has no per-message
//! redelivery with backoff (Kafka) or whose redelivery would lose a key's
//! order (AMQP): the subscription keeps each message until it is settled and
//! retries a nacked one itself. [`LocalAcker`] is the `Acknowledge` such a
//! backend hands out: it tells the subscription's task what happened, and
//! publishes dead letters (durably, before the original is settled).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::Held;
use crate::ports::{Acknowledge, Delivery, Message, QueueError, dead_letter_topic, headers};

/// What the consumer did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Acked (or dead-lettered): never hand it out again.
    Done,
    /// Nacked: hand it out again after this long, still ahead of its key's later messages.
    Retry(Duration),
    /// Dropped unsettled (its consumer went away): hand it out again now.
    Dropped,
}

/// Publishes a dead letter durably: the backend's own publish.
#[async_trait]
pub trait DeadLetters: Send + Sync + 'static {
    /// Publishes `message` to `topic` (a `<topic>.dlq`); Ok once durable.
    async fn publish_dead(&self, topic: &str, message: Message) -> Result<(), QueueError>;
}

/// How many attempts, and the backoff between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Deliveries of one message before it is dead-lettered.
    pub max_attempts: u32,
    /// First retry after this long, doubling per attempt...
    pub backoff_base: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `next` (2 = the first retry).
    pub fn backoff(&self, next: u32) -> Duration {
        let exp = next.saturating_sub(2).min(20);
        self.backoff_base.saturating_mul(1 << exp).min(self.backoff_max)
    }
}

/// The [`Acknowledge`] of a locally retrying backend. `I` identifies the
/// delivery to the subscription's task (e.g. epoch, partition and offset).
pub struct LocalAcker<I: Send + 'static> {
    id: Option<I>,
    events: mpsc::UnboundedSender<(I, Settled)>,
    dead: Arc<dyn DeadLetters>,
    policy: RetryPolicy,
    topic: String,
    message: Message,
    attempt: u32,
}

impl<I: Send + 'static> LocalAcker<I> {
    /// The acker of delivery `id` (attempt `attempt`) of `message` from `topic`.
    pub fn new(
        id: I,
        events: mpsc::UnboundedSender<(I, Settled)>,
        dead: Arc<dyn DeadLetters>,
        policy: RetryPolicy,
        topic: String,
        message: Message,
        attempt: u32,
    ) -> Self {
        Self { id: Some(id), events, dead, policy, topic, message, attempt }
    }

    fn send(&mut self, how: Settled) -> Result<(), QueueError> {
        let id = self.id.take().ok_or(QueueError::Closed)?;
        self.events.send((id, how)).map_err(|_| QueueError::Closed)
    }
}

#[async_trait]
impl<I: Send + 'static> Acknowledge for LocalAcker<I> {
    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.send(Settled::Done)
    }

    async fn nack(mut self: Box<Self>, reason: String) -> Result<(), QueueError> {
        if self.attempt >= self.policy.max_attempts {
            return self.dead_letter(reason).await;
        }
        let after = self.policy.backoff(self.attempt + 1);
        self.send(Settled::Retry(after))
    }

    async fn dead_letter(mut self: Box<Self>, reason: String) -> Result<(), QueueError> {
        let mut dead = self.message.clone();
        dead.headers.insert(headers::DEAD_LETTER_REASON.into(), reason);
        dead.headers.insert(headers::ATTEMPTS.into(), self.attempt.to_string());
        dead.headers.insert(headers::ORIGINAL_TOPIC.into(), self.topic.clone());
        // If this fails, the message stays unsettled and comes back.
        self.dead.publish_dead(&dead_letter_topic(&self.topic), dead).await?;
        self.send(Settled::Done)
    }
}

/// Hands out `held` as a [`Delivery`] whose acker reports to `settled` as `id`.
pub fn deliver<I: Send + 'static>(
    topic: &str,
    held: &Held,
    id: I,
    settled: &mpsc::UnboundedSender<(I, Settled)>,
    dead: Arc<dyn DeadLetters>,
    policy: RetryPolicy,
) -> Delivery {
    let acker =
        LocalAcker::new(id, settled.clone(), dead, policy, topic.to_owned(), held.message.clone(), held.attempt);
    Delivery::new(topic, held.message.clone(), held.attempt, policy.max_attempts, Box::new(acker))
}

/// Sends `id` on `due` once `after` has passed: a nacked delivery's turn to go out again.
pub fn retry_after<I: Send + 'static>(after: Duration, id: I, due: &mpsc::UnboundedSender<I>) {
    let due = due.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = due.send(id);
    });
}

impl<I: Send + 'static> Drop for LocalAcker<I> {
    fn drop(&mut self) {
        if self.id.is_some() {
            let _ = self.send(Settled::Dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, Message)>>);

    #[async_trait]
    impl DeadLetters for Recorder {
        async fn publish_dead(&self, topic: &str, message: Message) -> Result<(), QueueError> {
            self.0.lock().unwrap().push((topic.to_owned(), message));
            Ok(())
        }
    }

    fn acker(attempt: u32, rec: &Arc<Recorder>) -> (LocalAcker<u8>, mpsc::UnboundedReceiver<(u8, Settled)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(250),
        };
        (LocalAcker::new(7, tx, rec.clone(), policy, "t".into(), Message::new("k", "p"), attempt), rx)
    }

    #[tokio::test]
    async fn nack_retries_with_backoff_then_dead_letters_and_drop_redelivers() {
        let rec = Arc::new(Recorder::default());
        let (a, mut rx) = acker(1, &rec);
        Box::new(a).nack("x".into()).await.unwrap();
        assert_eq!(rx.recv().await, Some((7, Settled::Retry(Duration::from_millis(100)))));
        let (a, mut rx) = acker(3, &rec);
        Box::new(a).nack("last".into()).await.unwrap();
        assert_eq!(rx.recv().await, Some((7, Settled::Done)));
        let dead = rec.0.lock().unwrap().pop().unwrap();
        assert_eq!(dead.0, "t.dlq");
        assert_eq!(dead.1.headers[headers::DEAD_LETTER_REASON], "last");
        assert_eq!(dead.1.headers[headers::ATTEMPTS], "3");
        let (a, mut rx) = acker(1, &rec);
        drop(a);
        assert_eq!(rx.recv().await, Some((7, Settled::Dropped)));
        let (a, mut rx) = acker(1, &rec);
        Box::new(a).ack().await.unwrap();
        assert_eq!(rx.recv().await, Some((7, Settled::Done)));
        assert!(rx.recv().await.is_none(), "an acked delivery is not also reported dropped");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
        };
        assert_eq!(
            (p.backoff(2), p.backoff(3), p.backoff(4)),
            (Duration::from_millis(100), Duration::from_millis(200), Duration::from_millis(350))
        );
    }
}
