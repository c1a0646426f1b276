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
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::Docker;
use futures::StreamExt;
use pilotlight::core::model::{FunctionName, FunctionSpecInput, ScalingInput};
use pilotlight::{Router, Runtime};

#[path = "common/docker.rs"]
mod common;
use common::{Error, IMAGE, first_200, published_port, remove, stage};

const RAW_LABEL: &str = "io.pilotlight.bench";

fn pct(v: Vec<f64>, p: f64) -> f64 {
    common::pct(&v, p)
}

/// Raw engine: create + start a container with a published loopback port on
/// the same network, then the first 200. No limits, no hardening: the floor.
async fn raw_start(docker: &Docker, n: u64) -> Result<(Duration, String), Error> {
    let began = Instant::now();
    let id = common::raw_container(docker, RAW_LABEL, n).await?;
    docker.start_container(&id, None).await?;
    let port = published_port(docker, &id).await?;
    let done = first_200(SocketAddr::from(([127, 0, 0, 1], port)), "raw").await?;
    Ok((done - began, id))
}

/// One instance and no pool: each deploy is one container start, like the
/// raw side's (the pool's paused instance would double the engine's work).
fn spec(name: &str) -> Result<pilotlight::FunctionSpec, Error> {
    let mut input = FunctionSpecInput::image(name, IMAGE, 8080);
    input.env.insert("LOG_REQUESTS".into(), "0".into());
    input.scaling = Some(ScalingInput { prewarm: Some(0), ..Default::default() });
    Ok(input.validate()?)
}

fn line(label: &str, v: &[f64]) {
    println!("  {label:<44} p50 {:>7.1} ms   p90 {:>7.1} ms", pct(v.to_vec(), 0.5), pct(v.to_vec(), 0.9));
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let runs: u64 = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let stage = stage(format!("bench{}", std::process::id()), RAW_LABEL, None).await?;
    let (runtime, docker, gw, platform) =
        (stage.runtime.clone(), stage.docker.clone(), stage.gateway.clone(), stage.platform.clone());
    println!(
        "pilotlight Docker benchmark: engine {} (API {}), {runs} runs per figure, 1.2 MB FROM-scratch hello",
        stage.engine.0, stage.engine.1
    );
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
                    // As the CLI does: wait for `ready`, then call (k waiters polling the
                    // in-process edge every millisecond would load the engine's cores).
                    platform.deploy(spec(&name)?).await?;
                    platform.wait_ready(&name.parse()?, Duration::from_secs(120)).await?;
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
