//! The platform behind a managed NGINX: hello deployed end to end, and hostile
//! input refused through the public API before anything reaches a config file.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::sync::Arc;
use std::time::Duration;

use pilotlight::core::memory::{MemoryQueue, MemoryStore};
use pilotlight::core::model::{Domain, FunctionSpecInput};
use pilotlight::core::testkit::{eventually, fixtures::hello_binary, free_port, http, require_tool, unique};
use pilotlight::nginx::{NginxConfig, NginxMode, NginxRouter};
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::{FunctionName, Platform};

const DOMAIN: &str = "pilot.test";

async fn nginx(dir: &std::path::Path) -> Arc<NginxRouter> {
    let mut c = NginxConfig::managed(Domain::new(DOMAIN).unwrap(), dir);
    c.http_addr = ([127, 0, 0, 1], free_port()).into();
    c.status_addr = ([127, 0, 0, 1], free_port()).into();
    c.mode = NginxMode::Managed { worker_processes: 1, worker_connections: 256, stop_on_drop: true };
    Arc::new(NginxRouter::start(c).await.unwrap())
}

fn platform(router: Arc<NginxRouter>, runtime: Arc<ProcessRuntime>) -> Platform {
    Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(Arc::new(MemoryStore::new()))
        .runtime(runtime)
        .router(router)
        .domain(DOMAIN)
        .unwrap()
        .build()
        .unwrap()
}

fn runtime() -> Arc<ProcessRuntime> {
    Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: unique("e2e-nginx"),
        kill_on_drop: true,
        ..Default::default()
    }))
}

/// The generation directories NGINX's router has written so far.
fn generations(router: &NginxRouter) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(router.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn hello_is_deployed_through_the_platform_and_served_by_nginx() {
    if !require_tool("nginx", "the platform runs behind a real NGINX here") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let router = nginx(dir.path()).await;
    let rt = runtime();
    let p = platform(router.clone(), rt.clone());
    p.start().await.unwrap();
    let spec = FunctionSpecInput::exec("hello", hello_binary().to_str().unwrap(), &[], 8080).validate().unwrap();
    p.deploy(spec).await.unwrap();
    let name: FunctionName = "hello".parse().unwrap();
    p.wait_ready(&name, Duration::from_secs(30)).await.unwrap();
    let edge = router.config().http_addr;
    let r = http::get(edge, &format!("hello.{DOMAIN}"), "/", Duration::from_secs(10)).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "Hello from hello!\n"));

    p.delete(&name).await.unwrap();
    p.wait_deleted(&name, Duration::from_secs(30)).await.unwrap();
    eventually(Duration::from_secs(10), "hello is no longer routed", || async move {
        http::get(edge, &format!("hello.{DOMAIN}"), "/", Duration::from_secs(5)).await.is_ok_and(|r| r.status == 404)
    })
    .await;
    p.shutdown().await;
    router.shutdown(Duration::from_secs(5)).await;
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn hostile_names_domains_and_env_values_are_refused_before_anything_is_rendered() {
    if !require_tool("nginx", "the test shows that nothing reaches a real NGINX") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let router = nginx(dir.path()).await;
    let rt = runtime();
    let p = platform(router.clone(), rt.clone());
    p.start().await.unwrap();
    let before = generations(&router);
    let served = router.served_generation().await;
    let hello = hello_binary().to_string_lossy().into_owned();

    let hostile = [
        "a;b",
        "a}",
        "a{",
        "x\nserver_name evil",
        "$host",
        "a'b",
        "a\"b",
        "a#b",
        "a b",
        "\u{0455}erver", // Cyrillic 's'
        "\u{ff48}ello",  // fullwidth 'h'
        "hel\u{200b}lo", // zero-width space
        "hello\u{202e}", // right-to-left override
        "HELLO",
        "",
    ];
    for name in hostile {
        // As the API will take it: JSON.
        let json = serde_json::json!({"name": name, "exec": {"program": hello}, "port": 8080}).to_string();
        let input: FunctionSpecInput = serde_json::from_str(&json).unwrap();
        let err = input.validate().expect_err(name);
        assert_eq!(err.field, "name", "{name:?}: {err}");
    }
    for domain in ["pilot.test;", "pilot.test }", "a\nb", "$host", "pilot.test#", "\u{0440}ilot.test", "'x'"] {
        let err = Platform::builder().domain(domain).err().expect(domain);
        assert_eq!(err.field, "domain", "{domain:?}: {err}");
        assert_eq!(Domain::new(domain).unwrap_err().field, "domain");
    }
    for (key, value) in [("BAD;NAME", "x"), ("A}", "x"), ("$X", "x"), ("OK", "line\nbreak"), ("OK", "nul\0byte")] {
        let json =
            serde_json::json!({"name": "envtest", "exec": {"program": hello}, "port": 8080, "env": {key: value}});
        let input: FunctionSpecInput = serde_json::from_str(&json.to_string()).unwrap();
        let err = input.validate().expect_err(key);
        assert!(err.field.starts_with("env"), "{key:?}={value:?}: {err}");
    }
    assert_eq!(generations(&router), before, "nothing was rendered for refused input");
    assert_eq!(router.served_generation().await, served);

    // Values that are fine in an environment (quotes, `;`, `}`, `$`) are accepted
    // for the function, and never written into NGINX's configuration.
    let marker = "v;a}l{u$e'#\"";
    let json =
        serde_json::json!({"name": "envok", "exec": {"program": hello}, "port": 8080, "env": {"SECRET": marker}});
    let spec = serde_json::from_str::<FunctionSpecInput>(&json.to_string()).unwrap().validate().unwrap();
    p.deploy(spec).await.unwrap();
    p.wait_ready(&"envok".parse().unwrap(), Duration::from_secs(30)).await.unwrap();
    let rendered = std::fs::read_to_string(router.dir().join("current/pilotlight.conf")).unwrap();
    assert!(rendered.contains("server_name envok.pilot.test;"), "{rendered}");
    assert!(!rendered.contains(marker) && !rendered.contains("SECRET"), "env never reaches the config");
    p.shutdown().await;
    router.shutdown(Duration::from_secs(5)).await;
    rt.stop_all().await.unwrap();
}
