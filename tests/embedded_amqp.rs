//! The platform on RabbitMQ (Debian's rabbitmq-server on 127.0.0.1:5672,
//! started by `scripts/deps.sh`): in one process, and split into a deployer
//! and a router process that share nothing but the queue.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use pilotlight::core::testkit::unique;

/// The test broker under a prefix of this test's own, or None (skipped with
/// the reason) when no broker answers outside CI.
async fn amqp_url() -> Option<String> {
    let base = std::env::var("PILOTLIGHT_TEST_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let url = format!("{base}?prefix={}.", unique("e2e"));
    match pilotlight::connect::queue(&url).await {
        Ok(_) => Some(url),
        Err(e) => {
            let msg = format!("RabbitMQ is not reachable ({e}); `bash scripts/deps.sh` installs and starts it");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_deploys_through_rabbitmq_and_answers_through_the_gateway() {
    let Some(url) = amqp_url().await else { return };
    common::hello_through(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployer_and_a_router_process_share_only_rabbitmq() {
    let Some(url) = amqp_url().await else { return };
    common::split_processes(&url).await;
}
