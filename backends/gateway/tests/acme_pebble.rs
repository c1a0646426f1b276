//! Certificates from Debian's `pebble` ACME test server, over HTTP-01
//! challenges the gateway answers itself. `pebble-challtestsrv` plays DNS and
//! resolves every name to 127.0.0.1, so nothing leaves loopback.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pilotlight_core::model::Domain;
use pilotlight_core::ports::Router;
use pilotlight_core::testkit::{eventually, free_port, require_tool};
use pilotlight_gateway::{AcmeConfig, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).kill_on_drop(true).spawn().expect("spawn")
}

async fn wait_listening(port: u16) {
    eventually(Duration::from_secs(20), &format!("something listens on 127.0.0.1:{port}"), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
}

/// Pebble's own HTTPS certificate, for 127.0.0.1.
fn pebble_tls(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap().self_signed(&key).unwrap();
    let (c, k) = (dir.join("pebble-cert.pem"), dir.join("pebble-key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A TLS request to the gateway that trusts only `anchor_pem` (the issuing CA of the ACME chain).
async fn https_get(gw: &Gateway, host: &str, anchor_pem: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut anchor_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw.https_addr().unwrap()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the gateway presents the ACME certificate for this host");
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    out
}

#[tokio::test]
async fn certificates_come_from_pebble_over_http01_served_by_the_gateway() {
    if !require_tool("pebble", "the ACME test server") || !require_tool("pebble-challtestsrv", "pebble's test DNS") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let web = hello(&rt, "web").await;
    let api = hello(&rt, "api").await;

    let mut cfg = config(dir.path());
    cfg.domain = Domain::new("pilotlight.test").unwrap();
    let gw = Gateway::start(cfg).await.unwrap();

    let (dns, dns_mgmt, acme, acme_mgmt, tls_alpn) = (free_port(), free_port(), free_port(), free_port(), free_port());
    let _dns = spawn(Command::new("pebble-challtestsrv").args([
        "-defaultIPv4",
        "127.0.0.1",
        "-defaultIPv6",
        "",
        "-dns01",
        &format!("127.0.0.1:{dns}"),
        "-http01",
        "",
        "-https01",
        "",
        "-tlsalpn01",
        "",
        "-management",
        &format!("127.0.0.1:{dns_mgmt}"),
    ]));
    let (cert, key) = pebble_tls(dir.path());
    let pebble_config = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{acme}"),
        "managementListenAddress": format!("127.0.0.1:{acme_mgmt}"),
        "certificate": cert, "privateKey": key,
        "httpPort": gw.http_addr().port(), "tlsPort": tls_alpn,
        "ocspResponderURL": "", "externalAccountBindingRequired": false
    }});
    let config_path = dir.path().join("pebble.json");
    std::fs::write(&config_path, pebble_config.to_string()).unwrap();
    let _pebble = spawn(
        Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0"),
    );
    wait_listening(dns_mgmt).await;
    wait_listening(acme).await;

    let acme_dir = dir.path().join("acme");
    let issuer = gw
        .enable_acme(AcmeConfig {
            directory_url: format!("https://127.0.0.1:{acme}/dir"),
            contact: vec![],
            ca_root: Some(cert.clone()),
            dir: acme_dir.clone(),
            renew_before: Duration::from_secs(30 * 86_400),
        })
        .await
        .expect("ACME account on pebble");

    // Routing a function asks for its certificate in the background.
    gw.apply(&table(vec![route("web", &[web.endpoint.addr()], 5000), route("api", &[api.endpoint.addr()], 5000)]))
        .await
        .unwrap();
    let chain_path = acme_dir.join("certs/web.pilotlight.test.pem");
    let issuer2 = issuer.clone();
    eventually(Duration::from_secs(60), "certificates issued for web and api", || {
        let issuer = issuer2.clone();
        async move { issuer.is_fresh("web.pilotlight.test") && issuer.is_fresh("api.pilotlight.test") }
    })
    .await;
    let chain = std::fs::read_to_string(&chain_path).unwrap();
    let certs: Vec<_> = rustls_pemfile::certs(&mut chain.as_bytes()).collect();
    assert!(certs.len() >= 2, "leaf and issuer expected in {chain_path:?}");
    // Trust only pebble's issuing CA: the handshake succeeds only with the ACME certificate.
    let issuer_pem = chain.split_inclusive("-----END CERTIFICATE-----\n").nth(1).unwrap().to_owned();
    let answer = https_get(&gw, "web.pilotlight.test", &issuer_pem).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("Hello from web!\n"), "{answer}");
    // Already fresh: nothing to do, no new order.
    issuer.ensure("web.pilotlight.test").await.unwrap();
    assert!(issuer.renew_due().await.is_empty());
    gw.shutdown().await;

    // A new gateway process serves the stored certificate without asking again.
    let mut cfg = config(dir.path());
    cfg.domain = Domain::new("pilotlight.test").unwrap();
    let again = Gateway::start(cfg).await.unwrap();
    let issuer = again
        .enable_acme(AcmeConfig {
            directory_url: format!("https://127.0.0.1:{acme}/dir"),
            contact: vec![],
            ca_root: Some(cert),
            dir: acme_dir,
            renew_before: Duration::from_secs(30 * 86_400),
        })
        .await
        .unwrap();
    assert!(issuer.is_fresh("web.pilotlight.test"));
    again.apply(&table(vec![route("web", &[web.endpoint.addr()], 5000)])).await.unwrap();
    let answer = https_get(&again, "web.pilotlight.test", &issuer_pem).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    again.shutdown().await;
    rt.stop_all().await.unwrap();
}
