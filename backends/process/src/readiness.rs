//! Waiting until a fresh process answers.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One readiness probe: a TCP connect, then (if given) `GET path` answered with 2xx.
pub(crate) async fn probe(addr: SocketAddr, health_path: Option<&str>) -> bool {
    let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await else {
        return false;
    };
    let Some(path) = health_path else { return true };
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let answer = async {
        conn.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await.ok()?;
        Some(head)
    };
    match tokio::time::timeout(Duration::from_secs(2), answer).await {
        Ok(Some(head)) => head.starts_with(b"HTTP/1.") && head[9] == b'2',
        _ => false,
    }
}
