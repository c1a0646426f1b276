//! The in-memory backends pass the same conformance suites as the real ones.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::time::Duration;

use pilotlight_core::memory::{MemoryQueue, MemoryQueueConfig, MemoryRouter, MemoryRuntime, MemoryStore};
use pilotlight_core::model::FunctionSpecInput;
use pilotlight_core::testkit;

#[tokio::test]
async fn memory_queue_conforms() {
    let q = MemoryQueue::with_config(MemoryQueueConfig {
        max_attempts: 3,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
    });
    testkit::queue::run_all(&q, &testkit::queue::QueueSuite { max_attempts: 3, ..Default::default() }).await;
}

#[tokio::test]
async fn memory_store_conforms() {
    testkit::store::run_all(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_router_conforms() {
    testkit::router::run_all(&MemoryRouter::new()).await;
}

#[tokio::test]
async fn memory_runtime_conforms() {
    let fixture = testkit::runtime::RuntimeFixture {
        hello: Box::new(|name| FunctionSpecInput::image(name, "pilotlight/hello", 8080).validate().unwrap()),
        wrong_kind: None,
        broken: None,
        start_timeout: Duration::from_secs(5),
        loopback_endpoints: true,
    };
    testkit::runtime::run_all(&MemoryRuntime::new(), &fixture).await;
}
