//! The platform on Docker behind the gateway: hello as a FROM-scratch
//! container, answering through the edge.

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
    let config = DockerRuntimeConfig {
        platform_id: platform_id.clone(),
        network: "pilotlight-test".into(),
        ..Default::default()
    };
    let runtime = match DockerRuntime::connect(config).await {
        Ok(rt) => Arc::new(rt),
        Err(e @ RuntimeError::Unavailable(_)) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "Docker is required under CI: {e}");
            eprintln!("SKIPPED: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let _cleanup = DockerCleanup { label: format!("{LABEL_PLATFORM}={platform_id}") };
    let context = hello_image_context();
    build_image_from_dir(runtime.docker(), "pilotlight/hello:e2e", context.path()).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let gw = Arc::new(
        Gateway::start(GatewayConfig::new(Domain::new("localhost").unwrap(), dir.path()).ephemeral()).await.unwrap(),
    );
    let p = Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap()))
        .runtime(runtime.clone())
        .router(gw.clone())
        .build()
        .unwrap();
    gw.set_activator(Arc::new(p.clone()));
    p.start().await.unwrap();
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
