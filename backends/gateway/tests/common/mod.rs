//! Helpers shared by the gateway's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pilotlight_core::model::{Domain, FunctionSpecInput, Instance};
use pilotlight_core::ports::Runtime;
use pilotlight_core::testkit::{fixtures::hello_binary, unique};
use pilotlight_gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight_process::{ProcessRuntime, ProcessRuntimeConfig};

pub fn runtime() -> ProcessRuntime {
    ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: unique("gw-test"),
        stop_grace: Duration::from_secs(1),
        kill_on_drop: true,
        ..Default::default()
    })
}

pub async fn hello(rt: &ProcessRuntime, name: &str) -> Instance {
    let mut input = FunctionSpecInput::exec(name, hello_binary().to_str().unwrap(), &[], 8080);
    input.env.insert("LOG_REQUESTS".into(), "0".into());
    rt.start(&input.validate().unwrap(), 1).await.unwrap()
}

pub fn config(dir: &std::path::Path) -> GatewayConfig {
    let mut c = GatewayConfig::new(Domain::new("localhost").unwrap(), dir).ephemeral();
    c.tls = TlsSource::DevCa { dir: dir.join("tls") };
    c.activation_timeout = Duration::from_secs(10);
    c.shutdown_grace = Duration::from_secs(5);
    c
}

pub async fn gateway(dir: &std::path::Path) -> Gateway {
    Gateway::start(config(dir)).await.unwrap()
}

pub use pilotlight_core::testkit::router::{route, table_of as table};

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// GET `path` on `gw` with `Host: host`; returns status, headers and body.
pub async fn get(c: &TestClient, gw: SocketAddr, host: &str, path: &str) -> (u16, http::HeaderMap, String) {
    send(c, gw, host, "GET", path, Bytes::new()).await
}

pub async fn send(
    c: &TestClient,
    gw: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    body: Bytes,
) -> (u16, http::HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{gw}{path}"))
        .header("host", host)
        .body(Full::new(body))
        .unwrap();
    let resp =
        tokio::time::timeout(Duration::from_secs(30), c.request(req)).await.expect("response within 30s").unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

pub fn empty() -> Empty<Bytes> {
    Empty::new()
}

/// Keeps a runtime's instances stopped at the end of a test.
pub struct Cleanup(pub Arc<ProcessRuntime>);

impl Cleanup {
    pub async fn run(&self) {
        self.0.stop_all().await.unwrap();
    }
}

/// A TLS connector that trusts only the CA in the PEM file at `ca_path` and offers `alpn`.
pub fn tls_connector(ca_path: &std::path::Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(ca_path).unwrap();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
