//! Settings of the Kafka queue, from a struct or a URL.

use std::collections::BTreeMap;
use std::time::Duration;

use pilotlight_core::ports::QueueError;
use pilotlight_core::support::RetryPolicy;

/// Settings of a [`crate::KafkaQueue`].
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Put before every topic and group name, so several platforms can share
    /// one cluster (e.g. `pilotlight.`).
    pub prefix: String,
    /// Partitions of a topic pilotlight creates. More partitions let more
    /// functions be handled in parallel (one key, one partition).
    pub partitions: i32,
    /// Replication factor of a topic pilotlight creates.
    pub replication: i32,
    /// Deliveries of one message before it is dead-lettered.
    pub max_attempts: u32,
    /// First retry after this long, doubling per attempt...
    pub backoff_base: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// How long `publish` may wait for the brokers to acknowledge
    /// (`message.timeout.ms`); past it, a retryable `Unavailable`.
    pub publish_timeout: Duration,
    /// How long `subscribe` waits for the group to assign partitions.
    pub join_timeout: Duration,
    /// Create missing topics with the admin API (`partitions`, `replication`).
    /// `false`: rely on the brokers' auto-creation; librdkafka's mock cluster
    /// needs this, as it has no CreateTopics.
    pub create_topics: bool,
    /// Passed to librdkafka as they are, for both producer and consumers:
    /// `security.protocol`, `sasl.mechanisms`, `sasl.username`, `ssl.ca.location`, ...
    pub client: BTreeMap<String, String>,
    /// Passed to librdkafka for consumers only (`session.timeout.ms`,
    /// `heartbeat.interval.ms`, `max.poll.interval.ms`, ...).
    pub consumer: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Defaults for `bootstrap_servers`: prefix `pilotlight.`, 12 partitions,
    /// replication 1, 5 attempts, backoff 200 ms doubling to 30 s, 30 s to publish.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            prefix: "pilotlight.".into(),
            partitions: 12,
            replication: 1,
            max_attempts: 5,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(30),
            join_timeout: Duration::from_secs(60),
            create_topics: true,
            client: BTreeMap::new(),
            consumer: BTreeMap::new(),
        }
    }

    /// `kafka://host:port[,host:port]/?prefix=p.&partitions=6&replication=3&max_attempts=5&<librdkafka option>=<value>`.
    /// Query keys that are not pilotlight's own go to librdkafka (e.g.
    /// `security.protocol=SASL_SSL&sasl.username=...`). Values are
    /// percent-decoded.
    pub fn from_url(url: &str) -> Result<Self, QueueError> {
        let invalid = |message: String| QueueError::InvalidInput { field: "url".into(), message };
        let rest =
            url.strip_prefix("kafka://").ok_or_else(|| invalid(format!("must start with kafka:// (got {url:?})")))?;
        let (servers, query) = match rest.split_once('?') {
            Some((s, q)) => (s.trim_end_matches('/'), q),
            None => (rest.trim_end_matches('/'), ""),
        };
        if servers.is_empty() || servers.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(invalid(format!("needs host:port[,host:port] after kafka:// (got {servers:?})")));
        }
        let mut c = Self::new(servers);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| invalid(format!("`{pair}` is not key=value")))?;
            let v = percent_decode(v).ok_or_else(|| invalid(format!("`{k}` has a bad %-escape")))?;
            let number =
                |what: &str| v.parse::<i64>().map_err(|_| invalid(format!("`{what}` must be a number (got {v:?})")));
            match k {
                "prefix" => c.prefix = v.clone(),
                "partitions" => c.partitions = number(k)? as i32,
                "replication" => c.replication = number(k)? as i32,
                "max_attempts" => c.max_attempts = number(k)? as u32,
                "create_topics" => c.create_topics = v != "false",
                _ if CONSUMER_ONLY.iter().any(|p| k.starts_with(p)) => {
                    c.consumer.insert(k.to_owned(), v);
                }
                _ => {
                    c.client.insert(k.to_owned(), v);
                }
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks every setting, naming the field on the first bad one.
    pub fn validate(&self) -> Result<(), QueueError> {
        let invalid = |field: &str, message: String| Err(QueueError::InvalidInput { field: field.into(), message });
        if self.bootstrap_servers.trim().is_empty() {
            return invalid("bootstrap_servers", "must name at least one host:port".into());
        }
        if !self.prefix.is_empty() {
            pilotlight_core::ports::check_topic_name("prefix", &self.prefix)?;
        }
        if !(1..=10_000).contains(&self.partitions) {
            return invalid("partitions", format!("must be 1-10000 (got {})", self.partitions));
        }
        if !(1..=32).contains(&self.replication) {
            return invalid("replication", format!("must be 1-32 (got {})", self.replication));
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return invalid("max_attempts", format!("must be 1-1000 (got {})", self.max_attempts));
        }
        if self.backoff_base > self.backoff_max {
            return invalid("backoff_base", "must not exceed backoff_max".into());
        }
        for reserved in ["group.id", "enable.auto.commit", "bootstrap.servers", "enable.idempotence", "acks"] {
            if self.client.contains_key(reserved) || self.consumer.contains_key(reserved) {
                return invalid(reserved, "is set by pilotlight and cannot be overridden".into());
            }
        }
        Ok(())
    }

    /// Attempts and backoff, as the subscriptions apply them.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy { max_attempts: self.max_attempts, backoff_base: self.backoff_base, backoff_max: self.backoff_max }
    }
}

/// librdkafka properties (or prefixes) that only consumers take; a URL's
/// query routes them to [`KafkaConfig::consumer`].
const CONSUMER_ONLY: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "group.instance.id",
    "group.protocol",
    "fetch.",
    "isolation.level",
    "queued.",
];

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_set_pilotlight_keys_and_pass_the_rest_through() {
        let c = KafkaConfig::from_url(
            "kafka://k1:9092,k2:9092/?prefix=prod.&partitions=6&replication=3&security.protocol=SASL_SSL&sasl.password=a%26b",
        )
        .unwrap();
        assert_eq!(c.bootstrap_servers, "k1:9092,k2:9092");
        assert_eq!((c.prefix.as_str(), c.partitions, c.replication), ("prod.", 6, 3));
        assert_eq!(c.client["security.protocol"], "SASL_SSL");
        assert_eq!(c.client["sasl.password"], "a&b");
        let c = KafkaConfig::from_url("kafka://k:1?session.timeout.ms=6000&fetch.wait.max.ms=10").unwrap();
        assert_eq!(c.consumer.len(), 2);
        assert!(c.client.is_empty());
    }

    #[test]
    fn bad_urls_and_settings_name_the_field() {
        for (url, field) in [
            ("http://k:9092", "url"),
            ("kafka://", "url"),
            ("kafka://k:9092?partitions=x", "url"),
            ("kafka://k:9092?partitions=0", "partitions"),
            ("kafka://k:9092?prefix=Bad%20Prefix", "prefix"),
            ("kafka://k:9092?group.id=x", "group.id"),
        ] {
            match KafkaConfig::from_url(url) {
                Err(QueueError::InvalidInput { field: f, .. }) => assert_eq!(f, field, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
