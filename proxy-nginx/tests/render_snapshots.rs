//! Snapshots of the rendered configuration, each checked by `nginx -t`.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::path::Path;

use pilotlight_core::model::{Domain, RouteTable};
use pilotlight_nginx::render::Renderer;
use pilotlight_nginx::{NginxConfig, NginxMode};

use common::{DOMAIN, route, table, tls};

fn sample() -> RouteTable {
    table(vec![
        route("hello", &[([127, 0, 0, 1], 41001).into()], 30_000),
        route("api", &[([127, 0, 0, 1], 41002).into(), ([127, 0, 0, 1], 41003).into()], 2_500),
        route("sleepy", &[], 60_000),
    ])
}

fn fixed_ports(mut c: NginxConfig) -> NginxConfig {
    c.http_addr = ([127, 0, 0, 1], 8080).into();
    c.status_addr = ([127, 0, 0, 1], 8079).into();
    c
}

/// Renders generation 7 of `table` into `root/gen`, snapshots every file, and runs `nginx -t` on the entry file.
fn render_check(name: &str, config: &NginxConfig, root: &Path, table: &RouteTable, entry: &str) {
    config.validate().unwrap();
    let dir = root.join("gen");
    std::fs::create_dir_all(&dir).unwrap();
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(root.join("tmp").join(sub)).unwrap();
    }
    let files = Renderer::new(config, root).unwrap().render(table, 7, &dir).unwrap();
    let root_text = root.display().to_string();
    for (file, text) in &files {
        std::fs::write(dir.join(file), text).unwrap();
        insta::with_settings!({ filters => vec![(root_text.as_str(), "[ROOT]")], snapshot_suffix => *file }, {
            insta::assert_snapshot!(name, text);
        });
    }
    if !common::have_nginx() {
        return;
    }
    let out = std::process::Command::new("nginx")
        .args(["-t", "-q", "-c"])
        .arg(dir.join(entry))
        .arg("-p")
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "nginx -t refused snapshot {name}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn managed_http_only() {
    let tmp = tempfile::tempdir().unwrap();
    let c = fixed_ports(NginxConfig::managed(Domain::new(DOMAIN).unwrap(), tmp.path()));
    render_check("managed_http_only", &c, tmp.path(), &sample(), "nginx.conf");
}

#[test]
fn managed_https_with_activator() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tls(tmp.path());
    let mut c = fixed_ports(NginxConfig::managed(Domain::new(DOMAIN).unwrap(), tmp.path())).with_https(
        ([127, 0, 0, 1], 8443).into(),
        &t.cert,
        &t.key,
    );
    c.activator = Some(([127, 0, 0, 1], 9080).into());
    c.mode = NginxMode::Managed { worker_processes: 2, worker_connections: 2048, stop_on_drop: true };
    render_check("managed_https_with_activator", &c, tmp.path(), &sample(), "nginx.conf");
}

#[test]
fn system_mode_with_an_empty_table() {
    let tmp = tempfile::tempdir().unwrap();
    let c = fixed_ports(NginxConfig::system(Domain::new(DOMAIN).unwrap(), tmp.path()));
    render_check("system_empty", &c, tmp.path(), &RouteTable::new(), "test.conf");
}
