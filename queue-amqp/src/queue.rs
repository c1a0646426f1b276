//! [`AmqpQueue`]: a durable fanout exchange per topic, a durable queue per
//! (topic, group), persistent messages with publisher confirms.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use pilotlight_core::ports::{Message, Queue, QueueError, Subscription, check_topic_name};
use pilotlight_core::support::{DeadLetters, TaskSubscription};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::{info, warn};

use crate::config::{AmqpConfig, redact};
use crate::subscription::run;

/// Why one publish attempt failed.
enum Fail {
    /// No queue is bound to the exchange: the broker would drop the message.
    Unroutable,
    /// The broker refused it or the connection broke: try again.
    Broker(String),
}

/// What the queue and its subscriptions share.
pub(crate) struct Shared {
    pub(crate) config: AmqpConfig,
    publisher: Mutex<Option<(Connection, Channel)>>,
    declared: parking_lot::Mutex<HashSet<String>>,
}

impl Shared {
    pub(crate) fn name(&self, s: &str) -> String {
        format!("{}{s}", self.config.prefix)
    }

    pub(crate) async fn connect(&self) -> Result<Connection, String> {
        Connection::connect(&self.config.uri, ConnectionProperties::default())
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", redact(&self.config.uri)))
    }

    /// Declares the topic's durable fanout exchange (once per process: it outlives connections and restarts).
    pub(crate) async fn declare_exchange(&self, channel: &Channel, exchange: &str) -> Result<(), String> {
        if self.declared.lock().contains(exchange) {
            return Ok(());
        }
        let opts = ExchangeDeclareOptions { durable: true, ..Default::default() };
        channel
            .exchange_declare(exchange.into(), ExchangeKind::Fanout, opts, FieldTable::default())
            .await
            .map_err(|e| format!("declare exchange {exchange}: {e}"))?;
        self.declared.lock().insert(exchange.to_owned());
        Ok(())
    }

    async fn channel(&self) -> Result<Channel, String> {
        let mut guard = self.publisher.lock().await;
        if let Some((conn, ch)) = guard.as_ref()
            && conn.status().connected()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        let conn = self.connect().await?;
        let ch = conn.create_channel().await.map_err(|e| format!("open a channel: {e}"))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("enable publisher confirms: {e}"))?;
        *guard = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn forget_connection(&self) {
        *self.publisher.lock().await = None;
    }

    async fn try_publish(&self, exchange: &str, m: &Message) -> Result<(), Fail> {
        let ch = self.channel().await.map_err(Fail::Broker)?;
        self.declare_exchange(&ch, exchange).await.map_err(Fail::Broker)?;
        let mut headers = FieldTable::default();
        for (k, v) in &m.headers {
            headers.insert(ShortString::from(k.as_str()), AMQPValue::LongString(v.as_str().into()));
        }
        // delivery_mode 2: persistent, written to disk by durable queues.
        let props = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
        let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
        let confirm = ch
            .basic_publish(exchange.into(), m.key.as_str().into(), opts, &m.payload, props)
            .await
            .map_err(|e| Fail::Broker(format!("publish: {e}")))?
            .await
            .map_err(|e| Fail::Broker(format!("confirm: {e}")))?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(Fail::Unroutable),
            Confirmation::Nack(_) => Err(Fail::Broker("the broker refused the message (nack)".into())),
            Confirmation::NotRequested => Err(Fail::Broker("publisher confirms are off".into())),
        }
    }

    /// Durable once Ok: every queue bound to the topic has the persistent
    /// message and the broker confirmed it.
    pub(crate) async fn publish(&self, topic: &str, m: Message) -> Result<(), QueueError> {
        check_topic_name("topic", topic)?;
        let exchange = self.name(topic);
        let deadline = Instant::now() + self.config.publish_timeout;
        loop {
            match self.try_publish(&exchange, &m).await {
                Ok(()) => return Ok(()),
                Err(Fail::Unroutable) => {
                    return Err(QueueError::Unavailable(format!(
                        "no consumer group is bound to topic `{topic}` (exchange {exchange}) yet, so the broker would \
                         drop the message; nothing was stored. Subscribe a group first."
                    )));
                }
                Err(Fail::Broker(why)) => {
                    self.forget_connection().await;
                    if Instant::now() >= deadline {
                        return Err(QueueError::Unavailable(format!(
                            "publish to {exchange} failed for {:?}: {why}",
                            self.config.publish_timeout
                        )));
                    }
                    warn!(%exchange, %why, "publish failed; reconnecting");
                    tokio::time::sleep(self.config.reconnect_delay).await;
                }
            }
        }
    }
}

#[async_trait]
impl DeadLetters for Shared {
    async fn publish_dead(&self, topic: &str, message: Message) -> Result<(), QueueError> {
        self.publish(topic, message).await
    }
}

/// A [`Queue`] on AMQP 0.9.1 (RabbitMQ).
///
/// - A topic is a durable fanout exchange `<prefix><topic>`; a group is a
///   durable queue `<prefix><topic>.<group>` bound to it, so every group gets
///   every message and a group's members share its queue.
/// - `publish` sends a persistent, mandatory message and waits for the
///   broker's confirm. With no group bound yet the broker would drop it, so
///   the publish fails instead (retryably) and stores nothing.
/// - Deliveries are acked manually after the effect; a connection lost with
///   messages unacked makes the broker deliver them again.
/// - Order per function key: each group queue is declared with
///   `x-single-active-consumer`, so one member at a time receives the group's
///   messages in queue order (the others stand by and take over if it goes);
///   that member hands out a key's next message only once the previous one is
///   settled, and retries a nacked one itself with backoff.
/// - After `max_attempts` (or on `dead_letter`) the message is published to
///   the dead-letter exchange `<prefix><topic>.dlq` (the `<topic>.dlq` topic)
///   with the reason, then acked. The group queue also names it as its
///   `x-dead-letter-exchange`, for messages the broker itself dead-letters.
#[derive(Clone)]
pub struct AmqpQueue {
    shared: Arc<Shared>,
}

impl AmqpQueue {
    /// Connects once to check the broker answers, then keeps one publishing
    /// connection (re-opened when it breaks).
    pub async fn connect(config: AmqpConfig) -> Result<Self, QueueError> {
        config.validate()?;
        let shared =
            Arc::new(Shared { config, publisher: Mutex::new(None), declared: parking_lot::Mutex::new(HashSet::new()) });
        shared.channel().await.map_err(QueueError::Unavailable)?;
        info!(uri = %redact(&shared.config.uri), prefix = %shared.config.prefix, "connected to AMQP");
        Ok(Self { shared })
    }

    /// The settings in use.
    pub fn config(&self) -> &AmqpConfig {
        &self.shared.config
    }
}

#[async_trait]
impl Queue for AmqpQueue {
    async fn publish(&self, topic: &str, message: Message) -> Result<(), QueueError> {
        self.shared.publish(topic, message).await
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, QueueError> {
        check_topic_name("topic", topic)?;
        check_topic_name("group", group)?;
        let queue = self.shared.name(&format!("{topic}.{group}"));
        if queue.len() > 255 {
            return Err(QueueError::InvalidInput {
                field: "group".into(),
                message: format!("prefix, topic and group make a queue name over 255 bytes ({})", queue.len()),
            });
        }
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let (up_tx, up_rx) = oneshot::channel();
        let task = tokio::spawn(run(self.shared.clone(), topic.to_owned(), queue.clone(), ready_tx, up_tx));
        match tokio::time::timeout(Duration::from_secs(30), up_rx).await {
            Ok(Ok(Ok(()))) => Ok(Box::new(TaskSubscription::new(ready_rx, task))),
            Ok(Ok(Err(why))) => {
                task.abort();
                Err(QueueError::Unavailable(format!("subscribe {queue}: {why}")))
            }
            _ => {
                task.abort();
                Err(QueueError::Unavailable(format!("subscribe {queue}: the broker did not answer within 30 s")))
            }
        }
    }
}
