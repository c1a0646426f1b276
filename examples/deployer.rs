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

#[path = "common/signal.rs"]
mod signal;

/// deployer: the runtime worker, alone (pair it with `router`).
#[derive(clap::Parser)]
#[command(after_help = "Example:\n  deployer --queue kafka://127.0.0.1:9092 --data ./deployer-data")]
struct Args {
    /// The shared queue: kafka://host:port[,...]/?prefix=... or amqp://host:5672.
    #[arg(long, env = "PILOTLIGHT_QUEUE", value_name = "URL", hide_env_values = true)]
    queue: pilotlight::connect::QueueUrl,
    /// Where its own store lives.
    #[arg(long, env = "PILOTLIGHT_DATA_DIR", value_name = "DIR", default_value = "pilotlight-deployer")]
    data: std::path::PathBuf,
    /// The label on the processes it starts.
    #[arg(long, env = "PILOTLIGHT_PLATFORM_ID", value_name = "ID", default_value = "pilotlight")]
    platform_id: String,
    /// Functions are served at <name>.<domain>.
    #[arg(long, env = "PILOTLIGHT_DOMAIN", default_value = "localhost")]
    domain: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let a = <Args as clap::Parser>::parse();
    let (url, data, id) = (&a.queue, &a.data, a.platform_id.as_str());
    std::fs::create_dir_all(data)?;
    let queue = pilotlight::connect::queue(url.as_str()).await?;
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig { platform_id: id.into(), ..Default::default() }));
    let platform = Platform::builder()
        .queue(queue)
        .store(Arc::new(RedbStore::open(data.join("store.redb"))?))
        .runtime(runtime)
        .domain(&a.domain)?
        .status_group(&format!("status-deployer-{id}"))?
        .build()?;
    platform.start().await?;
    println!("deployer ready: queue {url}, store {}", data.join("store.redb").display());
    signal::stop_signal().await;
    println!("deployer stopping");
    tokio::time::timeout(Duration::from_secs(30), platform.shutdown()).await?;
    Ok(())
}
