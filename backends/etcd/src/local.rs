//! etcd members on this machine's loopback, for tests and benchmarks: an
//! `etcd` binary (Debian's `etcd-server`) started as child processes, with
//! fast elections, each killed (SIGKILL) when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Debian's etcd.
pub const ETCD: &str = "/usr/bin/etcd";

/// One member on loopback ports.
pub struct LocalMember {
    /// Its name in the cluster (`m0`, `m1`, ...).
    pub name: String,
    /// Its client address, `127.0.0.1:port`.
    pub client: String,
    child: Option<Child>,
}

impl LocalMember {
    /// Whether it was not killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9` of the member (nothing if it is already gone).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for LocalMember {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a new cluster of `n` members with their data and logs in `dir`;
/// they answer once their election is done (connect with retries).
pub fn start_cluster(dir: &Path, n: usize) -> std::io::Result<Vec<LocalMember>> {
    let token = format!(
        "pilotlight-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    );
    let ports = (0..n).map(|_| Ok((free_port()?, free_port()?))).collect::<std::io::Result<Vec<(u16, u16)>>>()?;
    let initial: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
    let mut members = Vec::with_capacity(n);
    for (i, (client, peer)) in ports.iter().enumerate() {
        let name = format!("m{i}");
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(ETCD)
            .args(["--name", &name, "--data-dir"])
            .arg(dir.join(&name))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new", "--initial-cluster-token", &token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        members.push(LocalMember { name, client: format!("127.0.0.1:{client}"), child: Some(child) });
    }
    Ok(members)
}

/// Starts one member that serves clients over TLS with `cert` and `key`,
/// and asks each client for a certificate signed by `client_ca`.
pub fn start_tls_member(dir: &Path, cert: &Path, key: &Path, client_ca: &Path) -> std::io::Result<LocalMember> {
    let (client, peer) = (free_port()?, free_port()?);
    let log = std::fs::File::create(dir.join("tls.log"))?;
    let child = Command::new(ETCD)
        .args(["--name", "tls", "--data-dir"])
        .arg(dir.join("tls"))
        .args(["--listen-client-urls", &format!("https://127.0.0.1:{client}")])
        .args(["--advertise-client-urls", &format!("https://127.0.0.1:{client}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("tls=http://127.0.0.1:{peer}")])
        .arg("--cert-file")
        .arg(cert)
        .arg("--key-file")
        .arg(key)
        .arg("--client-cert-auth")
        .arg("--trusted-ca-file")
        .arg(client_ca)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    Ok(LocalMember { name: "tls".into(), client: format!("127.0.0.1:{client}"), child: Some(child) })
}

/// Waits until the members answer (their election is done), at most `within`.
pub async fn ready(
    members: &[LocalMember],
    within: std::time::Duration,
) -> Result<(), pilotlight_core::ports::StoreError> {
    let config = crate::EtcdConfig::from_url(&format!("etcd://{}/?timeout_ms=1000", clients(members)))?;
    let deadline = std::time::Instant::now() + within;
    loop {
        match crate::EtcdStore::connect(&config).await {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// The members' client addresses, comma-separated (an `etcd://` URL's hosts).
pub fn clients(members: &[LocalMember]) -> String {
    members.iter().map(|m| m.client.as_str()).collect::<Vec<_>>().join(",")
}
