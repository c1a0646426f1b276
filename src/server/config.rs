//! The server's settings: defaults, then a TOML file, then `PILOTLIGHT_*`
//! environment variables and `--flags`, each named like its key (`api_addr`
//! is `--api-addr` and `PILOTLIGHT_API_ADDR`).
//!
//! The command line is clap's, derived from [`ServerArgs`]; every flag is an
//! `Option`, so what it leaves out keeps the file's value. A test checks that
//! every key of [`ServerConfig`] has its flag and its variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{CommandFactory, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::connect::redact;
pub use crate::connect::{QueueKind, QueueUrl};

/// Every setting of [`super::Server`]. Unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the store, the API token, TLS material and NGINX's files live.
    pub data_dir: PathBuf,
    /// The REST API and the web UI.
    pub api_addr: SocketAddr,
    /// The edge's HTTP listener.
    pub http_addr: SocketAddr,
    /// The edge's HTTPS listener, or `off`.
    pub https_addr: String,
    /// Functions are served at `<name>.<domain>`.
    pub domain: String,
    /// The region this node serves.
    pub region: String,
    /// `memory`, `kafka://host:port[,host:port]` or `amqp://user:pass@host:5672/%2f`.
    pub queue: QueueUrl,
    /// What runs instances.
    pub runtime: RuntimeKind,
    /// What serves `<name>.<domain>`.
    pub edge: EdgeKind,
    /// Where state is kept.
    pub store: StoreKind,
    /// A certificate chain (PEM) for HTTPS; without it the gateway makes a development CA.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Marks this platform's containers and processes; two platforms on one host need different ids.
    pub platform_id: String,
    /// The Docker network instances join.
    pub docker_network: String,
    /// NGINX's status listener, which confirms reloads (edge `nginx` only).
    pub nginx_status_addr: SocketAddr,
    /// The capacity guard: the memory limits of all instances (running and
    /// paused) add up to at most this many MiB. `0` means 80% of the host's memory.
    pub memory_budget_mb: u64,
    /// How often the autoscaler looks at the edge's in-flight counts, in milliseconds.
    pub autoscale_tick_ms: u64,
    /// How long a lower instance count must hold before scaling down, in seconds.
    pub scale_down_window_s: u64,
    /// How often every function is reconciled and the route table applied
    /// again, even when nothing asked, in seconds: drift heals within it.
    pub resync_period_s: u64,
    /// The longest wait between two tries of a failing function, in seconds
    /// (the first retry comes after 1 s and the wait doubles up to this).
    pub backoff_max_s: u64,
    /// The Docker engine's socket, `unix:///path`; unset: `$DOCKER_HOST`, else `/var/run/docker.sock`.
    pub docker_host: Option<String>,
    /// The gateway answers 431 to a request head larger than this many bytes.
    pub max_header_bytes: u64,
    /// The gateway answers 431 to one header line longer than this many bytes.
    pub max_header_line_bytes: u64,
    /// How the gateway reaches Docker containers.
    pub docker_endpoint: DockerEndpoint,
    /// Hosts asynchronous invocations may be called back at, comma-separated
    /// (`hooks.example.com`, `*.example.com`, `127.0.0.1`); empty allows any.
    pub callback_hosts: String,
    /// Attempts of an asynchronous invocation before it is a dead letter.
    pub async_max_attempts: u64,
    /// Attempts to deliver a callback before it is recorded as failed.
    pub callback_max_attempts: u64,
    /// Retry an asynchronous invocation on any 5xx, not only 502, 503 and 504.
    pub async_retry_any_5xx: bool,
    /// This node's id in a cluster of nodes sharing an etcd store; unset: one node alone.
    pub node_id: Option<String>,
    /// Where the other nodes reach this node's gateway (`ip:port`); default `http_addr`.
    pub advertise_addr: Option<SocketAddr>,
    /// This node's labels, `key=value` comma-separated, which a function's `placement` may require.
    pub node_labels: String,
    /// How long this node's registration lives without renewal, in milliseconds:
    /// a node gone this long has its functions taken over.
    pub node_ttl_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("pilotlight-data"),
            api_addr: SocketAddr::from(([127, 0, 0, 1], 8090)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https_addr: "127.0.0.1:8443".into(),
            domain: "localhost".into(),
            region: "local".into(),
            queue: QueueUrl::memory(),
            runtime: RuntimeKind::Docker,
            edge: EdgeKind::Gateway,
            store: StoreKind::Redb,
            tls_cert: None,
            tls_key: None,
            platform_id: "pilotlight".into(),
            docker_network: "pilotlight".into(),
            nginx_status_addr: SocketAddr::from(([127, 0, 0, 1], 8079)),
            memory_budget_mb: 0,
            autoscale_tick_ms: 1000,
            scale_down_window_s: 30,
            resync_period_s: 30,
            backoff_max_s: 300,
            docker_host: None,
            max_header_bytes: 64 * 1024,
            max_header_line_bytes: 16 * 1024,
            docker_endpoint: DockerEndpoint::Auto,
            callback_hosts: String::new(),
            async_max_attempts: 5,
            callback_max_attempts: 10,
            async_retry_any_5xx: false,
            node_id: None,
            advertise_addr: None,
            node_labels: String::new(),
            node_ttl_ms: 10_000,
        }
    }
}

/// The runtime that runs instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RuntimeKind {
    /// Containers on the Docker engine.
    Docker,
    /// Local processes (`exec` functions; no container isolation).
    Process,
}

/// The edge that serves `<name>.<domain>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EdgeKind {
    /// The built-in gateway.
    Gateway,
    /// NGINX, managed by the platform (the gateway stays as the activator).
    Nginx,
}

/// Where the platform's desired and observed state is kept: `redb`,
/// `memory` or `etcd://host:port[,host:port...][/?prefix=/p&user=u&password=p]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum StoreKind {
    /// One redb file in the data directory (`store.redb`): survives restarts.
    Redb,
    /// In memory: nothing survives a restart. For trying things out and tests.
    Memory,
    /// An etcd cluster, shared by several nodes (feature `etcd`). The URL as given.
    Etcd(String),
}

impl FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "redb" => Ok(Self::Redb),
            "memory" => Ok(Self::Memory),
            url if url.starts_with("etcd://") => {
                #[cfg(feature = "etcd")]
                {
                    pilotlight_etcd::EtcdConfig::from_url(url).map_err(|e| e.to_string())?;
                    Ok(Self::Etcd(url.to_owned()))
                }
                #[cfg(not(feature = "etcd"))]
                Err("this build has no etcd support: build pilotlight with the `etcd` feature".to_owned())
            }
            other => {
                Err(format!("must be `redb`, `memory` or `etcd://host:port[,host:port]` (got {:?})", redact(other)))
            }
        }
    }
}

impl TryFrom<String> for StoreKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<StoreKind> for String {
    fn from(s: StoreKind) -> Self {
        match s {
            StoreKind::Redb => "redb".into(),
            StoreKind::Memory => "memory".into(),
            StoreKind::Etcd(url) => url,
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redb => f.write_str("redb"),
            Self::Memory => f.write_str("memory"),
            Self::Etcd(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKind({self})")
    }
}

/// How the gateway reaches Docker containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DockerEndpoint {
    /// `namespace` with the gateway edge, `published` with NGINX.
    Auto,
    /// Inside the container's network namespace (no docker-proxy; gateway only).
    Namespace,
    /// A port published on 127.0.0.1.
    Published,
}

macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let v = clap::ValueEnum::to_possible_value(self).ok_or(fmt::Error)?;
                f.write_str(v.get_name())
            }
        }
    )*};
}
display_as_serde!(RuntimeKind, EdgeKind, DockerEndpoint);

const EXAMPLES: &str = "Examples:
  server                                   Docker, the gateway, the memory queue, redb in ./pilotlight-data
  server --runtime process                 no Docker: functions are local processes
  server --config /etc/pilotlight.toml     the same keys in a TOML file (api_addr = \"0.0.0.0:8090\")
  PILOTLIGHT_QUEUE=kafka://10.0.0.5:9092 server --edge nginx --domain fn.example.com

Settings come from defaults, then the --config file, then PILOTLIGHT_* variables and flags.";

/// The server's command line: a TOML file and one flag per key of [`ServerConfig`].
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "server",
    version,
    about = "pilotlight server: the whole platform in one process",
    after_help = EXAMPLES
)]
pub struct ServerArgs {
    /// A TOML file of these settings (each key is a flag's name with `_` for `-`).
    #[arg(long, env = "PILOTLIGHT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The settings given on the command line or in the environment.
    #[command(flatten)]
    pub set: Settings,
}

/// One optional value per key of [`ServerConfig`]; what is left out keeps
/// the file's (or the default) value. Serialized, it is the TOML table of
/// the keys given (`None`s are left out).
#[derive(Debug, Default, Clone, Serialize, clap::Args)]
pub struct Settings {
    /// Data directory: the store, the API token, the secret key, TLS and NGINX files.
    #[arg(long, env = "PILOTLIGHT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The REST API and web UI address.
    #[arg(long, env = "PILOTLIGHT_API_ADDR", value_name = "ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// The edge's HTTP address.
    #[arg(long, env = "PILOTLIGHT_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// The edge's HTTPS address, or `off`.
    #[arg(long, env = "PILOTLIGHT_HTTPS_ADDR", value_name = "ADDR|off")]
    pub https_addr: Option<String>,
    /// Functions answer at <name>.<domain>.
    #[arg(long, env = "PILOTLIGHT_DOMAIN")]
    pub domain: Option<String>,
    /// The region this node serves.
    #[arg(long, env = "PILOTLIGHT_REGION")]
    pub region: Option<String>,
    /// memory | kafka://host:port[,host:port] | amqp://user:pass@host:5672/%2f.
    #[arg(long, env = "PILOTLIGHT_QUEUE", value_name = "URL", hide_env_values = true)]
    pub queue: Option<QueueUrl>,
    /// What runs instances.
    #[arg(long, env = "PILOTLIGHT_RUNTIME")]
    pub runtime: Option<RuntimeKind>,
    /// What serves <name>.<domain>.
    #[arg(long, env = "PILOTLIGHT_EDGE")]
    pub edge: Option<EdgeKind>,
    /// Where state is kept: redb (a file in the data directory), memory (lost on restart), or
    /// etcd://host:port[,host:port][/?prefix=/p&user=u&password=p&ca=/ca.pem&cert=/c.pem&key=/k.pem]
    /// (shared by several nodes; ca turns TLS on).
    #[arg(long, env = "PILOTLIGHT_STORE", value_name = "redb|memory|URL", hide_env_values = true)]
    pub store: Option<StoreKind>,
    /// HTTPS certificate chain, PEM (without it the gateway makes a development CA).
    #[arg(long, env = "PILOTLIGHT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS private key, PEM.
    #[arg(long, env = "PILOTLIGHT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Label of this platform's containers and processes; two platforms on one host need different ids.
    #[arg(long, env = "PILOTLIGHT_PLATFORM_ID", value_name = "ID")]
    pub platform_id: Option<String>,
    /// The Docker network instances join.
    #[arg(long, env = "PILOTLIGHT_DOCKER_NETWORK", value_name = "NAME")]
    pub docker_network: Option<String>,
    /// NGINX's status listener, which confirms reloads (edge nginx only).
    #[arg(long, env = "PILOTLIGHT_NGINX_STATUS_ADDR", value_name = "ADDR")]
    pub nginx_status_addr: Option<SocketAddr>,
    /// Sum of instances' memory limits allowed, MiB; 0 = 80% of the host's memory.
    #[arg(long, env = "PILOTLIGHT_MEMORY_BUDGET_MB", value_name = "MIB")]
    pub memory_budget_mb: Option<u64>,
    /// How often the autoscaler looks at in-flight counts, ms (50 to 60000).
    #[arg(long, env = "PILOTLIGHT_AUTOSCALE_TICK_MS", value_name = "MS")]
    pub autoscale_tick_ms: Option<u64>,
    /// A lower count must hold this long to scale down, s (at most 86400).
    #[arg(long, env = "PILOTLIGHT_SCALE_DOWN_WINDOW_S", value_name = "S")]
    pub scale_down_window_s: Option<u64>,
    /// Every function is reconciled at least this often, s (1 to 3600).
    #[arg(long, env = "PILOTLIGHT_RESYNC_PERIOD_S", value_name = "S")]
    pub resync_period_s: Option<u64>,
    /// Longest wait between tries of a failing function, s (1 to 86400).
    #[arg(long, env = "PILOTLIGHT_BACKOFF_MAX_S", value_name = "S")]
    pub backoff_max_s: Option<u64>,
    /// Docker engine socket, unix:///path [default: $DOCKER_HOST or /var/run/docker.sock].
    #[arg(long, env = "PILOTLIGHT_DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,
    /// The gateway answers 431 to a larger request head, bytes (8192 to 1048576).
    #[arg(long, env = "PILOTLIGHT_MAX_HEADER_BYTES", value_name = "BYTES")]
    pub max_header_bytes: Option<u64>,
    /// The gateway answers 431 to a longer header line, bytes (1024 to max_header_bytes).
    #[arg(long, env = "PILOTLIGHT_MAX_HEADER_LINE_BYTES", value_name = "BYTES")]
    pub max_header_line_bytes: Option<u64>,
    /// Reach containers in their network namespace or on a published port.
    #[arg(long, env = "PILOTLIGHT_DOCKER_ENDPOINT")]
    pub docker_endpoint: Option<DockerEndpoint>,
    /// Hosts X-Callback-Url may name, comma-separated: hooks.example.com, *.example.com, 127.0.0.1 [empty: any].
    #[arg(long, env = "PILOTLIGHT_CALLBACK_HOSTS", value_name = "HOSTS")]
    pub callback_hosts: Option<String>,
    /// Attempts of an asynchronous invocation before it is a dead letter (1 to 100).
    #[arg(long, env = "PILOTLIGHT_ASYNC_MAX_ATTEMPTS", value_name = "N")]
    pub async_max_attempts: Option<u64>,
    /// Attempts to deliver a callback before it is recorded as failed (1 to 100).
    #[arg(long, env = "PILOTLIGHT_CALLBACK_MAX_ATTEMPTS", value_name = "N")]
    pub callback_max_attempts: Option<u64>,
    /// Retry asynchronous invocations on any 5xx, not only 502, 503 and 504.
    #[arg(long, env = "PILOTLIGHT_ASYNC_RETRY_ANY_5XX", value_name = "BOOL")]
    pub async_retry_any_5xx: Option<bool>,
    /// This node's id in a cluster sharing an etcd store (a DNS label) [default: one node alone].
    #[arg(long, env = "PILOTLIGHT_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Where other nodes reach this node's gateway, ip:port [default: http_addr].
    #[arg(long, env = "PILOTLIGHT_ADVERTISE_ADDR", value_name = "ADDR")]
    pub advertise_addr: Option<SocketAddr>,
    /// This node's labels for placement: key=value,key=value.
    #[arg(long, env = "PILOTLIGHT_NODE_LABELS", value_name = "LABELS")]
    pub node_labels: Option<String>,
    /// A node unrenewed this long is gone and its functions move, ms (2000 to 300000).
    #[arg(long, env = "PILOTLIGHT_NODE_TTL_MS", value_name = "MS")]
    pub node_ttl_ms: Option<u64>,
}

/// A bad setting: which key, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: `{key}` {message}")]
pub struct ConfigError {
    /// Where it came from: a file, `command line`, or `configuration`.
    pub origin: String,
    /// The key.
    pub key: String,
    /// The rule.
    pub message: String,
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Run with this configuration.
    Run(Box<ServerConfig>),
    /// Print this text (`--help`, `--version`) and exit.
    Help(String),
}

impl ServerArgs {
    /// The command, its `--help` showing each key's default.
    pub fn command_with_defaults() -> clap::Command {
        let defaults = toml::Table::try_from(ServerConfig::default()).unwrap_or_default();
        Self::command().mut_args(|arg| {
            let id = arg.get_id().as_str().to_owned();
            match defaults.get(&id) {
                Some(v) => {
                    let shown = match v {
                        toml::Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    arg.help(format!("{help} [default: {shown}]"))
                }
                None => arg,
            }
        })
    }
}

impl ServerConfig {
    /// The `--help` text.
    pub fn usage(program: &str) -> String {
        ServerArgs::command_with_defaults().name(program.to_owned()).render_help().to_string()
    }

    /// Reads a TOML file of these keys.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::merge(Some(path), &Settings::default())
    }

    /// The file's keys (or the defaults), then those of `over`, checked as one table.
    fn merge(file: Option<&Path>, over: &Settings) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        let origin = file.map_or_else(|| "command line".to_owned(), |p| p.display().to_string());
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                origin: origin.clone(),
                key: "config".into(),
                message: format!("cannot be read: {e}"),
            })?;
            table = toml::from_str(&text).map_err(|e| toml_error(&origin, &e))?;
        }
        let given = toml::Table::try_from(over).map_err(|e| ConfigError {
            origin: "command line".into(),
            key: "config".into(),
            message: e.to_string(),
        })?;
        table.extend(given);
        table.try_into().map_err(|e: toml::de::Error| toml_error(&origin, &e))
    }

    /// Parses a command line (without the program name) and the `PILOTLIGHT_*`
    /// environment: `--config`, `--help`, `--version`, `--key value`.
    pub fn from_args<I: IntoIterator<Item = String>>(program: &str, args: I) -> Result<Command, ConfigError> {
        let argv = std::iter::once(program.to_owned()).chain(args);
        let matches = match ServerArgs::command_with_defaults().name(program.to_owned()).try_get_matches_from(argv) {
            Ok(m) => m,
            Err(e)
                if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) =>
            {
                return Ok(Command::Help(e.render().to_string()));
            }
            Err(e) => return Err(clap_error(&e)),
        };
        let args = ServerArgs::from_arg_matches(&matches).map_err(|e| clap_error(&e))?;
        let config = Self::merge(args.config.as_deref(), &args.set)?;
        config.check()?;
        Ok(Command::Run(Box::new(config)))
    }

    /// The HTTPS address, or `None` when it is `off`.
    pub fn https(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.https_addr == "off" {
            return Ok(None);
        }
        self.https_addr.parse().map(Some).map_err(|_| {
            self.error(
                "https_addr",
                format!("must be an address such as 127.0.0.1:8443, or `off` (got {:?})", self.https_addr),
            )
        })
    }

    /// The callback allow-list.
    pub fn callback_hosts(&self) -> Result<pilotlight_core::model::CallbackHosts, ConfigError> {
        pilotlight_core::model::CallbackHosts::parse("callback_hosts", self.callback_hosts.split(','))
            .map_err(|e| self.error("callback_hosts", e.message))
    }

    fn error(&self, key: &str, message: String) -> ConfigError {
        ConfigError { origin: "configuration".into(), key: key.into(), message }
    }

    /// How the Docker runtime makes containers reachable. The gateway can
    /// enter a container's network namespace, so it skips docker-proxy;
    /// NGINX cannot, so it is given a published port.
    pub fn docker_endpoint_mode(&self) -> pilotlight_docker::EndpointMode {
        use pilotlight_docker::EndpointMode;
        match (self.docker_endpoint, self.edge) {
            (DockerEndpoint::Published, _) | (DockerEndpoint::Auto, EdgeKind::Nginx) => EndpointMode::PublishedPort,
            _ => EndpointMode::Namespace,
        }
    }

    /// This node's id, labels and the gateway address it advertises, when it
    /// is one of a cluster (`node_id` set); checked.
    pub fn node(
        &self,
    ) -> Result<Option<(pilotlight_core::model::NodeId, pilotlight_core::model::NodeLabels, SocketAddr)>, ConfigError>
    {
        let labels = pilotlight_core::model::NodeLabels::parse_list("node_labels", &self.node_labels)
            .map_err(|e| self.error("node_labels", e.message))?;
        if !(2_000..=300_000).contains(&self.node_ttl_ms) {
            return Err(self.error("node_ttl_ms", format!("must be 2000 to 300000 (got {})", self.node_ttl_ms)));
        }
        let Some(id) = &self.node_id else {
            if !labels.is_empty() || self.advertise_addr.is_some() {
                let key = if labels.is_empty() { "advertise_addr" } else { "node_labels" };
                return Err(self.error(key, "is for a node of a cluster: set `node_id` too".into()));
            }
            return Ok(None);
        };
        let id = pilotlight_core::model::NodeId::new(id.clone()).map_err(|e| self.error("node_id", e.message))?;
        if !matches!(self.store, StoreKind::Etcd(_)) {
            return Err(self.error(
                "node_id",
                "makes this node one of a cluster, whose nodes share a store on etcd: set store = etcd://host:port"
                    .into(),
            ));
        }
        let advertise = self.advertise_addr.unwrap_or(self.http_addr);
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            return Err(self.error(
                if self.advertise_addr.is_some() { "advertise_addr" } else { "http_addr" },
                format!("other nodes cannot reach a gateway at {advertise}: set advertise_addr to this node's ip:port"),
            ));
        }
        Ok(Some((id, labels, advertise)))
    }

    /// Checks the choices and their combinations, naming the key of the first bad one.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.node()?;
        if matches!(self.store, StoreKind::Etcd(_)) && self.queue.kind() == QueueKind::Memory {
            return Err(self.error(
                "queue",
                "`memory` is one process's queue, and a store on etcd is for several nodes: give \
                 kafka://host:port or amqp://host:5672 so every node hears every change"
                    .into(),
            ));
        }
        if self.docker_endpoint == DockerEndpoint::Namespace && self.edge == EdgeKind::Nginx {
            return Err(self.error(
                "docker_endpoint",
                "`namespace` needs edge `gateway`: NGINX cannot enter a container's network namespace; use `auto` or `published`".into(),
            ));
        }
        pilotlight_core::model::Domain::new(self.domain.clone()).map_err(|e| self.error("domain", e.message))?;
        pilotlight_core::model::Region::new(self.region.clone()).map_err(|e| self.error("region", e.message))?;
        pilotlight_core::model::Region::new(self.platform_id.clone())
            .map_err(|e| self.error("platform_id", e.message))?;
        pilotlight_core::model::Region::new(self.docker_network.clone())
            .map_err(|e| self.error("docker_network", e.message))?;
        if !(50..=60_000).contains(&self.autoscale_tick_ms) {
            return Err(
                self.error("autoscale_tick_ms", format!("must be 50 to 60000 (got {})", self.autoscale_tick_ms))
            );
        }
        if self.scale_down_window_s > 86_400 {
            return Err(
                self.error("scale_down_window_s", format!("must be at most 86400 (got {})", self.scale_down_window_s))
            );
        }
        if !(1..=3600).contains(&self.resync_period_s) {
            return Err(self.error("resync_period_s", format!("must be 1 to 3600 (got {})", self.resync_period_s)));
        }
        if !(1..=86_400).contains(&self.backoff_max_s) {
            return Err(self.error("backoff_max_s", format!("must be 1 to 86400 (got {})", self.backoff_max_s)));
        }
        if !(8192..=1_048_576).contains(&self.max_header_bytes) {
            return Err(
                self.error("max_header_bytes", format!("must be 8192 to 1048576 (got {})", self.max_header_bytes))
            );
        }
        if !(1024..=self.max_header_bytes).contains(&self.max_header_line_bytes) {
            return Err(self.error(
                "max_header_line_bytes",
                format!(
                    "must be 1024 to max_header_bytes ({}) (got {})",
                    self.max_header_bytes, self.max_header_line_bytes
                ),
            ));
        }
        self.callback_hosts()?;
        for (key, n) in
            [("async_max_attempts", self.async_max_attempts), ("callback_max_attempts", self.callback_max_attempts)]
        {
            if !(1..=100).contains(&n) {
                return Err(self.error(key, format!("must be 1 to 100 (got {n})")));
            }
        }
        if let Some(h) = &self.docker_host {
            let path = h.strip_prefix("unix://").unwrap_or_default();
            if path.is_empty() || !path.starts_with('/') || path.chars().any(|c| c.is_control()) {
                return Err(self.error("docker_host", format!("must be unix:///absolute/path (got {h:?})")));
            }
        }
        let https = self.https()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(self.error("tls_key", "and tls_cert go together: give both or neither".into()));
        }
        let mut addrs = vec![("api_addr", self.api_addr), ("http_addr", self.http_addr)];
        if let Some(h) = https {
            addrs.push(("https_addr", h));
        }
        if self.edge == EdgeKind::Nginx {
            addrs.push(("nginx_status_addr", self.nginx_status_addr));
        }
        for (i, (k, a)) in addrs.iter().enumerate() {
            if let Some((other, _)) = addrs[..i].iter().find(|(_, b)| a.port() != 0 && b == a) {
                return Err(self.error(k, format!("is the same address as `{other}` ({a})")));
            }
        }
        Ok(())
    }
}

/// A TOML error, naming the key where toml does (in backticks), with where it is.
fn toml_error(origin: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().to_owned();
    let key = message.split('`').nth(1).unwrap_or("config").to_owned();
    let at = e.span().map(|s| format!(" (at byte {})", s.start)).unwrap_or_default();
    ConfigError { origin: origin.to_owned(), key, message: format!("is invalid: {message}{at}") }
}

/// A command-line error, naming the flag as its key (`--api-addr` is `api_addr`).
fn clap_error(e: &clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.first().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let flag = arg.split([' ', '=']).next().unwrap_or_default();
    let key = flag.trim_start_matches('-').replace('-', "_");
    // The rule and the choices, without the usage line clap adds.
    let rendered = e.render().to_string();
    let message = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ");
    // clap repeats the value; a URL's password must not be.
    let message = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) if !v.is_empty() => message.replace(v.as_str(), &redact(v)),
        _ => message,
    };
    ConfigError { origin: "command line".into(), key: if key.is_empty() { "arguments".into() } else { key }, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    fn run(a: &[&str]) -> Result<ServerConfig, ConfigError> {
        match ServerConfig::from_args("server", args(a))? {
            Command::Run(c) => Ok(*c),
            Command::Help(_) => panic!("help"),
        }
    }

    #[test]
    fn defaults_are_the_embedded_platform() {
        let c = run(&[]).unwrap();
        assert_eq!(
            (c.queue.kind(), c.runtime, c.edge, c.store.clone()),
            (QueueKind::Memory, RuntimeKind::Docker, EdgeKind::Gateway, StoreKind::Redb)
        );
        assert_eq!(c.http_addr.port(), 8080);
        assert_eq!(c.https().unwrap().map(|a| a.port()), Some(8443));
        assert_eq!(c.domain, "localhost");
        assert_eq!(c.data_dir, PathBuf::from("pilotlight-data"));
    }

    #[test]
    fn a_file_then_flags_with_matching_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pilotlight.toml");
        std::fs::write(
            &file,
            "runtime = \"process\"\nedge = \"nginx\"\ndomain = \"fn.example.com\"\napi_addr = \"127.0.0.1:9000\"\nstore = \"memory\"\n",
        )
        .unwrap();
        let c = run(&["--config", file.to_str().unwrap(), "--domain", "other.example", "--https-addr=off"]).unwrap();
        assert_eq!(c.runtime, RuntimeKind::Process);
        assert_eq!(c.edge, EdgeKind::Nginx);
        assert_eq!(c.store, StoreKind::Memory);
        assert_eq!(c.domain, "other.example");
        assert_eq!(c.api_addr.port(), 9000);
        assert_eq!(c.https().unwrap(), None);
        assert_eq!(ServerConfig::from_file(&file).unwrap().domain, "fn.example.com");
    }

    #[test]
    fn every_bad_setting_names_its_key() {
        let cases: &[(&[&str], &str)] = &[
            (&["--runtime", "kubernetes"], "runtime"),
            (&["--edge", "caddy"], "edge"),
            (&["--docker-endpoint", "host"], "docker_endpoint"),
            (&["--docker-endpoint", "namespace", "--edge", "nginx"], "docker_endpoint"),
            (&["--store", "postgres"], "store"),
            (&["--queue", "nats://x"], "queue"),
            (&["--queue", "kafka://"], "queue"),
            (&["--domain", "bad domain"], "domain"),
            (&["--api-addr", "localhost"], "api_addr"),
            (&["--https-addr", "nowhere"], "https_addr"),
            (&["--tls-cert", "/x.pem"], "tls_key"),
            (&["--http-addr", "127.0.0.1:8090"], "http_addr"),
            (&["--colour", "red"], "colour"),
            (&["--memory-budget-mb", "lots"], "memory_budget_mb"),
            (&["--autoscale-tick-ms", "5"], "autoscale_tick_ms"),
            (&["--resync-period-s", "0"], "resync_period_s"),
            (&["--backoff-max-s", "soon"], "backoff_max_s"),
            (&["--docker-host", "tcp://1.2.3.4:2375"], "docker_host"),
            (&["--max-header-bytes", "100"], "max_header_bytes"),
            (&["--max-header-line-bytes", "99999999"], "max_header_line_bytes"),
            (&["--async-retry-any-5xx", "maybe"], "async_retry_any_5xx"),
            (&["--domain"], "domain"),
            (&["stray"], "stray"),
        ];
        for (a, key) in cases {
            let e = run(a).unwrap_err();
            assert_eq!(e.key, *key, "{a:?}: {e}");
        }
        // The rule is in the message: the choices of an enum, the form of an address.
        let e = run(&["--runtime", "kubernetes"]).unwrap_err();
        assert!(e.message.contains("docker") && e.message.contains("process"), "{e}");
        // A password in a bad queue URL is not repeated.
        let e = run(&["--queue", "nats://u:hunter2@x"]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // A store on etcd needs a queue every node hears; a bad etcd URL is named.
        let e = run(&["--store", "etcd://127.0.0.1:2379"]).unwrap_err();
        if cfg!(feature = "etcd") {
            assert_eq!(e.key, "queue", "{e}");
            assert!(e.message.contains("several nodes"), "{e}");
        } else {
            assert!(e.key == "store" && e.message.contains("`etcd` feature"), "{e}");
        }
        let e = run(&["--store", "etcd://nohost/?password=hunter2"]).unwrap_err();
        assert_eq!(e.key, "store", "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "runtime = \"process\"\ncolour = \"red\"\n").unwrap();
        let e = run(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert_eq!(e.key, "colour", "{e}");
        assert!(e.to_string().contains("bad.toml"), "{e}");
        std::fs::write(&file, "runtime = \"kubernetes\"\n").unwrap();
        let e = run(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("bad.toml") && e.message.contains("kubernetes"), "{e}");
    }

    #[test]
    fn every_key_is_a_flag_and_a_variable_and_help_shows_its_default() {
        let Command::Help(text) = ServerConfig::from_args("server", args(&["--help"])).unwrap() else { panic!() };
        let keys: Vec<String> = toml::Table::try_from(ServerConfig {
            tls_cert: Some("a".into()),
            tls_key: Some("b".into()),
            docker_host: Some("unix:///x".into()),
            node_id: Some("n1".into()),
            advertise_addr: Some(SocketAddr::from(([10, 0, 0, 2], 8080))),
            ..Default::default()
        })
        .unwrap()
        .keys()
        .cloned()
        .collect();
        let command = ServerArgs::command_with_defaults();
        let flags: Vec<&clap::Arg> = command.get_arguments().filter(|a| a.get_id() != "config").collect();
        assert_eq!(keys.len(), flags.len(), "{keys:?}");
        for key in &keys {
            let arg = flags.iter().find(|a| a.get_id() == key.as_str()).unwrap_or_else(|| panic!("{key}: no flag"));
            assert_eq!(arg.get_long(), Some(key.replace('_', "-").as_str()));
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            assert_eq!(env, format!("PILOTLIGHT_{}", key.to_uppercase()));
            assert!(text.contains(&format!("--{}", key.replace('_', "-"))), "{key} not in help");
        }
        assert!(text.contains("[default: 127.0.0.1:8090]") && text.contains("[default: docker]"), "{text}");
        assert!(text.contains("Examples:"), "{text}");
        // Every enum lists its choices.
        assert!(text.contains("- docker:") && text.contains("- process:"), "{text}");
    }

    #[test]
    fn the_environment_sets_keys_and_flags_win() {
        // A fresh clap command with a fake environment would need process-wide env
        // changes; the matches are built from an explicit list instead.
        let command = ServerArgs::command_with_defaults();
        let m =
            command.try_get_matches_from(["server", "--runtime", "process", "--async-retry-any-5xx", "true"]).unwrap();
        let a = ServerArgs::from_arg_matches(&m).unwrap();
        assert_eq!(a.set.runtime, Some(RuntimeKind::Process));
        assert_eq!(a.set.async_retry_any_5xx, Some(true));
        let table = toml::Table::try_from(&a.set).unwrap();
        assert_eq!(table.len(), 2, "only what was given: {table:?}");
    }

    #[test]
    fn a_store_on_etcd_is_read_with_its_queue_and_hides_its_password() {
        let c =
            run(&["--store", "etcd://127.0.0.1:2379/?user=u&password=hunter2", "--queue", "kafka://127.0.0.1:9092"]);
        if cfg!(feature = "etcd") {
            let c = c.unwrap();
            assert!(matches!(c.store, StoreKind::Etcd(_)));
            assert_eq!(c.store.to_string(), "etcd://127.0.0.1:2379/?user=u&password=***");
            assert!(!format!("{c:?}").contains("hunter2"));
        } else {
            assert_eq!(c.unwrap_err().key, "store");
        }
    }

    #[test]
    fn queue_urls_hide_their_password() {
        let q: QueueUrl = "amqp://guest:secret@127.0.0.1:5672/%2f".parse().unwrap();
        assert_eq!(q.to_string(), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert!(!format!("{q:?}").contains("secret"));
        assert_eq!(q.as_str(), "amqp://guest:secret@127.0.0.1:5672/%2f");
        assert_eq!(q.kind(), QueueKind::Amqp);
        assert_eq!(redact("memory"), "memory");
    }

    #[test]
    fn the_gateway_reaches_containers_in_their_namespace_and_nginx_on_a_published_port() {
        use pilotlight_docker::EndpointMode;
        let mode = |edge: EdgeKind, docker_endpoint: DockerEndpoint| {
            ServerConfig { edge, docker_endpoint, ..Default::default() }.docker_endpoint_mode()
        };
        assert_eq!(ServerConfig::default().docker_endpoint_mode(), EndpointMode::Namespace);
        assert_eq!(mode(EdgeKind::Gateway, DockerEndpoint::Auto), EndpointMode::Namespace);
        assert_eq!(mode(EdgeKind::Nginx, DockerEndpoint::Auto), EndpointMode::PublishedPort);
        assert_eq!(mode(EdgeKind::Gateway, DockerEndpoint::Published), EndpointMode::PublishedPort);
        assert_eq!(mode(EdgeKind::Nginx, DockerEndpoint::Published), EndpointMode::PublishedPort);
        assert_eq!(mode(EdgeKind::Gateway, DockerEndpoint::Namespace), EndpointMode::Namespace);
    }
}
