use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::error::HandlerError;
use crate::events::Event;
use crate::ports::{Delivery, QueueError, Subscription};

/// Which delivery of an event a handler is looking at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first delivery.
    pub number: u32,
    /// After this many the event is dead-lettered.
    pub max: u32,
}

impl Attempt {
    /// The first of `max` attempts.
    pub fn first(max: u32) -> Self {
        Self { number: 1, max }
    }
    /// Whether a failure now dead-letters the event.
    pub fn is_last(&self) -> bool {
        self.number >= self.max
    }
    /// Whether a failure with `err` will be tried again.
    pub fn will_retry(&self, err: &HandlerError) -> bool {
        err.retryable && !self.is_last()
    }
}

/// Handles the events of one consumer group. Must be idempotent: the same
/// event can arrive twice, and an older one after a newer one.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Converges state for `event`; `Ok` acks it.
    async fn handle(&self, event: Event, attempt: Attempt) -> Result<(), HandlerError>;
}

/// Runs `handler` over `subscription` until `cancel` fires or the queue closes.
///
/// Up to `concurrency` events are handled at once; the queue keeps one
/// function's events in order because it hands out the next event of a key
/// only after the previous one is settled. On cancel it stops taking events and
/// waits (up to 30 s) for those in hand.
pub async fn run_consumer(
    worker: &'static str,
    subscription: Box<dyn Subscription>,
    handler: Arc<dyn EventHandler>,
    concurrency: usize,
    cancel: CancellationToken,
) {
    consume_deliveries(worker, subscription, concurrency, cancel, move |delivery| {
        let handler = Arc::clone(&handler);
        async move { settle(worker, handler.as_ref(), delivery).await }
    })
    .await;
}

/// Takes deliveries from `subscription` and runs `handle` on each, up to
/// `concurrency` at once, until `cancel` fires or the queue closes; `handle`
/// settles the delivery. On cancel it waits (up to 30 s) for those in hand;
/// a delivery dropped unsettled is delivered again.
pub(crate) async fn consume_deliveries<F, Fut>(
    worker: &'static str,
    mut subscription: Box<dyn Subscription>,
    concurrency: usize,
    cancel: CancellationToken,
    handle: F,
) where
    F: Fn(Delivery) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let concurrency = concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    loop {
        let slot = tokio::select! {
            _ = cancel.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot { Ok(s) => s, Err(_) => break },
        };
        let delivery = tokio::select! {
            _ = cancel.cancelled() => break,
            d = subscription.next() => d,
        };
        match delivery {
            Ok(delivery) => {
                let work = handle(delivery);
                tokio::spawn(async move {
                    work.await;
                    drop(slot);
                });
            }
            Err(QueueError::Closed) => break,
            Err(e) => {
                tracing::warn!(worker, error = %e, "queue receive failed; retrying in 1s");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(30), slots.acquire_many(all)).await.is_err() {
        tracing::warn!(worker, "deliveries still in hand after 30s at shutdown; they will be delivered again");
    }
}

/// Handles one delivery and settles it: ack on success, nack when retryable,
/// dead-letter when not (or when it cannot even be decoded).
async fn settle(worker: &'static str, handler: &dyn EventHandler, delivery: Delivery) {
    let attempt = Attempt { number: delivery.attempt(), max: delivery.max_attempts() };
    let event = match Event::from_payload(&delivery.message().payload) {
        Ok(ev) => ev,
        Err(e) => {
            tracing::error!(worker, key = %delivery.message().key, error = %e, "undecodable event; dead-lettering");
            if let Err(e) = delivery.dead_letter(e.to_string()).await {
                tracing::error!(worker, error = %e, "dead-lettering failed");
            }
            return;
        }
    };
    let span = tracing::info_span!(
        "reconcile",
        worker,
        function = %event.function(),
        event = event.kind(),
        attempt = attempt.number,
    );
    async {
        let outcome = handler.handle(event, attempt).await;
        let settled = match outcome {
            Ok(()) => delivery.ack().await,
            Err(e) if e.retryable => {
                tracing::warn!(error = %e, last = attempt.is_last(), "handler failed; will retry unless this was the last attempt");
                delivery.nack(e.message).await
            }
            Err(e) => {
                tracing::error!(error = %e, "handler failed for good; dead-lettering");
                delivery.dead_letter(e.message).await
            }
        };
        if let Err(e) = settled {
            tracing::error!(error = %e, "settling the delivery failed; it will be delivered again");
        }
    }
    .instrument(span)
    .await;
}
