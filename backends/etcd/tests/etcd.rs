//! The Store contract on a real etcd (Debian's `etcd-server`), and what a
//! three-member cluster does when its leader is killed under writes.
//!
//! Under CI a missing `etcd` fails the tests; on a laptop they are skipped
//! with the reason printed.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::time::{Duration, Instant};

use pilotlight_core::Store;
use pilotlight_core::ports::{DocKey, DocKind, DocQuery, StoreError};
use pilotlight_core::testkit::{free_port, unique};
use pilotlight_etcd::local::{ETCD, LocalMember, clients, start_cluster};
use pilotlight_etcd::{EtcdConfig, EtcdStore};

fn etcd_or_skip() -> bool {
    if std::path::Path::new(ETCD).exists() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "etcd is required under CI (apt install etcd-server)");
    eprintln!("SKIPPED: no {ETCD} (apt install etcd-server)");
    false
}

/// A cluster of `n` members on loopback ports, in `dir`.
fn cluster(dir: &std::path::Path, n: usize) -> Vec<LocalMember> {
    start_cluster(dir, n).unwrap()
}

async fn connect(members: &[LocalMember], prefix: &str) -> EtcdStore {
    let url = format!("etcd://{}/?prefix={prefix}&timeout_ms=2000", clients(members));
    let config = EtcdConfig::from_url(&url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match EtcdStore::connect(&config).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "etcd did not answer: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn the_store_contract_holds_on_etcd() {
    if !etcd_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(dir.path(), 1);
    let store = connect(&members, &format!("/{}", unique("conformance"))).await;
    pilotlight_core::testkit::store::run_all(&store).await;
    // Two platforms share one etcd by prefix and see nothing of each other.
    let other = connect(&members, &format!("/{}", unique("other"))).await;
    assert!(other.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_etcd_is_named_with_its_cause() {
    let port = free_port();
    let config = EtcdConfig::from_url(&format!("etcd://127.0.0.1:{port}/?timeout_ms=500")).unwrap();
    let e = EtcdStore::connect(&config).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, StoreError::Unavailable(_)), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")) && text.contains("cannot be reached"), "{text}");
}

/// 1,000 create-only writes while the leader is killed (SIGKILL) at the
/// 300th: every acknowledged write is there afterwards, and every key was
/// written exactly once (etcd's `version` is 1), however many times a write
/// whose answer was lost had to be tried again.
#[tokio::test(flavor = "multi_thread")]
async fn the_leader_killed_under_1000_writes_loses_none_and_applies_none_twice() {
    if !etcd_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut members = cluster(dir.path(), 3);
    let prefix = format!("/{}", unique("leader"));
    let store = connect(&members, &prefix).await;
    let kind = DocKind::new("writes").unwrap();
    let (mut acked, mut retried, mut failover) = (0usize, 0usize, None::<Duration>);
    let started = Instant::now();
    for i in 0..1000usize {
        if i == 300 {
            let leader = leader(&members).await;
            let m = &mut members[leader];
            eprintln!("killing the leader {} at write {i}", m.name);
            m.kill();
        }
        let key = DocKey::new(&kind, format!("{i:04}")).unwrap();
        let t = Instant::now();
        let deadline = t + Duration::from_secs(30);
        loop {
            match store.doc_put(&key, None, i.to_string().into_bytes()).await {
                Ok(_) => {
                    acked += 1;
                    break;
                }
                // An earlier try whose answer was lost did write it: once, as create-only.
                Err(StoreError::DocConflict { .. }) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "write {i} failed for 30 s: {e}");
                    retried += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        if i == 300 {
            failover = Some(t.elapsed());
        }
    }
    let took = started.elapsed();
    // A read may still be sent to the dead member first: it is tried again, as a caller would.
    let deadline = Instant::now() + Duration::from_secs(30);
    let docs = loop {
        match store.doc_list(&kind, &DocQuery::prefix("", 2000)).await {
            Ok(docs) => break docs,
            Err(e) => {
                assert!(e.is_retryable() && Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(docs.len(), 1000, "every write is there");
    for (i, d) in docs.iter().enumerate() {
        assert_eq!((d.key.as_str(), d.value.as_slice()), (format!("{i:04}").as_str(), i.to_string().as_bytes()));
    }
    // Written once each: etcd counts the writes of a key in its version.
    let live: Vec<String> = members.iter().filter(|m| m.is_running()).map(|m| m.client.clone()).collect();
    let mut raw = etcd_client::Client::connect(&live, None).await.unwrap();
    let all =
        raw.get(format!("{prefix}/docs/writes/"), Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(all.kvs().len(), 1000);
    assert!(all.kvs().iter().all(|kv| kv.version() == 1), "a key was written twice");
    eprintln!(
        "1000 writes in {took:.2?}: {acked} acknowledged at once, {} confirmed after a lost answer, {retried} retries; \
         the write at the kill took {:?}",
        1000 - acked,
        failover.unwrap_or_default()
    );
}

/// The member that leads now.
async fn leader(members: &[LocalMember]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for (i, m) in members.iter().enumerate() {
            if let Ok(mut c) = etcd_client::Client::connect([m.client.as_str()], None).await
                && let Ok(s) = c.status().await
                && s.header().is_some_and(|h| h.member_id() == s.leader())
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A CA, and a certificate it signed for `name` (with 127.0.0.1 as an address), as PEM files in `dir`.
fn issue(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_owned()]).unwrap();
        p.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        (p.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
    };
    let write = |file: &str, pem: &str| {
        let path = dir.join(file);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (server, server_key) = leaf("localhost");
    let (client, client_key) = leaf("pilotlight");
    (
        write("ca.pem", &ca_cert.pem()),
        write("server.pem", &server),
        write("server.key", &server_key),
        write("client.pem", &client),
        write("client.key", &client_key),
    )
}

#[tokio::test]
async fn the_store_works_over_tls_with_a_client_certificate_and_a_wrong_ca_is_named() {
    if !etcd_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, server, server_key, client, client_key) = issue(dir.path());
    let member = pilotlight_etcd::local::start_tls_member(dir.path(), &server, &server_key, &ca).unwrap();
    let url = format!(
        "etcd://{}/?prefix=/{}&timeout_ms=2000&ca={}&cert={}&key={}",
        member.client,
        unique("tls"),
        ca.display(),
        client.display(),
        client_key.display()
    );
    let config = EtcdConfig::from_url(&url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = loop {
        match EtcdStore::connect(&config).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "etcd over TLS did not answer: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    pilotlight_core::testkit::store::run_all(&store).await;

    // Without a client certificate the member refuses; with another CA the client refuses the member.
    let plain =
        EtcdConfig::from_url(&format!("etcd://{}/?timeout_ms=1000&ca={}", member.client, ca.display())).unwrap();
    let e = EtcdStore::connect(&plain).await.unwrap_err().to_string();
    assert!(e.contains(&member.client), "{e}");
    let other = tempfile::tempdir().unwrap();
    let (other_ca, ..) = issue(other.path());
    let url = format!(
        "etcd://{}/?timeout_ms=1000&ca={}&cert={}&key={}",
        member.client,
        other_ca.display(),
        client.display(),
        client_key.display()
    );
    let e = EtcdStore::connect(&EtcdConfig::from_url(&url).unwrap()).await.unwrap_err().to_string();
    assert!(e.contains("cannot be reached"), "{e}");
    // A file that is not there is named.
    let url = format!("etcd://{}/?ca=/nonexistent/ca.pem", member.client);
    let e = EtcdStore::connect(&EtcdConfig::from_url(&url).unwrap()).await.unwrap_err().to_string();
    assert!(e.contains("ca /nonexistent/ca.pem"), "{e}");
}
