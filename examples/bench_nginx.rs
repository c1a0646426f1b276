//! Benchmark of the NGINX router, side by side with the gateway:
//!
//! - for 10, 100, 1,000 and 10,000 functions: NGINX's apply (render, `nginx -t`,
//!   switch + SIGHUP, until the new generation answers, then until the newly
//!   added route answers through the edge) beside the gateway's apply of the
//!   same table until the same route answers; and NGINX's memory per process;
//! - requests through NGINX, through the gateway and direct (wrk, 1 and 32
//!   connections), at 10 functions and again through NGINX at the largest size,
//!   to show that a large table costs a request nothing.
//!
//! ```sh
//! bash scripts/bench.sh nginx
//! ```
//! `BENCH_SIZES` (default `10,100,1000,10000`), `BENCH_ROUNDS` (applies per
//! size, default 3), `BENCH_SECONDS` (per wrk run, default 5).
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pilotlight::core::model::{Domain, Endpoint, FunctionName, Route, RouteTable};
use pilotlight::core::testkit::{free_port, http};
use pilotlight::gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight::nginx::{NginxConfig, NginxMode, NginxRouter};
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::{FunctionSpecInput, Router, Runtime};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[path = "common/wrk.rs"]
mod wrk;
use wrk::{Sample, env_u64, median, median_sample, need, wrk};

const DOMAIN: &str = "pilot.test";

/// One measured apply: NGINX's steps, NGINX until the new route answered,
/// from confirm until it answered, and the gateway until it answered.
type Row = (pilotlight::nginx::ApplyTimings, Duration, Duration, Duration);

fn table(n: usize, endpoint: SocketAddr, probe: &str) -> Result<RouteTable, Error> {
    let mut t = RouteTable::new();
    let mut add = |name: &str| -> Result<(), Error> {
        t.upsert(Route {
            name: FunctionName::new(name)?,
            generation: 1,
            endpoints: vec![Endpoint::new(endpoint)],
            timeout_ms: 30_000,
        });
        Ok(())
    };
    for i in 0..n.saturating_sub(1) {
        add(&format!("fn{i}"))?;
    }
    add(probe)?;
    Ok(t)
}

/// Waits until `host` answers 200 at `edge`; the time it took.
async fn until_200(edge: SocketAddr, host: &str) -> Result<Duration, Error> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if http::get(edge, host, "/", Duration::from_secs(5)).await.is_ok_and(|r| r.status == 200) {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(format!("{host} never answered 200 at {edge}").into())
}

/// (RSS, PSS) in MiB of every process of the NGINX master `pid`, master first.
fn memory(pid: u32) -> Vec<(f64, f64)> {
    let mut pids = vec![pid];
    pids.extend(
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok()),
    );
    let field = |text: &str, key: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    pids.iter()
        .map(|p| {
            let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
            (field(&rollup, "Rss:"), field(&rollup, "Pss:"))
        })
        .collect()
}

fn hello_path() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let hello = exe.parent().and_then(|p| p.parent()).ok_or("no target dir")?.join("hello");
    if hello.exists() {
        Ok(hello)
    } else {
        Err(format!("{} missing: cargo build --release -p hello", hello.display()).into())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn load(paths: &[(&str, String, String)], seconds: u64, rounds: u64) -> Result<(), Error> {
    for connections in [1u32, 32] {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); paths.len()];
        for (_, addr, host) in paths {
            wrk(addr, host, connections, 1).await?; // warm-up: pools, caches
        }
        for _ in 0..rounds {
            for (i, (_, addr, host)) in paths.iter().enumerate() {
                samples[i].push(wrk(addr, host, connections, seconds).await?);
            }
        }
        println!("  {connections} connection(s): {:<22} {:>10} {:>9} {:>9}", "path", "req/s", "p50 µs", "p99 µs");
        let med: Vec<Sample> = samples.iter().map(|v| median_sample(v)).collect();
        for (i, (name, _, _)) in paths.iter().enumerate() {
            println!("  {:<17} {:<22} {:>10.0} {:>9.0} {:>9.0}", "", name, med[i].rps, med[i].p50_us, med[i].p99_us);
        }
        let base = med[0];
        for (i, (name, _, _)) in paths.iter().enumerate().skip(1) {
            println!(
                "  {:<17} {name}: {:.2}x direct's throughput, {:+.0} µs at p50",
                "",
                med[i].rps / base.rps,
                med[i].p50_us - base.p50_us
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    need("nginx")?;
    need("wrk")?;
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10,100,1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let rounds = env_u64("BENCH_ROUNDS", 3).max(1);
    let seconds = env_u64("BENCH_SECONDS", 5);
    let work = tempfile::tempdir()?;

    let rt = ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: "pilotlight-bench-nginx".into(),
        kill_on_drop: true,
        ..Default::default()
    });
    let mut spec = FunctionSpecInput::exec("hello", &hello_path()?.to_string_lossy(), &[], 8080);
    spec.env.insert("LOG_REQUESTS".into(), "0".into());
    let direct = rt.start(&spec.validate()?, 1).await?.endpoint.addr();

    let mut gw_config = GatewayConfig::new(Domain::new(DOMAIN)?, work.path()).ephemeral();
    gw_config.tls = TlsSource::Disabled;
    let gateway = Arc::new(Gateway::start(gw_config).await?);

    let mut config = NginxConfig::managed(Domain::new(DOMAIN)?, work.path());
    config.http_addr = ([127, 0, 0, 1], free_port()).into();
    config.status_addr = ([127, 0, 0, 1], free_port()).into();
    config.mode = NginxMode::Managed { worker_processes: 0, worker_connections: 4096, stop_on_drop: true };
    config.confirm_timeout = Duration::from_secs(300);
    let nginx = NginxRouter::start(config).await?;
    let edge = nginx.config().http_addr;

    println!(
        "pilotlight NGINX router benchmark: nginx -v {}, {} cores, worker_processes auto, {rounds} applies per size (medians)",
        nginx_version(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("\napply a table of N functions whose last one is new, until that function answers through the edge (ms)");
    println!(
        "  {:>6} | {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} | {:>8} {:>9} | {:>8} {:>12}",
        "N", "render", "nginx -t", "HUP", "confirm", "answers", "total", "gateway", "ratio", "RSS MiB", "PSS MiB all"
    );
    let largest = sizes.iter().copied().max().unwrap_or(10);
    let mut probe_host = String::new();
    for &n in &sizes {
        // The table's other functions are in place before the measured applies.
        nginx.apply(&table(n, direct, "warm")?).await?;
        gateway.apply(&table(n, direct, "warm")?).await?;
        let mut rows = Vec::new();
        for round in 0..rounds {
            let probe = format!("probe-{n}-{round}");
            let host = format!("{probe}.{DOMAIN}");
            let t = table(n, direct, &probe)?;
            let started = Instant::now();
            nginx.apply(&t).await?;
            let applied = started.elapsed();
            let answers = until_200(edge, &host).await?;
            let timings = nginx.last_apply().ok_or("no timings")?;
            let started = Instant::now();
            gateway.apply(&t).await?;
            let gw = started.elapsed() + until_200(gateway.http_addr(), &host).await?;
            rows.push((timings, applied + answers, answers, gw));
            probe_host = host;
        }
        let med = |f: &dyn Fn(&Row) -> f64| median(rows.iter().map(f).collect());
        let mem = memory(nginx.master_pid().ok_or("no nginx master")?);
        let total = med(&|r| ms(r.1));
        let gw = med(&|r| ms(r.3));
        println!(
            "  {:>6} | {:>7.1} {:>8.1} {:>8.1} {:>8.1} {:>9.2} {:>8.1} | {:>8.2} {:>8.0}x | {:>8.1} {:>12.1}",
            n,
            med(&|r| ms(r.0.render)),
            med(&|r| ms(r.0.test)),
            med(&|r| ms(r.0.reload)),
            med(&|r| ms(r.0.confirm)),
            med(&|r| ms(r.2)),
            total,
            gw,
            total / gw.max(1e-3),
            mem.iter().map(|m| m.0).fold(0.0, f64::max),
            mem.iter().map(|m| m.1).sum::<f64>(),
        );
        if n == sizes[0] {
            println!("\nrequests at {n} functions (median of {rounds} rounds of {seconds} s, paths interleaved)");
            let host = format!("fn0.{DOMAIN}");
            let paths = [
                ("direct", direct.to_string(), host.clone()),
                ("gateway", gateway.http_addr().to_string(), host.clone()),
                ("nginx (pilotlight)", edge.to_string(), host),
            ];
            load(&paths, seconds, rounds).await?;
            println!();
        }
    }
    if largest > sizes[0] {
        println!("\nrequests at {largest} functions, to the last function in the table");
        let paths = [
            ("direct", direct.to_string(), probe_host.clone()),
            ("gateway", gateway.http_addr().to_string(), probe_host.clone()),
            ("nginx (pilotlight)", edge.to_string(), probe_host),
        ];
        load(&paths, seconds, rounds).await?;
    }
    println!("\nconfirm includes NGINX's own fixed 100 ms pause between starting new workers and stopping old ones.");
    println!("RSS: the largest NGINX process; PSS: all NGINX processes together (their pages are shared).");
    nginx.shutdown(Duration::from_secs(10)).await;
    gateway.shutdown().await;
    rt.stop_all().await?;
    Ok(())
}

fn nginx_version() -> String {
    std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("nginx version: ").to_owned())
        .unwrap_or_else(|_| "?".into())
}
