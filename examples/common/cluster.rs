//! pilotlight nodes as child processes on loopback ports, sharing an etcd
//! store and a queue, for the cluster test and benchmark: start, `kill -9`
//! (with the node's instances: the machine is gone), stop and continue; and
//! where the process runtime's instances run, read from `/proc`.
//!
//! A node is the calling program run again (`command` gives its arguments),
//! which calls [`run_node`] with the settings file in `PILOTLIGHT_TEST_NODE`.
#![allow(dead_code, clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use pilotlight::api::client::Client;
use pilotlight::core::testkit::free_port;
use pilotlight::server::{RuntimeKind, Server, ServerConfig};

/// The variable that names a node's settings file.
pub const NODE_SETTINGS: &str = "PILOTLIGHT_TEST_NODE";

/// Runs a node with the settings in `path` until killed; prints `node running`
/// once it serves (or `node failed: ...`).
pub fn run_node(path: &Path) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config: ServerConfig = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        match Server::start(config).await {
            Ok(server) => {
                println!("node running");
                std::future::pending::<()>().await;
                drop(server);
            }
            Err(e) => println!("node failed: {e}"),
        }
    });
}

/// One node, as a child process.
pub struct Node {
    pub id: String,
    pub platform: String,
    pub api: u16,
    pub http: u16,
    pub dir: PathBuf,
    settings: PathBuf,
    command: (PathBuf, Vec<String>),
    child: Option<Child>,
}

/// How a node is set up.
pub struct NodeSetup<'a> {
    pub store: &'a str,
    pub queue: &'a str,
    pub ttl: Duration,
    /// The program and arguments that run [`run_node`].
    pub command: (PathBuf, Vec<String>),
    pub log_filter: &'a str,
    /// What runs instances (containers are labelled with the node's platform id).
    pub runtime: RuntimeKind,
}

impl Node {
    /// Starts node `id` (labels `labels`) with its data and log in `dir/<id>`.
    pub fn new(dir: &Path, id: &str, labels: &str, setup: &NodeSetup<'_>) -> Node {
        let dir = dir.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let (api, http) = (free_port(), free_port());
        let platform = format!("{id}-{}-{}", std::process::id(), free_port());
        let config = ServerConfig {
            data_dir: dir.join("data"),
            api_addr: format!("127.0.0.1:{api}").parse().unwrap(),
            http_addr: format!("127.0.0.1:{http}").parse().unwrap(),
            https_addr: "off".into(),
            runtime: setup.runtime,
            store: setup.store.parse().unwrap(),
            queue: setup.queue.parse().unwrap(),
            platform_id: platform.clone(),
            node_id: Some(id.into()),
            node_labels: labels.into(),
            node_ttl_ms: u64::try_from(setup.ttl.as_millis()).unwrap(),
            resync_period_s: 2,
            backoff_max_s: 2,
            memory_budget_mb: 4096,
            ..ServerConfig::default()
        };
        let settings = dir.join("node.json");
        std::fs::write(&settings, serde_json::to_vec(&config).unwrap()).unwrap();
        std::fs::write(dir.join("log-filter"), setup.log_filter).unwrap();
        let mut node =
            Node { id: id.into(), platform, api, http, dir, settings, command: setup.command.clone(), child: None };
        node.start();
        node
    }

    /// Starts (or starts again) the node's process; returns once it serves.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("node.log")).unwrap();
        let filter = std::fs::read_to_string(self.dir.join("log-filter")).unwrap_or_default();
        let child = Command::new(&self.command.0)
            .args(&self.command.1)
            .env(NODE_SETTINGS, &self.settings)
            .env("RUST_LOG", filter)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let before = self.log().matches("node running").count();
        loop {
            let log = self.log();
            if log.matches("node running").count() > before {
                break;
            }
            assert!(!log.contains("node failed"), "node {} did not start:\n{log}", self.id);
            assert!(Instant::now() < deadline, "node {} did not start:\n{log}", self.id);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// A client of its API.
    pub fn client(&self) -> Client {
        let token = std::fs::read_to_string(self.dir.join("data").join("api-token")).unwrap();
        Client::new(&format!("http://127.0.0.1:{}", self.api), token.trim()).unwrap()
    }

    /// The node's process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.as_ref().unwrap().id()).unwrap())
    }

    /// Its resident memory, in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }

    /// `kill -9` of the node and of its instances: the machine is gone.
    pub fn kill9(&mut self) {
        let _ = kill(self.pid(), Signal::SIGKILL);
        let _ = self.child.take().unwrap().wait();
        self.kill_instances();
    }

    fn kill_instances(&self) {
        for (pid, _) in instances().into_iter().filter(|(_, (p, _))| *p == self.platform) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let ids = self.containers().into_keys().collect::<Vec<_>>();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).output();
        }
    }

    /// This node's containers (by its platform label): id and function.
    pub fn containers(&self) -> BTreeMap<String, String> {
        let filter = format!("label=io.pilotlight.platform={}", self.platform);
        let format = "{{.ID}} {{.Label \"io.pilotlight.function\"}}";
        let Ok(out) = Command::new("docker").args(["ps", "--filter", &filter, "--format", format]).output() else {
            return BTreeMap::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(id, f)| (id.to_owned(), f.to_owned())))
            .collect()
    }

    /// `GET /` of `function` through this node's edge: the status.
    pub async fn get(&self, function: &str) -> Result<u16, String> {
        let edge = std::net::SocketAddr::from(([127, 0, 0, 1], self.http));
        pilotlight::core::testkit::http::get(edge, &format!("{function}.localhost"), "/", Duration::from_secs(10))
            .await
            .map(|r| r.status)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)), Signal::SIGCONT);
            let _ = c.kill();
            let _ = c.wait();
        }
        self.kill_instances();
    }
}

/// Function instances of the process runtime on this host: process group
/// leaders labelled with a platform and a function, by pid.
pub fn instances() -> BTreeMap<i32, (String, String)> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let vars: BTreeMap<String, String> = environ
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('=').map(|(k, v)| (k.into(), v.into())))
            .collect();
        if let (Some(p), Some(f)) = (vars.get("PILOTLIGHT_PLATFORM"), vars.get("PILOTLIGHT_FUNCTION")) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let leader =
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<i32>().ok());
            if leader == Some(pid) && !stat.contains(") Z ") {
                found.insert(pid, (p.clone(), f.clone()));
            }
        }
    }
    found
}

/// Which node(s) run each function (processes, or running containers when `docker`).
pub fn placement(nodes: &[Node]) -> BTreeMap<String, BTreeSet<String>> {
    let by_platform: BTreeMap<&str, &str> = nodes.iter().map(|n| (n.platform.as_str(), n.id.as_str())).collect();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (platform, function) in instances().into_values() {
        if let Some(node) = by_platform.get(platform.as_str()) {
            out.entry(function).or_default().insert((*node).to_owned());
        }
    }
    out
}

/// Which node(s) run each function in running containers.
pub fn container_placement(nodes: &[Node]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for n in nodes {
        for function in n.containers().into_values() {
            out.entry(function).or_default().insert(n.id.clone());
        }
    }
    out
}

/// The owner of each function, as node `asked` reports it.
pub async fn owners(asked: &Node) -> BTreeMap<String, String> {
    let list = asked.client().nodes().await.unwrap();
    list.nodes.iter().flat_map(|n| n.functions.iter().map(|f| (f.clone(), n.id.clone()))).collect()
}

/// Waits until `check` holds, at most `limit` (then panics naming `what`).
pub async fn until<F: std::future::Future<Output = bool>>(what: &str, limit: Duration, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `p` quantile (0 to 1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}
