//! What the Docker benchmarks share: the raw engine's floor (containers made
//! with bollard directly, on the same network and published loopback port as
//! pilotlight's, without limits) and a platform staged on Docker behind the
//! gateway. Each benchmark uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use pilotlight::Platform;
use pilotlight::core::memory::{MemoryQueue, MemoryStore};
use pilotlight::core::model::Domain;
use pilotlight::core::testkit::fixtures::{DockerCleanup, hello_image_context};
use pilotlight::core::testkit::http;
use pilotlight::docker::{DockerRuntime, DockerRuntimeConfig, EndpointMode, LABEL_PLATFORM, build_image_from_dir};
use pilotlight::gateway::{Gateway, GatewayConfig, TlsSource};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The hello image both sides run, built locally from a static binary.
pub const IMAGE: &str = "pilotlight/hello:bench";
/// The Docker network both the raw containers and pilotlight's join, so the
/// floor and the product pay the same network setup.
pub const NETWORK: &str = "pilotlight-bench";

/// Polls `GET /` (with `host`) at `addr` until a 200, returns when it came.
pub async fn first_200(addr: SocketAddr, host: &str) -> Result<Instant, Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http::get(addr, host, "/", Duration::from_millis(500)).await
            && r.status == 200
        {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!("no 200 from {addr} ({host}) within 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The `p` quantile (0..=1) of `v`.
pub fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Raw engine: creates (does not start) a hello container labelled `label`,
/// with 8080 published on loopback, on the shared network.
pub async fn raw_container(docker: &Docker, label: &str, n: u64) -> Result<String, Error> {
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        env: Some(vec!["PORT=8080".into(), "LOG_REQUESTS=0".into()]),
        exposed_ports: Some(vec!["8080/tcp".into()]),
        labels: Some(HashMap::from([(label.into(), "1".into())])),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "8080/tcp".into(),
                Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
            )])),
            network_mode: Some(NETWORK.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let name = format!("pl-raw-{}-{n}", std::process::id());
    Ok(docker.create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body).await?.id)
}

/// The loopback host port a raw container's 8080 is published on.
pub async fn published_port(docker: &Docker, id: &str) -> Result<u16, Error> {
    docker
        .inspect_container(id, None)
        .await?
        .network_settings
        .and_then(|s| s.ports)
        .and_then(|p| p.get("8080/tcp").cloned().flatten())
        .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| "no published port".into())
}

/// Removes a raw container, whatever its state.
pub async fn remove(docker: &Docker, id: &str) {
    let _ = docker.remove_container(id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await;
}

/// pilotlight on Docker behind the gateway (memory queue and store), started,
/// with the hello image built. Dropping it removes every container of the run:
/// pilotlight's by its platform label, the raw ones by `raw_label`.
pub struct Stage {
    pub runtime: Arc<DockerRuntime>,
    pub docker: Docker,
    pub gateway: Arc<Gateway>,
    pub platform: Platform,
    /// An activator on the same Store and queue that never takes the fast
    /// path: the split deployment's queue round trip, for comparison.
    pub queue_activator: Arc<dyn pilotlight::core::ports::Activator>,
    /// The engine's version and API version, for the report.
    pub engine: (String, String),
    pub platform_id: String,
    _cleanup: (DockerCleanup, DockerCleanup),
    _dir: tempfile::TempDir,
}

/// Stages the platform: `platform_id` labels its containers; `drain` overrides
/// the default drain when given. Containers are reached on a published port.
pub async fn stage(platform_id: String, raw_label: &str, drain: Option<Duration>) -> Result<Stage, Error> {
    stage_in(platform_id, raw_label, drain, EndpointMode::PublishedPort).await
}

/// [`stage`], with the gateway reaching containers as `mode` says.
pub async fn stage_in(
    platform_id: String,
    raw_label: &str,
    drain: Option<Duration>,
    mode: EndpointMode,
) -> Result<Stage, Error> {
    let cleanup =
        (DockerCleanup { label: format!("{LABEL_PLATFORM}={platform_id}") }, DockerCleanup { label: raw_label.into() });
    let runtime = Arc::new(
        DockerRuntime::connect(DockerRuntimeConfig {
            platform_id: platform_id.clone(),
            network: NETWORK.into(),
            endpoint_mode: mode,
            ..Default::default()
        })
        .await?,
    );
    let docker = runtime.docker().clone();
    let context = hello_image_context();
    build_image_from_dir(&docker, IMAGE, context.path()).await?;
    let version = docker.version().await?;
    let dir = tempfile::tempdir()?;
    let mut config = GatewayConfig::new(Domain::new("localhost")?, dir.path()).ephemeral();
    config.tls = TlsSource::Disabled;
    let gateway = Arc::new(Gateway::start(config).await?);
    let (queue, store) = (Arc::new(MemoryQueue::new()), Arc::new(MemoryStore::new()));
    let queue_activator = Arc::new(pilotlight::core::controller::StoreActivator::new(queue.clone(), store.clone()));
    let mut builder = Platform::builder().queue(queue).store(store).runtime(runtime.clone()).router(gateway.clone());
    if let Some(d) = drain {
        builder = builder.drain(d);
    }
    let platform = builder.build()?;
    gateway.set_activator(platform.activator());
    platform.start().await?;
    Ok(Stage {
        runtime,
        docker,
        gateway,
        platform,
        queue_activator,
        engine: (version.version.unwrap_or_default(), version.api_version.unwrap_or_default()),
        platform_id,
        _cleanup: cleanup,
        _dir: dir,
    })
}
