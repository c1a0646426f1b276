//! Benchmark of asynchronous work, side by side with the synchronous path
//! and with the raw queue, in one run on this machine:
//!
//! 1. Asynchronous invocations (the embedded defaults: accepted into redb
//!    with fsync, run by the invoker through the gateway) against synchronous
//!    calls of the same function: requests accepted per second at the edge
//!    with 16 clients, and, one at a time, the latency from sending the
//!    request until the function has done its work (it relays the request to
//!    a receiver in this process, which notes the time).
//! 2. Topic triggers on each queue (memory, Kafka's mock cluster, RabbitMQ):
//!    publish → the function has done its work, one at a time, against the
//!    raw queue's own publish → handled floor on the same queue.
//!
//! ```sh
//! bash scripts/bench.sh async
//! ```
//! `BENCH_N` (messages per latency run, default 300), `BENCH_BURST` (async and
//! sync requests per throughput run, default 2000), `PILOTLIGHT_TEST_AMQP`.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pilotlight::core::controller::{CronConfig, CronScheduler, Invoker, InvokerConfig, TopicConfig, TopicTriggers};
use pilotlight::core::model::{Domain, ScalingInput, TriggerInput};
use pilotlight::core::ports::Message;
use pilotlight::core::testkit::http::Receiver;
use pilotlight::core::testkit::{fixtures::workspace_binary, unique};
use pilotlight::gateway::{Gateway, GatewayConfig, HttpCallbacks, TlsSource};
use pilotlight::kafka::MockCluster;
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::{FunctionName, FunctionSpecInput, Platform, Queue, Store};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// A keep-alive HTTP/1.1 connection that sends requests and reads
/// `Content-Length` answers: the client side of the benchmark.
struct Conn(BufReader<TcpStream>);

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Self, Error> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Self(BufReader::new(s)))
    }

    async fn request(&mut self, head: &str) -> Result<u16, Error> {
        self.0.get_mut().write_all(head.as_bytes()).await?;
        let mut line = String::new();
        self.0.read_line(&mut line).await?;
        let status: u16 = line.split_whitespace().nth(1).ok_or("no status")?.parse()?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.0.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':')
                && n.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).await?;
        Ok(status)
    }
}

struct Stage {
    platform: Platform,
    gw: Arc<Gateway>,
    runtime: Arc<ProcessRuntime>,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn stage(queue: Arc<dyn Queue>) -> Result<Stage, Error> {
    let dir = tempfile::tempdir()?;
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: unique("bench-async"),
        kill_on_drop: true,
        ..Default::default()
    }));
    let mut gw_config = GatewayConfig::new(Domain::new("localhost")?, dir.path()).ephemeral();
    gw_config.tls = TlsSource::Disabled;
    let gw = Arc::new(Gateway::start(gw_config).await?);
    let store: Arc<dyn Store> = Arc::new(pilotlight::redb::RedbStore::open(dir.path().join("store.redb"))?);
    let platform = Platform::builder()
        .queue(queue)
        .store(Arc::clone(&store))
        .runtime(runtime.clone())
        .router(gw.clone())
        .build()?;
    gw.set_activator(platform.activator());
    platform.start().await?;
    Ok(Stage { platform, gw, runtime, store, cancel: CancellationToken::new(), _dir: dir })
}

impl Stage {
    async fn deploy(&self, name: &str, triggers: Vec<TriggerInput>) -> Result<(), Error> {
        let mut input = FunctionSpecInput::exec(name, workspace_binary("hello").to_str().ok_or("path")?, &[], 8080);
        input.env.insert("LOG_REQUESTS".into(), "0".into());
        input.scaling = Some(ScalingInput { min: Some(2), max: Some(2), prewarm: Some(0), ..Default::default() });
        input.triggers = triggers;
        self.platform.deploy(input.validate()?).await?;
        self.platform.wait_ready(&name.parse::<FunctionName>()?, Duration::from_secs(60)).await?;
        Ok(())
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.platform.shutdown().await;
        self.gw.shutdown().await;
        let _ = self.runtime.stop_all().await;
    }
}

/// Waits until `receiver` has recorded `n` requests; when the last arrived.
async fn until_received(receiver: &Receiver, n: usize) -> Result<Instant, Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = receiver.record().lock().get(n - 1) {
            return Ok(r.at);
        }
        if Instant::now() > deadline {
            return Err(format!("only {} of {n} arrived", receiver.received().len()).into());
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// `burst` requests from 16 clients; requests per second (every answer must be `want`).
async fn burst(edge: SocketAddr, head: &'static str, burst: usize, want: u16) -> Result<f64, Error> {
    let clients = 16;
    let per = burst / clients;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(edge).await?;
            for _ in 0..per {
                let status = conn.request(head).await?;
                if status != want {
                    return Err::<(), Error>(format!("answered {status}, not {want}").into());
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((per * clients) as f64 / began.elapsed().as_secs_f64())
}

async fn invocations(n: usize, burst_n: usize) -> Result<(), Error> {
    let s = stage(Arc::new(pilotlight::core::memory::MemoryQueue::new())).await?;
    let invoker = Invoker::new(
        Arc::clone(&s.store),
        Arc::new(s.gw.dispatcher()),
        Arc::new(HttpCallbacks::new()?),
        InvokerConfig::default(),
    );
    s.gw.set_intake(Arc::new(invoker.intake()));
    let cron = CronScheduler::new(Arc::clone(&s.store), CronConfig::default(), Some(invoker.waker()));
    tokio::spawn(cron.run(s.cancel.clone()));
    tokio::spawn(Arc::clone(&invoker).run(s.cancel.clone()));
    s.deploy("work", vec![]).await?;
    let edge = s.gw.http_addr();
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0)), 200).await?;
    let relay = format!("/relay?to={}", receiver.addr());

    // Latency, one at a time: synchronous, then asynchronous, interleaved in rounds.
    let mut conn = Conn::open(edge).await?;
    let sync_head = format!("POST {relay} HTTP/1.1\r\nHost: work.localhost\r\nContent-Length: 0\r\n\r\n");
    let async_head =
        format!("POST {relay} HTTP/1.1\r\nHost: work.localhost\r\nPrefer: respond-async\r\nContent-Length: 0\r\n\r\n");
    let (mut sync_ms, mut async_ms, mut accept_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t0 = Instant::now();
        assert_eq!(conn.request(&sync_head).await?, 200);
        sync_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let seen = receiver.received().len();
        let t0 = Instant::now();
        assert_eq!(conn.request(&async_head).await?, 202);
        accept_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let at = until_received(&receiver, seen + 1).await?;
        async_ms.push(at.duration_since(t0).as_secs_f64() * 1e3);
    }
    let (s50, s99) = summary(sync_ms);
    let (a50, a99) = summary(async_ms);
    let (c50, c99) = summary(accept_ms);
    println!("\n1. invocations of a process function with 2 instances (async: redb with fsync, invoker defaults)");
    println!("   one at a time, {n} each, send → the function has done its work:");
    println!("     synchronous        p50 {s50:7.2} ms  p99 {s99:7.2} ms");
    println!("     asynchronous       p50 {a50:7.2} ms  p99 {a99:7.2} ms   ({:.1}x sync at p50)", a50 / s50);
    println!("     async 202 answered p50 {c50:7.2} ms  p99 {c99:7.2} ms   (the durable accept)");

    let sync_rate = burst(edge, "GET /healthz HTTP/1.1\r\nHost: work.localhost\r\n\r\n", burst_n, 200).await?;
    let before = s.platform.invocations().list(&"work".parse()?, None, None, 100_000).await?.len();
    let began = Instant::now();
    let accept_rate =
        burst(edge, "GET /healthz HTTP/1.1\r\nHost: work.localhost\r\nPrefer: respond-async\r\n\r\n", burst_n, 202)
            .await?;
    let accepted = burst_n / 16 * 16;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = s
            .platform
            .invocations()
            .list(&"work".parse()?, Some(pilotlight::core::model::InvocationState::Succeeded), None, 100_000)
            .await?
            .len();
        if done >= before + accepted {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {done} of {accepted} handled").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handled_rate = accepted as f64 / began.elapsed().as_secs_f64();
    println!("   16 clients, {accepted} requests:");
    println!("     synchronous calls        {sync_rate:9.0} req/s");
    println!("     asynchronous accepts     {accept_rate:9.0} req/s  ({:.2}x sync)", accept_rate / sync_rate);
    println!("     asynchronous handled     {handled_rate:9.0} req/s  (accept → done, per_instance 1 × 2 instances)");
    receiver.stop();
    s.stop().await;
    Ok(())
}

/// The raw queue: publish → handled, one at a time.
async fn raw_floor(q: &Arc<dyn Queue>, n: usize) -> Result<(f64, f64), Error> {
    let topic = unique("floor");
    let mut sub = q.subscribe(&topic, "floor").await?;
    let mut ms = Vec::new();
    for i in 0..n {
        let t0 = Instant::now();
        q.publish(&topic, Message::new(format!("k{}", i % 5), "x")).await?;
        let d = tokio::time::timeout(Duration::from_secs(30), sub.next()).await??;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        d.ack().await?;
    }
    Ok(summary(ms))
}

async fn topic_trigger(label: &str, queue: Arc<dyn Queue>, n: usize) -> Result<(), Error> {
    let (f50, f99) = raw_floor(&queue, n).await?;
    let s = stage(Arc::clone(&queue)).await?;
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0)), 200).await?;
    let trigger = TriggerInput {
        topic: Some("bench".into()),
        path: Some(format!("/relay?to={}", receiver.addr())),
        ..Default::default()
    };
    s.deploy("consumer", vec![trigger]).await?;
    let triggers = TopicTriggers::new(
        Arc::clone(&s.store),
        Arc::clone(&queue),
        Arc::new(s.gw.dispatcher()),
        TopicConfig { refresh: Duration::from_millis(200), ..TopicConfig::default() },
    );
    tokio::spawn(triggers.run(s.cancel.clone()));
    // The trigger's group must be bound before the first message (RabbitMQ refuses one nobody would get).
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.platform.publish_message("bench", "warm", b"warm".to_vec(), None).await.is_err() {
        if Instant::now() > deadline {
            return Err("the trigger never subscribed".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_received(&receiver, 1).await?;
    let mut ms = Vec::new();
    for i in 0..n {
        let seen = receiver.received().len();
        let t0 = Instant::now();
        s.platform.publish_message("bench", &format!("k{}", i % 5), b"x".to_vec(), None).await?;
        let at = until_received(&receiver, seen + 1).await?;
        ms.push(at.duration_since(t0).as_secs_f64() * 1e3);
    }
    let (p50, p99) = summary(ms);
    println!(
        "   {label:<9} trigger p50 {p50:8.3} ms  p99 {p99:8.3} ms | raw queue p50 {f50:8.3} ms  p99 {f99:8.3} ms | {:.1}x the floor at p50",
        p50 / f50
    );
    receiver.stop();
    s.stop().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let n = env("BENCH_N", 300);
    let burst_n = env("BENCH_BURST", 2000);
    invocations(n, burst_n).await?;

    println!("\n2. topic triggers, one message at a time ({n} each): publish → the function has done its work");
    topic_trigger("memory", Arc::new(pilotlight::core::memory::MemoryQueue::new()), n).await?;
    let cluster = MockCluster::new(3)?;
    let kafka = format!(
        "kafka://{}/?prefix={}.&create_topics=false&session.timeout.ms=6000&heartbeat.interval.ms=500",
        cluster.bootstrap_servers(),
        unique("bench")
    );
    topic_trigger("kafka", pilotlight::connect::queue(&kafka).await?, n).await?;
    let base = std::env::var("PILOTLIGHT_TEST_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    match pilotlight::connect::queue(&format!("{base}?prefix={}.", unique("bench"))).await {
        Ok(q) => topic_trigger("rabbitmq", q, n).await?,
        Err(e) => println!("   rabbitmq  skipped: {e} (bash scripts/deps.sh starts it)"),
    }
    Ok(())
}
