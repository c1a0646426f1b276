//! Every endpoint of the API, on a real listener on 127.0.0.1, over a platform
//! of in-memory backends (its instances are real tiny HTTP servers).
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use pilotlight_api::client::{Client, ClientError};
use pilotlight_api::{ApiConfig, ApiServer, ApiToken, ErrorBody};
use pilotlight_core::Platform;
use pilotlight_core::controller::{SecretKey, SecretVault};
use pilotlight_core::memory::{MemoryQueue, MemoryRouter, MemoryRuntime, MemoryStore};
use pilotlight_core::model::Phase;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789";

struct Harness {
    api: ApiServer,
    platform: Platform,
    client: Client,
}

async fn harness() -> Harness {
    let store = Arc::new(MemoryStore::new());
    let platform = Platform::builder()
        .queue(Arc::new(MemoryQueue::new()))
        .store(store.clone())
        .runtime(Arc::new(MemoryRuntime::new()))
        .router(Arc::new(MemoryRouter::new()))
        .build()
        .unwrap();
    platform.start().await.unwrap();
    let mut config = ApiConfig::new(ApiToken::new(TOKEN).unwrap());
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.max_body_bytes = 4096;
    config.metrics = Some(Arc::new(|| "# TYPE pilotlight_test counter\npilotlight_test 1\n".to_owned()));
    config.runtime = "memory".into();
    config.secrets = Some(SecretVault::new(store, SecretKey::generate().unwrap()));
    let api = ApiServer::start(platform.clone(), config).await.unwrap();
    let client = Client::new(&format!("http://{}", api.addr()), TOKEN).unwrap();
    Harness { api, platform, client }
}

impl Harness {
    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let http = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = Request::builder().method(method).uri(format!("http://{}{path}", self.api.addr()));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = http.request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
    }

    async fn shutdown(self) {
        self.api.shutdown().await;
        self.platform.shutdown().await;
    }
}

fn error_of(body: &[u8]) -> pilotlight_api::ErrorDetail {
    serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {}", String::from_utf8_lossy(body)))
        .error
}

#[tokio::test]
async fn every_endpoint_but_healthz_needs_the_token() {
    let h = harness().await;
    let (status, _, body) = h.raw(Method::GET, "/healthz", None, b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"status":"ok"}));
    let protected = [
        (Method::GET, "/v1/functions"),
        (Method::POST, "/v1/functions"),
        (Method::GET, "/v1/functions/hello"),
        (Method::DELETE, "/v1/functions/hello"),
        (Method::GET, "/v1/functions/hello/logs"),
        (Method::GET, "/v1/events"),
        (Method::GET, "/v1/info"),
        (Method::GET, "/v1/secrets"),
        (Method::PUT, "/v1/secrets/db"),
        (Method::DELETE, "/v1/secrets/db"),
        (Method::GET, "/v1/openapi.json"),
        (Method::GET, "/metrics"),
    ];
    for (method, path) in protected {
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            let (status, headers, body) = h.raw(method.clone(), path, token, b"{}").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}");
            assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
            assert_eq!(error_of(&body).code, "unauthorized");
        }
    }
    let (status, _, body) = h.raw(Method::GET, "/v1/no-such-thing", Some(TOKEN), b"").await;
    assert_eq!((status, error_of(&body).code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    // The UI's files load without a token; they ask for it.
    for path in ["/", "/app.js", "/style.css", "/icon.svg"] {
        let (status, headers, _) = h.raw(Method::GET, path, None, b"").await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers.get("content-security-policy").unwrap().to_str().unwrap().contains("default-src 'none'"));
    }
    h.shutdown().await;
}

#[tokio::test]
async fn deploy_get_list_logs_delete() {
    let h = harness().await;
    let mut events = h.client.events().await.unwrap();
    let spec = json!({"name":"hello","image":"pilotlight/hello:latest","port":8080,"env":{"K":"V"},
        "scaling":{"min":0,"max":4,"prewarm":1,"target_concurrency":10,"idle_timeout_s":60},"timeout_s":30});
    let (status, _, body) = h.raw(Method::POST, "/v1/functions", Some(TOKEN), spec.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&body));
    let receipt: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(receipt["name"], "hello");
    assert_eq!(receipt["generation"], 1);
    assert_eq!(receipt["phase"], "pending");
    assert_eq!(receipt["url"], "http://hello.localhost/");

    // The events stream reports it ready.
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if e.name == "hello" && e.phase == Phase::Ready {
                return e;
            }
        }
        panic!("events ended")
    })
    .await
    .unwrap();
    assert_eq!(ready.ready_instances, 1);

    let f = h.client.get("hello").await.unwrap();
    assert_eq!(f.phase, Phase::Ready);
    assert_eq!(f.generation, 1);
    let running = |f: &pilotlight_api::views::FunctionView| {
        f.instances.iter().filter(|i| i.state == pilotlight_core::model::InstanceState::Running).count()
    };
    assert_eq!(running(&f), 1);
    assert_eq!(f.spec.env.get("K").map(String::as_str), Some("V"));
    assert_eq!(f.spec.region.as_deref(), Some("local"), "defaults are written out");
    assert_eq!(f.spec.limits.as_ref().and_then(|l| l.memory_mb), Some(128));
    assert!(f.error.is_none());
    let listed = h.client.list().await.unwrap();
    assert_eq!(listed.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["hello"]);

    // The same spec again changes nothing; a changed one is generation 2.
    assert_eq!(h.client.deploy(&spec).await.unwrap().generation, 1);
    let mut changed = spec.clone();
    changed["env"]["K"] = json!("W");
    assert_eq!(h.client.deploy(&changed).await.unwrap().generation, 2);
    let f = h.platform.wait_ready(&"hello".parse().unwrap(), Duration::from_secs(10)).await.unwrap();
    assert_eq!(f.generation, 2);

    // Logs: the instance's lines, as NDJSON; `tail` limits them.
    let lines: Vec<_> = h.client.logs("hello", false, 10).await.unwrap().collect().await;
    assert!(!lines.is_empty());
    let first = lines[0].as_ref().unwrap();
    assert!(first.line.contains("listening"), "{first:?}");
    let one: Vec<_> = h.client.logs("hello", false, 1).await.unwrap().collect().await;
    // `tail` is per instance (the pool's paused instance has logs too).
    let mut per_instance = std::collections::BTreeMap::new();
    for l in &one {
        *per_instance.entry(l.as_ref().unwrap().instance.clone()).or_insert(0) += 1;
    }
    assert!(!per_instance.is_empty() && per_instance.values().all(|n| *n == 1), "{per_instance:?}");
    let (status, headers, _) = h.raw(Method::GET, "/v1/functions/hello/logs?tail=5", Some(TOKEN), b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("content-type").unwrap(), "application/x-ndjson");
    // Follow: a line written later arrives on the open stream.
    let mut follow = h.client.logs("hello", true, 0).await.unwrap();
    let f = h.client.get("hello").await.unwrap();
    let endpoint = f
        .instances
        .iter()
        .find(|i| i.state == pilotlight_core::model::InstanceState::Running)
        .unwrap()
        .endpoint
        .clone();
    let mut conn = tokio::net::TcpStream::connect(&endpoint).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut conn, b"GET /followed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let line = tokio::time::timeout(Duration::from_secs(5), follow.next()).await.unwrap().unwrap().unwrap();
    assert!(line.line.contains("/followed"), "{line:?}");

    // Delete: 202, then gone, and the event stream says so.
    let r = h.client.delete("hello").await.unwrap();
    assert_eq!(r.phase, Phase::Deleting);
    h.platform.wait_deleted(&"hello".parse().unwrap(), Duration::from_secs(10)).await.unwrap();
    let deleted = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if e.name == "hello" && e.phase == Phase::Deleted {
                return e;
            }
        }
        panic!("events ended")
    })
    .await;
    assert!(deleted.is_ok(), "no `deleted` event");
    for (method, path) in [
        (Method::GET, "/v1/functions/hello"),
        (Method::DELETE, "/v1/functions/hello"),
        (Method::GET, "/v1/functions/hello/logs"),
    ] {
        let (status, _, body) = h.raw(method.clone(), path, Some(TOKEN), b"").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(error_of(&body).code, "not_found");
    }
    assert!(h.client.list().await.unwrap().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn bad_specs_are_refused_naming_the_field_and_nothing_is_stored() {
    let h = harness().await;
    let cases: &[(&str, u16, Option<&str>)] = &[
        (r#"{"name":"Hello_World","image":"x","port":8080}"#, 422, Some("name")),
        (r#"{"name":"a;b","image":"x","port":8080}"#, 422, Some("name")),
        (r#"{"name":"hello","image":"x","port":0}"#, 422, Some("port")),
        (r#"{"name":"hello","image":"x","port":70000}"#, 422, Some("port")),
        (r#"{"name":"hello","port":8080}"#, 422, Some("image")),
        (r#"{"image":"x","port":8080}"#, 422, Some("name")),
        (r#"{"name":"hello","image":"x"}"#, 422, Some("port")),
        (r#"{"name":"hello","image":"x","port":8080,"replicas":3}"#, 422, Some("replicas")),
        (r#"{"name":"hello","image":"x","port":8080,"limits":{"memory":3}}"#, 422, Some("limits.memory")),
        (r#"{"name":"hello","image":"x","port":8080,"limits":{"memory_mb":1}}"#, 422, Some("limits.memory_mb")),
        (r#"{"name":"hello","image":"x","port":8080,"region":"mars"}"#, 422, Some("region")),
        (r#"{"name":"hello","image":"x","port":8080,"env":{"BAD NAME":"v"}}"#, 422, Some("env")),
        (r#"{"name":"hello","image":"x","port":"http"}"#, 422, Some("port")),
        (r#"{"name":"hello","#, 400, None),
        (r#"not json"#, 422, None),
        ("", 400, None),
    ];
    for (body, status, field) in cases {
        let (s, _, b) = h.raw(Method::POST, "/v1/functions", Some(TOKEN), body.as_bytes()).await;
        let e = error_of(&b);
        assert_eq!(s.as_u16(), *status, "{body}: {e:?}");
        match field {
            Some(f) => assert!(e.field.as_deref().is_some_and(|x| x.starts_with(f)), "{body}: {e:?}"),
            None => assert!(e.field.is_none(), "{body}: {e:?}"),
        }
        assert!(!e.message.is_empty());
    }
    // A region this node does not serve: the error names the one it serves.
    let (_, _, b) = h
        .raw(Method::POST, "/v1/functions", Some(TOKEN), br#"{"name":"hello","image":"x","port":8080,"region":"mars"}"#)
        .await;
    assert!(error_of(&b).message.contains("`local`"), "{:?}", error_of(&b));
    // Oversized bodies: 413, whether the length is declared or not.
    let big = format!(r#"{{"name":"hello","image":"x","port":8080,"env":{{"K":"{}"}}}}"#, "v".repeat(5000));
    let (s, _, b) = h.raw(Method::POST, "/v1/functions", Some(TOKEN), big.as_bytes()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_of(&b).code, "body_too_large");
    let http = HyperClient::builder(TokioExecutor::new()).build_http();
    let chunks = futures::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![b' '; 1000])))),
    );
    let req = Request::post(format!("http://{}/v1/functions", h.api.addr()))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::StreamBody::new(chunks))
        .unwrap();
    let res = http.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Bad path and query values.
    let (s, _, b) = h.raw(Method::GET, "/v1/functions/Not_A_Name", Some(TOKEN), b"").await;
    assert_eq!((s, error_of(&b).field.as_deref()), (StatusCode::BAD_REQUEST, Some("name")));
    let (s, _, b) = h.raw(Method::GET, "/v1/functions/hello/logs?tail=lots", Some(TOKEN), b"").await;
    assert_eq!((s, error_of(&b).field.as_deref()), (StatusCode::BAD_REQUEST, Some("tail")), "{:?}", error_of(&b));
    let (s, _, b) = h.raw(Method::GET, "/v1/functions/hello/logs?colour=red", Some(TOKEN), b"").await;
    assert_eq!((s, error_of(&b).field.as_deref()), (StatusCode::BAD_REQUEST, Some("colour")), "{:?}", error_of(&b));
    let (s, _, _) = h.raw(Method::PUT, "/v1/functions", Some(TOKEN), b"").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    // Nothing was stored by any of it.
    assert!(h.client.list().await.unwrap().is_empty());
    match h.client.get("hello").await {
        Err(ClientError::Api { status, .. }) => assert_eq!(status, StatusCode::NOT_FOUND),
        other => panic!("{other:?}"),
    }
    h.shutdown().await;
}

#[tokio::test]
async fn info_metrics_and_the_openapi_document() {
    let h = harness().await;
    let info = h.client.info().await.unwrap();
    assert_eq!((info.domain.as_str(), info.region.as_str(), info.runtime.as_str()), ("localhost", "local", "memory"));
    let (s, headers, body) = h.raw(Method::GET, "/metrics", Some(TOKEN), b"").await;
    assert_eq!(s, StatusCode::OK);
    assert!(headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    assert!(String::from_utf8_lossy(&body).contains("pilotlight_test 1"));
    let (s, _, body) = h.raw(Method::GET, "/v1/openapi.json", Some(TOKEN), b"").await;
    assert_eq!(s, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/functions",
        "/v1/functions/{name}",
        "/v1/functions/{name}/logs",
        "/v1/events",
        "/v1/info",
        "/metrics",
        "/healthz",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the document");
    }
    assert!(paths["/v1/functions"]["post"]["responses"]["422"].is_object());
    let schema = &doc["components"]["schemas"]["FunctionSpecInput"]["properties"];
    for field in ["name", "image", "exec", "port", "region", "env", "limits", "scaling", "timeout_s"] {
        assert!(schema[field].is_object(), "FunctionSpecInput.{field} missing");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let h = harness().await;
    let mut events = h.client.events().await.unwrap();
    let done = tokio::spawn(async move { while events.next().await.is_some() {} });
    let started = std::time::Instant::now();
    h.api.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), done).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    h.platform.shutdown().await;
}

/// Invocations through the API: one kept for later, listed, a dead letter
/// queued again (once), and each bad input refused with its field.
#[tokio::test]
async fn invocations_are_kept_listed_and_dead_letters_queued_again() {
    let h = harness().await;
    h.client.deploy(&json!({"name": "hooks", "image": "pilotlight/hello:latest", "port": 8080})).await.unwrap();
    let (status, headers, body) =
        h.raw(Method::POST, "/v1/functions/hooks/invocations?path=/hook%3Fa=1", Some(TOKEN), b"{\"n\":1}").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&body));
    let receipt: Value = serde_json::from_slice(&body).unwrap();
    let id = receipt["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["x-call-id"], id.as_str());
    assert_eq!(headers["location"], format!("/v1/invocations/{id}").as_str());
    let kept = h.client.invocation(&id).await.unwrap();
    assert_eq!((kept.method.as_str(), kept.path.as_str(), kept.body_bytes), ("POST", "/hook?a=1", 7));

    let (status, _, body) = h.raw(Method::GET, "/v1/functions/hooks/invocations?state=queued", Some(TOKEN), b"").await;
    assert_eq!(status, StatusCode::OK);
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["invocations"].as_array().unwrap().len(), 1);

    // Make it a dead letter, as the invoker would after its last attempt.
    let parsed = pilotlight_core::model::InvocationId::parse(&id).unwrap();
    h.platform
        .invocations()
        .update(&parsed, |i| {
            i.state = pilotlight_core::model::InvocationState::Dead;
            i.reason = Some("5 attempts failed".into());
            i.next_attempt_ms = None;
            true
        })
        .await
        .unwrap();
    let (_, _, body) = h.raw(Method::GET, "/v1/functions/hooks/dead-letters", Some(TOKEN), b"").await;
    let dead: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(dead["invocations"][0]["reason"], "5 attempts failed");
    let (status, _, _) = h.raw(Method::POST, &format!("/v1/dead-letters/{id}/retry"), Some(TOKEN), b"").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(h.client.invocation(&id).await.unwrap().state, "queued");
    let (status, _, body) = h.raw(Method::POST, &format!("/v1/dead-letters/{id}/retry"), Some(TOKEN), b"").await;
    assert_eq!((status, error_of(&body).code.as_str()), (StatusCode::CONFLICT, "not_dead"));
    let (status, _, body) = h.raw(Method::POST, "/v1/functions/hooks/dead-letters/retry", Some(TOKEN), b"").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["requeued"], 0);

    for (method, path, field) in [
        (Method::GET, "/v1/invocations/hooks.zz".to_owned(), "id"),
        (Method::GET, "/v1/functions/hooks/invocations?state=lost".to_owned(), "state"),
        (Method::GET, "/v1/functions/hooks/invocations?limit=0".to_owned(), "limit"),
        (Method::POST, "/v1/functions/hooks/invocations?path=nohead".to_owned(), "path"),
        (Method::POST, "/v1/functions/hooks/invocations?callback_url=ftp://x/y".to_owned(), "callback_url"),
        (Method::POST, "/v1/topics/status/messages?key=a".to_owned(), "topic"),
        (Method::POST, "/v1/topics/orders.dlq/messages".to_owned(), "topic"),
        (Method::POST, "/v1/topics/Orders/messages".to_owned(), "topic"),
        (Method::POST, "/v1/topics/orders/messages?key=%0A".to_owned(), "key"),
    ] {
        let (status, _, body) = h.raw(method, &path, Some(TOKEN), b"").await;
        assert_eq!((status, error_of(&body).field.as_deref()), (StatusCode::BAD_REQUEST, Some(field)), "{path}");
    }
    let (status, _, body) = h.raw(Method::POST, "/v1/topics/orders/messages?key=k1", Some(TOKEN), b"{}").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&body));
    let receipt: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((receipt["topic"].as_str(), receipt["key"].as_str()), (Some("orders"), Some("k1")));
    assert_eq!(receipt["message_id"].as_str().unwrap().len(), 24);
    let (status, _, body) = h
        .raw(Method::POST, "/v1/functions/hooks/invocations?callback_url=http://127.0.0.1:9/cb", Some(TOKEN), b"")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&body));
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(h.client.invocation(&id).await.unwrap().callback_url.as_deref(), Some("http://127.0.0.1:9/cb"));
    let (status, _, _) = h.raw(Method::POST, "/v1/functions/nobody/invocations", Some(TOKEN), b"").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let missing = pilotlight_core::model::InvocationId::generate(&"hooks".parse().unwrap(), 1).unwrap();
    let (status, _, _) = h.raw(Method::GET, &format!("/v1/invocations/{missing}"), Some(TOKEN), b"").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.shutdown().await;
}

/// `/v1/secrets`: values go in and never come out; every bad input names its
/// field; a secret in use cannot be removed; a server without a key says so.
#[tokio::test]
async fn secrets_are_set_listed_and_removed_and_never_shown() {
    let h = harness().await;
    let value = b"correct horse battery staple";
    let (s, _, body) = h.raw(Method::PUT, "/v1/secrets/Bad..Name", Some(TOKEN), value).await;
    let e = error_of(&body);
    assert_eq!((s, e.field.as_deref()), (StatusCode::BAD_REQUEST, Some("name")), "{e:?}");
    let (s, _, body) = h.raw(Method::PUT, "/v1/secrets/db", Some(TOKEN), b"").await;
    assert_eq!((s, error_of(&body).field.as_deref()), (StatusCode::BAD_REQUEST, Some("value")));
    let (s, _, body) = h.raw(Method::PUT, "/v1/secrets/db", Some(TOKEN), &vec![b'x'; 64 * 1024 + 1]).await;
    assert_eq!((s, error_of(&body).code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
    assert!(h.client.secrets().await.unwrap().is_empty(), "nothing half-done");

    let (s, _, body) = h.raw(Method::PUT, "/v1/secrets/db", Some(TOKEN), value).await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(!text.contains("horse"), "{text}");
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((view["name"].as_str(), view["size"].as_u64()), (Some("db"), Some(value.len() as u64)));

    h.client
        .deploy(&json!({"name": "app", "image": "pilotlight/hello:latest", "port": 8080, "secrets": ["db"]}))
        .await
        .unwrap();
    let listed = h.client.secrets().await.unwrap();
    assert_eq!((listed.len(), listed[0].used_by.as_slice()), (1, &["app".to_owned()][..]));
    let (_, _, body) = h.raw(Method::GET, "/v1/functions/app", Some(TOKEN), b"").await;
    assert!(!String::from_utf8_lossy(&body).contains("horse"));
    let (s, _, body) = h.raw(Method::DELETE, "/v1/secrets/db", Some(TOKEN), b"").await;
    let e = error_of(&body);
    assert_eq!((s, e.code.as_str()), (StatusCode::CONFLICT, "in_use"));
    assert!(e.message.contains("`app`"), "{e:?}");
    h.client.delete("app").await.unwrap();
    h.platform.wait_deleted(&"app".parse().unwrap(), Duration::from_secs(10)).await.unwrap();
    h.client.remove_secret("db").await.unwrap();
    match h.client.remove_secret("db").await {
        Err(ClientError::Api { status, .. }) => assert_eq!(status, StatusCode::NOT_FOUND),
        other => panic!("{other:?}"),
    }
    // Registry logins: the host is checked, the body's password never echoed.
    let (s, _, body) = h.raw(Method::PUT, "/v1/registries/bad%20host", Some(TOKEN), b"{}").await;
    assert_eq!((s, error_of(&body).field.as_deref()), (StatusCode::BAD_REQUEST, Some("registry")));
    let sloppy = br#"{"username":"ci","password":"hunter2","extra":1}"#;
    let (s, _, body) = h.raw(Method::PUT, "/v1/registries/127.0.0.1:5000", Some(TOKEN), sloppy).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(!String::from_utf8_lossy(&body).contains("hunter2"));
    let kept = h.client.registry_login("127.0.0.1:5000", "ci", "hunter2").await.unwrap();
    assert_eq!((kept.registry.as_str(), kept.username.as_str()), ("127.0.0.1:5000", "ci"));
    let (_, _, body) = h.raw(Method::GET, "/v1/registries", Some(TOKEN), b"").await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(text.contains("127.0.0.1:5000") && !text.contains("hunter2"), "{text}");
    h.client.registry_logout("127.0.0.1:5000").await.unwrap();
    assert!(h.client.registries().await.unwrap().is_empty());
    h.shutdown().await;

    // A server started without a key answers 503, naming why.
    let platform =
        Platform::builder().queue(Arc::new(MemoryQueue::new())).store(Arc::new(MemoryStore::new())).build().unwrap();
    let mut config = ApiConfig::new(ApiToken::new(TOKEN).unwrap());
    config.addr = "127.0.0.1:0".parse().unwrap();
    let api = ApiServer::start(platform, config).await.unwrap();
    let client = Client::new(&format!("http://{}", api.addr()), TOKEN).unwrap();
    match client.secrets().await {
        Err(ClientError::Api { status, detail }) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(detail.message.contains("secret key"), "{detail:?}");
        }
        other => panic!("{other:?}"),
    }
    api.shutdown().await;
}

/// Builds that print three lines, then succeed, or fail for a tag with `bad`
/// in it; loads that take any tar but one whose first file is `zip`.
struct FakeImages;

#[async_trait::async_trait]
impl pilotlight_core::ports::Images for FakeImages {
    async fn build(
        &self,
        tag: &str,
        context: Vec<u8>,
        log: tokio::sync::mpsc::Sender<String>,
    ) -> Result<(), pilotlight_core::ports::RuntimeError> {
        for n in 1..=3 {
            log.send(format!("step {n} of {} bytes", context.len())).await.unwrap();
        }
        if tag.contains("bad") {
            return Err(pilotlight_core::ports::RuntimeError::NotReady {
                message: format!("building `{tag}` failed: step 3 went wrong"),
                logs: vec!["step 3".into()],
            });
        }
        Ok(())
    }

    async fn load(&self, archive: Vec<u8>) -> Result<Vec<String>, pilotlight_core::ports::RuntimeError> {
        if archive.starts_with(b"zip\0") {
            Err(pilotlight_core::ports::RuntimeError::InvalidInput {
                field: "archive".into(),
                message: "the engine could not load it: no manifest".into(),
            })
        } else {
            Ok(vec!["localhost/loaded:1".into()])
        }
    }
}

/// `/v1/images`: the build's output streams line by line and ends saying
/// how it went; bad tags, empty and oversized bodies are refused naming the
/// rule; a server without an engine says so.
#[tokio::test]
async fn images_are_built_and_loaded_with_their_output_and_clear_refusals() {
    let platform =
        Platform::builder().queue(Arc::new(MemoryQueue::new())).store(Arc::new(MemoryStore::new())).build().unwrap();
    let mut config = ApiConfig::new(ApiToken::new(TOKEN).unwrap());
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.images = Some(Arc::new(FakeImages));
    config.max_image_bytes = 4096;
    let api = ApiServer::start(platform.clone(), config).await.unwrap();
    let h = Harness { client: Client::new(&format!("http://{}", api.addr()), TOKEN).unwrap(), api, platform };

    let lines: Vec<_> = h.client.build_image("localhost/app:1", tiny_tar()).await.unwrap().collect().await;
    let lines: Vec<_> = lines.into_iter().map(Result::unwrap).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0].log.as_deref(), Some(format!("step 1 of {} bytes", tiny_tar().len()).as_str()));
    assert_eq!(lines[3].image.as_deref(), Some("localhost/app:1"));
    let failed: Vec<_> = h.client.build_image("localhost/bad:1", tiny_tar()).await.unwrap().collect().await;
    let last = failed.last().unwrap().as_ref().unwrap();
    assert!(last.error.as_deref().unwrap().contains("step 3 went wrong") && last.image.is_none(), "{last:?}");
    assert_eq!(last.last_lines, ["step 3"]);

    let (s, _, body) = h.raw(Method::POST, "/v1/images/build?tag=Not%20A%20Tag", Some(TOKEN), b"tar").await;
    assert_eq!((s, error_of(&body).field.as_deref()), (StatusCode::BAD_REQUEST, Some("tag")));
    let (s, _, body) = h.raw(Method::POST, "/v1/images/build", Some(TOKEN), b"tar").await;
    assert_eq!((s, error_of(&body).code.as_str()), (StatusCode::BAD_REQUEST, "invalid_query"));
    let (s, _, body) = h.raw(Method::POST, "/v1/images/build?tag=a:1", Some(TOKEN), b"").await;
    assert_eq!((s, error_of(&body).field.as_deref()), (StatusCode::BAD_REQUEST, Some("body")));
    let (s, _, body) = h.raw(Method::POST, "/v1/images/load", Some(TOKEN), &[b't'; 4097]).await;
    assert_eq!((s, error_of(&body).code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
    // Not a tar: refused before the engine sees it, naming what it is.
    let (s, _, body) = h.raw(Method::POST, "/v1/images/load", Some(TOKEN), b"zip").await;
    let e = error_of(&body);
    assert_eq!((s, e.field.as_deref()), (StatusCode::BAD_REQUEST, Some("archive")), "{e:?}");
    assert!(e.message.contains("not a tar"), "{e:?}");
    let (s, _, body) = h.raw(Method::POST, "/v1/images/build?tag=a:1", Some(TOKEN), b"{}").await;
    assert_eq!((s, error_of(&body).field.as_deref()), (StatusCode::BAD_REQUEST, Some("context")));
    // A tar the engine refuses: its reason, naming the archive.
    let (s, _, body) = h.raw(Method::POST, "/v1/images/load", Some(TOKEN), &tiny_tar_named("zip")).await;
    let e = error_of(&body);
    assert_eq!((s, e.field.as_deref()), (StatusCode::BAD_REQUEST, Some("archive")), "{e:?}");
    assert!(e.message.contains("no manifest"), "{e:?}");
    assert_eq!(h.client.load_images(tiny_tar()).await.unwrap().images, ["localhost/loaded:1"]);
    h.shutdown().await;

    let h = harness().await;
    match h.client.load_images(b"tar".to_vec()).await {
        Err(ClientError::Api { status, detail }) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(detail.message.contains("Docker"), "{detail:?}");
        }
        other => panic!("{other:?}"),
    }
    h.shutdown().await;
}

/// A tar with one small file.
fn tiny_tar() -> Vec<u8> {
    tiny_tar_named("Dockerfile")
}

fn tiny_tar_named(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = b"FROM scratch\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    b.append_data(&mut header, name, &data[..]).unwrap();
    b.into_inner().unwrap()
}
