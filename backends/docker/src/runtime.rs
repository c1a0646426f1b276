use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryStateEnum, HostConfig, HostConfigLogConfig, NetworkCreateRequest, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StatsOptions, StopContainerOptions,
};
use futures::StreamExt;
use pilotlight_core::model::{
    Endpoint, FunctionName, FunctionSpec, ImageRef, Instance, InstanceId, InstanceState, Network, RegistryHost, Source,
};
use pilotlight_core::ports::{
    ExitReason, InstanceStats, LayerProgress, LogLine, LogOptions, LogSource, LogStream, PullProgress, RegistryAuth,
    Runtime, RuntimeError, RuntimeEvent, RuntimeEvents,
};
use pilotlight_core::support::{SecretDir, SecretFiles, now_ms, probe_endpoint};
use tokio::sync::broadcast;

/// Label naming the platform that owns a container.
pub const LABEL_PLATFORM: &str = "io.pilotlight.platform";
/// Label naming the function a container runs.
pub const LABEL_FUNCTION: &str = "io.pilotlight.function";
/// Label with the generation of the function's spec.
pub const LABEL_GENERATION: &str = "io.pilotlight.generation";
/// Where a container finds its secrets, one read-only file each.
pub const SECRETS_MOUNT: &str = "/run/secrets";

/// Where the edge reaches a container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EndpointMode {
    /// The port published on 127.0.0.1 (through docker-proxy when the userland proxy is on).
    #[default]
    PublishedPort,
    /// The container's address on the platform network: skips docker-proxy;
    /// the edge must run on this host.
    NetworkAddress,
    /// Nothing published: the edge connects to the function's port on
    /// 127.0.0.1 inside the container's own network namespace (its sandbox
    /// key). Skips docker-proxy and works with `network: none`. Needs an edge
    /// that can enter namespaces (the built-in gateway, with
    /// `CAP_SYS_ADMIN`); [`DockerRuntime::connect`] falls back to
    /// [`PublishedPort`](Self::PublishedPort) when this process cannot.
    Namespace,
}

impl EndpointMode {
    /// `published-port`, `network-address` or `namespace`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointMode::PublishedPort => "published-port",
            EndpointMode::NetworkAddress => "network-address",
            EndpointMode::Namespace => "namespace",
        }
    }
}

/// Settings of a [`DockerRuntime`]. Its `Debug` leaves credentials out.
#[derive(Clone)]
pub struct DockerRuntimeConfig {
    /// The engine's API socket, as `unix:///path/to/docker.sock`; `None`
    /// uses `DOCKER_HOST`, else `/var/run/docker.sock`.
    pub host: Option<String>,
    /// Label value that marks this platform's containers: a DNS label.
    pub platform_id: String,
    /// The Docker network instances join (created if missing).
    pub network: String,
    /// Published port or network address.
    pub endpoint_mode: EndpointMode,
    /// How long a start may take until the container answers.
    pub ready_timeout: Duration,
    /// How long `stop` waits after SIGTERM before the engine kills.
    pub stop_grace: Duration,
    /// json-file log cap per container: size of one file, and how many files.
    pub log_max_size: String,
    /// See `log_max_size`.
    pub log_max_files: u32,
    /// Credentials for pulling from a private registry, when `registry_logins`
    /// has none for the image's registry.
    pub registry_auth: Option<DockerCredentials>,
    /// Logins per registry (`pilotlight registry login`): a pull of an image
    /// that names a registry presents that registry's login.
    pub registry_logins: Option<Arc<dyn RegistryAuth>>,
    /// Run the engine's init (docker-init, tini) as PID 1: it passes SIGTERM
    /// on, so a function that installs no signal handler stops at once instead
    /// of after `stop_grace` (the kernel ignores SIGTERM for a PID 1 without a
    /// handler), and it reaps zombies. Default on.
    pub init: bool,
    /// Where a function's `secrets` come from and where their files are
    /// written (bind-mounted read-only at `/run/secrets`); `None` refuses
    /// functions that list secrets. The directory must be on this engine's host.
    pub secrets: Option<SecretFiles>,
}

impl std::fmt::Debug for DockerRuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntimeConfig")
            .field("host", &self.host)
            .field("platform_id", &self.platform_id)
            .field("network", &self.network)
            .field("endpoint_mode", &self.endpoint_mode)
            .field("ready_timeout", &self.ready_timeout)
            .field("stop_grace", &self.stop_grace)
            .field("registry_auth", &self.registry_auth.as_ref().map(|_| "(hidden)"))
            .field("registry_logins", &self.registry_logins.is_some())
            .field("init", &self.init)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl Default for DockerRuntimeConfig {
    fn default() -> Self {
        Self {
            host: None,
            platform_id: "pilotlight".into(),
            network: "pilotlight".into(),
            endpoint_mode: EndpointMode::PublishedPort,
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(5),
            log_max_size: "1m".into(),
            log_max_files: 2,
            registry_auth: None,
            registry_logins: None,
            init: true,
            secrets: None,
        }
    }
}

/// Runs instances as containers. See the crate docs.
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    config: DockerRuntimeConfig,
    events: broadcast::Sender<RuntimeEvent>,
    /// Containers the platform is stopping: their exit is not news.
    stopping: Mutex<HashSet<String>>,
    /// Containers whose death the engine reported. Its container list can
    /// still say "running" right after the `die` event, so `list` trusts this.
    dead: Mutex<HashSet<String>>,
    /// Containers between create and start inside `start`: `created` in the
    /// engine's list, but not standing by to be started by someone else.
    starting: Mutex<HashSet<String>>,
    /// In namespace mode, each started container's endpoint (its sandbox key
    /// and port): a container list does not carry the sandbox key, so it is
    /// read once per container, at start or, for one adopted after a
    /// restart, at its first listing.
    namespaced: Mutex<HashMap<String, Endpoint>>,
    /// Each image's pull under way, or its last one, for progress in a status.
    pulls: Mutex<HashMap<String, PullProgress>>,
    counter: AtomicU64,
}

fn backend(e: BollardError) -> RuntimeError {
    match e {
        // The way to the engine failed (its socket is gone, refused, timed
        // out, or the connection broke): the engine is unavailable, not the request wrong.
        BollardError::HyperLegacyError { .. }
        | BollardError::IOError { .. }
        | BollardError::RequestTimeoutError
        | BollardError::SocketNotFoundError(_)
        | BollardError::HyperResponseError { .. } => {
            RuntimeError::Unavailable(format!("the Docker engine cannot be reached: {}", describe(&e)))
        }
        e => {
            let retryable = !matches!(e, BollardError::DockerResponseServerError { status_code: 400..=499, .. });
            RuntimeError::Backend { source: Box::new(e), retryable }
        }
    }
}

/// An error with its causes, `a: b: c`: bollard's own text often stops at "client error (Connect)".
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code: 404, .. })
}

fn image_of(spec: &FunctionSpec) -> Result<&ImageRef, RuntimeError> {
    match spec.source() {
        Source::Image(i) => Ok(i),
        _ => {
            Err(RuntimeError::wrong_source(spec, "Docker runtime", "image", "use the process runtime for executables"))
        }
    }
}

impl DockerRuntime {
    /// Connects to the engine named by `DOCKER_HOST` (or the default socket),
    /// negotiates the API version (the engine here speaks 1.41), makes sure the
    /// platform network exists and starts watching container exits.
    pub async fn connect(config: DockerRuntimeConfig) -> Result<Self, RuntimeError> {
        pilotlight_core::model::Region::new(config.platform_id.clone())
            .map_err(|e| RuntimeError::InvalidInput { field: "platform_id".into(), message: e.message })?;
        let place = config
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let unavailable = |e: BollardError| {
            RuntimeError::Unavailable(format!(
                "no Docker engine answered at {place} ({e}); start dockerd, set DOCKER_HOST, or use the process runtime"
            ))
        };
        let docker = match &config.host {
            Some(host) if host.starts_with("unix://") => {
                Docker::connect_with_unix(host, 120, bollard::API_DEFAULT_VERSION).map_err(unavailable)?
            }
            Some(host) => {
                return Err(RuntimeError::InvalidInput {
                    field: "host".into(),
                    message: format!("`{host}` is not a unix:// socket address"),
                });
            }
            None => Docker::connect_with_defaults().map_err(unavailable)?,
        };
        let docker = docker.negotiate_version().await.map_err(unavailable)?;
        docker.ping().await.map_err(unavailable)?;
        let mut config = config;
        if config.endpoint_mode == EndpointMode::Namespace
            && let Err(why) = pilotlight_core::support::netns::available()
        {
            tracing::warn!(reason = %why, "cannot enter container network namespaces; publishing ports on 127.0.0.1 instead");
            config.endpoint_mode = EndpointMode::PublishedPort;
        }
        tracing::info!(mode = config.endpoint_mode.as_str(), "Docker runtime: how the edge reaches containers");
        let runtime = Self {
            inner: Arc::new(Inner {
                docker,
                config,
                events: broadcast::Sender::new(1024),
                stopping: Mutex::default(),
                dead: Mutex::default(),
                starting: Mutex::default(),
                namespaced: Mutex::default(),
                pulls: Mutex::default(),
                counter: AtomicU64::new(0),
            }),
        };
        runtime.ensure_network().await?;
        runtime.watch_events();
        Ok(runtime)
    }

    /// How the edge reaches this runtime's containers: the mode asked for, or
    /// the published port it fell back to.
    pub fn endpoint_mode(&self) -> EndpointMode {
        self.inner.config.endpoint_mode
    }

    /// The bollard client, e.g. to build test images with [`crate::build_image_from_dir`].
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    fn platform_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".into(), vec![format!("{LABEL_PLATFORM}={}", self.inner.config.platform_id)])])
    }

    /// Finds or creates the platform network. Docker lets racing creators make
    /// two networks of one name, and then refuses to start containers on it
    /// ("ambiguous"), so creation is serialized across processes on this host
    /// with a file lock, and extra same-named networks are removed.
    async fn ensure_network(&self) -> Result<(), RuntimeError> {
        use bollard::query_parameters::ListNetworksOptions;
        let name = self.inner.config.network.clone();
        let docker = &self.inner.docker;
        let lock_path = std::env::temp_dir().join(format!("pilotlight-docker-network-{name}.lock"));
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(|e| RuntimeError::Backend { source: Box::new(e), retryable: true })?
        .map_err(|e| RuntimeError::Unavailable(format!("cannot lock the network setup: {e}")))?;
        let find = || async {
            let filters = HashMap::from([("name".to_owned(), vec![name.clone()])]);
            let mut found: Vec<_> = docker
                .list_networks(Some(ListNetworksOptions { filters: Some(filters) }))
                .await
                .map_err(backend)?
                .into_iter()
                .filter(|n| n.name.as_deref() == Some(name.as_str()))
                .filter_map(|n| Some((n.created.map(|c| c.to_string()).unwrap_or_default(), n.id?)))
                .collect();
            found.sort();
            Ok::<_, RuntimeError>(found)
        };
        let mut found = find().await?;
        if found.is_empty() {
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([(LABEL_PLATFORM.into(), self.inner.config.platform_id.clone())])),
                ..Default::default()
            };
            docker.create_network(request).await.map_err(backend)?;
            found = find().await?;
        }
        for (_, extra) in found.iter().skip(1) {
            tracing::warn!(network = %name, id = %extra, "removing a duplicate platform network");
            if let Err(e) = docker.remove_network(extra).await {
                tracing::warn!(network = %name, id = %extra, error = %e, "cannot remove the duplicate network");
            }
        }
        drop(lock);
        if found.is_empty() {
            return Err(RuntimeError::Unavailable(format!("network `{name}` vanished right after it was created")));
        }
        Ok(())
    }

    /// Reports containers of this platform that die or are OOM-killed
    /// without being asked to stop. The engine's event stream fails when the
    /// engine (or the way to it) goes away; it is opened again with backoff,
    /// asking for the events since the last one heard (the engine replays
    /// them), and a [`RuntimeEvent::Resync`] tells the controller to list
    /// everything again, since whatever died meanwhile may not be replayed.
    fn watch_events(&self) {
        let inner = Arc::downgrade(&self.inner);
        let mut filters = self.platform_filter();
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert("event".into(), vec!["die".into(), "oom".into()]);
        let docker = self.inner.docker.clone();
        tokio::spawn(async move {
            let mut oom: HashSet<String> = HashSet::new();
            let mut since: Option<i64> = None;
            let mut backoff = Duration::from_millis(250);
            loop {
                if since.is_some() {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    if inner.strong_count() == 0 {
                        return;
                    }
                    if docker.ping().await.is_err() {
                        continue;
                    }
                }
                let options = EventsOptions {
                    since: since.map(|s| s.to_string()),
                    filters: Some(filters.clone()),
                    ..Default::default()
                };
                let mut stream = docker.events(Some(options));
                if since.is_some() {
                    tracing::info!("docker event stream reconnected; asking for a full re-list");
                    backoff = Duration::from_millis(250);
                    match inner.upgrade() {
                        Some(i) => {
                            let _ = i
                                .events
                                .send(RuntimeEvent::Resync { reason: "the Docker event stream reconnected".into() });
                        }
                        None => return,
                    }
                }
                let mut heard = since.unwrap_or_else(|| i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX));
                while let Some(item) = stream.next().await {
                    let Some(inner) = inner.upgrade() else { return };
                    let event = match item {
                        Ok(event) => event,
                        Err(e) => {
                            tracing::warn!(error = %e, "docker event stream failed; reconnecting");
                            break;
                        }
                    };
                    heard = heard.max(event.time.unwrap_or(heard));
                    handle_event(&inner, &docker, event, &mut oom).await;
                }
                since = Some(heard);
            }
        });
    }

    fn container_name(&self, spec: &FunctionSpec, generation: u64) -> String {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        format!("pl-{}-{}-g{generation}-{:x}{n}", self.inner.config.platform_id, spec.name(), now_ms() & 0xffff_ffff)
    }

    fn create_body(
        &self,
        spec: &FunctionSpec,
        image: &ImageRef,
        generation: u64,
        secrets: Option<&std::path::Path>,
    ) -> ContainerCreateBody {
        let c = &self.inner.config;
        let port_key = format!("{}/tcp", spec.port());
        let mut env: Vec<String> = spec.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push(format!("PORT={}", spec.port()));
        env.push(format!("PILOTLIGHT_FUNCTION={}", spec.name()));
        let memory = i64::from(spec.limits().memory_mb()) * 1024 * 1024;
        let port_bindings = (c.endpoint_mode == EndpointMode::PublishedPort).then(|| {
            HashMap::from([(
                port_key.clone(),
                Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
            )])
        });
        ContainerCreateBody {
            image: Some(image.to_string()),
            env: Some(env),
            exposed_ports: Some(vec![port_key]),
            labels: Some(HashMap::from([
                (LABEL_PLATFORM.into(), c.platform_id.clone()),
                (LABEL_FUNCTION.into(), spec.name().to_string()),
                (LABEL_GENERATION.into(), generation.to_string()),
            ])),
            host_config: Some(HostConfig {
                memory: Some(memory),
                memory_swap: Some(memory),
                nano_cpus: Some(i64::from(spec.limits().cpu_millis()) * 1_000_000),
                pids_limit: Some(i64::from(spec.limits().pids())),
                security_opt: Some(vec!["no-new-privileges".into()]),
                cap_drop: Some(vec!["ALL".into()]),
                privileged: Some(false),
                readonly_rootfs: Some(spec.limits().read_only_rootfs()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([
                        ("max-size".into(), c.log_max_size.clone()),
                        ("max-file".into(), c.log_max_files.to_string()),
                    ])),
                }),
                port_bindings,
                network_mode: Some(match spec.network() {
                    Network::None => "none".into(),
                    _ => c.network.clone(),
                }),
                init: Some(c.init),
                binds: secrets.map(|dir| vec![format!("{}:{SECRETS_MOUNT}:ro", dir.display())]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn endpoint_of(&self, inspect: &ContainerInspectResponse, port: u16) -> Option<Endpoint> {
        let settings = inspect.network_settings.as_ref()?;
        match self.inner.config.endpoint_mode {
            EndpointMode::PublishedPort => {
                let bindings = settings.ports.as_ref()?.get(&format!("{port}/tcp"))?.as_ref()?;
                let b = bindings.iter().find(|b| b.host_ip.as_deref() == Some("127.0.0.1"))?;
                let host_port: u16 = b.host_port.as_deref()?.parse().ok()?;
                Some(Endpoint::new(SocketAddr::from((Ipv4Addr::LOCALHOST, host_port))))
            }
            EndpointMode::NetworkAddress => {
                let net = settings.networks.as_ref()?.get(&self.inner.config.network)?;
                let ip: IpAddr = net.ip_address.as_deref()?.parse().ok()?;
                Some(Endpoint::new(SocketAddr::from((ip, port))))
            }
            EndpointMode::Namespace => {
                // Empty until the engine has set the sandbox up, at start.
                let key = settings.sandbox_key.as_deref().filter(|k| !k.is_empty())?;
                let endpoint = Endpoint::in_namespace(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), key);
                if let Some(id) = inspect.id.as_deref() {
                    self.inner.namespaced.lock().insert(id.to_owned(), endpoint.clone());
                }
                Some(endpoint)
            }
        }
    }

    /// In namespace mode, the endpoints of listed containers that this
    /// process has not seen start (adopted after a restart): one inspect each.
    async fn find_namespaces(&self, instances: &mut [Instance]) {
        if self.inner.config.endpoint_mode != EndpointMode::Namespace {
            return;
        }
        for i in instances.iter_mut() {
            if !matches!(i.state, InstanceState::Running | InstanceState::Paused) {
                continue;
            }
            if let Some(known) = self.inner.namespaced.lock().get(i.id.as_str()) {
                i.endpoint = known.clone();
                continue;
            }
            let Ok(inspect) = self.inner.docker.inspect_container(i.id.as_str(), None).await else { continue };
            let port = inspect
                .config
                .as_ref()
                .and_then(|c| c.exposed_ports.as_ref())
                .and_then(|p| p.iter().find_map(|k| k.strip_suffix("/tcp")?.parse::<u16>().ok()));
            if let Some(endpoint) = port.and_then(|p| self.endpoint_of(&inspect, p)) {
                i.endpoint = endpoint;
            }
        }
    }

    async fn last_logs(&self, id: &str, n: usize) -> Vec<String> {
        let options =
            LogsOptions { stdout: true, stderr: true, tail: n.to_string(), until: i32::MAX, ..Default::default() };
        self.inner
            .docker
            .logs(id, Some(options))
            .filter_map(|l| async move { l.ok() })
            .flat_map(|l| futures::stream::iter(l.to_string().lines().map(str::to_owned).collect::<Vec<_>>()))
            .collect()
            .await
    }

    async fn remove(&self, id: &str) {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        if let Err(e) = self.inner.docker.remove_container(id, Some(options)).await
            && !is_not_found(&e)
        {
            tracing::warn!(container = id, error = %e, "cannot remove container");
        }
    }

    /// Fails a start: the container's last lines go into the error and the container is removed.
    async fn not_ready(&self, id: &str, message: String) -> RuntimeError {
        self.inner.stopping.lock().insert(id.to_owned());
        let logs = self.last_logs(id, 20).await;
        self.remove(id).await;
        RuntimeError::NotReady { message, logs }
    }

    /// Waits until the container answers on its port.
    ///
    /// Probes every 2 ms for the first two seconds (a start is a few hundred
    /// ms; a coarser backoff would add tens of ms to every cold start), every
    /// 10 ms after. The engine is asked about the container (its published
    /// port, whether it died) right after the start, then at growing
    /// intervals (50 ms doubling to 1 s): sixteen starts at once that each
    /// inspected every 50 ms kept the engine busy with thousands of inspects
    /// and slowed the starts themselves. A death is also seen at once through
    /// the engine's `die` event, which the event watch records.
    async fn await_ready(&self, spec: &FunctionSpec, id: &str) -> Result<Endpoint, RuntimeError> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.inner.config.ready_timeout;
        let health = spec.health_path().map(|p| p.as_str());
        let mut endpoint = None;
        let mut next_inspect = started;
        let mut inspect_every = Duration::from_millis(50);
        loop {
            let now = tokio::time::Instant::now();
            let died = self.inner.dead.lock().contains(id);
            if endpoint.is_none() || now >= next_inspect || died {
                next_inspect = now + inspect_every;
                inspect_every = (inspect_every * 2).min(Duration::from_secs(1));
                let inspect = self.inner.docker.inspect_container(id, None).await.map_err(backend)?;
                let state = inspect.state.as_ref();
                if matches!(
                    state.and_then(|s| s.status),
                    Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
                ) {
                    let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
                    let oom = state.and_then(|s| s.oom_killed).unwrap_or(false);
                    let how = if oom { ", OOM-killed" } else { "" };
                    return Err(self
                        .not_ready(id, format!("`{}` exited (code {code}{how}) before it answered", spec.name()))
                        .await);
                }
                if endpoint.is_none() {
                    endpoint = self.endpoint_of(&inspect, spec.port().get());
                }
            }
            if let Some(endpoint) = &endpoint
                && probe_endpoint(endpoint, health).await
            {
                return Ok(endpoint.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                let message = format!(
                    "`{}` never answered on port {} within {:?}",
                    spec.name(),
                    spec.port(),
                    self.inner.config.ready_timeout
                );
                return Err(self.not_ready(id, message).await);
            }
            let pause = if started.elapsed() < Duration::from_secs(2) { 2 } else { 10 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    fn instance_from_summary(&self, c: &ContainerSummary) -> Option<Instance> {
        let labels = c.labels.as_ref()?;
        let function = FunctionName::new(labels.get(LABEL_FUNCTION)?.clone()).ok()?;
        let generation = labels.get(LABEL_GENERATION)?.parse().ok()?;
        let state = match c.state? {
            ContainerSummaryStateEnum::RUNNING => InstanceState::Running,
            ContainerSummaryStateEnum::PAUSED => InstanceState::Paused,
            ContainerSummaryStateEnum::CREATED => InstanceState::Created,
            _ => InstanceState::Exited,
        };
        let endpoint = match self.inner.config.endpoint_mode {
            EndpointMode::PublishedPort => c
                .ports
                .as_ref()?
                .iter()
                .find(|p| p.ip.as_deref() == Some("127.0.0.1") && p.public_port.is_some())
                .and_then(|p| Some(SocketAddr::from((Ipv4Addr::LOCALHOST, p.public_port?)))),
            // The sandbox key is not in a listing: `find_namespaces` fills it in.
            EndpointMode::Namespace => self.inner.namespaced.lock().get(c.id.as_deref()?).map(Endpoint::addr),
            EndpointMode::NetworkAddress => {
                let nets = c.network_settings.as_ref()?.networks.as_ref()?;
                let ip: IpAddr = nets.get(&self.inner.config.network)?.ip_address.as_deref()?.parse().ok()?;
                let port = c.ports.as_ref()?.iter().find_map(|p| (p.typ.is_some()).then_some(p.private_port))?;
                Some(SocketAddr::from((ip, port)))
            }
        };
        Some(Instance {
            id: InstanceId::new(c.id.clone()?),
            function,
            generation,
            endpoint: Endpoint::new(endpoint.unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))),
            state,
        })
    }

    /// Creates the container of one instance (not started); returns its id,
    /// and its secrets' directory, kept from pruning while the caller holds it.
    async fn create_container(
        &self,
        spec: &FunctionSpec,
        generation: u64,
    ) -> Result<(String, Option<SecretDir>), RuntimeError> {
        let image = image_of(spec)?;
        if spec.network() == Network::None && self.inner.config.endpoint_mode != EndpointMode::Namespace {
            return Err(RuntimeError::InvalidInput {
                field: "network".into(),
                message: format!(
                    "`none` leaves `{}` reachable only inside its own namespace, and this runtime reaches containers by {} \
                     (namespace mode needs the built-in gateway as the edge and CAP_SYS_ADMIN); use `bridge`",
                    spec.name(),
                    self.inner.config.endpoint_mode.as_str()
                ),
            });
        }
        let secrets = self.write_secrets(spec, generation).await?;
        let name = self.container_name(spec, generation);
        let body = self.create_body(spec, image, generation, secrets.as_ref().map(SecretDir::path));
        let created = self
            .inner
            .docker
            .create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body)
            .await
            .map_err(|e| match e {
                BollardError::DockerResponseServerError { status_code: 404, message } => RuntimeError::Unpreparable {
                    what: image.to_string(),
                    message: format!("image not present locally: {message}"),
                },
                other => backend(other),
            })?;
        Ok((created.id, secrets))
    }

    /// Pulls `image`, keeping each layer's progress in `pulls`.
    async fn pull(
        &self,
        image: &str,
        registry: Option<&str>,
        credentials: Option<DockerCredentials>,
    ) -> Result<(), RuntimeError> {
        let options = CreateImageOptions { from_image: Some(image.to_owned()), ..Default::default() };
        let mut pull = self.inner.docker.create_image(Some(options), None, credentials);
        while let Some(progress) = pull.next().await {
            match progress {
                Ok(p) => {
                    if let Some(detail) = p.error_detail.and_then(|d| d.message) {
                        return Err(pull_failed(image.to_owned(), registry, detail));
                    }
                    let (Some(status), Some(id)) = (p.status, p.id) else { continue };
                    let detail = p.progress_detail.unwrap_or_default();
                    let bytes = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
                    let mut pulls = self.inner.pulls.lock();
                    let Some(entry) = pulls.get_mut(image) else { continue };
                    // A tag or digest line names the image, not a layer.
                    if id == image || status.starts_with("Pulling from") || status.starts_with("Digest") {
                        continue;
                    }
                    let layer = match entry.layers.iter().position(|l| l.id == id) {
                        Some(i) => &mut entry.layers[i],
                        None => {
                            entry.layers.push(LayerProgress { id: id.clone(), ..Default::default() });
                            let last = entry.layers.len() - 1;
                            &mut entry.layers[last]
                        }
                    };
                    if let Some(total) = bytes(detail.total).filter(|t| *t > 0) {
                        layer.total_bytes = total;
                    }
                    if let Some(current) = bytes(detail.current) {
                        layer.current_bytes = current;
                    }
                    if status == "Pull complete" || status == "Download complete" {
                        layer.current_bytes = layer.total_bytes;
                    }
                    if status != layer.status {
                        tracing::debug!(image, layer = id, status, "pulling");
                    }
                    layer.status = status;
                }
                Err(BollardError::DockerResponseServerError { message, .. }) => {
                    return Err(pull_failed(image.to_owned(), registry, message));
                }
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(())
    }

    /// What a pull from `registry` presents: its login, else the configured credentials.
    async fn credentials_for(&self, registry: Option<&str>) -> Result<Option<DockerCredentials>, RuntimeError> {
        let fallback = self.inner.config.registry_auth.clone();
        let (Some(registry), Some(logins)) = (registry, &self.inner.config.registry_logins) else {
            return Ok(fallback);
        };
        let host = RegistryHost::parse_field("image", registry)
            .map_err(|e| RuntimeError::InvalidInput { field: e.field, message: e.message })?;
        match logins.credentials(&host).await {
            Ok(Some(c)) => Ok(Some(DockerCredentials {
                username: Some(c.username),
                password: Some(c.password.to_string()),
                serveraddress: Some(host.to_string()),
                ..Default::default()
            })),
            Ok(None) => Ok(fallback),
            Err(e) => Err(RuntimeError::Unpreparable { what: format!("the login for {host}"), message: e.to_string() }),
        }
    }

    /// Writes the secret files of `spec` at `generation` (again: a created
    /// container may outlive a host reboot, and with it a tmpfs), if it lists any.
    async fn write_secrets(&self, spec: &FunctionSpec, generation: u64) -> Result<Option<SecretDir>, RuntimeError> {
        if spec.secrets().is_empty() {
            return Ok(None);
        }
        let Some(files) = &self.inner.config.secrets else {
            return Err(RuntimeError::InvalidInput {
                field: "secrets".into(),
                message: format!("`{}` lists secrets, and this Docker runtime was given no secret store", spec.name()),
            });
        };
        files.write(&SecretFiles::scope(spec.name(), generation), spec.secrets()).await.map(Some)
    }

    /// Starts a created container and waits until it answers; on failure it is
    /// removed and the error carries its last log lines.
    async fn start_container(&self, spec: &FunctionSpec, id: &str, generation: u64) -> Result<Instance, RuntimeError> {
        if let Err(e) = self.inner.docker.start_container(id, None).await {
            let logs = self.last_logs(id, 20).await;
            self.remove(id).await;
            return Err(RuntimeError::NotReady {
                message: format!("the engine could not start `{}`: {e}", spec.name()),
                logs,
            });
        }
        // Probing starts only now that the start call returned (the one-second trap).
        let endpoint = self.await_ready(spec, id).await?;
        Ok(Instance {
            id: InstanceId::new(id),
            function: spec.name().clone(),
            generation,
            endpoint,
            state: InstanceState::Running,
        })
    }

    /// The platform's containers that match `filters`, as instances; `all`
    /// when the filters take every container of the platform.
    async fn list_filtered(
        &self,
        filters: HashMap<String, Vec<String>>,
        all: bool,
    ) -> Result<Vec<Instance>, RuntimeError> {
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let containers = self.inner.docker.list_containers(Some(options)).await.map_err(backend)?;
        let stopping = self.inner.stopping.lock().clone();
        let dead = {
            let mut dead = self.inner.dead.lock();
            if all {
                // Containers removed behind the platform's back are forgotten.
                dead.retain(|id| containers.iter().any(|c| c.id.as_deref() == Some(id.as_str())));
            }
            dead.clone()
        };
        let starting = self.inner.starting.lock().clone();
        if all && self.inner.config.endpoint_mode == EndpointMode::Namespace {
            self.inner
                .namespaced
                .lock()
                .retain(|id, _| containers.iter().any(|c| c.id.as_deref() == Some(id.as_str())));
        }
        let mut instances: Vec<Instance> = containers
            .iter()
            .filter_map(|c| self.instance_from_summary(c))
            .map(|mut i| {
                if dead.contains(i.id.as_str()) {
                    i.state = InstanceState::Exited;
                }
                i
            })
            // Mid-start or being stopped: not ours to manage from a listing.
            .filter(|i| !stopping.contains(i.id.as_str()) && !starting.contains(i.id.as_str()))
            .collect();
        self.find_namespaces(&mut instances).await;
        if all && let Some(files) = &self.inner.config.secrets {
            // Every container of a generation gone: its files go too (not
            // the young ones, which a start in progress may be about to mount).
            let live: HashSet<String> =
                instances.iter().map(|i| SecretFiles::scope(&i.function, i.generation)).collect();
            files.prune(|scope| live.contains(scope));
        }
        Ok(instances)
    }

    async fn instance(&self, id: &InstanceId) -> Result<Instance, RuntimeError> {
        let mut filters = self.platform_filter();
        filters.insert("id".into(), vec![id.to_string()]);
        let found = self
            .inner
            .docker
            .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
            .map_err(backend)?;
        let mut one: Vec<Instance> = found.iter().filter_map(|c| self.instance_from_summary(c)).take(1).collect();
        self.find_namespaces(&mut one).await;
        one.pop().ok_or_else(|| RuntimeError::NotFound(id.clone()))
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn prepare(&self, spec: &FunctionSpec) -> Result<(), RuntimeError> {
        let image = image_of(spec)?.to_string();
        match self.inner.docker.inspect_image(&image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            // The engine itself did not answer: that passes.
            Err(e) => return Err(backend(e)),
        }
        let registry = image_of(spec)?.registry().map(str::to_owned);
        let credentials = self.credentials_for(registry.as_deref()).await?;
        self.inner
            .pulls
            .lock()
            .insert(image.clone(), PullProgress { image: image.clone(), started_ms: now_ms(), ..Default::default() });
        let pulled = self.pull(&image, registry.as_deref(), credentials).await;
        if let Some(p) = self.inner.pulls.lock().get_mut(&image) {
            p.done = true;
            p.finished_ms = Some(now_ms());
            p.error = pulled.as_ref().err().map(ToString::to_string);
            tracing::info!(image, summary = p.summary(), ok = pulled.is_ok(), "pull ended");
        }
        pulled
    }

    fn pull_progress(&self, image: &str) -> Option<PullProgress> {
        self.inner.pulls.lock().get(image).cloned()
    }

    async fn start(&self, spec: &FunctionSpec, generation: u64) -> Result<Instance, RuntimeError> {
        let (id, _secrets) = self.create_container(spec, generation).await?;
        self.inner.starting.lock().insert(id.clone());
        let started = self.start_container(spec, &id, generation).await;
        self.inner.starting.lock().remove(&id);
        started
    }

    async fn create(&self, spec: &FunctionSpec, generation: u64) -> Result<Instance, RuntimeError> {
        // Listed as `created` from now on, so its secrets' directory stays.
        let (id, _secrets) = self.create_container(spec, generation).await?;
        Ok(Instance {
            id: InstanceId::new(id),
            function: spec.name().clone(),
            generation,
            // The engine picks the published port when the container starts.
            endpoint: Endpoint::new(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
            state: InstanceState::Created,
        })
    }

    async fn start_created(&self, spec: &FunctionSpec, id: &InstanceId) -> Result<Instance, RuntimeError> {
        let found = self.instance(id).await?;
        if found.state != InstanceState::Created || found.function != *spec.name() {
            return Err(RuntimeError::InvalidInput {
                field: "instance".into(),
                message: format!(
                    "`{id}` is a {:?} instance of `{}`, not a created one of `{}`",
                    found.state,
                    found.function,
                    spec.name()
                ),
            });
        }
        let _secrets = match self.write_secrets(spec, found.generation).await {
            Ok(dir) => dir,
            Err(e) => {
                self.remove(id.as_str()).await;
                return Err(e);
            }
        };
        self.start_container(spec, id.as_str(), found.generation).await
    }

    async fn stop(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        self.inner.stopping.lock().insert(id.to_string());
        let grace = i32::try_from(self.inner.config.stop_grace.as_secs()).unwrap_or(5);
        // A paused container cannot act on SIGTERM; thaw it first.
        let _ = self.inner.docker.unpause_container(id.as_str()).await;
        match self
            .inner
            .docker
            .stop_container(id.as_str(), Some(StopContainerOptions { t: Some(grace), ..Default::default() }))
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(BollardError::DockerResponseServerError { status_code: 304, .. }) => {}
            Err(e) => return Err(backend(e)),
        }
        self.remove(id.as_str()).await;
        self.inner.dead.lock().remove(id.as_str());
        self.inner.namespaced.lock().remove(id.as_str());
        Ok(())
    }

    async fn pause(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        self.inner
            .docker
            .pause_container(id.as_str())
            .await
            .map_err(|e| if is_not_found(&e) { RuntimeError::NotFound(id.clone()) } else { backend(e) })
    }

    /// Unpauses, and reads where the instance answers meanwhile (a pause
    /// changes neither its port nor its namespace), so the look-up adds
    /// nothing to an activation's wait.
    async fn resume(&self, id: &InstanceId) -> Result<Instance, RuntimeError> {
        let unpause = async {
            self.inner
                .docker
                .unpause_container(id.as_str())
                .await
                .map_err(|e| if is_not_found(&e) { RuntimeError::NotFound(id.clone()) } else { backend(e) })
        };
        let ((), mut instance) = tokio::try_join!(unpause, self.instance(id))?;
        instance.state = InstanceState::Running;
        Ok(instance)
    }

    async fn list(&self) -> Result<Vec<Instance>, RuntimeError> {
        self.list_filtered(self.platform_filter(), true).await
    }

    async fn list_function(&self, function: &FunctionName) -> Result<Vec<Instance>, RuntimeError> {
        let mut filters = self.platform_filter();
        filters.entry("label".into()).or_default().push(format!("{LABEL_FUNCTION}={function}"));
        self.list_filtered(filters, false).await
    }

    /// The kept lines as asked, then (with `follow`) new ones. bollard sends the
    /// follow request only when its stream is first polled, so a follow alone
    /// would miss what is written between this call and that poll. Instead: a
    /// timestamped snapshot, then a follow from the snapshot's last second,
    /// dropping lines not newer than the snapshot's last.
    async fn logs(&self, id: &InstanceId, options: LogOptions) -> Result<LogStream, RuntimeError> {
        self.instance(id).await?;
        let query = |follow: bool, since: i32, tail: String| LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            timestamps: true,
            since,
            tail,
            // bollard always sends `until`; its default 0 means "until 1970" to the
            // engine, which ends a follow at once. i32 is all bollard takes.
            until: i32::MAX,
        };
        let tail = options.tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
        let snapshot: Vec<(String, LogLine)> = self
            .inner
            .docker
            .logs(id.as_str(), Some(query(false, 0, tail)))
            .map(|item| item.map(split_stamped).map_err(backend))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        let cutoff = snapshot.last().map(|(ts, _)| ts.clone());
        let head = futures::stream::iter(snapshot.into_iter().map(|(_, l)| Ok(l)).collect::<Vec<_>>());
        if !options.follow {
            return Ok(head.boxed());
        }
        let since_secs = cutoff.as_deref().and_then(epoch_seconds).unwrap_or_else(|| now_ms() / 1000);
        let since = i32::try_from(since_secs).unwrap_or(i32::MAX);
        let follow =
            self.inner.docker.logs(id.as_str(), Some(query(true, since, "all".into()))).flat_map(move |item| {
                let lines: Vec<Result<LogLine, RuntimeError>> = match item {
                    Ok(out) => split_stamped(out)
                        .into_iter()
                        .filter(|(ts, _)| cutoff.as_ref().is_none_or(|c| newer(ts, c)))
                        .map(|(_, l)| Ok(l))
                        .collect(),
                    Err(e) => vec![Err(backend(e))],
                };
                futures::stream::iter(lines)
            });
        Ok(head.chain(follow).boxed())
    }

    async fn stats(&self, id: &InstanceId) -> Result<InstanceStats, RuntimeError> {
        let options = StatsOptions { stream: false, one_shot: true };
        let mut s = self.inner.docker.stats(id.as_str(), Some(options));
        let stats = match s.next().await {
            Some(Ok(stats)) => stats,
            Some(Err(e)) if is_not_found(&e) => return Err(RuntimeError::NotFound(id.clone())),
            Some(Err(e)) => return Err(backend(e)),
            None => return Err(RuntimeError::NotFound(id.clone())),
        };
        let cpu_ns = stats.cpu_stats.and_then(|c| c.cpu_usage).and_then(|u| u.total_usage).unwrap_or(0);
        let memory = stats.memory_stats.unwrap_or_default();
        Ok(InstanceStats {
            cpu_seconds: cpu_ns as f64 / 1e9,
            memory_bytes: memory.usage.unwrap_or(0),
            memory_limit_bytes: memory.limit,
        })
    }

    fn events(&self) -> RuntimeEvents {
        pilotlight_core::support::runtime_events(&self.inner.events)
    }
}

/// The error of a failed pull, classed honestly: a registry that cannot be
/// reached (DNS, refused, timeouts, 5xx, rate limits) passes, so it is
/// retried with backoff; anything else (no such image or tag, denied, a bad
/// reference) will not go away by itself, and is retried only at the backoff
/// cap, in case the image is pushed or built later.
fn pull_failed(image: String, registry: Option<&str>, message: String) -> RuntimeError {
    const TRANSIENT: &[&str] = &[
        "no such host",
        "connection refused",
        "connection reset",
        "i/o timeout",
        "timeout",
        "temporary failure",
        "network is unreachable",
        "tls handshake",
        "eof",
        "server misbehaving",
        "too many requests",
    ];
    const REFUSED: &[&str] = &["unauthorized", "no basic auth credentials", "authentication required", "denied"];
    let place = registry.unwrap_or("docker.io");
    // Classed on the engine's words, never on the addresses in them: a
    // registry on port 40195 must not read as a 401.
    let lower = message.to_ascii_lowercase().replace(&place.to_ascii_lowercase(), "");
    let refused = REFUSED.iter().any(|t| lower.contains(t)) || has_status(&lower, "401");
    let transient =
        TRANSIENT.iter().any(|t| lower.contains(t)) || ["502", "503", "504"].iter().any(|c| has_status(&lower, c));
    if refused {
        RuntimeError::Unpreparable {
            what: image,
            message: format!(
                "registry {place} refused the pull (401 Unauthorized: {message}); \
                 run `pilotlight registry login {place}` with credentials that may read it"
            ),
        }
    } else if transient {
        RuntimeError::Unavailable(format!(
            "image `{image}` is not present and registry {place} cannot be reached now ({message}); \
             build or load it locally, or wait for the registry"
        ))
    } else {
        RuntimeError::Unpreparable {
            what: image,
            message: format!("not present locally and the pull failed: {message}"),
        }
    }
}

/// Whether `text` holds the HTTP status `code` as a number of its own: not
/// part of a longer number, a port (`:401`) or an address (`10.401`).
fn has_status(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == ':' || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit() || c == '.')
    })
}

/// Records one `die` or `oom` event of this platform's containers.
///
/// The engine may send a cgroup OOM kill's `oom` event after its `die`
/// (seen in CI), so a `die` with exit code 137 and no `oom` heard yet asks
/// the container's state, which says whether the kernel's OOM killer did it.
async fn handle_event(inner: &Inner, docker: &Docker, event: bollard::models::EventMessage, oom: &mut HashSet<String>) {
    let Some(actor) = event.actor else { return };
    let (Some(id), Some(attrs)) = (actor.id, actor.attributes) else { return };
    match event.action.as_deref() {
        // After its `die` (see above) it is told by the container's state;
        // keeping it would only grow the set.
        Some("oom") if !inner.dead.lock().contains(&id) => {
            oom.insert(id);
        }
        Some("die") => {
            // Asked for: forget it now that it is done (the set would only grow).
            let asked = inner.stopping.lock().remove(&id);
            let was_oom = oom.remove(&id);
            if asked {
                return;
            }
            inner.dead.lock().insert(id.clone());
            let (Some(function), Some(generation)) = (
                attrs.get(LABEL_FUNCTION).and_then(|f| FunctionName::new(f.clone()).ok()),
                attrs.get(LABEL_GENERATION).and_then(|g| g.parse().ok()),
            ) else {
                return;
            };
            let code: Option<i32> = attrs.get("exitCode").and_then(|c| c.parse().ok());
            let oom_killed = was_oom
                || (code == Some(137)
                    && docker
                        .inspect_container(&id, None)
                        .await
                        .ok()
                        .and_then(|c| c.state)
                        .and_then(|s| s.oom_killed)
                        .unwrap_or(false));
            let reason =
                if oom_killed { ExitReason::OutOfMemory } else { code.map_or(ExitReason::Unknown, ExitReason::Code) };
            tracing::warn!(%function, container = %id, ?reason, "container died");
            let _ = inner.events.send(RuntimeEvent::Exited { id: InstanceId::new(id), function, generation, reason });
        }
        _ => {}
    }
}

/// Splits one chunk of engine output (`<RFC 3339 timestamp> <text>` per line).
fn split_stamped(out: bollard::container::LogOutput) -> Vec<(String, LogLine)> {
    let source = match out {
        bollard::container::LogOutput::StdErr { .. } => LogSource::Stderr,
        _ => LogSource::Stdout,
    };
    out.to_string()
        .lines()
        .map(|l| {
            let (ts, text) = l.split_once(' ').unwrap_or(("", l));
            (ts.to_owned(), LogLine { source, line: text.to_owned(), at_ms: now_ms() })
        })
        .collect()
}

/// An engine timestamp (RFC 3339, nanoseconds), parsed.
fn stamp(t: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
}

/// `a` is later than `b` (RFC 3339 stamps; one that cannot be read is not later).
fn newer(a: &str, b: &str) -> bool {
    match (stamp(a), stamp(b)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

/// Seconds since the epoch of an RFC 3339 stamp such as `2026-11-26T21:46:04.123Z`.
fn epoch_seconds(ts: &str) -> Option<u64> {
    u64::try_from(stamp(ts)?.unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_errors_are_classed() {
        let dns = "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host";
        assert!(matches!(pull_failed("a".into(), None, dns.into()), RuntimeError::Unavailable(_)));
        let refused = "Get \"http://127.0.0.1:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused";
        let e = pull_failed("a".into(), Some("127.0.0.1:5999"), refused.into());
        assert!(e.is_retryable() && e.to_string().contains("registry 127.0.0.1:5999 cannot be reached"), "{e}");
        let missing = "manifest for pilotlight/nope:v1 not found: manifest unknown";
        assert!(matches!(pull_failed("a".into(), None, missing.into()), RuntimeError::Unpreparable { .. }));
        let denied = "Head \"http://127.0.0.1:5999/v2/x/manifests/v1\": no basic auth credentials";
        let e = pull_failed("a".into(), Some("127.0.0.1:5999"), denied.into());
        assert!(!e.is_retryable() && e.to_string().contains("registry 127.0.0.1:5999 refused the pull (401"), "{e}");
        // A port that holds "401" (CI drew 40195 once) is an address, not a status.
        let down = "Get \"http://127.0.0.1:40195/v2/\": dial tcp 127.0.0.1:40195: connect: connection refused";
        let e = pull_failed("a".into(), Some("127.0.0.1:40195"), down.into());
        assert!(e.is_retryable(), "{e}");
        let other = "Get \"http://10.0.0.1:4010/v2/\": dial tcp 10.0.0.1:4010: connect: connection refused";
        assert!(pull_failed("a".into(), Some("127.0.0.1:40195"), other.into()).is_retryable());
        let status = "unexpected status from HEAD request: 401";
        assert!(!pull_failed("a".into(), Some("r:401"), status.into()).is_retryable());
        let gateway = "received unexpected HTTP status: 503 Service Unavailable";
        assert!(pull_failed("a".into(), None, gateway.into()).is_retryable());
        assert!(has_status("got 401 unauthorized", "401") && !has_status("port :401 and 14010", "401"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(epoch_seconds("2026-11-26T21:46:04.123456789Z"), Some(1_795_729_564));
        assert!(newer("2026-11-26T21:46:04.5Z", "2026-11-26T21:46:04.123456789Z"));
        assert!(!newer("2026-11-26T21:46:04.1Z", "2026-11-26T21:46:04.123Z"));
    }
}
