//! Choosing backends from strings (URLs, flags, config files): logic every
//! assembling program needs, so it lives here rather than in each binary.
//! [`QueueUrl`] is a queue setting checked as it is read, which hides its
//! password when shown.

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

/// The queue: `memory`, `kafka://host:port[,host:port]` or `amqp[s]://user:pass@host:5672/%2f`.
///
/// Checked when it is read; its `Display` hides a password.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "server",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "String", into = "String")
)]
pub struct QueueUrl(String);

/// The kind of queue a [`QueueUrl`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueKind {
    /// In this process only.
    Memory,
    /// Kafka brokers.
    Kafka,
    /// A RabbitMQ broker.
    Amqp,
}

impl QueueUrl {
    /// The in-process queue.
    pub fn memory() -> Self {
        Self("memory".into())
    }
    /// The URL as given, password included: for connecting only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Which queue it names.
    pub fn kind(&self) -> QueueKind {
        if self.0 == "memory" {
            QueueKind::Memory
        } else if self.0.starts_with("kafka://") {
            QueueKind::Kafka
        } else {
            QueueKind::Amqp
        }
    }
}

impl std::str::FromStr for QueueUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = s == "memory"
            || ["kafka://", "amqp://", "amqps://"]
                .iter()
                .any(|p| s.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
        if !ok || s.chars().any(char::is_control) {
            return Err(format!(
                "must be `memory`, `kafka://host:port[,host:port]` or `amqp://user:pass@host:5672/%2f` (got {:?})",
                redact(s)
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for QueueUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<QueueUrl> for String {
    fn from(q: QueueUrl) -> Self {
        q.0
    }
}

impl std::fmt::Display for QueueUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl std::fmt::Debug for QueueUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QueueUrl({:?})", redact(&self.0))
    }
}

/// A URL with the password of its user info replaced by `***`.
pub fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    };
    // A password given as a query option (`etcd://h:2379/?user=u&password=p`).
    match url.find("password=") {
        Some(i) => {
            let end = url[i..].find('&').map_or(url.len(), |j| i + j);
            format!("{}password=***{}", &url[..i], &url[end..])
        }
        None => url,
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn unknown_queues_are_refused_with_the_choices_named() {
        let Err(e) = super::queue("nats://x").await else { panic!("accepted") };
        assert!(e.to_string().contains("unknown queue `nats`"), "{e}");
        assert!(super::queue("memory").await.is_ok());
    }

    #[test]
    fn passwords_are_hidden_in_either_place() {
        assert_eq!(super::redact("amqp://guest:secret@127.0.0.1:5672/%2f"), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(super::redact("etcd://h:1/?user=u&password=secret&x=1"), "etcd://h:1/?user=u&password=***&x=1");
        assert_eq!(super::redact("memory"), "memory");
    }
}
