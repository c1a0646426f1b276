//! [`KafkaQueue`]: publish with an idempotent `acks=all` producer, subscribe
//! as a consumer group, create topics on first use.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use pilotlight_core::ports::{Message, Queue, QueueError, Subscription, check_topic_name};
use pilotlight_core::support::{DeadLetters, TaskSubscription};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::config::KafkaConfig;
use crate::subscription::{Ctx, KafkaConsumer, run};

/// What the queue and its subscriptions share.
pub(crate) struct Shared {
    pub(crate) config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist.
    topics: Mutex<HashSet<String>>,
}

impl Shared {
    pub(crate) fn kafka_name(&self, name: &str) -> String {
        format!("{}{name}", self.config.prefix)
    }

    fn client_config(&self) -> ClientConfig {
        base_config(&self.config)
    }

    /// Creates `topic` unless it is known to exist. Clusters whose brokers do
    /// not offer CreateTopics (librdkafka's mock cluster) create it on the
    /// producer's metadata request instead.
    async fn ensure_topic(&self, kafka_topic: &str) -> Result<(), QueueError> {
        if self.topics.lock().contains(kafka_topic) {
            return Ok(());
        }
        let created = if self.config.create_topics {
            let new =
                NewTopic::new(kafka_topic, self.config.partitions, TopicReplication::Fixed(self.config.replication));
            let opts = AdminOptions::new()
                .operation_timeout(Some(Duration::from_secs(10)))
                .request_timeout(Some(Duration::from_secs(15)));
            match self.admin.create_topics([&new], &opts).await {
                Ok(results) => match results.into_iter().next() {
                    Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(()),
                    Some(Err((_, code))) => Err(format!("{code}")),
                },
                Err(e) => Err(e.to_string()),
            }
        } else {
            Err("create_topics is off".to_owned())
        };
        if let Err(why) = created {
            debug!(topic = kafka_topic, %why, "CreateTopics refused; relying on the broker's auto-creation");
            let producer = self.producer.clone();
            let topic = kafka_topic.to_owned();
            let md = tokio::task::spawn_blocking(move || {
                producer.client().fetch_metadata(Some(&topic), Duration::from_secs(10))
            })
            .await
            .map_err(|e| QueueError::Unavailable(format!("metadata task: {e}")))?
            .map_err(|e| unavailable(&format!("cannot create topic {kafka_topic} ({why})"), &e))?;
            let exists = md
                .topics()
                .iter()
                .any(|t| t.name() == kafka_topic && t.error().is_none() && !t.partitions().is_empty());
            if !exists {
                return Err(QueueError::Unavailable(format!(
                    "topic {kafka_topic} does not exist and could not be created ({why}); create it, or enable auto-creation"
                )));
            }
        }
        self.topics.lock().insert(kafka_topic.to_owned());
        Ok(())
    }

    /// Durable once Ok: every in-sync replica has the message (`acks=all`).
    pub(crate) async fn publish(&self, topic: &str, message: Message) -> Result<(), QueueError> {
        check_topic_name("topic", topic)?;
        let kafka_topic = self.kafka_name(topic);
        self.ensure_topic(&kafka_topic).await?;
        let mut hdrs = OwnedHeaders::new_with_capacity(message.headers.len());
        for (k, v) in &message.headers {
            hdrs = hdrs.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        let record = FutureRecord::to(&kafka_topic).key(&message.key).payload(&message.payload).headers(hdrs);
        self.producer
            .send(record, Timeout::After(self.config.publish_timeout))
            .await
            .map(drop)
            .map_err(|(e, _)| unavailable(&format!("publish to {kafka_topic}"), &e))
    }
}

#[async_trait]
impl DeadLetters for Shared {
    async fn publish_dead(&self, topic: &str, message: Message) -> Result<(), QueueError> {
        self.publish(topic, message).await
    }
}

fn unavailable(what: &str, e: &KafkaError) -> QueueError {
    let retryable = match e {
        KafkaError::MessageProduction(code) | KafkaError::MetadataFetch(code) | KafkaError::AdminOp(code) => !matches!(
            code,
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidTopic
        ),
        _ => true,
    };
    if retryable {
        QueueError::Unavailable(format!("{what}: {e}"))
    } else {
        QueueError::Backend { source: format!("{what}: {e}").into(), retryable: false }
    }
}

fn base_config(c: &KafkaConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &c.bootstrap_servers);
    for (k, v) in &c.client {
        cc.set(k, v);
    }
    cc
}

/// A [`Queue`] on Kafka.
///
/// - `publish` returns once the brokers acknowledged the message with
///   `acks=all` through an idempotent producer (no duplicates from the
///   producer's own retries); it waits at most `publish_timeout`, then fails
///   with a retryable error.
/// - Each group is a Kafka consumer group (`<prefix><group>`), offsets
///   committed only after the effect (ack), in order within each partition.
/// - The key (the function's name) picks the partition, so a function's
///   events keep their order; within a member, a key's next message waits
///   until the previous one is settled.
/// - A nack is retried by the member with backoff; after `max_attempts` the
///   message goes to `<topic>.dlq` with the reason.
#[derive(Clone)]
pub struct KafkaQueue {
    shared: Arc<Shared>,
}

impl KafkaQueue {
    /// Connects (checking that the cluster answers within 10 s).
    pub async fn connect(config: KafkaConfig) -> Result<Self, QueueError> {
        config.validate()?;
        let mut pc = base_config(&config);
        pc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", config.publish_timeout.as_millis().to_string())
            .set("linger.ms", "0");
        let producer: FutureProducer = pc.create().map_err(|e| invalid_client(&e))?;
        let admin: AdminClient<DefaultClientContext> = base_config(&config).create().map_err(|e| invalid_client(&e))?;
        let probe = producer.clone();
        let servers = config.bootstrap_servers.clone();
        tokio::task::spawn_blocking(move || probe.client().fetch_metadata(None, Duration::from_secs(10)).map(drop))
            .await
            .map_err(|e| QueueError::Unavailable(format!("metadata task: {e}")))?
            .map_err(|e| QueueError::Unavailable(format!("no Kafka broker answers at {servers}: {e}")))?;
        info!(servers = %config.bootstrap_servers, prefix = %config.prefix, "connected to Kafka");
        Ok(Self { shared: Arc::new(Shared { config, producer, admin, topics: Mutex::new(HashSet::new()) }) })
    }

    /// The settings in use.
    pub fn config(&self) -> &KafkaConfig {
        &self.shared.config
    }
}

fn invalid_client(e: &KafkaError) -> QueueError {
    QueueError::InvalidInput { field: "client".into(), message: format!("librdkafka refused the configuration: {e}") }
}

#[async_trait]
impl Queue for KafkaQueue {
    async fn publish(&self, topic: &str, message: Message) -> Result<(), QueueError> {
        self.shared.publish(topic, message).await
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, QueueError> {
        check_topic_name("topic", topic)?;
        check_topic_name("group", group)?;
        let kafka_topic = self.shared.kafka_name(topic);
        self.shared.ensure_topic(&kafka_topic).await?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (assigned_tx, mut assigned_rx) = watch::channel(0u64);
        let mut cc = self.shared.client_config();
        // A fetch waits at most this long for new messages; every event hop
        // (deployments → routes → status) can pay it, so keep it short.
        cc.set("fetch.wait.max.ms", "100");
        for (k, v) in &self.shared.config.consumer {
            cc.set(k, v);
        }
        cc.set("group.id", self.shared.kafka_name(group))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "true");
        let consumer: KafkaConsumer =
            cc.create_with_context(Ctx { events: events_tx, assigned: assigned_tx }).map_err(|e| invalid_client(&e))?;
        consumer.subscribe(&[&kafka_topic]).map_err(|e| unavailable(&format!("subscribe to {kafka_topic}"), &e))?;
        let consumer = Arc::new(consumer);
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(topic.to_owned(), self.shared.clone(), consumer, events_rx, ready_tx));
        // Return once the group gave this member its partitions, so what is
        // published next is seen by it (or by another member of the group).
        let joined = tokio::time::timeout(self.shared.config.join_timeout, assigned_rx.wait_for(|n| *n > 0)).await;
        if !matches!(joined, Ok(Ok(_))) {
            task.abort();
            return Err(QueueError::Unavailable(format!(
                "group {} got no partitions of {kafka_topic} within {:?}",
                self.shared.kafka_name(group),
                self.shared.config.join_timeout
            )));
        }
        Ok(Box::new(TaskSubscription::new(ready_rx, task)))
    }
}
