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

/// One request a [`Receiver`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its method.
    pub method: String,
    /// Its path and query.
    pub path: String,
    /// Its headers, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
    /// When it had arrived whole.
    pub at: std::time::Instant,
}

impl Received {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A small HTTP/1.1 server on loopback that records every request (with a
/// `Content-Length` body, keep-alive honoured) and answers each with a fixed
/// status: a callback receiver for tests. Stopping it closes the listener and
/// every connection, so it can play a receiver that is down for a while.
pub struct Receiver {
    addr: SocketAddr,
    seen: std::sync::Arc<parking_lot::Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on `addr` (port 0 picks one), answering `status`.
    pub async fn start(addr: SocketAddr, status: u16) -> std::io::Result<Self> {
        Self::start_recording(addr, status, std::sync::Arc::default()).await
    }

    /// [`Receiver::start`], adding to what an earlier receiver recorded.
    pub async fn start_recording(
        addr: SocketAddr,
        status: u16,
        seen: std::sync::Arc<parking_lot::Mutex<Vec<Received>>>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let record = std::sync::Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((conn, _)) = listener.accept().await {
                let record = std::sync::Arc::clone(&record);
                conns.spawn(async move {
                    let _ = serve(conn, status, &record).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Self { addr, seen, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it recorded so far (with what earlier receivers sharing its record got).
    pub fn received(&self) -> Vec<Received> {
        self.seen.lock().clone()
    }

    /// The shared record, for a receiver started later on the same address.
    pub fn record(&self) -> std::sync::Arc<parking_lot::Mutex<Vec<Received>>> {
        std::sync::Arc::clone(&self.seen)
    }

    /// Stops listening and drops every connection.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut conn: TcpStream, status: u16, record: &parking_lot::Mutex<Vec<Received>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 8192];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let (method, path) = (first.next().unwrap_or("").to_owned(), first.next().unwrap_or("").to_owned());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize =
            headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let start = head_end + 4;
        while buf.len() < start + length {
            let mut chunk = [0u8; 8192];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[start..start + length].to_vec();
        buf.drain(..start + length);
        let close = headers.iter().any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
        record.lock().push(Received { method, path, headers, body, at: std::time::Instant::now() });
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        conn.write_all(answer.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}
