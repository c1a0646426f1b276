//! The smallest program that embeds pilotlight: the memory queue, the redb
//! store, the process runtime and the built-in gateway. It deploys the hello
//! function, waits until it is ready, calls it through the gateway at
//! `http://hello.localhost:<port>/`, deletes it and exits.
//!
//! ```sh
//! cargo build -p hello && cargo run --example embed
//! ```
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pilotlight::core::memory::MemoryQueue;
use pilotlight::core::model::Domain;
use pilotlight::gateway::{Gateway, GatewayConfig};
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
        kill_on_drop: true,
        ..Default::default()
    }));
    // Free loopback ports, so the example never collides with a running server.
    let gateway = Arc::new(Gateway::start(GatewayConfig::new(Domain::new("localhost")?, &data).ephemeral()).await?);
    let platform = Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(Arc::new(RedbStore::open(data.join("store.redb"))?))
        .runtime(runtime.clone())
        .router(gateway.clone())
        .public_url(false, Some(gateway.http_addr().port()))
        .build()?;
    gateway.set_activator(platform.activator());
    platform.start().await?;
    println!("gateway on http://{} and https://{}", gateway.http_addr(), gateway.https_addr().ok_or("no https")?);
    if let Some(ca) = gateway.dev_ca_path() {
        println!("development CA (trust it for HTTPS): {}", ca.display());
    }

    let spec = FunctionSpecInput::exec("hello", &hello.to_string_lossy(), &[], 8080).validate()?;
    let receipt = platform.deploy(spec).await?;
    println!("deploying {} (generation {}) at {}", receipt.name, receipt.generation, receipt.url);
    let name: FunctionName = "hello".parse()?;
    let ready = platform.wait_ready(&name, Duration::from_secs(30)).await?;
    println!("ready: {} instance(s)", ready.status.endpoints.len());
    // `*.localhost` resolves to loopback; connect to the gateway and name the host.
    let body = get(gateway.http_addr(), "hello.localhost").await?;
    println!("GET {} -> {}", receipt.url, body.trim());

    platform.delete(&name).await?;
    platform.wait_deleted(&name, Duration::from_secs(30)).await?;
    println!("deleted hello; its process is gone");
    platform.shutdown().await;
    gateway.shutdown().await;
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
