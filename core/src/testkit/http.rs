//! A minimal HTTP/1.1 client for tests: one request per connection, over
//! loopback or inside an instance's network namespace.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::model::Endpoint;

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// `GET path` with `Host: host` to `addr`, within `timeout`; errors are strings for easy asserts.
pub async fn get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Result<Response, String> {
    get_endpoint(&Endpoint::new(addr), host, path, timeout).await
}

/// [`get`] to an instance's endpoint, inside its network namespace when it has one.
pub async fn get_endpoint(endpoint: &Endpoint, host: &str, path: &str, timeout: Duration) -> Result<Response, String> {
    let addr = endpoint.addr();
    let fut = async {
        let mut conn = connect(endpoint, timeout).await.map_err(|e| format!("connect {endpoint}: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await.map_err(|e| format!("read: {e}"))?;
        parse(&raw)
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}

/// A TCP connection to `endpoint`: made in its namespace when it names one.
pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> std::io::Result<TcpStream> {
    match endpoint.netns() {
        Some(netns) => crate::support::netns::connect(netns, endpoint.addr(), timeout).await,
        None => TcpStream::connect(endpoint.addr()).await,
    }
}

fn parse(raw: &[u8]) -> Result<Response, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("incomplete response: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Ok(Response { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
