//! End to end through the facade: memory queue, redb store, process runtime,
//! recording router, with the real hello binary.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pilotlight::core::memory::{MemoryQueue, MemoryRouter};
use pilotlight::core::model::Phase;
use pilotlight::core::testkit::{fixtures::hello_binary, http, unique};
use pilotlight::process::{ProcessRuntime, ProcessRuntimeConfig};
use pilotlight::redb::RedbStore;
use pilotlight::{FunctionName, FunctionSpecInput, Platform, Runtime};

const WAIT: Duration = Duration::from_secs(30);

/// `kill_on_drop` is off only where a test drops a runtime to play a restart.
fn runtime(platform_id: &str, kill_on_drop: bool) -> Arc<ProcessRuntime> {
    Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: platform_id.into(),
        stop_grace: Duration::from_secs(2),
        kill_on_drop,
        ..Default::default()
    }))
}

fn platform(store: &Path, runtime: Arc<ProcessRuntime>, router: Arc<MemoryRouter>) -> Platform {
    Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(Arc::new(RedbStore::open(store).unwrap()))
        .runtime(runtime)
        .router(router)
        .build()
        .unwrap()
}

/// hello without a pool of paused instances: these tests count one process per function.
fn hello(name: &str) -> pilotlight::FunctionSpec {
    let mut input = FunctionSpecInput::exec(name, hello_binary().to_str().unwrap(), &[], 8080);
    input.scaling = Some(pilotlight::core::model::ScalingInput { prewarm: Some(0), ..Default::default() });
    input.validate().unwrap()
}

#[tokio::test]
async fn twenty_functions_deploy_answer_and_leave_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("e2e");
    let rt = runtime(&id, true);
    let router = Arc::new(MemoryRouter::new());
    let p = platform(&dir.path().join("store.redb"), rt.clone(), router.clone());
    p.start().await.unwrap();

    let names: Vec<FunctionName> = (0..20).map(|i| format!("fn-{i:02}").parse().unwrap()).collect();
    let receipts = futures::future::join_all(names.iter().map(|n| p.deploy(hello(n.as_str())))).await;
    for r in &receipts {
        let r = r.as_ref().unwrap();
        assert_eq!((r.generation, r.phase), (1, Phase::Pending));
    }
    let ready = futures::future::join_all(names.iter().map(|n| p.wait_ready(n, WAIT))).await;
    let mut pids = BTreeSet::new();
    for (n, rec) in names.iter().zip(ready) {
        let rec = rec.unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(rec.status.url.as_deref(), Some(format!("http://{n}.localhost/").as_str()));
        let ep = rec.status.endpoints[0].addr();
        let resp = http::get(ep, &format!("{n}.localhost"), "/", Duration::from_secs(5)).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, format!("Hello from {n}!\n"));
    }
    for i in rt.list().await.unwrap() {
        pids.insert(i.id.as_str().trim_start_matches("pid-").parse::<i32>().unwrap());
    }
    assert_eq!(pids.len(), 20, "one process per function");
    assert_eq!(router.table().len(), 20);
    assert_eq!(common::labelled(&id).len(), 20);

    futures::future::join_all(names.iter().map(|n| p.delete(n))).await.into_iter().for_each(|r| {
        r.unwrap();
    });
    for n in &names {
        p.wait_deleted(n, WAIT).await.unwrap();
    }
    assert!(p.list().await.unwrap().is_empty());
    assert!(router.table().is_empty(), "routes left: {:?}", router.table());
    assert!(rt.list().await.unwrap().is_empty());
    assert!(common::labelled(&id).is_empty(), "processes left behind: {:?}", common::labelled(&id));
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} was not reaped");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn a_restarted_platform_adopts_its_instances_without_duplicates_or_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    let id = unique("restart");
    let names: Vec<FunctionName> = ["alpha", "beta", "gamma"].iter().map(|n| n.parse().unwrap()).collect();

    let before = {
        let rt = runtime(&id, false);
        let p = platform(&store, rt.clone(), Arc::new(MemoryRouter::new()));
        p.start().await.unwrap();
        for n in &names {
            p.deploy(hello(n.as_str())).await.unwrap();
        }
        for n in &names {
            p.wait_ready(n, WAIT).await.unwrap();
        }
        p.shutdown().await;
        let ids: BTreeSet<_> = rt.list().await.unwrap().into_iter().map(|i| i.id).collect();
        // An instance no stored function wants, as a crash between steps would leave.
        rt.start(&hello("ghost"), 1).await.unwrap();
        ids
    };
    assert_eq!(before.len(), 3);

    // A new platform process: new runtime object, same label, same store file.
    let rt = runtime(&id, true);
    let router = Arc::new(MemoryRouter::new());
    let p = platform(&store, rt.clone(), router.clone());
    p.start().await.unwrap();
    let rt2 = rt.clone();
    let router2 = router.clone();
    pilotlight::core::testkit::eventually(WAIT, "resync converged", || {
        let (rt, router) = (rt2.clone(), router2.clone());
        async move {
            let list = rt.list().await.unwrap();
            list.len() == 3 && !list.iter().any(|i| i.function.as_str() == "ghost") && router.table().len() == 3
        }
    })
    .await;
    let after: BTreeSet<_> = rt.list().await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(after, before, "resync must adopt the running instances, not start new ones");
    for n in &names {
        let rec = p.wait_ready(n, WAIT).await.unwrap();
        let resp = http::get(rec.status.endpoints[0].addr(), "x", "/", Duration::from_secs(5)).await.unwrap();
        assert!(resp.body.contains(n.as_str()));
    }
    for n in &names {
        p.delete(n).await.unwrap();
        p.wait_deleted(n, WAIT).await.unwrap();
    }
    p.shutdown().await;
    assert!(common::labelled(&id).is_empty(), "processes left behind");
}
