//! The smallest program that embeds pilotlight: the memory queue, the redb
//! store, the process runtime and core's recording router. It deploys the
//! hello function, waits until it is ready, calls it, deletes it and exits.
//!
//! ```sh
//! cargo build -p hello && cargo run --example embed
//! ```
//!
//! Until the gateway lands, the router only records the route table, so this
//! example calls the instance's endpoint directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pilotlight::core::memory::{MemoryQueue, MemoryRouter};
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::redb::RedbStore;
use pilotlight::{FunctionName, FunctionSpecInput, Platform};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let hello = hello_path()?;
    let data = std::env::var_os("PILOTLIGHT_DATA").map_or_else(|| PathBuf::from("pilotlight-data"), PathBuf::from);
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: "pilotlight-embed".into(),
        ..Default::default()
    }));
    let router = Arc::new(MemoryRouter::new());
    let platform = Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(Arc::new(RedbStore::open(data.join("store.redb"))?))
        .runtime(runtime.clone())
        .router(router.clone())
        .build()?;
    platform.start().await?;

    let spec = FunctionSpecInput::exec("hello", &hello.to_string_lossy(), &[], 8080).validate()?;
    let receipt = platform.deploy(spec).await?;
    println!("deploying {} (generation {}) at {}", receipt.name, receipt.generation, receipt.url);
    let name: FunctionName = "hello".parse()?;
    let ready = platform.wait_ready(&name, Duration::from_secs(30)).await?;
    let endpoint = ready.status.endpoints.first().ok_or("ready without an endpoint")?.addr();
    println!("ready: {} instance(s), first at {endpoint}", ready.status.endpoints.len());
    println!("route table: {} route(s)", router.table().len());
    let body = get(endpoint, "hello.localhost").await?;
    println!("GET / -> {}", body.trim());

    platform.delete(&name).await?;
    platform.wait_deleted(&name, Duration::from_secs(30)).await?;
    println!("deleted hello; its process is gone");
    platform.shutdown().await;
    runtime.stop_all().await?;
    Ok(())
}

/// The hello binary next to this example (`target/<profile>/hello`).
fn hello_path() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(|p| p.parent()).ok_or("cannot locate the target directory")?;
    let hello = profile_dir.join("hello");
    if hello.exists() {
        Ok(hello)
    } else {
        Err(format!("{} is missing: run `cargo build -p hello` first", hello.display()).into())
    }
}

async fn get(addr: SocketAddr, host: &str) -> Result<String, Error> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("malformed response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected response: {head}").into());
    }
    Ok(body.to_owned())
}
