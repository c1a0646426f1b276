//! Benchmark of the Docker runtime against the raw engine, side by side:
//!
//! - create+start until the first 200 (bollard called directly) beside
//!   pilotlight's deploy until the first 200 through the gateway;
//! - unpause until the first 200 beside pilotlight's resume (runtime resume,
//!   first 200 through the gateway);
//! - 32 starts with 1, 4 and 16 at a time, for both.
//!
//! ```sh
//! bash scripts/bench.sh docker
//! ```
//! `BENCH_RUNS` (default 10) sets the samples per latency figure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use futures::StreamExt;
use pilotlight::core::memory::{MemoryQueue, MemoryStore};
use pilotlight::core::model::{Domain, FunctionName, FunctionSpecInput};
use pilotlight::core::testkit::fixtures::{DockerCleanup, hello_image_context};
use pilotlight::core::testkit::http;
use pilotlight::docker::{DockerRuntime, DockerRuntimeConfig, LABEL_PLATFORM, build_image_from_dir};
use pilotlight::gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight::{Platform, Router, Runtime};

type Error = Box<dyn std::error::Error + Send + Sync>;
const IMAGE: &str = "pilotlight/hello:bench";
const RAW_LABEL: &str = "io.pilotlight.bench";

/// Polls `GET /` (with `host`) at `addr` until a 200, returns when it came.
async fn first_200(addr: SocketAddr, host: &str) -> Result<Instant, Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http::get(addr, host, "/", Duration::from_millis(500)).await
            && r.status == 200
        {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!("no 200 from {addr} ({host}) within 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The Docker network both the raw containers and pilotlight's join, so the
/// floor and the product pay the same network setup.
const NETWORK: &str = "pilotlight-bench";

/// Raw engine: create + start a container with a published loopback port on
/// the same network, then the first 200. No limits, no hardening: the floor.
async fn raw_start(docker: &Docker, n: u64) -> Result<(Duration, String), Error> {
    let began = Instant::now();
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        env: Some(vec!["PORT=8080".into(), "LOG_REQUESTS=0".into()]),
        exposed_ports: Some(vec!["8080/tcp".into()]),
        labels: Some(HashMap::from([(RAW_LABEL.into(), "1".into())])),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "8080/tcp".into(),
                Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
            )])),
            network_mode: Some(NETWORK.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let name = format!("pl-bench-raw-{}-{n}", std::process::id());
    let id = docker
        .create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body)
        .await?
        .id;
    docker.start_container(&id, None).await?;
    let port = published_port(docker, &id).await?;
    let done = first_200(SocketAddr::from(([127, 0, 0, 1], port)), "raw").await?;
    Ok((done - began, id))
}

/// The loopback host port a raw container's 8080 is published on.
async fn published_port(docker: &Docker, id: &str) -> Result<u16, Error> {
    let port = docker
        .inspect_container(id, None)
        .await?
        .network_settings
        .and_then(|s| s.ports)
        .and_then(|p| p.get("8080/tcp").cloned().flatten())
        .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or("no published port")?;
    Ok(port)
}

async fn remove(docker: &Docker, id: &str) {
    let _ = docker.remove_container(id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await;
}

fn spec(name: &str) -> Result<pilotlight::FunctionSpec, Error> {
    let mut input = FunctionSpecInput::image(name, IMAGE, 8080);
    input.env.insert("LOG_REQUESTS".into(), "0".into());
    Ok(input.validate()?)
}

fn line(label: &str, v: &[f64]) {
    println!("  {label:<44} p50 {:>7.1} ms   p90 {:>7.1} ms", pct(v.to_vec(), 0.5), pct(v.to_vec(), 0.9));
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let runs: u64 = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let platform_id = format!("bench{}", std::process::id());
    let _cleanup =
        (DockerCleanup { label: format!("{LABEL_PLATFORM}={platform_id}") }, DockerCleanup { label: RAW_LABEL.into() });
    let runtime = Arc::new(
        DockerRuntime::connect(DockerRuntimeConfig { platform_id, network: NETWORK.into(), ..Default::default() })
            .await?,
    );
    let docker = runtime.docker().clone();
    let context = hello_image_context();
    build_image_from_dir(&docker, IMAGE, context.path()).await?;
    let version = docker.version().await?;
    println!(
        "pilotlight Docker benchmark: engine {} (API {}), {runs} runs per figure, 1.2 MB FROM-scratch hello",
        version.version.unwrap_or_default(),
        version.api_version.unwrap_or_default()
    );

    let dir = tempfile::tempdir()?;
    let mut gconfig = GatewayConfig::new(Domain::new("localhost")?, dir.path()).ephemeral();
    gconfig.tls = TlsSource::Disabled;
    let gw = Arc::new(Gateway::start(gconfig).await?);
    let platform = Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(Arc::new(MemoryStore::new()))
        .runtime(runtime.clone())
        .router(gw.clone())
        .build()?;
    gw.set_activator(platform.activator());
    platform.start().await?;
    let edge = gw.http_addr();

    // Cold start: raw create+start vs deploy, interleaved.
    let (mut raw, mut ours) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let (d, id) = raw_start(&docker, i).await?;
        raw.push(d.as_secs_f64() * 1e3);
        remove(&docker, &id).await;
        let name = format!("cold{i}");
        let began = Instant::now();
        platform.deploy(spec(&name)?).await?;
        let done = first_200(edge, &format!("{name}.localhost")).await?;
        ours.push((done - began).as_secs_f64() * 1e3);
        let fname: FunctionName = name.parse()?;
        platform.delete(&fname).await?;
        platform.wait_deleted(&fname, Duration::from_secs(60)).await?;
    }
    println!("\ncreate+start until the first 200");
    line("raw engine (bollard, same network and port)", &raw);
    line("pilotlight deploy, through the gateway", &ours);
    println!("  ratio pilotlight/raw at p50: {:.2}x", pct(ours.clone(), 0.5) / pct(raw.clone(), 0.5));

    // Warm start: raw unpause vs runtime resume through the edge.
    let (mut raw_u, mut ours_u) = (Vec::new(), Vec::new());
    let (_, raw_id) = raw_start(&docker, 9999).await?;
    let raw_port = published_port(&docker, &raw_id).await?;
    let inst = runtime.start(&spec("warm")?, 1).await?;
    let mut table = pilotlight::core::model::RouteTable::new();
    table.upsert(pilotlight::core::model::Route {
        name: "warm".parse()?,
        generation: 1,
        endpoints: vec![inst.endpoint],
        timeout_ms: 30_000,
    });
    gw.apply(&table).await?;
    for _ in 0..runs {
        docker.pause_container(&raw_id).await?;
        let began = Instant::now();
        docker.unpause_container(&raw_id).await?;
        let done = first_200(SocketAddr::from(([127, 0, 0, 1], raw_port)), "raw").await?;
        raw_u.push((done - began).as_secs_f64() * 1e3);
        runtime.pause(&inst.id).await?;
        let began = Instant::now();
        runtime.resume(&inst.id).await?;
        let done = first_200(edge, "warm.localhost").await?;
        ours_u.push((done - began).as_secs_f64() * 1e3);
    }
    remove(&docker, &raw_id).await;
    runtime.stop(&inst.id).await?;
    println!("\nunpause until the first 200");
    line("raw engine unpause, direct", &raw_u);
    line("pilotlight resume, through the gateway", &ours_u);
    println!("  ratio pilotlight/raw at p50: {:.2}x", pct(ours_u.clone(), 0.5) / pct(raw_u.clone(), 0.5));

    // Throughput: 32 starts, k at a time.
    println!("\n32 starts until each answers 200, k at a time (starts/s)");
    for k in [1usize, 4, 16] {
        let began = Instant::now();
        let ids: Vec<String> = futures::stream::iter(0..32u64)
            .map(|i| raw_start(&docker, 100_000 + k as u64 * 1000 + i))
            .buffer_unordered(k)
            .map(|r| r.map(|(_, id)| id))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let raw_rate = 32.0 / began.elapsed().as_secs_f64();
        for id in &ids {
            remove(&docker, id).await;
        }
        let began = Instant::now();
        let names: Vec<String> = (0..32).map(|i| format!("t{k}x{i}")).collect();
        let results: Vec<Result<(), Error>> = futures::stream::iter(names.iter().cloned())
            .map(|name| {
                let platform = platform.clone();
                async move {
                    platform.deploy(spec(&name)?).await?;
                    first_200(edge, &format!("{name}.localhost")).await?;
                    Ok(())
                }
            })
            .buffer_unordered(k)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        let ours_rate = 32.0 / began.elapsed().as_secs_f64();
        println!(
            "  {k:>2} at a time: raw engine {raw_rate:>5.2}/s, pilotlight {ours_rate:>5.2}/s ({:.2}x)",
            ours_rate / raw_rate
        );
        for name in &names {
            platform.delete(&name.parse()?).await?;
        }
        for name in &names {
            platform.wait_deleted(&name.parse()?, Duration::from_secs(120)).await?;
        }
    }
    platform.shutdown().await;
    gw.shutdown().await;
    Ok(())
}
