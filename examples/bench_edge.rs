//! The edge on a Docker function, side by side in one run: how much the
//! engine's userland proxy (docker-proxy, on a published port) costs, and what
//! the gateway gains by connecting inside the container's own network
//! namespace instead.
//!
//! ```sh
//! bash scripts/bench.sh edge
//! ```
//!
//! 1. Requests (wrk, 1 and 32 connections, paths interleaved, medians of the
//!    rounds) to one hello container per platform (`max: 1`, so the autoscaler
//!    keeps one) through:
//!    - direct to the published port (docker-proxy → container);
//!    - NGINX → the published port (the seed's architecture);
//!    - the gateway → the published port;
//!    - the gateway → the container's namespace (no published port).
//!
//!    Each proxy's CPU per request is split into user and kernel; docker-proxy's
//!    is shown apart.
//! 2. Cold start: deploy (no pool) until the first 200 through the gateway, for
//!    `network: bridge` on a published port, bridge through the namespace, and
//!    `network: none`, beside the raw engine's floors: create+start until the
//!    first 200 on a published port, and on the host network.
//!
//! `BENCH_SECONDS` (per wrk run, default 5), `BENCH_ROUNDS` (default 3),
//! `BENCH_RUNS` (cold starts per case, default 10).
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions};
use pilotlight::core::model::{Endpoint, FunctionName, FunctionSpecInput, LimitsInput, ScalingInput};
use pilotlight::core::testkit::http;
use pilotlight::docker::{EndpointMode, LABEL_FUNCTION, LABEL_PLATFORM};

#[path = "common/docker.rs"]
mod common;
use common::{Error, IMAGE, Stage, first_200, pct, published_port, remove, stage_in};
#[path = "common/wrk.rs"]
mod wrk;
use wrk::{Sample, env_u64, median_sample, need, wrk};
#[path = "common/proxy.rs"]
mod proxy;
use proxy::{cpu_total, docker_proxy_pid, nginx_pids, start_nginx, wait_port};

const RAW_LABEL: &str = "io.pilotlight.bench-edge";
const HOST: &str = "hello.localhost";

fn spec(name: &str, min: i64, max: Option<i64>, network: Option<&str>) -> Result<pilotlight::FunctionSpec, Error> {
    let mut input = FunctionSpecInput::image(name, IMAGE, 8080);
    input.env.insert("LOG_REQUESTS".into(), "0".into());
    input.scaling =
        Some(ScalingInput { min: Some(min), max, prewarm: Some(0), precreate: Some(0), ..Default::default() });
    input.limits = Some(LimitsInput { memory_mb: Some(32), ..Default::default() });
    input.network = network.map(str::to_owned);
    Ok(input.validate()?)
}

/// Waits until the engine holds no container of `name` on `stage`, so the
/// next measurement does not share the engine with a removal.
async fn gone(stage: &Stage, name: &str) -> Result<(), Error> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{LABEL_FUNCTION}={name}"), format!("{LABEL_PLATFORM}={}", stage.platform_id)],
    )]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let options = ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() };
        if stage.docker.list_containers(Some(options)).await?.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{name}'s containers were not removed within 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deploys `name` (no pool) and times it until its first 200 through the
/// stage's gateway, in ms; then deletes it and waits until it is gone.
async fn cold_start(stage: &Stage, name: &str, network: Option<&str>) -> Result<f64, Error> {
    let spec = spec(name, 1, None, network)?;
    let began = Instant::now();
    stage.platform.deploy(spec).await?;
    let done = first_200(stage.gateway.http_addr(), &format!("{name}.localhost")).await?;
    let ms = (done - began).as_secs_f64() * 1e3;
    stage.platform.delete(&name.parse::<FunctionName>()?).await?;
    gone(stage, name).await?;
    Ok(ms)
}

/// The raw engine on the host network: create, start, poll until the first 200.
async fn raw_host_network(docker: &bollard::Docker, n: u64) -> Result<f64, Error> {
    let port = pilotlight::core::testkit::free_port();
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        env: Some(vec![format!("PORT={port}"), "LOG_REQUESTS=0".into()]),
        labels: Some(HashMap::from([(RAW_LABEL.into(), "1".into())])),
        host_config: Some(HostConfig { network_mode: Some("host".into()), ..Default::default() }),
        ..Default::default()
    };
    let name = format!("pl-rawhost-{}-{n}", std::process::id());
    let began = Instant::now();
    let id = docker
        .create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body)
        .await?
        .id;
    docker.start_container(&id, None).await?;
    let done = first_200(SocketAddr::from(([127, 0, 0, 1], port)), "raw").await?;
    remove(docker, &id).await;
    Ok((done - began).as_secs_f64() * 1e3)
}

/// Polls `GET /` at `endpoint` (inside a namespace) until a 200.
async fn first_200_in(endpoint: &Endpoint) -> Result<Instant, Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http::get_endpoint(endpoint, "raw", "/", Duration::from_millis(500)).await
            && r.status == 200
        {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!("no 200 from {endpoint:?} within 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The raw engine reached inside the container's namespace (no published
/// port) on `network` (`none` or the bench's bridge): create, start, read the
/// sandbox key, poll until the first 200.
async fn raw_in_namespace(docker: &bollard::Docker, network: &str, n: u64) -> Result<f64, Error> {
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        env: Some(vec!["PORT=8080".into(), "LOG_REQUESTS=0".into()]),
        labels: Some(HashMap::from([(RAW_LABEL.into(), "1".into())])),
        host_config: Some(HostConfig { network_mode: Some(network.into()), ..Default::default() }),
        ..Default::default()
    };
    let name = format!("pl-rawns-{}-{n}", std::process::id());
    let began = Instant::now();
    let id = docker
        .create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body)
        .await?
        .id;
    docker.start_container(&id, None).await?;
    let key = docker
        .inspect_container(&id, None)
        .await?
        .network_settings
        .and_then(|s| s.sandbox_key)
        .filter(|k| !k.is_empty())
        .ok_or("no sandbox key")?;
    let endpoint = Endpoint::in_namespace(SocketAddr::from(([127, 0, 0, 1], 8080)), key);
    let done = first_200_in(&endpoint).await?;
    remove(docker, &id).await;
    Ok((done - began).as_secs_f64() * 1e3)
}

/// The raw engine on the bridge network with a published loopback port.
async fn raw_published(docker: &bollard::Docker, n: u64) -> Result<f64, Error> {
    let began = Instant::now();
    let id = common::raw_container(docker, RAW_LABEL, n).await?;
    docker.start_container(&id, None).await?;
    let port = published_port(docker, &id).await?;
    let done = first_200(SocketAddr::from(([127, 0, 0, 1], port)), "raw").await?;
    remove(docker, &id).await;
    Ok((done - began).as_secs_f64() * 1e3)
}

/// One row of CPU per request: `(user+sys) (user+sys)` in µs.
fn per_request(cpu: (f64, f64), requests: f64) -> String {
    if requests == 0.0 || cpu == (0.0, 0.0) {
        return "-".into();
    }
    let (user, sys) = (cpu.0 / requests * 1e6, cpu.1 / requests * 1e6);
    format!("{:.1} ({user:.1}+{sys:.1})", user + sys)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    need("wrk")?;
    need("nginx")?;
    let seconds = env_u64("BENCH_SECONDS", 5);
    let rounds = env_u64("BENCH_ROUNDS", 3);
    let runs = env_u64("BENCH_RUNS", 10);
    let me = std::process::id();
    let published = stage_in(format!("edgep{me}"), RAW_LABEL, None, EndpointMode::PublishedPort).await?;
    let namespaced = stage_in(format!("edgen{me}"), RAW_LABEL, None, EndpointMode::Namespace).await?;
    if namespaced.runtime.endpoint_mode() != EndpointMode::Namespace {
        return Err("the Docker runtime fell back to a published port: namespace mode needs CAP_SYS_ADMIN".into());
    }
    let work = tempfile::tempdir()?;

    for stage in [&published, &namespaced] {
        stage.platform.deploy(spec("hello", 1, Some(1), None)?).await?;
        stage.platform.wait_ready(&"hello".parse()?, Duration::from_secs(60)).await?;
    }
    let record = published.platform.get(&"hello".parse()?).await?.ok_or("hello is gone")?;
    let direct = record.status.endpoints.first().ok_or("hello has no endpoint")?.addr();
    let proxy_pid = docker_proxy_pid(direct.port());
    let nginx_port = pilotlight::core::testkit::free_port();
    let nginx = start_nginx(work.path(), nginx_port, HOST, direct)?;
    wait_port(nginx_port).await?;

    let paths = [
        ("direct → published port", direct.to_string()),
        ("NGINX → published port", format!("127.0.0.1:{nginx_port}")),
        ("gateway → published port", published.gateway.http_addr().to_string()),
        ("gateway → namespace", namespaced.gateway.http_addr().to_string()),
    ];
    println!(
        "pilotlight edge on Docker {} (API {}): wrk, {seconds}s per run, {rounds} rounds, paths interleaved; {} cores; docker-proxy {}",
        published.engine.0,
        published.engine.1,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        proxy_pid.map_or("not found (userland proxy off?)".to_owned(), |p| format!("pid {p}")),
    );
    let mut at = HashMap::new();
    for connections in [1u32, 32] {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); paths.len()];
        let mut cpu = vec![(0.0f64, 0.0f64); paths.len()];
        let mut proxy_cpu = vec![(0.0f64, 0.0f64); paths.len()];
        let mut requests = vec![0.0f64; paths.len()];
        for (_, addr) in &paths {
            wrk(addr, HOST, connections, 1).await?; // warm-up: pools, caches
        }
        for _ in 0..rounds {
            for (i, (name, addr)) in paths.iter().enumerate() {
                let pids: Vec<u32> = match i {
                    1 => nginx_pids(nginx.child.id()),
                    2 | 3 => vec![me],
                    _ => vec![],
                };
                let proxy: Vec<u32> = proxy_pid.into_iter().collect();
                let (before, proxy_before) = (cpu_total(&pids), cpu_total(&proxy));
                let s = wrk(addr, HOST, connections, seconds).await.map_err(|e| format!("{name}: {e}"))?;
                let (after, proxy_after) = (cpu_total(&pids), cpu_total(&proxy));
                cpu[i].0 += after.0 - before.0;
                cpu[i].1 += after.1 - before.1;
                proxy_cpu[i].0 += proxy_after.0 - proxy_before.0;
                proxy_cpu[i].1 += proxy_after.1 - proxy_before.1;
                requests[i] += s.rps * seconds as f64;
                samples[i].push(s);
            }
        }
        let med: Vec<Sample> = samples.iter().map(|v| median_sample(v)).collect();
        println!("\n{connections} connection(s)");
        println!(
            "  {:<26} {:>9} {:>8} {:>8} {:>28} {:>28}",
            "path", "req/s", "p50 µs", "p99 µs", "proxy CPU/req µs (user+sys)", "docker-proxy CPU/req µs"
        );
        for (i, (name, _)) in paths.iter().enumerate() {
            println!(
                "  {:<26} {:>9.0} {:>8.0} {:>8.0} {:>28} {:>28}",
                name,
                med[i].rps,
                med[i].p50_us,
                med[i].p99_us,
                per_request(cpu[i], requests[i]),
                per_request(proxy_cpu[i], requests[i]),
            );
        }
        let (d, n, gp, gn) = (med[0], med[1], med[2], med[3]);
        println!(
            "  throughput: gateway→namespace / NGINX→published {:.2}x; gateway→published / NGINX→published {:.2}x; gateway→namespace / direct {:.2}x",
            gn.rps / n.rps,
            gp.rps / n.rps,
            gn.rps / d.rps
        );
        println!(
            "  added p50 over direct: NGINX {:+.0} µs, gateway→published {:+.0} µs, gateway→namespace {:+.0} µs",
            n.p50_us - d.p50_us,
            gp.p50_us - d.p50_us,
            gn.p50_us - d.p50_us
        );
        let user = |i: usize| cpu[i].0 / requests[i].max(1.0) * 1e6;
        println!(
            "  proxy user CPU per request: gateway→namespace {:.1} µs vs NGINX {:.1} µs ({:.2}x)",
            user(3),
            user(1),
            user(3) / user(1).max(f64::MIN_POSITIVE)
        );
        at.insert(connections, med);
    }
    drop(nginx);
    let (c1, c32) = (&at[&1], &at[&32]);
    let target = |ok: bool| if ok { "met" } else { "MISSED" };
    let ratio32 = c32[3].rps / c32[1].rps;
    let (added_gw, added_nginx) = (c1[3].p50_us - c1[0].p50_us, c1[1].p50_us - c1[0].p50_us);
    println!("\ntargets");
    println!(
        "  gateway→namespace ≥ 1.5x NGINX→published at 32 connections: {ratio32:.2}x ({})",
        target(ratio32 >= 1.5)
    );
    println!(
        "  added p50 at 1 connection ≤ NGINX's: gateway→namespace {added_gw:+.0} µs vs NGINX {added_nginx:+.0} µs ({})",
        target(added_gw <= added_nginx)
    );

    println!("\ncold start: deploy (no pool) until the first 200, {runs} runs per case, interleaved");
    let docker = published.docker.clone();
    let (mut bridge_pub, mut bridge_ns, mut none) = (Vec::new(), Vec::new(), Vec::new());
    let (mut floor_pub, mut floor_host) = (Vec::new(), Vec::new());
    let (mut floor_bridge_ns, mut floor_none) = (Vec::new(), Vec::new());
    for i in 0..runs {
        bridge_pub.push(cold_start(&published, &format!("cp{i}"), None).await?);
        bridge_ns.push(cold_start(&namespaced, &format!("cn{i}"), None).await?);
        none.push(cold_start(&namespaced, &format!("cz{i}"), Some("none")).await?);
        floor_pub.push(raw_published(&docker, 10_000 + i).await?);
        floor_host.push(raw_host_network(&docker, 20_000 + i).await?);
        floor_bridge_ns.push(raw_in_namespace(&docker, common::NETWORK, 30_000 + i).await?);
        floor_none.push(raw_in_namespace(&docker, "none", 40_000 + i).await?);
    }
    let row = |label: &str, v: &[f64]| {
        println!(
            "  {label:<52} p50 {:>7.1} ms   p99 {:>7.1} ms   {:.2}x the host-network floor at p50",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 0.5) / pct(&floor_host, 0.5)
        );
    };
    row("raw engine: create+start, published port", &floor_pub);
    row("raw engine: create+start, host network", &floor_host);
    row("raw engine: create+start, bridge, through the namespace", &floor_bridge_ns);
    row("raw engine: create+start, network none, through it", &floor_none);
    row("pilotlight: bridge, published port, via gateway", &bridge_pub);
    row("pilotlight: bridge, through the namespace, via gateway", &bridge_ns);
    row("pilotlight: network none, via gateway", &none);
    let none_ratio = pct(&none, 0.5) / pct(&floor_host, 0.5);
    println!(
        "  pilotlight over the same raw path at p50: published {:.2}x, namespace {:.2}x, none {:.2}x",
        pct(&bridge_pub, 0.5) / pct(&floor_pub, 0.5),
        pct(&bridge_ns, 0.5) / pct(&floor_bridge_ns, 0.5),
        pct(&none, 0.5) / pct(&floor_none, 0.5)
    );
    println!("\ntargets");
    println!(
        "  cold start with network none ≤ 1.2x the host-network floor at p50: {none_ratio:.2}x ({})",
        target(none_ratio <= 1.2)
    );
    for stage in [published, namespaced] {
        stage.platform.shutdown().await;
        stage.gateway.shutdown().await;
    }
    Ok(())
}
