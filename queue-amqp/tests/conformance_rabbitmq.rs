//! The queue conformance suite on a real RabbitMQ (Debian's rabbitmq-server,
//! started on 127.0.0.1:5672 by `scripts/deps.sh`).
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::time::Duration;

use pilotlight_core::testkit::queue::{QueueSuite, run_all};

#[tokio::test]
async fn the_queue_conformance_suite_passes_on_rabbitmq() {
    let Some(q) = common::queue(3).await else { return };
    run_all(&q, &QueueSuite { max_attempts: 3, receive_timeout: Duration::from_secs(15) }).await;
}
