//! One member of a group: a task that consumes the group's queue, hands out
//! deliveries one key at a time, retries nacked ones locally with backoff,
//! acks after the effect, and reconnects when the broker goes away (the
//! broker then delivers every unacked message again).

use std::sync::Arc;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection};
use pilotlight_core::ports::{Delivery, Message, dead_letter_topic};
use pilotlight_core::support::{KeyGate, Settled, deliver, retry_after};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::queue::Shared;

/// Identifies a delivery to the task: (epoch, delivery tag).
type Id = (u64, u64);

struct State {
    topic: String,
    shared: Arc<Shared>,
    channel: Option<Channel>,
    /// Bumped on every reconnect: delivery tags belong to a channel, and the
    /// broker redelivers what the old channel left unacked.
    epoch: u64,
    gate: KeyGate<u64>,
    ready: mpsc::UnboundedSender<Delivery>,
    settled: mpsc::UnboundedSender<(Id, Settled)>,
    retry_due: mpsc::UnboundedSender<Id>,
}

impl State {
    fn received(&mut self, tag: u64, message: Message) {
        if self.gate.hold(tag, message) {
            self.dispatch(tag);
        }
    }

    fn dispatch(&self, tag: u64) {
        let Some(held) = self.gate.get(tag) else { return };
        let policy = self.shared.config.retry_policy();
        let _ =
            self.ready.send(deliver(&self.topic, held, (self.epoch, tag), &self.settled, self.shared.clone(), policy));
    }

    async fn settle(&mut self, id @ (epoch, tag): Id, how: Settled) {
        if epoch != self.epoch {
            return;
        }
        match how {
            Settled::Retry(after) => {
                if self.gate.retry(tag) {
                    retry_after(after, id, &self.retry_due);
                }
            }
            Settled::Dropped => {
                if self.gate.retry(tag) {
                    self.dispatch(tag);
                }
            }
            Settled::Done => {
                let Some(next) = self.gate.release(tag) else { return };
                if let Some(ch) = &self.channel
                    && let Err(e) = ch.basic_ack(tag, BasicAckOptions::default()).await
                {
                    // The broker will deliver it again on the next connection.
                    warn!(topic = %self.topic, tag, error = %e, "ack failed");
                }
                if let Some(t) = next {
                    self.dispatch(t);
                }
            }
        }
    }

    fn reset(&mut self) {
        self.epoch += 1;
        self.gate.clear();
        self.channel = None;
    }
}

/// Connects, declares the exchange and the group's queue, binds them and starts consuming.
async fn setup(shared: &Shared, topic: &str, queue: &str) -> Result<(Connection, Channel, lapin::Consumer), String> {
    let conn = shared.connect().await?;
    let ch = conn.create_channel().await.map_err(|e| format!("open a channel: {e}"))?;
    let exchange = shared.name(topic);
    shared.declare_exchange(&ch, &exchange).await?;
    // The dead-letter exchange, with a queue that keeps every dead letter
    // even before anyone subscribes to `<topic>.dlq`.
    let dlx = shared.name(&dead_letter_topic(topic));
    shared.declare_exchange(&ch, &dlx).await?;
    let mut expiry = FieldTable::default();
    if let Some(idle) = shared.config.idle_queue_expiry {
        expiry.insert(
            ShortString::from("x-expires"),
            AMQPValue::LongLongInt(idle.as_millis().min(i64::MAX as u128) as i64),
        );
    }
    let kept = format!("{dlx}.kept");
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(kept.as_str().into(), durable, expiry.clone())
        .await
        .map_err(|e| format!("declare queue {kept}: {e}"))?;
    ch.queue_bind(
        kept.as_str().into(),
        dlx.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| format!("bind {kept} to {dlx}: {e}"))?;
    let mut args = expiry.clone();
    args.insert(ShortString::from("x-single-active-consumer"), AMQPValue::Boolean(true));
    args.insert(ShortString::from("x-dead-letter-exchange"), AMQPValue::LongString(dlx.as_str().into()));
    ch.queue_declare(queue.into(), durable, args).await.map_err(|e| format!("declare queue {queue}: {e}"))?;
    ch.queue_bind(
        queue.into(),
        exchange.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| format!("bind {queue} to {exchange}: {e}"))?;
    ch.basic_qos(shared.config.prefetch, BasicQosOptions::default()).await.map_err(|e| format!("qos: {e}"))?;
    let consumer = ch
        .basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(|e| format!("consume {queue}: {e}"))?;
    Ok((conn, ch, consumer))
}

fn message(d: &lapin::message::Delivery) -> Message {
    let mut m = Message::new(d.routing_key.as_str(), d.data.clone());
    if let Some(h) = d.properties.headers() {
        for (k, v) in h.inner() {
            let text = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                other => format!("{other:?}"),
            };
            m.headers.insert(k.as_str().to_owned(), text);
        }
    }
    m
}

/// The task behind a subscription: it feeds `ready` until the subscription is
/// dropped, and reports the first setup on `up`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    topic: String,
    queue: String,
    ready: mpsc::UnboundedSender<Delivery>,
    up: oneshot::Sender<Result<(), String>>,
) {
    let (settled_tx, mut settled) = mpsc::unbounded_channel();
    let (retry_tx, mut retry_due) = mpsc::unbounded_channel();
    let mut state = State {
        topic: topic.clone(),
        shared: shared.clone(),
        channel: None,
        epoch: 0,
        gate: KeyGate::new(),
        ready,
        settled: settled_tx,
        retry_due: retry_tx,
    };
    let mut up = Some(up);
    loop {
        let (conn, ch, mut consumer) = match setup(&shared, &topic, &queue).await {
            Ok(s) => s,
            Err(why) => {
                if let Some(up) = up.take() {
                    let _ = up.send(Err(why));
                    return;
                }
                debug!(%queue, %why, "reconnect failed; trying again");
                tokio::time::sleep(shared.config.reconnect_delay).await;
                continue;
            }
        };
        if let Some(up) = up.take() {
            let _ = up.send(Ok(()));
        }
        state.channel = Some(ch);
        loop {
            tokio::select! {
                biased;
                Some((id, how)) = settled.recv() => state.settle(id, how).await,
                Some((epoch, tag)) = retry_due.recv() => {
                    if epoch == state.epoch {
                        state.dispatch(tag);
                    }
                }
                d = consumer.next() => match d {
                    Some(Ok(d)) => {
                        let m = message(&d);
                        state.received(d.delivery_tag, m);
                    }
                    Some(Err(e)) => {
                        warn!(%queue, error = %e, "consumer failed; reconnecting (unacked messages come back)");
                        break;
                    }
                    None => {
                        warn!(%queue, "consumer cancelled; reconnecting (unacked messages come back)");
                        break;
                    }
                },
            }
            if state.ready.is_closed() {
                let _ = conn.close(200, "subscription dropped".into()).await;
                return;
            }
        }
        state.reset();
        drop(conn);
        tokio::time::sleep(shared.config.reconnect_delay).await;
    }
}
