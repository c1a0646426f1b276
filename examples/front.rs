//! NGINX in front of the nodes of a cluster: it renders the live nodes'
//! gateways as the upstream of every function (each gateway forwards to the
//! function's owner once), and renders again when a node comes or goes and
//! every few seconds for new or deleted functions. Needs the `etcd` feature.
//!
//! ```sh
//! cargo run --features etcd --example front -- \
//!   --store 'etcd://10.0.0.5:2379/?prefix=/pilotlight' --domain example.com --http-addr 0.0.0.0:80
//! ```
use std::sync::Arc;
use std::time::Duration;

use pilotlight::core::controller::cluster::run_front;
use pilotlight::core::model::{Domain, Region};
use pilotlight::etcd::{EtcdConfig, EtcdStore};
use pilotlight::nginx::{NginxConfig, NginxRouter};
use tokio_util::sync::CancellationToken;

#[path = "common/signal.rs"]
mod signal;

/// front: a managed NGINX over the gateways of a cluster's live nodes.
#[derive(clap::Parser)]
#[command(
    after_help = "Example:\n  front --store 'etcd://10.0.0.5:2379/?prefix=/pilotlight' --domain example.com --http-addr 0.0.0.0:80"
)]
struct Args {
    /// The cluster's store: etcd://host:port[,host:port][/?prefix=...&ca=...&cert=...&key=...].
    #[arg(long, env = "PILOTLIGHT_STORE", value_name = "URL", hide_env_values = true)]
    store: String,
    /// NGINX's configuration generations live here.
    #[arg(long, env = "PILOTLIGHT_DATA_DIR", value_name = "DIR", default_value = "pilotlight-front")]
    data_dir: std::path::PathBuf,
    /// Functions are served at <name>.<domain>.
    #[arg(long, env = "PILOTLIGHT_DOMAIN", default_value = "localhost")]
    domain: String,
    /// The region of functions that name none (the nodes' default).
    #[arg(long, env = "PILOTLIGHT_REGION", default_value = "local")]
    region: String,
    /// NGINX's HTTP listener.
    #[arg(long, env = "PILOTLIGHT_HTTP_ADDR", value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http_addr: std::net::SocketAddr,
    /// NGINX's status listener on loopback (confirms reloads).
    #[arg(long, env = "PILOTLIGHT_NGINX_STATUS_ADDR", value_name = "ADDR", default_value = "127.0.0.1:8079")]
    nginx_status_addr: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let a = <Args as clap::Parser>::parse();
    let store = EtcdStore::connect(&EtcdConfig::from_url(&a.store)?).await?;
    let mut config = NginxConfig::managed(Domain::new(a.domain.clone())?, &a.data_dir);
    config.http_addr = a.http_addr;
    config.status_addr = a.nginx_status_addr;
    let nginx = Arc::new(NginxRouter::start(config).await?);
    let cancel = CancellationToken::new();
    let nodes = store.live_nodes(Duration::from_secs(2), cancel.clone());
    let front = tokio::spawn(run_front(
        Arc::new(store),
        nodes,
        nginx.clone(),
        Region::new(a.region)?,
        Duration::from_secs(2),
        cancel.clone(),
    ));
    println!("front ready: http://<name>.{}:{} over the cluster's gateways", a.domain, a.http_addr.port());
    signal::stop_signal().await;
    cancel.cancel();
    let _ = front.await;
    nginx.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
