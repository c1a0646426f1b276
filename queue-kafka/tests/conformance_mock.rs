//! The queue conformance suite on librdkafka's in-process mock cluster
//! (the real Kafka protocol, spoken by librdkafka's own mock brokers).
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::time::Duration;

use pilotlight_core::testkit::queue::{QueueSuite, run_all};
use pilotlight_kafka::{KafkaConfig, KafkaQueue, MockCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_conformance_suite_passes_on_the_mock_cluster() {
    let cluster = MockCluster::new(3).expect("mock cluster");
    let mut c = KafkaConfig::new(cluster.bootstrap_servers());
    c.max_attempts = 3;
    c.create_topics = false; // the mock cluster has no CreateTopics
    // The mock's coordinator waits the session timeout (less 1 s) before it
    // ends a rebalance; a real broker ends it once every member rejoined.
    c.consumer.insert("session.timeout.ms".into(), "6000".into());
    c.consumer.insert("heartbeat.interval.ms".into(), "500".into());
    c.backoff_base = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(200);
    let q = KafkaQueue::connect(c).await.expect("connect");
    run_all(&q, &QueueSuite { max_attempts: 3, receive_timeout: Duration::from_secs(30) }).await;
}
