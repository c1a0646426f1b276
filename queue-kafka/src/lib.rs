//! pilotlight-kafka: pilotlight's [`Queue`](pilotlight_core::Queue) on Kafka, through rdkafka.
//!
//! - Durable publish: an idempotent producer with `acks=all`; `publish`
//!   returns once the brokers have the message, or fails (retryably) after
//!   `publish_timeout`.
//! - Consumer groups are Kafka consumer groups; offsets are committed only
//!   after a delivery is acked, and only up to the oldest unsettled message of
//!   each partition, so a crash redelivers rather than skips.
//! - Order per function: the key picks the partition; a member hands out a
//!   key's next message only once the previous one is settled, and retries a
//!   nacked one itself (with backoff) before moving on.
//! - Dead letters: after `max_attempts`, or at once on `dead_letter`, the
//!   message goes to `<topic>.dlq` with the reason in its headers.
//! - Topics and groups carry a configurable prefix and are created on first
//!   use with the configured partitions and replication.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pilotlight_kafka::{KafkaConfig, KafkaQueue};
//! let queue = KafkaQueue::connect(KafkaConfig::from_url("kafka://127.0.0.1:9092/?prefix=pl.")?).await?;
//! # Ok(()) }
//! ```

mod config;
mod queue;
mod subscription;

pub use config::KafkaConfig;
pub use queue::KafkaQueue;

/// librdkafka's in-process mock cluster, re-exported for tests and demos.
pub use rdkafka::mocking::MockCluster;
