//! Benchmark of the edge: the same hello instance reached directly, through
//! pilotlight's gateway, and through a plain NGINX reverse proxy with upstream
//! keepalive that this program configures itself. Load comes from `wrk`.
//!
//! ```sh
//! bash scripts/bench.sh gateway     # installs wrk and nginx-light, builds release, runs this
//! ```
//!
//! Prints, for 1 and 32 connections, throughput and p50/p99 latency of each
//! path (median of the rounds, paths interleaved so drift hits all alike), the
//! ratios between them, and each proxy's CPU time per request. Environment:
//! `BENCH_SECONDS` (per run, default 5), `BENCH_ROUNDS` (default 3),
//! `BENCH_GATEWAY_THREADS` (default: one per core), `BENCH_ONLY=direct|gateway|nginx`.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::path::PathBuf;
use std::sync::Arc;

use pilotlight::core::model::{Domain, Endpoint, FunctionName, Route, RouteTable};
use pilotlight::gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::{FunctionSpecInput, Router, Runtime};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[path = "common/wrk.rs"]
mod wrk;
use wrk::{Sample, env_u64, median_sample, need, wrk};
#[path = "common/proxy.rs"]
mod proxy;
use proxy::{cpu_total, nginx_pids, start_nginx, wait_port};

fn hello_path() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let hello = exe.parent().and_then(|p| p.parent()).ok_or("no target dir")?.join("hello");
    if hello.exists() {
        Ok(hello)
    } else {
        Err(format!("{} missing: cargo build --release -p hello", hello.display()).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    need("wrk")?;
    need("nginx")?;
    let seconds = env_u64("BENCH_SECONDS", 5);
    let rounds = env_u64("BENCH_ROUNDS", 3);
    let work = tempfile::tempdir()?;

    let rt = ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: "pilotlight-bench".into(),
        kill_on_drop: true,
        ..Default::default()
    });
    let mut spec = FunctionSpecInput::exec("hello", &hello_path()?.to_string_lossy(), &[], 8080);
    spec.env.insert("LOG_REQUESTS".into(), "0".into());
    let instance = rt.start(&spec.validate()?, 1).await?;
    let direct = instance.endpoint.addr();

    let mut config = GatewayConfig::new(Domain::new("localhost")?, work.path()).ephemeral();
    config.tls = TlsSource::Disabled;
    if let Ok(n) = std::env::var("BENCH_GATEWAY_THREADS") {
        config.threads = n.parse()?;
    }
    let gateway = Arc::new(Gateway::start(config).await?);
    let mut table = RouteTable::new();
    table.upsert(Route {
        name: FunctionName::new("hello")?,
        generation: 1,
        endpoints: vec![Endpoint::new(direct)],
        timeout_ms: 30_000,
    });
    gateway.apply(&table).await?;

    let nginx_port = pilotlight::core::testkit::free_port();
    let nginx = start_nginx(work.path(), nginx_port, "hello.localhost", direct)?;
    wait_port(nginx_port).await?;

    let paths = [
        ("direct", direct.to_string()),
        ("gateway", gateway.http_addr().to_string()),
        ("nginx", format!("127.0.0.1:{nginx_port}")),
    ];
    // `BENCH_ONLY=gateway` loads one path only (for profiling); no ratios then.
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        let (_, addr) = paths.iter().find(|(n, _)| *n == only).ok_or("BENCH_ONLY: direct, gateway or nginx")?;
        println!("pid {me}: loading {only} only", me = std::process::id());
        for connections in [1u32, 32] {
            let s = wrk(addr, "hello.localhost", connections, seconds).await?;
            println!("{only} at {connections}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs", s.rps, s.p50_us, s.p99_us);
        }
        return Ok(());
    }
    println!(
        "pilotlight edge benchmark: wrk, {seconds}s per run, {rounds} rounds, paths interleaved; {} cores",
        num_cores()
    );
    let me = std::process::id();
    for connections in [1u32, 32] {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); paths.len()];
        let mut cpu = [(0.0f64, 0.0f64); 3];
        let mut requests = [0.0f64; 3];
        for (i, (_, addr)) in paths.iter().enumerate() {
            wrk(addr, "hello.localhost", connections, 1).await?; // warm-up: pools, caches
            let _ = i;
        }
        for _ in 0..rounds {
            for (i, (name, addr)) in paths.iter().enumerate() {
                let pids: Vec<u32> = match *name {
                    "gateway" => vec![me],
                    "nginx" => nginx_pids(nginx.child.id()),
                    _ => vec![],
                };
                let before = cpu_total(&pids);
                let s = wrk(addr, "hello.localhost", connections, seconds).await?;
                let after = cpu_total(&pids);
                cpu[i].0 += after.0 - before.0;
                cpu[i].1 += after.1 - before.1;
                requests[i] += s.rps * seconds as f64;
                samples[i].push(s);
            }
        }
        let med: Vec<Sample> = samples.iter().map(|v| median_sample(v)).collect();
        println!("\n{connections} connection(s)");
        println!(
            "  {:<8} {:>12} {:>10} {:>10} {:>26}",
            "path", "req/s", "p50 µs", "p99 µs", "proxy CPU/req µs (user+sys)"
        );
        for (i, (name, _)) in paths.iter().enumerate() {
            let per_req = if i == 0 {
                "-".to_owned()
            } else {
                let (user, sys) = (cpu[i].0 / requests[i] * 1e6, cpu[i].1 / requests[i] * 1e6);
                format!("{:.1} ({user:.1}+{sys:.1})", user + sys)
            };
            println!(
                "  {:<8} {:>12.0} {:>10.0} {:>10.0} {:>26}",
                name, med[i].rps, med[i].p50_us, med[i].p99_us, per_req
            );
        }
        let (d, g, n) = (med[0], med[1], med[2]);
        println!(
            "  gateway/direct throughput {:.2}x, nginx/direct {:.2}x, gateway/nginx {:.2}x",
            g.rps / d.rps,
            n.rps / d.rps,
            g.rps / n.rps
        );
        println!("  added p50: gateway {:+.0} µs, nginx {:+.0} µs", g.p50_us - d.p50_us, n.p50_us - d.p50_us);
        println!("  added p99: gateway {:+.0} µs, nginx {:+.0} µs", g.p99_us - d.p99_us, n.p99_us - d.p99_us);
    }
    drop(nginx);
    gateway.shutdown().await;
    rt.stop_all().await?;
    Ok(())
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
