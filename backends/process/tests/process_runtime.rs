//! The process runtime against real child processes.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::time::Duration;

use futures::StreamExt;
use pilotlight_core::model::{FunctionSpec, FunctionSpecInput};
use pilotlight_core::ports::{ExitReason, LogOptions, Runtime, RuntimeError, RuntimeEvent};
use pilotlight_core::testkit::{self, fixtures::hello_binary, runtime::RuntimeFixture, unique, within};
use pilotlight_process::{ProcessRuntime, ProcessRuntimeConfig};

fn runtime() -> ProcessRuntime {
    ProcessRuntime::new(ProcessRuntimeConfig {
        platform_id: unique("test"),
        ready_timeout: Duration::from_secs(10),
        stop_grace: Duration::from_millis(500),
        kill_on_drop: true,
        ..Default::default()
    })
}

fn hello(name: &str) -> FunctionSpec {
    let bin = hello_binary();
    FunctionSpecInput::exec(name, bin.to_str().unwrap(), &[], 8080).validate().unwrap()
}

fn sh(name: &str, script: &str) -> FunctionSpec {
    let bin = hello_binary();
    FunctionSpecInput::exec(name, "/bin/sh", &["-c", script, bin.to_str().unwrap()], 8080).validate().unwrap()
}

#[tokio::test]
async fn process_runtime_conforms() {
    let fixture = RuntimeFixture {
        hello: Box::new(hello),
        wrong_kind: Some(FunctionSpecInput::image("img", "pilotlight/hello", 8080).validate().unwrap()),
        broken: Some(sh("broken", "echo dying now >&2; exit 3")),
        start_timeout: Duration::from_secs(10),
        loopback_endpoints: true,
    };
    let rt = runtime();
    testkit::runtime::run_all(&rt, &fixture).await;
    assert!(rt.list().await.unwrap().is_empty(), "suite left instances behind");
}

#[tokio::test]
async fn a_failed_start_reports_the_processes_last_words() {
    let rt = runtime();
    let err = rt.start(&sh("early-exit", "echo config file missing >&2; exit 3"), 1).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("exited (Code(3))"), "{text}");
    assert!(text.contains("config file missing"), "{text}");
}

#[tokio::test]
async fn env_and_port_reach_the_process() {
    let rt = runtime();
    let mut input = FunctionSpecInput::exec("envy", "/bin/sh", &[], 8080);
    let bin = hello_binary();
    input.exec.as_mut().unwrap().args = vec![
        "-c".into(),
        "echo GREETING=$GREETING PORT=$PORT HOST=$HOST; exec \"$0\"".into(),
        bin.to_string_lossy().into(),
    ];
    input.env.insert("GREETING".into(), "salut; {}".into());
    let spec = input.validate().unwrap();
    let inst = rt.start(&spec, 1).await.unwrap();
    let expected = format!("GREETING=salut; {{}} PORT={} HOST=127.0.0.1", inst.endpoint.addr().port());
    // Output is read asynchronously from the pipe: wait for the line rather than race it.
    let (rt2, id) = (rt.clone(), inst.id.clone());
    testkit::eventually(Duration::from_secs(5), &format!("log line {expected:?}"), || {
        let (rt, id, expected) = (rt2.clone(), id.clone(), expected.clone());
        async move {
            let lines: Vec<String> = rt
                .logs(&id, LogOptions { tail: None, follow: false })
                .await
                .unwrap()
                .map(|l| l.unwrap().line)
                .collect()
                .await;
            lines.contains(&expected)
        }
    })
    .await;
    rt.stop(&inst.id).await.unwrap();
}

#[tokio::test]
async fn an_exit_nobody_asked_for_is_reported() {
    let rt = runtime();
    let mut events = rt.events();
    let inst = rt.start(&hello("victim"), 4).await.unwrap();
    let pid: i32 = inst.id.as_str().trim_start_matches("pid-").parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let ev = within(Duration::from_secs(5), "exit event", events.next()).await.unwrap();
    let RuntimeEvent::Exited { id, function, generation, reason } = ev else { panic!("{ev:?}") };
    assert_eq!((id, function.as_str(), generation, reason), (inst.id.clone(), "victim", 4, ExitReason::Signal(9)));
    assert!(rt.list().await.unwrap().is_empty());
    // A stop the platform asked for is not reported.
    let inst = rt.start(&hello("calm"), 1).await.unwrap();
    rt.stop(&inst.id).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), events.next()).await.is_err(),
        "a requested stop was reported"
    );
}

#[tokio::test]
async fn stop_kills_what_ignores_sigterm() {
    let rt = runtime();
    let inst = rt.start(&sh("stubborn", "trap '' TERM; exec \"$0\""), 1).await.unwrap();
    let started = std::time::Instant::now();
    rt.stop(&inst.id).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400), "SIGKILL came before the grace period");
    let pid: i32 = inst.id.as_str().trim_start_matches("pid-").parse().unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} survived stop");
}

#[tokio::test]
async fn a_restarted_platform_finds_its_processes_by_label() {
    let platform_id = unique("adopt");
    let config = ProcessRuntimeConfig {
        platform_id: platform_id.clone(),
        stop_grace: Duration::from_millis(500),
        ..Default::default()
    };
    let first = ProcessRuntime::new(config.clone());
    let inst = first.start(&hello("survivor"), 9).await.unwrap();
    drop(first);
    let second = ProcessRuntime::new(config);
    let other = runtime();
    let found = second.list().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((&found[0].id, found[0].function.as_str(), found[0].generation), (&inst.id, "survivor", 9));
    assert_eq!(found[0].endpoint, inst.endpoint);
    assert!(other.list().await.unwrap().is_empty(), "another platform id must not see it");
    second.pause(&inst.id).await.unwrap();
    assert_eq!(second.list().await.unwrap()[0].state, pilotlight_core::model::InstanceState::Paused);
    second.stop(&inst.id).await.unwrap();
    assert!(second.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_program_is_a_clear_prepare_error() {
    let rt = runtime();
    let spec = FunctionSpecInput::exec("nope", "/no/such/program", &[], 8080).validate().unwrap();
    match rt.prepare(&spec).await {
        Err(e @ RuntimeError::Unpreparable { .. }) => assert!(e.to_string().contains("/no/such/program"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kill_on_drop_leaves_no_process_behind() {
    let rt = runtime();
    let inst = rt.start(&hello("dropped"), 1).await.unwrap();
    let pid: i32 = inst.id.as_str().trim_start_matches("pid-").parse().unwrap();
    drop(rt);
    testkit::eventually(Duration::from_secs(5), "the child is gone with its runtime", || async move {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    })
    .await;
}
