//! Load from Debian's `wrk`, shared by the benchmarks.

use std::process::{Command, Stdio};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Fails with a hint when a tool is missing.
pub fn need(tool: &str) -> Result<(), Error> {
    let ok = Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status()?.success();
    if ok { Ok(()) } else { Err(format!("`{tool}` is missing: run `bash scripts/bench.sh`, which installs it").into()) }
}

/// A number from the environment, or a default.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Parses wrk's `--latency` output.
pub fn parse_wrk(out: &str) -> Result<Sample, Error> {
    let micros = |v: &str| -> Option<f64> {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = num.parse().ok()?;
        Some(match unit {
            "us" => n,
            "ms" => n * 1e3,
            "s" => n * 1e6,
            _ => return None,
        })
    };
    let mut s = Sample::default();
    for line in out.lines() {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("Requests/sec:"), Some(v)) => s.rps = v.parse()?,
            (Some("50%"), Some(v)) => s.p50_us = micros(v).ok_or("bad p50")?,
            (Some("99%"), Some(v)) => s.p99_us = micros(v).ok_or("bad p99")?,
            _ => {}
        }
        if line.contains("Non-2xx") || line.contains("Socket errors") {
            return Err(format!("wrk saw errors: {line}").into());
        }
    }
    if s.rps == 0.0 {
        return Err(format!("cannot read wrk's output:\n{out}").into());
    }
    Ok(s)
}

pub async fn wrk(addr: &str, host: &str, connections: u32, seconds: u64) -> Result<Sample, Error> {
    let threads = connections.min(2).to_string();
    let out = tokio::process::Command::new("wrk")
        .args(["-t", &threads, "-c", &connections.to_string(), "-d", &format!("{seconds}s"), "--latency"])
        .args(["-H", &format!("Host: {host}"), &format!("http://{addr}/")])
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("wrk failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// The median.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The sample of medians: median req/s, median p50 and median p99 of `runs`.
pub fn median_sample(runs: &[Sample]) -> Sample {
    Sample {
        rps: median(runs.iter().map(|s| s.rps).collect()),
        p50_us: median(runs.iter().map(|s| s.p50_us).collect()),
        p99_us: median(runs.iter().map(|s| s.p99_us).collect()),
    }
}
