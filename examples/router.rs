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

#[path = "common/signal.rs"]
mod signal;

/// router: the router worker and the gateway, alone (pair it with `deployer`).
#[derive(clap::Parser)]
#[command(after_help = "Example:\n  router --queue kafka://127.0.0.1:9092 --http 127.0.0.1:8080")]
struct Args {
    /// The shared queue: kafka://host:port[,...]/?prefix=... or amqp://host:5672.
    #[arg(long, env = "PILOTLIGHT_QUEUE", value_name = "URL", hide_env_values = true)]
    queue: pilotlight::connect::QueueUrl,
    /// Its own store and the development CA.
    #[arg(long, env = "PILOTLIGHT_DATA_DIR", value_name = "DIR", default_value = "pilotlight-router")]
    data: std::path::PathBuf,
    /// Functions are served at <name>.<domain>.
    #[arg(long, env = "PILOTLIGHT_DOMAIN", default_value = "localhost")]
    domain: String,
    /// The gateway's HTTP listener.
    #[arg(long, env = "PILOTLIGHT_HTTP_ADDR", value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: std::net::SocketAddr,
    /// Its HTTPS listener, or `off`.
    #[arg(long, env = "PILOTLIGHT_HTTPS_ADDR", value_name = "ADDR|off", default_value = "127.0.0.1:8443")]
    https: String,
    /// Names this router's status group.
    #[arg(long, env = "PILOTLIGHT_ROUTER_ID", default_value = "router")]
    id: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let a = <Args as clap::Parser>::parse();
    let (url, data, domain) = (&a.queue, &a.data, a.domain.as_str());
    std::fs::create_dir_all(data)?;
    let mut config = GatewayConfig::new(Domain::new(domain)?, data);
    config.http_addr = a.http;
    match a.https.as_str() {
        "off" => config.tls = TlsSource::Disabled,
        h => config.https_addr = h.parse().map_err(|e| format!("--https {h:?}: {e}"))?,
    }
    let gateway = Arc::new(Gateway::start(config).await?);
    let queue = pilotlight::connect::queue(url.as_str()).await?;
    let platform = Platform::builder()
        .queue(queue)
        .store(Arc::new(RedbStore::open(data.join("store.redb"))?))
        .router(gateway.clone())
        .domain(domain)?
        .public_url(false, Some(gateway.http_addr().port()))
        .status_group(&format!("status-router-{}", a.id))?
        .build()?;
    gateway.set_activator(platform.activator());
    platform.start().await?;
    println!("router ready: http://<name>.{domain}:{} (queue {url})", gateway.http_addr().port());
    signal::stop_signal().await;
    println!("router stopping");
    tokio::time::timeout(Duration::from_secs(30), platform.shutdown()).await?;
    gateway.shutdown().await;
    Ok(())
}
