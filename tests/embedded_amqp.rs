//! The platform on RabbitMQ (Debian's rabbitmq-server on 127.0.0.1:5672,
//! started by `scripts/deps.sh`): in one process, and split into a deployer
//! and a router process that share nothing but the queue.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_deploys_through_rabbitmq_and_answers_through_the_gateway() {
    let Some(url) = common::amqp_url("e2e").await else { return };
    common::hello_through(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployer_and_a_router_process_share_only_rabbitmq() {
    let Some(url) = common::amqp_url("e2e").await else { return };
    common::split_processes(&url).await;
}
