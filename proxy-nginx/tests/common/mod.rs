//! Helpers shared by the NGINX router's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pilotlight_core::model::{Domain, FunctionSpecInput, Instance};
use pilotlight_core::ports::Runtime;
use pilotlight_core::testkit::{fixtures::hello_binary, free_port, require_tool, unique};
use pilotlight_nginx::{NginxConfig, NginxMode};
use pilotlight_process::{ProcessRuntime, ProcessRuntimeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const DOMAIN: &str = "pilot.test";

/// Whether nginx is installed (under CI a missing nginx fails the test).
pub fn have_nginx() -> bool {
    require_tool("nginx", "the NGINX router's tests drive a real NGINX")
}

pub fn runtime() -> Arc<ProcessRuntime> {
    Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: unique("nginx-test"),
        stop_grace: Duration::from_secs(1),
        kill_on_drop: true,
        ..Default::default()
    }))
}

/// hello as `name`: it answers `Hello from <name>!`.
pub async fn hello(rt: &ProcessRuntime, name: &str) -> Instance {
    let mut input = FunctionSpecInput::exec(name, hello_binary().to_str().unwrap(), &[], 8080);
    input.env.insert("LOG_REQUESTS".into(), "0".into());
    rt.start(&input.validate().unwrap(), 1).await.unwrap()
}

pub use pilotlight_core::testkit::router::{route, table_of as table};

/// A managed NGINX on free loopback ports, with `dir` as its data directory.
pub fn managed(dir: &Path) -> NginxConfig {
    let mut c = NginxConfig::managed(Domain::new(DOMAIN).unwrap(), dir);
    c.http_addr = ([127, 0, 0, 1], free_port()).into();
    c.status_addr = ([127, 0, 0, 1], free_port()).into();
    c.mode = NginxMode::Managed { worker_processes: 2, worker_connections: 1024, stop_on_drop: true };
    c.confirm_timeout = Duration::from_secs(60);
    c
}

/// A CA and a wildcard certificate for `*.pilot.test` signed by it.
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_pem: String,
}

pub fn tls(dir: &Path) -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "pilotlight nginx test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![format!("*.{DOMAIN}")]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    let cert = dir.join("wildcard.pem");
    let key = dir.join("wildcard.key");
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Tls { cert, key, ca_pem: ca_cert.pem() }
}

pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Result<pilotlight_core::testkit::http::Response, String> {
    pilotlight_core::testkit::http::get(addr, host, path, Duration::from_secs(10)).await
}

/// GET over TLS with SNI `host`, trusting only `ca_pem`; returns (ALPN protocol, status line + body).
pub async fn https_get(addr: SocketAddr, host: &str, ca_pem: &str, alpn: &[&str]) -> (Option<String>, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake verified against the test CA only");
    let negotiated = tls.get_ref().1.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
    if negotiated.as_deref() == Some("h2") {
        return (negotiated, String::new());
    }
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    (negotiated, String::from_utf8_lossy(&out).into_owned())
}

/// Pids of processes whose command line mentions `needle` (to prove nothing is left running).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// Stops a managed NGINX found through `<dir>/nginx.pid` when dropped, so a
/// test that fails halfway (or one whose router does not stop on drop) leaves
/// no NGINX behind.
pub struct NginxGuard(pub PathBuf);

impl Drop for NginxGuard {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.0.join("nginx.pid")).ok().and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
}
