//! The Docker runtime against the real engine. The hello image is built here,
//! `FROM scratch` around a static binary, through the engine's build API.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::time::Duration;

use futures::StreamExt;
use pilotlight_core::model::{FunctionSpec, FunctionSpecInput, LimitsInput};
use pilotlight_core::ports::{ExitReason, Runtime, RuntimeError, RuntimeEvent};
use pilotlight_core::testkit::fixtures::DockerCleanup;
use pilotlight_core::testkit::{self, runtime::RuntimeFixture, unique, within};
use pilotlight_docker::{DockerRuntime, DockerRuntimeConfig, EndpointMode, LABEL_PLATFORM, build_image_from_dir};
use tokio::sync::OnceCell;

const IMAGE: &str = "pilotlight/hello:test";

/// A runtime on the local engine, or `None` (skip) when there is none and this is not CI.
async fn runtime() -> Option<(DockerRuntime, DockerCleanup)> {
    runtime_in(EndpointMode::PublishedPort).await
}

fn config(platform_id: &str, endpoint_mode: EndpointMode) -> DockerRuntimeConfig {
    DockerRuntimeConfig {
        platform_id: platform_id.to_owned(),
        network: "pilotlight-test".into(),
        endpoint_mode,
        ready_timeout: Duration::from_secs(15),
        stop_grace: Duration::from_secs(1),
        ..Default::default()
    }
}

/// [`runtime`] in the given endpoint mode, under a platform id of its own.
async fn runtime_in(mode: EndpointMode) -> Option<(DockerRuntime, DockerCleanup)> {
    let platform_id = unique("t").replace('_', "-");
    match DockerRuntime::connect(config(&platform_id, mode)).await {
        Ok(rt) => {
            hello_image(&rt).await;
            Some((rt, DockerCleanup { label: format!("{LABEL_PLATFORM}={platform_id}") }))
        }
        // Only a missing engine skips (on a laptop); any other failure is a failure.
        Err(e @ RuntimeError::Unavailable(_)) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "Docker is required under CI: {e}");
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("cannot use the Docker engine: {e}"),
    }
}

async fn hello_image(rt: &DockerRuntime) {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let context = testkit::fixtures::hello_image_context();
            build_image_from_dir(rt.docker(), IMAGE, context.path()).await.expect("build the hello image");
        })
        .await;
}

fn hello(name: &str) -> FunctionSpec {
    let mut input = FunctionSpecInput::image(name, IMAGE, 8080);
    input.limits =
        Some(LimitsInput { memory_mb: Some(64), cpu_millis: Some(500), pids: Some(64), read_only_rootfs: Some(true) });
    input.validate().unwrap()
}

#[tokio::test]
async fn docker_runtime_conforms() {
    let Some((rt, _cleanup)) = runtime().await else { return };
    let mut broken = FunctionSpecInput::image("broken", IMAGE, 8080);
    // hello cannot listen on this address and exits at once.
    broken.env.insert("HOST".into(), "256.0.0.1".into());
    let fixture = RuntimeFixture {
        hello: Box::new(hello),
        wrong_kind: Some(FunctionSpecInput::exec("proc", "/bin/true", &[], 8080).validate().unwrap()),
        broken: Some(broken.validate().unwrap()),
        start_timeout: Duration::from_secs(30),
        loopback_endpoints: true,
    };
    testkit::runtime::run_all(&rt, &fixture).await;
    assert!(rt.list().await.unwrap().is_empty(), "the suite left containers behind");
}

#[tokio::test]
async fn containers_are_hardened_limited_and_bound_to_loopback() {
    let Some((rt, _cleanup)) = runtime().await else { return };
    let inst = rt.start(&hello("hardened"), 3).await.unwrap();
    let c = rt.docker().inspect_container(inst.id.as_str(), None).await.unwrap();
    let hc = c.host_config.unwrap();
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
    assert!(hc.security_opt.unwrap_or_default().iter().any(|o| o == "no-new-privileges"));
    assert_eq!(hc.privileged, Some(false));
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(hc.memory, Some(64 * 1024 * 1024));
    assert_eq!(hc.memory_swap, Some(64 * 1024 * 1024), "no swap beyond the memory limit");
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert_eq!(hc.pids_limit, Some(64));
    assert_eq!(hc.restart_policy.and_then(|r| r.name).map(|n| n.to_string()), Some("no".to_owned()));
    let log = hc.log_config.unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert!(log.config.unwrap().contains_key("max-size"));
    for bindings in hc.port_bindings.unwrap().values().flatten() {
        for b in bindings {
            assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"), "published on loopback only");
        }
    }
    let labels = c.config.unwrap().labels.unwrap();
    assert_eq!(labels.get("io.pilotlight.function").map(String::as_str), Some("hardened"));
    assert_eq!(labels.get("io.pilotlight.generation").map(String::as_str), Some("3"));
    assert!(labels.contains_key(LABEL_PLATFORM));
    assert!(inst.endpoint.addr().ip().is_loopback());
    rt.stop(&inst.id).await.unwrap();
}

#[tokio::test]
async fn a_missing_image_is_a_clear_error_and_leaves_nothing() {
    let Some((rt, _cleanup)) = runtime().await else { return };
    let spec = FunctionSpecInput::image("ghost", "pilotlight/does-not-exist:v1", 8080).validate().unwrap();
    // No registry is reachable here: that passes (the image may be built or
    // the registry come back), so the error is a retryable `Unavailable` that
    // names the image, not a permanent one.
    match within(Duration::from_secs(120), "prepare of a missing image", rt.prepare(&spec)).await {
        Err(e @ RuntimeError::Unavailable(_)) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains("pilotlight/does-not-exist:v1"), "{e}");
            assert!(e.to_string().contains("cannot be reached"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A registry on loopback that refuses the connection: the same class.
    let local = FunctionSpecInput::image("ghost", "127.0.0.1:5999/nobody/ghost:v1", 8080).validate().unwrap();
    match within(Duration::from_secs(120), "prepare from a registry that is down", rt.prepare(&local)).await {
        Err(e @ RuntimeError::Unavailable(_)) => assert!(e.to_string().contains("127.0.0.1:5999"), "{e}"),
        other => panic!("{other:?}"),
    }
    match rt.start(&spec, 1).await {
        Err(e @ RuntimeError::Unpreparable { .. }) => assert!(e.to_string().contains("not present locally"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(rt.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_container_killed_from_outside_is_reported() {
    let Some((rt, _cleanup)) = runtime().await else { return };
    let mut events = rt.events();
    let inst = rt.start(&hello("victim"), 2).await.unwrap();
    rt.docker()
        .kill_container(inst.id.as_str(), None::<bollard::query_parameters::KillContainerOptions>)
        .await
        .unwrap();
    let ev = within(Duration::from_secs(15), "exit event", events.next()).await.unwrap();
    let RuntimeEvent::Exited { id, function, generation, reason } = ev else { panic!("{ev:?}") };
    assert_eq!((id, function.as_str(), generation), (inst.id.clone(), "victim", 2));
    assert_eq!(reason, ExitReason::Code(137));
    rt.stop(&inst.id).await.unwrap();
}

// ---- Namespace mode: the edge connects inside the container, nothing is published.

const WSECHO: &str = "pilotlight/wsecho:test";

/// A namespace-mode runtime, or `None` (skip) off CI when Docker or the
/// capability to enter namespaces is missing. Under CI both are required: a
/// silent fallback would make these tests pass without testing anything.
async fn namespaced() -> Option<(DockerRuntime, DockerCleanup)> {
    let (rt, cleanup) = runtime_in(EndpointMode::Namespace).await?;
    if rt.endpoint_mode() != EndpointMode::Namespace {
        let why = pilotlight_core::support::netns::available().err().unwrap_or_default();
        assert!(std::env::var("CI").as_deref() != Ok("true"), "namespace mode is required under CI: {why}");
        eprintln!("SKIPPED: this process cannot enter network namespaces: {why}");
        return None;
    }
    Some((rt, cleanup))
}

async fn wsecho_image(rt: &DockerRuntime) {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let context = testkit::fixtures::function_image_context("wsecho");
            build_image_from_dir(rt.docker(), WSECHO, context.path()).await.expect("build the wsecho image");
        })
        .await;
}

fn with_network(name: &str, network: &str) -> FunctionSpec {
    let mut input = FunctionSpecInput::image(name, IMAGE, 8080);
    input.network = Some(network.to_owned());
    input.validate().unwrap()
}

/// Asserts the engine published nothing for the container.
async fn assert_nothing_published(rt: &DockerRuntime, id: &str) {
    let c = rt.docker().inspect_container(id, None).await.unwrap();
    let bindings = c.host_config.and_then(|h| h.port_bindings).unwrap_or_default();
    assert!(bindings.values().all(|b| b.as_ref().is_none_or(Vec::is_empty)), "port bindings: {bindings:?}");
    let ports = c.network_settings.and_then(|n| n.ports).unwrap_or_default();
    assert!(ports.values().all(|b| b.as_ref().is_none_or(Vec::is_empty)), "published ports: {ports:?}");
}

/// The IPv4 routes of a container's network namespace, read from the host
/// through its PID (no packet is sent).
async fn routes_of(rt: &DockerRuntime, id: &str) -> Vec<String> {
    let c = rt.docker().inspect_container(id, None).await.unwrap();
    let pid = c.state.and_then(|s| s.pid).unwrap();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/route")).unwrap();
    table.lines().skip(1).map(str::to_owned).collect()
}

/// One masked WebSocket text frame (a client's frames must be masked).
fn text_frame(text: &str) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let len = u8::try_from(text.len()).unwrap();
    assert!(len < 126);
    let mut frame = vec![0x81, 0x80 | len];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn docker_runtime_conforms_in_namespace_mode() {
    let Some((rt, _cleanup)) = namespaced().await else { return };
    let fixture = RuntimeFixture {
        hello: Box::new(hello),
        wrong_kind: None,
        broken: None,
        start_timeout: Duration::from_secs(30),
        loopback_endpoints: true,
    };
    testkit::runtime::run_all(&rt, &fixture).await;
    assert!(rt.list().await.unwrap().is_empty(), "the suite left containers behind");
}

#[tokio::test]
async fn namespace_mode_publishes_nothing_and_hello_and_websockets_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((rt, _cleanup)) = namespaced().await else { return };
    wsecho_image(&rt).await;

    let inst = rt.start(&hello("ns-hello"), 1).await.unwrap();
    let netns = inst.endpoint.netns().expect("a namespaced endpoint").to_owned();
    assert!(netns.starts_with("/var/run/docker/netns/") || netns.starts_with("/proc/"), "{netns}");
    assert_eq!(inst.endpoint.addr(), "127.0.0.1:8080".parse().unwrap(), "the function's own loopback");
    assert_nothing_published(&rt, inst.id.as_str()).await;
    let resp =
        testkit::http::get_endpoint(&inst.endpoint, "ns-hello.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!((resp.status, resp.body.contains("ns-hello")), (200, true), "{resp:?}");
    // Not reachable from the host's own loopback: nothing listens there for it.
    assert!(tokio::net::TcpStream::connect(inst.endpoint.addr()).await.is_err());
    // The default network keeps egress: the namespace has a default route.
    assert!(routes_of(&rt, inst.id.as_str()).await.iter().any(|r| r.split_whitespace().nth(1) == Some("00000000")));

    let mut input = FunctionSpecInput::image("ns-ws", WSECHO, 8080);
    input.env.insert("ECHO_PREFIX".into(), "g1:".into());
    let ws = rt.start(&input.validate().unwrap(), 1).await.unwrap();
    assert_nothing_published(&rt, ws.id.as_str()).await;
    let mut conn = testkit::http::connect(&ws.endpoint, Duration::from_secs(5)).await.unwrap();
    conn.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ns-ws.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        within(Duration::from_secs(5), "101 head", conn.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "accept key: {head}");
    conn.write_all(&text_frame("hi")).await.unwrap();
    let mut echo = [0u8; 7];
    within(Duration::from_secs(5), "echo frame", conn.read_exact(&mut echo)).await.unwrap();
    assert_eq!(&echo[..2], &[0x81, 5], "an unmasked text frame of 5 bytes");
    assert_eq!(&echo[2..], b"g1:hi");

    rt.stop(&inst.id).await.unwrap();
    rt.stop(&ws.id).await.unwrap();
}

#[tokio::test]
async fn network_none_has_no_egress_and_is_refused_outside_namespace_mode() {
    let Some((rt, _cleanup)) = namespaced().await else { return };
    let inst = rt.start(&with_network("ns-none", "none"), 1).await.unwrap();
    let c = rt.docker().inspect_container(inst.id.as_str(), None).await.unwrap();
    assert_eq!(c.host_config.unwrap().network_mode.as_deref(), Some("none"));
    // No route at all: only loopback, which /proc/net/route does not list.
    assert_eq!(routes_of(&rt, inst.id.as_str()).await, Vec::<String>::new());
    let ok = testkit::http::get_endpoint(&inst.endpoint, "ns-none.localhost", "/", Duration::from_secs(5)).await;
    assert_eq!(ok.unwrap().status, 200);
    // The function itself cannot reach out. With no route the kernel refuses
    // at once: no packet leaves (TEST-NET-2 would not answer anyway).
    let dial = testkit::http::get_endpoint(
        &inst.endpoint,
        "ns-none.localhost",
        "/dial?to=198.51.100.7:80",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(dial.status, 502, "{dial:?}");
    assert!(dial.body.to_lowercase().contains("unreachable"), "{dial:?}");
    // Its own loopback works.
    let own = testkit::http::get_endpoint(
        &inst.endpoint,
        "ns-none.localhost",
        "/dial?to=127.0.0.1:8080",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(own.status, 200, "{own:?}");
    rt.stop(&inst.id).await.unwrap();

    // A published port cannot serve a container without a network: refused, nothing created.
    let Some((published, _cleanup)) = runtime().await else { return };
    match published.start(&with_network("ns-none-pub", "none"), 1).await {
        Err(e @ RuntimeError::InvalidInput { .. }) => assert!(e.to_string().contains("network"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(published.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn namespace_mode_resumes_from_the_pool_and_a_restarted_runtime_adopts_and_routes() {
    let Some((rt, cleanup)) = namespaced().await else { return };
    let inst = rt.start(&hello("ns-pool"), 4).await.unwrap();
    rt.pause(&inst.id).await.unwrap();
    assert!(
        testkit::http::get_endpoint(&inst.endpoint, "h", "/", Duration::from_millis(300)).await.is_err(),
        "a paused instance answered"
    );
    let resumed = rt.resume(&inst.id).await.unwrap();
    assert_eq!(resumed.endpoint, inst.endpoint);
    let resp = testkit::http::get_endpoint(&resumed.endpoint, "h", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(resp.status, 200);
    rt.pause(&inst.id).await.unwrap();

    // A new runtime of the same platform (the server after a restart) finds the
    // paused container, reads its namespace again, resumes it and reaches it.
    let platform_id = cleanup.label.split_once('=').unwrap().1.to_owned();
    drop(rt);
    let again = DockerRuntime::connect(config(&platform_id, EndpointMode::Namespace)).await.unwrap();
    let listed = again.list().await.unwrap();
    let found = listed.iter().find(|i| i.id == inst.id).expect("the restarted runtime lists the container");
    assert_eq!(found.endpoint, inst.endpoint, "the namespace is found again from the container");
    assert_eq!(found.generation, 4);
    let resumed = again.resume(&inst.id).await.unwrap();
    let resp = testkit::http::get_endpoint(&resumed.endpoint, "h", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(resp.status, 200);
    again.stop(&inst.id).await.unwrap();
}

/// Without `CAP_SYS_ADMIN` the runtime asked for namespace mode falls back to
/// the published port, says so, and its containers still answer. The test
/// runs itself again in a child process whose capability bounding set lacks
/// `CAP_SYS_ADMIN` (`setpriv`); the child is the part below the env check.
#[tokio::test]
async fn without_the_capability_namespace_mode_falls_back_to_the_published_port() {
    const CHILD: &str = "PILOTLIGHT_TEST_NO_SYS_ADMIN";
    if std::env::var_os(CHILD).is_some() {
        let Some((rt, _cleanup)) = runtime_in(EndpointMode::Namespace).await else { return };
        assert!(pilotlight_core::support::netns::available().is_err(), "the child still has CAP_SYS_ADMIN");
        assert_eq!(rt.endpoint_mode(), EndpointMode::PublishedPort);
        let inst = rt.start(&hello("ns-fallback"), 1).await.unwrap();
        assert_eq!(inst.endpoint.netns(), None);
        assert!(inst.endpoint.addr().ip().is_loopback());
        let resp = testkit::http::get(inst.endpoint.addr(), "h", "/", Duration::from_secs(5)).await.unwrap();
        assert_eq!(resp.status, 200);
        rt.stop(&inst.id).await.unwrap();
        return;
    }
    let Some((rt, _cleanup)) = namespaced().await else { return };
    hello_image(&rt).await;
    if !testkit::require_tool("setpriv", "to run a child without CAP_SYS_ADMIN") {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = tokio::process::Command::new("setpriv")
        .args(["--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"])
        .arg(exe)
        .args(["without_the_capability_namespace_mode_falls_back_to_the_published_port", "--exact", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran no test:\n{stdout}\n{stderr}");
}
