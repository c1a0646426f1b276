//! Secrets on real parts: the server as a child process (its whole output
//! kept in a file), the CLI, and the function reading the secret as a file,
//! on Docker (`/run/secrets/<name>`) and on processes
//! (`$PILOTLIGHT_SECRETS_DIR/<name>`).
//!
//! Each run makes values of its own and then greps for them: in every API
//! answer, the server's log, the Store's file on disk, `docker inspect` (or
//! the process's environment). A secret is rotated under a request loop
//! through the edge: no request fails, and the function reads the new value.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use common::{ServerProc, docker_or_skip};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use pilotlight::api::client::{Client, ClientError};
use pilotlight::core::model::Phase;
use pilotlight::core::testkit::fixtures::{hello_binary, hello_image_context};
use pilotlight::core::testkit::http;
use pilotlight::docker::{LABEL_PLATFORM, build_image_from_dir};
use serde_json::{Value, json};

async fn wait_ready(c: &Client, name: &str, generation: u64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let f = c.get(name).await.unwrap();
        if f.generation >= generation && f.phase == Phase::Ready {
            return;
        }
        assert!(Instant::now() < deadline, "{name} generation {generation} never ready: {f:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn value(tag: &str) -> String {
    let mut bytes = [0u8; 12];
    getrandom_fill(&mut bytes);
    format!("{tag}-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn getrandom_fill(out: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").unwrap().read_exact(out).unwrap();
}

#[tokio::test]
async fn docker_secrets_are_files_never_values_anywhere_and_rotate_without_a_failed_request() {
    let Some(d) = docker_or_skip().await else { return };
    let image = "pilotlight/hello:secrets";
    build_image_from_dir(&d, image, hello_image_context().path()).await.unwrap();
    let server = ServerProc::start("docker", &[]);
    secrets_end_to_end(&server, json!({"image": image}), Some(&d)).await;
}

#[tokio::test]
async fn process_secrets_are_files_never_values_anywhere_and_rotate_without_a_failed_request() {
    let server = ServerProc::start("process", &[]);
    secrets_end_to_end(&server, json!({"exec": {"program": hello_binary().to_str().unwrap()}}), None).await;
}

async fn secrets_end_to_end(server: &ServerProc, source: Value, docker: Option<&Docker>) {
    let c = server.client();
    let (first, second) = (value("first"), value("second"));

    // Set from stdin through the CLI: the answer names the size, not the value.
    let (ok, out, _) = server.cli(&["secret", "set", "db-password"], first.as_bytes()).await;
    assert!(ok && out.contains(&format!("({} bytes)", first.len())) && !out.contains(&first), "{out}");

    let mut spec = json!({"name": "vault", "port": 8080, "secrets": ["db-password"],
                          "scaling": {"min": 1, "max": 1, "prewarm": 0}, "env": {"LOG_REQUESTS": "0"}});
    for (k, v) in source.as_object().unwrap() {
        spec[k] = v.clone();
    }
    // A secret that does not exist is a clear error naming the field, and nothing is deployed.
    let mut missing = spec.clone();
    missing["name"] = json!("nothing");
    missing["secrets"] = json!(["db-password", "api-key"]);
    match c.deploy(&missing).await {
        Err(ClientError::Api { status, detail }) => {
            assert_eq!((status.as_u16(), detail.field.as_deref()), (422, Some("secrets.1")), "{detail:?}");
            assert!(detail.message.contains("pilotlight secret set api-key"), "{detail:?}");
        }
        other => panic!("deployed with a missing secret: {other:?}"),
    }
    assert!(matches!(c.get("nothing").await, Err(ClientError::Api { .. })), "nothing half-done");

    let generation = c.deploy(&spec).await.unwrap().generation;
    wait_ready(&c, "vault", generation).await;
    assert_eq!(
        server.get("vault", "/secret?name=db-password").await,
        Some((200, first.clone())),
        "the function reads it"
    );

    // Removing a secret in use is refused, naming the function.
    let (ok, _, err) = server.cli(&["secret", "rm", "db-password"], b"").await;
    assert!(!ok && err.contains("`vault`") && err.contains("used by"), "{err}");

    // Rotation under a request loop through the edge (bounded in count and time).
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let edge = std::net::SocketAddr::from(([127, 0, 0, 1], server.http));
    let load = {
        let (stop, sent, failed) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failed));
        tokio::spawn(async move {
            let began = Instant::now();
            while !stop.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < 50_000 && began.elapsed() < WAIT {
                let r = http::get(edge, "vault.localhost", "/", Duration::from_secs(10)).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if !r.as_ref().is_ok_and(|r| r.status == 200) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed during the rotation: {:?}", r.map(|r| (r.status, r.body)));
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rotated_at = Instant::now();
    let set = c.set_secret("db-password", second.clone().into_bytes()).await.unwrap();
    assert_eq!((set.size, set.used_by.as_slice()), (second.len(), &["vault".to_owned()][..]));
    let mut took = None;
    while rotated_at.elapsed() < WAIT {
        if server.get("vault", "/secret?name=db-password").await == Some((200, second.clone())) {
            took = Some(rotated_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = took.expect("the function reads the new value");
    let rolled = c.get("vault").await.unwrap();
    assert!(rolled.generation > generation, "a new generation: {rolled:?}");
    wait_ready(&c, "vault", rolled.generation).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "rotation: the function read the new value {:.2} s after the set; {sent} requests during it, {failed} failed",
        took.as_secs_f64()
    );
    assert!(sent > 0);
    assert_eq!(failed, 0, "no request failed during the rotation");

    // Where the values must not be: every API answer, the log, the Store on disk, the engine or the process env.
    let mut seen = Vec::new();
    seen.push(serde_json::to_string(&c.get("vault").await.unwrap()).unwrap());
    seen.push(serde_json::to_string(&c.list().await.unwrap()).unwrap());
    seen.push(serde_json::to_string(&c.secrets().await.unwrap()).unwrap());
    seen.push(serde_json::to_string(&c.info().await.unwrap()).unwrap());
    let (_, listed, _) = server.cli(&["secret", "ls"], b"").await;
    assert!(listed.contains("db-password") && listed.contains("vault"), "{listed}");
    seen.push(listed);
    let (_, got, _) = server.cli(&["get", "vault", "--json"], b"").await;
    assert!(got.contains("db-password"), "the spec lists the name");
    seen.push(got);
    seen.push(server.log());
    let store = std::fs::read(server.dir.path().join("data").join("store.redb")).unwrap();
    seen.push(String::from_utf8_lossy(&store).into_owned());
    match docker {
        Some(d) => {
            let filters = std::collections::HashMap::from([(
                "label".to_owned(),
                vec![format!("{LABEL_PLATFORM}={}", server.id)],
            )]);
            let options = bollard::query_parameters::ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            };
            let containers = d.list_containers(Some(options)).await.unwrap();
            assert!(!containers.is_empty());
            for container in containers {
                let id = container.id.unwrap();
                let inspect = d.inspect_container(&id, None).await.unwrap();
                let mounts = inspect.mounts.clone().unwrap_or_default();
                assert!(
                    mounts.iter().any(|m| m.destination.as_deref() == Some("/run/secrets") && m.rw == Some(false)),
                    "a read-only mount at /run/secrets: {mounts:?}"
                );
                seen.push(serde_json::to_string(&inspect).unwrap());
            }
        }
        None => {
            let pids = common::labelled(&server.id);
            assert!(!pids.is_empty());
            for pid in pids {
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
                let env = String::from_utf8_lossy(&env).into_owned();
                assert!(env.contains("PILOTLIGHT_SECRETS_DIR="), "the process is told where its secrets are");
                seen.push(env);
            }
        }
    }
    for (i, text) in seen.iter().enumerate() {
        assert!(!text.contains(&first) && !text.contains(&second), "a secret value leaked into place {i}");
    }
    println!("the values appear in none of {} places looked at", seen.len());

    // Once no function uses it, it can go; afterwards it is listed nowhere.
    c.delete("vault").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.get("vault").await.is_ok() {
        assert!(Instant::now() < deadline, "vault was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out, _) = server.cli(&["secret", "rm", "db-password"], b"").await;
    assert!(ok && out.contains("secret db-password removed"), "{out}");
    assert!(c.secrets().await.unwrap().is_empty());

    // The files of generations with no instance left go too (on a later pass).
    let root = std::path::Path::new("/dev/shm").join(format!("pilotlight-{}-secrets", server.id));
    let root = if std::path::Path::new("/dev/shm").is_dir() {
        root
    } else {
        server.dir.path().join("data").join("run").join("secrets")
    };
    let began = Instant::now();
    while root.exists() {
        assert!(began.elapsed() < Duration::from_secs(60), "{} is still there", root.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("the secret files were removed {:.1} s after the function was deleted", began.elapsed().as_secs_f64());
}

const WAIT: Duration = Duration::from_secs(90);
