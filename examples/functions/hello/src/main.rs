//! hello: the demo function. A std-only HTTP/1.1 server with keep-alive.
//!
//! Environment:
//! - `PORT` (default 8080) and `HOST` (default 0.0.0.0; the process runtime sets 127.0.0.1);
//! - `PILOTLIGHT_FUNCTION`: the name it greets with (default `hello`);
//! - `LOG_REQUESTS=0` turns off the per-request log line (for benchmarks);
//! - `FAIL_WITH=N` makes every route but `/healthz` answer status N (a broken
//!   release, for retry and dead-letter tests).
//!
//! Routes:
//! - `GET /` → 200 `Hello from <name>!`
//! - `GET /healthz` → 200 `ok`
//! - `GET /sleep?ms=N` → waits N ms (at most 60000), then 200 (for timeout tests)
//! - `GET /alloc?mb=N` → touches N MiB of memory and keeps it (for memory-limit tests)
//! - `GET /headers` (any method) → the request's headers, one `name: value`
//!   per line, then an empty line and the request's body
//! - `GET /stream?chunks=N&ms=M` → N chunks, M ms apart (for streaming tests)
//! - `GET /dial?to=IP:PORT` → tries a TCP connection from inside the function
//!   (1 s timeout): 200 `connected`, or 502 with the error (for egress tests)
//! - `GET /status?code=N` (any method) → answers status N (200 to 599), for retry tests
//! - `POST /relay?to=IP:PORT` (any method) → sends the request's headers and
//!   body on to `IP:PORT` as a POST, and answers 200 when that answered 2xx
//!   (502 otherwise): lets a test see, in order, what the function received
//! - `GET /secret?name=N` → the value of secret N (a file in
//!   `$PILOTLIGHT_SECRETS_DIR`, or `/run/secrets`): lets a test see a secret arrive
//! - anything else → 404

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

/// Memory kept by `/alloc`, so the allocation is not freed.
static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let name = std::env::var("PILOTLIGHT_FUNCTION").unwrap_or_else(|_| "hello".into());
    let log = std::env::var("LOG_REQUESTS").map_or(true, |v| v != "0");
    let fail_with: u16 =
        std::env::var("FAIL_WITH").ok().and_then(|v| v.parse().ok()).filter(|c| (200..=599).contains(c)).unwrap_or(0);
    let listener = match TcpListener::bind(format!("{host}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hello: cannot listen on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("hello ({name}) listening on {host}:{port}");
    let greeting: &'static str = Box::leak(format!("Hello from {name}!\n").into_boxed_str());
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => {
                std::thread::spawn(move || {
                    let _ = serve(conn, greeting, log, fail_with);
                });
            }
            Err(e) => eprintln!("hello: accept failed: {e}"),
        }
    }
}

/// A chunked response of `chunks` lines, flushed one by one, `ms` apart.
fn stream(out: &mut TcpStream, chunks: u64, ms: u64) -> std::io::Result<()> {
    out.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")?;
    for i in 0..chunks {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let line = format!("chunk {i}\n");
        write!(out, "{:x}\r\n{line}\r\n", line.len())?;
        out.flush()?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn serve(conn: TcpStream, greeting: &str, log: bool, fail_with: u16) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut content_length = 0usize;
        let mut received = String::new();
        let mut close = false;
        let mut http10 = request_line.trim_end().ends_with("HTTP/1.0");
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            received.push_str(header);
            received.push('\n');
            if let Some((k, v)) = header.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                match k.as_str() {
                    "content-length" => content_length = v.parse().unwrap_or(0),
                    "connection" if v == "close" => close = true,
                    "connection" if v == "keep-alive" => http10 = false,
                    _ => {}
                }
            }
        }
        // Keep a body of up to 1 MiB (for /headers and /relay); discard a larger one.
        let mut body = Vec::new();
        if content_length <= 1 << 20 {
            (&mut reader).take(content_length as u64).read_to_end(&mut body)?;
        } else {
            std::io::copy(&mut (&mut reader).take(content_length as u64), &mut std::io::sink())?;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let param = |key: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (status, body): (std::borrow::Cow<'static, str>, String) = match (method, path) {
            (_, p) if fail_with != 0 && p != "/healthz" => {
                (format!("{fail_with} Failing").into(), format!("failing with {fail_with}\n"))
            }
            ("GET" | "HEAD", "/") => ("200 OK".into(), greeting.to_owned()),
            ("GET" | "HEAD", "/healthz") => ("200 OK".into(), "ok\n".to_owned()),
            ("GET", "/sleep") => {
                let ms = param("ms").min(60_000);
                std::thread::sleep(Duration::from_millis(ms));
                ("200 OK".into(), format!("slept {ms} ms\n"))
            }
            ("GET", "/alloc") => {
                let mb = usize::try_from(param("mb").min(16_384)).unwrap_or(0);
                let mut block = vec![0u8; mb << 20];
                // Touch every page so the memory is really used.
                for i in (0..block.len()).step_by(4096) {
                    block[i] = 1;
                }
                HOARD.lock().unwrap_or_else(|p| p.into_inner()).push(block);
                ("200 OK".into(), format!("allocated {mb} MiB\n"))
            }
            (_, "/headers") => ("200 OK".into(), format!("{received}\n{}", String::from_utf8_lossy(&body))),
            (_, "/relay") => {
                let (status, answer) = relay(query, &received, &body);
                (status.into(), answer)
            }
            (_, "/status") => {
                let code = param("code").clamp(200, 599);
                (format!("{code} Status").into(), format!("status {code}\n"))
            }
            ("GET", "/secret") => {
                let (status, body) = secret(query);
                (status.into(), body)
            }
            ("GET", "/dial") => {
                let (status, body) = dial(query);
                (status.into(), body)
            }
            ("GET", "/stream") => {
                let (chunks, ms) = (param("chunks").min(1000), param("ms").min(60_000));
                if log {
                    println!("{method} {path} 200");
                }
                stream(&mut out, chunks, ms)?;
                if close || http10 {
                    return Ok(());
                }
                continue;
            }
            _ => ("404 Not Found".into(), "not found\n".to_owned()),
        };
        if log {
            println!("{method} {path} {}", &status[..3]);
        }
        let keep_alive = !close && !http10;
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n",
            body.len(),
            if keep_alive { "" } else { "connection: close\r\n" }
        );
        out.write_all(head.as_bytes())?;
        if method != "HEAD" {
            out.write_all(body.as_bytes())?;
        }
        out.flush()?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// `/secret?name=N`: the file of secret `N` (in `$PILOTLIGHT_SECRETS_DIR`
/// under the process runtime, `/run/secrets` in a container), for tests that
/// check a secret arrives. A real function would never echo one.
fn secret(query: &str) -> (&'static str, String) {
    let name = query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == "name").map(|(_, v)| v);
    let valid = |n: &&str| {
        !n.is_empty()
            && !n.starts_with('.')
            && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    };
    let Some(name) = name.filter(valid) else {
        return ("400 Bad Request", "name=<secret name> is required\n".into());
    };
    let dir = std::env::var("PILOTLIGHT_SECRETS_DIR").unwrap_or_else(|_| "/run/secrets".into());
    match std::fs::read_to_string(std::path::Path::new(&dir).join(name)) {
        Ok(v) => ("200 OK", v),
        Err(e) => ("404 Not Found", format!("no secret {name}: {e}\n")),
    }
}

/// `/relay`: POSTs `headers` (less those of the hop) and `body` to `to`.
fn relay(query: &str, headers: &str, body: &[u8]) -> (&'static str, String) {
    let to = query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == "to").map(|(_, v)| v);
    let Some(addr) = to.and_then(|v| v.parse::<std::net::SocketAddr>().ok()) else {
        return ("400 Bad Request", "to must be IP:PORT\n".to_owned());
    };
    let send = || -> std::io::Result<bool> {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut head = String::from("POST /relay HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n");
        for line in headers.lines() {
            let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
            if !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
                head.push_str(line);
                head.push_str("\r\n");
            }
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        conn.write_all(head.as_bytes())?;
        conn.write_all(body)?;
        let mut answer = String::new();
        BufReader::new(conn).read_line(&mut answer)?;
        Ok(answer.split_whitespace().nth(1).is_some_and(|s| s.starts_with('2')))
    };
    match send() {
        Ok(true) => ("200 OK", "relayed\n".to_owned()),
        Ok(false) => ("502 Bad Gateway", "the relay refused it\n".to_owned()),
        Err(e) => ("502 Bad Gateway", format!("{e}\n")),
    }
}

/// `/dial`: whether this function can open a connection to `to`.
fn dial(query: &str) -> (&'static str, String) {
    let to = query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == "to").map(|(_, v)| v);
    let Some(addr) = to.and_then(|v| v.parse::<std::net::SocketAddr>().ok()) else {
        return ("400 Bad Request", "to must be IP:PORT\n".to_owned());
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Ok(_) => ("200 OK", "connected\n".to_owned()),
        Err(e) => ("502 Bad Gateway", format!("{e}\n")),
    }
}
