//! Upgrades through the gateway: WebSocket with the wsecho function under
//! the process runtime, on HTTP and HTTPS, from zero and across an update;
//! any other upgrade token with a raw-socket function written here.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use pilotlight_core::model::{FunctionName, FunctionSpecInput, Instance};
use pilotlight_core::ports::{Activation, ActivationError, Activator, Router};
use pilotlight_core::testkit::{eventually, fixtures::workspace_binary};
use pilotlight_gateway::Gateway;
use pilotlight_process::ProcessRuntime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

async fn wsecho(rt: &ProcessRuntime, name: &str, prefix: &str) -> Instance {
    let bin = workspace_binary("wsecho");
    let mut input = FunctionSpecInput::exec(name, bin.to_str().unwrap(), &[], 8080);
    input.env.insert("ECHO_PREFIX".into(), prefix.into());
    pilotlight_core::ports::Runtime::start(rt, &input.validate().unwrap(), 1).await.unwrap()
}

/// Opens a WebSocket to `host` over an established stream to the gateway.
async fn open<S>(stream: S, host: &str) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (ws, resp) = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::client_async(format!("ws://{host}/chat"), stream),
    )
    .await
    .expect("handshake within 15s")
    .expect("the gateway upgrades");
    assert_eq!(resp.status(), 101);
    ws
}

async fn echo<S>(ws: &mut WebSocketStream<S>, text: &str) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("echo within 10s");
    answer.unwrap().unwrap().into_text().unwrap().as_str().to_owned()
}

/// Closes like a browser: sends the close, reads to the end, drops the connection.
async fn close<S>(mut ws: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
}

fn in_flight(gw: &Gateway, name: &str) -> usize {
    gw.load().into_iter().find(|(n, _)| n.as_str() == name).map_or(0, |(_, l)| l.in_flight)
}

#[tokio::test]
async fn a_websocket_echoes_over_http_and_counts_in_flight_until_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let inst = wsecho(&rt, "chat", "").await;
    let gw = Arc::new(gateway(dir.path()).await);
    gw.apply(&table(vec![route("chat", &[inst.endpoint.addr()], 5000)])).await.unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.http_addr()).await.unwrap();
    let mut ws = open(tcp, "chat.localhost").await;
    for i in 0..20 {
        assert_eq!(echo(&mut ws, &format!("message {i}")).await, format!("message {i}"));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().as_ref(), &[0u8, 1, 2, 255]);
    // Longer than the route's 5 s timeout would be no problem: the timeout bounds the 101, not the tunnel.
    assert_eq!(in_flight(&gw, "chat"), 1, "an open WebSocket is load");
    assert_eq!(gw.endpoint_in_flight(&inst.endpoint), 1, "and holds its instance against a drain");
    // Plain requests still reach the same function.
    let (status, _, body) = get(&client(), gw.http_addr(), "chat.localhost", "/").await;
    assert_eq!((status, body.as_str()), (200, "wsecho chat\n"));
    close(ws).await;
    let g = gw.clone();
    eventually(Duration::from_secs(5), "the closed WebSocket is no longer in flight", || {
        let (g, endpoint) = (g.clone(), inst.endpoint.clone());
        async move { in_flight(&g, "chat") == 0 && g.endpoint_in_flight(&endpoint) == 0 }
    })
    .await;
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn a_websocket_works_over_https_with_http11() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let inst = wsecho(&rt, "securews", "tls:").await;
    let gw = gateway(dir.path()).await;
    gw.apply(&table(vec![route("securews", &[inst.endpoint.addr()], 5000)])).await.unwrap();
    // What a browser offers for a WebSocket connection.
    let connector = tls_connector(gw.dev_ca_path().unwrap(), &[b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(gw.https_addr().unwrap()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("securews.localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let mut ws = open(tls, "securews.localhost").await;
    assert_eq!(echo(&mut ws, "over TLS").await, "tls:over TLS");
    close(ws).await;
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

/// Starts wsecho when asked, then routes to it: what the platform does.
struct StartsWsecho {
    gw: Arc<Gateway>,
    rt: Arc<ProcessRuntime>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Activator for StartsWsecho {
    async fn activate(&self, name: &FunctionName) -> Result<Activation, ActivationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let inst = wsecho(&self.rt, name.as_str(), "woke:").await;
        self.gw.apply(&table(vec![route(name.as_str(), &[inst.endpoint.addr()], 5000)])).await.unwrap();
        Ok(Activation::Requested)
    }
}

#[tokio::test]
async fn a_websocket_to_a_function_at_zero_is_held_until_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(runtime());
    let gw = Arc::new(gateway(dir.path()).await);
    let activator = Arc::new(StartsWsecho { gw: gw.clone(), rt: rt.clone(), calls: AtomicUsize::new(0) });
    gw.set_activator(activator.clone());
    gw.apply(&table(vec![route("sleepyws", &[], 5000)])).await.unwrap();
    let started = std::time::Instant::now();
    let opens = (0..5).map(|_| async {
        let tcp = tokio::net::TcpStream::connect(gw.http_addr()).await.unwrap();
        let mut ws = open(tcp, "sleepyws.localhost").await;
        echo(&mut ws, "first").await
    });
    for answer in futures::future::join_all(opens).await {
        assert_eq!(answer, "woke:first");
    }
    // One activation for the five upgrades; the gateway asks again only once
    // a second while they wait (a start slower than that, on a loaded machine).
    let calls = activator.calls.load(Ordering::SeqCst);
    let bound = 1 + usize::try_from(started.elapsed().as_secs()).unwrap();
    assert!((1..=bound).contains(&calls), "{calls} activations in {:?} for the five upgrades", started.elapsed());
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

/// A zero-downtime update: the open WebSocket stays on the old generation
/// (and keeps it counted, so a drain waits for it); new ones reach the new one.
#[tokio::test]
async fn open_websockets_survive_an_update_and_new_ones_reach_the_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (old, new) = (wsecho(&rt, "rolling", "v1:").await, wsecho(&rt, "rolling", "v2:").await);
    let gw = gateway(dir.path()).await;
    gw.apply(&table(vec![route("rolling", &[old.endpoint.addr()], 5000)])).await.unwrap();
    let mut before = open(tokio::net::TcpStream::connect(gw.http_addr()).await.unwrap(), "rolling.localhost").await;
    assert_eq!(echo(&mut before, "a").await, "v1:a");
    gw.apply(&table(vec![route("rolling", &[new.endpoint.addr()], 5000)])).await.unwrap();
    let mut after = open(tokio::net::TcpStream::connect(gw.http_addr()).await.unwrap(), "rolling.localhost").await;
    assert_eq!(echo(&mut after, "b").await, "v2:b");
    assert_eq!(echo(&mut before, "c").await, "v1:c", "the open WebSocket runs on");
    assert_eq!(gw.endpoint_in_flight(&old.endpoint), 1, "the old instance is still busy for a drain");
    close(before).await;
    eventually(Duration::from_secs(5), "the old instance is idle once its WebSocket closed", || async {
        gw.endpoint_in_flight(&old.endpoint) == 0
    })
    .await;
    assert_eq!(gw.endpoint_in_flight(&new.endpoint), 1);
    close(after).await;
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

/// A function written here that answers `Upgrade: <token>` with a 101 and
/// then echoes raw bytes in upper case, or a 101 to anything when `rogue`.
async fn raw_upgrader(rogue: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let token = text.lines().find_map(|l| l.strip_prefix("upgrade: ")).map(str::to_owned);
                let token = match (token, rogue) {
                    (Some(t), _) if text.contains("connection: upgrade") => t,
                    (_, true) => "rogue".to_owned(),
                    _ => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno").await;
                        return;
                    }
                };
                let answer =
                    format!("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {token}\r\n\r\n");
                s.write_all(answer.as_bytes()).await.unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let up = buf[..n].to_ascii_uppercase();
                            if s.write_all(&up).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await.unwrap().unwrap();
        assert_eq!(n, 1, "connection closed in the head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn any_upgrade_token_is_tunnelled_and_an_unasked_101_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (honest, rogue) = (raw_upgrader(false).await, raw_upgrader(true).await);
    let gw = gateway(dir.path()).await;
    gw.apply(&table(vec![route("raw", &[honest], 5000), route("rogue", &[rogue], 5000)])).await.unwrap();

    let mut s = tokio::net::TcpStream::connect(gw.http_addr()).await.unwrap();
    s.write_all(
        b"GET /t HTTP/1.1\r\nHost: raw.localhost\r\nConnection: keep-alive, Upgrade\r\nUpgrade: x-shout/1\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: x-shout/1\r\n") && lower.contains("connection: upgrade\r\n"), "{head}");
    for word in ["hello", "tunnel"] {
        s.write_all(word.as_bytes()).await.unwrap();
        let mut back = vec![0u8; word.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
        assert_eq!(back, word.to_ascii_uppercase().as_bytes());
    }
    drop(s);

    // Upgrade without `Connection: upgrade` is no request to upgrade: the header is dropped as hop-by-hop.
    let mut s = tokio::net::TcpStream::connect(gw.http_addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: raw.localhost\r\nUpgrade: x-shout/1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("no"), "{out}");

    // A function that switches protocols unasked gets a 502, not a tunnel.
    let (status, _, body) = get(&client(), gw.http_addr(), "rogue.localhost", "/").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("asked for no upgrade"), "{body}");
    gw.shutdown().await;
}

/// A gRPC-shaped function written here: h2c only, it answers with a body
/// and trailers, and says what it saw in headers.
async fn h2c_function() -> SocketAddr {
    use bytes::Bytes;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let saw = format!(
                        "{:?} te={} ct={}",
                        req.version(),
                        req.headers().get("te").map_or("-", |v| v.to_str().unwrap()),
                        req.headers().get("content-type").map_or("-", |v| v.to_str().unwrap()),
                    );
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    trailers.insert("grpc-message", "all-good".parse().unwrap());
                    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
                        vec![Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"))), Ok(Frame::trailers(trailers))];
                    let resp = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("x-saw", saw)
                        .body(StreamBody::new(futures::stream::iter(frames)))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_grpc_request_goes_h2c_to_the_function_and_its_trailers_come_back() {
    use http_body_util::BodyExt;
    let dir = tempfile::tempdir().unwrap();
    let upstream = h2c_function().await;
    let gw = gateway(dir.path()).await;
    gw.apply(&table(vec![route("grpc", &[upstream], 5000)])).await.unwrap();
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/pkg.Greeter/SayHello", gw.http_addr()))
        .header("host", "grpc.localhost")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"\0\0\0\0\x02yo")))
        .unwrap();
    let resp = h2_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-saw"], "HTTP/2.0 te=trailers ct=application/grpc");
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("the function's trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "all-good");
    assert_eq!(collected.to_bytes().as_ref(), b"\0\0\0\0\x02hi");
    gw.shutdown().await;
}
