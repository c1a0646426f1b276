//! The controller's behaviour, with mockall mocks where the order or count of
//! calls is the point, and the in-memory backends elsewhere.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use mockall::Sequence;
use pilotlight_core::controller::{Attempt, EventHandler, PublicUrls, RouterWorker, RuntimeWorker, StatusWorker};
use pilotlight_core::events::{Event, topics};
use pilotlight_core::memory::{MemoryQueue, MemoryQueueConfig, MemoryRouter, MemoryRuntime, MemoryStore};
use pilotlight_core::model::{
    Domain, Endpoint, FunctionName, FunctionRecord, FunctionSpec, FunctionSpecInput, FunctionStatus, Instance,
    InstanceId, InstanceState, Phase, ScalingInput,
};
use pilotlight_core::ports::{
    Doc, DocKey, DocKind, DocQuery, Message, MockQueue, MockRouter, MockRuntime, Queue, QueueError, Router, Runtime,
    Store, Subscription,
};
use pilotlight_core::testkit::{eventually, within};
use pilotlight_core::{Platform, PlatformError};

const WAIT: Duration = Duration::from_secs(10);

fn fast_queue(max_attempts: u32) -> MemoryQueue {
    MemoryQueue::with_config(MemoryQueueConfig {
        max_attempts,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    })
}

/// A spec without a pool, so each test's runtime calls are only the ones it is about.
fn spec(name: &str) -> FunctionSpec {
    let mut input = FunctionSpecInput::image(name, "pilotlight/hello:latest", 8080);
    input.scaling = Some(ScalingInput { prewarm: Some(0), ..Default::default() });
    input.validate().unwrap()
}

fn name(n: &str) -> FunctionName {
    FunctionName::new(n).unwrap()
}

fn instance(spec: &FunctionSpec, generation: u64, port: u16) -> Instance {
    Instance {
        id: InstanceId::new(format!("{}-{generation}-{port}", spec.name())),
        function: spec.name().clone(),
        generation,
        endpoint: Endpoint::new(([127, 0, 0, 1], port).into()),
        state: InstanceState::Running,
    }
}

fn platform(
    queue: Arc<dyn Queue>,
    runtime: Arc<dyn Runtime>,
    router: Arc<dyn Router>,
    store: Arc<dyn Store>,
) -> Platform {
    Platform::builder()
        .queue(queue)
        .runtime(runtime)
        .router(router)
        .store(store)
        .resync_period(PERIOD)
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .drain(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// The periodic pass of these tests: short, so drift heals quickly.
const PERIOD: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_deploy_calls_runtime_then_router_in_that_order() {
    let mut seq = Sequence::new();
    let started = Arc::new(std::sync::Mutex::new(Vec::<Instance>::new()));
    let mut runtime = MockRuntime::new();
    let listed = Arc::clone(&started);
    runtime.expect_list().returning(move || Ok(listed.lock().unwrap().clone()));
    runtime.expect_prepare().returning(|_| Ok(()));
    runtime.expect_events().returning(|| futures::stream::pending().boxed());
    let mut router = MockRouter::new();
    // Resync applies the (empty) table first; that is not part of the deploy.
    router.expect_apply().withf(|t| t.is_empty()).times(1).returning(|_| Ok(()));
    let record = Arc::clone(&started);
    runtime.expect_start().times(1).in_sequence(&mut seq).returning(move |spec, generation| {
        let i = instance(spec, generation, 41000);
        record.lock().unwrap().push(i.clone());
        Ok(i)
    });
    router
        .expect_apply()
        .withf(|t| t.get(&FunctionName::new("hello").unwrap()).is_some_and(|r| r.endpoints.len() == 1))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    // No periodic pass or re-apply during this test: the calls are the deploy's alone.
    let p = Platform::builder()
        .queue(Arc::new(fast_queue(3)))
        .runtime(Arc::new(runtime))
        .router(Arc::new(router))
        .store(Arc::new(MemoryStore::new()))
        .resync_period(Duration::from_secs(3600))
        .build()
        .unwrap();
    p.start().await.unwrap();
    let receipt = p.deploy(spec("hello")).await.unwrap();
    assert_eq!((receipt.generation, receipt.phase), (1, Phase::Pending));
    assert_eq!(receipt.url, "http://hello.localhost/");
    let ready = p.wait_ready(&name("hello"), WAIT).await.unwrap();
    assert_eq!(ready.status.endpoints, vec![Endpoint::new(([127, 0, 0, 1], 41000).into())]);
    p.shutdown().await;
}

#[tokio::test]
async fn a_runtime_failure_backs_off_says_so_and_recovers_without_a_redeploy() {
    let runtime = Arc::new(MemoryRuntime::new());
    runtime.fail_next_starts(3);
    let queue = Arc::new(fast_queue(3));
    let router = Arc::new(MemoryRouter::new());
    let store = Arc::new(MemoryStore::new());
    let p = platform(queue.clone(), runtime.clone(), router.clone(), store.clone());
    let mut dlq = queue.subscribe("deployments.dlq", "inspect").await.unwrap();
    p.start().await.unwrap();
    p.deploy(spec("doomed")).await.unwrap();
    // The failure is recorded with the reason, the attempt and the next retry.
    let s = store.clone();
    eventually(WAIT, "failed with attempts and a next retry", || {
        let s = s.clone();
        async move {
            let r = s.get(&name("doomed")).await.unwrap().unwrap();
            r.status.phase == Phase::Failed
                && r.status.attempts >= 1
                && r.status.next_retry_ms.is_some()
                && r.status.will_retry
                && !r.status.permanent
                && r.status.message.as_deref().is_some_and(|m| m.contains("injected failure"))
        }
    })
    .await;
    assert!(router.table().get(&name("doomed")).is_none(), "nothing routed for a failed function");
    // It keeps trying with backoff, and converges once starts work again.
    let ready = p.wait_ready(&name("doomed"), WAIT).await.unwrap();
    assert_eq!((ready.status.attempts, ready.status.next_retry_ms, ready.status.message), (0, None, None));
    assert_eq!(runtime.start_count(), 1);
    // A failing reconcile is not a dead letter: nothing reached the dead-letter topic.
    assert!(tokio::time::timeout(Duration::from_millis(200), dlq.next()).await.is_err());
    p.shutdown().await;
}

/// Publishes every message twice: at-least-once delivery at its worst.
struct DuplicatingQueue(MemoryQueue);

#[async_trait]
impl Queue for DuplicatingQueue {
    async fn publish(&self, topic: &str, message: Message) -> Result<(), QueueError> {
        self.0.publish(topic, message.clone()).await?;
        self.0.publish(topic, message).await
    }
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, QueueError> {
        self.0.subscribe(topic, group).await
    }
}

/// Runs the same scenario and returns (instances per function and generation, routes, phases).
async fn scenario(
    queue: Arc<dyn Queue>,
) -> (BTreeMap<String, Vec<u64>>, BTreeMap<String, (u64, usize)>, BTreeMap<String, Phase>) {
    let runtime = Arc::new(MemoryRuntime::new());
    let router = Arc::new(MemoryRouter::new());
    let p = platform(queue, runtime.clone(), router.clone(), Arc::new(MemoryStore::new()));
    p.start().await.unwrap();
    for n in ["a", "b", "c"] {
        p.deploy(spec(n)).await.unwrap();
    }
    for n in ["a", "b", "c"] {
        p.wait_ready(&name(n), WAIT).await.unwrap();
    }
    // Update b to two instances (generation 2), delete c.
    let mut b2 = FunctionSpecInput::image("b", "pilotlight/hello:v2", 8080);
    b2.scaling = Some(ScalingInput { min: Some(2), prewarm: Some(0), ..Default::default() });
    assert_eq!(p.deploy(b2.validate().unwrap()).await.unwrap().generation, 2);
    p.delete(&name("c")).await.unwrap();
    p.wait_ready(&name("b"), WAIT).await.unwrap();
    p.wait_deleted(&name("c"), WAIT).await.unwrap();
    let r = runtime.clone();
    eventually(WAIT, "old generation of b stopped", || {
        let r = r.clone();
        async move { r.list().await.unwrap().len() == 3 }
    })
    .await;
    // Let any duplicate still in flight land before reading the final state.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut instances: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in runtime.list().await.unwrap() {
        instances.entry(i.function.to_string()).or_default().push(i.generation);
    }
    let routes = router.table().iter().map(|r| (r.name.to_string(), (r.generation, r.endpoints.len()))).collect();
    let phases = p.list().await.unwrap().into_iter().map(|r| (r.spec.name().to_string(), r.status.phase)).collect();
    p.shutdown().await;
    (instances, routes, phases)
}

#[tokio::test]
async fn delivering_every_event_twice_leaves_the_same_final_state() {
    let once = scenario(Arc::new(fast_queue(3))).await;
    let twice = scenario(Arc::new(DuplicatingQueue(fast_queue(3)))).await;
    assert_eq!(once, twice);
    let (instances, routes, phases) = once;
    assert_eq!(instances, BTreeMap::from([("a".into(), vec![1]), ("b".into(), vec![2, 2])]));
    assert_eq!(routes, BTreeMap::from([("a".into(), (1, 1)), ("b".into(), (2, 2))]));
    assert_eq!(phases, BTreeMap::from([("a".into(), Phase::Ready), ("b".into(), Phase::Ready)]));
}

#[tokio::test]
async fn an_older_generation_after_a_newer_one_is_ignored() {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(fast_queue(3));
    let mut v2 = FunctionSpecInput::image("svc", "pilotlight/hello:v2", 8080);
    v2.scaling = Some(ScalingInput { prewarm: Some(0), ..Default::default() });
    let v2 = v2.validate().unwrap();
    let v1 = spec("svc");
    store.compare_and_set(None, FunctionRecord::new(v2.clone(), 2)).await.unwrap();
    let runtime = Arc::new(MemoryRuntime::new());
    let worker = Arc::new(RuntimeWorker::new(queue.clone(), runtime.clone(), store.clone()));
    let first = Attempt::first(3);
    worker.handle(Event::DeployRequested { spec: v2, generation: 2 }, first).await.unwrap();
    worker.handle(Event::DeployRequested { spec: v1, generation: 1 }, first).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    worker.spawn(&mut tasks, &cancel);
    let rt = runtime.clone();
    eventually(WAIT, "generation 2 runs", || {
        let rt = rt.clone();
        async move { rt.list().await.unwrap().iter().any(|i| i.generation == 2) }
    })
    .await;
    worker.pass_and_settle().await.unwrap();
    let generations: Vec<u64> = runtime.list().await.unwrap().iter().map(|i| i.generation).collect();
    assert_eq!(generations, [2], "only generation 2 was started");
    assert_eq!(store.get(&name("svc")).await.unwrap().unwrap().generation, 2, "the older spec was not recorded");
    cancel.cancel();
    while tasks.join_next().await.is_some() {}

    let router = Arc::new(MemoryRouter::new());
    let urls = PublicUrls::http(Domain::new("localhost").unwrap());
    let rw = RouterWorker::new(queue.clone(), router.clone(), urls);
    let ep = |port| vec![Endpoint::new(([127, 0, 0, 1], port).into())];
    let changed = |generation, endpoints| Event::EndpointsChanged {
        name: name("svc"),
        generation,
        endpoints,
        timeout_ms: 1000,
        removed: false,
        node: None,
    };
    rw.handle(changed(2, ep(42000)), first).await.unwrap();
    rw.handle(changed(1, ep(41000)), first).await.unwrap();
    assert_eq!(router.table().get(&name("svc")).map(|r| r.generation), Some(2));
    assert_eq!(router.table().get(&name("svc")).unwrap().endpoints, ep(42000));

    let sw = StatusWorker::new(store.clone(), tokio::sync::watch::Sender::new(0));
    let status = |generation, phase, endpoints| Event::StatusChanged {
        name: name("svc"),
        generation,
        phase,
        url: None,
        message: Some("old news".into()),
        will_retry: false,
        endpoints,
        node: None,
    };
    sw.handle(status(2, Phase::Ready, ep(42000)), first).await.unwrap();
    sw.handle(status(1, Phase::Ready, ep(41000)), first).await.unwrap();
    sw.handle(status(1, Phase::Failed, vec![]), first).await.unwrap();
    let recorded = store.get(&name("svc")).await.unwrap().unwrap().status;
    assert_eq!((recorded.routed_generation, recorded.endpoints, recorded.message), (2, ep(42000), None));
}

#[tokio::test]
async fn resync_stops_orphans_and_starts_missing_instances() {
    let runtime = Arc::new(MemoryRuntime::new());
    let orphan = runtime.start(&spec("orphan"), 1).await.unwrap();
    let store = Arc::new(MemoryStore::new());
    store
        .compare_and_set(
            None,
            FunctionRecord { status: FunctionStatus::new(Phase::Ready, 4), ..FunctionRecord::new(spec("wanted"), 4) },
        )
        .await
        .unwrap();
    let router = Arc::new(MemoryRouter::new());
    let p = platform(Arc::new(fast_queue(3)), runtime.clone(), router.clone(), store);
    p.start().await.unwrap();
    let rt = runtime.clone();
    eventually(WAIT, "wanted has an instance and orphan none", || {
        let rt = rt.clone();
        let orphan = orphan.id.clone();
        async move {
            let list = rt.list().await.unwrap();
            list.iter().any(|i| i.function.as_str() == "wanted" && i.generation == 4)
                && !list.iter().any(|i| i.id == orphan)
        }
    })
    .await;
    let r = router.clone();
    eventually(WAIT, "wanted is routed", || {
        let r = r.clone();
        async move { r.table().get(&FunctionName::new("wanted").unwrap()).is_some_and(|r| r.endpoints.len() == 1) }
    })
    .await;
    p.shutdown().await;
}

#[tokio::test]
async fn a_crashed_instance_is_replaced() {
    let runtime = Arc::new(MemoryRuntime::new());
    let router = Arc::new(MemoryRouter::new());
    let p = platform(Arc::new(fast_queue(3)), runtime.clone(), router.clone(), Arc::new(MemoryStore::new()));
    p.start().await.unwrap();
    p.deploy(spec("phoenix")).await.unwrap();
    let first = p.wait_ready(&name("phoenix"), WAIT).await.unwrap().status.endpoints;
    let victim = runtime.list().await.unwrap().remove(0);
    assert!(runtime.crash(&victim.id));
    let r = router.clone();
    eventually(WAIT, "a new instance is routed", || {
        let r = r.clone();
        let first = first.clone();
        async move {
            r.table()
                .get(&FunctionName::new("phoenix").unwrap())
                .is_some_and(|route| route.endpoints.len() == 1 && route.endpoints != first)
        }
    })
    .await;
    assert_eq!(runtime.start_count(), 2);
    p.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_rejected_and_nothing_is_stored() {
    let store = Arc::new(MemoryStore::new());
    let p = Platform::builder()
        .queue(Arc::new(fast_queue(3)))
        .store(store.clone())
        .region("eu-1")
        .unwrap()
        .build()
        .unwrap();
    let mut input = FunctionSpecInput::image("elsewhere", "pilotlight/hello", 8080);
    input.region = Some("us-2".into());
    match p.deploy(input.validate().unwrap()).await {
        Err(PlatformError::Invalid(e)) => {
            assert_eq!(e.field, "region");
            assert!(e.message.contains("eu-1"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(store.list().await.unwrap().is_empty());
    assert!(matches!(Platform::builder().build(), Err(PlatformError::Config(_))));
}

#[tokio::test]
async fn a_queue_refusal_leaves_nothing_behind() {
    let store = Arc::new(MemoryStore::new());
    let mut queue = MockQueue::new();
    queue.expect_publish().returning(|_, _| Err(QueueError::Unavailable("broker down".into())));
    let p = Platform::builder().queue(Arc::new(queue)).store(store.clone()).build().unwrap();
    let err = p.deploy(spec("ghost")).await.unwrap_err();
    assert!(err.to_string().contains("broker down"), "{err}");
    assert!(store.get(&name("ghost")).await.unwrap().is_none(), "record was not rolled back");
}

#[tokio::test]
async fn an_edge_failure_keeps_the_old_table_and_is_retried() {
    let router = Arc::new(MemoryRouter::new());
    let p =
        platform(Arc::new(fast_queue(5)), Arc::new(MemoryRuntime::new()), router.clone(), Arc::new(MemoryStore::new()));
    p.start().await.unwrap();
    router.fail_next(2);
    p.deploy(spec("edgy")).await.unwrap();
    let rec = p.wait_ready(&name("edgy"), WAIT).await.unwrap();
    assert_eq!(rec.status.phase, Phase::Ready);
    assert_eq!(router.table().len(), 1);
    p.shutdown().await;
}

#[tokio::test]
async fn redeploying_the_same_spec_changes_nothing() {
    let p = platform(
        Arc::new(fast_queue(3)),
        Arc::new(MemoryRuntime::new()),
        Arc::new(MemoryRouter::new()),
        Arc::new(MemoryStore::new()),
    );
    p.start().await.unwrap();
    assert_eq!(p.deploy(spec("same")).await.unwrap().generation, 1);
    p.wait_ready(&name("same"), WAIT).await.unwrap();
    let again = p.deploy(spec("same")).await.unwrap();
    assert_eq!((again.generation, again.phase), (1, Phase::Ready));
    // After a delete, a new deploy continues the generations so stale events stay stale.
    p.delete(&name("same")).await.unwrap();
    p.wait_deleted(&name("same"), WAIT).await.unwrap();
    assert!(p.get(&name("same")).await.unwrap().is_none());
    assert!(matches!(p.delete(&name("same")).await, Err(PlatformError::NotFound(_))));
    assert_eq!(p.deploy(spec("same")).await.unwrap().generation, 3);
    p.shutdown().await;
}

#[tokio::test]
async fn events_for_other_topics_are_published_keyed_by_function() {
    // Every event a deploy causes is keyed by the function's name (ordering per function).
    let queue = Arc::new(fast_queue(3));
    let mut routes = queue.subscribe(topics::ROUTES, "spy").await.unwrap();
    let p = platform(
        queue.clone(),
        Arc::new(MemoryRuntime::new()),
        Arc::new(MemoryRouter::new()),
        Arc::new(MemoryStore::new()),
    );
    p.start().await.unwrap();
    p.deploy(spec("keyed")).await.unwrap();
    let d = within(WAIT, "routes event", routes.next()).await.unwrap();
    assert_eq!(d.message().key, "keyed");
    p.shutdown().await;
}

#[tokio::test]
async fn the_platform_wakes_a_function_by_asking_for_an_activation() {
    use pilotlight_core::ports::ActivationError;
    let queue = Arc::new(fast_queue(3));
    let mut spy = queue.subscribe(topics::DEPLOYMENTS, "spy").await.unwrap();
    let store = Arc::new(MemoryStore::new());
    let p = Platform::builder().queue(queue.clone()).store(store.clone()).build().unwrap();
    assert_eq!(p.activator().activate(&name("nobody")).await, Err(ActivationError::NotFound(name("nobody"))));
    p.deploy(spec("lazy")).await.unwrap();
    within(WAIT, "deploy event", spy.next()).await.unwrap().ack().await.unwrap();
    p.activator().activate(&name("lazy")).await.unwrap();
    let d = within(WAIT, "activation event", spy.next()).await.unwrap();
    assert!(
        matches!(Event::from_payload(&d.message().payload).unwrap(), Event::ActivationRequested { name } if name.as_str() == "lazy")
    );
}

/// The activation fast path: with the runtime worker in this process, the
/// activator resumes a paused instance itself and hands its endpoint back;
/// a burst of activations resumes it once, and the route, the pool and the
/// recorded desired scale follow as on the ordinary path.
#[tokio::test]
async fn an_activation_in_process_resumes_a_paused_instance_once_and_hands_back_its_endpoint() {
    use pilotlight_core::ports::Activation;
    let runtime = Arc::new(MemoryRuntime::new());
    let router = Arc::new(MemoryRouter::new());
    let store = Arc::new(MemoryStore::new());
    // No periodic pass during the test: a reconcile in hand would (rightly) send the activations the slow way.
    let p = Platform::builder()
        .queue(Arc::new(fast_queue(3)))
        .runtime(runtime.clone())
        .router(router.clone())
        .store(store.clone())
        .resync_period(Duration::from_secs(600))
        .drain(Duration::from_millis(20))
        .build()
        .unwrap();
    p.start().await.unwrap();
    let mut input = FunctionSpecInput::image("warm", "pilotlight/hello:latest", 8080);
    input.scaling = Some(ScalingInput { prewarm: Some(1), ..Default::default() });
    p.deploy(input.validate().unwrap()).await.unwrap();
    p.wait_ready(&name("warm"), WAIT).await.unwrap();
    p.scale(&name("warm"), 0).await.unwrap();
    let paused_only = |rt: Arc<MemoryRuntime>| async move {
        let all = rt.list().await.unwrap();
        (all.iter().all(|i| i.state == InstanceState::Paused)).then_some(all)
    };
    let (s, r) = (store.clone(), router.clone());
    eventually(WAIT, "at zero with a paused pool, observed", || {
        let (s, r, rt) = (s.clone(), r.clone(), runtime.clone());
        async move {
            let observed = s.get(&name("warm")).await.unwrap().unwrap().status.instances;
            let listed = paused_only(rt).await;
            r.table().get(&name("warm")).is_some_and(|r| r.endpoints.is_empty())
                && listed.is_some_and(|l| l.len() == 1 && observed == l)
        }
    })
    .await;
    let pooled = runtime.list().await.unwrap().remove(0);
    let (resumes, starts) = (runtime.resume_count(), runtime.start_count());

    let activator = p.activator();
    let warm = name("warm");
    let outcomes = futures::future::join_all((0..20).map(|_| activator.activate(&warm))).await;
    let ready: Vec<_> = outcomes.iter().filter(|o| matches!(o, Ok(Activation::Ready(_)))).collect();
    assert_eq!(ready.len(), 1, "one activation resumed, the others were recorded: {outcomes:?}");
    assert_eq!(*ready[0], Ok(Activation::Ready(vec![pooled.endpoint.clone()])));
    assert!(outcomes.iter().all(|o| matches!(o, Ok(Activation::Ready(_) | Activation::Requested))));
    assert_eq!(store.get(&name("warm")).await.unwrap().unwrap().scale.running, Some(1), "the ask is durable");

    let r = router.clone();
    eventually(WAIT, "the route follows with the resumed instance", || {
        let (r, e) = (r.clone(), pooled.endpoint.clone());
        async move { r.table().get(&name("warm")).is_some_and(|r| r.endpoints == [e.clone()]) }
    })
    .await;
    let rt = runtime.clone();
    eventually(WAIT, "the pool refilled beside the resumed instance", || {
        let rt = rt.clone();
        async move {
            let all = rt.list().await.unwrap();
            all.iter().filter(|i| i.state == InstanceState::Running).count() == 1
                && all.iter().filter(|i| i.state == InstanceState::Paused).count() == 1
        }
    })
    .await;
    p.wait_ready(&name("warm"), WAIT).await.unwrap();
    assert_eq!(runtime.resume_count(), resumes + 1, "twenty activations, one resume");
    assert_eq!(runtime.start_count(), starts + 1, "one start: the pool's refill, no cold start");
    p.shutdown().await;
}

/// An edge holds its activator and the runtime worker holds the edge (its
/// load source): the activator's way to the worker must not close that
/// circle, or a stopped platform would keep its Store (and a redb file) open.
#[tokio::test]
async fn a_stopped_platform_lets_go_of_its_store_although_its_edge_holds_an_activator() {
    struct Edge(parking_lot::Mutex<Option<Arc<dyn pilotlight_core::ports::Activator>>>);
    impl pilotlight_core::ports::LoadSource for Edge {
        fn load(&self) -> Vec<(FunctionName, pilotlight_core::ports::FunctionLoad)> {
            Vec::new()
        }
    }
    let store = Arc::new(MemoryStore::new());
    let weak = Arc::downgrade(&store);
    let edge = Arc::new(Edge(parking_lot::Mutex::new(None)));
    let p = Platform::builder()
        .queue(Arc::new(fast_queue(3)))
        .runtime(Arc::new(MemoryRuntime::new()))
        .router(Arc::new(MemoryRouter::new()))
        .store(store)
        .autoscaler(edge.clone(), pilotlight_core::controller::AutoscalerConfig::default())
        .build()
        .unwrap();
    *edge.0.lock() = Some(p.activator());
    p.start().await.unwrap();
    p.deploy(spec("circle")).await.unwrap();
    p.wait_ready(&name("circle"), WAIT).await.unwrap();
    let a = edge.0.lock().clone().unwrap();
    let _ = a.activate(&name("circle")).await;
    drop(a);
    p.shutdown().await;
    drop(p);
    drop(edge);
    assert!(weak.upgrade().is_none(), "the Store is released once the platform and its edge are gone");
}

/// The middle tier: with no paused instance, a function at zero starts one it
/// created earlier (no create on the request's path), then makes a new one.
#[tokio::test]
async fn at_zero_without_a_pool_the_first_request_starts_a_created_instance() {
    let runtime = Arc::new(MemoryRuntime::new());
    let router = Arc::new(MemoryRouter::new());
    let p = platform(Arc::new(fast_queue(3)), runtime.clone(), router.clone(), Arc::new(MemoryStore::new()));
    p.start().await.unwrap();
    let mut input = FunctionSpecInput::image("standby", "pilotlight/hello:latest", 8080);
    input.scaling = Some(ScalingInput { prewarm: Some(0), precreate: Some(1), ..Default::default() });
    p.deploy(input.validate().unwrap()).await.unwrap();
    p.wait_ready(&name("standby"), WAIT).await.unwrap();
    let states = |rt: Arc<MemoryRuntime>| async move {
        let mut s: Vec<(InstanceState, InstanceId)> =
            rt.list().await.unwrap().into_iter().map(|i| (i.state, i.id)).collect();
        s.sort_by(|a, b| a.1.as_str().cmp(b.1.as_str()));
        s
    };
    let rt = runtime.clone();
    eventually(WAIT, "one running and one created", || {
        let rt = rt.clone();
        async move {
            let s = states(rt).await;
            s.iter().filter(|(st, _)| *st == InstanceState::Running).count() == 1
                && s.iter().filter(|(st, _)| *st == InstanceState::Created).count() == 1
        }
    })
    .await;
    p.scale(&name("standby"), 0).await.unwrap();
    let rt = runtime.clone();
    eventually(WAIT, "at zero, the created one kept", || {
        let rt = rt.clone();
        async move { states(rt).await.iter().map(|(st, _)| *st).collect::<Vec<_>>() == [InstanceState::Created] }
    })
    .await;
    let standby = states(runtime.clone()).await[0].1.clone();
    let starts = runtime.start_count();
    p.activator().activate(&name("standby")).await.unwrap();
    let r = router.clone();
    eventually(WAIT, "routed again", || {
        let r = r.clone();
        async move { r.table().get(&name("standby")).is_some_and(|r| r.endpoints.len() == 1) }
    })
    .await;
    let after = states(runtime.clone()).await;
    assert!(after.contains(&(InstanceState::Running, standby.clone())), "the created instance was started: {after:?}");
    assert_eq!(runtime.start_count(), starts + 1, "one start, and no create+start");
    let rt = runtime.clone();
    eventually(WAIT, "a new created instance replaces the one started", || {
        let (rt, standby) = (rt.clone(), standby.clone());
        async move { states(rt).await.iter().any(|(st, id)| *st == InstanceState::Created && *id != standby) }
    })
    .await;
    p.shutdown().await;
}

/// `logs` with `follow` keeps the stream open across scaling: an instance that
/// starts after the call joins it with its first line.
#[tokio::test]
async fn followed_logs_take_in_instances_that_start_later() {
    use pilotlight_core::ports::LogOptions;
    let runtime = Arc::new(MemoryRuntime::new());
    let p =
        platform(Arc::new(fast_queue(3)), runtime.clone(), Arc::new(MemoryRouter::new()), Arc::new(MemoryStore::new()));
    p.start().await.unwrap();
    p.deploy(spec("chatty")).await.unwrap();
    p.wait_ready(&name("chatty"), WAIT).await.unwrap();
    let mut logs = p.logs(&name("chatty"), LogOptions { tail: None, follow: true }).await.unwrap();
    let first = within(WAIT, "the first instance's line", logs.next()).await.unwrap().unwrap();
    assert!(first.line.line.contains("listening on"), "{first:?}");
    p.scale(&name("chatty"), 2).await.unwrap();
    let second = within(WAIT, "a line of the instance started after the call", logs.next()).await.unwrap().unwrap();
    assert_ne!(second.instance, first.instance);
    assert!(second.line.line.contains("listening on"), "{second:?}");
    // Deleting the function ends the stream.
    p.delete(&name("chatty")).await.unwrap();
    assert!(within(WAIT, "the stream ends after the delete", logs.next()).await.is_none());
    p.shutdown().await;
}

/// Level-triggered: an instance removed behind the platform's back, with no
/// event about it, is replaced and routed again by the periodic pass.
#[tokio::test]
async fn an_instance_removed_silently_is_replaced_by_the_pass() {
    let runtime = Arc::new(MemoryRuntime::new());
    let router = Arc::new(MemoryRouter::new());
    let p = platform(Arc::new(fast_queue(3)), runtime.clone(), router.clone(), Arc::new(MemoryStore::new()));
    p.start().await.unwrap();
    p.deploy(spec("quiet")).await.unwrap();
    let before = p.wait_ready(&name("quiet"), WAIT).await.unwrap().status.endpoints;
    let victim = runtime.list().await.unwrap().remove(0);
    assert!(runtime.vanish(&victim.id), "removed without an exit event");
    let r = router.clone();
    eventually(WAIT, "a new instance is routed", || {
        let (r, before) = (r.clone(), before.clone());
        async move {
            r.table().get(&name("quiet")).is_some_and(|route| route.endpoints.len() == 1 && route.endpoints != before)
        }
    })
    .await;
    let ready = p.wait_ready(&name("quiet"), WAIT).await.unwrap();
    assert!(ready.status.instances.iter().all(|i| i.id != victim.id), "the status shows what runs now");
    p.shutdown().await;
}

/// The mutation check of the pass, as a test: with the periodic pass off, the
/// same silent removal is never noticed (nothing else would look).
#[tokio::test]
async fn without_the_pass_a_silent_removal_stays_unnoticed() {
    let runtime = Arc::new(MemoryRuntime::new());
    let router = Arc::new(MemoryRouter::new());
    let p = platform(Arc::new(fast_queue(3)), runtime.clone(), router.clone(), Arc::new(MemoryStore::new()));
    p.start().await.unwrap();
    p.deploy(spec("unseen")).await.unwrap();
    let before = p.wait_ready(&name("unseen"), WAIT).await.unwrap().status.endpoints;
    p.runtime_worker().unwrap().set_pass_enabled(false);
    let victim = runtime.list().await.unwrap().remove(0);
    runtime.vanish(&victim.id);
    tokio::time::sleep(PERIOD * 4).await;
    assert!(runtime.list().await.unwrap().is_empty(), "nothing replaced it");
    assert_eq!(router.table().get(&name("unseen")).unwrap().endpoints, before, "the dead endpoint is still routed");
    p.shutdown().await;
}

/// An engine outage: reads answer from the Store at once and do not say
/// `ready`; the status carries the error, the attempt and the next retry;
/// when the engine is back, the function heals within a period.
#[tokio::test]
async fn an_engine_outage_is_honest_and_heals_after() {
    let runtime = Arc::new(MemoryRuntime::new());
    let router = Arc::new(MemoryRouter::new());
    let store = Arc::new(MemoryStore::new());
    let p = platform(Arc::new(fast_queue(3)), runtime.clone(), router.clone(), store.clone());
    p.start().await.unwrap();
    p.deploy(spec("outage")).await.unwrap();
    p.wait_ready(&name("outage"), WAIT).await.unwrap();
    let victim = runtime.list().await.unwrap().remove(0);
    runtime.set_unavailable(true);
    runtime.vanish(&victim.id);
    let pp = p.clone();
    eventually(WAIT, "not ready, with the error and a retry time", || {
        let pp = pp.clone();
        async move {
            let r = pp.get(&name("outage")).await.unwrap().unwrap();
            r.status.phase != Phase::Ready
                && r.status.attempts > 0
                && r.status.next_retry_ms.is_some()
                && r.status.message.as_deref().is_some_and(|m| m.contains("outage"))
        }
    })
    .await;
    let calls = runtime.calls();
    let began = std::time::Instant::now();
    let read = p.get(&name("outage")).await.unwrap().unwrap();
    assert!(began.elapsed() < Duration::from_millis(100), "reads come from the Store");
    assert_eq!(p.instances(&name("outage")).await.unwrap().len(), read.status.instances.len());
    assert_eq!(runtime.calls(), calls, "a read calls no runtime");
    runtime.set_unavailable(false);
    let began = std::time::Instant::now();
    let healed = p.wait_ready(&name("outage"), WAIT).await.unwrap();
    assert!(healed.status.instances.iter().all(|i| i.id != victim.id));
    assert!(began.elapsed() < PERIOD * 3, "healed within the backoff cap and a period: {:?}", began.elapsed());
    p.shutdown().await;
}

/// The desired scale is in the Store: a restarted platform keeps it.
#[tokio::test]
async fn the_desired_scale_survives_a_restart() {
    let runtime = Arc::new(MemoryRuntime::new());
    let store = Arc::new(MemoryStore::new());
    let queue: Arc<dyn Queue> = Arc::new(fast_queue(3));
    let p = platform(queue.clone(), runtime.clone(), Arc::new(MemoryRouter::new()), store.clone());
    p.start().await.unwrap();
    p.deploy(spec("three")).await.unwrap();
    p.wait_ready(&name("three"), WAIT).await.unwrap();
    p.scale(&name("three"), 3).await.unwrap();
    let ready = |p: Platform| async move {
        eventually(WAIT, "three routed", || {
            let p = p.clone();
            async move { p.get(&name("three")).await.unwrap().unwrap().status.endpoints.len() == 3 }
        })
        .await;
    };
    ready(p.clone()).await;
    p.shutdown().await;
    let p = platform(queue, runtime.clone(), Arc::new(MemoryRouter::new()), store.clone());
    p.start().await.unwrap();
    p.reconcile_all().await.unwrap();
    ready(p.clone()).await;
    let running = runtime.list().await.unwrap().iter().filter(|i| i.state == InstanceState::Running).count();
    assert_eq!(running, 3, "still three after the restart");
    assert_eq!(store.get(&name("three")).await.unwrap().unwrap().scale.running, Some(3));
    p.shutdown().await;
}

/// A route dropped from the edge behind the platform's back is restored by the next pass.
#[tokio::test]
async fn a_dropped_route_is_restored() {
    let router = Arc::new(MemoryRouter::new());
    let p =
        platform(Arc::new(fast_queue(3)), Arc::new(MemoryRuntime::new()), router.clone(), Arc::new(MemoryStore::new()));
    p.start().await.unwrap();
    p.deploy(spec("kept")).await.unwrap();
    p.wait_ready(&name("kept"), WAIT).await.unwrap();
    router.apply(&pilotlight_core::model::RouteTable::default()).await.unwrap();
    assert!(router.table().get(&name("kept")).is_none());
    let r = router.clone();
    eventually(WAIT, "the route is back", || {
        let r = r.clone();
        async move { r.table().get(&name("kept")).is_some_and(|route| route.endpoints.len() == 1) }
    })
    .await;
    p.shutdown().await;
}

/// A capacity failure is permanent: `wait_ready` stops waiting at once, and
/// the function is still retried at the backoff cap (it may fit later).
#[tokio::test]
async fn a_permanent_failure_ends_the_wait_and_is_still_retried() {
    let runtime = Arc::new(MemoryRuntime::new());
    let p = Platform::builder()
        .queue(Arc::new(fast_queue(3)))
        .runtime(runtime.clone())
        .router(Arc::new(MemoryRouter::new()))
        .store(Arc::new(MemoryStore::new()))
        .memory_budget_mb(10)
        .resync_period(PERIOD)
        .backoff(Duration::from_millis(50), Duration::from_millis(300))
        .build()
        .unwrap();
    p.start().await.unwrap();
    p.deploy(spec("big")).await.unwrap();
    match p.wait_ready(&name("big"), WAIT).await {
        Err(PlatformError::Failed { message, .. }) => assert!(message.contains("memory budget"), "{message}"),
        other => panic!("{other:?}"),
    }
    let r = p.get(&name("big")).await.unwrap().unwrap();
    assert!(r.status.permanent && r.status.will_retry && r.status.next_retry_ms.is_some(), "{:?}", r.status);
    let first = r.status.attempts;
    let pp = p.clone();
    eventually(WAIT, "retried at the cap", || {
        let pp = pp.clone();
        async move { pp.get(&name("big")).await.unwrap().unwrap().status.attempts > first }
    })
    .await;
    assert!(runtime.list().await.unwrap().is_empty(), "nothing was started");
    p.shutdown().await;
}

/// A Store that counts its `list` calls.
struct ListCounting(MemoryStore, std::sync::atomic::AtomicU64);

#[async_trait]
impl Store for ListCounting {
    async fn get(&self, n: &FunctionName) -> Result<Option<FunctionRecord>, pilotlight_core::ports::StoreError> {
        self.0.get(n).await
    }
    async fn list(&self) -> Result<Vec<FunctionRecord>, pilotlight_core::ports::StoreError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.list().await
    }
    async fn compare_and_set(
        &self,
        expected: Option<u64>,
        record: FunctionRecord,
    ) -> Result<u64, pilotlight_core::ports::StoreError> {
        self.0.compare_and_set(expected, record).await
    }
    async fn delete(&self, n: &FunctionName, expected: u64) -> Result<(), pilotlight_core::ports::StoreError> {
        self.0.delete(n, expected).await
    }
    async fn doc_get(&self, key: &DocKey) -> Result<Option<Doc>, pilotlight_core::ports::StoreError> {
        self.0.doc_get(key).await
    }
    async fn doc_list(&self, kind: &DocKind, query: &DocQuery) -> Result<Vec<Doc>, pilotlight_core::ports::StoreError> {
        self.0.doc_list(kind, query).await
    }
    async fn doc_put(
        &self,
        key: &DocKey,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<u64, pilotlight_core::ports::StoreError> {
        self.0.doc_put(key, expected, value).await
    }
    async fn doc_delete(&self, key: &DocKey, expected: u64) -> Result<(), pilotlight_core::ports::StoreError> {
        self.0.doc_delete(key, expected).await
    }
}

/// The once-per-period refresh of an unchanged observation is written (so
/// staleness can be told) but wakes no status stream: an open stream costs
/// no Store list per refreshed function.
#[tokio::test]
async fn refreshing_an_unchanged_observation_wakes_no_reader() {
    use std::sync::atomic::Ordering::SeqCst;
    let store = Arc::new(ListCounting(MemoryStore::new(), Default::default()));
    let p =
        platform(Arc::new(fast_queue(3)), Arc::new(MemoryRuntime::new()), Arc::new(MemoryRouter::new()), store.clone());
    p.start().await.unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("calm{i}")).collect();
    for n in &names {
        p.deploy(spec(n)).await.unwrap();
    }
    for n in &names {
        p.wait_ready(&name(n), WAIT).await.unwrap();
    }
    // Let the deploys' own updates land before listening.
    tokio::time::sleep(PERIOD).await;
    let mut changes = p.status_changes(false);
    let first = store.get(&name("calm0")).await.unwrap().unwrap().status.observed_at_ms;
    let worker = p.runtime_worker().unwrap();
    let (lists, passes) = (store.1.load(SeqCst), worker.passes());
    let quiet = tokio::time::timeout(PERIOD * 5, changes.next()).await;
    assert!(quiet.is_err(), "a reader saw an update: {quiet:?}");
    let (lists, passes) = (store.1.load(SeqCst) - lists, worker.passes() - passes);
    let later = store.get(&name("calm0")).await.unwrap().unwrap().status.observed_at_ms;
    assert!(later > first, "the observation was refreshed in the Store ({first} -> {later})");
    // Each pass lists once; the open stream listed at most once more (its first look).
    assert!(passes >= 3 && lists <= passes + 1, "{lists} Store lists over {passes} passes");
    p.shutdown().await;
}

/// Secrets roll the functions that use them: setting one again writes a new
/// generation of the same spec (level-triggered: found by comparing the
/// record's digest with the Store's revisions), once; a deploy that names a
/// missing secret is refused naming the field, and leaves nothing; removing a
/// secret in use is refused naming the function.
#[tokio::test]
async fn setting_a_secret_again_rolls_its_functions_once() {
    use pilotlight_core::controller::{SecretKey, SecretVault};
    use pilotlight_core::model::SecretName;
    let store = Arc::new(MemoryStore::new());
    let p =
        platform(Arc::new(fast_queue(3)), Arc::new(MemoryRuntime::new()), Arc::new(MemoryRouter::new()), store.clone());
    p.start().await.unwrap();
    let vault = SecretVault::new(store.clone(), SecretKey::generate().unwrap());
    let with_secret = |n: &str| {
        let mut input = FunctionSpecInput::image(n, "pilotlight/hello:latest", 8080);
        input.scaling = Some(ScalingInput { prewarm: Some(0), ..Default::default() });
        input.secrets = vec!["token".into()];
        input.validate().unwrap()
    };
    let err = p.deploy(with_secret("user")).await.unwrap_err();
    assert!(matches!(&err, PlatformError::Invalid(v) if v.field == "secrets.0"), "{err}");
    assert!(p.get(&name("user")).await.unwrap().is_none(), "nothing half-done");

    let token = SecretName::new("token").unwrap();
    vault.set(&token, b"one").await.unwrap();
    let first = p.deploy(with_secret("user")).await.unwrap().generation;
    p.deploy(spec("plain")).await.unwrap();
    p.wait_ready(&name("user"), WAIT).await.unwrap();
    assert!(p.roll_secrets().await.unwrap().is_empty(), "nothing changed yet");
    assert_eq!(p.deploy(with_secret("user")).await.unwrap().generation, first, "the same deploy changes nothing");

    vault.set(&token, b"two").await.unwrap();
    assert_eq!(p.roll_secrets().await.unwrap(), vec![name("user")]);
    assert!(p.roll_secrets().await.unwrap().is_empty(), "rolled once");
    let rolled = p.wait_ready(&name("user"), WAIT).await.unwrap();
    assert_eq!(rolled.generation, first + 1);
    assert_eq!(p.get(&name("plain")).await.unwrap().unwrap().generation, 1, "a function without it stays");

    let err = vault.remove(&token).await.unwrap_err();
    assert!(err.to_string().contains("`user`"), "{err}");
    p.delete(&name("user")).await.unwrap();
    p.wait_deleted(&name("user"), WAIT).await.unwrap();
    vault.remove(&token).await.unwrap();
    p.shutdown().await;
}
