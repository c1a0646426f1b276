//! The runtime worker on its own: consumes `deployments` from a shared queue,
//! runs functions (local processes), publishes their endpoints. Pair it with
//! `examples/router.rs`; they share nothing but the queue.
//!
//! ```sh
//! cargo run --example deployer -- --queue kafka://127.0.0.1:9092 --data ./deployer-data
//! ```
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::sync::Arc;
use std::time::Duration;

use pilotlight::Platform;
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::redb::RedbStore;

#[path = "common/args.rs"]
mod args;

const USAGE: &str = "deployer: the runtime worker, alone
  --queue URL        the shared queue: kafka://host:port[,...]/?prefix=... or amqp://host:5672 (required)
  --data DIR         where its own store lives (default ./pilotlight-deployer)
  --platform-id ID   the label on the processes it starts (default pilotlight)
  --domain D         functions are served at <name>.<D> (default localhost)";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let a = args::parse(USAGE, &["queue", "data", "platform-id", "domain"])?;
    let url = a.get("queue").ok_or(format!("--queue is required\n\n{USAGE}"))?;
    let data = std::path::PathBuf::from(a.get("data").map_or("pilotlight-deployer", String::as_str));
    std::fs::create_dir_all(&data)?;
    let id = a.get("platform-id").map_or("pilotlight", String::as_str);
    let queue = pilotlight::connect::queue(url).await?;
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig { platform_id: id.into(), ..Default::default() }));
    let platform = Platform::builder()
        .queue(queue)
        .store(Arc::new(RedbStore::open(data.join("store.redb"))?))
        .runtime(runtime)
        .domain(a.get("domain").map_or("localhost", String::as_str))?
        .status_group(&format!("status-deployer-{id}"))?
        .build()?;
    platform.start().await?;
    println!("deployer ready: queue {url}, store {}", data.join("store.redb").display());
    args::stop_signal().await;
    println!("deployer stopping");
    tokio::time::timeout(Duration::from_secs(30), platform.shutdown()).await?;
    Ok(())
}
