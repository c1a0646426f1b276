//! Nothing is lost when every broker goes down and comes back during a stream
//! of 1,000 events, nor when a consumer dies with messages unsettled.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pilotlight_core::ports::{Message, Queue, QueueError};
use pilotlight_kafka::{KafkaConfig, KafkaQueue, MockCluster};
use tokio::sync::Mutex;

const EVENTS: usize = 1_000;

fn config(bootstrap: String) -> KafkaConfig {
    let mut c = KafkaConfig::new(bootstrap);
    c.create_topics = false; // the mock cluster has no CreateTopics
    c.consumer.insert("session.timeout.ms".into(), "6000".into());
    c.consumer.insert("heartbeat.interval.ms".into(), "500".into());
    c.backoff_base = Duration::from_millis(50);
    c.publish_timeout = Duration::from_secs(20);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_handled_through_a_broker_outage_and_a_consumer_crash() {
    let cluster = MockCluster::new(3).expect("mock cluster");
    let q = Arc::new(KafkaQueue::connect(config(cluster.bootstrap_servers())).await.expect("connect"));
    let topic = "faults";
    let seen: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();

    // A consumer that handles (records) and acks; it can be killed without settling what it holds.
    let consume = |q: Arc<KafkaQueue>, seen: Arc<Mutex<BTreeMap<String, u32>>>, limit: Option<usize>| async move {
        let mut sub = q.subscribe(topic, "workers").await.expect("subscribe");
        let mut handled = 0;
        loop {
            let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(60), sub.next()).await else { return handled };
            let id = String::from_utf8_lossy(&d.message().payload).into_owned();
            if limit.is_some_and(|l| handled >= l) {
                // Crash: this delivery and everything not yet handed out stay unsettled.
                drop(d);
                return handled;
            }
            *seen.lock().await.entry(id).or_insert(0) += 1;
            handled += 1;
            d.ack().await.expect("ack");
            if seen.lock().await.len() == EVENTS {
                return handled;
            }
        }
    };
    let first = tokio::spawn(consume(q.clone(), seen.clone(), Some(200)));

    let mut publish_retries = 0;
    let started = Instant::now();
    for i in 0..EVENTS {
        let m = Message::new(format!("fn-{}", i % 50), format!("event-{i}"));
        let publish = async {
            loop {
                match q.publish(topic, m.clone()).await {
                    Ok(()) => return,
                    Err(e @ QueueError::Unavailable(_)) => {
                        assert!(e.is_retryable());
                        publish_retries += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("publish {i}: {e}"),
                }
            }
        };
        if i != 300 {
            publish.await;
            continue;
        }
        // Every broker goes down; this publish waits. The brokers come back after 3 s.
        for broker in 1..=3 {
            cluster.broker_down(broker).expect("broker down");
        }
        let down = Instant::now();
        tokio::pin!(publish);
        let waited = tokio::select! {
            () = &mut publish => false,
            () = tokio::time::sleep(Duration::from_secs(3)) => true,
        };
        for broker in 1..=3 {
            cluster.broker_up(broker).expect("broker up");
        }
        tokio::time::timeout(Duration::from_secs(30), publish).await.expect("publish completes within its deadline");
        println!("event 300: published {:?} after every broker went down (waited for them: {waited})", down.elapsed());
    }
    println!("published {EVENTS} in {:?} ({publish_retries} retried publishes)", started.elapsed());

    let crashed_after = first.await.expect("first consumer");
    let second = tokio::spawn(consume(q.clone(), seen.clone(), None));
    let _ = tokio::time::timeout(Duration::from_secs(120), second).await.expect("second consumer finishes");
    let seen = seen.lock().await;
    let missing: Vec<usize> = (0..EVENTS).filter(|i| !seen.contains_key(&format!("event-{i}"))).collect();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!(
        "first consumer handled {crashed_after} then crashed; {} of {EVENTS} handled, {duplicates} handled twice (at-least-once)",
        seen.len()
    );
    assert!(missing.is_empty(), "lost {} events, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]);
}
