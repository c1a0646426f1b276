//! The Docker runtime against the real engine. The hello image is built here,
//! `FROM scratch` around a static binary, through the engine's build API.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::time::Duration;

use futures::StreamExt;
use pilotlight_core::model::{FunctionSpec, FunctionSpecInput, LimitsInput};
use pilotlight_core::ports::{ExitReason, Runtime, RuntimeError, RuntimeEvent};
use pilotlight_core::testkit::fixtures::DockerCleanup;
use pilotlight_core::testkit::{self, runtime::RuntimeFixture, unique, within};
use pilotlight_docker::{DockerRuntime, DockerRuntimeConfig, LABEL_PLATFORM, build_image_from_dir};
use tokio::sync::OnceCell;

const IMAGE: &str = "pilotlight/hello:test";

/// A runtime on the local engine, or `None` (skip) when there is none and this is not CI.
async fn runtime() -> Option<(DockerRuntime, DockerCleanup)> {
    let platform_id = unique("t").replace('_', "-");
    let config = DockerRuntimeConfig {
        platform_id: platform_id.clone(),
        network: "pilotlight-test".into(),
        ready_timeout: Duration::from_secs(15),
        stop_grace: Duration::from_secs(1),
        ..Default::default()
    };
    match DockerRuntime::connect(config).await {
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
