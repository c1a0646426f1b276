//! The server with its store on etcd (feature `etcd`; Debian's `etcd-server`)
//! and its queue on RabbitMQ: what one node deploys, another node started on
//! the same etcd finds and serves; an etcd that cannot be reached stops a
//! start before anything is written.
//!
//! Under CI a missing etcd or RabbitMQ fails the tests; on a laptop they are
//! skipped with the reason printed.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use pilotlight::api::client::Client;
use pilotlight::core::model::Phase;
use pilotlight::core::testkit::{fixtures::hello_binary, free_port, http, unique};
use pilotlight::etcd::local::{ETCD, LocalMember, clients, start_cluster};
use pilotlight::server::{RuntimeKind, Server, ServerConfig, ServerError};
use serde_json::json;

/// One etcd member on loopback ports, killed when dropped.
struct Etcd(#[allow(dead_code)] Vec<LocalMember>, String);

fn etcd(dir: &std::path::Path) -> Option<Etcd> {
    if !std::path::Path::new(ETCD).exists() {
        assert!(!common::ci(), "etcd is required under CI (apt install etcd-server)");
        eprintln!("SKIPPED: no {ETCD} (apt install etcd-server)");
        return None;
    }
    let members = start_cluster(dir, 1).unwrap();
    let client = clients(&members);
    Some(Etcd(members, client))
}

fn node(data: &std::path::Path, store: &str, queue: &str, id: &str) -> ServerConfig {
    ServerConfig {
        data_dir: data.to_path_buf(),
        api_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        https_addr: "off".into(),
        runtime: RuntimeKind::Process,
        store: store.parse().unwrap(),
        queue: queue.parse().unwrap(),
        platform_id: id.into(),
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn an_unreachable_etcd_stops_the_start_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let store = format!("etcd://127.0.0.1:{port}/?timeout_ms=500&user=u&password=hunter2");
    let cfg = node(&data, &store, "amqp://127.0.0.1:5672", &unique("gone"));
    let Err(e) = Server::start(cfg).await else { panic!("started without etcd") };
    let text = e.to_string();
    assert!(matches!(e, ServerError::Start { part: "store", .. }), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")) && text.contains("cannot be reached"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!data.exists(), "nothing written: {}", data.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn what_one_node_deploys_another_on_the_same_etcd_finds_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = etcd(dir.path()) else { return };
    let Some(queue) = common::amqp_url("etcd").await else { return };
    let store = format!("etcd://{}/?prefix=/{}", etcd.1, unique("shared"));
    let id = unique("etcd-node");
    // Wait for etcd to answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        match Server::start(node(&dir.path().join("a"), &store, &queue, &id)).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(first.summary().join("\n").contains("(shared)"));
    let c = Client::new(&format!("http://{}", first.api_addr()), first.token().reveal()).unwrap();
    let mut events = c.events().await.unwrap();
    let spec = json!({"name": "shared", "exec": {"program": hello_binary().to_str().unwrap()}, "port": 8080});
    let receipt = c.deploy(&spec).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if e.name == "shared" && e.generation == receipt.generation && e.phase == Phase::Ready {
                return;
            }
        }
    })
    .await
    .expect("ready on the first node");
    let resp = http::get(first.http_addr(), "shared.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(resp.status, 200);
    // The first node goes (its instance keeps running, as on any restart).
    first.shutdown().await;
    drop(first);

    // Another node, its own data directory, the same etcd: the function is there and serves.
    let second = Server::start(node(&dir.path().join("b"), &store, &queue, &id)).await.unwrap();
    let name = "shared".parse().unwrap();
    let record = second.platform().get(&name).await.unwrap().expect("the record is in etcd");
    assert_eq!(record.generation, receipt.generation);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http::get(second.http_addr(), "shared.localhost", "/", Duration::from_secs(5)).await
            && r.status == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "the second node does not serve it");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Deleted through the second node: the instance goes, the record leaves etcd.
    second.platform().delete(&name).await.unwrap();
    second.platform().wait_deleted(&name, Duration::from_secs(60)).await.unwrap();
    second.shutdown().await;
    drop(etcd);
}
