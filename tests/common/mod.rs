//! Scenarios the end-to-end tests run on each queue, and their helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pilotlight::api::client::Client;
use pilotlight::core::memory::MemoryStore;
use pilotlight::core::model::Domain;
use pilotlight::core::testkit::fixtures::DockerCleanup;
use pilotlight::core::testkit::{eventually, fixtures::hello_binary, free_port, http, unique};
use pilotlight::gateway::{Gateway, GatewayConfig, TlsSource};
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::{FunctionName, FunctionSpecInput, Platform};

/// One process: the platform on the queue at `url`, hello deployed, answered through the gateway, deleted.
pub async fn hello_through(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let queue = pilotlight::connect::queue(url).await.unwrap();
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: unique("kafka-e2e"),
        kill_on_drop: true,
        ..Default::default()
    }));
    let mut gw_config = GatewayConfig::new(Domain::new("localhost").unwrap(), dir.path()).ephemeral();
    gw_config.tls = TlsSource::Disabled;
    let gw = Arc::new(Gateway::start(gw_config).await.unwrap());
    let p = Platform::builder()
        .queue(queue)
        .store(Arc::new(MemoryStore::new()))
        .runtime(runtime.clone())
        .router(gw.clone())
        .build()
        .unwrap();
    gw.set_activator(p.activator());
    p.start().await.unwrap();
    let spec = FunctionSpecInput::exec("hello", hello_binary().to_str().unwrap(), &[], 8080).validate().unwrap();
    p.deploy(spec).await.unwrap();
    let name: FunctionName = "hello".parse().unwrap();
    p.wait_ready(&name, Duration::from_secs(60)).await.unwrap();
    let r = http::get(gw.http_addr(), "hello.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "Hello from hello!\n"));
    p.delete(&name).await.unwrap();
    p.wait_deleted(&name, Duration::from_secs(60)).await.unwrap();
    p.shutdown().await;
    gw.shutdown().await;
    runtime.stop_all().await.unwrap();
}

/// An example binary, built if missing.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|p| p.parent()).unwrap().to_path_buf();
    let bin = profile.join("examples").join(name);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo).args(["build", "--quiet", "--example", name]).status().unwrap().success();
        assert!(ok, "building example {name} failed");
    }
    bin
}

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc(Child);

impl Proc {
    /// Starts `bin args` and waits for a stdout line starting with `ready`.
    pub fn start(bin: PathBuf, args: &[&str], ready: &str) -> Proc {
        let mut child = Command::new(&bin).args(args).stdout(Stdio::piped()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("[{}] {line}", bin.file_name().unwrap().to_string_lossy());
                if line.starts_with(&ready) {
                    let _ = tx.send(());
                }
            }
        });
        let proc = Proc(child);
        rx.recv_timeout(Duration::from_secs(90)).expect("the process said it is ready");
        proc
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..200 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Live processes (not zombies: a zombie's environ is empty) whose environment carries this platform label.
pub fn labelled(platform_id: &str) -> Vec<i32> {
    let needle = format!("PILOTLIGHT_PLATFORM={platform_id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .collect()
}

/// Separate deployer and router processes sharing only the queue at `url`; this process is the API.
pub async fn split_processes(url: &str) {
    let url = url.to_owned();
    let dir = tempfile::tempdir().unwrap();
    let id = unique("split");
    let http_port = free_port();
    let deployer_data = dir.path().join("deployer");
    let router_data = dir.path().join("router");
    let deployer = Proc::start(
        example("deployer"),
        &["--queue", &url, "--data", deployer_data.to_str().unwrap(), "--platform-id", &id],
        "deployer ready",
    );
    let router = Proc::start(
        example("router"),
        &[
            "--queue",
            &url,
            "--data",
            router_data.to_str().unwrap(),
            "--http",
            &format!("127.0.0.1:{http_port}"),
            "--https",
            "off",
        ],
        "router ready",
    );

    // The API side: its own store, its own status group.
    let api = Platform::builder()
        .queue(pilotlight::connect::queue(&url).await.unwrap())
        .store(Arc::new(MemoryStore::new()))
        .status_group("status-api")
        .unwrap()
        .build()
        .unwrap();
    api.start().await.unwrap();
    let mut spec = FunctionSpecInput::exec("hello", hello_binary().to_str().unwrap(), &[], 8080);
    // No pool: the test counts the deployer's processes.
    spec.scaling = Some(pilotlight::core::model::ScalingInput { prewarm: Some(0), ..Default::default() });
    api.deploy(spec.validate().unwrap()).await.unwrap();
    let name: FunctionName = "hello".parse().unwrap();
    let ready = api.wait_ready(&name, Duration::from_secs(90)).await;
    let edge = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let answer = http::get(edge, "hello.localhost", "/", Duration::from_secs(5)).await;
    assert!(ready.is_ok(), "{ready:?}");
    assert_eq!(answer.unwrap().body, "Hello from hello!\n");
    assert_eq!(labelled(&id).len(), 1, "the deployer process runs the instance");

    api.delete(&name).await.unwrap();
    api.wait_deleted(&name, Duration::from_secs(90)).await.unwrap();
    eventually(Duration::from_secs(30), "the router stops serving hello", || async move {
        http::get(edge, "hello.localhost", "/", Duration::from_secs(5)).await.is_ok_and(|r| r.status == 404)
    })
    .await;
    assert!(labelled(&id).is_empty(), "the deployer stopped the instance");
    api.shutdown().await;
    drop(router);
    drop(deployer);
    // Nothing of this test is left running, even if an assertion above failed halfway.
    for pid in labelled(&id) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Runs each scenario `fn(Kind)` of a test file twice, as `process::NAME` and
/// `docker::NAME`; the file defines `enum Kind { Process, Docker }`.
#[macro_export]
macro_rules! both {
    ($($scenario:ident),*) => {
        mod process {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::Kind::Process).await }
            )*
        }
        mod docker {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::Kind::Docker).await }
            )*
        }
    };
}

/// `examples/server` as a child process, its stdout and stderr in `server.log`;
/// stopped (and its process instances killed) when dropped.
pub struct ServerProc {
    /// Its platform id (labels, process environment).
    pub id: String,
    /// Its data directory's parent (the log is `server.log` in it).
    pub dir: tempfile::TempDir,
    /// The API's and the edge's ports on 127.0.0.1.
    pub api: u16,
    pub http: u16,
    child: Child,
    _cleanup: Option<DockerCleanup>,
}

impl ServerProc {
    /// Starts `examples/server` on `runtime` with `extra` arguments; waits until it runs.
    pub fn start(runtime: &str, extra: &[&str]) -> ServerProc {
        let id = unique("secrets").replace('_', "-");
        let dir = tempfile::tempdir().unwrap();
        let (api, http) = (free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(example("server"))
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            .args(["--api-addr", &format!("127.0.0.1:{api}"), "--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--https-addr", "off", "--platform-id", &id, "--runtime", runtime])
            .args(["--resync-period-s", "2", "--backoff-max-s", "2", "--memory-budget-mb", "4096"])
            .args(extra)
            // Debug logs of the platform's own crates: the grep below covers what they say, too.
            .env("RUST_LOG", "info,pilotlight_core=debug,pilotlight_api=debug,pilotlight_docker=debug")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let cleanup = (runtime == "docker").then(|| DockerCleanup { label: format!("io.pilotlight.platform={id}") });
        let server = ServerProc { child, id, dir, api, http, _cleanup: cleanup };
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while !server.log().contains("pilotlight is running") {
            assert!(std::time::Instant::now() < deadline, "the server did not start:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The API token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data").join("api-token")).unwrap().trim().to_owned()
    }

    /// A client of its API.
    pub fn client(&self) -> Client {
        Client::new(&format!("http://127.0.0.1:{}", self.api), &self.token()).unwrap()
    }

    /// Runs the CLI with `stdin` as its input; its exit status, stdout and stderr.
    pub async fn cli(&self, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(example("pilotlight"))
            .args(args)
            .env("PILOTLIGHT_URL", format!("http://127.0.0.1:{}", self.api))
            .env("PILOTLIGHT_TOKEN", self.token())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).await.unwrap();
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        println!("$ pilotlight {}\n{stdout}{stderr}", args.join(" "));
        (out.status.success(), stdout, stderr)
    }

    /// `GET path` through its edge for function `name`: status and body.
    pub async fn get(&self, name: &str, path: &str) -> Option<(u16, String)> {
        let edge = std::net::SocketAddr::from(([127, 0, 0, 1], self.http));
        http::get(edge, &format!("{name}.localhost"), path, Duration::from_secs(10))
            .await
            .ok()
            .map(|r| (r.status, r.body))
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !matches!(self.child.try_wait(), Ok(Some(_))) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in labelled(&self.id) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Whether this runs under CI, where a missing service fails the test.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The Docker engine; under CI its absence fails the test, elsewhere it is skipped with the reason.
pub async fn docker_or_skip() -> Option<bollard::Docker> {
    match bollard::Docker::connect_with_defaults() {
        Ok(d) if d.ping().await.is_ok() => Some(d),
        other => {
            assert!(!ci(), "Docker is required under CI: {:?}", other.err());
            eprintln!("SKIPPED: no Docker engine");
            None
        }
    }
}

/// A server on Docker for one test: loopback ports picked by the system, no
/// HTTPS, its containers labelled `platform_id` on the test network.
pub fn docker_server_config(data: &std::path::Path, platform_id: String) -> pilotlight::server::ServerConfig {
    pilotlight::server::ServerConfig {
        data_dir: data.to_path_buf(),
        api_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        https_addr: "off".into(),
        runtime: pilotlight::server::RuntimeKind::Docker,
        platform_id,
        docker_network: "pilotlight-test".into(),
        ..pilotlight::server::ServerConfig::default()
    }
}

/// The test broker (`PILOTLIGHT_TEST_AMQP`, else the local RabbitMQ) under a
/// prefix of this test's own, or None when no broker answers outside CI
/// (skipped with the reason); under CI a missing broker fails the test.
pub async fn amqp_url(prefix: &str) -> Option<String> {
    let base = std::env::var("PILOTLIGHT_TEST_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let url = format!("{base}?prefix={}.", pilotlight::core::testkit::unique(prefix));
    match pilotlight::connect::queue(&url).await {
        Ok(_) => Some(url),
        Err(e) => {
            let msg = format!("RabbitMQ is not reachable ({e}); `bash scripts/deps.sh` installs and starts it");
            assert!(!ci(), "{msg}");
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}
