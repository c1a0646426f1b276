//! Benchmark of the queues, side by side: events per second and the latency
//! from publish until handled (p50/p99), for the memory queue, Kafka
//! (librdkafka's mock cluster, in this process) and RabbitMQ (the local
//! broker), with 1 and with 16 concurrent publishers. Every publish waits
//! until it is durable (acks=all / publisher confirm); the consumer acks each
//! event after recording it; keys spread over 100 functions.
//!
//! ```sh
//! bash scripts/bench.sh queue
//! ```
//! `BENCH_EVENTS` (per run, default 5000), `PILOTLIGHT_TEST_AMQP` (default the local broker).
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::sync::Arc;
use std::time::{Duration, Instant};

use pilotlight::Queue;
use pilotlight::core::memory::MemoryQueue;
use pilotlight::core::ports::Message;
use pilotlight::core::testkit::unique;
use pilotlight::kafka::MockCluster;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(q: Arc<dyn Queue>, events: usize, publishers: usize) -> Result<Run, Error> {
    let per = events / publishers;
    let events = per * publishers;
    let topic = unique("bench");
    let mut sub = q.subscribe(&topic, "bench").await?;
    let origin = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(events);
        while latencies.len() < events {
            let d = tokio::time::timeout(Duration::from_secs(120), sub.next()).await??;
            let sent: f64 = String::from_utf8_lossy(&d.message().payload).parse()?;
            latencies.push(origin.elapsed().as_secs_f64() * 1e3 - sent);
            d.ack().await?;
        }
        Ok::<_, Error>((latencies, origin.elapsed()))
    });
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let q = q.clone();
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let sent = origin.elapsed().as_secs_f64() * 1e3;
                q.publish(&topic, Message::new(format!("fn-{}", (p * per + i) % 100), sent.to_string())).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let (mut latencies, took) = consumer.await??;
    latencies.sort_by(f64::total_cmp);
    Ok(Run {
        rate: events as f64 / took.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let events: usize = std::env::var("BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let cluster = MockCluster::new(3)?;
    let kafka_url = format!(
        "kafka://{}/?prefix={}.&create_topics=false&session.timeout.ms=6000&heartbeat.interval.ms=500",
        cluster.bootstrap_servers(),
        unique("bench")
    );
    let amqp_base =
        std::env::var("PILOTLIGHT_TEST_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let amqp_url = format!("{amqp_base}?prefix={}.", unique("bench"));
    let queues: Vec<(&str, Arc<dyn Queue>)> = vec![
        ("memory", Arc::new(MemoryQueue::new())),
        ("kafka (mock cluster)", pilotlight::connect::queue(&kafka_url).await?),
        ("rabbitmq", pilotlight::connect::queue(&amqp_url).await?),
    ];
    println!("pilotlight queue benchmark: {events} events per run, durable publishes, acked after handling");
    for publishers in [1usize, 16] {
        println!("\n{publishers} publisher(s)");
        println!("  {:<22} {:>12} {:>10} {:>10}", "queue", "events/s", "p50 ms", "p99 ms");
        let mut rates = Vec::new();
        for (name, q) in &queues {
            let r = run(q.clone(), events, publishers).await?;
            println!("  {:<22} {:>12.0} {:>10.2} {:>10.2}", name, r.rate, r.p50_ms, r.p99_ms);
            rates.push(r.rate);
        }
        println!(
            "  kafka {:.3}x and rabbitmq {:.3}x the memory queue's rate",
            rates[1] / rates[0],
            rates[2] / rates[0]
        );
    }
    println!(
        "\nThe Kafka figures are librdkafka's mock brokers in this process, not a real cluster's disks and network."
    );
    Ok(())
}
