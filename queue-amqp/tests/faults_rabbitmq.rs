//! RabbitMQ restarted during a stream of 1,000 events: every event is handled
//! at least once, none is lost.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pilotlight_core::ports::{Message, Queue, QueueError};
use tokio::sync::Mutex;

const EVENTS: usize = 1_000;

/// Restarts the broker application (connections cut; durable queues and
/// persistent messages recovered from disk). Started again on drop, so a
/// failing test leaves the broker up for the others.
struct Restart;

impl Restart {
    fn stop() -> Restart {
        let out = Command::new("rabbitmqctl").args(["stop_app"]).output().expect("rabbitmqctl");
        assert!(out.status.success(), "rabbitmqctl stop_app: {}", String::from_utf8_lossy(&out.stderr));
        Restart
    }
}

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["start_app"]).output();
        let _ = Command::new("rabbitmqctl").args(["await_startup"]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_handled_when_rabbitmq_restarts_mid_stream() {
    if !pilotlight_core::testkit::require_tool("rabbitmqctl", "the fault test restarts RabbitMQ") {
        return;
    }
    let Some(q) = common::queue(5).await else { return };
    let q = Arc::new(q);
    let topic = "faults";
    let seen: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let mut sub = q.subscribe(topic, "workers").await.expect("subscribe");
    let consumer = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(60), sub.next()).await else { return };
                let id = String::from_utf8_lossy(&d.message().payload).into_owned();
                // Handling takes a moment, so messages are in flight when the broker goes.
                tokio::time::sleep(Duration::from_millis(2)).await;
                *seen.lock().await.entry(id).or_insert(0) += 1;
                let _ = d.ack().await;
                if seen.lock().await.len() == EVENTS {
                    return;
                }
            }
        })
    };

    let started = Instant::now();
    let mut retries = 0;
    let mut restart = None;
    for i in 0..EVENTS {
        if i == 300 {
            // Restart while the stream goes on and the consumer holds unacked messages.
            restart = Some(tokio::task::spawn_blocking(|| {
                let t = Instant::now();
                let r = Restart::stop();
                std::thread::sleep(Duration::from_secs(1));
                drop(r);
                t.elapsed()
            }));
        }
        let m = Message::new(format!("fn-{}", i % 50), format!("event-{i}"));
        loop {
            match q.publish(topic, m.clone()).await {
                Ok(()) => break,
                Err(e @ QueueError::Unavailable(_)) => {
                    // Retryable: the broker is back within the publish deadline, or the group's
                    // queue is being re-declared after the restart.
                    retries += 1;
                    assert!(retries < 200, "publish {i} kept failing: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("publish {i}: {e}"),
            }
        }
    }
    let restart_took = restart.expect("restarted").await.unwrap();
    println!(
        "published {EVENTS} in {:?} ({retries} retried publishes; the restart took {restart_took:?})",
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(120), consumer).await.expect("all events handled").unwrap();
    let seen = seen.lock().await;
    let missing: Vec<usize> = (0..EVENTS).filter(|i| !seen.contains_key(&format!("event-{i}"))).collect();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!("{} of {EVENTS} handled, {duplicates} handled twice (at-least-once)", seen.len());
    assert!(missing.is_empty(), "lost {} events, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]);
}
