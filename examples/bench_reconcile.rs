//! Benchmark of the level-triggered control plane, side by side in one run:
//!
//! 1. the cost of one periodic pass over a converged platform, at 100 and
//!    1,000 functions (memory runtime, redb store) and on Docker: the
//!    control plane's CPU time per pass, and the runtime (engine) calls and
//!    Store writes it makes;
//! 2. drift: a container killed behind the platform's back until the
//!    function answers again, with the engine's events on, and with them cut
//!    (only the pass finds it);
//! 3. 32 deploys, 16 at a time, until each answers 200 (waiting for `ready`
//!    as the CLI does, then calling through the gateway), against the raw
//!    engine's create+start+first-200 at the same concurrency, with
//!    pilotlight's Docker runtime alone (no control plane) in between.
//!
//! ```sh
//! bash scripts/bench.sh reconcile
//! ```
//! `BENCH_FUNCTIONS` (default `100,1000`) sets the sizes of part 1 on the
//! memory runtime; `BENCH_DOCKER_FUNCTIONS` (default 100) the Docker size;
//! `BENCH_RUNS` (default 5) the samples of part 2.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use pilotlight::core::memory::{MemoryQueue, MemoryRuntime};
use pilotlight::core::model::{
    Domain, FunctionName, FunctionRecord, FunctionSpec, FunctionSpecInput, Instance, InstanceId, ScalingInput,
};
use pilotlight::core::ports::{
    Doc, DocKey, DocKind, DocQuery, InstanceStats, LogOptions, LogStream, RuntimeError, RuntimeEvents, StoreError,
};
use pilotlight::docker::{DockerRuntime, DockerRuntimeConfig};
use pilotlight::gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight::redb::RedbStore;
use pilotlight::{Platform, Runtime, Store};

#[path = "common/docker.rs"]
mod common;
use common::{Error, IMAGE, first_200, remove};

const RAW_LABEL: &str = "io.pilotlight.bench-reconcile";

/// A runtime that counts the calls made to it, and can go deaf (its events cut).
struct Counted {
    inner: Arc<dyn Runtime>,
    calls: AtomicU64,
    deaf: Arc<AtomicBool>,
    /// Time spent in `list`, `prepare` and `start`, in µs, and how many of each.
    spent: [(AtomicU64, AtomicU64); 3],
}

const LIST: usize = 0;
const PREPARE: usize = 1;
const START: usize = 2;

impl Counted {
    fn new(inner: Arc<dyn Runtime>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicU64::new(0),
            deaf: Arc::new(AtomicBool::new(false)),
            spent: Default::default(),
        })
    }
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
    fn timed(&self, which: usize, began: Instant) {
        let (us, n) = &self.spent[which];
        us.fetch_add(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        n.fetch_add(1, Ordering::Relaxed);
    }
    /// Mean ms and count of each timed call since the last `reset`.
    fn report(&self) -> String {
        let f = |i: usize, name: &str| {
            let (us, n) = (self.spent[i].0.swap(0, Ordering::Relaxed), self.spent[i].1.swap(0, Ordering::Relaxed));
            format!("{name} {n} x {:.1} ms", us as f64 / 1e3 / n.max(1) as f64)
        };
        format!("{}, {}, {}", f(LIST, "list"), f(PREPARE, "prepare"), f(START, "start"))
    }
}

#[async_trait]
impl Runtime for Counted {
    async fn prepare(&self, spec: &FunctionSpec) -> Result<(), RuntimeError> {
        self.count();
        let began = Instant::now();
        let r = self.inner.prepare(spec).await;
        self.timed(PREPARE, began);
        r
    }
    async fn start(&self, spec: &FunctionSpec, generation: u64) -> Result<Instance, RuntimeError> {
        self.count();
        let began = Instant::now();
        let r = self.inner.start(spec, generation).await;
        self.timed(START, began);
        r
    }
    async fn stop(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        self.count();
        self.inner.stop(id).await
    }
    async fn pause(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        self.count();
        self.inner.pause(id).await
    }
    async fn resume(&self, id: &InstanceId) -> Result<Instance, RuntimeError> {
        self.count();
        self.inner.resume(id).await
    }
    async fn create(&self, spec: &FunctionSpec, generation: u64) -> Result<Instance, RuntimeError> {
        self.count();
        self.inner.create(spec, generation).await
    }
    async fn start_created(&self, spec: &FunctionSpec, id: &InstanceId) -> Result<Instance, RuntimeError> {
        self.count();
        self.inner.start_created(spec, id).await
    }
    async fn list(&self) -> Result<Vec<Instance>, RuntimeError> {
        self.count();
        let began = Instant::now();
        let r = self.inner.list().await;
        self.timed(LIST, began);
        r
    }
    async fn list_function(&self, function: &FunctionName) -> Result<Vec<Instance>, RuntimeError> {
        self.count();
        let began = Instant::now();
        let r = self.inner.list_function(function).await;
        self.timed(LIST, began);
        r
    }
    async fn logs(&self, id: &InstanceId, options: LogOptions) -> Result<LogStream, RuntimeError> {
        self.inner.logs(id, options).await
    }
    async fn stats(&self, id: &InstanceId) -> Result<InstanceStats, RuntimeError> {
        self.inner.stats(id).await
    }
    /// While deaf, every event is dropped: the stream stays open and says nothing.
    fn events(&self) -> RuntimeEvents {
        let deaf = Arc::clone(&self.deaf);
        self.inner.events().filter(move |_| futures::future::ready(!deaf.load(Ordering::SeqCst))).boxed()
    }
}

/// A Store that counts its writes.
struct CountedStore {
    inner: Arc<dyn Store>,
    writes: AtomicU64,
}

#[async_trait]
impl Store for CountedStore {
    async fn get(&self, name: &FunctionName) -> Result<Option<FunctionRecord>, StoreError> {
        self.inner.get(name).await
    }
    async fn list(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        self.inner.list().await
    }
    async fn compare_and_set(&self, expected: Option<u64>, record: FunctionRecord) -> Result<u64, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.compare_and_set(expected, record).await
    }
    async fn delete(&self, name: &FunctionName, expected: u64) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(name, expected).await
    }
    async fn doc_get(&self, key: &DocKey) -> Result<Option<Doc>, StoreError> {
        self.inner.doc_get(key).await
    }
    async fn doc_list(&self, kind: &DocKind, query: &DocQuery) -> Result<Vec<Doc>, StoreError> {
        self.inner.doc_list(kind, query).await
    }
    async fn doc_put(&self, key: &DocKey, expected: Option<u64>, value: Vec<u8>) -> Result<u64, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.doc_put(key, expected, value).await
    }
    async fn doc_delete(&self, key: &DocKey, expected: u64) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.doc_delete(key, expected).await
    }
}

/// This process's CPU time (user + system).
fn cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

fn spec(name: &str, image: Option<&str>) -> Result<FunctionSpec, Error> {
    let mut input = match image {
        Some(i) => FunctionSpecInput::image(name, i, 8080),
        None => FunctionSpecInput::image(name, "pilotlight/hello:bench", 8080),
    };
    input.env.insert("LOG_REQUESTS".into(), "0".into());
    // One instance and no pool: each function is one container or listener.
    input.scaling = Some(ScalingInput { min: Some(1), prewarm: Some(0), ..Default::default() });
    Ok(input.validate()?)
}

struct Bench {
    platform: Platform,
    runtime: Arc<Counted>,
    store: Arc<CountedStore>,
    gateway: Arc<Gateway>,
    _dir: tempfile::TempDir,
}

async fn platform(runtime: Arc<dyn Runtime>, period: Duration) -> Result<Bench, Error> {
    let dir = tempfile::tempdir()?;
    let runtime = Counted::new(runtime);
    let store = Arc::new(CountedStore {
        inner: Arc::new(RedbStore::open(dir.path().join("store.redb"))?),
        writes: AtomicU64::new(0),
    });
    let mut config = GatewayConfig::new(Domain::new("localhost")?, dir.path()).ephemeral();
    config.tls = TlsSource::Disabled;
    let gateway = Arc::new(Gateway::start(config).await?);
    let platform = Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(store.clone())
        .runtime(runtime.clone())
        .router(gateway.clone())
        .resync_period(period)
        .build()?;
    gateway.set_activator(platform.activator());
    platform.start().await?;
    Ok(Bench { platform, runtime, store, gateway, _dir: dir })
}

/// Deploys `n` functions, 16 at a time, and waits until each is ready.
async fn deploy_many(p: &Platform, n: usize, prefix: &str, image: Option<&str>) -> Result<(), Error> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let results: Vec<Result<(), Error>> = futures::stream::iter(names)
        .map(|name| {
            let p = p.clone();
            async move {
                p.deploy(spec(&name, image)?).await?;
                p.wait_ready(&name.parse()?, Duration::from_secs(300)).await?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(())
}

/// Watches the platform's own periodic passes for `window`: CPU, runtime calls
/// and Store writes per pass (each pass also refreshes every function's
/// observation once, as it does every period).
async fn pass_cost(b: &Bench, label: &str, window: Duration) -> Result<(), Error> {
    let worker = b.platform.runtime_worker().ok_or("no runtime worker")?;
    // Let the passes that follow the deploys settle first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (p0, c0, w0, t0) = (worker.passes(), b.runtime.calls(), b.store.writes.load(Ordering::Relaxed), cpu());
    tokio::time::sleep(window).await;
    let (p1, c1, w1, t1) = (worker.passes(), b.runtime.calls(), b.store.writes.load(Ordering::Relaxed), cpu());
    let passes = (p1 - p0).max(1);
    println!(
        "  {label:<40} {passes:>3} passes: CPU {:>7.2} ms/pass, runtime calls {:>5.1}/pass, store writes {:>6.1}/pass",
        (t1 - t0).as_secs_f64() * 1e3 / passes as f64,
        (c1 - c0) as f64 / passes as f64,
        (w1 - w0) as f64 / passes as f64,
    );
    Ok(())
}

/// Kills a function's container behind the platform's back and times until it answers again.
async fn drift(b: &Bench, docker: &bollard::Docker, name: &str, runs: usize) -> Result<Vec<f64>, Error> {
    let edge = b.gateway.http_addr();
    let fname: FunctionName = name.parse()?;
    let mut took = Vec::new();
    for _ in 0..runs {
        b.platform.wait_ready(&fname, Duration::from_secs(120)).await?;
        let victim = b.runtime.list().await?.into_iter().find(|i| i.function == fname).ok_or("no instance")?;
        let began = Instant::now();
        docker.kill_container(victim.id.as_str(), None::<bollard::query_parameters::KillContainerOptions>).await?;
        // Poll the API side (the store), not the edge: a request would nudge a reconcile itself.
        loop {
            let r = b.platform.get(&fname).await?.ok_or("gone")?;
            if r.status.phase == pilotlight::core::model::Phase::Ready
                && r.status.endpoints.len() == 1
                && r.status.endpoints[0] != victim.endpoint
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        first_200(edge, &format!("{name}.localhost")).await?;
        took.push(began.elapsed().as_secs_f64() * 1e3);
    }
    Ok(took)
}

async fn raw_start(docker: &bollard::Docker, n: u64) -> Result<String, Error> {
    let id = common::raw_container(docker, RAW_LABEL, n).await?;
    docker.start_container(&id, None).await?;
    let port = common::published_port(docker, &id).await?;
    first_200(SocketAddr::from(([127, 0, 0, 1], port)), "raw").await?;
    Ok(id)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let sizes: Vec<usize> = std::env::var("BENCH_FUNCTIONS")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let docker_n: usize = std::env::var("BENCH_DOCKER_FUNCTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let period = Duration::from_secs(2);

    println!("pilotlight reconcile benchmark (period {} s for the measurement, redb store)", period.as_secs());
    println!("\n1. one periodic pass over a converged platform");
    for &n in &sizes {
        let b = platform(Arc::new(MemoryRuntime::new()), period).await?;
        deploy_many(&b.platform, n, "m", None).await?;
        pass_cost(&b, &format!("memory runtime, {n} functions"), Duration::from_secs(12)).await?;
        b.platform.shutdown().await;
        b.gateway.shutdown().await;
    }

    let id = format!("benchrec{}", std::process::id());
    let stage_cleanup = (
        pilotlight::core::testkit::fixtures::DockerCleanup {
            label: format!("{}={id}", pilotlight::docker::LABEL_PLATFORM),
        },
        pilotlight::core::testkit::fixtures::DockerCleanup { label: RAW_LABEL.into() },
    );
    let docker_runtime = Arc::new(
        DockerRuntime::connect(DockerRuntimeConfig {
            platform_id: id.clone(),
            network: common::NETWORK.into(),
            ..Default::default()
        })
        .await?,
    );
    let docker = docker_runtime.docker().clone();
    let context = pilotlight::core::testkit::fixtures::hello_image_context();
    pilotlight::docker::build_image_from_dir(&docker, IMAGE, context.path()).await?;
    let version = docker.version().await?;
    println!(
        "  (Docker engine {} API {})",
        version.version.unwrap_or_default(),
        version.api_version.unwrap_or_default()
    );
    let b = platform(docker_runtime.clone(), period).await?;
    let began = Instant::now();
    deploy_many(&b.platform, docker_n, "d", Some(IMAGE)).await?;
    println!("  ({docker_n} Docker functions deployed in {:.1} s)", began.elapsed().as_secs_f64());
    pass_cost(&b, &format!("Docker, {docker_n} functions"), Duration::from_secs(12)).await?;

    println!("\n2. drift: a container killed behind the platform's back, until it answers again ({runs} runs)");
    let on = drift(&b, &docker, "d0", runs).await?;
    println!(
        "  {:<40} p50 {:>8.1} ms   max {:>8.1} ms",
        "engine events on (a die event)",
        common::pct(&on, 0.5),
        common::pct(&on, 1.0)
    );
    b.runtime.deaf.store(true, Ordering::SeqCst);
    let cut = drift(&b, &docker, "d1", runs).await?;
    println!(
        "  {:<40} p50 {:>8.1} ms   max {:>8.1} ms   (period {} s: found by the pass)",
        "engine events cut",
        common::pct(&cut, 0.5),
        common::pct(&cut, 1.0),
        period.as_secs()
    );
    b.runtime.deaf.store(false, Ordering::SeqCst);
    for n in 0..docker_n {
        b.platform.delete(&format!("d{n}").parse()?).await?;
    }
    for n in 0..docker_n {
        b.platform.wait_deleted(&format!("d{n}").parse()?, Duration::from_secs(300)).await?;
    }

    // The runtime alone runs under a platform id of its own: the platform's pass would
    // rightly stop containers of its own label that no record wants.
    let alone = Arc::new(
        DockerRuntime::connect(DockerRuntimeConfig {
            platform_id: format!("{id}-alone"),
            network: common::NETWORK.into(),
            ..Default::default()
        })
        .await?,
    );
    let _alone_cleanup = pilotlight::core::testkit::fixtures::DockerCleanup {
        label: format!("{}={id}-alone", pilotlight::docker::LABEL_PLATFORM),
    };
    println!("\n3. 32 deploys, 16 at a time, until each answers 200");
    let mut ratios = Vec::new();
    for round in 0..3u64 {
        let t = Instant::now();
        let ids: Vec<String> = futures::stream::iter(0..32u64)
            .map(|i| raw_start(&docker, 200_000 + round * 100 + i))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let raw_rate = 32.0 / t.elapsed().as_secs_f64();
        for id in &ids {
            remove(&docker, id).await;
        }
        // The runtime alone, no control plane: the same container settings as a deploy.
        let t = Instant::now();
        let started: Vec<Instance> = futures::stream::iter(0..32u64)
            .map(|i| {
                let rt = alone.clone();
                async move { rt.start(&spec(&format!("s{round}x{i}"), Some(IMAGE))?, 1).await.map_err(Error::from) }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let runtime_rate = 32.0 / t.elapsed().as_secs_f64();
        for i in &started {
            alone.stop(&i.id).await?;
        }
        let names: Vec<String> = (0..32).map(|i| format!("r{round}x{i}")).collect();
        let edge = b.gateway.http_addr();
        b.runtime.report();
        let t = Instant::now();
        let results: Vec<Result<(), Error>> = futures::stream::iter(names.iter().cloned())
            .map(|name| {
                let p = b.platform.clone();
                async move {
                    // As the CLI does: wait for `ready` (the status stream), then call. Polling
                    // the in-process edge every millisecond from 16 waiters would load the
                    // very cores the engine starts containers on.
                    p.deploy(spec(&name, Some(IMAGE))?).await?;
                    p.wait_ready(&name.parse()?, Duration::from_secs(120)).await?;
                    first_200(edge, &format!("{name}.localhost")).await?;
                    Ok(())
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        let ours_rate = 32.0 / t.elapsed().as_secs_f64();
        ratios.push(ours_rate / raw_rate);
        let spent = b.runtime.report();
        println!(
            "  round {round}: raw engine {raw_rate:>5.2}/s, pilotlight's Docker runtime alone {runtime_rate:>5.2}/s ({:.2}x), pilotlight deploys {ours_rate:>5.2}/s ({:.2}x)",
            runtime_rate / raw_rate,
            ours_rate / raw_rate
        );
        println!("           the deploys' runtime calls: {spent}");
        for name in &names {
            b.platform.delete(&name.parse()?).await?;
        }
        for name in &names {
            b.platform.wait_deleted(&name.parse()?, Duration::from_secs(300)).await?;
        }
    }
    println!("  median ratio pilotlight/raw: {:.2}x (target >= 0.9x)", common::pct(&ratios, 0.5));
    b.platform.shutdown().await;
    b.gateway.shutdown().await;
    drop(stage_cleanup);
    Ok(())
}
