//! Three pilotlight nodes as separate processes (the process runtime, each
//! its own platform id and loopback ports) on a three-member etcd cluster
//! (Debian's `etcd-server`) and RabbitMQ: functions spread over the nodes,
//! every edge serves every function, a killed owner's functions come back on
//! the others and return to it when it is back, a hung node is fenced, a
//! function at zero wakes on its owner from any edge, an update fails no
//! request through any edge, and a placement no node satisfies is refused.
//!
//! The nodes are this test binary itself, run again as `node_process` with
//! the node's settings in `PILOTLIGHT_TEST_NODE` (so they are built with the
//! `etcd` feature, as the tests are).
//!
//! Under CI a missing etcd or RabbitMQ fails the tests; on a laptop they are
//! skipped with the reason printed.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

#[path = "../examples/common/cluster.rs"]
mod cluster;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use cluster::{Node, NodeSetup, container_placement, owners, percentile, placement, until};
use nix::sys::signal::{Signal, kill};
use pilotlight::core::testkit::{fixtures::hello_binary, http, unique};
use pilotlight::etcd::local::{ETCD, LocalMember, clients, start_cluster};
use pilotlight::server::{RuntimeKind, ServerConfig};
use serde_json::json;

/// The nodes' registration TTL: short, so failover is quick to test.
const TTL: Duration = Duration::from_secs(3);

/// Three etcd members on loopback ports, and their client addresses.
fn etcd_cluster(dir: &Path) -> Option<(Vec<LocalMember>, String)> {
    if !Path::new(ETCD).exists() {
        assert!(!common::ci(), "etcd is required under CI (apt install etcd-server)");
        eprintln!("SKIPPED: no {ETCD} (apt install etcd-server)");
        return None;
    }
    let members = start_cluster(dir, 3).unwrap();
    let clients = clients(&members);
    Some((members, clients))
}

fn hello(name: &str, min: u32) -> serde_json::Value {
    json!({"name": name, "exec": {"program": hello_binary().to_str().unwrap()}, "port": 8080,
           "scaling": {"min": min, "prewarm": 0}})
}

/// Requests through `edges` for `functions`, round robin, until `stop`
/// (at most 20,000 and 120 s); the failures, with their answers.
async fn request_loop(
    edges: Vec<u16>,
    functions: Vec<String>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (usize, Vec<String>) {
    let began = Instant::now();
    let mut sent = 0;
    let mut failures = Vec::new();
    while !*stop.borrow() && sent < 20_000 && began.elapsed() < Duration::from_secs(120) {
        let edge = edges[sent % edges.len()];
        let f = &functions[(sent / edges.len()) % functions.len()];
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], edge));
        match http::get(addr, &format!("{f}.localhost"), "/", Duration::from_secs(10)).await {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failures.push(format!("{f} via :{edge}: {} {}", r.status, r.body.trim())),
            Err(e) => failures.push(format!("{f} via :{edge}: {e}")),
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (sent, failures)
}

/// Nodes that are this test binary run again as `node_process`.
fn node_setup<'a>(store: &'a str, queue: &'a str, runtime: RuntimeKind, log_filter: &'a str) -> NodeSetup<'a> {
    let args = ["node_process", "--exact", "--ignored", "--nocapture", "--test-threads", "1"];
    NodeSetup {
        store,
        queue,
        ttl: TTL,
        command: (std::env::current_exe().unwrap(), args.map(String::from).to_vec()),
        log_filter,
        runtime,
    }
}

/// Whether every function answers 200 through every node's edge.
async fn answered_everywhere(nodes: &[Node], functions: &[String]) -> bool {
    for f in functions {
        for n in nodes {
            if n.get(f).await != Ok(200) {
                return false;
            }
        }
    }
    true
}

#[test]
#[ignore = "a node of the cluster tests, which start it as a child process"]
fn node_process() {
    if let Ok(path) = std::env::var(cluster::NODE_SETTINGS) {
        cluster::run_node(Path::new(&path));
    }
}

#[test]
fn clear_errors_at_start() {
    let mut c = ServerConfig { node_id: Some("n1".into()), ..ServerConfig::default() };
    let e = c.check().unwrap_err().to_string();
    assert!(e.contains("`node_id`") && e.contains("etcd"), "{e}");
    c.store = "etcd://127.0.0.1:2379".parse().unwrap();
    let e = c.check().unwrap_err().to_string();
    assert!(e.contains("`queue`") && e.contains("memory"), "{e}");
    c.queue = "amqp://127.0.0.1:5672".parse().unwrap();
    c.node_id = Some("Node_1".into());
    let e = c.check().unwrap_err().to_string();
    assert!(e.contains("`node_id`"), "{e}");
    c.node_id = Some("n1".into());
    c.http_addr = "0.0.0.0:8080".parse().unwrap();
    let e = c.check().unwrap_err().to_string();
    assert!(e.contains("`http_addr`") && e.contains("advertise_addr"), "{e}");
    c.advertise_addr = Some("10.0.0.2:8080".parse().unwrap());
    c.node_labels = "disk".into();
    let e = c.check().unwrap_err().to_string();
    assert!(e.contains("`node_labels`") && e.contains("key=value"), "{e}");
    c.node_labels = "disk=ssd".into();
    c.node_ttl_ms = 500;
    let e = c.check().unwrap_err().to_string();
    assert!(e.contains("`node_ttl_ms`"), "{e}");
    c.node_ttl_ms = 10_000;
    c.check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_spread_fail_over_fence_and_hand_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some((etcd, members)) = etcd_cluster(dir.path()) else { return };
    pilotlight::etcd::local::ready(&etcd, Duration::from_secs(30)).await.unwrap();
    let Some(queue) = common::amqp_url("cluster").await else { return };
    let store = format!("etcd://{members}/?prefix=/{}&timeout_ms=2000", unique("cluster"));
    let setup = node_setup(&store, &queue, RuntimeKind::Process, "info,pilotlight_core=debug");
    let mut nodes: Vec<Node> =
        ["n1", "n2", "n3"].iter().map(|id| Node::new(dir.path(), id, &format!("name={id}"), &setup)).collect();
    let c = nodes[0].client();
    until("every node sees three", Duration::from_secs(30), || async {
        let mut all = true;
        for n in &nodes {
            all &= n.client().nodes().await.is_ok_and(|l| l.nodes.len() == 3);
        }
        all
    })
    .await;
    let (_, listed, _) = cli(&nodes[1], &["nodes"]).await;
    assert!(listed.contains("n1") && listed.contains("n2 *") && listed.contains("n3"), "{listed}");

    // A placement no node satisfies is refused, naming the field and the live nodes.
    let mut spec = hello("gpu", 1);
    spec["placement"] = json!({"labels": {"gpu": "yes"}});
    let e = c.deploy(&spec).await.unwrap_err().to_string();
    assert!(e.contains("placement.labels") && e.contains("gpu=yes") && e.contains("n1 [name=n1]"), "{e}");
    // One that a node satisfies runs there.
    spec["placement"] = json!({"labels": {"name": "n3"}});
    spec["name"] = json!("pinned");
    c.deploy(&spec).await.unwrap();

    // Spread: 30 functions through one node's API; every edge answers every
    // function, and each runs on exactly one node, its owner.
    let names: Vec<String> = (0..30).map(|i| format!("f{i:02}")).collect();
    let began = Instant::now();
    for n in &names {
        c.deploy(&hello(n, 1)).await.unwrap();
    }
    until("30 functions answer through every edge", Duration::from_secs(120), || answered_everywhere(&nodes, &names))
        .await;
    println!("30 functions ready through 3 edges in {:.1} s", began.elapsed().as_secs_f64());
    let owner = owners(&nodes[0]).await;
    assert_eq!(owner.get("pinned").map(String::as_str), Some("n3"));
    until("each function runs on exactly its owner", Duration::from_secs(30), || async {
        let placed = placement(&nodes);
        names.iter().all(|n| placed.get(n).is_some_and(|on| on.len() == 1 && on.contains(&owner[n])))
    })
    .await;
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &names {
        *count.entry(owner[n].as_str()).or_default() += 1;
    }
    println!("spread over the nodes: {count:?}");
    assert!(count.len() == 3, "every node owns some: {count:?}");

    // NGINX in front of the nodes (examples/front.rs's mode): it renders the
    // live nodes' gateways as every function's upstream, and again when one goes.
    let front = if pilotlight::core::testkit::require_tool("nginx", "a front NGINX renders the nodes' gateways") {
        let store = pilotlight::etcd::EtcdStore::connect(&pilotlight::etcd::EtcdConfig::from_url(&store).unwrap())
            .await
            .unwrap();
        let mut config = pilotlight::nginx::NginxConfig::managed(
            pilotlight::core::model::Domain::new("localhost").unwrap(),
            dir.path().join("front"),
        );
        config.http_addr = ([127, 0, 0, 1], pilotlight::core::testkit::free_port()).into();
        config.status_addr = ([127, 0, 0, 1], pilotlight::core::testkit::free_port()).into();
        config.mode =
            pilotlight::nginx::NginxMode::Managed { worker_processes: 1, worker_connections: 256, stop_on_drop: true };
        let http = config.http_addr;
        let nginx = std::sync::Arc::new(pilotlight::nginx::NginxRouter::start(config).await.unwrap());
        let cancel = tokio_util::sync::CancellationToken::new();
        let live = store.live_nodes(Duration::from_secs(1), cancel.clone());
        tokio::spawn(pilotlight::core::controller::cluster::run_front(
            std::sync::Arc::new(store),
            live,
            nginx.clone(),
            pilotlight::core::model::Region::new("local").unwrap(),
            Duration::from_secs(1),
            cancel.clone(),
        ));
        until("every function answers through the front NGINX", Duration::from_secs(30), || async {
            for f in &names {
                let r = http::get(http, &format!("{f}.localhost"), "/", Duration::from_secs(10)).await;
                if !r.is_ok_and(|r| r.status == 200) {
                    return false;
                }
            }
            true
        })
        .await;
        println!("the front NGINX serves all 30 through the three gateways");
        Some((nginx, http, cancel))
    } else {
        None
    };

    // Failover: the node owning the most is killed with its instances.
    let (victim_id, _) = count.iter().max_by_key(|(_, c)| **c).map(|(n, c)| ((*n).to_owned(), *c)).unwrap();
    let victim = nodes.iter().position(|n| n.id == victim_id).unwrap();
    let moved: Vec<String> = names.iter().filter(|n| owner[*n] == victim_id).cloned().collect();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    nodes[victim].kill9();
    let killed = Instant::now();
    let mut back: Vec<Duration> = Vec::new();
    let mut waiting: BTreeSet<&String> = moved.iter().collect();
    while !waiting.is_empty() {
        assert!(killed.elapsed() < TTL + Duration::from_secs(30), "not back: {waiting:?}");
        for f in waiting.clone() {
            let mut ok = true;
            for s in &survivors {
                ok &= nodes[*s].get(f).await == Ok(200);
            }
            if ok {
                back.push(killed.elapsed());
                waiting.remove(f);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    back.sort();
    println!(
        "failover of {} functions (TTL {TTL:?}): p50 {:.2} s, max {:.2} s after kill -9",
        moved.len(),
        percentile(&back, 0.5).as_secs_f64(),
        percentile(&back, 1.0).as_secs_f64()
    );
    for f in &names {
        for s in &survivors {
            assert_eq!(nodes[*s].get(f).await, Ok(200), "{f} through {}", nodes[*s].id);
        }
    }
    if let Some((_, http, _)) = &front {
        until("the front NGINX serves all 30 without the killed node", Duration::from_secs(30), || async {
            for f in &names {
                let r = http::get(*http, &format!("{f}.localhost"), "/", Duration::from_secs(10)).await;
                if !r.is_ok_and(|r| r.status == 200) {
                    return false;
                }
            }
            true
        })
        .await;
    }

    // Back: the node restarts; its functions return to it under a request loop through the other edges.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let edges: Vec<u16> = survivors.iter().map(|s| nodes[*s].http).collect();
    let looping = tokio::spawn(request_loop(edges, names.clone(), stopped));
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[victim].start();
    until("the moved functions run on their owner again, and only there", Duration::from_secs(60), || async {
        let placed = placement(&nodes);
        moved.iter().all(|f| placed.get(f).is_some_and(|on| on.len() == 1 && on.contains(&victim_id)))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(true).unwrap();
    let (sent, failures) = looping.await.unwrap();
    println!("hand-back under load: {sent} requests, {} failed", failures.len());
    assert!(failures.is_empty(), "no request fails while functions move back: {failures:?}");

    // From zero on another node: a function at zero, reached through a non-owner edge.
    let mut zero = hello("zero", 0);
    zero["scaling"]["idle_timeout_s"] = json!(1);
    c.deploy(&zero).await.unwrap();
    let zero_only = ["zero".to_owned()];
    until("zero answers through every edge", Duration::from_secs(30), || answered_everywhere(&nodes, &zero_only)).await;
    let zero_owner = owners(&nodes[0]).await["zero"].clone();
    until("zero is scaled to zero when idle", Duration::from_secs(30), || async {
        !placement(&nodes).contains_key("zero")
    })
    .await;
    let other = nodes.iter().find(|n| n.id != zero_owner).unwrap();
    let t = Instant::now();
    assert_eq!(other.get("zero").await, Ok(200), "the first request through a non-owner edge");
    println!("from zero through {} to its owner {zero_owner}: {:.0} ms", other.id, t.elapsed().as_secs_f64() * 1e3);
    assert_eq!(placement(&nodes).get("zero"), Some(&BTreeSet::from([zero_owner.clone()])));

    // A zero-downtime update across nodes: a request loop through all three edges fails nothing.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let edges: Vec<u16> = nodes.iter().map(|n| n.http).collect();
    let target = names[0].clone();
    let looping = tokio::spawn(request_loop(edges, vec![target.clone()], stopped));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut updated = hello(&target, 1);
    updated["env"] = json!({"VERSION": "2"});
    let receipt = c.deploy(&updated).await.unwrap();
    until("the update is ready", Duration::from_secs(60), || async {
        c.get(&target)
            .await
            .is_ok_and(|f| f.generation == receipt.generation && f.phase == pilotlight::core::model::Phase::Ready)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send(true).unwrap();
    let (sent, failures) = looping.await.unwrap();
    println!("update across nodes: {sent} requests through 3 edges, {} failed", failures.len());
    assert!(failures.is_empty(), "{failures:?}");

    // Asynchronous invocations are shared work: accepted by any edge (also a
    // non-owner's), taken by any node's invoker, called through its edge.
    let mut ids = Vec::new();
    for i in 0..12 {
        let edge = &nodes[i % 3];
        let (status, id) = async_call(edge.http, &names[1]).await;
        assert_eq!(status, 202, "accepted through {}", edge.id);
        ids.push(id);
    }
    until("12 asynchronous invocations succeed", Duration::from_secs(60), || async {
        let mut all = true;
        for (i, id) in ids.iter().enumerate() {
            all &= nodes[(i + 1) % 3].client().invocation(id).await.is_ok_and(|v| v.state == "succeeded");
        }
        all
    })
    .await;
    println!("12 asynchronous invocations through 3 edges: all succeeded");

    // Hang and fence: a node stopped beyond its TTL loses its functions; woken,
    // it registers again, takes them back, and nothing runs twice. A cron
    // trigger every 2 s fires once per tick throughout.
    let mut ticking = hello("ticker", 1);
    ticking["triggers"] = json!([{"cron": "*/2 * * * * *", "path": "/headers"}]);
    c.deploy(&ticking).await.unwrap();
    let ticks_from = Instant::now();
    let owner = owners(&nodes[0]).await;
    let hung = 1;
    let hung_id = nodes[hung].id.clone();
    let theirs: Vec<String> = names.iter().filter(|n| owner[*n] == hung_id).cloned().collect();
    kill(nodes[hung].pid(), Signal::SIGSTOP).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != hung).collect();
    until("a hung node's functions answer through the others", TTL + Duration::from_secs(30), || async {
        for f in &theirs {
            for o in &others {
                if nodes[*o].get(f).await != Ok(200) {
                    return false;
                }
            }
        }
        true
    })
    .await;
    tokio::time::sleep(TTL).await;
    kill(nodes[hung].pid(), Signal::SIGCONT).unwrap();
    until("the woken node registers again", Duration::from_secs(30), || async {
        nodes[0].client().nodes().await.is_ok_and(|l| l.nodes.iter().any(|n| n.id == hung_id))
    })
    .await;
    until("things settle: every function on exactly its owner", Duration::from_secs(60), || async {
        let owner = owners(&nodes[0]).await;
        let placed = placement(&nodes);
        names
            .iter()
            .all(|n| placed.get(n).is_some_and(|on| on.len() == 1 && owner.get(n).is_some_and(|o| on.contains(o))))
    })
    .await;
    assert!(
        nodes[hung].log().contains("lease expired") || nodes[hung].log().contains("registering again"),
        "the woken node saw its lease gone"
    );
    let elapsed = ticks_from.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let page = c.invocations("ticker", None, None, 500).await.unwrap();
    let ticks: BTreeSet<String> = page.invocations.iter().map(|i| i.id.clone()).collect();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let most = (elapsed.as_secs_f64() / 2.0).ceil() as usize + 2;
    println!("cron every 2 s over {:.0} s: {} ticks fired", elapsed.as_secs_f64() + 2.0, page.invocations.len());
    assert_eq!(ticks.len(), page.invocations.len());
    assert!(page.invocations.len() <= most, "no tick fired twice: {} in {elapsed:?}", page.invocations.len());
    assert!(page.invocations.len() >= 3, "ticks fired: {}", page.invocations.len());
    let settled: Vec<(&str, Option<&str>)> = page
        .invocations
        .iter()
        .filter(|i| i.created_ms + 5_000 < pilotlight::core::support::now_ms())
        .map(|i| (i.state.as_str(), i.reason.as_deref()))
        .collect();
    assert!(settled.iter().all(|(s, _)| *s == "succeeded"), "every tick's call succeeded: {settled:?}");
    if let Some((nginx, _, cancel)) = front {
        cancel.cancel();
        nginx.shutdown(Duration::from_secs(5)).await;
    }
}

/// `GET /` of `function` with `Prefer: respond-async` through the edge on
/// `port`: the status and the `X-Call-Id`.
async fn async_call(port: u16, function: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head =
        format!("GET / HTTP/1.1\r\nHost: {function}.localhost\r\nPrefer: respond-async\r\nConnection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let id = text
        .lines()
        .find_map(|l| {
            l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("x-call-id")).map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, id)
}

async fn cli(node: &Node, args: &[&str]) -> (bool, String, String) {
    let token = std::fs::read_to_string(node.dir.join("data").join("api-token")).unwrap();
    let out = tokio::process::Command::new(common::example("pilotlight"))
        .args(args)
        .env("PILOTLIGHT_URL", format!("http://127.0.0.1:{}", node.api))
        .env("PILOTLIGHT_TOKEN", token.trim())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    println!("$ pilotlight {}\n{stdout}{stderr}", args.join(" "));
    (out.status.success(), stdout, stderr)
}

/// The same on Docker, smaller: three nodes with distinct platform ids, six
/// functions in containers; each runs on exactly its owner (by the
/// containers' platform labels) and answers through every edge; the owner
/// of one is killed with its containers, and the function answers again
/// through the other edges from a container on its new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_docker_nodes_place_serve_and_fail_over() {
    let Some(d) = common::docker_or_skip().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some((etcd, members)) = etcd_cluster(dir.path()) else { return };
    pilotlight::etcd::local::ready(&etcd, Duration::from_secs(30)).await.unwrap();
    let Some(queue) = common::amqp_url("cluster-docker").await else { return };
    let image = "pilotlight/hello:cluster";
    let context = pilotlight::core::testkit::fixtures::hello_image_context();
    pilotlight::docker::build_image_from_dir(&d, image, context.path()).await.unwrap();
    let store = format!("etcd://{members}/?prefix=/{}&timeout_ms=2000", unique("cluster-docker"));
    let setup = node_setup(&store, &queue, RuntimeKind::Docker, "info");
    let mut nodes: Vec<Node> = ["d1", "d2", "d3"].iter().map(|id| Node::new(dir.path(), id, "", &setup)).collect();
    let c = nodes[0].client();
    until("every node sees three", Duration::from_secs(30), || async {
        nodes[2].client().nodes().await.is_ok_and(|l| l.nodes.len() == 3)
    })
    .await;
    let names: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    for n in &names {
        let spec = json!({"name": n, "image": image, "port": 8080, "scaling": {"min": 1, "prewarm": 0}});
        c.deploy(&spec).await.unwrap();
    }
    until("6 container functions answer through every edge", Duration::from_secs(120), || {
        answered_everywhere(&nodes, &names)
    })
    .await;
    let owner = owners(&nodes[0]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let placed = container_placement(&nodes);
        if names.iter().all(|n| placed.get(n).is_some_and(|on| on.len() == 1 && on.contains(&owner[n]))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "each function's containers on its owner only: {placed:?}, owners {owner:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("docker: {:?}", container_placement(&nodes));
    let victim = nodes.iter().position(|n| n.id == owner["c0"]).unwrap();
    nodes[victim].kill9();
    let killed = Instant::now();
    let others: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    until("c0 answers through the other edges", TTL + Duration::from_secs(60), || async {
        let mut ok = true;
        for o in &others {
            ok &= nodes[*o].get("c0").await == Ok(200);
        }
        ok
    })
    .await;
    println!("docker failover of c0: {:.2} s after kill -9", killed.elapsed().as_secs_f64());
    let placed = container_placement(&nodes);
    assert!(placed["c0"].len() == 1 && !placed["c0"].contains(&nodes[victim].id), "{placed:?}");
    drop(nodes);
    let _ = d.remove_image(image, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
}
