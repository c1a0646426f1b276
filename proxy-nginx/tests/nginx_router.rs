//! The NGINX router against a real NGINX (Debian's package), on loopback ports.
//! Each test runs its own managed NGINX in a temp directory and stops it.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use pilotlight_core::model::{Domain, FunctionName};
use pilotlight_core::ports::{Activation, ActivationError, Activator, Router, RouterError, Runtime};
use pilotlight_core::testkit::{eventually, free_port};
use pilotlight_nginx::{NginxConfig, NginxError, NginxMode, NginxRouter, SystemReload};
use pilotlight_process::ProcessRuntime;

use common::{DOMAIN, get, have_nginx, hello, https_get, managed, processes_mentioning, route, runtime, table, tls};

/// Stops the router's NGINX and checks that no process of it is left.
async fn stop(router: NginxRouter) {
    let dir = router.dir().to_string_lossy().into_owned();
    router.shutdown(Duration::from_secs(10)).await;
    drop(router);
    eventually(Duration::from_secs(10), "no nginx process of the test is left", || {
        let left = processes_mentioning(&dir);
        async move { left.is_empty() }
    })
    .await;
}

#[tokio::test]
async fn the_router_conformance_suite_passes_on_a_real_nginx() {
    if !have_nginx() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let router = NginxRouter::start(managed(tmp.path())).await.unwrap();
    pilotlight_core::testkit::router::run_all(&router).await;
    assert!(router.stats().reloads >= 3, "{:?}", router.stats());
    stop(router).await;
}

#[tokio::test]
async fn hello_answers_by_subdomain_over_http_and_https_and_unknown_hosts_get_404_json() {
    if !have_nginx() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tls(tmp.path());
    let https: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let router = NginxRouter::start(managed(tmp.path()).with_https(https, &t.cert, &t.key)).await.unwrap();
    let rt = runtime();
    let inst = hello(&rt, "hello").await;
    router.apply(&table(vec![route("hello", &[inst.endpoint.addr()], 30_000)])).await.unwrap();
    let http = router.config().http_addr;

    let r = get(http, &format!("hello.{DOMAIN}"), "/").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "Hello from hello!\n"));
    // The port in Host is ignored; the forwarded headers reach the function.
    let r = get(http, &format!("hello.{DOMAIN}:{}", http.port()), "/headers").await.unwrap();
    assert_eq!(r.status, 200);
    let received = r.body.to_ascii_lowercase();
    assert!(received.contains("x-forwarded-proto: http\n"), "{received}");
    assert!(received.contains("x-forwarded-for: 127.0.0.1"), "{received}");
    assert!(received.contains(&format!("x-forwarded-host: hello.{DOMAIN}:{}", http.port())), "{received}");

    let r = get(http, &format!("nope.{DOMAIN}"), "/").await.unwrap();
    assert_eq!(r.status, 404);
    let body: serde_json::Value = serde_json::from_str(&r.body).expect("the 404 body is JSON");
    assert_eq!(body["error"]["code"], "not_found");

    let (alpn, text) = https_get(https, &format!("hello.{DOMAIN}"), &t.ca_pem, &["http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some("http/1.1"));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("Hello from hello!\n"), "{text}");
    let (alpn, _) = https_get(https, &format!("hello.{DOMAIN}"), &t.ca_pem, &["h2", "http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some("h2"), "HTTP/2 is offered over TLS");

    stop(router).await;
    rt.stop_all().await.unwrap();
}

fn with_templates(mut c: NginxConfig, dir: &std::path::Path, routes: &str) -> NginxConfig {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("pilotlight.conf.tera"), routes).unwrap();
    c.templates = Some(dir.to_owned());
    c
}

#[tokio::test]
async fn a_broken_template_or_config_leaves_the_previous_routes_serving_and_says_why() {
    if !have_nginx() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let builtin = include_str!("../templates/pilotlight.conf.tera");
    // A template of the user's own that renders a bad directive once there are two functions.
    let own = format!("{builtin}\n{{% if functions | length > 1 %}}this_is_not_a_directive on;{{% endif %}}\n");
    let t = tls(tmp.path());
    let https: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config =
        with_templates(managed(tmp.path()), &tmp.path().join("templates"), &own).with_https(https, &t.cert, &t.key);
    let router = NginxRouter::start(config).await.unwrap();
    let rt = runtime();
    let inst = hello(&rt, "hello").await;
    let one = table(vec![route("hello", &[inst.endpoint.addr()], 30_000)]);
    router.apply(&one).await.unwrap();
    let served = router.served_generation().await.unwrap();
    let http = router.config().http_addr;

    let mut two = one.clone();
    two.upsert(route("other", &[inst.endpoint.addr()], 30_000));
    let err = router.apply(&two).await.unwrap_err();
    assert!(matches!(err, RouterError::Rejected(_)), "{err}");
    assert!(err.to_string().contains("unknown directive \"this_is_not_a_directive\""), "NGINX's own words: {err}");
    assert!(!err.is_retryable());
    assert_eq!(router.served_generation().await, Some(served), "still the previous generation");
    assert_eq!(get(http, &format!("hello.{DOMAIN}"), "/").await.unwrap().status, 200);
    assert_eq!(get(http, &format!("other.{DOMAIN}"), "/").await.unwrap().status, 404);

    // A config that renders fine but that NGINX cannot load: the certificate is gone.
    std::fs::write(&t.cert, "not a certificate").unwrap();
    let mut changed = one.clone();
    changed.upsert(route("hello", &[inst.endpoint.addr()], 5_000));
    let err = router.apply(&changed).await.unwrap_err();
    assert!(err.to_string().contains("wildcard.pem"), "names the certificate: {err}");
    assert_eq!(router.served_generation().await, Some(served));
    assert_eq!(get(http, &format!("hello.{DOMAIN}"), "/").await.unwrap().status, 200);
    assert!(router.stats().failures >= 2);
    stop(router).await;

    // A template that does not parse is refused at start, naming the file.
    let bad_dir = tmp.path().join("bad-templates");
    let config = with_templates(managed(&tmp.path().join("other")), &bad_dir, "{% for f in functions %}");
    let err = NginxRouter::start(config).await.err().expect("a broken template is refused");
    assert!(matches!(err, NginxError::Template { .. }), "{err}");
    assert!(err.to_string().contains("bad-templates/pilotlight.conf.tera"), "{err}");
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn two_hundred_functions_are_applied_at_once_and_each_answers() {
    if !have_nginx() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let router = NginxRouter::start(managed(tmp.path())).await.unwrap();
    let rt = runtime();
    let mut instances = Vec::new();
    for i in 0..4 {
        instances.push(hello(&rt, &format!("backend{i}")).await);
    }
    let routes = (0..200).map(|i| route(&format!("fn{i}"), &[instances[i % 4].endpoint.addr()], 30_000)).collect();
    router.apply(&table(routes)).await.unwrap();
    let timings = router.last_apply().unwrap();
    println!("200 functions: {timings:?}");
    assert_eq!(timings.functions, 200);
    let http = router.config().http_addr;
    for i in 0..200 {
        let r = get(http, &format!("fn{i}.{DOMAIN}"), "/").await.unwrap();
        assert_eq!((r.status, r.body.clone()), (200, format!("Hello from backend{}!\n", i % 4)), "fn{i}");
    }
    stop(router).await;
    rt.stop_all().await.unwrap();
}

/// A request loop on pooled keep-alive connections, retrying a GET once when
/// the server closed an idle connection just as the request went out: what
/// browsers and most HTTP clients do. NGINX closes idle keep-alive connections
/// when its old workers stop after a reload, so without that retry a client
/// sees the race (counted in `races`); the gateway swaps tables without it.
async fn pooled_loop(
    http: std::net::SocketAddr,
    host: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    races: Arc<AtomicUsize>,
) -> Vec<String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut failures = Vec::new();
    let mut retry = false;
    for _ in 0..5_000 {
        if stop.load(Ordering::SeqCst) && !retry {
            break;
        }
        let req =
            http::Request::get(format!("http://{http}/")).header("host", &host).body(Empty::<Bytes>::new()).unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), client.request(req)).await;
        let closed_race = matches!(&answer, Ok(Err(e)) if is_keepalive_close(e));
        if closed_race && !retry {
            races.fetch_add(1, Ordering::SeqCst);
            retry = true;
            continue;
        }
        retry = false;
        match answer {
            Ok(Ok(resp)) => {
                let status = resp.status();
                let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                match body {
                    Ok(b) if status == 200 && b.starts_with(b"Hello from") => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => failures.push(format!("pooled: {status} {other:?}")),
                }
            }
            Ok(Err(e)) => failures.push(format!("pooled: {e:?}")),
            Err(_) => failures.push("pooled: no answer in 10 s".into()),
        }
    }
    failures
}

/// The server closed (or reset) a reused connection before any response byte.
fn is_keepalive_close(e: &hyper_util::client::legacy::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let incomplete = err.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message);
        let reset =
            err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset);
        if incomplete || reset {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A request loop with a new connection per request.
async fn fresh_loop(
    http: std::net::SocketAddr,
    host: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for _ in 0..5_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match get(http, &host, "/").await {
            Ok(r) if r.status == 200 && r.body.starts_with("Hello from") => {
                ok.fetch_add(1, Ordering::SeqCst);
            }
            other => failures.push(format!("fresh: {other:?}")),
        }
    }
    failures
}

#[tokio::test]
async fn a_stream_of_requests_during_twenty_reloads_loses_none() {
    if !have_nginx() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let router = NginxRouter::start(managed(tmp.path())).await.unwrap();
    let rt = runtime();
    let a = hello(&rt, "blue").await.endpoint.addr();
    let b = hello(&rt, "green").await.endpoint.addr();
    router.apply(&table(vec![route("svc", &[a], 30_000)])).await.unwrap();
    let http = router.config().http_addr;
    let host = format!("svc.{DOMAIN}");

    let stop_flag = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let races = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for i in 0..4 {
        let (h, s, o) = (host.clone(), stop_flag.clone(), ok.clone());
        loops.push(if i % 2 == 0 {
            tokio::spawn(pooled_loop(http, h, s, o, races.clone()))
        } else {
            tokio::spawn(fresh_loop(http, h, s, o))
        });
    }
    for i in 0..20 {
        // Move svc between the two instances and grow the table, so every reload changes something.
        let target = if i % 2 == 0 { b } else { a };
        let mut routes = vec![route("svc", &[target], 30_000)];
        routes.extend((0..i).map(|j| route(&format!("extra{j}"), &[a], 30_000)));
        router.apply(&table(routes)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_flag.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for l in loops {
        failures.extend(l.await.unwrap());
    }
    let served = ok.load(Ordering::SeqCst);
    println!(
        "{served} requests answered during 20 reloads, {} failed; {} keep-alive close races retried once",
        failures.len(),
        races.load(Ordering::SeqCst)
    );
    assert!(failures.is_empty(), "{} failed, e.g. {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(served >= 100, "the stream really ran ({served} requests)");
    assert_eq!(router.stats().reloads, 21);
    stop(router).await;
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn applies_that_arrive_during_a_reload_are_coalesced() {
    if !have_nginx() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let router = Arc::new(NginxRouter::start(managed(tmp.path())).await.unwrap());
    let base: std::net::SocketAddr = ([127, 0, 0, 1], 41000).into();
    let applies = (0..10u16).map(|i| {
        let router = router.clone();
        let routes = (0..=i).map(|j| route(&format!("f{j}"), &[base], 30_000)).collect();
        async move { router.apply(&table(routes)).await }
    });
    for outcome in futures::future::join_all(applies).await {
        outcome.unwrap();
    }
    let stats = router.stats();
    println!("{stats:?}");
    assert_eq!(stats.applies, 10);
    assert!(stats.reloads < 10 && stats.coalesced >= 1, "ten applies at once need fewer than ten reloads: {stats:?}");
    assert_eq!(stats.reloads + stats.coalesced, 10);
    // Applying what is served already reloads nothing.
    let reloads = stats.reloads;
    let current = std::fs::read_to_string(router.dir().join("current/pilotlight.conf")).unwrap();
    let n = current.matches("server_name f").count() as u16;
    router.apply(&table((0..n).map(|j| route(&format!("f{j}"), &[base], 30_000)).collect())).await.unwrap();
    assert_eq!(router.stats().reloads, reloads);
    let router = Arc::into_inner(router).unwrap();
    stop(router).await;
}

/// Starts hello on demand and routes the gateway to it: the platform's part, in small.
struct StartHello {
    gw: Arc<pilotlight_gateway::Gateway>,
    rt: Arc<ProcessRuntime>,
}

#[async_trait::async_trait]
impl Activator for StartHello {
    async fn activate(&self, name: &FunctionName) -> Result<Activation, ActivationError> {
        let inst = hello(&self.rt, name.as_str()).await;
        let t = table(vec![route(name.as_str(), &[inst.endpoint.addr()], 30_000)]);
        self.gw.apply(&t).await.map_err(|e| ActivationError::Unavailable(e.to_string()))?;
        Ok(Activation::Requested)
    }
}

#[tokio::test]
async fn a_function_with_no_instance_goes_to_the_gateways_activator_or_gets_503() {
    if !have_nginx() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut gw_config = pilotlight_gateway::GatewayConfig::new(Domain::new(DOMAIN).unwrap(), tmp.path()).ephemeral();
    gw_config.tls = pilotlight_gateway::TlsSource::Disabled;
    let gw = Arc::new(pilotlight_gateway::Gateway::start(gw_config).await.unwrap());
    gw.set_activator(Arc::new(StartHello { gw: gw.clone(), rt: rt.clone() }));
    let at_zero = table(vec![route("sleepy", &[], 30_000)]);
    gw.apply(&at_zero).await.unwrap();

    let mut config = managed(&tmp.path().join("with"));
    config.activator = Some(gw.http_addr());
    let router = NginxRouter::start(config).await.unwrap();
    router.apply(&at_zero).await.unwrap();
    let r = get(router.config().http_addr, &format!("sleepy.{DOMAIN}"), "/").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "Hello from sleepy!\n"), "woken through the gateway");
    assert_eq!(rt.list().await.unwrap().len(), 1);
    stop(router).await;

    let router = NginxRouter::start(managed(&tmp.path().join("without"))).await.unwrap();
    router.apply(&at_zero).await.unwrap();
    let raw = raw_get(router.config().http_addr, &format!("sleepy.{DOMAIN}")).await;
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after: 1"), "{raw}");
    assert!(raw.contains("\"no_instance\""), "{raw}");
    stop(router).await;
    gw.shutdown().await;
    rt.stop_all().await.unwrap();
}

async fn raw_get(addr: std::net::SocketAddr, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn a_restarted_router_adopts_the_running_nginx_and_a_stopped_master_is_started_again() {
    if !have_nginx() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut config = managed(tmp.path());
    config.mode = NginxMode::Managed { worker_processes: 1, worker_connections: 256, stop_on_drop: false };
    let rt = runtime();
    let inst = hello(&rt, "hello").await;
    let _guard = common::NginxGuard(config.dir.clone());
    let first = NginxRouter::start(config.clone()).await.unwrap();
    first.apply(&table(vec![route("hello", &[inst.endpoint.addr()], 30_000)])).await.unwrap();
    let pid = first.master_pid().unwrap();
    let generation = first.served_generation().await.unwrap();
    drop(first); // a control plane that dies: NGINX keeps serving
    let http = config.http_addr;
    assert_eq!(get(http, &format!("hello.{DOMAIN}"), "/").await.unwrap().status, 200);

    let second = NginxRouter::start(config.clone()).await.unwrap();
    assert_eq!(second.master_pid(), Some(pid), "adopted, not restarted");
    assert_eq!(second.served_generation().await, Some(generation));
    assert_eq!(get(http, &format!("hello.{DOMAIN}"), "/").await.unwrap().status, 200);

    // NGINX stops behind pilotlight's back; the next apply starts it again.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    eventually(Duration::from_secs(10), "the master is gone", || {
        let gone = second.master_pid().is_none();
        async move { gone }
    })
    .await;
    let mut t = table(vec![route("hello", &[inst.endpoint.addr()], 30_000)]);
    t.upsert(route("again", &[inst.endpoint.addr()], 30_000));
    second.apply(&t).await.unwrap();
    assert_ne!(second.master_pid(), Some(pid));
    assert_eq!(get(http, &format!("again.{DOMAIN}"), "/").await.unwrap().status, 200);
    let generations = std::fs::read_dir(second.dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("gen-"))
        .count();
    assert!(generations <= config.keep_generations + 1, "old generations are pruned ({generations})");
    stop(second).await;
    rt.stop_all().await.unwrap();
}

#[tokio::test]
async fn system_mode_drives_an_installed_nginx_through_its_config_directory_and_reload_command() {
    if !have_nginx() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let host_dir = tmp.path().join("host");
    for sub in ["", "tmp"] {
        std::fs::create_dir_all(host_dir.join(sub)).unwrap();
    }
    let routes_dir = tmp.path().join("pilotlight");
    let http: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut config = NginxConfig::system(Domain::new(DOMAIN).unwrap(), &routes_dir);
    config.http_addr = http;
    config.status_addr = ([127, 0, 0, 1], free_port()).into();
    let main = host_dir.join("nginx.conf");
    config.mode = NginxMode::System {
        reload: SystemReload::Command(
            ["nginx", "-c", main.to_str().unwrap(), "-p", host_dir.to_str().unwrap(), "-s", "reload"]
                .map(String::from)
                .to_vec(),
        ),
    };
    // The router writes an empty generation first, so the host's include resolves.
    let router = NginxRouter::start(config).await.unwrap();
    let h = host_dir.display();
    std::fs::write(
        &main,
        format!(
            "pid {h}/nginx.pid;\nerror_log {h}/error.log;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {h}/tmp;\n  proxy_temp_path {h}/tmp;\n\
             fastcgi_temp_path {h}/tmp;\n  uwsgi_temp_path {h}/tmp;\n  scgi_temp_path {h}/tmp;\n\
             include {}/current/pilotlight.conf;\n}}\n",
            routes_dir.display()
        ),
    )
    .unwrap();
    let started = std::process::Command::new("nginx").arg("-c").arg(&main).arg("-p").arg(&host_dir).output().unwrap();
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let host_pid = || std::fs::read_to_string(host_dir.join("nginx.pid")).ok()?.trim().parse::<i32>().ok();
    let _guard = common::NginxGuard(host_dir.clone());

    let rt = runtime();
    let inst = hello(&rt, "hello").await;
    let outcome = router.apply(&table(vec![route("hello", &[inst.endpoint.addr()], 30_000)])).await;
    let answer = get(http, &format!("hello.{DOMAIN}"), "/").await;
    // The faster way: SIGHUP to the master named by the host's pid file.
    let mut by_signal = router.config().clone();
    by_signal.mode = NginxMode::System { reload: SystemReload::Signal { pid_file: host_dir.join("nginx.pid") } };
    drop(router);
    let router = NginxRouter::start(by_signal).await.unwrap();
    let mut two = table(vec![route("hello", &[inst.endpoint.addr()], 30_000)]);
    two.upsert(route("second", &[inst.endpoint.addr()], 30_000));
    let signalled = router.apply(&two).await;
    let second = get(http, &format!("second.{DOMAIN}"), "/").await;
    // Stop the host's NGINX (ours, by its pid) before asserting, so a failure leaves nothing running.
    if let Some(pid) = host_pid() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    rt.stop_all().await.unwrap();
    outcome.unwrap();
    assert_eq!(answer.unwrap().body, "Hello from hello!\n");
    signalled.unwrap();
    assert_eq!(second.unwrap().status, 200);
    eventually(Duration::from_secs(10), "the host nginx stopped", || {
        let left = processes_mentioning(&host_dir.to_string_lossy());
        async move { left.is_empty() }
    })
    .await;
}
