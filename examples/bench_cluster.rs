//! Several nodes, side by side in one run, on this machine: three etcd
//! members, RabbitMQ, and three pilotlight nodes as child processes (the
//! process runtime).
//!
//! ```sh
//! bash scripts/bench.sh cluster
//! ```
//!
//! 1. The Store: compare-and-set writes per second on the etcd cluster
//!    against redb, one writer and 16 at once.
//! 2. The cross-node hop: requests (wrk, 1 and 32 connections) to one hello
//!    instance through its owner's edge (local) and through another node's
//!    edge (forwarded once); the hop's added p50 and p99.
//! 3. Failover: the owner of a function is killed (`kill -9` with its
//!    instances) until the first 200 through another edge, then restarted
//!    and settled; p50 and max over `BENCH_KILLS` (default 10).
//! 4. The control plane's memory: each node's RSS idle, and with 1,000
//!    functions spread over the three (their program does not exist, so no
//!    instance runs: the figure is the control plane's own).
//!
//! `BENCH_SECONDS` (per wrk run, default 5), `BENCH_TTL_MS` (the nodes'
//! registration TTL, default 3000).
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/wrk.rs"]
mod wrk;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{Node, NodeSetup, owners, percentile, placement, until};
use pilotlight::core::Store;
use pilotlight::core::model::{FunctionRecord, FunctionSpecInput};
use pilotlight::etcd::local::{clients, start_cluster};
use pilotlight::etcd::{EtcdConfig, EtcdStore};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    if let Ok(path) = std::env::var(cluster::NODE_SETTINGS) {
        cluster::run_node(Path::new(&path));
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(bench())
}

async fn bench() -> Result<(), Error> {
    wrk::need("wrk")?;
    wrk::need(pilotlight::etcd::local::ETCD)?;
    let seconds = wrk::env_u64("BENCH_SECONDS", 5);
    let kills = usize::try_from(wrk::env_u64("BENCH_KILLS", 10))?;
    let ttl = Duration::from_millis(wrk::env_u64("BENCH_TTL_MS", 3000));
    let dir = tempfile::tempdir()?;
    let members = start_cluster(dir.path(), 3)?;
    pilotlight::etcd::local::ready(&members, Duration::from_secs(30)).await?;
    let prefix = format!("/bench-{}", std::process::id());

    // 1. The Store.
    let etcd: Arc<dyn Store> =
        Arc::new(connect(&format!("etcd://{}/?prefix={prefix}-store", clients(&members))).await?);
    let redb: Arc<dyn Store> = Arc::new(pilotlight::redb::RedbStore::open(dir.path().join("bench.redb"))?);
    println!("== Store: compare-and-set writes per second (etcd: 3 members on loopback; redb: one file)");
    for writers in [1usize, 16] {
        let e = cas_rate(Arc::clone(&etcd), writers, 2000).await;
        let r = cas_rate(Arc::clone(&redb), writers, 2000).await;
        println!("  {writers:>2} writer(s): etcd {e:>8.0}/s   redb {r:>8.0}/s   etcd/redb {:.2}x", e / r);
    }

    // The nodes.
    let queue =
        std::env::var("PILOTLIGHT_BENCH_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let queue = format!("{queue}?prefix=bench{}.", std::process::id());
    let store = format!("etcd://{}/?prefix={prefix}&timeout_ms=2000", clients(&members));
    let setup = NodeSetup {
        store: &store,
        queue: &queue,
        ttl,
        command: (std::env::current_exe()?, Vec::new()),
        log_filter: "warn",
        runtime: pilotlight::server::RuntimeKind::Process,
    };
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"].iter().map(|id| Node::new(dir.path(), id, "", &setup)).collect();
    let c = nodes[0].client();
    until("every node sees three", Duration::from_secs(30), || async {
        nodes[0].client().nodes().await.is_ok_and(|l| l.nodes.len() == 3)
    })
    .await;
    let idle: Vec<f64> = nodes.iter().map(Node::rss_mib).collect();

    // 2. The hop.
    let hello = pilotlight::core::testkit::fixtures::hello_binary();
    let spec = |name: &str| {
        json!({"name": name, "exec": {"program": hello.to_str().unwrap()}, "port": 8080,
               "env": {"LOG_REQUESTS": "0"},
               "scaling": {"min": 1, "max": 1, "prewarm": 0, "target_concurrency": 1000}})
    };
    c.deploy(&spec("hop")).await?;
    until("hop answers through every edge", Duration::from_secs(60), || async {
        for n in &nodes {
            if n.get("hop").await != Ok(200) {
                return false;
            }
        }
        true
    })
    .await;
    let owner = owners(&nodes[0]).await["hop"].clone();
    let local = nodes.iter().find(|n| n.id == owner).unwrap();
    let remote = nodes.iter().find(|n| n.id != owner).unwrap();
    println!("\n== The cross-node hop: hello on {owner}, wrk {seconds} s per run, medians of 3 rounds");
    println!(
        "  {:>5}  {:>26}  {:>26}  {:>18}",
        "conns", "owner's edge: req/s p50 p99", "other edge: req/s p50 p99", "hop adds p50 / p99"
    );
    for conns in [1u32, 32] {
        let (mut l, mut r) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            l.push(wrk::wrk(&format!("127.0.0.1:{}", local.http), "hop.localhost", conns, seconds).await?);
            r.push(wrk::wrk(&format!("127.0.0.1:{}", remote.http), "hop.localhost", conns, seconds).await?);
        }
        let (l, r) = (wrk::median_sample(&l), wrk::median_sample(&r));
        println!(
            "  {conns:>5}  {:>8.0} {:>7.0}µs {:>7.0}µs  {:>8.0} {:>7.0}µs {:>7.0}µs  {:>7.0}µs / {:>6.0}µs",
            l.rps,
            l.p50_us,
            l.p99_us,
            r.rps,
            r.p50_us,
            r.p99_us,
            r.p50_us - l.p50_us,
            r.p99_us - l.p99_us
        );
    }

    // 3. Failover.
    c.deploy(&spec("probe")).await?;
    until("probe is ready", Duration::from_secs(60), || async { placement(&nodes).contains_key("probe") }).await;
    let mut times = Vec::new();
    for round in 0..kills {
        let owner = owners(&nodes[0]).await["probe"].clone();
        let victim = nodes.iter().position(|n| n.id == owner).unwrap();
        let other = (victim + 1) % nodes.len();
        nodes[victim].kill9();
        let killed = Instant::now();
        while nodes[other].get("probe").await != Ok(200) {
            assert!(killed.elapsed() < Duration::from_secs(60), "probe did not come back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        times.push(killed.elapsed());
        nodes[victim].start();
        let asked = &nodes[other];
        until("the node is back and probe runs on its owner only", Duration::from_secs(60), || async {
            let seen = asked.client().nodes().await.is_ok_and(|l| l.nodes.len() == 3);
            let owner = owners(asked).await.get("probe").cloned().unwrap_or_default();
            seen && placement(&nodes).get("probe").is_some_and(|on| on.len() == 1 && on.contains(&owner))
        })
        .await;
        eprintln!("  kill {}: {:.2} s", round + 1, times[round].as_secs_f64());
    }
    times.sort();
    println!(
        "\n== Failover (TTL {ttl:?}): owner killed until the first 200 through another edge, {kills} kills: p50 {:.2} s, max {:.2} s",
        percentile(&times, 0.5).as_secs_f64(),
        percentile(&times, 1.0).as_secs_f64()
    );

    // 4. Memory with 1,000 functions.
    let began = Instant::now();
    for i in 0..1000 {
        let spec = json!({"name": format!("m{i:04}"), "exec": {"program": "/nonexistent/pilotlight-bench"}, "port": 8080,
                          "scaling": {"min": 0, "prewarm": 0}});
        c.deploy(&spec).await?;
    }
    let deployed = began.elapsed();
    // Two passes (every 2 s) after the last deploy: every node has seen every function.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let owned = owners(&nodes[0]).await;
    println!("\n== Control plane memory (RSS), 1,000 functions deployed in {:.1} s", deployed.as_secs_f64());
    for (n, before) in nodes.iter().zip(idle) {
        let count = owned.values().filter(|o| **o == n.id).count();
        println!("  {}: idle {before:.1} MiB, with 1,000 functions {:.1} MiB (owns {count})", n.id, n.rss_mib());
    }
    drop(nodes);
    drop(members);
    Ok(())
}

async fn connect(url: &str) -> Result<EtcdStore, Error> {
    let config = EtcdConfig::from_url(url)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match EtcdStore::connect(&config).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `n` records created and each updated once by compare-and-set, over
/// `writers` tasks; writes per second.
async fn cas_rate(store: Arc<dyn Store>, writers: usize, n: usize) -> f64 {
    let run = format!("w{writers}");
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = Arc::clone(&store);
        let run = run.clone();
        tasks.spawn(async move {
            for i in (w..n).step_by(writers) {
                let spec = FunctionSpecInput::exec(&format!("{run}-{i}"), "/bin/true", &[], 8080).validate().unwrap();
                let revision = store.compare_and_set(None, FunctionRecord::new(spec.clone(), 1)).await.unwrap();
                store.compare_and_set(Some(revision), FunctionRecord::new(spec, 2)).await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    #[allow(clippy::cast_precision_loss)]
    let writes = (2 * n) as f64;
    writes / began.elapsed().as_secs_f64()
}
