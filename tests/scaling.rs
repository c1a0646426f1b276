//! Warm pools and scaling end to end, each scenario under the process runtime
//! and under Docker: a function at zero answers its first request by resuming
//! a paused instance, or else by starting a created one; 100 concurrent requests at zero all succeed; bounded load
//! scales it up and idling brings it back to min; an update under load fails
//! no request; a full capacity budget is a clear error that creates nothing.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pilotlight::core::controller::AutoscalerConfig;
use pilotlight::core::memory::{MemoryQueue, MemoryStore};
use pilotlight::core::model::{Domain, Instance, InstanceId, InstanceState, LimitsInput, Phase, ScalingInput};
use pilotlight::core::testkit::fixtures::{DockerCleanup, hello_binary, hello_image_context};
use pilotlight::core::testkit::{eventually, http, unique};
use pilotlight::docker::{DockerRuntime, DockerRuntimeConfig, LABEL_PLATFORM, build_image_from_dir};
use pilotlight::gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::{FunctionName, FunctionSpec, FunctionSpecInput, Platform, PlatformError, Runtime};

mod common;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Process,
    Docker,
}

struct Env {
    kind: Kind,
    platform: Platform,
    gateway: Arc<Gateway>,
    runtime: Arc<dyn Runtime>,
    process: Option<Arc<ProcessRuntime>>,
    _dir: tempfile::TempDir,
    _cleanup: Option<DockerCleanup>,
}

impl Env {
    async fn new(kind: Kind, budget_mb: Option<u64>) -> Option<Env> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let id = unique("scale").replace('_', "-");
        let (runtime, process, cleanup): (Arc<dyn Runtime>, _, _) = match kind {
            Kind::Process => {
                let rt = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
                    platform_id: id,
                    kill_on_drop: true,
                    ..Default::default()
                }));
                (rt.clone(), Some(rt), None)
            }
            Kind::Docker => {
                let config = DockerRuntimeConfig {
                    platform_id: id.clone(),
                    network: "pilotlight-test".into(),
                    ..Default::default()
                };
                let rt = match DockerRuntime::connect(config).await {
                    Ok(rt) => rt,
                    Err(e) => {
                        assert!(std::env::var("CI").as_deref() != Ok("true"), "Docker is required under CI: {e}");
                        eprintln!("SKIPPED: {e}");
                        return None;
                    }
                };
                let context = hello_image_context();
                build_image_from_dir(rt.docker(), "pilotlight/hello:scale", context.path()).await.unwrap();
                (Arc::new(rt), None, Some(DockerCleanup { label: format!("{LABEL_PLATFORM}={id}") }))
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let mut gw = GatewayConfig::new(Domain::new("localhost").unwrap(), dir.path()).ephemeral();
        gw.tls = TlsSource::Disabled;
        let gateway = Arc::new(Gateway::start(gw).await.unwrap());
        let scaler = AutoscalerConfig {
            tick: Duration::from_millis(200),
            scale_down_window: Duration::from_secs(1),
            repeat_after: Duration::from_secs(1),
        };
        let mut builder = Platform::builder()
            .queue(Arc::new(MemoryQueue::new()))
            .store(Arc::new(MemoryStore::new()))
            .runtime(runtime.clone())
            .router(gateway.clone())
            .drain(Duration::from_millis(500))
            .autoscaler(gateway.clone(), scaler);
        if let Some(b) = budget_mb {
            builder = builder.memory_budget_mb(b);
        }
        let platform = builder.build().unwrap();
        gateway.set_activator(platform.activator());
        platform.start().await.unwrap();
        Some(Env { kind, platform, gateway, runtime, process, _dir: dir, _cleanup: cleanup })
    }

    fn spec(&self, name: &str, scaling: ScalingInput, memory_mb: i64) -> FunctionSpec {
        let mut input = match self.kind {
            Kind::Process => FunctionSpecInput::exec(name, hello_binary().to_str().unwrap(), &[], 8080),
            Kind::Docker => FunctionSpecInput::image(name, "pilotlight/hello:scale", 8080),
        };
        input.scaling = Some(scaling);
        input.limits = Some(LimitsInput { memory_mb: Some(memory_mb), ..Default::default() });
        input.validate().unwrap()
    }

    async fn instances(&self, name: &str) -> Vec<Instance> {
        self.runtime.list().await.unwrap().into_iter().filter(|i| i.function.as_str() == name).collect()
    }

    async fn count(&self, name: &str, state: InstanceState) -> usize {
        self.instances(name).await.iter().filter(|i| i.state == state).count()
    }

    async fn get(&self, name: &str, path: &str) -> Result<http::Response, String> {
        http::get(self.gateway.http_addr(), &format!("{name}.localhost"), path, Duration::from_secs(30)).await
    }

    /// Waits until the function runs `running` instances and keeps `paused` in its pool.
    async fn settle(&self, name: &str, running: usize, paused: usize) {
        let what = format!("`{name}` settles at {running} running + {paused} paused");
        let deadline = Instant::now() + WAIT;
        loop {
            let (r, p) =
                (self.count(name, InstanceState::Running).await, self.count(name, InstanceState::Paused).await);
            if (r, p) == (running, paused) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: still {r} running + {p} paused");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn shutdown(self) {
        self.platform.shutdown().await;
        self.gateway.shutdown().await;
        if let Some(p) = &self.process {
            p.stop_all().await.unwrap();
        }
    }
}

fn scaling(min: i64, max: i64, prewarm: i64, target: i64, idle_s: i64) -> ScalingInput {
    ScalingInput {
        min: Some(min),
        max: Some(max),
        prewarm: Some(prewarm),
        target_concurrency: Some(target),
        idle_timeout_s: Some(idle_s),
        precreate: None,
    }
}

/// Deploys `name` (min 0, pool of 1, idle after 1 s) and waits until it is at zero with its pool paused.
async fn at_zero(env: &Env, name: &str) -> Vec<InstanceId> {
    let n: FunctionName = name.parse().unwrap();
    env.platform.deploy(env.spec(name, scaling(0, 4, 1, 10, 1), 32)).await.unwrap();
    env.platform.wait_ready(&n, WAIT).await.unwrap();
    env.settle(name, 0, 1).await;
    // Only the paused ones: an instance of the deploy may still be on its way out (stopped in the background).
    env.instances(name).await.into_iter().filter(|i| i.state == InstanceState::Paused).map(|i| i.id).collect()
}

async fn first_request_resumes(kind: Kind) {
    let Some(env) = Env::new(kind, None).await else { return };
    let pool = at_zero(&env, "lazy").await;
    assert_eq!(pool.len(), 1);
    let r = env.get("lazy", "/").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "Hello from lazy!\n"));
    // The instance that answered is the one that was paused: resumed, not created.
    let running: Vec<InstanceId> =
        env.instances("lazy").await.into_iter().filter(|i| i.state == InstanceState::Running).map(|i| i.id).collect();
    // (A second one may be running for a moment: the pool's refill, before it is paused.)
    assert!(running.contains(&pool[0]), "the paused instance {:?} was resumed: running {running:?}", pool[0]);
    // The pool refills in the background, and idling takes it back to zero.
    env.settle("lazy", 0, 1).await;
    env.shutdown().await;
}

/// The middle tier: with no paused pool, the first request at zero starts a
/// container created beforehand. The process runtime has no created state, so
/// there it creates and starts one (the third tier), and keeps no created one.
async fn first_request_starts_a_created_one(kind: Kind) {
    let Some(env) = Env::new(kind, None).await else { return };
    let n: FunctionName = "standby".parse().unwrap();
    let mut policy = scaling(0, 4, 0, 10, 1);
    policy.precreate = Some(1);
    env.platform.deploy(env.spec("standby", policy, 32)).await.unwrap();
    env.platform.wait_ready(&n, WAIT).await.unwrap();
    let keeps = usize::from(kind == Kind::Docker);
    let deadline = Instant::now() + WAIT;
    let standby: Vec<InstanceId> = loop {
        let all = env.instances("standby").await;
        let running = all.iter().filter(|i| i.state == InstanceState::Running).count();
        let created: Vec<InstanceId> =
            all.iter().filter(|i| i.state == InstanceState::Created).map(|i| i.id.clone()).collect();
        if running == 0 && created.len() == keeps {
            break created;
        }
        assert!(Instant::now() < deadline, "standby at zero with {keeps} created: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let r = env.get("standby", "/").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "Hello from standby!\n"));
    let running: Vec<InstanceId> = env
        .instances("standby")
        .await
        .into_iter()
        .filter(|i| i.state == InstanceState::Running)
        .map(|i| i.id)
        .collect();
    if let Some(first) = standby.first() {
        assert!(running.contains(first), "the created instance {first:?} was started: running {running:?}");
    }
    // A new created instance replaces the one that started.
    let deadline = Instant::now() + WAIT;
    loop {
        let created: Vec<InstanceId> = env
            .instances("standby")
            .await
            .into_iter()
            .filter(|i| i.state == InstanceState::Created)
            .map(|i| i.id)
            .collect();
        if created.len() == keeps && standby.iter().all(|s| !created.contains(s)) {
            break;
        }
        assert!(Instant::now() < deadline, "a fresh created instance: {created:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.shutdown().await;
}

async fn hundred_at_zero(kind: Kind) {
    let Some(env) = Env::new(kind, None).await else { return };
    at_zero(&env, "burst").await;
    let env = Arc::new(env);
    let requests = (0..100).map(|_| {
        let env = Arc::clone(&env);
        tokio::spawn(async move { env.get("burst", "/").await })
    });
    let results = futures::future::join_all(requests).await;
    let ok = results.iter().filter(|r| matches!(r, Ok(Ok(resp)) if resp.status == 200)).count();
    assert_eq!(
        ok,
        100,
        "all 100 requests at zero get 200: {:?}",
        results.iter().find(|r| !matches!(r, Ok(Ok(x)) if x.status == 200))
    );
    let Ok(env) = Arc::try_unwrap(env) else { panic!("requests still hold the env") };
    env.shutdown().await;
}

async fn scales_up_then_back_to_min(kind: Kind) {
    let Some(env) = Env::new(kind, None).await else { return };
    let name: FunctionName = "busy".parse().unwrap();
    // One request per instance: 6 concurrent slow requests need 3 instances (max 3).
    env.platform.deploy(env.spec("busy", scaling(0, 3, 1, 2, 2), 32)).await.unwrap();
    env.platform.wait_ready(&name, WAIT).await.unwrap();
    let env = Arc::new(env);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let loops: Vec<_> = (0..6)
        .map(|_| {
            let (env, stop, ok, failed) = (env.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match env.get("busy", "/sleep?ms=200").await {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let peak = {
        let env = env.clone();
        let deadline = Instant::now() + Duration::from_secs(25);
        let mut peak = 0;
        while Instant::now() < deadline && peak < 3 {
            peak = peak.max(env.count("busy", InstanceState::Running).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    };
    stop.store(true, Ordering::Relaxed);
    futures::future::join_all(loops).await;
    assert_eq!(peak, 3, "under load it scaled up to max");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed while scaling ({} ok)",
        ok.load(Ordering::Relaxed)
    );
    // Idle for 2 s: back to min (0), the pool kept.
    env.settle("busy", 0, 1).await;
    let Ok(env) = Arc::try_unwrap(env) else { panic!("load loops still hold the env") };
    env.shutdown().await;
}

/// A request longer than the drain (500 ms here) on an old instance is not
/// cut by an update: the old instance stops once the edge has no request on it.
async fn update_lets_a_long_request_finish(kind: Kind) {
    let Some(env) = Env::new(kind, None).await else { return };
    let name: FunctionName = "patient".parse().unwrap();
    env.platform.deploy(env.spec("patient", scaling(1, 2, 0, 10, 60), 32)).await.unwrap();
    env.platform.wait_ready(&name, WAIT).await.unwrap();
    let old: Vec<InstanceId> = env.instances("patient").await.into_iter().map(|i| i.id).collect();
    let env = Arc::new(env);
    let e = env.clone();
    let slow = tokio::spawn(async move { e.get("patient", "/sleep?ms=3000").await });
    let e = env.clone();
    let n = name.clone();
    eventually(WAIT, "the long request is in flight", || {
        let (e, n) = (e.clone(), n.clone());
        async move { e.gateway.in_flight(&n) == 1 }
    })
    .await;
    drop(e);
    let began = Instant::now();
    let mut input: FunctionSpecInput = env.spec("patient", scaling(1, 2, 0, 10, 60), 32).into();
    input.env.insert("GENERATION".into(), "2".into());
    let receipt = env.platform.deploy(input.validate().unwrap()).await.unwrap();
    let ready = env.platform.wait_ready(&name, WAIT).await.unwrap();
    assert_eq!(ready.generation, receipt.generation);
    let r = slow.await.unwrap().expect("the long request on the old instance finished");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(began.elapsed() > Duration::from_millis(1500), "the update took long enough to have cut the request");
    let e = env.clone();
    eventually(WAIT, "the old instance is gone once idle", || {
        let (e, old) = (e.clone(), old.clone());
        async move { e.instances("patient").await.iter().all(|i| !old.contains(&i.id)) }
    })
    .await;
    drop(e);
    let Ok(env) = Arc::try_unwrap(env) else { panic!("the environment is still shared") };
    env.shutdown().await;
}

async fn update_under_load(kind: Kind) {
    let Some(env) = Env::new(kind, None).await else { return };
    let name: FunctionName = "live".parse().unwrap();
    let v1 = env.spec("live", scaling(1, 2, 1, 10, 60), 32);
    env.platform.deploy(v1).await.unwrap();
    env.platform.wait_ready(&name, WAIT).await.unwrap();
    let env = Arc::new(env);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (env, stop, ok, failed) = (env.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match env.get("live", "/sleep?ms=20").await {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("failed during the update: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut input: FunctionSpecInput = env.spec("live", scaling(1, 2, 1, 10, 60), 32).into();
    input.env.insert("GENERATION".into(), "2".into());
    let receipt = env.platform.deploy(input.validate().unwrap()).await.unwrap();
    let ready = env.platform.wait_ready(&name, WAIT).await.unwrap();
    assert_eq!(ready.generation, receipt.generation);
    // Old instances drain and stop; keep the load on through that.
    let gen2 = receipt.generation;
    let e = env.clone();
    eventually(WAIT, "only generation 2 is left", || {
        let e = e.clone();
        async move { e.instances("live").await.iter().all(|i| i.generation == gen2) }
    })
    .await;
    drop(e);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    futures::future::join_all(loops).await;
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 20, "the load ran ({ok} requests)");
    assert_eq!(failed, 0, "an update under load fails no request ({ok} succeeded)");
    let Ok(env) = Arc::try_unwrap(env) else { panic!("load loops still hold the env") };
    env.shutdown().await;
}

async fn capacity_guard(kind: Kind) {
    // 100 MiB: `first` takes 2 x 32 (running + pool); `second` would need 2 x 32 more.
    let Some(env) = Env::new(kind, Some(100)).await else { return };
    let first: FunctionName = "first".parse().unwrap();
    env.platform.deploy(env.spec("first", scaling(1, 2, 1, 10, 60), 32)).await.unwrap();
    env.platform.wait_ready(&first, WAIT).await.unwrap();
    env.settle("first", 1, 1).await;
    let second: FunctionName = "second".parse().unwrap();
    env.platform.deploy(env.spec("second", scaling(1, 2, 1, 10, 60), 64)).await.unwrap();
    let err = env.platform.wait_ready(&second, WAIT).await.unwrap_err();
    let PlatformError::Failed { message, .. } = &err else { panic!("{err}") };
    assert!(message.contains("capacity") && message.contains("100 MiB memory budget"), "{message}");
    let record = env.platform.get(&second).await.unwrap().unwrap();
    assert_eq!(record.status.phase, Phase::Failed);
    assert!(record.status.permanent && record.status.will_retry && record.status.next_retry_ms.is_some());
    assert!(env.instances("second").await.is_empty(), "nothing of `second` was created");
    // `first` is untouched and still answers.
    assert_eq!(env.get("first", "/").await.unwrap().status, 200);
    env.settle("first", 1, 1).await;
    env.shutdown().await;
}

both!(
    first_request_resumes,
    first_request_starts_a_created_one,
    hundred_at_zero,
    scales_up_then_back_to_min,
    update_under_load,
    update_lets_a_long_request_finish,
    capacity_guard
);
