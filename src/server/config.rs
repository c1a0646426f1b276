//! The server's settings: defaults, then a TOML file, then `--flags`, each
//! flag named like its key (`api_addr` is `--api-addr`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    pub queue: String,
    /// `docker` or `process`.
    pub runtime: String,
    /// `gateway` or `nginx`.
    pub edge: String,
    /// `redb`: one file in the data directory.
    pub store: String,
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
    /// How the gateway reaches Docker containers: `auto`, `namespace` or `published`.
    /// `auto` is `namespace` with the gateway edge and `published` with NGINX.
    pub docker_endpoint: String,
    /// Hosts asynchronous invocations may be called back at, comma-separated
    /// (`hooks.example.com`, `*.example.com`, `127.0.0.1`); empty allows any.
    pub callback_hosts: String,
    /// Attempts of an asynchronous invocation before it is a dead letter.
    pub async_max_attempts: u64,
    /// Attempts to deliver a callback before it is recorded as failed.
    pub callback_max_attempts: u64,
    /// Retry an asynchronous invocation on any 5xx, not only 502, 503 and 504.
    pub async_retry_any_5xx: bool,
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
            queue: "memory".into(),
            runtime: "docker".into(),
            edge: "gateway".into(),
            store: "redb".into(),
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
            docker_endpoint: "auto".into(),
            callback_hosts: String::new(),
            async_max_attempts: 5,
            callback_max_attempts: 10,
            async_retry_any_5xx: false,
        }
    }
}

/// One key: its name and what `--help` says about it.
struct Key {
    name: &'static str,
    help: &'static str,
}

const KEYS: &[Key] = &[
    Key { name: "data_dir", help: "data directory: store, api-token, TLS, NGINX files [pilotlight-data]" },
    Key { name: "api_addr", help: "REST API and web UI address [127.0.0.1:8090]" },
    Key { name: "http_addr", help: "edge HTTP address [127.0.0.1:8080]" },
    Key { name: "https_addr", help: "edge HTTPS address, or `off` [127.0.0.1:8443]" },
    Key { name: "domain", help: "functions answer at <name>.<domain> [localhost]" },
    Key { name: "region", help: "the region this node serves [local]" },
    Key { name: "queue", help: "memory | kafka://host:port | amqp://user:pass@host:5672/%2f [memory]" },
    Key { name: "runtime", help: "docker | process [docker]" },
    Key { name: "edge", help: "gateway | nginx [gateway]" },
    Key { name: "store", help: "redb [redb]" },
    Key { name: "tls_cert", help: "HTTPS certificate chain, PEM [a development CA for the gateway]" },
    Key { name: "tls_key", help: "HTTPS private key, PEM" },
    Key { name: "platform_id", help: "label of this platform's containers and processes [pilotlight]" },
    Key { name: "docker_network", help: "Docker network of the instances [pilotlight]" },
    Key { name: "nginx_status_addr", help: "NGINX status listener for reload checks [127.0.0.1:8079]" },
    Key { name: "memory_budget_mb", help: "sum of instances' memory limits allowed; 0 = 80% of host memory [0]" },
    Key { name: "autoscale_tick_ms", help: "how often the autoscaler looks at in-flight counts [1000]" },
    Key { name: "scale_down_window_s", help: "a lower count must hold this long to scale down [30]" },
    Key { name: "resync_period_s", help: "every function is reconciled at least this often, in seconds [30]" },
    Key { name: "backoff_max_s", help: "longest wait between tries of a failing function, in seconds [300]" },
    Key { name: "docker_host", help: "Docker engine socket, unix:///path [$DOCKER_HOST or /var/run/docker.sock]" },
    Key { name: "max_header_bytes", help: "the gateway answers 431 to a larger request head [65536]" },
    Key { name: "max_header_line_bytes", help: "the gateway answers 431 to a longer header line [16384]" },
    Key {
        name: "docker_endpoint",
        help: "auto | namespace | published: reach containers inside their network namespace or on a published port [auto: namespace with the gateway, published with nginx]",
    },
    Key {
        name: "callback_hosts",
        help: "hosts X-Callback-Url may name, comma-separated: hooks.example.com, *.example.com, 127.0.0.1 [any]",
    },
    Key { name: "async_max_attempts", help: "attempts of an asynchronous invocation before it is a dead letter [5]" },
    Key { name: "callback_max_attempts", help: "attempts to deliver a callback before it is recorded as failed [10]" },
    Key {
        name: "async_retry_any_5xx",
        help: "true: retry asynchronous invocations on any 5xx, not only 502, 503 and 504 [false]",
    },
];

/// A bad setting: which key, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: `{key}` {message}")]
pub struct ConfigError {
    /// Where it came from: a file, or `flag --x`.
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
    /// Print this help and exit.
    Help(String),
}

impl ServerConfig {
    /// The `--help` text.
    pub fn usage(program: &str) -> String {
        let mut out = format!(
            "pilotlight server: the whole platform in one process.\n\nUsage: {program} [--config FILE] [--KEY VALUE]...\n\n\
             Settings are read from defaults, then the TOML file given by --config (or $PILOTLIGHT_CONFIG),\n\
             then flags. Each flag is a key of that file with `_` written `-`.\n\n  --config FILE{:17}a TOML file of these keys\n",
            ""
        );
        for k in KEYS {
            let flag = format!("--{} VALUE", k.name.replace('_', "-"));
            out.push_str(&format!("  {flag:<30}{}\n", k.help));
        }
        out
    }

    /// Reads a TOML file of these keys.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            key: "config".into(),
            message: format!("cannot be read: {e}"),
        })?;
        toml::from_str(&text).map_err(|e| {
            let message = e.message().to_owned();
            // toml names an unknown key in backticks; otherwise point at the line.
            let key = message.split('`').nth(1).unwrap_or("config").to_owned();
            let at = e.span().map(|s| format!(" (at byte {})", s.start)).unwrap_or_default();
            ConfigError { origin, key, message: format!("is invalid: {message}{at}") }
        })
    }

    /// Sets one key from a string (a flag's value).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError {
            origin: format!("flag --{}", key.replace('_', "-")),
            key: key.into(),
            message,
        };
        let addr = |v: &str| {
            v.parse::<SocketAddr>().map_err(|_| bad(format!("must be an address such as 127.0.0.1:8080 (got {v:?})")))
        };
        match key {
            "data_dir" => self.data_dir = PathBuf::from(value),
            "api_addr" => self.api_addr = addr(value)?,
            "http_addr" => self.http_addr = addr(value)?,
            "https_addr" => self.https_addr = value.into(),
            "domain" => self.domain = value.into(),
            "region" => self.region = value.into(),
            "queue" => self.queue = value.into(),
            "runtime" => self.runtime = value.into(),
            "edge" => self.edge = value.into(),
            "store" => self.store = value.into(),
            "tls_cert" => self.tls_cert = Some(PathBuf::from(value)),
            "tls_key" => self.tls_key = Some(PathBuf::from(value)),
            "platform_id" => self.platform_id = value.into(),
            "docker_network" => self.docker_network = value.into(),
            "nginx_status_addr" => self.nginx_status_addr = addr(value)?,
            "docker_host" => self.docker_host = Some(value.into()),
            "docker_endpoint" => self.docker_endpoint = value.into(),
            "callback_hosts" => self.callback_hosts = value.into(),
            "async_retry_any_5xx" => {
                self.async_retry_any_5xx = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("must be true or false (got {value:?})"))),
                }
            }
            "memory_budget_mb"
            | "autoscale_tick_ms"
            | "scale_down_window_s"
            | "resync_period_s"
            | "backoff_max_s"
            | "max_header_bytes"
            | "async_max_attempts"
            | "callback_max_attempts"
            | "max_header_line_bytes" => {
                let n: u64 = value.parse().map_err(|_| bad(format!("must be a whole number (got {value:?})")))?;
                match key {
                    "max_header_bytes" => self.max_header_bytes = n,
                    "max_header_line_bytes" => self.max_header_line_bytes = n,
                    "memory_budget_mb" => self.memory_budget_mb = n,
                    "autoscale_tick_ms" => self.autoscale_tick_ms = n,
                    "resync_period_s" => self.resync_period_s = n,
                    "backoff_max_s" => self.backoff_max_s = n,
                    "async_max_attempts" => self.async_max_attempts = n,
                    "callback_max_attempts" => self.callback_max_attempts = n,
                    _ => self.scale_down_window_s = n,
                }
            }
            _ => {
                return Err(ConfigError {
                    origin: format!("flag --{}", key.replace('_', "-")),
                    key: key.into(),
                    message: "is not a setting; --help lists them".into(),
                });
            }
        }
        Ok(())
    }

    /// Parses a command line (without the program name): `--config`, `--help`, `--key value`.
    pub fn from_args<I: IntoIterator<Item = String>>(program: &str, args: I) -> Result<Command, ConfigError> {
        let mut pairs = Vec::new();
        let mut file = std::env::var_os("PILOTLIGHT_CONFIG").map(PathBuf::from);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Ok(Command::Help(Self::usage(program)));
            }
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(ConfigError {
                    origin: "command line".into(),
                    key: arg,
                    message: "is not a flag; --help lists them".into(),
                });
            };
            let (key, inline) = match flag.split_once('=') {
                Some((k, v)) => (k.replace('-', "_"), Some(v.to_owned())),
                None => (flag.replace('-', "_"), None),
            };
            let value = match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => {
                    return Err(ConfigError { origin: format!("flag --{flag}"), key, message: "needs a value".into() });
                }
            };
            if key == "config" {
                file = Some(PathBuf::from(value));
            } else {
                pairs.push((key, value));
            }
        }
        let mut config = match &file {
            Some(f) => Self::from_file(f)?,
            None => Self::default(),
        };
        for (k, v) in pairs {
            config.set(&k, &v)?;
        }
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
        match (self.docker_endpoint.as_str(), self.edge.as_str()) {
            ("published", _) | ("auto", "nginx") => EndpointMode::PublishedPort,
            _ => EndpointMode::Namespace,
        }
    }

    /// Checks the choices and their combinations, naming the key of the first bad one.
    pub fn check(&self) -> Result<(), ConfigError> {
        let one_of = |key: &str, value: &str, allowed: &[&str]| {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(self.error(key, format!("must be one of {} (got {value:?})", allowed.join(", "))))
            }
        };
        one_of("runtime", &self.runtime, &["docker", "process"])?;
        one_of("edge", &self.edge, &["gateway", "nginx"])?;
        one_of("store", &self.store, &["redb"])?;
        one_of("docker_endpoint", &self.docker_endpoint, &["auto", "namespace", "published"])?;
        if self.docker_endpoint == "namespace" && self.edge == "nginx" {
            return Err(self.error(
                "docker_endpoint",
                "`namespace` needs edge `gateway`: NGINX cannot enter a container's network namespace; use `auto` or `published`".into(),
            ));
        }
        if !(self.queue == "memory" || ["kafka://", "amqp://", "amqps://"].iter().any(|p| self.queue.starts_with(p))) {
            return Err(self.error(
                "queue",
                format!("must be `memory`, `kafka://host:port` or `amqp://host:5672` (got {:?})", self.queue),
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
        if self.edge == "nginx" {
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
            (c.queue.as_str(), c.runtime.as_str(), c.edge.as_str(), c.store.as_str()),
            ("memory", "docker", "gateway", "redb")
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
            "runtime = \"process\"\nedge = \"nginx\"\ndomain = \"fn.example.com\"\napi_addr = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let c = run(&["--config", file.to_str().unwrap(), "--domain", "other.example", "--https-addr=off"]).unwrap();
        assert_eq!(c.runtime, "process");
        assert_eq!(c.edge, "nginx");
        assert_eq!(c.domain, "other.example");
        assert_eq!(c.api_addr.port(), 9000);
        assert_eq!(c.https().unwrap(), None);
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
            (&["--domain"], "domain"),
            (&["stray"], "stray"),
        ];
        for (a, key) in cases {
            let e = run(a).unwrap_err();
            assert_eq!(e.key, *key, "{a:?}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "runtime = \"process\"\ncolour = \"red\"\n").unwrap();
        let e = run(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert_eq!(e.key, "colour", "{e}");
        assert!(e.to_string().contains("bad.toml"), "{e}");
    }

    #[test]
    fn help_lists_every_key_as_a_flag() {
        let Command::Help(text) = ServerConfig::from_args("server", args(&["--help"])).unwrap() else { panic!() };
        for k in KEYS {
            assert!(text.contains(&format!("--{}", k.name.replace('_', "-"))), "{}", k.name);
        }
        // Every key of the struct has a help line, and every help line is a key.
        let toml = toml::to_string(&ServerConfig {
            tls_cert: Some("a".into()),
            tls_key: Some("b".into()),
            docker_host: Some("unix:///x".into()),
            ..Default::default()
        })
        .unwrap();
        let keys: Vec<&str> = toml.lines().filter_map(|l| l.split(" = ").next()).collect();
        assert_eq!(keys.len(), KEYS.len(), "{keys:?}");
        for k in keys {
            assert!(KEYS.iter().any(|x| x.name == k), "{k} has no help line");
            let mut c = ServerConfig::default();
            assert!(
                c.set(k, "x").map_or_else(|e| e.message != "is not a setting; --help lists them", |_| true),
                "{k} cannot be set by flag"
            );
        }
    }

    #[test]
    fn the_gateway_reaches_containers_in_their_namespace_and_nginx_on_a_published_port() {
        use pilotlight_docker::EndpointMode;
        let mode = |edge: &str, endpoint: &str| {
            ServerConfig { edge: edge.into(), docker_endpoint: endpoint.into(), ..Default::default() }
                .docker_endpoint_mode()
        };
        assert_eq!(ServerConfig::default().docker_endpoint_mode(), EndpointMode::Namespace);
        assert_eq!(mode("gateway", "auto"), EndpointMode::Namespace);
        assert_eq!(mode("nginx", "auto"), EndpointMode::PublishedPort);
        assert_eq!(mode("gateway", "published"), EndpointMode::PublishedPort);
        assert_eq!(mode("nginx", "published"), EndpointMode::PublishedPort);
        assert_eq!(mode("gateway", "namespace"), EndpointMode::Namespace);
    }
}
