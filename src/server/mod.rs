//! The whole platform in one process, assembled from a [`ServerConfig`]: the
//! queue, the runtime, the edge and the store it names, the REST API with its
//! web UI, and a Prometheus recorder for `/metrics`.
//!
//! `examples/server.rs` is this module behind a command line; a program that
//! embeds the full server calls [`Server::start`] the same way.

mod config;
mod secrets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use config::{
    Command, ConfigError, DockerEndpoint, EdgeKind, QueueKind, QueueUrl, RuntimeKind, ServerArgs, ServerConfig,
    Settings, StoreKind,
};
use pilotlight_api::{ApiConfig, ApiServer, ApiToken};
use pilotlight_core::controller::cluster::Membership;
use pilotlight_core::controller::{
    AutoscalerConfig, CronConfig, CronScheduler, Invoker, InvokerConfig, KeySource, SECRET_KEY_ENV, SecretKey,
    SecretVault, StoreActivator, TopicConfig, TopicTriggers,
};
use pilotlight_core::model::{InstanceState, NodeId, NodeInfo, Region};
use pilotlight_core::ports::RuntimeError;
use pilotlight_core::support::{FanoutRouter, History};
use pilotlight_core::{Platform, Router, Runtime};
use pilotlight_docker::{DockerRuntime, DockerRuntimeConfig};
use pilotlight_gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight_nginx::{NginxConfig, NginxRouter};
use pilotlight_process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight_redb::RedbStore;
use tokio_util::sync::CancellationToken;

/// The file in the data directory that holds the key secrets are sealed
/// with (mode 0600), unless `PILOTLIGHT_SECRET_KEY` gives it.
pub const SECRET_KEY_FILE: &str = "secret.key";

/// Why the server could not start. Each names the part and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// One part could not start.
    #[error("{part}: {message}")]
    Start {
        /// `queue`, `runtime`, `edge`, `store`, `api`, `data_dir`.
        part: &'static str,
        /// Why, and what to do.
        message: String,
    },
}

fn start_error(part: &'static str) -> impl Fn(String) -> ServerError {
    move |message| ServerError::Start { part, message }
}

/// The running platform.
pub struct Server {
    config: ServerConfig,
    platform: Platform,
    api: ApiServer,
    gateway: Arc<Gateway>,
    nginx: Option<Arc<NginxRouter>>,
    token: ApiToken,
    token_created: bool,
    public_url: String,
    budget_mb: Option<u64>,
    /// Stops the invoker of asynchronous invocations.
    invoker: tokio_util::sync::CancellationToken,
    /// Where the secret key came from, and where instances' secret files go.
    secrets: (KeySource, PathBuf),
    /// This node's registration in etcd, when it is one of a cluster.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    registration: tokio::sync::Mutex<Option<Registration>>,
}

/// A node's registration, held until shutdown.
#[cfg(feature = "etcd")]
type Registration = pilotlight_etcd::membership::Registration;
#[cfg(not(feature = "etcd"))]
type Registration = std::convert::Infallible;

/// The shared store's way of registering this node, when it has one.
#[cfg(feature = "etcd")]
type Joiner = Option<pilotlight_etcd::EtcdStore>;
#[cfg(not(feature = "etcd"))]
type Joiner = Option<std::convert::Infallible>;

/// The one recorder of this process (a recorder is process-wide): Prometheus
/// for `/metrics` and the in-process [`History`] the UI charts, side by side.
/// Installed before anything registers a handle, or those handles go nowhere.
/// Two servers in one process (tests) share both, as they would share `/metrics`.
fn recorder() -> Option<&'static (metrics_exporter_prometheus::PrometheusHandle, History)> {
    static RECORDER: OnceLock<Option<(metrics_exporter_prometheus::PrometheusHandle, History)>> = OnceLock::new();
    RECORDER
        .get_or_init(|| {
            let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = prometheus.handle();
            let history = History::new();
            let both = metrics_util::layers::FanoutBuilder::default()
                .add_recorder(prometheus)
                .add_recorder(history.clone())
                .build();
            match metrics::set_global_recorder(both) {
                Ok(()) => Some((handle, history)),
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed; /metrics and the UI's charts will not show the platform's");
                    None
                }
            }
        })
        .as_ref()
}

/// Every `every`, how many instances of each function run and how many are
/// paused, as the Store last observed them, into the charts' history.
async fn sample_instances(platform: Platform, history: History, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(records) = platform.list().await else { continue };
        let mut live = std::collections::HashSet::new();
        for r in records {
            let count = |state| r.status.instances.iter().filter(|i| i.state == state).count();
            let (running, paused) = (count(InstanceState::Running), count(InstanceState::Paused));
            let name = r.spec.name().to_string();
            history.sample_instances(
                &name,
                u32::try_from(running).unwrap_or(u32::MAX),
                u32::try_from(paused).unwrap_or(u32::MAX),
            );
            live.insert(name);
        }
        for gone in history.functions().into_iter().filter(|f| !live.contains(f)) {
            history.forget(&gone);
        }
    }
}

/// The store several nodes share, connected, when the setting names one;
/// and what registers a node in it.
async fn shared_store(store: &StoreKind) -> Result<(Option<Arc<dyn pilotlight_core::Store>>, Joiner), ServerError> {
    match store {
        #[cfg(feature = "etcd")]
        StoreKind::Etcd(url) => {
            let config = pilotlight_etcd::EtcdConfig::from_url(url).map_err(|e| start_error("store")(e.to_string()))?;
            let etcd = pilotlight_etcd::EtcdStore::connect(&config)
                .await
                .map_err(|e| start_error("store")(format!("{store}: {e}")))?;
            Ok((Some(Arc::new(etcd.clone())), Some(etcd)))
        }
        #[cfg(not(feature = "etcd"))]
        StoreKind::Etcd(_) => Err(start_error("store")("this build has no etcd support (feature `etcd`)".into())),
        _ => Ok((None, None)),
    }
}

/// Registers this node (a cluster's) through `joiner`.
#[cfg(feature = "etcd")]
async fn join(joiner: &Joiner, membership: &Arc<Membership>) -> Result<Option<Registration>, ServerError> {
    match joiner {
        Some(etcd) if membership.is_clustered() => {
            Ok(Some(etcd.join(Arc::clone(membership)).await.map_err(|e| start_error("node")(e.to_string()))?))
        }
        _ => Ok(None),
    }
}
#[cfg(not(feature = "etcd"))]
async fn join(_: &Joiner, _: &Arc<Membership>) -> Result<Option<Registration>, ServerError> {
    Ok(None)
}

impl Server {
    /// Checks the configuration, starts every part and the API. If a part
    /// fails, the parts already started are stopped again.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        config.check()?;
        let recorder = recorder();
        let callback_hosts = config.callback_hosts()?;
        let callbacks = pilotlight_gateway::HttpCallbacks::new()
            .map_err(|e| start_error("callbacks")(format!("the system's TLS roots cannot be read: {e}")))?;
        // Secrets: the runtimes write the files of the values the vault opens
        // (the vault itself needs the Store, which is opened after the engine answered).
        let late_vault = Arc::new(secrets::LateVault::default());
        let secret_files = secrets::files(&config.platform_id, &config.data_dir, &late_vault);
        // The runtime first: without an engine nothing is written to the data directory.
        let mut images: Option<Arc<dyn pilotlight_core::ports::Images>> = None;
        let runtime: Arc<dyn Runtime> = match config.runtime {
            RuntimeKind::Process => Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
                platform_id: config.platform_id.clone(),
                secrets: Some(secret_files.clone()),
                ..Default::default()
            })),
            RuntimeKind::Docker => {
                let docker = DockerRuntime::connect(DockerRuntimeConfig {
                    host: config.docker_host.clone(),
                    platform_id: config.platform_id.clone(),
                    network: config.docker_network.clone(),
                    endpoint_mode: config.docker_endpoint_mode(),
                    secrets: Some(secret_files.clone()),
                    registry_logins: Some(Arc::clone(&late_vault) as Arc<dyn pilotlight_core::ports::RegistryAuth>),
                    ..Default::default()
                })
                .await
                .map_err(|e| match e {
                    RuntimeError::Unavailable(m) => start_error("runtime")(format!(
                        "{m}. To run functions as local processes instead, start with `--runtime process`."
                    )),
                    e => start_error("runtime")(e.to_string()),
                })?;
                images = Some(Arc::new(docker.clone()));
                Arc::new(docker)
            }
        };
        // A shared store next: an etcd that cannot be reached stops the start
        // before anything is written, naming the members and the cause.
        let (shared_store, joiner) = shared_store(&config.store).await?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| ServerError::Start {
            part: "data_dir",
            message: format!("cannot create {}: {e}", config.data_dir.display()),
        })?;
        let (token, token_created) =
            ApiToken::load_or_create(&config.data_dir).map_err(|e| start_error("api")(e.to_string()))?;
        let queue =
            crate::connect::queue(config.queue.as_str()).await.map_err(|e| start_error("queue")(e.to_string()))?;
        let store: Arc<dyn pilotlight_core::Store> = match (shared_store, &config.store) {
            (Some(s), _) => s,
            (None, StoreKind::Memory) => Arc::new(pilotlight_core::memory::MemoryStore::new()),
            (None, _) => Arc::new(
                RedbStore::open(config.data_dir.join("store.redb")).map_err(|e| start_error("store")(e.to_string()))?,
            ),
        };
        let (secret_key, key_source) = SecretKey::load_or_create(&config.data_dir.join(SECRET_KEY_FILE))
            .map_err(|e| start_error("secrets")(e.to_string()))?;
        let vault = SecretVault::new(Arc::clone(&store), secret_key);
        late_vault.set(vault.clone());
        // The edge's activator needs only the Store and the queue: the gateway gets it as it starts,
        // and it takes the fast path through the platform's runtime worker once that runs.
        let activator = Arc::new(StoreActivator::new(Arc::clone(&queue), Arc::clone(&store)));
        let domain = pilotlight_core::model::Domain::new(config.domain.clone()).map_err(|e| {
            ServerError::Config(ConfigError {
                origin: "configuration".into(),
                key: "domain".into(),
                message: e.message,
            })
        })?;
        let https = config.https()?;
        let tls = match (&config.tls_cert, &config.tls_key, https) {
            (_, _, None) => TlsSource::Disabled,
            (Some(cert), Some(key), Some(_)) => TlsSource::Pem { cert: cert.clone(), key: key.clone() },
            _ => TlsSource::DevCa { dir: config.data_dir.join("tls") },
        };
        let edge_error = start_error("edge");
        let (gateway, nginx, router): (Arc<Gateway>, Option<Arc<NginxRouter>>, Arc<dyn Router>) =
            if config.edge == EdgeKind::Nginx {
                // NGINX serves; the gateway, on a private port, is the activator for functions with no instance.
                let mut gw = GatewayConfig::new(domain.clone(), &config.data_dir).ephemeral();
                gw.tls = TlsSource::Disabled;
                let gateway =
                    Arc::new(Gateway::start(gw).await.map_err(|e| edge_error(format!("the activator gateway: {e}")))?);
                gateway.set_activator(activator.clone());
                let mut nc = NginxConfig::managed(domain.clone(), &config.data_dir);
                nc.http_addr = config.http_addr;
                nc.status_addr = config.nginx_status_addr;
                nc.activator = Some(gateway.http_addr());
                if let (Some(addr), Some(cert), Some(key)) = (https, &config.tls_cert, &config.tls_key) {
                    nc = nc.with_https(addr, cert, key);
                } else if https.is_some() {
                    tracing::warn!("edge nginx: no tls_cert/tls_key given, so NGINX serves HTTP only");
                }
                let nginx = match NginxRouter::start(nc).await {
                    Ok(n) => Arc::new(n),
                    Err(e) => {
                        gateway.shutdown().await;
                        return Err(edge_error(format!("NGINX: {e}")));
                    }
                };
                let router = Arc::new(FanoutRouter::new(vec![gateway.clone() as Arc<dyn Router>, nginx.clone()]));
                (gateway, Some(nginx), router)
            } else {
                let mut gw = GatewayConfig::new(domain.clone(), &config.data_dir);
                gw.max_header_bytes = usize::try_from(config.max_header_bytes).unwrap_or(usize::MAX);
                gw.max_header_line_bytes = usize::try_from(config.max_header_line_bytes).unwrap_or(usize::MAX);
                gw.http_addr = config.http_addr;
                if let Some(a) = https {
                    gw.https_addr = a;
                }
                gw.tls = tls.clone();
                let gateway = Arc::new(Gateway::start(gw).await.map_err(|e| edge_error(e.to_string()))?);
                gateway.set_activator(activator.clone());
                (gateway.clone(), None, gateway as Arc<dyn Router>)
            };
        let public_https =
            config.tls_cert.is_some() && https.is_some() && (nginx.is_none() || config.tls_key.is_some());
        let public_port = match (public_https, nginx.is_some()) {
            (true, false) => gateway.https_addr().map(|a| a.port()),
            (true, true) => https.map(|a| a.port()),
            (false, false) => Some(gateway.http_addr().port()),
            (false, true) => Some(config.http_addr.port()),
        };
        let budget = match config.memory_budget_mb {
            0 => host_memory_mb().map(|m| m * 4 / 5),
            n => Some(n),
        };
        let scaler = AutoscalerConfig {
            tick: Duration::from_millis(config.autoscale_tick_ms),
            scale_down_window: Duration::from_secs(config.scale_down_window_s),
            ..AutoscalerConfig::default()
        };
        let node = config.node()?;
        let me = NodeInfo {
            id: node.as_ref().map_or_else(
                || NodeId::new(config.platform_id.clone()).map_err(|e| start_error("node")(e.message)),
                |(id, _, _)| Ok(id.clone()),
            )?,
            region: Region::new(config.region.clone()).map_err(|e| start_error("region")(e.message))?,
            gateway: node.as_ref().map_or(gateway.http_addr(), |(_, _, a)| *a),
            capacity_mb: budget.unwrap_or(0),
            labels: node.as_ref().map(|(_, l, _)| l.clone()).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_ms: pilotlight_core::support::now_ms(),
        };
        let membership = match node {
            Some(_) => Membership::clustered(me, Duration::from_millis(config.node_ttl_ms)),
            None => Membership::solo(me),
        };
        let builder = Platform::builder().membership(Arc::clone(&membership));
        // A shared Store's changes reach this node's runtime worker at once.
        #[cfg(feature = "etcd")]
        let builder = match &joiner {
            Some(etcd) => builder.store_changes(Arc::new(etcd.clone())),
            None => builder,
        };
        let mut builder = builder
            .activator(&activator)
            .autoscaler(gateway.clone(), scaler)
            .resync_period(Duration::from_secs(config.resync_period_s))
            .backoff(Duration::from_secs(1), Duration::from_secs(config.backoff_max_s));
        if let Some(b) = budget {
            builder = builder.memory_budget_mb(b);
        }
        let invocation_store = Arc::clone(&store);
        let cron_store = Arc::clone(&store);
        let topic_store = Arc::clone(&store);
        let topic_queue = Arc::clone(&queue);
        let built = builder
            .queue(queue)
            .store(store)
            .runtime(Arc::clone(&runtime))
            .router(router)
            .domain(&config.domain)
            .and_then(|b| b.region(&config.region))
            .map(|b| b.public_url(public_https, public_port.filter(|p| *p != 80 && *p != 443)).build());
        let stop_edges = || async {
            gateway.shutdown().await;
            if let Some(n) = &nginx {
                n.shutdown(Duration::from_secs(5)).await;
            }
        };
        let platform = match built {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                stop_edges().await;
                return Err(start_error("platform")(e.to_string()));
            }
            Err(e) => {
                stop_edges().await;
                return Err(start_error("platform")(e.to_string()));
            }
        };
        // Registered before the workers start, so the first pass places functions over every live node.
        let registration = match join(&joiner, &membership).await {
            Ok(r) => r,
            Err(e) => {
                stop_edges().await;
                return Err(e);
            }
        };
        if let Err(e) = platform.start().await {
            platform.shutdown().await;
            stop_edges().await;
            return Err(start_error("platform")(e.to_string()));
        }
        // Asynchronous invocations: the edge records them in the Store and the
        // invoker delivers them back through the edge (activation from zero included).
        let invoker_config = InvokerConfig {
            max_attempts: u32::try_from(config.async_max_attempts).unwrap_or(5),
            callback_max_attempts: u32::try_from(config.callback_max_attempts).unwrap_or(10),
            callback_hosts,
            retry_any_5xx: config.async_retry_any_5xx,
            ..InvokerConfig::default()
        };
        let invoker =
            Invoker::new(invocation_store, Arc::new(gateway.dispatcher()), Arc::new(callbacks), invoker_config);
        gateway.set_intake(Arc::new(invoker.intake()));
        let invoker_stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(Arc::clone(&invoker).run(invoker_stop.clone()));
        // Cron triggers fire invocations into the same Store, and wake the invoker.
        let cron = CronScheduler::new(cron_store, CronConfig::default(), Some(invoker.waker()));
        tokio::spawn(cron.run(invoker_stop.clone()));
        // Topic triggers consume the platform's queue and call functions through the edge.
        let topic_triggers =
            TopicTriggers::new(topic_store, topic_queue, Arc::new(gateway.dispatcher()), TopicConfig::default());
        tokio::spawn(topic_triggers.run(invoker_stop.clone()));
        let mut api = ApiConfig::new(token.clone());
        api.addr = config.api_addr;
        api.metrics = recorder.map(|(h, _)| {
            let h = h.clone();
            Arc::new(move || h.render()) as pilotlight_api::MetricsRender
        });
        if let Some((_, history)) = recorder {
            api.history = Some(history.clone());
            tokio::spawn(sample_instances(
                platform.clone(),
                history.clone(),
                Duration::from_secs(5),
                invoker_stop.clone(),
            ));
        }
        api.runtime = config.runtime.to_string();
        api.edge = config.edge.to_string();
        api.queue = match config.queue.kind() {
            QueueKind::Memory => "memory",
            QueueKind::Kafka => "kafka",
            QueueKind::Amqp => "amqp",
        }
        .to_owned();
        api.intake = Some(Arc::new(invoker.intake()));
        api.secrets = Some(vault);
        api.images = images;
        let api = match ApiServer::start(platform.clone(), api).await {
            Ok(a) => a,
            Err(e) => {
                invoker_stop.cancel();
                platform.shutdown().await;
                stop_edges().await;
                return Err(start_error("api")(e.to_string()));
            }
        };
        let public_url = platform
            .url_for(&"name".parse().map_err(|_| start_error("platform")("bad placeholder".into()))?)
            .replacen("name.", "<name>.", 1);
        Ok(Self {
            config,
            platform,
            api,
            gateway,
            nginx,
            token,
            token_created,
            public_url,
            budget_mb: budget,
            invoker: invoker_stop,
            secrets: (key_source, secret_files.root().to_path_buf()),
            registration: tokio::sync::Mutex::new(registration),
        })
    }

    /// The platform, to deploy and inspect functions in this process.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }
    /// Where the API and the UI listen.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.addr()
    }
    /// The API token.
    pub fn token(&self) -> &ApiToken {
        &self.token
    }
    /// Whether the token was made by this start (print it once).
    pub fn token_created(&self) -> bool {
        self.token_created
    }
    /// The gateway (the edge, or NGINX's activator).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }
    /// Where the edge listens for HTTP.
    pub fn http_addr(&self) -> SocketAddr {
        if self.nginx.is_some() { self.config.http_addr } else { self.gateway.http_addr() }
    }

    /// What it uses and where it listens, one line each, for people.
    pub fn summary(&self) -> Vec<String> {
        let c = &self.config;
        let mut out = vec![
            format!("data      {}", c.data_dir.display()),
            match &c.store {
                StoreKind::Memory => "store     memory: nothing is kept across a restart".to_owned(),
                StoreKind::Etcd(_) => format!("store     {} (shared)", c.store),
                _ => format!("store     redb at {}", c.data_dir.join("store.redb").display()),
            },
            format!("queue     {}", c.queue),
            format!("runtime   {}", c.runtime),
        ];
        match &self.nginx {
            Some(n) => {
                out.push(format!("edge      nginx on http://{} (config in {})", c.http_addr, n.dir().display()));
                if let Some(h) = &n.config().https {
                    out.push(format!("          https://{}", h.addr));
                }
                out.push(format!("activator gateway on http://{}", self.gateway.http_addr()));
            }
            None => {
                out.push(format!("edge      gateway on http://{}", self.gateway.http_addr()));
                if let Some(h) = self.gateway.https_addr() {
                    out.push(format!("          https://{h}"));
                }
                if let Some(ca) = self.gateway.dev_ca_path() {
                    out.push(format!("          development CA (trust it for HTTPS): {}", ca.display()));
                }
            }
        }
        out.push(format!("functions {}", self.public_url));
        out.push(format!(
            "reconcile every {} s (jittered); failures retried with backoff up to {} s",
            c.resync_period_s, c.backoff_max_s
        ));
        out.push(format!(
            "scaling   autoscaler every {} ms, scale-down window {} s, memory budget {}",
            c.autoscale_tick_ms,
            c.scale_down_window_s,
            self.budget_mb.map_or("unlimited".to_owned(), |b| format!("{b} MiB"))
        ));
        out.push(format!("api       http://{}/v1  (web UI: http://{}/)", self.api.addr(), self.api.addr()));
        out.push(format!("token     {}", c.data_dir.join(pilotlight_api::TOKEN_FILE).display()));
        let key = match self.secrets.0 {
            KeySource::Env => SECRET_KEY_ENV.to_owned(),
            _ => c.data_dir.join(SECRET_KEY_FILE).display().to_string(),
        };
        out.push(format!("secrets   sealed in the store with the key in {key}; files in {}", self.secrets.1.display()));
        out
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// Stops the API, the workers and the edge. Instances (containers and
    /// processes) keep running: the next start adopts them, so a restart of
    /// the server loses nothing and starts nothing again. Delete a function to
    /// stop its instances.
    pub async fn shutdown(&self) {
        // Attempts under way are cut; their claims expire and they run again after a restart.
        self.invoker.cancel();
        self.api.shutdown().await;
        self.platform.shutdown().await;
        // The other nodes take this node's functions now, not after its TTL.
        #[cfg(feature = "etcd")]
        if let Some(r) = self.registration.lock().await.take() {
            r.leave().await;
        }
        self.gateway.shutdown().await;
        if let Some(n) = &self.nginx {
            n.shutdown(Duration::from_secs(10)).await;
        }
    }
}

/// The host's memory in MiB, from /proc/meminfo.
fn host_memory_mb() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 =
        text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024)
}
