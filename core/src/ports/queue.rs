use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

use super::BoxError;

/// Header names a dead-lettered message carries besides its original headers.
pub mod headers {
    /// Why the message was dead-lettered (the last nack's reason).
    pub const DEAD_LETTER_REASON: &str = "pilotlight-dead-letter-reason";
    /// How many times it was delivered.
    pub const ATTEMPTS: &str = "pilotlight-attempts";
    /// The topic it was first published to.
    pub const ORIGINAL_TOPIC: &str = "pilotlight-original-topic";
}

/// The topic a topic's dead letters go to: `<topic>.dlq`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Topic and group names: 1 to 200 characters of `a-z 0-9 . _ -`, valid as a
/// Kafka topic, an AMQP exchange or queue name, and a file name.
pub fn check_topic_name(field: &str, name: &str) -> Result<(), QueueError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(QueueError::InvalidInput {
            field: field.to_owned(),
            message: format!("must be 1 to 200 characters of a-z, 0-9, '.', '_', '-' (got {name:?})"),
        })
    }
}

/// One message: a key (ordering holds per key), a payload and headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Messages with the same key are delivered in publish order, one at a time per group.
    pub key: String,
    /// The body (pilotlight's events are versioned JSON).
    pub payload: Vec<u8>,
    /// Metadata; dead letters carry [`headers`].
    pub headers: BTreeMap<String, String>,
}

impl Message {
    /// A message with no headers.
    pub fn new(key: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into(), payload: payload.into(), headers: BTreeMap::new() }
    }
}

/// How a backend settles one delivery. Implemented by each queue backend.
#[async_trait]
pub trait Acknowledge: Send {
    /// The effect is done: never deliver this message to this group again.
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    /// The effect failed: deliver again after a backoff, or dead-letter once the attempts are used up.
    async fn nack(self: Box<Self>, reason: String) -> Result<(), QueueError>;
    /// The effect can never succeed: dead-letter now with `reason`.
    async fn dead_letter(self: Box<Self>, reason: String) -> Result<(), QueueError>;
}

/// One delivery of a message to one member of a consumer group.
///
/// Settle it with [`ack`](Self::ack), [`nack`](Self::nack) or
/// [`dead_letter`](Self::dead_letter) once its effect is done or failed. A
/// delivery dropped unsettled (its consumer died) is delivered again.
pub struct Delivery {
    topic: String,
    message: Message,
    attempt: u32,
    max_attempts: u32,
    acker: Box<dyn Acknowledge>,
}

impl Delivery {
    /// Used by backends to hand out a message.
    pub fn new(
        topic: impl Into<String>,
        message: Message,
        attempt: u32,
        max_attempts: u32,
        acker: Box<dyn Acknowledge>,
    ) -> Self {
        Self { topic: topic.into(), message, attempt, max_attempts, acker }
    }
    /// The topic it came from.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }
    /// 1 for the first delivery, 2 for the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// After this many failed attempts the message is dead-lettered.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// Whether a nack now dead-letters the message.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
    /// See [`Acknowledge::ack`].
    pub async fn ack(self) -> Result<(), QueueError> {
        self.acker.ack().await
    }
    /// See [`Acknowledge::nack`].
    pub async fn nack(self, reason: impl Into<String>) -> Result<(), QueueError> {
        self.acker.nack(reason.into()).await
    }
    /// See [`Acknowledge::dead_letter`].
    pub async fn dead_letter(self, reason: impl Into<String>) -> Result<(), QueueError> {
        self.acker.dead_letter(reason.into()).await
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .field("key", &self.message.key)
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// A member of a consumer group on one topic.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for the next delivery for this member. Returns `Closed` when the queue shut down.
    ///
    /// Must be cancel-safe: dropping the future before it completes loses no message.
    async fn next(&mut self) -> Result<Delivery, QueueError>;
}

/// A durable, at-least-once work queue with consumer groups.
///
/// Contract (checked by `testkit::queue`):
/// - `publish` returns Ok only once the message is durable in the backend.
/// - Every group subscribed to a topic sees every message published after the
///   group was created; within a group, each message goes to one member.
/// - A message is delivered again until it is acked; a nack retries it after a
///   backoff; after `max_attempts` it goes to [`dead_letter_topic`] with its
///   headers plus [`headers`].
/// - Within a group, messages with the same key are delivered in publish order
///   and one at a time: the next one waits until the previous one is settled.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Publishes a message; durable once this returns Ok.
    async fn publish(&self, topic: &str, message: Message) -> Result<(), QueueError>;
    /// Joins consumer group `group` on `topic` (creating either on first use).
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, QueueError>;
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A topic or group name, or a message, broke a rule.
    #[error("invalid `{field}`: {message}")]
    InvalidInput {
        /// What was wrong.
        field: String,
        /// The rule.
        message: String,
    },
    /// The broker cannot be reached now; try again.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The queue was shut down.
    #[error("queue closed")]
    Closed,
    /// The backend library failed.
    #[error("queue backend: {source}")]
    Backend {
        /// The library's error.
        #[source]
        source: BoxError,
        /// Whether trying again can help.
        retryable: bool,
    },
}

impl QueueError {
    /// Whether trying the same call again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Unavailable(_) => true,
            QueueError::Backend { retryable, .. } => *retryable,
            QueueError::InvalidInput { .. } | QueueError::Closed => false,
        }
    }
}
