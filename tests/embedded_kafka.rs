//! The platform on Kafka (librdkafka's mock cluster speaks the real protocol):
//! in one process, and split into a deployer and a router process that share
//! nothing but the queue, like the original design's two consumers.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use pilotlight::core::testkit::unique;
use pilotlight::kafka::MockCluster;

/// A queue URL for the mock cluster. Its coordinator ends a rebalance only
/// after the session timeout, so tests use a short one.
fn kafka_url(bootstrap: &str) -> String {
    format!(
        "kafka://{bootstrap}/?prefix={}.&create_topics=false&session.timeout.ms=6000&heartbeat.interval.ms=500",
        unique("e2e")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_deploys_through_kafka_and_answers_through_the_gateway() {
    let cluster = MockCluster::new(3).unwrap();
    common::hello_through(&kafka_url(&cluster.bootstrap_servers())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployer_and_a_router_process_share_only_kafka() {
    let cluster = MockCluster::new(3).unwrap();
    common::split_processes(&kafka_url(&cluster.bootstrap_servers())).await;
}
