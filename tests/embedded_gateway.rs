//! The embedded platform behind its default edge: memory queue, redb store,
//! process runtime and the gateway, with the real hello binary.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::sync::Arc;
use std::time::Duration;

use pilotlight::core::memory::MemoryQueue;
use pilotlight::core::model::Domain;
use pilotlight::core::testkit::{fixtures::hello_binary, http, unique};
use pilotlight::gateway::{Gateway, GatewayConfig};
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::redb::RedbStore;
use pilotlight::{FunctionName, FunctionSpecInput, Platform};

#[tokio::test]
async fn deployed_functions_answer_through_the_gateway_and_vanish_when_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: unique("gw-e2e"),
        stop_grace: Duration::from_secs(2),
        kill_on_drop: true,
        ..Default::default()
    }));
    let gw = Arc::new(
        Gateway::start(GatewayConfig::new(Domain::new("localhost").unwrap(), dir.path()).ephemeral()).await.unwrap(),
    );
    let p = Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap()))
        .runtime(runtime.clone())
        .router(gw.clone())
        .public_url(false, Some(gw.http_addr().port()))
        .build()
        .unwrap();
    gw.set_activator(p.activator());
    p.start().await.unwrap();

    let names: Vec<FunctionName> = ["one", "two", "three"].iter().map(|n| n.parse().unwrap()).collect();
    for n in &names {
        let r = p
            .deploy(
                FunctionSpecInput::exec(n.as_str(), hello_binary().to_str().unwrap(), &[], 8080).validate().unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.url, format!("http://{n}.localhost:{}/", gw.http_addr().port()));
    }
    for n in &names {
        p.wait_ready(n, Duration::from_secs(30)).await.unwrap();
        let resp = http::get(gw.http_addr(), &format!("{n}.localhost"), "/", Duration::from_secs(5)).await.unwrap();
        assert_eq!((resp.status, resp.body), (200, format!("Hello from {n}!\n")));
    }
    p.delete(&names[0]).await.unwrap();
    p.wait_deleted(&names[0], Duration::from_secs(30)).await.unwrap();
    let gone = http::get(gw.http_addr(), "one.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(gone.status, 404, "{}", gone.body);
    let still = http::get(gw.http_addr(), "two.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(still.status, 200);
    p.shutdown().await;
    gw.shutdown().await;
    runtime.stop_all().await.unwrap();
}
