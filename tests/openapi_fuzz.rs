//! The OpenAPI document says exactly what the API takes and answers:
//! schemathesis (from PyPI, in `target/schemathesis-venv`, installed by
//! `scripts/deps.sh`) generates requests from it against a live server on
//! Docker, and every check must pass: no 5xx, no schema-valid request
//! refused, no schema-violating one accepted, every answer in its schema,
//! status code and content type. The two exceptions for `POST /v1/functions`
//! (rules JSON Schema cannot state) are in `tests/schemathesis.toml`.
//!
//! Under CI a missing schemathesis or Docker engine fails the test; on a
//! laptop it is skipped with the reason printed.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use pilotlight::core::testkit::fixtures::DockerCleanup;
use pilotlight::core::testkit::unique;
use pilotlight::docker::LABEL_PLATFORM;
use pilotlight::server::{Server, ServerConfig, StoreKind};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_the_document_does_not_say() {
    let st = root().join("target/schemathesis-venv/bin/schemathesis");
    if !st.exists() {
        assert!(!common::ci(), "schemathesis is required under CI: run scripts/deps.sh");
        eprintln!("SKIPPED: no {} (scripts/deps.sh installs it)", st.display());
        return;
    }
    if common::docker_or_skip().await.is_none() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let platform_id = unique("fuzz").replace('_', "-");
    let _cleanup = DockerCleanup { label: format!("{LABEL_PLATFORM}={platform_id}") };
    let server = Server::start(ServerConfig {
        store: StoreKind::Memory,
        // Deploys of images that are nowhere to be pulled: retried, but not often.
        backoff_max_s: 60,
        ..common::docker_server_config(data.path(), platform_id)
    })
    .await
    .expect("server");
    let api = format!("http://{}", server.api_addr());
    let examples = std::env::var("PILOTLIGHT_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".into());
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(root().join("tests/schemathesis.toml"))
        .args(["run", &format!("{api}/v1/openapi.json"), "--url", &api])
        .args(["--header", &format!("Authorization: Bearer {}", server.token().reveal())])
        .args(["--max-examples", &examples, "--seed", "20261203", "--request-timeout", "10", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", root().join("tests"))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("schemathesis ran for {:.1} s", started.elapsed().as_secs_f64());
    server.shutdown().await;
    assert!(out.status.success(), "schemathesis found failures or errors (exit {:?}); see above", out.status.code());
    assert!(text.contains("passed"), "schemathesis ran no test case: {text}");
}
