//! Topic triggers on each queue (memory, Kafka's mock cluster, RabbitMQ):
//! 500 messages over 5 keys reach a function in order per key, although the
//! consumer crashes in the middle; what the function received is seen, in
//! order, at a receiver it relays every message to.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pilotlight::core::controller::{TopicConfig, TopicTriggers};
use pilotlight::core::model::{Domain, ScalingInput, TriggerInput};
use pilotlight::core::testkit::http::Receiver;
use pilotlight::core::testkit::{fixtures::hello_binary, unique};
use pilotlight::gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight::kafka::MockCluster;
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::{FunctionName, FunctionSpecInput, Platform};
use tokio_util::sync::CancellationToken;

const KEYS: usize = 5;
const PER_KEY: usize = 100;

/// What goes wrong half way: the consumer crashes, or the broker goes away
/// for a while (`outage(true)` takes it down, `outage(false)` brings it back).
enum Fault<'a> {
    ConsumerCrash,
    Outage(&'a dyn Fn(bool)),
}

async fn five_keys_in_order(queue_url: &str, fault: Fault<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let queue = pilotlight::connect::queue(queue_url).await.unwrap();
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: unique("topics"),
        stop_grace: Duration::from_secs(2),
        kill_on_drop: true,
        ..Default::default()
    }));
    let mut gw_config = GatewayConfig::new(Domain::new("localhost").unwrap(), dir.path()).ephemeral();
    gw_config.tls = TlsSource::Disabled;
    let gw = Arc::new(Gateway::start(gw_config).await.unwrap());
    let store: Arc<dyn pilotlight::core::Store> = Arc::new(pilotlight::core::memory::MemoryStore::new());
    let platform = Platform::builder()
        .queue(Arc::clone(&queue))
        .store(Arc::clone(&store))
        .runtime(runtime.clone())
        .router(gw.clone())
        .drain(Duration::from_millis(50))
        .build()
        .unwrap();
    gw.set_activator(platform.activator());
    platform.start().await.unwrap();

    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0)), 200).await.unwrap();
    let mut input = FunctionSpecInput::exec("orders", hello_binary().to_str().unwrap(), &[], 8080);
    input.env.insert("LOG_REQUESTS".into(), "0".into());
    input.scaling = Some(ScalingInput { min: Some(2), prewarm: Some(0), ..Default::default() });
    input.triggers = vec![TriggerInput {
        topic: Some("orders".into()),
        path: Some(format!("/relay?to={}", receiver.addr())),
        ..Default::default()
    }];
    platform.deploy(input.validate().unwrap()).await.unwrap();
    let name: FunctionName = "orders".parse().unwrap();
    platform.wait_ready(&name, Duration::from_secs(30)).await.unwrap();

    let config = TopicConfig { refresh: Duration::from_millis(200), ..TopicConfig::default() };
    let start = |platform_store: Arc<dyn pilotlight::core::Store>| {
        let triggers =
            TopicTriggers::new(platform_store, Arc::clone(&queue), Arc::new(gw.dispatcher()), config.clone());
        tokio::spawn(triggers.run(CancellationToken::new()))
    };
    let first = start(Arc::clone(&store));
    // Interleaved keys, each key's sequence in order, published while the
    // trigger consumes. RabbitMQ refuses a message no group is bound for yet
    // (it would drop it): the first waits for the trigger's group.
    let publisher = platform.clone();
    let publishing = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        for seq in 0..PER_KEY {
            for k in 0..KEYS {
                let (key, body) = (format!("k{k}"), format!("k{k}:{seq}"));
                let mut retry_until = Instant::now() + Duration::from_secs(60);
                if seq == 0 && k == 0 {
                    retry_until = deadline;
                }
                loop {
                    let sent = publisher.publish_message("orders", &key, body.clone().into_bytes(), Some("text/plain"));
                    match sent.await {
                        Ok(_) => break,
                        // The trigger's group is not bound yet (RabbitMQ), or the broker is away: try again.
                        Err(e) if Instant::now() < retry_until => {
                            eprintln!("publish {key}:{seq} again: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => panic!("publish: {e}"),
                    }
                }
            }
        }
    });
    let total = KEYS * PER_KEY;
    let began = Instant::now();
    let wait_for = |n: usize, what: &'static str| {
        let receiver_record = receiver.record();
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while receiver_record.lock().len() < n {
                assert!(Instant::now() < deadline, "{what}: {} of {n} relayed", receiver_record.lock().len());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(total / 2, "half the messages").await;
    let at_fault = receiver.received().len();
    let second = match fault {
        Fault::ConsumerCrash => {
            // The consumer crashes: nothing it had in hand is settled.
            first.abort();
            let _ = first.await;
            start(Arc::clone(&store))
        }
        Fault::Outage(outage) => {
            outage(true);
            tokio::time::sleep(Duration::from_secs(2)).await;
            outage(false);
            first
        }
    };
    publishing.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let distinct = |got: &[pilotlight::core::testkit::http::Received]| {
        got.iter()
            .filter_map(|r| r.header("x-message-id").map(str::to_owned))
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    while distinct(&receiver.received()) < total {
        assert!(Instant::now() < deadline, "{} of {total} distinct messages relayed", distinct(&receiver.received()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = began.elapsed();
    second.abort();

    let got = receiver.received();
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in &got {
        let body = String::from_utf8(r.body.clone()).unwrap();
        let (key, seq) = body.split_once(':').unwrap();
        assert_eq!(r.header("x-message-key"), Some(key), "{r:?}");
        assert_eq!(r.header("x-topic"), Some("orders"));
        assert_eq!(r.header("x-pilotlight-trigger"), Some("topic"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        per_key.entry(key.to_owned()).or_default().push(seq.parse().unwrap());
    }
    assert_eq!(per_key.len(), KEYS);
    let mut repeats = 0;
    for (key, seqs) in &per_key {
        // In order per key, at least once: a message never arrives before every
        // earlier one of its key has; after the crash the queue may replay a run
        // it had not recorded as settled (a rewind), which then goes on in order.
        let mut next = 0;
        for (i, seq) in seqs.iter().enumerate() {
            assert!(*seq <= next, "`{key}`: {seq} arrived before {next} (at {i}: {seqs:?})");
            next = next.max(seq + 1);
        }
        assert_eq!(next, PER_KEY, "`{key}`: every message arrived");
        repeats += seqs.len() - PER_KEY;
    }
    println!(
        "{queue_url}: {total} messages over {KEYS} keys in order per key across a fault after {at_fault}; \
         {repeats} delivered twice (at least once), {:.1} s",
        took.as_secs_f64()
    );
    receiver.stop();
    platform.shutdown().await;
    gw.shutdown().await;
    runtime.stop_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_queue_topic_trigger_keeps_order_per_key_across_a_consumer_crash() {
    five_keys_in_order("memory", Fault::ConsumerCrash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topic_trigger_keeps_order_per_key_across_a_consumer_crash() {
    let cluster = MockCluster::new(3).unwrap();
    let url = format!(
        "kafka://{}/?prefix={}.&create_topics=false&session.timeout.ms=6000&heartbeat.interval.ms=500",
        cluster.bootstrap_servers(),
        unique("topics")
    );
    five_keys_in_order(&url, Fault::ConsumerCrash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topic_trigger_keeps_order_per_key_while_every_broker_is_down_for_a_while() {
    let cluster = MockCluster::new(3).unwrap();
    let url = format!(
        "kafka://{}/?prefix={}.&create_topics=false&session.timeout.ms=6000&heartbeat.interval.ms=500",
        cluster.bootstrap_servers(),
        unique("topics")
    );
    let outage = |down: bool| {
        for broker in 1..=3 {
            if down {
                cluster.broker_down(broker).unwrap();
            } else {
                cluster.broker_up(broker).unwrap();
            }
        }
    };
    five_keys_in_order(&url, Fault::Outage(&outage)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_topic_trigger_keeps_order_per_key_across_a_broker_restart() {
    let Some(url) = common::amqp_url("topics").await else { return };
    if !pilotlight::core::testkit::require_tool("rabbitmqctl", "the fault test restarts RabbitMQ") {
        return;
    }
    let outage = |down: bool| {
        let steps: &[&[&str]] = if down { &[&["stop_app"]] } else { &[&["start_app"], &["await_startup"]] };
        for args in steps {
            let out = std::process::Command::new("rabbitmqctl").args(*args).output().unwrap();
            assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    };
    five_keys_in_order(&url, Fault::Outage(&outage)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_topic_trigger_keeps_order_per_key_across_a_consumer_crash() {
    let Some(url) = common::amqp_url("topics").await else { return };
    five_keys_in_order(&url, Fault::ConsumerCrash).await;
}
