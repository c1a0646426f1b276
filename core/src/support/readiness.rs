//! Readiness probes: is a fresh instance answering HTTP yet?

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One readiness probe: `GET <health_path or />` must get an HTTP answer —
/// any status without a health path, 2xx with one.
///
/// A TCP connect alone is not enough: a published Docker port is held by
/// docker-proxy, which accepts connections even while nothing listens in the
/// container, and then closes them.
pub async fn probe(addr: SocketAddr, health_path: Option<&str>) -> bool {
    let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await else {
        return false;
    };
    answers(conn, health_path).await
}

/// Whether `conn` answers a readiness request as [`probe`] requires.
async fn answers(mut conn: TcpStream, health_path: Option<&str>) -> bool {
    let path = health_path.unwrap_or("/");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pilotlight-readiness\r\nConnection: close\r\n\r\n"
    );
    let answer = async {
        conn.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await.ok()?;
        Some(head)
    };
    match tokio::time::timeout(Duration::from_secs(2), answer).await {
        Ok(Some(head)) if head.starts_with(b"HTTP/1.") => health_path.is_none() || head[9] == b'2',
        _ => false,
    }
}

/// [`probe`] of an endpoint, inside its network namespace when it has one.
pub async fn probe_endpoint(endpoint: &crate::model::Endpoint, health_path: Option<&str>) -> bool {
    match endpoint.netns() {
        None => probe(endpoint.addr(), health_path).await,
        Some(ns) => match super::netns::connect(ns, endpoint.addr(), Duration::from_millis(500)).await {
            Ok(conn) => answers(conn, health_path).await,
            Err(_) => false,
        },
    }
}
