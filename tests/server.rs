//! The assembled server (`pilotlight::server`) on real parts: the process
//! runtime behind the gateway and behind NGINX, restarts on the same data
//! directory, and the errors of a bad start.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use futures::StreamExt;
use pilotlight::api::client::Client;
use pilotlight::core::model::Phase;
use pilotlight::core::testkit::{fixtures::hello_binary, free_port, http, unique};
use pilotlight::server::{Server, ServerConfig, ServerError};
use serde_json::json;

fn config(data: &std::path::Path) -> ServerConfig {
    ServerConfig {
        data_dir: data.to_path_buf(),
        api_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        https_addr: "127.0.0.1:0".into(),
        runtime: pilotlight::server::RuntimeKind::Process,
        platform_id: unique("server"),
        ..ServerConfig::default()
    }
}

fn client(server: &Server) -> Client {
    Client::new(&format!("http://{}", server.api_addr()), server.token().reveal()).unwrap()
}

async fn deploy_and_wait(c: &Client, name: &str) {
    let mut events = c.events().await.unwrap();
    let spec = json!({"name": name, "exec": {"program": hello_binary().to_str().unwrap()}, "port": 8080});
    let receipt = c.deploy(&spec).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if e.name == name && e.generation == receipt.generation && e.phase == Phase::Ready {
                return;
            }
            assert!(!(e.name == name && e.phase == Phase::Failed && e.permanent), "{e:?}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_gateway_server_deploys_serves_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let server = Server::start(cfg.clone()).await.unwrap();
    assert!(server.token_created());
    let token_file = dir.path().join("api-token");
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), server.token().reveal());
    let summary = server.summary().join("\n");
    assert!(summary.contains("runtime   process") && summary.contains("edge      gateway"), "{summary}");

    let c = client(&server);
    let info = c.info().await.unwrap();
    assert_eq!((info.runtime.as_str(), info.edge.as_str(), info.queue.as_str()), ("process", "gateway", "memory"));
    deploy_and_wait(&c, "hello").await;
    let f = c.get("hello").await.unwrap();
    let port = server.http_addr().port();
    assert_eq!(f.url.as_deref(), Some(format!("http://hello.localhost:{port}/").as_str()));
    let r = http::get(server.http_addr(), "hello.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "Hello from hello!\n"));

    // The process dies (a restart): the next start adopts the record and serves again.
    server.shutdown().await;
    drop(server);
    let server = Server::start(cfg).await.unwrap();
    assert!(!server.token_created(), "the token is kept across restarts");
    let c = client(&server);
    let name = "hello".parse().unwrap();
    server.platform().wait_ready(&name, Duration::from_secs(60)).await.unwrap();
    // The instance kept running through the restart and was adopted: same endpoint, answering at once.
    let after = c.get("hello").await.unwrap();
    // The running instance (the pool's paused one may have been made after `f` was read).
    let running = |v: &[pilotlight::api::views::InstanceView]| -> Vec<String> {
        v.iter().filter(|i| i.state == pilotlight::core::model::InstanceState::Running).map(|i| i.id.clone()).collect()
    };
    assert_eq!(running(&after.instances), running(&f.instances), "the instance was adopted, not replaced");
    assert_eq!(running(&f.instances).len(), 1);
    let r = http::get(server.http_addr(), "hello.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.status, 200);
    let metrics = reqwest_like_get(&server, "/metrics").await;
    assert!(metrics.contains("pilotlight_gateway"), "{metrics}");

    c.delete("hello").await.unwrap();
    server.platform().wait_deleted(&name, Duration::from_secs(60)).await.unwrap();
    let r = http::get(server.http_addr(), "hello.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.status, 404);
    server.shutdown().await;
}

async fn reqwest_like_get(server: &Server, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.api_addr()).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        server.token().reveal()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Runs in the `nginx` test group (see .config/nextest.toml).
#[tokio::test]
async fn nginx_server_behind_nginx_with_the_gateway_as_activator() {
    if std::process::Command::new("nginx").arg("-v").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "nginx is required under CI");
        eprintln!("SKIPPED: nginx is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.edge = pilotlight::server::EdgeKind::Nginx;
    cfg.https_addr = "off".into();
    cfg.http_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.nginx_status_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = Server::start(cfg.clone()).await.unwrap();
    assert_eq!(server.http_addr(), cfg.http_addr);
    let c = client(&server);
    assert_eq!(c.info().await.unwrap().edge, "nginx");
    deploy_and_wait(&c, "hello").await;
    let r = http::get(cfg.http_addr, "hello.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "Hello from hello!\n"));
    // The activator knows the same table: a request it gets for hello is served too.
    let r = http::get(server.gateway().http_addr(), "hello.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.status, 200);
    c.delete("hello").await.unwrap();
    server.platform().wait_deleted(&"hello".parse().unwrap(), Duration::from_secs(60)).await.unwrap();
    let r = http::get(cfg.http_addr, "hello.localhost", "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.status, 404);
    server.shutdown().await;
    assert!(std::net::TcpStream::connect(cfg.http_addr).is_err(), "NGINX stops with the server");
}

#[tokio::test]
async fn without_a_docker_engine_the_error_suggests_the_process_runtime_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cfg = config(&data);
    cfg.runtime = pilotlight::server::RuntimeKind::Docker;
    cfg.docker_host = Some("unix:///nonexistent/docker.sock".into());
    let Err(e) = Server::start(cfg).await else { panic!("started without an engine") };
    let text = e.to_string();
    assert!(matches!(e, ServerError::Start { part: "runtime", .. }), "{text}");
    assert!(text.contains("--runtime process") && text.contains("nonexistent/docker.sock"), "{text}");
    assert!(!data.exists(), "nothing is written when the start fails");
}

#[tokio::test]
async fn a_taken_api_address_is_named_and_the_edge_is_stopped_again() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.api_addr = taken.local_addr().unwrap();
    let Err(e) = Server::start(cfg.clone()).await else { panic!("started on a taken address") };
    assert!(e.to_string().contains(&cfg.api_addr.to_string()), "{e}");
    // The edge it had started is stopped: its port is free again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(std::net::TcpListener::bind(cfg.http_addr).is_ok(), "the gateway still listens");
}

#[test]
fn the_readme_settings_example_is_a_valid_config() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("### Server settings").expect("section");
    let block = readme[start..].split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), block).unwrap();
    let parsed = ServerConfig::from_file(file.path()).unwrap();
    assert_eq!(parsed, ServerConfig::default(), "the README shows the defaults");
}

/// Runs the `pilotlight` CLI against `server`; its exit status and stdout.
async fn cli(server: &Server, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(common::example("pilotlight"))
        .args(args)
        .env("PILOTLIGHT_URL", format!("http://{}", server.api_addr()))
        .env("PILOTLIGHT_TOKEN", server.token().reveal())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("$ pilotlight {}\n{stdout}{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}

/// The dead-letter round trip through the server and the CLI: a function
/// that always answers 500 (retried: `async_retry_any_5xx`) ends as a dead
/// letter after its attempts, with its answer kept; redeployed fixed, the
/// dead letter retried with `pilotlight dead-letters NAME --retry` succeeds.
#[tokio::test]
async fn a_dead_letter_is_retried_from_the_cli_once_the_function_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.async_max_attempts = 3;
    cfg.async_retry_any_5xx = true;
    let server = Server::start(cfg).await.unwrap();
    let c = client(&server);
    let spec = |fail: bool| {
        let env = if fail { json!({"FAIL_WITH": "500"}) } else { json!({}) };
        json!({"name": "flaky", "exec": {"program": hello_binary().to_str().unwrap()}, "port": 8080, "env": env,
               "scaling": {"min": 1, "prewarm": 0}})
    };
    let deploy = |fail: bool| {
        let c = c.clone();
        async move {
            let generation = c.deploy(&spec(fail)).await.unwrap().generation;
            for _ in 0..300 {
                let f = c.get("flaky").await.unwrap();
                if f.generation == generation && f.phase == Phase::Ready {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("flaky generation {generation} never ready: {:?}", c.get("flaky").await);
        }
    };
    deploy(true).await;
    let (ok, out) = cli(&server, &["invoke", "flaky", "--async", "--path", "/headers", "--data", "order-1"]).await;
    assert!(ok, "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    let mut dead = None;
    for _ in 0..300 {
        let i = c.invocation(&id).await.unwrap();
        if i.state == "dead" {
            dead = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = dead.expect("the invocation became a dead letter");
    assert_eq!(dead.attempts.len(), 3, "{dead:?}");
    let last = dead.response.unwrap();
    assert_eq!((last.status, last.body.as_str()), (500, "failing with 500\n"), "its last answer is kept");
    let (ok, listed) = cli(&server, &["dead-letters", "flaky"]).await;
    assert!(ok && listed.contains(&id) && listed.contains("3 attempts failed"), "{listed}");

    deploy(false).await;
    let (ok, out) = cli(&server, &["dead-letters", "flaky", "--retry"]).await;
    assert!(ok && out.contains("1 dead letter(s) of flaky queued again"), "{out}");
    let mut done = None;
    for _ in 0..300 {
        let i = c.invocation(&id).await.unwrap();
        if i.state == "succeeded" {
            done = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = done.expect("the retried dead letter succeeded");
    assert_eq!(done.attempts.len(), 1, "its attempts were reset");
    let body = done.response.unwrap().body;
    assert!(body.contains("x-attempt: 1") && body.ends_with("order-1"), "the function got the kept request: {body}");
    let (ok, listed) = cli(&server, &["dead-letters", "flaky"]).await;
    assert!(ok && listed.contains("no dead letters"), "{listed}");
    let (ok, answer) = cli(&server, &["invoke", "flaky", "--path", "/headers", "--data", "sync"]).await;
    assert!(ok && answer.ends_with("sync"), "a synchronous invoke answers with the function's body: {answer}");
    let (ok, out) =
        cli(&server, &["invoke", "flaky", "--async", "--path", "/headers", "--data", "waited", "--wait"]).await;
    assert!(ok && out.contains("succeeded after 1 attempt(s)") && out.trim_end().ends_with("waited"), "{out}");
    server.shutdown().await;
}
