//! Conformance suites and fixtures (feature `testkit`).
//!
//! Each suite is a set of plain async functions over `&dyn Port` that assert
//! the port's contract; `run_all` runs them in turn. Core runs them against its
//! in-memory backends, and every backend crate runs the same suite against the
//! real thing. They panic with a message naming the check that failed.

#![allow(clippy::unwrap_used)] // test support: a broken fixture should stop the test loudly
pub mod fixtures;
pub mod http;
pub mod queue;
pub mod router;
pub mod runtime;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A name no other test in this run (or a recent one, on a shared broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{:x}{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// Awaits `fut`, panicking with `what` if it takes longer than `limit`:
/// a suite fails on a hung backend instead of hanging.
pub async fn within<T>(limit: Duration, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Polls `check` every 20 ms until it is true, panicking with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "not true after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the external program `name` is installed. When it is not, a test
/// under CI (`CI=true`) fails loudly, and on a laptop it is skipped with the reason printed.
pub fn require_tool(name: &str, why: &str) -> bool {
    let found =
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()));
    if !found {
        let msg = format!("`{name}` is not installed ({why}); `bash scripts/deps.sh` installs it");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// A free TCP port on 127.0.0.1 (bound then released).
///
/// Never the same port twice in one process: the kernel may hand a port
/// that was just released out again at once, and two settings given the
/// same port (an API and an edge) make a test fail for nothing.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = l.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}
