//! The edge's request-parsing rules (RFC 9112), over raw sockets against a
//! real gateway in front of the real hello function: every refusal is
//! answered by the gateway and never reaches the function, and what is let
//! through reaches it as sent.
#![allow(clippy::unwrap_used)] // a test: a failure should stop it loudly

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use pilotlight_core::ports::Router;
use pilotlight_gateway::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `text` and reads the whole answer (the gateway closes after an error, or `Connection: close`).
async fn raw(addr: SocketAddr, text: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(text.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

struct Edge {
    gw: Gateway,
    rt: pilotlight_process::ProcessRuntime,
    _dir: tempfile::TempDir,
}

async fn edge(tune: impl FnOnce(&mut pilotlight_gateway::GatewayConfig)) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let inst = hello(&rt, "hello").await;
    let mut c = config(dir.path());
    tune(&mut c);
    let gw = Gateway::start(c).await.unwrap();
    gw.apply(&table(vec![route("hello", &[inst.endpoint.addr()], 5000)])).await.unwrap();
    Edge { gw, rt, _dir: dir }
}

impl Edge {
    async fn stop(self) {
        self.gw.shutdown().await;
        self.rt.stop_all().await.unwrap();
    }
}

#[tokio::test]
async fn every_refusal_of_the_rules_over_raw_sockets() {
    let e = edge(|_| {}).await;
    let addr = e.gw.http_addr();
    let ok =
        raw(addr, "GET /headers HTTP/1.1\r\nHost: hello.localhost\r\nX-Seen: yes\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(ok.to_ascii_lowercase().contains("x-seen: yes"), "the function saw the request: {ok}");

    let line = "x".repeat(20 * 1024);
    let lines: String = (0..10).map(|i| format!("X-Part-{i}: {}\r\n", "y".repeat(7 * 1024))).collect();
    let fine = format!("X-Fine: {}\r\n", "z".repeat(10 * 1024));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "two Host lines",
            "GET / HTTP/1.1\r\nHost: hello.localhost\r\nHost: evil.localhost\r\n\r\n".into(),
            400,
            "duplicate_host",
        ),
        ("an invalid Host", "GET / HTTP/1.1\r\nHost: hel lo.localhost\r\n\r\n".into(), 400, ""),
        ("user info in Host", "GET / HTTP/1.1\r\nHost: me@hello.localhost\r\n\r\n".into(), 400, "bad_host"),
        ("no Host", "GET / HTTP/1.1\r\n\r\n".into(), 400, "missing_host"),
        (
            "absolute-form naming another host than Host",
            "GET http://hello.localhost/ HTTP/1.1\r\nHost: other.localhost\r\n\r\n".into(),
            400,
            "host_mismatch",
        ),
        (
            "absolute-form agreeing with Host",
            "GET http://hello.localhost/ HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n".into(),
            200,
            "Hello from hello!",
        ),
        (
            "one header line of 20 KiB",
            format!("GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-Big: {line}\r\n\r\n"),
            431,
            "header_too_large",
        ),
        (
            "70 KiB of headers in lines of 7 KiB",
            format!("GET / HTTP/1.1\r\nHost: hello.localhost\r\n{lines}\r\n"),
            431,
            "",
        ),
        (
            "a 10 KiB line within both caps",
            format!("GET / HTTP/1.1\r\nHost: hello.localhost\r\n{fine}Connection: close\r\n\r\n"),
            200,
            "Hello from hello!",
        ),
        (
            "Content-Length twice, differing",
            "POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi".into(),
            400,
            "",
        ),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-A: a\r\n folded\r\n\r\n".into(), 400, ""),
        ("white space before the colon", "GET / HTTP/1.1\r\nHost : hello.localhost\r\n\r\n".into(), 400, ""),
        (
            "a Transfer-Encoding not ending in chunked",
            "POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
            400,
            "",
        ),
    ];
    for (what, request, want, body) in cases {
        let answer = raw(addr, &request).await;
        assert_eq!(status(&answer), want, "{what}: {answer}");
        assert!(answer.contains(body), "{what}: expected {body:?} in {answer}");
    }
    // Normalised, not refused: with both lengths the function sees neither
    // (the body is read as chunked and framed anew), and the connection is
    // closed after the request, so nothing can be smuggled behind it.
    let both = "GET /headers HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    let answer = raw(addr, both).await;
    assert_eq!(status(&answer), 200, "{answer}");
    let seen = answer.to_ascii_lowercase();
    assert!(!seen.contains("content-length: 40") && !seen.contains("transfer-encoding"), "the function saw: {answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "nothing after the request was served: {answer}");
    let twice = "GET /headers HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let answer = raw(addr, twice).await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.to_ascii_lowercase().matches("content-length: 0\n").count() <= 1, "one length at most: {answer}");
    e.stop().await;
}

/// 400 connections that send half a request head do not delay anyone else,
/// and are closed once the header timeout passes.
#[tokio::test]
async fn half_sent_requests_delay_no_one_and_are_closed_after_the_header_timeout() {
    let e = edge(|c| c.header_timeout = Duration::from_secs(2)).await;
    let addr = e.gw.http_addr();
    let mut idle = Vec::new();
    for _ in 0..400 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: hello.loc").await.unwrap();
        idle.push(s);
    }
    let began = Instant::now();
    for _ in 0..20 {
        let answer = raw(addr, "GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status(&answer), 200, "{answer}");
    }
    let took = began.elapsed();
    assert!(took < Duration::from_secs(2), "20 requests beside 400 half-sent ones took {took:?}");
    // After the timeout every half-sent connection is closed by the gateway.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut closed = 0;
    for s in &mut idle {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(closed, 400, "every half-sent connection was closed");
    e.stop().await;
}
