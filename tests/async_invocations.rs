//! Asynchronous invocations through the embedded platform's edge: accepted
//! with 202 before anything runs, delivered through the gateway (from zero
//! too) with X-Call-Id and X-Attempt, retried with backoff, and dead after
//! the last attempt; everything readable from the Store.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pilotlight::core::controller::{CronConfig, CronScheduler, InvocationStore, Invoker, InvokerConfig};
use pilotlight::core::memory::MemoryQueue;
use pilotlight::core::model::{
    CallbackHosts, CallbackState, Domain, Invocation, InvocationId, InvocationState, ScalingInput, TriggerInput,
};
use pilotlight::core::testkit::http::Receiver;
use pilotlight::core::testkit::{eventually, fixtures::hello_binary, free_port, unique};
use pilotlight::gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::redb::RedbStore;
use pilotlight::{FunctionName, FunctionSpecInput, Platform};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One raw HTTP/1.1 request (with `Connection: close`) and its answer.
async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    Answer { status, headers, body: body.to_owned() }
}

async fn async_get(addr: SocketAddr, host: &str, path: &str, extra: &str) -> Answer {
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nPrefer: respond-async\r\nX-Trace: t-1\r\n{extra}Connection: close\r\n\r\n"
    );
    send(addr, &head, b"").await
}

struct Stage {
    gw: Arc<Gateway>,
    platform: Platform,
    invocations: InvocationStore,
    runtime: Arc<ProcessRuntime>,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn stage(config: InvokerConfig) -> Stage {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: unique("async"),
        stop_grace: Duration::from_secs(2),
        kill_on_drop: true,
        ..Default::default()
    }));
    let mut gw_config = GatewayConfig::new(Domain::new("localhost").unwrap(), dir.path()).ephemeral();
    gw_config.tls = TlsSource::Disabled;
    gw_config.activation_timeout = Duration::from_millis(800);
    gw_config.max_async_body_bytes = 1024;
    let gw = Arc::new(Gateway::start(gw_config).await.unwrap());
    let store = Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap());
    let platform = Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(store.clone())
        .runtime(runtime.clone())
        .router(gw.clone())
        .drain(Duration::from_millis(50))
        .build()
        .unwrap();
    gw.set_activator(platform.activator());
    platform.start().await.unwrap();
    let callbacks = Arc::new(pilotlight::gateway::HttpCallbacks::new().unwrap());
    let invoker = Invoker::new(store.clone(), Arc::new(gw.dispatcher()), callbacks, config);
    gw.set_intake(Arc::new(invoker.intake()));
    let invocations = invoker.invocations().clone();
    let cancel = CancellationToken::new();
    let cron = CronScheduler::new(store, CronConfig::default(), Some(invoker.waker()));
    tokio::spawn(cron.run(cancel.clone()));
    tokio::spawn(invoker.run(cancel.clone()));
    Stage { gw, platform, invocations, runtime, cancel, _dir: dir }
}

impl Stage {
    async fn deploy(&self, name: &str, exec: &str, min: i64) {
        let mut input = FunctionSpecInput::exec(name, exec, &[], 8080);
        input.scaling = Some(ScalingInput { min: Some(min), prewarm: Some(0), ..Default::default() });
        self.platform.deploy(input.validate().unwrap()).await.unwrap();
    }

    async fn finished(&self, id: &InvocationId) -> Invocation {
        let invocations = self.invocations.clone();
        eventually(Duration::from_secs(30), "the invocation reaches a final state", || {
            let (invocations, id) = (invocations.clone(), id.clone());
            async move { invocations.get(&id).await.unwrap().is_some_and(|i| i.state.is_final()) }
        })
        .await;
        self.invocations.get(id).await.unwrap().unwrap()
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.platform.shutdown().await;
        self.gw.shutdown().await;
        self.runtime.stop_all().await.unwrap();
    }
}

fn accepted(a: &Answer) -> InvocationId {
    assert_eq!(a.status, 202, "{}", a.body);
    let id = InvocationId::parse(a.header("x-call-id").unwrap()).unwrap();
    assert_eq!(a.header("location").unwrap(), format!("/v1/invocations/{id}"));
    assert_eq!(a.header("preference-applied"), Some("respond-async"));
    id
}

#[tokio::test]
async fn an_async_request_is_accepted_at_once_and_delivered_from_zero_with_its_call_id() {
    let s = stage(InvokerConfig { scan_period: Duration::from_millis(200), ..Default::default() }).await;
    s.deploy("later", hello_binary().to_str().unwrap(), 0).await;
    let name: FunctionName = "later".parse().unwrap();
    s.platform.wait_ready(&name, Duration::from_secs(30)).await.unwrap();
    s.platform.scale(&name, 0).await.unwrap();
    let p = s.platform.clone();
    eventually(Duration::from_secs(30), "at zero", || {
        let (p, name) = (p.clone(), name.clone());
        async move {
            p.get(&name).await.unwrap().is_some_and(|r| r.status.endpoints.is_empty() && r.status.instances.is_empty())
        }
    })
    .await;
    let id = accepted(&async_get(s.gw.http_addr(), "later.localhost", "/headers", "").await);
    assert_eq!(id.function(), name);
    let done = s.finished(&id).await;
    assert_eq!(done.state, InvocationState::Succeeded, "{done:?}");
    assert_eq!(done.attempts.len(), 1);
    let response = done.response.unwrap();
    assert_eq!(response.status, 200);
    let seen = String::from_utf8(response.body).unwrap().to_ascii_lowercase();
    assert!(seen.contains(&format!("x-call-id: {id}")), "the function got the call id: {seen}");
    assert!(seen.contains("x-attempt: 1") && seen.contains("x-trace: t-1"), "{seen}");
    assert!(!seen.contains("prefer:"), "the preference is not replayed (it would loop): {seen}");
    s.stop().await;
}

#[tokio::test]
async fn answers_that_are_not_retried_end_at_once_and_bad_input_queues_nothing() {
    let s = stage(InvokerConfig {
        scan_period: Duration::from_millis(200),
        callback_hosts: CallbackHosts::parse("callback_hosts", ["127.0.0.1", "*.hooks.example"]).unwrap(),
        ..Default::default()
    })
    .await;
    s.deploy("plain", hello_binary().to_str().unwrap(), 1).await;
    s.platform.wait_ready(&"plain".parse().unwrap(), Duration::from_secs(30)).await.unwrap();
    let id = accepted(&async_get(s.gw.http_addr(), "plain.localhost", "/nowhere", "").await);
    let done = s.finished(&id).await;
    assert_eq!((done.state, done.attempts.len()), (InvocationState::Failed, 1), "{done:?}");
    assert_eq!(done.reason.as_deref(), Some("the function answered 404"));

    let before = s.invocations.list(&"plain".parse().unwrap(), None, None, 100).await.unwrap().len();
    let bad_url = async_get(s.gw.http_addr(), "plain.localhost", "/", "X-Callback-Url: ftp://example/x\r\n").await;
    assert_eq!(bad_url.status, 400, "{}", bad_url.body);
    assert!(bad_url.body.contains("X-Callback-Url") && bad_url.body.contains("http"), "{}", bad_url.body);
    let outside =
        async_get(s.gw.http_addr(), "plain.localhost", "/", "X-Callback-Url: http://hooks.example/cb\r\n").await;
    assert_eq!(outside.status, 400, "a host outside the allow-list: {}", outside.body);
    assert!(outside.body.contains("allow-list") && outside.body.contains("hooks.example"), "{}", outside.body);
    let big = send(
        s.gw.http_addr(),
        "POST / HTTP/1.1\r\nHost: plain.localhost\r\nPrefer: respond-async\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n",
        &[b'x'; 2000],
    )
    .await;
    assert_eq!(big.status, 413, "{}", big.body);
    let after = s.invocations.list(&"plain".parse().unwrap(), None, None, 100).await.unwrap().len();
    assert_eq!(after, before, "nothing was queued for bad input");
    s.stop().await;
}

#[tokio::test]
async fn a_function_that_keeps_answering_503_is_retried_with_backoff_then_dead_with_every_attempt() {
    let config = InvokerConfig {
        max_attempts: 3,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        scan_period: Duration::from_millis(100),
        ..Default::default()
    };
    let s = stage(config).await;
    s.deploy("busy", hello_binary().to_str().unwrap(), 1).await;
    s.platform.wait_ready(&"busy".parse().unwrap(), Duration::from_secs(30)).await.unwrap();
    let id = accepted(&async_get(s.gw.http_addr(), "busy.localhost", "/status?code=503", "").await);
    let done = s.finished(&id).await;
    assert_eq!(done.state, InvocationState::Dead, "{done:?}");
    assert_eq!(done.attempts.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(done.attempts.iter().all(|a| a.status == Some(503)), "{:?}", done.attempts);
    assert!(done.reason.as_deref().unwrap().starts_with("3 attempts failed"), "{:?}", done.reason);
    let gaps: Vec<u64> =
        done.attempts.windows(2).map(|w| w[1].started_ms - (w[0].started_ms + w[0].duration_ms)).collect();
    assert!(gaps.iter().all(|g| *g >= 80), "attempts were spaced by the backoff: {gaps:?}");
    let last = done.response.unwrap();
    assert_eq!((last.status, last.body.as_slice()), (503, &b"status 503\n"[..]), "the last answer is kept");
    s.stop().await;
}

#[tokio::test]
async fn every_accepted_invocation_is_called_back_once_although_the_receiver_was_down_for_a_while() {
    let config = InvokerConfig {
        max_attempts: 2,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        scan_period: Duration::from_millis(100),
        callback_max_attempts: 40,
        callback_hosts: CallbackHosts::parse("callback_hosts", ["127.0.0.1"]).unwrap(),
        ..Default::default()
    };
    let s = stage(config).await;
    s.deploy("cb", hello_binary().to_str().unwrap(), 1).await;
    s.platform.wait_ready(&"cb".parse().unwrap(), Duration::from_secs(30)).await.unwrap();
    // The receiver's port is chosen, but nothing listens there yet.
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let header = format!("X-Callback-Url: http://{addr}/done?batch=1\r\n");
    let mut expected = Vec::new();
    for (path, state, status) in [
        ("/", "succeeded", Some("200")),
        ("/nowhere", "failed", Some("404")),
        ("/status?code=503", "dead", Some("503")),
    ] {
        for _ in 0..5 {
            let id = accepted(&async_get(s.gw.http_addr(), "cb.localhost", path, &header).await);
            expected.push((id, state, status));
        }
    }
    for (id, _, _) in &expected {
        s.finished(id).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = s.invocations.get(&expected[0].0).await.unwrap().unwrap().callback.unwrap();
    assert_eq!(waiting.state, CallbackState::Pending, "nobody listens yet: {waiting:?}");
    assert!(!waiting.attempts.is_empty(), "it was tried: {waiting:?}");
    let receiver = Receiver::start(addr, 200).await.unwrap();
    let invocations = s.invocations.clone();
    let ids: Vec<InvocationId> = expected.iter().map(|(id, _, _)| id.clone()).collect();
    eventually(Duration::from_secs(30), "every callback is delivered", || {
        let (invocations, ids) = (invocations.clone(), ids.clone());
        async move {
            for id in ids {
                let i = invocations.get(&id).await.unwrap().unwrap();
                if i.callback.is_none_or(|c| c.state != CallbackState::Delivered) {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), expected.len(), "one callback per invocation: {got:#?}");
    let mut retried = 0;
    for (id, state, status) in &expected {
        let calls: Vec<_> = got.iter().filter(|r| r.header("x-call-id") == Some(id.as_str())).collect();
        assert_eq!(calls.len(), 1, "exactly one callback for {id}");
        let call = calls[0];
        assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/done?batch=1"));
        assert_eq!(call.header("x-function-name"), Some("cb"));
        assert_eq!(call.header("x-invocation-state"), Some(*state), "{call:?}");
        assert_eq!(call.header("x-function-status"), *status, "{call:?}");
        assert!(call.header("x-duration-seconds").unwrap().parse::<f64>().unwrap() >= 0.0);
        let attempts: usize = call.header("x-attempts").unwrap().parse().unwrap();
        assert_eq!(attempts, if *state == "dead" { 2 } else { 1 }, "{call:?}");
        if *state == "succeeded" {
            assert!(String::from_utf8_lossy(&call.body).contains("Hello from cb"), "the function's answer: {call:?}");
        }
        let kept = s.invocations.get(id).await.unwrap().unwrap().callback.unwrap();
        assert_eq!(kept.attempts.last().unwrap().status, Some(200));
        assert!(kept.attempts[..kept.attempts.len() - 1].iter().all(|a| a.status.is_none() && a.error.is_some()));
        retried += usize::from(kept.attempts.len() > 1);
    }
    assert_eq!(retried, expected.len(), "every callback was first tried while the receiver was down");
    receiver.stop();
    s.stop().await;
}

#[tokio::test]
async fn a_callback_the_receiver_refuses_is_recorded_as_failed_not_retried() {
    let config = InvokerConfig { scan_period: Duration::from_millis(100), ..Default::default() };
    let s = stage(config).await;
    s.deploy("refused", hello_binary().to_str().unwrap(), 1).await;
    s.platform.wait_ready(&"refused".parse().unwrap(), Duration::from_secs(30)).await.unwrap();
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0)), 410).await.unwrap();
    let header = format!("X-Callback-Url: http://{}/gone\r\n", receiver.addr());
    let id = accepted(&async_get(s.gw.http_addr(), "refused.localhost", "/", &header).await);
    let invocations = s.invocations.clone();
    let i2 = id.clone();
    eventually(Duration::from_secs(30), "the callback ends", || {
        let (invocations, id) = (invocations.clone(), i2.clone());
        async move {
            invocations.get(&id).await.unwrap().unwrap().callback.is_some_and(|c| c.state != CallbackState::Pending)
        }
    })
    .await;
    let c = s.invocations.get(&id).await.unwrap().unwrap().callback.unwrap();
    assert_eq!(c.state, CallbackState::Failed);
    assert_eq!(c.attempts.len(), 1, "a 4xx is not retried: {c:?}");
    assert!(c.reason.as_deref().unwrap().contains("410"), "{c:?}");
    assert_eq!(receiver.received().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_per_second_schedule_fires_once_a_second_through_the_invoker() {
    let s = stage(InvokerConfig { scan_period: Duration::from_millis(200), ..Default::default() }).await;
    let mut input = FunctionSpecInput::exec("ticker", hello_binary().to_str().unwrap(), &[], 8080);
    input.scaling = Some(ScalingInput { min: Some(1), prewarm: Some(0), ..Default::default() });
    input.triggers = vec![TriggerInput {
        cron: Some("* * * * * *".into()),
        path: Some("/headers".into()),
        body: Some("tick".into()),
        ..Default::default()
    }];
    s.platform.deploy(input.validate().unwrap()).await.unwrap();
    let name: FunctionName = "ticker".parse().unwrap();
    s.platform.wait_ready(&name, Duration::from_secs(30)).await.unwrap();
    let start = pilotlight::core::support::now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let end = pilotlight::core::support::now_ms();
    let fired: Vec<Invocation> = s
        .invocations
        .list(&name, None, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.created_ms > start && i.created_ms <= end)
        .collect();
    let expected = end / 1000 - start / 1000;
    println!("{} ticks fired in a window of {expected} whole seconds", fired.len());
    assert!(fired.len().abs_diff(expected as usize) <= 1, "{} ticks, expected {expected} ± 1", fired.len());
    let mut ticks: Vec<u64> = fired.iter().map(|i| i.created_ms).collect();
    ticks.dedup();
    assert_eq!(ticks.len(), fired.len(), "no tick twice");
    assert!(ticks.iter().all(|t| t % 1000 == 0), "ids carry the tick: {ticks:?}");
    let done = s.finished(&fired[0].id).await;
    assert_eq!(done.state, InvocationState::Succeeded, "{done:?}");
    let seen = String::from_utf8(done.response.unwrap().body).unwrap().to_ascii_lowercase();
    assert!(seen.contains("x-pilotlight-trigger: cron") && seen.contains("x-cron-tick: "), "{seen}");
    s.stop().await;
}

#[tokio::test]
async fn bad_triggers_are_refused_with_the_field_and_nothing_is_deployed() {
    for (trigger, field) in [
        (TriggerInput { cron: Some("61 * * * *".into()), ..Default::default() }, "triggers.0.cron"),
        (
            TriggerInput {
                cron: Some("* * * * *".into()),
                time_zone: Some("Nowhere/Atlantis".into()),
                ..Default::default()
            },
            "triggers.0.time_zone",
        ),
        (TriggerInput { topic: Some("Orders!".into()), ..Default::default() }, "triggers.0.topic"),
        (
            TriggerInput { topic: Some("orders".into()), path: Some("order".into()), ..Default::default() },
            "triggers.0.path",
        ),
    ] {
        let mut input = FunctionSpecInput::exec("bad", "/bin/true", &[], 8080);
        input.triggers = vec![trigger];
        let e = input.validate().unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
}

#[tokio::test]
async fn a_function_sets_its_own_body_cap_and_keeps_authorization_only_when_it_asks() {
    let s = stage(InvokerConfig { scan_period: Duration::from_millis(200), ..Default::default() }).await;
    let mut input = FunctionSpecInput::exec("guarded", hello_binary().to_str().unwrap(), &[], 8080);
    input.scaling = Some(ScalingInput { min: Some(1), prewarm: Some(0), ..Default::default() });
    input.asynchronous = Some(pilotlight::core::model::AsyncInput {
        max_body_bytes: Some(16),
        per_instance: Some(2),
        forward_authorization: Some(true),
    });
    s.platform.deploy(input.validate().unwrap()).await.unwrap();
    s.deploy("plain", hello_binary().to_str().unwrap(), 1).await;
    for name in ["guarded", "plain"] {
        s.platform.wait_ready(&name.parse().unwrap(), Duration::from_secs(30)).await.unwrap();
    }
    let post = |host: &str, body: &[u8]| {
        format!(
            "POST /headers HTTP/1.1\r\nHost: {host}\r\nPrefer: respond-async\r\nAuthorization: Bearer s3cret\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
    };
    // The function's own cap (16 bytes), below the edge's (1 KiB here).
    let big = send(s.gw.http_addr(), &post("guarded.localhost", &[b'x'; 17]), &[b'x'; 17]).await;
    assert_eq!(big.status, 413, "{}", big.body);
    assert!(big.body.contains("16 bytes"), "{}", big.body);
    let kept = accepted(&send(s.gw.http_addr(), &post("guarded.localhost", b"small"), b"small").await);
    let dropped = accepted(&send(s.gw.http_addr(), &post("plain.localhost", b"small"), b"small").await);
    let seen = |i: Invocation| String::from_utf8(i.response.unwrap().body).unwrap().to_ascii_lowercase();
    let kept = seen(s.finished(&kept).await);
    assert!(kept.contains("authorization: bearer s3cret"), "the function asked for it: {kept}");
    let dropped = seen(s.finished(&dropped).await);
    assert!(!dropped.contains("authorization"), "credentials are not kept by default: {dropped}");
    let bad = FunctionSpecInput {
        asynchronous: Some(pilotlight::core::model::AsyncInput { per_instance: Some(0), ..Default::default() }),
        ..FunctionSpecInput::exec("bad", "/bin/true", &[], 8080)
    };
    assert_eq!(bad.validate().unwrap_err().field, "async.per_instance");
    s.stop().await;
}
