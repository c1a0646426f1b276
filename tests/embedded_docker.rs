//! The platform on Docker behind the gateway: hello as a FROM-scratch
//! container, answering through the edge.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::sync::Arc;
use std::time::Duration;

use pilotlight::core::memory::MemoryQueue;
use pilotlight::core::model::Domain;
use pilotlight::core::ports::RuntimeError;
use pilotlight::core::testkit::fixtures::{DockerCleanup, hello_image_context};
use pilotlight::core::testkit::{http, unique};
use pilotlight::docker::{DockerRuntime, DockerRuntimeConfig, LABEL_PLATFORM, build_image_from_dir};
use pilotlight::gateway::{Gateway, GatewayConfig};
use pilotlight::redb::RedbStore;
use pilotlight::{FunctionName, FunctionSpecInput, Platform, Runtime};

#[tokio::test]
async fn hello_in_a_container_answers_through_the_gateway() {
    let platform_id = unique("e2e").replace('_', "-");
    let _cleanup = DockerCleanup { label: format!("{LABEL_PLATFORM}={platform_id}") };
    let store_dir = tempfile::tempdir().unwrap();
    let Some((p, runtime, gw, _dir)) = docker_platform(&platform_id, &store_dir.path().join("s.redb")).await else {
        return;
    };
    let name: FunctionName = "boxed".parse().unwrap();
    p.deploy(FunctionSpecInput::image("boxed", "pilotlight/hello:e2e", 8080).validate().unwrap()).await.unwrap();
    p.wait_ready(&name, Duration::from_secs(60)).await.unwrap();
    let resp = http::get(gw.http_addr(), "boxed.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!((resp.status, resp.body.as_str()), (200, "Hello from boxed!\n"));
    p.delete(&name).await.unwrap();
    p.wait_deleted(&name, Duration::from_secs(60)).await.unwrap();
    assert!(runtime.list().await.unwrap().is_empty(), "the container is gone");
    p.shutdown().await;
    gw.shutdown().await;
}

/// A platform on Docker (with its own labels) behind a gateway, sharing `store`.
async fn docker_platform(
    platform_id: &str,
    store: &std::path::Path,
) -> Option<(Platform, Arc<DockerRuntime>, Arc<Gateway>, tempfile::TempDir)> {
    let config = DockerRuntimeConfig {
        platform_id: platform_id.into(),
        network: "pilotlight-test".into(),
        ..Default::default()
    };
    let runtime = match DockerRuntime::connect(config).await {
        Ok(rt) => Arc::new(rt),
        Err(e @ RuntimeError::Unavailable(_)) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "Docker is required under CI: {e}");
            eprintln!("SKIPPED: {e}");
            return None;
        }
        Err(e) => panic!("{e}"),
    };
    let context = hello_image_context();
    build_image_from_dir(runtime.docker(), "pilotlight/hello:e2e", context.path()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = Arc::new(
        Gateway::start(GatewayConfig::new(Domain::new("localhost").unwrap(), dir.path()).ephemeral()).await.unwrap(),
    );
    let p = Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(Arc::new(RedbStore::open(store).unwrap()))
        .runtime(runtime.clone())
        .router(gw.clone())
        .build()
        .unwrap();
    gw.set_activator(p.activator());
    p.start().await.unwrap();
    Some((p, runtime, gw, dir))
}

fn boxed(name: &str, memory_mb: i64) -> pilotlight::FunctionSpec {
    let mut input = FunctionSpecInput::image(name, "pilotlight/hello:e2e", 8080);
    input.limits = Some(pilotlight::core::model::LimitsInput { memory_mb: Some(memory_mb), ..Default::default() });
    // No pool of paused instances: these tests count one container per function.
    input.scaling = Some(pilotlight::core::model::ScalingInput { prewarm: Some(0), ..Default::default() });
    input.validate().unwrap()
}

#[tokio::test]
async fn an_oom_killed_or_killed_container_is_reported_and_replaced() {
    use futures::StreamExt;
    use pilotlight::core::ports::{ExitReason, RuntimeEvent};
    let platform_id = unique("oom").replace('_', "-");
    let _cleanup = DockerCleanup { label: format!("{LABEL_PLATFORM}={platform_id}") };
    let store_dir = tempfile::tempdir().unwrap();
    let Some((p, runtime, gw, _dir)) = docker_platform(&platform_id, &store_dir.path().join("s.redb")).await else {
        return;
    };
    let mut events = runtime.events();
    let name: FunctionName = "hungry".parse().unwrap();
    p.deploy(boxed("hungry", 16)).await.unwrap();
    let first = p.wait_ready(&name, Duration::from_secs(60)).await.unwrap().status.endpoints;

    // Past its 16 MiB limit: the kernel kills it.
    let _ = http::get(gw.http_addr(), "hungry.localhost", "/alloc?mb=64", Duration::from_secs(10)).await;
    let ev = tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("an exit event").unwrap();
    let RuntimeEvent::Exited { function, reason, .. } = ev else { panic!("{ev:?}") };
    assert_eq!((function.as_str(), reason), ("hungry", ExitReason::OutOfMemory));
    let replaced = wait_new_endpoint(&p, &name, &first).await;
    let resp = http::get(gw.http_addr(), "hungry.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(resp.status, 200, "the replacement serves");

    // Killed from outside: replaced too, and the dead containers are cleaned up.
    let victim = runtime.list().await.unwrap().remove(0);
    runtime.docker().kill_container(victim.id.as_str(), None::<bollard_kill::KillContainerOptions>).await.unwrap();
    wait_new_endpoint(&p, &name, &replaced).await;
    let left = runtime.list().await.unwrap();
    assert_eq!(left.len(), 1, "one live instance, no dead ones kept: {left:?}");
    p.shutdown().await;
    gw.shutdown().await;
}

use pilotlight::docker::bollard_kill;

async fn wait_new_endpoint(
    p: &Platform,
    name: &FunctionName,
    old: &[pilotlight::core::model::Endpoint],
) -> Vec<pilotlight::core::model::Endpoint> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(r)) = p.get(name).await
            && r.status.phase == pilotlight::core::model::Phase::Ready
            && !r.status.endpoints.is_empty()
            && r.status.endpoints != old
        {
            return r.status.endpoints;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no replacement within 60 s; status: {:?}",
            p.get(name).await.map(|r| r.map(|r| r.status))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn twenty_concurrent_deploys_become_ready_and_a_restart_adopts_them() {
    let platform_id = unique("many").replace('_', "-");
    let _cleanup = DockerCleanup { label: format!("{LABEL_PLATFORM}={platform_id}") };
    let store_dir = tempfile::tempdir().unwrap();
    let store = store_dir.path().join("s.redb");
    let names: Vec<FunctionName> = (0..20).map(|i| format!("c{i:02}").parse().unwrap()).collect();
    let before = {
        let Some((p, runtime, gw, _dir)) = docker_platform(&platform_id, &store).await else { return };
        let deploys = futures::future::join_all(names.iter().map(|n| p.deploy(boxed(n.as_str(), 32)))).await;
        assert!(deploys.iter().all(Result::is_ok));
        for n in &names {
            p.wait_ready(n, Duration::from_secs(120)).await.unwrap();
            let resp = http::get(gw.http_addr(), &format!("{n}.localhost"), "/", Duration::from_secs(5)).await.unwrap();
            assert_eq!(resp.body, format!("Hello from {n}!\n"));
        }
        p.shutdown().await;
        gw.shutdown().await;
        let ids: std::collections::BTreeSet<_> = runtime.list().await.unwrap().into_iter().map(|i| i.id).collect();
        ids
    };
    assert_eq!(before.len(), 20);
    // A new platform process: same labels, same store. Resync adopts; no duplicates, no orphans.
    let Some((p, runtime, gw, _dir)) = docker_platform(&platform_id, &store).await else { return };
    for n in &names {
        p.wait_ready(n, Duration::from_secs(60)).await.unwrap();
    }
    let rt = runtime.clone();
    pilotlight::core::testkit::eventually(Duration::from_secs(30), "resync routed all 20 again", || {
        let gw = gw.clone();
        async move {
            let r = http::get(gw.http_addr(), "c19.localhost", "/", Duration::from_secs(2)).await;
            r.is_ok_and(|r| r.status == 200)
        }
    })
    .await;
    let after: std::collections::BTreeSet<_> = rt.list().await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(after, before, "the same containers, adopted");
    p.shutdown().await;
    gw.shutdown().await;
}
