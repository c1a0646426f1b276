//! Choosing backends from strings (URLs, flags, config files): logic every
//! assembling program needs, so it lives here rather than in each binary.

use std::sync::Arc;

use pilotlight_core::Queue;
use pilotlight_core::ports::QueueError;

/// The queue a URL names:
///
/// - `memory`: the in-process queue (one process only);
/// - `kafka://host:port[,host:port]/?prefix=...` (feature `kafka`), see `KafkaConfig::from_url`;
/// - `amqp://user:pass@host:5672/%2f?prefix=...` or `amqps://` (feature `amqp`), see `AmqpConfig::from_url`.
pub async fn queue(url: &str) -> Result<Arc<dyn Queue>, QueueError> {
    if url == "memory" {
        return Ok(Arc::new(pilotlight_core::memory::MemoryQueue::new()));
    }
    #[cfg(feature = "kafka")]
    if url.starts_with("kafka://") {
        let config = pilotlight_kafka::KafkaConfig::from_url(url)?;
        return Ok(Arc::new(pilotlight_kafka::KafkaQueue::connect(config).await?));
    }
    #[cfg(feature = "amqp")]
    if url.starts_with("amqp://") || url.starts_with("amqps://") {
        let config = pilotlight_amqp::AmqpConfig::from_url(url)?;
        return Ok(Arc::new(pilotlight_amqp::AmqpQueue::connect(config).await?));
    }
    let scheme = url.split_once("://").map_or(url, |(s, _)| s);
    Err(QueueError::InvalidInput {
        field: "queue".into(),
        message: format!(
            "unknown queue `{scheme}`: use `memory`, `kafka://host:port` or `amqp://host:5672` (got {url:?})"
        ),
    })
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn unknown_queues_are_refused_with_the_choices_named() {
        let Err(e) = super::queue("nats://x").await else { panic!("accepted") };
        assert!(e.to_string().contains("unknown queue `nats`"), "{e}");
        assert!(super::queue("memory").await.is_ok());
    }
}
