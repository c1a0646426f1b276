//! The router worker on its own, with the gateway as its edge: consumes
//! `routes` from a shared queue and serves `<name>.<domain>`. A request for a
//! function with no instance asks the deployer (over the queue) to start one.
//!
//! ```sh
//! cargo run --example router -- --queue kafka://127.0.0.1:9092 --http 127.0.0.1:8080
//! ```
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::sync::Arc;
use std::time::Duration;

use pilotlight::Platform;
use pilotlight::core::model::Domain;
use pilotlight::gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight::redb::RedbStore;

#[path = "common/args.rs"]
mod args;

const USAGE: &str = "router: the router worker and the gateway, alone
  --queue URL     the shared queue: kafka://host:port[,...]/?prefix=... or amqp://host:5672 (required)
  --data DIR      its own store and the development CA (default ./pilotlight-router)
  --domain D      functions are served at <name>.<D> (default localhost)
  --http ADDR     the gateway's HTTP listener (default 127.0.0.1:8080)
  --https ADDR    its HTTPS listener, or `off` (default 127.0.0.1:8443)
  --id ID         names this router's status group (default router)";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let a = args::parse(USAGE, &["queue", "data", "domain", "http", "https", "id"])?;
    let url = a.get("queue").ok_or(format!("--queue is required\n\n{USAGE}"))?;
    let data = std::path::PathBuf::from(a.get("data").map_or("pilotlight-router", String::as_str));
    std::fs::create_dir_all(&data)?;
    let domain = a.get("domain").map_or("localhost", String::as_str);
    let mut config = GatewayConfig::new(Domain::new(domain)?, &data);
    if let Some(h) = a.get("http") {
        config.http_addr = h.parse().map_err(|e| format!("--http {h:?}: {e}"))?;
    }
    match a.get("https").map(String::as_str) {
        Some("off") => config.tls = TlsSource::Disabled,
        Some(h) => config.https_addr = h.parse().map_err(|e| format!("--https {h:?}: {e}"))?,
        None => {}
    }
    let gateway = Arc::new(Gateway::start(config).await?);
    let queue = pilotlight::connect::queue(url).await?;
    let platform = Platform::builder()
        .queue(queue)
        .store(Arc::new(RedbStore::open(data.join("store.redb"))?))
        .router(gateway.clone())
        .domain(domain)?
        .public_url(false, Some(gateway.http_addr().port()))
        .status_group(&format!("status-router-{}", a.get("id").map_or("router", String::as_str)))?
        .build()?;
    gateway.set_activator(platform.activator());
    platform.start().await?;
    println!("router ready: http://<name>.{domain}:{} (queue {url})", gateway.http_addr().port());
    args::stop_signal().await;
    println!("router stopping");
    tokio::time::timeout(Duration::from_secs(30), platform.shutdown()).await?;
    gateway.shutdown().await;
    Ok(())
}
