//! Topic triggers: the messages published to a topic on the platform's
//! queue, delivered to a function as POSTs.
//!
//! ```text
//! every refresh: functions (Store) ─ topic triggers ─ one consumer group per (function, topic):
//!   subscribe ─ each delivery: POST the payload through the edge (activation from zero)
//!     ─ 2xx/3xx: ack │ connection failure, timeout, 429, 502-504: nack (the queue retries
//!       with backoff, then dead-letters to `<topic>.dlq`) │ any other answer: dead-letter now
//! ```
//!
//! Order per key is the queue's: it hands out a key's next message only once
//! the previous one is settled, and a message is settled only after the
//! function answered, so a key's messages reach the function one at a time,
//! in publish order, while different keys run in parallel. A consumer that
//! dies with deliveries in hand leaves them unsettled, and the queue delivers
//! them again (at least once: `X-Message-Id` and `X-Attempt` let the
//! function tell repeats apart).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::consume::consume_deliveries;
use super::invoker::{Verdict, verdict};
use crate::model::{FunctionName, InvocationRequest, Trigger};
use crate::ports::{Delivery, Dispatch, Queue, Store};

/// Settings of [`TopicTriggers`].
#[derive(Clone, Debug)]
pub struct TopicConfig {
    /// Messages of one trigger handled at once (of different keys; default 16).
    pub concurrency: usize,
    /// How often the Store is read for triggers that came or went (default 2 s).
    pub refresh: Duration,
    /// Bytes of a function's answer read (default 64 KiB; the rest is dropped).
    pub response_cap: usize,
    /// Retry every 5xx, not only 502, 503 and 504 (default off).
    pub retry_any_5xx: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self { concurrency: 16, refresh: Duration::from_secs(2), response_cap: 64 * 1024, retry_any_5xx: false }
    }
}

/// The header a message's id travels in (the API's publish sets one).
pub const MESSAGE_ID_HEADER: &str = "message-id";

/// The consumer group of `function`'s trigger on `topic`: `trigger.<function>.<topic>`,
/// shortened with a hash of the topic when that is over the 200-character limit.
pub fn trigger_group(function: &FunctionName, topic: &str) -> String {
    let group = format!("trigger.{function}.{topic}");
    if group.len() <= 200 {
        return group;
    }
    let hash = crate::support::stable_hash(topic.as_bytes());
    format!("trigger.{function}.{}.{hash:016x}", &topic[..100.min(topic.len())])
}

/// What one running consumer serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Wanted {
    function: FunctionName,
    topic: String,
    path: String,
    timeout: Duration,
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Drop for Running {
    /// A consumer does not outlive what runs it: if `run` itself is dropped
    /// (aborted), its consumers stop taking messages at once; what they had
    /// in hand unsettled is delivered again.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the topic triggers of the functions in a Store; see the module docs.
pub struct TopicTriggers {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    dispatch: Arc<dyn Dispatch>,
    config: TopicConfig,
}

impl TopicTriggers {
    /// Topic triggers of the functions in `store`, consuming `queue` and
    /// calling functions through `dispatch`.
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        dispatch: Arc<dyn Dispatch>,
        config: TopicConfig,
    ) -> Arc<Self> {
        Arc::new(Self { store, queue, dispatch, config })
    }

    /// Keeps one consumer per topic trigger until `cancel` fires; then stops
    /// them (deliveries in hand finish, or are delivered again later).
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut running: HashMap<Wanted, Running> = HashMap::new();
        loop {
            match self.wanted().await {
                Ok(wanted) => {
                    let gone: Vec<Wanted> = running.keys().filter(|w| !wanted.contains(w)).cloned().collect();
                    for w in gone {
                        if let Some(mut r) = running.remove(&w) {
                            tracing::info!(function = %w.function, topic = %w.topic, "topic trigger removed; its consumer stops");
                            r.cancel.cancel();
                            let _ = (&mut r.task).await;
                        }
                    }
                    for w in wanted {
                        if running.get(&w).is_some_and(|r| !r.task.is_finished()) {
                            continue;
                        }
                        match self.start(&w, cancel.child_token()).await {
                            Ok(r) => {
                                running.insert(w, r);
                            }
                            Err(e) => {
                                tracing::warn!(function = %w.function, topic = %w.topic, error = %e, "cannot subscribe a topic trigger; trying again")
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "topic triggers: cannot read the functions; trying again"),
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.config.refresh) => {}
            }
        }
        for (_, mut r) in running {
            r.cancel.cancel();
            let _ = (&mut r.task).await;
        }
    }

    async fn wanted(&self) -> Result<Vec<Wanted>, crate::ports::StoreError> {
        let mut wanted = Vec::new();
        for record in self.store.list().await? {
            if record.deleted {
                continue;
            }
            for trigger in record.spec.triggers() {
                if let Trigger::Topic(t) = trigger {
                    wanted.push(Wanted {
                        function: record.spec.name().clone(),
                        topic: t.topic.clone(),
                        path: t.path.clone(),
                        timeout: record.spec.timeout(),
                    });
                }
            }
        }
        Ok(wanted)
    }

    async fn start(
        self: &Arc<Self>,
        w: &Wanted,
        cancel: CancellationToken,
    ) -> Result<Running, crate::ports::QueueError> {
        let group = trigger_group(&w.function, &w.topic);
        let subscription = self.queue.subscribe(&w.topic, &group).await?;
        tracing::info!(function = %w.function, topic = %w.topic, %group, "topic trigger consuming");
        let me = Arc::clone(self);
        let wanted = Arc::new(w.clone());
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            consume_deliveries("topic-trigger", subscription, me.config.concurrency, stop, move |delivery| {
                let (me, wanted) = (Arc::clone(&me), Arc::clone(&wanted));
                async move { me.deliver(&wanted, delivery).await }
            })
            .await;
        });
        Ok(Running { cancel, task })
    }

    /// One message to the function, then its settlement.
    async fn deliver(&self, w: &Wanted, delivery: Delivery) {
        let message = delivery.message();
        let function = w.function.as_str();
        let mut headers = vec![
            ("x-pilotlight-trigger".to_owned(), "topic".to_owned()),
            ("x-topic".to_owned(), w.topic.clone()),
            ("x-message-key".to_owned(), header_text(&message.key)),
            ("x-attempt".to_owned(), delivery.attempt().to_string()),
        ];
        if let Some(id) = message.headers.get(MESSAGE_ID_HEADER) {
            headers.push(("x-message-id".to_owned(), header_text(id)));
            headers.push(("x-call-id".to_owned(), header_text(id)));
        }
        let content_type = message.headers.get("content-type").map_or("application/octet-stream", String::as_str);
        headers.push(("content-type".to_owned(), header_text(content_type)));
        let request = match InvocationRequest::new("POST", &w.path, Vec::new(), message.payload.clone()) {
            Ok(r) => r,
            Err(e) => {
                settle(delivery.dead_letter(format!("the trigger's request cannot be made: {e}")).await, function);
                return;
            }
        };
        let result = self.dispatch.dispatch(&w.function, &request, headers, w.timeout, self.config.response_cap).await;
        let outcome = match verdict(&result, self.config.retry_any_5xx) {
            Verdict::Succeeded => {
                settle(delivery.ack().await, function);
                "succeeded"
            }
            Verdict::Retry(_) => {
                let why = match &result {
                    Ok(d) => format!("the function answered {}", d.response.status),
                    Err(e) => e.to_string(),
                };
                let last = delivery.is_last_attempt();
                settle(delivery.nack(why).await, function);
                if last { "dead" } else { "retried" }
            }
            Verdict::Failed => {
                let status = result.as_ref().map_or(0, |d| d.response.status);
                settle(delivery.dead_letter(format!("the function answered {status}")).await, function);
                "dead"
            }
        };
        metrics::counter!("pilotlight_topic_deliveries_total", "function" => w.function.to_string(), "outcome" => outcome)
            .increment(1);
    }
}

fn settle(result: Result<(), crate::ports::QueueError>, function: &str) {
    if let Err(e) = result {
        tracing::warn!(function, error = %e, "a topic message could not be settled; it will be delivered again");
    }
}

/// A value fit for a header: printable ASCII as it is, anything else
/// percent-encoded (message keys and ids come from publishers).
fn header_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes().take(1024) {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_named_for_the_function_and_topic_within_the_limit() {
        let f: FunctionName = "orders".parse().unwrap();
        assert_eq!(trigger_group(&f, "eu.new"), "trigger.orders.eu.new");
        let long = "t".repeat(200);
        let g = trigger_group(&f, &long);
        assert!(g.len() <= 200 && g.starts_with("trigger.orders.ttt"), "{g}");
        assert!(crate::ports::check_topic_name("group", &g).is_ok());
        assert_ne!(g, trigger_group(&f, &"t".repeat(199)), "different topics, different groups");
    }

    #[test]
    fn header_text_escapes_what_a_header_cannot_hold() {
        assert_eq!(header_text("k-1"), "k-1");
        assert_eq!(header_text("a\r\nb%"), "a%0D%0Ab%25");
        assert_eq!(header_text("é"), "%C3%A9");
    }
}
