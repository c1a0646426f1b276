//! The gateway on real listeners, with hello under the process runtime.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use pilotlight_core::model::{FunctionName, RouteTable};
use pilotlight_core::ports::{Activation, ActivationError, Activator, Router, Runtime};
use pilotlight_core::testkit::http;
use pilotlight_process::ProcessRuntime;

#[tokio::test]
async fn routes_by_subdomain_over_http1_and_http2_and_refuses_unknown_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (a, b) = (hello(&rt, "alpha").await, hello(&rt, "beta").await);
    let gw = gateway(dir.path()).await;
    gw.apply(&table(vec![route("alpha", &[a.endpoint.addr()], 5000), route("beta", &[b.endpoint.addr()], 5000)]))
        .await
        .unwrap();
    let addr = gw.http_addr();
    let c = client();
    assert_eq!(get(&c, addr, "alpha.localhost", "/").await.2, "Hello from alpha!\n");
    assert_eq!(get(&c, addr, "beta.localhost:8080", "/").await.2, "Hello from beta!\n", "the port is ignored");
    assert_eq!(get(&c, addr, "BETA.Localhost", "/").await.2, "Hello from beta!\n", "host names are case-insensitive");
    let h2 = get(&h2_client(), addr, "alpha.localhost", "/").await;
    assert_eq!((h2.0, h2.2.as_str()), (200, "Hello from alpha!\n"), "HTTP/2 (h2c)");

    for host in ["gamma.localhost", "localhost", "a.b.localhost", "alpha.example.com"] {
        let (status, headers, body) = get(&c, addr, host, "/").await;
        assert_eq!(status, 404, "{host}");
        assert_eq!(headers["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "unknown_host", "{body}");
    }
    // HTTP/1.0 lets a client leave out Host.
    let raw = raw_request(addr, "GET / HTTP/1.0\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.0 400") || raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("missing_host"), "{raw}");
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

async fn raw_request(addr: std::net::SocketAddr, text: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(text.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.unwrap().unwrap();
    out
}

#[tokio::test]
async fn fifty_table_swaps_during_a_stream_of_requests_fail_none() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let eps: Vec<_> = futures::future::join_all((0..3).map(|_| hello(&rt, "swapped"))).await;
    let addrs: Vec<_> = eps.iter().map(|i| i.endpoint.addr()).collect();
    let gw = Arc::new(gateway(dir.path()).await);
    gw.apply(&table(vec![route("swapped", &addrs[..1], 5000)])).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let addr = gw.http_addr();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let c = client();
                // Bounded: stops when told, or after 2,000 requests or 30 s.
                let deadline = Instant::now() + Duration::from_secs(30);
                for _ in 0..2000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let (status, _, body) = get(&c, addr, "swapped.localhost", "/").await;
                    if status == 200 && body == "Hello from swapped!\n" {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let shapes: [&[usize]; 4] = [&[0], &[1, 2], &[2], &[0, 1, 2]];
    for i in 0..50 {
        let chosen: Vec<_> = shapes[i % 4].iter().map(|j| addrs[*j]).collect();
        let mut t = table(vec![route("swapped", &chosen, 5000)]);
        t.upsert(route(&format!("other-{i}"), &[addrs[0]], 5000));
        gw.apply(&t).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("requests during 50 swaps: {ok} ok, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 50, "the stream was too short to mean anything: {ok}");
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn https_with_the_dev_ca_is_trusted_by_a_client_that_trusts_only_that_ca() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let inst = hello(&rt, "secure").await;
    let gw = gateway(dir.path()).await;
    gw.apply(&table(vec![route("secure", &[inst.endpoint.addr()], 5000)])).await.unwrap();
    let ca_path = gw.dev_ca_path().expect("dev CA path").to_path_buf();
    assert!(ca_path.starts_with(dir.path()));
    let ca_pem = std::fs::read(&ca_path).unwrap();
    let connector = tls_connector(&ca_path, &[b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(gw.https_addr().unwrap()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("secure.localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("handshake verified against the dev CA only");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: secure.localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("Hello from secure!\n"), "{out}");

    // A second start keeps the same CA, so a browser that trusts it once keeps trusting it.
    gw.shutdown().await;
    let again = gateway(dir.path()).await;
    assert_eq!(std::fs::read(again.dev_ca_path().unwrap()).unwrap(), ca_pem);
    again.shutdown().await;
    rt.stop_all().await.unwrap();
}

/// Starts hello when asked, then routes to it: what the platform does.
struct TestActivator {
    gw: Arc<pilotlight_gateway::Gateway>,
    rt: Arc<ProcessRuntime>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Activator for TestActivator {
    async fn activate(&self, name: &FunctionName) -> Result<Activation, ActivationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let inst = hello(&self.rt, name.as_str()).await;
        self.gw.apply(&table(vec![route(name.as_str(), &[inst.endpoint.addr()], 5000)])).await.unwrap();
        Ok(Activation::Requested)
    }
}

#[tokio::test]
async fn the_activator_serves_100_concurrent_requests_to_a_function_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(runtime());
    let gw = Arc::new(gateway(dir.path()).await);
    let activator = Arc::new(TestActivator { gw: gw.clone(), rt: rt.clone(), calls: AtomicUsize::new(0) });
    gw.set_activator(activator.clone());
    gw.apply(&table(vec![route("sleepy", &[], 5000)])).await.unwrap();
    let addr = gw.http_addr();
    let c = client();
    let answers = futures::future::join_all((0..100).map(|_| get(&c, addr, "sleepy.localhost", "/"))).await;
    let ok = answers.iter().filter(|(s, _, b)| *s == 200 && b == "Hello from sleepy!\n").count();
    assert_eq!(ok, 100, "{:?}", answers.iter().find(|(s, _, _)| *s != 200));
    assert_eq!(activator.calls.load(Ordering::SeqCst), 1, "one activation for the whole burst");
    assert_eq!(rt.list().await.unwrap().len(), 1);
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

/// Starts hello when asked and hands its endpoint back, routing nothing: the
/// platform's activation fast path, where the table follows later.
struct ReadyActivator {
    rt: Arc<ProcessRuntime>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Activator for ReadyActivator {
    async fn activate(&self, name: &FunctionName) -> Result<Activation, ActivationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let inst = hello(&self.rt, name.as_str()).await;
        Ok(Activation::Ready(vec![inst.endpoint]))
    }
}

#[tokio::test]
async fn endpoints_an_activation_hands_back_serve_held_requests_before_any_table() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(runtime());
    let gw = Arc::new(gateway(dir.path()).await);
    let activator = Arc::new(ReadyActivator { rt: rt.clone(), calls: AtomicUsize::new(0) });
    gw.set_activator(activator.clone());
    gw.apply(&table(vec![route("quick", &[], 5000), route("other", &[], 5000)])).await.unwrap();
    let c = client();
    let answers = futures::future::join_all((0..50).map(|_| get(&c, gw.http_addr(), "quick.localhost", "/"))).await;
    let ok = answers.iter().filter(|(s, _, b)| *s == 200 && b == "Hello from quick!\n").count();
    assert_eq!(ok, 50, "{:?}", answers.iter().find(|(s, _, _)| *s != 200));
    assert_eq!(activator.calls.load(Ordering::SeqCst), 1, "one activation for the whole burst");
    // Later requests go straight to the admitted endpoint, with no new activation.
    let (status, _, _) = get(&c, gw.http_addr(), "quick.localhost", "/").await;
    assert_eq!(status, 200);
    assert_eq!(activator.calls.load(Ordering::SeqCst), 1);
    // The next table is the truth again: a table without the endpoint takes it
    // out, and the next request asks again at once (not a second after the last ask).
    gw.apply(&table(vec![route("quick", &[], 5000)])).await.unwrap();
    assert_eq!(gw.in_flight(&"quick".parse().unwrap()), 0);
    let (status, _, _) = get(&c, gw.http_addr(), "quick.localhost", "/").await;
    assert_eq!(status, 200, "held again, and activated again");
    assert_eq!(activator.calls.load(Ordering::SeqCst), 2);
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

/// Loses the first ask (as when a scale-down raced it), answers the second.
struct AnswersTheSecondAsk {
    rt: Arc<ProcessRuntime>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Activator for AnswersTheSecondAsk {
    async fn activate(&self, name: &FunctionName) -> Result<Activation, ActivationError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Ok(Activation::Requested);
        }
        Ok(Activation::Ready(vec![hello(&self.rt, name.as_str()).await.endpoint]))
    }
}

#[tokio::test]
async fn a_held_request_asks_again_each_second_without_waiting_for_a_table_change() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(runtime());
    let gw = Arc::new(gateway(dir.path()).await);
    let activator = Arc::new(AnswersTheSecondAsk { rt: rt.clone(), calls: AtomicUsize::new(0) });
    gw.set_activator(activator.clone());
    gw.apply(&table(vec![route("lost", &[], 5000)])).await.unwrap();
    let (status, _, body) = get(&client(), gw.http_addr(), "lost.localhost", "/").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(activator.calls.load(Ordering::SeqCst), 2);
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn waiting_past_the_deadline_or_the_queue_bound_gives_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.activation_timeout = Duration::from_millis(300);
    cfg.max_waiting_per_function = 2;
    let gw = pilotlight_gateway::Gateway::start(cfg).await.unwrap();
    gw.apply(&table(vec![route("never", &[], 5000)])).await.unwrap();
    let c = client();
    let answers = futures::future::join_all((0..5).map(|_| get(&c, gw.http_addr(), "never.localhost", "/"))).await;
    for (status, headers, body) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert!(headers.contains_key("retry-after"));
        assert!(body.contains("no_instance"), "{body}");
    }
    assert!(answers.iter().any(|(_, _, b)| b.contains("too many requests are waiting")), "the bound of 2 held");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_slow_function_gets_504_and_a_refused_one_is_retried_or_502() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let inst = hello(&rt, "slow").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = gateway(dir.path()).await;
    gw.apply(&table(vec![
        route("slow", &[inst.endpoint.addr()], 300),
        route("flaky", &[dead, inst.endpoint.addr()], 5000),
        route("gone", &[dead], 5000),
    ]))
    .await
    .unwrap();
    let c = client();
    let addr = gw.http_addr();
    let (status, _, body) = get(&c, addr, "slow.localhost", "/sleep?ms=3000").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("timeout"), "{body}");
    for _ in 0..20 {
        let (status, _, body) = get(&c, addr, "flaky.localhost", "/").await;
        assert_eq!(status, 200, "an idempotent request is retried on another instance: {body}");
    }
    let (status, _, body) = send(&c, addr, "gone.localhost", "POST", "/", Bytes::from_static(b"data")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("upstream_failed"), "{body}");
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn forwarded_headers_are_set_and_hop_by_hop_headers_stripped() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let inst = hello(&rt, "echo").await;
    let gw = gateway(dir.path()).await;
    gw.apply(&table(vec![route("echo", &[inst.endpoint.addr()], 5000)])).await.unwrap();
    let req = "GET /headers HTTP/1.1\r\nHost: echo.localhost\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\
         Keep-Alive: timeout=5\r\nProxy-Authorization: x\r\nX-Forwarded-For: 10.1.2.3\r\nX-Kept: yes\r\n\r\n";
    let raw = raw_request(gw.http_addr(), req).await;
    let body = raw.split_once("\r\n\r\n").unwrap().1.to_ascii_lowercase();
    assert!(body.contains("x-forwarded-for: 10.1.2.3, 127.0.0.1"), "{body}");
    assert!(body.contains("x-forwarded-proto: http"), "{body}");
    assert!(body.contains("x-forwarded-host: echo.localhost"), "{body}");
    assert!(body.contains("x-kept: yes"), "{body}");
    for gone in ["x-secret", "keep-alive:", "proxy-authorization"] {
        assert!(!body.contains(gone), "{gone} reached the function: {body}");
    }
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn response_bodies_stream_instead_of_being_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let inst = hello(&rt, "streamer").await;
    let gw = gateway(dir.path()).await;
    gw.apply(&table(vec![route("streamer", &[inst.endpoint.addr()], 5000)])).await.unwrap();
    let req = ::http::Request::builder()
        .uri(format!("http://{}/stream?chunks=2&ms=4000", gw.http_addr()))
        .header("host", "streamer.localhost")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let started = Instant::now();
    let resp = client().request(req).await.unwrap();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(3), body.frame())
        .await
        .expect("the first chunk arrives before the function finished (it waits 4 s before the second)")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"chunk 0\n"));
    assert!(started.elapsed() < Duration::from_secs(4));
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let inst = hello(&rt, "drain").await;
    let gw = Arc::new(gateway(dir.path()).await);
    gw.apply(&table(vec![route("drain", &[inst.endpoint.addr()], 5000)])).await.unwrap();
    let addr = gw.http_addr();
    let in_flight =
        tokio::spawn(async move { http::get(addr, "drain.localhost", "/sleep?ms=800", Duration::from_secs(10)).await });
    let name = FunctionName::new("drain").unwrap();
    pilotlight_core::testkit::eventually(Duration::from_secs(5), "request in flight", || {
        let (gw, name) = (gw.clone(), name.clone());
        async move { gw.in_flight(&name) == 1 }
    })
    .await;
    gw.shutdown().await;
    let resp = in_flight.await.unwrap().expect("the request in flight finished");
    assert_eq!(resp.status, 200);
    assert_eq!(gw.in_flight(&name), 0);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn counters_per_function_reach_the_metrics_recorder() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("this test process has no other recorder");
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let inst = hello(&rt, "counted").await;
    let gw = gateway(dir.path()).await;
    gw.apply(&table(vec![route("counted", &[inst.endpoint.addr()], 200)])).await.unwrap();
    let c = client();
    for _ in 0..7 {
        assert_eq!(get(&c, gw.http_addr(), "counted.localhost", "/").await.0, 200);
    }
    assert_eq!(get(&c, gw.http_addr(), "counted.localhost", "/sleep?ms=2000").await.0, 504);
    let snapshot = snapshotter.snapshot().into_hashmap();
    let find = |name: &str, label: Option<(&str, &str)>| {
        snapshot
            .iter()
            .find(|(k, _)| {
                k.key().name() == name
                    && k.key().labels().any(|l| l.key() == "function" && l.value() == "counted")
                    && label.is_none_or(|(lk, lv)| k.key().labels().any(|l| l.key() == lk && l.value() == lv))
            })
            .map(|(_, (_, _, v))| v)
    };
    use metrics_util::debugging::DebugValue;
    assert_eq!(find("pilotlight_gateway_requests_total", None), Some(DebugValue::Counter(8)).as_ref());
    assert_eq!(
        find("pilotlight_gateway_errors_total", Some(("kind", "timeout"))),
        Some(DebugValue::Counter(1)).as_ref()
    );
    assert!(
        matches!(find("pilotlight_gateway_request_duration_seconds", None), Some(DebugValue::Histogram(h)) if h.len() == 8)
    );
    assert_eq!(find("pilotlight_gateway_in_flight", None), Some(DebugValue::Gauge(0.0.into())).as_ref());
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn the_gateway_passes_the_router_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path()).await;
    pilotlight_core::testkit::router::run_all(&gw).await;
    // After the suite's final empty table, nothing is served.
    assert_eq!(get(&client(), gw.http_addr(), "conf-a.localhost", "/").await.0, 404);
    let _ = RouteTable::new();
    gw.shutdown().await;
}

/// A drain's signal: a request keeps counting on its instance after a swap
/// took the instance out of the routes, until the request ends.
#[tokio::test]
async fn an_endpoint_swapped_out_keeps_counting_its_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (old, new) = (hello(&rt, "moving").await, hello(&rt, "moving").await);
    let gw = Arc::new(gateway(dir.path()).await);
    gw.apply(&table(vec![route("moving", &[old.endpoint.addr()], 5000)])).await.unwrap();
    let addr = gw.http_addr();
    let slow =
        tokio::spawn(
            async move { http::get(addr, "moving.localhost", "/sleep?ms=1000", Duration::from_secs(10)).await },
        );
    let g = gw.clone();
    let old_addr = old.endpoint.clone();
    pilotlight_core::testkit::eventually(Duration::from_secs(5), "the request is on the old instance", || {
        let (g, old_addr) = (g.clone(), old_addr.clone());
        async move { g.endpoint_in_flight(&old_addr) == 1 }
    })
    .await;
    gw.apply(&table(vec![route("moving", &[new.endpoint.addr()], 5000)])).await.unwrap();
    assert_eq!(gw.endpoint_in_flight(&old_addr), 1, "still counted after the swap");
    assert_eq!(gw.endpoint_in_flight(&new.endpoint), 0);
    let (status, _, _) = get(&client(), addr, "moving.localhost", "/").await;
    assert_eq!(status, 200);
    assert_eq!(gw.endpoint_in_flight(&old_addr), 1, "a new request went to the new instance");
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
    pilotlight_core::testkit::eventually(Duration::from_secs(5), "the old instance is idle", || {
        let (g, old_addr) = (gw.clone(), old_addr.clone());
        async move { g.endpoint_in_flight(&old_addr) == 0 }
    })
    .await;
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

/// A function whose every instance refuses connections (they died, or were
/// removed behind the platform's back) makes the gateway ask for a reconcile
/// at once, at most once a second however many requests fail.
#[tokio::test]
async fn refused_connections_ask_for_a_reconcile_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = gateway(dir.path()).await;
    let mut activator = pilotlight_core::ports::MockActivator::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    activator.expect_unreachable().returning(move |name| {
        let _ = tx.send(name.clone());
        Ok(())
    });
    activator.expect_activate().never();
    gw.set_activator(Arc::new(activator));
    gw.apply(&table(vec![route("gone", &[dead], 5000)])).await.unwrap();
    let c = client();
    for _ in 0..10 {
        let (status, _, body) = get(&c, gw.http_addr(), "gone.localhost", "/").await;
        assert_eq!(status, 502, "{body}");
    }
    let reported = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!(reported.as_str(), "gone");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "ten failures within a second are one report");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (status, _, _) = get(&c, gw.http_addr(), "gone.localhost", "/").await;
    assert_eq!(status, 502);
    let again = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!(again.as_str(), "gone", "reported again after a second");
    gw.shutdown().await;
}
