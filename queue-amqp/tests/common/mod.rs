//! Reaching the test RabbitMQ.
#![allow(dead_code)]

use std::time::Duration;

use pilotlight_amqp::{AmqpConfig, AmqpQueue};
use pilotlight_core::testkit::unique;

/// The broker the tests use (`PILOTLIGHT_TEST_AMQP` overrides it).
pub fn url() -> String {
    std::env::var("PILOTLIGHT_TEST_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A queue with its own prefix. None (skipped, with the reason) when no
/// broker answers outside CI; under CI a missing broker fails the test.
pub async fn queue(max_attempts: u32) -> Option<AmqpQueue> {
    let mut c = AmqpConfig::from_url(&url()).unwrap();
    c.prefix = format!("{}.", unique("t"));
    c.max_attempts = max_attempts;
    c.backoff_base = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(200);
    c.idle_queue_expiry = Some(Duration::from_secs(600)); // test queues do not pile up on the broker
    match AmqpQueue::connect(c).await {
        Ok(q) => Some(q),
        Err(e) => {
            let msg = format!("RabbitMQ is not reachable ({e}); `bash scripts/deps.sh` installs and starts it");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}
