//! The first request to a function at zero, on Docker, side by side
//! (interleaved, same image, same network, same loopback ports), one case per
//! tier and the raw engine's floor for each:
//!
//! 1. pilotlight with a warm pool: a paused instance is resumed by the
//!    activator; the request goes through the gateway and is held until then;
//!    once through the activation fast path (the activator resumes the
//!    instance in process and hands its endpoint to the held request), once
//!    through the queue (the split deployment's path: desired scale, nudge,
//!    reconcile, route);
//! 2. pilotlight with a created container (`prewarm: 0, precreate: 1`): started;
//! 3. pilotlight with no pool (`prewarm: 0`): the activator creates and starts one;
//! 4. the raw engine's unpause floor: `unpause` then poll until the first 200;
//! 5. the raw engine's start floor: start a created container, poll until 200;
//! 6. the raw engine's create+start floor: create, start, poll until the first 200.
//!
//! ```sh
//! bash scripts/bench.sh coldstart
//! ```
//! `BENCH_RUNS` (default 20) sets the samples per case. Then a density run:
//! `BENCH_DENSITY` functions (default 0: skipped) each with a paused pool of one.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::Docker;
use pilotlight::Runtime;
use pilotlight::core::model::{FunctionName, FunctionSpecInput, InstanceState, ScalingInput};
use pilotlight::core::testkit::http;
use pilotlight::docker::{LABEL_FUNCTION, LABEL_PLATFORM};

#[path = "common/docker.rs"]
mod common;
use common::{Error, IMAGE, Stage, first_200, pct, published_port, remove, stage};

const RAW_LABEL: &str = "io.pilotlight.bench-coldstart";

async fn raw_container(docker: &Docker, n: u64) -> Result<String, Error> {
    common::raw_container(docker, RAW_LABEL, n).await
}

fn spec(name: &str, prewarm: i64, precreate: i64) -> Result<pilotlight::FunctionSpec, Error> {
    let mut input = FunctionSpecInput::image(name, IMAGE, 8080);
    input.env.insert("LOG_REQUESTS".into(), "0".into());
    input.scaling =
        Some(ScalingInput { min: Some(0), prewarm: Some(prewarm), precreate: Some(precreate), ..Default::default() });
    input.limits = Some(pilotlight::core::model::LimitsInput { memory_mb: Some(32), ..Default::default() });
    Ok(input.validate()?)
}

/// Scales `name` to zero and waits until it runs nothing and keeps `pool`
/// paused and `standby` created instances.
async fn to_zero(stage: &Stage, name: &str, pool: usize, standby: usize) -> Result<(), Error> {
    let (platform, runtime) = (&stage.platform, &stage.runtime);
    let n: FunctionName = name.parse()?;
    platform.scale(&n, 0).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mine: Vec<_> = runtime.list().await?.into_iter().filter(|i| i.function == n).collect();
        let running = mine.iter().filter(|i| i.state == InstanceState::Running).count();
        let paused = mine.iter().filter(|i| i.state == InstanceState::Paused).count();
        let created = mine.iter().filter(|i| i.state == InstanceState::Created).count();
        let routed = platform.get(&n).await?.map_or(1, |r| r.status.endpoints.len());
        // Also wait for the engine to finish removing what left (a stop runs in the
        // background), so the measured request does not share the engine with it.
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_FUNCTION}={name}"), format!("{LABEL_PLATFORM}={}", stage.platform_id)],
        )]);
        let all = runtime
            .docker()
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await?
            .len();
        if running == 0 && paused == pool && created == standby && routed == 0 && all == pool + standby {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{name} did not settle at zero ({running} running, {paused} paused)").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Takes `name` to zero (see [`to_zero`]), then times its first request
/// through the edge until the 200, in ms.
async fn first_request_at_zero(stage: &Stage, name: &str, pool: usize, standby: usize) -> Result<f64, Error> {
    to_zero(stage, name, pool, standby).await?;
    let began = Instant::now();
    let r = http::get(stage.gateway.http_addr(), &format!("{name}.localhost"), "/", Duration::from_secs(30)).await?;
    if r.status != 200 {
        return Err(format!("{name}: {} {}", r.status, r.body).into());
    }
    Ok(began.elapsed().as_secs_f64() * 1e3)
}

fn row(label: &str, v: &[f64], floor: Option<(&str, &[f64])>) {
    let ratio = floor.map(|(n, f)| format!("   {:.2}x {n} at p50", pct(v, 0.5) / pct(f, 0.5))).unwrap_or_default();
    println!("  {label:<46} p50 {:>7.1} ms   p99 {:>7.1} ms{ratio}", pct(v, 0.5), pct(v, 0.99));
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemAvailable:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0) / 1024)
            })
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let density: usize = std::env::var("BENCH_DENSITY").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let stage = stage(format!("cold{}", std::process::id()), RAW_LABEL, Some(Duration::from_millis(50))).await?;
    let (runtime, docker, gw, platform) =
        (stage.runtime.clone(), stage.docker.clone(), stage.gateway.clone(), stage.platform.clone());
    println!(
        "first request to a function at zero, Docker {} (API {}), {runs} runs per case, interleaved",
        stage.engine.0, stage.engine.1
    );
    let edge = gw.http_addr();
    for (name, prewarm, precreate) in [("pool", 1, 0), ("standby", 0, 1), ("nopool", 0, 0)] {
        platform.deploy(spec(name, prewarm, precreate)?).await?;
        platform.wait_ready(&name.parse()?, Duration::from_secs(60)).await?;
    }
    let raw_paused = raw_container(&docker, 0).await?;
    docker.start_container(&raw_paused, None).await?;
    let raw_port = published_port(&docker, &raw_paused).await?;
    first_200(SocketAddr::from(([127, 0, 0, 1], raw_port)), "raw").await?;

    let (mut warm, mut warm_queue, mut standby, mut cold) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let fast_activator = platform.activator();
    let (mut unpause, mut start, mut create) = (Vec::new(), Vec::new(), Vec::new());
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for i in 0..runs {
        warm.push(first_request_at_zero(&stage, "pool", 1, 0).await?);
        gw.set_activator(stage.queue_activator.clone());
        warm_queue.push(first_request_at_zero(&stage, "pool", 1, 0).await?);
        gw.set_activator(fast_activator.clone());
        standby.push(first_request_at_zero(&stage, "standby", 0, 1).await?);
        cold.push(first_request_at_zero(&stage, "nopool", 0, 0).await?);

        docker.pause_container(&raw_paused).await?;
        let began = Instant::now();
        docker.unpause_container(&raw_paused).await?;
        let done = first_200(SocketAddr::from(([127, 0, 0, 1], raw_port)), "raw").await?;
        unpause.push(ms(done - began));

        let id = raw_container(&docker, 1_000_000 + i as u64).await?;
        let began = Instant::now();
        docker.start_container(&id, None).await?;
        let port = published_port(&docker, &id).await?;
        let done = first_200(SocketAddr::from(([127, 0, 0, 1], port)), "raw").await?;
        start.push(ms(done - began));
        remove(&docker, &id).await;

        let began = Instant::now();
        let id = raw_container(&docker, 1 + i as u64).await?;
        docker.start_container(&id, None).await?;
        let port = published_port(&docker, &id).await?;
        let done = first_200(SocketAddr::from(([127, 0, 0, 1], port)), "raw").await?;
        create.push(ms(done - began));
        remove(&docker, &id).await;
    }
    remove(&docker, &raw_paused).await;
    println!();
    row("raw engine: unpause, poll until the first 200", &unpause, None);
    row("raw engine: start created, poll until 200", &start, None);
    row("raw engine: create+start, poll until 200", &create, None);
    row("pilotlight, warm pool (resume), via gateway", &warm, Some(("the unpause floor", &unpause)));
    row("  the same through the queue (no fast path)", &warm_queue, Some(("the unpause floor", &unpause)));
    let p99 = |v: &[f64]| pct(v, 0.99);
    println!(
        "  warm pool targets: p50 {:.2}x the unpause floor (target <= 1.2x), p99 {:.2}x (target <= 1.5x)",
        pct(&warm, 0.5) / pct(&unpause, 0.5),
        p99(&warm) / p99(&unpause)
    );
    row("pilotlight, created (start), via gateway", &standby, Some(("the start floor", &start)));
    row("pilotlight, no pool (create+start), via gw", &cold, Some(("the create+start floor", &create)));
    println!(
        "  at p50, warm pool vs no pool: {:.1}x faster; created vs no pool: {:.2}x faster",
        pct(&cold, 0.5) / pct(&warm, 0.5),
        pct(&cold, 0.5) / pct(&standby, 0.5)
    );

    if density > 0 {
        println!("\ndensity: {density} functions, each at zero with a paused pool of one (32 MiB limit)");
        let before = mem_available_mib();
        let began = Instant::now();
        let mut deployed = 0;
        for chunk in (0..density).collect::<Vec<_>>().chunks(8) {
            let results = futures::future::join_all(chunk.iter().map(|i| {
                let platform = platform.clone();
                async move {
                    let name = format!("d{i:04}");
                    let mut s: FunctionSpecInput = spec(&name, 1, 0)?.into();
                    s.scaling = Some(ScalingInput { min: Some(0), prewarm: Some(1), ..Default::default() });
                    platform.deploy(s.validate()?).await?;
                    platform.wait_ready(&name.parse()?, Duration::from_secs(120)).await?;
                    platform.scale(&name.parse()?, 0).await?;
                    Ok::<_, Error>(())
                }
            }))
            .await;
            for r in results {
                if let Err(e) = r {
                    println!("  stopped at {deployed}: {e}");
                    break;
                }
                deployed += 1;
            }
            if deployed % 100 < 8 {
                println!("  {deployed} deployed after {:.0} s", began.elapsed().as_secs_f64());
            }
        }
        // Let every scale-to-zero land.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let running = runtime.list().await?.iter().filter(|i| i.state == InstanceState::Running).count();
            if running <= 2 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let after = mem_available_mib();
        let paused = runtime.list().await?.iter().filter(|i| i.state == InstanceState::Paused).count();
        println!(
            "  {deployed} functions in {:.0} s ({:.1}/s); {paused} paused containers; host memory used {} MiB ({:.1} MiB per function); control plane RSS {} MiB",
            began.elapsed().as_secs_f64(),
            deployed as f64 / began.elapsed().as_secs_f64(),
            before.saturating_sub(after),
            before.saturating_sub(after) as f64 / deployed.max(1) as f64,
            rss_kib(std::process::id()) / 1024
        );
        let r = http::get(edge, "d0000.localhost", "/", Duration::from_secs(30)).await?;
        println!("  d0000 at zero answers its first request: {}", r.status);
    }
    platform.shutdown().await;
    gw.shutdown().await;
    Ok(())
}
