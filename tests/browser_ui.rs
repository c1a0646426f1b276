//! The web UI in headless Chromium (Debian's chromium and chromium-driver),
//! driven over WebDriver: sign in, create hello from the form on the Docker
//! runtime, watch it become ready, open its URL, see its logs, dead letters
//! and the charts of the requests made to it, delete it. Screenshots of
//! each step are saved in `target/test-artifacts/ui/`.
//!
//! Under CI a missing browser, driver or Docker engine fails the test; on a
//! laptop it is skipped with the reason printed.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use pilotlight::core::testkit::fixtures::{DockerCleanup, hello_image_context};
use pilotlight::core::testkit::{free_port, unique};
use pilotlight::docker::{LABEL_PLATFORM, build_image_from_dir};
use pilotlight::server::Server;

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

fn missing(reason: &str) -> bool {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "the browser test needs {reason}");
    eprintln!("SKIPPED: the browser test needs {reason}");
    true
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    let dir = target.join("test-artifacts").join("ui");
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

/// One HTTP/1.1 GET through the edge; its status.
async fn get(edge: std::net::SocketAddr, host: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(edge).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).split(' ').nth(1).unwrap().parse().unwrap()
}

async fn shot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    let path = artifacts().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// Waits until `css` matches an element (or, with `gone`, matches none).
async fn wait_css(browser: &Client, css: &str, gone: bool, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let found = !browser.find_all(Locator::Css(css)).await.expect("find").is_empty();
        if found != gone {
            return;
        }
        if Instant::now() > deadline {
            shot(browser, "timeout").await;
            let page = browser.source().await.unwrap_or_default();
            panic!("after {timeout:?}, `{css}` {}:\n{page}", if gone { "is still there" } else { "never appeared" });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Clicks the element `css` matches. The list re-renders live, so an element
/// found a moment ago can be replaced before the click lands: find it again.
async fn click(browser: &Client, css: &str) {
    for _ in 0..20 {
        let Ok(e) = browser.find(Locator::Css(css)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match e.click().await {
            Ok(()) => return,
            Err(e) if e.is_stale_element_reference() => {}
            Err(e) => panic!("clicking `{css}`: {e}"),
        }
    }
    panic!("`{css}` kept going stale");
}

#[tokio::test]
async fn sign_in_create_hello_open_it_and_delete_it_in_chromium() {
    if !std::path::Path::new(CHROMIUM).exists() && missing("chromium (apt install chromium)") {
        return;
    }
    if !std::path::Path::new(DRIVER).exists() && missing("chromedriver (apt install chromium-driver)") {
        return;
    }
    let docker = match bollard::Docker::connect_with_defaults() {
        Ok(d) if d.ping().await.is_ok() => d,
        _ => {
            if missing("a running Docker engine") {
                return;
            }
            unreachable!()
        }
    };
    let context = hello_image_context();
    build_image_from_dir(&docker, "pilotlight/hello:ui", context.path()).await.expect("build the hello image");

    let data = tempfile::tempdir().unwrap();
    let platform_id = unique("ui");
    // Whatever happens below, the containers of this test go with it.
    let _cleanup = DockerCleanup { label: format!("{LABEL_PLATFORM}={platform_id}") };
    let server = Server::start(common::docker_server_config(data.path(), platform_id)).await.expect("server");
    let ui = format!("http://{}/", server.api_addr());

    let port = free_port();
    let driver = Driver(
        Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]
        }
    });
    let serde_json::Value::Object(caps) = caps else { unreachable!() };
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");

    // Sign in: a wrong token is refused on the page, the right one opens the app.
    browser.goto(&ui).await.unwrap();
    shot(&browser, "1-sign-in").await;
    browser.find(Locator::Id("token")).await.unwrap().send_keys("wrong-token-0123456789").await.unwrap();
    browser.find(Locator::Id("signin")).await.unwrap().click().await.unwrap();
    wait_css(&browser, "#signin-error:not([hidden])", false, Duration::from_secs(10)).await;
    let token_input = browser.find(Locator::Id("token")).await.unwrap();
    token_input.clear().await.unwrap();
    token_input.send_keys(server.token().reveal()).await.unwrap();
    browser.find(Locator::Id("signin")).await.unwrap().click().await.unwrap();
    wait_css(&browser, "#app-view:not([hidden])", false, Duration::from_secs(10)).await;
    wait_css(&browser, "#live.on", false, Duration::from_secs(10)).await;

    // A bad port is refused with the field named and marked.
    let form = browser.find(Locator::Id("create-form")).await.unwrap();
    form.find(Locator::Css("input[name='name']")).await.unwrap().send_keys("hello").await.unwrap();
    form.find(Locator::Css("input[name='image']")).await.unwrap().send_keys("pilotlight/hello:ui").await.unwrap();
    let port_input = form.find(Locator::Css("input[name='port']")).await.unwrap();
    port_input.clear().await.unwrap();
    port_input.send_keys("70000").await.unwrap();
    browser.find(Locator::Id("create")).await.unwrap().click().await.unwrap();
    wait_css(&browser, "input[name='port'].invalid", false, Duration::from_secs(10)).await;
    let error = browser.find(Locator::Id("create-error")).await.unwrap().text().await.unwrap();
    assert!(error.starts_with("port:"), "{error}");
    shot(&browser, "2-field-error").await;

    // Create hello from the form and watch it become ready.
    port_input.clear().await.unwrap();
    port_input.send_keys("8080").await.unwrap();
    browser.find(Locator::Id("create")).await.unwrap().click().await.unwrap();
    wait_css(&browser, "tr[data-name='hello']", false, Duration::from_secs(10)).await;
    wait_css(&browser, "tr[data-name='hello'][data-phase='ready']", false, Duration::from_secs(60)).await;
    wait_css(&browser, "tr[data-name='hello'] .inst.running", false, Duration::from_secs(10)).await;
    shot(&browser, "3-ready").await;

    // Its URL is a link; the page behind it greets.
    let href = server.platform().get(&"hello".parse().unwrap()).await.unwrap().unwrap().status.url.unwrap();
    let shown =
        browser.execute("return document.querySelector(\"tr[data-name='hello'] a.url\").href", vec![]).await.unwrap();
    assert_eq!(shown.as_str(), Some(href.as_str()), "the row links to the function's URL");
    assert_eq!(href, format!("http://hello.localhost:{}/", server.http_addr().port()));
    browser.goto(&href).await.unwrap();
    let body = browser.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
    assert!(body.contains("Hello from hello!"), "{body}");
    shot(&browser, "4-function").await;

    // Back to the UI (the token is kept for the tab): logs, then delete with two clicks.
    browser.goto(&ui).await.unwrap();
    wait_css(&browser, "tr[data-name='hello'][data-phase='ready']", false, Duration::from_secs(10)).await;
    click(&browser, "tr[data-name='hello'] button.logs").await;
    wait_css(&browser, "#logs div", false, Duration::from_secs(10)).await;
    let logs = browser.find(Locator::Id("logs")).await.unwrap().text().await.unwrap();
    assert!(logs.contains("GET / 200") || logs.contains("listening"), "{logs}");
    shot(&browser, "5-logs").await;
    // A dead letter (made as the invoker would after its last attempt) is listed and retried.
    let invocations = server.platform().invocations();
    let id =
        pilotlight::core::model::InvocationId::generate(&"hello".parse().unwrap(), pilotlight::core::support::now_ms())
            .unwrap();
    let request = pilotlight::core::model::InvocationRequest::new("POST", "/hook", vec![], b"{}".to_vec()).unwrap();
    let mut dead = pilotlight::core::model::Invocation::queued(id.clone(), request, None);
    dead.state = pilotlight::core::model::InvocationState::Dead;
    dead.next_attempt_ms = None;
    dead.reason = Some("5 attempts failed; the last: status 503".into());
    invocations.create(dead).await.unwrap();
    click(&browser, "tr[data-name='hello'] button.dead-letters").await;
    let row = format!("#dead tr[data-id='{id}']");
    wait_css(&browser, &row, false, Duration::from_secs(10)).await;
    let shown = browser.find(Locator::Id("dead")).await.unwrap().text().await.unwrap();
    assert!(shown.contains("5 attempts failed; the last: status 503"), "{shown}");
    shot(&browser, "5b-dead-letters").await;
    click(&browser, &format!("{row} button.retry")).await;
    wait_css(&browser, &row, true, Duration::from_secs(10)).await;
    wait_css(&browser, "#dead-empty:not([hidden])", false, Duration::from_secs(10)).await;
    let state = invocations.get(&id).await.unwrap().unwrap().state;
    assert_ne!(state, pilotlight::core::model::InvocationState::Dead, "queued again from the UI");

    // Charts: traffic made here shows in the last hour's charts.
    let edge = server.http_addr();
    let (ok, failed) = (40, 10);
    for i in 0..ok + failed {
        let path = if i < ok { "/" } else { "/status?code=500" };
        let status = get(edge, "hello.localhost", path).await;
        assert_eq!(status, if i < ok { 200 } else { 500 }, "{path}");
    }
    // The instance count is sampled every 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    click(&browser, "tr[data-name='hello'] button.charts").await;
    wait_css(&browser, "#chart-requests g.requests path", false, Duration::from_secs(10)).await;
    wait_css(&browser, "#chart-instances g.running path", false, Duration::from_secs(10)).await;
    let read = |js: &'static str| {
        let browser = browser.clone();
        async move { browser.execute(js, vec![]).await.unwrap() }
    };
    let shown = read("return document.querySelector('#charts-state').textContent").await;
    let total: u64 = shown.as_str().unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(total >= ok + failed, "the charts count {total} requests, {} were made: {shown}", ok + failed);
    let peak = |series: &'static str| {
        let js = match series {
            "requests" => "return document.querySelector('#chart-requests g.requests').dataset.peak",
            "p50" => "return document.querySelector('#chart-latency g.p50').dataset.last",
            "p99" => "return document.querySelector('#chart-latency g.p99').dataset.last",
            "errors" => "return document.querySelector('#chart-errors g.errors').dataset.peak",
            _ => "return document.querySelector('#chart-instances g.running').dataset.last",
        };
        async move { read(js).await.as_str().unwrap().parse::<f64>().unwrap() }
    };
    assert!(peak("requests").await > 0.0, "requests/s drawn");
    let (p50, p99) = (peak("p50").await, peak("p99").await);
    assert!(p50 > 0.0 && p99 >= p50, "latency drawn: p50 {p50} ms, p99 {p99} ms");
    let errors = peak("errors").await;
    assert!(errors > 0.0 && errors <= 100.0, "the 500s show as an error rate: {errors}%");
    assert!(peak("running").await >= 1.0, "the running instance is drawn");
    let api = pilotlight::api::client::Client::new(&format!("http://{}", server.api_addr()), server.token().reveal())
        .unwrap()
        .history("hello")
        .await
        .unwrap();
    let failed_seen: f64 = api.points.iter().filter_map(|p| p.error_rate.map(|r| r * p.requests as f64)).sum();
    assert!(failed_seen.round() as u64 >= failed, "the API counts the 500s: {failed_seen}");
    shot(&browser, "5c-charts").await;
    click(&browser, "#charts-close").await;

    click(&browser, "tr[data-name='hello'] button.delete").await;
    wait_css(&browser, "tr[data-name='hello'] button.delete.armed", false, Duration::from_secs(5)).await;
    click(&browser, "tr[data-name='hello'] button.delete.armed").await;
    wait_css(&browser, "tr[data-name='hello']", true, Duration::from_secs(60)).await;
    wait_css(&browser, "#empty:not([hidden])", false, Duration::from_secs(10)).await;
    shot(&browser, "6-deleted").await;

    browser.close().await.unwrap();
    drop(driver);
    assert!(server.platform().list().await.unwrap().is_empty());
    server.shutdown().await;
}
