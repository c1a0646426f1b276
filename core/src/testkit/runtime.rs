//! The `Runtime` contract.

use std::time::Duration;

use futures::StreamExt;

use super::{eventually, http, unique, within};
use crate::model::{Endpoint, FunctionSpec, InstanceState};
use crate::ports::{LogOptions, Runtime, RuntimeError};

/// What the suite runs on the runtime under test.
pub struct RuntimeFixture {
    /// A spec of the demo function (answers `GET /` with a body containing its name) for a given name.
    pub hello: Box<dyn Fn(&str) -> FunctionSpec + Send + Sync>,
    /// A spec of a kind this runtime does not run (e.g. an image for the process runtime).
    pub wrong_kind: Option<FunctionSpec>,
    /// A spec that starts but never becomes ready (exits at once).
    pub broken: Option<FunctionSpec>,
    /// How long a start may take.
    pub start_timeout: Duration,
    /// Whether endpoints must be on loopback (true unless the runtime uses a platform network).
    pub loopback_endpoints: bool,
}

/// Runs every check.
pub async fn run_all(r: &dyn Runtime, f: &RuntimeFixture) {
    start_answers_and_lists(r, f).await;
    pause_and_resume(r, f).await;
    logs_tail_and_follow(r, f).await;
    stop_is_idempotent(r, f).await;
    wrong_kind_is_invalid_input(r, f).await;
    broken_start_fails_cleanly(r, f).await;
    create_then_start(r, f).await;
}

fn name(prefix: &str) -> String {
    unique(prefix).chars().take(63).collect::<String>().trim_end_matches('-').to_owned()
}

async fn get(endpoint: &Endpoint, timeout: Duration) -> Result<http::Response, String> {
    http::get_endpoint(endpoint, "test.localhost", "/", timeout).await
}

/// `start` returns a ready instance: it answers HTTP at once, and `list` shows it with its generation.
pub async fn start_answers_and_lists(r: &dyn Runtime, f: &RuntimeFixture) {
    let spec = (f.hello)(&name("rt-start"));
    r.prepare(&spec).await.expect("prepare");
    let inst = within(f.start_timeout, "start", r.start(&spec, 7)).await.expect("start");
    assert_eq!(&inst.function, spec.name());
    assert_eq!(inst.generation, 7);
    assert_eq!(inst.state, InstanceState::Running);
    if f.loopback_endpoints {
        assert!(inst.endpoint.addr().ip().is_loopback(), "endpoint {} is not on loopback", inst.endpoint);
    }
    // Ready means ready: the very first request succeeds.
    let resp = get(&inst.endpoint, Duration::from_secs(5)).await.expect("first request after start");
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains(spec.name().as_str()), "greeting lacks the name: {:?}", resp.body);
    let listed = r.list().await.expect("list");
    let mine = listed.iter().find(|i| i.id == inst.id).expect("list shows the started instance");
    assert_eq!((mine.generation, mine.state, &mine.function), (7, InstanceState::Running, spec.name()));
    r.stats(&inst.id).await.expect("stats of a running instance");
    r.stop(&inst.id).await.expect("stop");
}

/// A paused instance does not answer; resumed, it does.
pub async fn pause_and_resume(r: &dyn Runtime, f: &RuntimeFixture) {
    let spec = (f.hello)(&name("rt-pause"));
    let inst = within(f.start_timeout, "start", r.start(&spec, 1)).await.expect("start");
    r.pause(&inst.id).await.expect("pause");
    let listed = r.list().await.expect("list");
    assert_eq!(listed.iter().find(|i| i.id == inst.id).map(|i| i.state), Some(InstanceState::Paused));
    assert!(get(&inst.endpoint, Duration::from_millis(300)).await.is_err(), "a paused instance answered");
    let resumed = r.resume(&inst.id).await.expect("resume");
    assert_eq!(resumed.state, InstanceState::Running);
    let resp = get(&inst.endpoint, Duration::from_secs(5)).await.expect("request after resume");
    assert_eq!(resp.status, 200);
    r.stop(&inst.id).await.expect("stop");
}

/// Logs keep what the instance wrote; `follow` yields new lines as they come.
pub async fn logs_tail_and_follow(r: &dyn Runtime, f: &RuntimeFixture) {
    let spec = (f.hello)(&name("rt-logs"));
    let inst = within(f.start_timeout, "start", r.start(&spec, 1)).await.expect("start");
    let r2 = r;
    let id = inst.id.clone();
    eventually(Duration::from_secs(5), "instance wrote a first log line", || async {
        let s = r2.logs(&id, LogOptions { tail: Some(10), follow: false }).await.expect("logs");
        !s.collect::<Vec<_>>().await.is_empty()
    })
    .await;
    let mut follow = r.logs(&inst.id, LogOptions { tail: Some(0), follow: true }).await.expect("follow logs");
    get(&inst.endpoint, Duration::from_secs(5)).await.expect("request");
    let line = within(Duration::from_secs(5), "a followed log line after a request", follow.next())
        .await
        .expect("follow stream ended early")
        .expect("log line");
    assert!(!line.line.is_empty());
    r.stop(&inst.id).await.expect("stop");
}

/// `stop` removes the instance and closes its port; stopping again is Ok; pausing it is `NotFound`.
pub async fn stop_is_idempotent(r: &dyn Runtime, f: &RuntimeFixture) {
    let spec = (f.hello)(&name("rt-stop"));
    let inst = within(f.start_timeout, "start", r.start(&spec, 1)).await.expect("start");
    r.stop(&inst.id).await.expect("stop");
    assert!(!r.list().await.expect("list").iter().any(|i| i.id == inst.id), "stopped instance still listed");
    let endpoint = inst.endpoint.clone();
    eventually(Duration::from_secs(5), "stopped instance stops answering", || {
        let endpoint = endpoint.clone();
        async move { get(&endpoint, Duration::from_millis(200)).await.is_err() }
    })
    .await;
    r.stop(&inst.id).await.expect("second stop is Ok");
    assert!(matches!(r.pause(&inst.id).await, Err(RuntimeError::NotFound(_))), "pause of a stopped instance");
}

/// A source of the wrong kind is refused as `InvalidInput`, naming what this runtime takes.
pub async fn wrong_kind_is_invalid_input(r: &dyn Runtime, f: &RuntimeFixture) {
    let Some(spec) = &f.wrong_kind else { return };
    match r.start(spec, 1).await {
        Err(e @ RuntimeError::InvalidInput { .. }) => {
            assert!(!e.is_retryable());
            let text = e.to_string();
            assert!(text.contains(spec.source().kind()), "error does not say which kind was wrong: {text}");
        }
        other => panic!("wrong_kind_is_invalid_input: got {other:?}"),
    }
}

/// A start that never becomes ready fails with `NotReady`, with the instance's
/// output, and leaves nothing running.
pub async fn broken_start_fails_cleanly(r: &dyn Runtime, f: &RuntimeFixture) {
    let Some(spec) = &f.broken else { return };
    match within(f.start_timeout * 2, "broken start", r.start(spec, 1)).await {
        Err(e @ RuntimeError::NotReady { .. }) => assert!(e.is_retryable()),
        other => panic!("broken_start_fails_cleanly: got {other:?}"),
    }
    let left = r.list().await.expect("list");
    assert!(!left.iter().any(|i| &i.function == spec.name()), "a failed start left an instance: {left:?}");
}

/// `create` makes an instance that is listed as `Created` and answers nothing;
/// `start_created` makes that same instance ready; a created one stops like
/// any other. A runtime without the state says `Unsupported` and makes nothing.
pub async fn create_then_start(r: &dyn Runtime, f: &RuntimeFixture) {
    let spec = (f.hello)(&name("rt-create"));
    r.prepare(&spec).await.expect("prepare");
    let created = match r.create(&spec, 3).await {
        Ok(i) => i,
        Err(RuntimeError::Unsupported(_)) => {
            let left = r.list().await.expect("list");
            assert!(!left.iter().any(|i| &i.function == spec.name()), "an unsupported create left {left:?}");
            return;
        }
        Err(e) => panic!("create: {e}"),
    };
    assert_eq!((created.state, created.generation, &created.function), (InstanceState::Created, 3, spec.name()));
    let listed = r.list().await.expect("list");
    assert_eq!(
        listed.iter().find(|i| i.id == created.id).map(|i| i.state),
        Some(InstanceState::Created),
        "list shows the created instance: {listed:?}"
    );
    let started =
        within(f.start_timeout, "start_created", r.start_created(&spec, &created.id)).await.expect("start_created");
    assert_eq!((&started.id, started.state, started.generation), (&created.id, InstanceState::Running, 3));
    let resp = get(&started.endpoint, Duration::from_secs(5)).await.expect("first request after start_created");
    assert_eq!(resp.status, 200);
    assert!(
        r.start_created(&spec, &created.id).await.is_err(),
        "a running instance cannot be started as a created one"
    );
    r.stop(&started.id).await.expect("stop");
    let spare = r.create(&spec, 3).await.expect("create a second one");
    r.stop(&spare.id).await.expect("stop a created instance");
    assert!(
        !r.list().await.expect("list").iter().any(|i| &i.function == spec.name()),
        "stopped instances still listed"
    );
}
