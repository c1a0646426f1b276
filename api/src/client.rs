//! A typed client of the API, for the CLI, for tests, and for programs that drive a node.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::error::{ErrorBody, ErrorDetail};
use crate::views::{FunctionList, FunctionView, InfoView, LogLineView, Receipt, StatusEvent};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{status}: {}{}", detail.message, detail.field.as_deref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The server's explanation.
        detail: ErrorDetail,
    },
    /// No answer: the server is down or unreachable.
    #[error("cannot reach the pilotlight API at {url}: {message}")]
    Transport {
        /// The server's URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The answer was not what the API sends.
    #[error("unexpected answer from the API: {0}")]
    Decode(String),
    /// The URL or token given is unusable.
    #[error("{0}")]
    Config(String),
}

/// A client of one server.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8090`), sending `token`.
    pub fn new(base: &str, token: &str) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(ClientError::Config(format!(
                "the API URL must start with http:// (got {base:?}); put a TLS proxy in front for remote use"
            )));
        }
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::Config("the API token is empty or not printable ASCII".into()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Ok(Self { base, token: token.to_owned(), http: HyperClient::builder(TokioExecutor::new()).build(connector) })
    }

    /// The server's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let content_type = body.as_ref().map(|_| "application/json");
        self.send_typed(method, path, body, content_type).await
    }

    async fn send_typed(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request =
            Request::builder().method(method).uri(&url).header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Config(format!("bad request URL {url}: {e}")))?;
        let response = self.http.request(request).await.map_err(|e| ClientError::Transport {
            url: self.base.clone(),
            message: pilotlight_core::support::error_chain(&e),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let detail = serde_json::from_slice::<ErrorBody>(&bytes).map(|b| b.error).unwrap_or_else(|_| ErrorDetail {
            code: "http".into(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
            field: None,
        });
        Err(ClientError::Api { status, detail })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let content_type = body.as_ref().map(|_| "application/json");
        self.json_typed(method, path, body, content_type).await
    }

    async fn json_typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Result<T, ClientError> {
        let response = self.send_typed(method, path, body, content_type).await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport { url: self.base.clone(), message: e.to_string() })?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<InfoView, ClientError> {
        self.json(Method::GET, "/v1/info", None).await
    }

    /// `GET /v1/nodes`: the live nodes and what each runs.
    pub async fn nodes(&self) -> Result<crate::views::NodeList, ClientError> {
        self.json(Method::GET, "/v1/nodes", None).await
    }

    /// `POST /v1/functions` with a spec as JSON (a `FunctionSpecInput`, or any JSON value).
    pub async fn deploy<S: serde::Serialize>(&self, spec: &S) -> Result<Receipt, ClientError> {
        let body = serde_json::to_vec(spec).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.json(Method::POST, "/v1/functions", Some(body)).await
    }

    /// `GET /v1/functions`.
    pub async fn list(&self) -> Result<Vec<FunctionView>, ClientError> {
        Ok(self.json::<FunctionList>(Method::GET, "/v1/functions", None).await?.functions)
    }

    /// `GET /v1/functions/{name}`.
    pub async fn get(&self, name: &str) -> Result<FunctionView, ClientError> {
        self.json(Method::GET, &format!("/v1/functions/{}", path_segment(name)), None).await
    }

    /// `GET /v1/functions/{name}/history`: the last hour of its traffic.
    pub async fn history(&self, name: &str) -> Result<crate::views::HistoryView, ClientError> {
        self.json(Method::GET, &format!("/v1/functions/{}/history", path_segment(name)), None).await
    }

    /// `GET /v1/invocations/{id}`: an asynchronous invocation.
    pub async fn invocation(&self, id: &str) -> Result<crate::views::InvocationView, ClientError> {
        self.json(Method::GET, &format!("/v1/invocations/{}", path_segment(id)), None).await
    }

    /// `POST /v1/functions/{name}/invocations`: invokes `name` asynchronously
    /// with a POST of `body` to `path`; its outcome is POSTed to `callback` when given.
    pub async fn invoke(
        &self,
        name: &str,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        callback: Option<&str>,
    ) -> Result<crate::views::InvocationReceipt, ClientError> {
        let mut target = format!("/v1/functions/{}/invocations?path={}", path_segment(name), query_value(path));
        if let Some(cb) = callback {
            target.push_str(&format!("&callback_url={}", query_value(cb)));
        }
        self.json_typed(Method::POST, &target, Some(body), Some(content_type)).await
    }

    /// `GET /v1/functions/{name}/invocations`: a page of `name`'s invocations,
    /// oldest first, in `state` only when given, after the id `after`.
    pub async fn invocations(
        &self,
        name: &str,
        state: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::views::InvocationList, ClientError> {
        let mut target = format!("/v1/functions/{}/invocations?limit={limit}", path_segment(name));
        if let Some(s) = state {
            target.push_str(&format!("&state={}", query_value(s)));
        }
        if let Some(a) = after {
            target.push_str(&format!("&after={}", query_value(a)));
        }
        self.json(Method::GET, &target, None).await
    }

    /// `GET /v1/functions/{name}/dead-letters`: a page of `name`'s dead letters.
    pub async fn dead_letters(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::views::InvocationList, ClientError> {
        let mut target = format!("/v1/functions/{}/dead-letters?limit={limit}", path_segment(name));
        if let Some(a) = after {
            target.push_str(&format!("&after={}", query_value(a)));
        }
        self.json(Method::GET, &target, None).await
    }

    /// `POST /v1/dead-letters/{id}/retry`: queues a dead letter again.
    pub async fn retry_dead_letter(&self, id: &str) -> Result<crate::views::InvocationReceipt, ClientError> {
        self.json(Method::POST, &format!("/v1/dead-letters/{}/retry", path_segment(id)), None).await
    }

    /// `POST /v1/functions/{name}/dead-letters/retry`: queues every dead letter of `name` again.
    pub async fn retry_dead_letters(&self, name: &str) -> Result<crate::views::RedriveCount, ClientError> {
        self.json(Method::POST, &format!("/v1/functions/{}/dead-letters/retry", path_segment(name)), None).await
    }

    /// `POST /v1/topics/{topic}/messages`: publishes `body` with `key`.
    pub async fn publish(
        &self,
        topic: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<crate::views::PublishReceipt, ClientError> {
        let target = format!("/v1/topics/{}/messages?key={}", path_segment(topic), query_value(key));
        self.json_typed(Method::POST, &target, Some(body), Some(content_type)).await
    }

    /// `PUT /v1/secrets/{name}`: sets a secret to `value`; the answer has its size, never the value.
    pub async fn set_secret(&self, name: &str, value: Vec<u8>) -> Result<crate::views::SecretView, ClientError> {
        let target = format!("/v1/secrets/{}", path_segment(name));
        self.json_typed(Method::PUT, &target, Some(value), Some("application/octet-stream")).await
    }

    /// `GET /v1/secrets`.
    pub async fn secrets(&self) -> Result<Vec<crate::views::SecretView>, ClientError> {
        self.json::<crate::views::SecretList>(Method::GET, "/v1/secrets", None).await.map(|l| l.secrets)
    }

    /// `DELETE /v1/secrets/{name}` (refused while a function lists it).
    pub async fn remove_secret(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &format!("/v1/secrets/{}", path_segment(name)), None).await.map(|_| ())
    }

    /// `PUT /v1/registries/{registry}`: keeps a login for pulls from that registry.
    pub async fn registry_login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<crate::views::RegistryView, ClientError> {
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({"username": username, "password": password}))
                .map_err(|e| ClientError::Decode(e.to_string()))?,
        );
        self.json(Method::PUT, &format!("/v1/registries/{}", path_segment(registry)), Some(body.to_vec())).await
    }

    /// `GET /v1/registries`.
    pub async fn registries(&self) -> Result<Vec<crate::views::RegistryView>, ClientError> {
        self.json::<crate::views::RegistryList>(Method::GET, "/v1/registries", None).await.map(|l| l.registries)
    }

    /// `DELETE /v1/registries/{registry}`.
    pub async fn registry_logout(&self, registry: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &format!("/v1/registries/{}", path_segment(registry)), None).await.map(|_| ())
    }

    /// `POST /v1/images/build?tag=`: builds `context` (a tar) as `tag`; the
    /// build's output line by line, the last line saying how it ended.
    pub async fn build_image(
        &self,
        tag: &str,
        context: Vec<u8>,
    ) -> Result<BoxStream<'static, Result<crate::views::BuildLine, ClientError>>, ClientError> {
        let path = format!("/v1/images/build?tag={}", query_value(tag));
        let response = self.send_typed(Method::POST, &path, Some(context), Some("application/x-tar")).await?;
        Ok(lines(response.into_body())
            .filter(|l| futures::future::ready(!matches!(l, Ok(t) if t.is_empty())))
            .map(|l| l.and_then(|t| serde_json::from_str(&t).map_err(|e| ClientError::Decode(e.to_string()))))
            .boxed())
    }

    /// `POST /v1/images/load`: loads a `docker save` archive.
    pub async fn load_images(&self, archive: Vec<u8>) -> Result<crate::views::LoadedImages, ClientError> {
        self.json_typed(Method::POST, "/v1/images/load", Some(archive), Some("application/x-tar")).await
    }

    /// `DELETE /v1/functions/{name}`.
    pub async fn delete(&self, name: &str) -> Result<Receipt, ClientError> {
        self.json(Method::DELETE, &format!("/v1/functions/{}", path_segment(name)), None).await
    }

    /// `GET /v1/functions/{name}/logs`, line by line.
    pub async fn logs(
        &self,
        name: &str,
        follow: bool,
        tail: usize,
    ) -> Result<BoxStream<'static, Result<LogLineView, ClientError>>, ClientError> {
        let path = format!("/v1/functions/{}/logs?follow={follow}&tail={tail}", path_segment(name));
        let response = self.send(Method::GET, &path, None).await?;
        Ok(lines(response.into_body())
            .map(|line| line.and_then(|l| serde_json::from_str(&l).map_err(|e| ClientError::Decode(e.to_string()))))
            .boxed())
    }

    /// `GET /v1/events`: the current status of every function, then each change.
    pub async fn events(&self) -> Result<BoxStream<'static, Result<StatusEvent, ClientError>>, ClientError> {
        let response = self.send(Method::GET, "/v1/events", None).await?;
        let mut data = String::new();
        Ok(lines(response.into_body())
            .filter_map(move |line| {
                // Server-sent events: `data:` lines accumulate until a blank line ends the event.
                let out = match line {
                    Err(e) => Some(Err(e)),
                    Ok(l) if l.is_empty() => {
                        let event = std::mem::take(&mut data);
                        (!event.is_empty())
                            .then(|| serde_json::from_str(&event).map_err(|e| ClientError::Decode(e.to_string())))
                    }
                    Ok(l) => {
                        if let Some(d) = l.strip_prefix("data:") {
                            data.push_str(d.strip_prefix(' ').unwrap_or(d));
                        }
                        None
                    }
                };
                futures::future::ready(out)
            })
            .boxed())
    }
}

/// A name goes into a path only if it is a plain label; anything else is escaped so it cannot change the path.
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A query value, percent-encoded but for RFC 3986's unreserved characters.
fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The body's lines, without their line breaks.
fn lines(body: hyper::body::Incoming) -> impl Stream<Item = Result<String, ClientError>> + Send + 'static {
    futures::stream::unfold((body, Vec::<u8>::new(), false), |(mut body, mut buf, mut done)| async move {
        loop {
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some((Ok(String::from_utf8_lossy(&line).into_owned()), (body, buf, done)));
            }
            if done {
                return None;
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Some((Err(ClientError::Decode(e.to_string())), (body, Vec::new(), true))),
                None => {
                    if buf.is_empty() {
                        return None;
                    }
                    buf.push(b'\n');
                    done = true;
                }
            }
        }
    })
}

/// Where a client finds its server and token.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// The API's URL, e.g. `http://127.0.0.1:8090`.
    pub url: Option<String>,
    /// The token itself.
    pub token: Option<String>,
    /// A file holding the token (such as `<data-dir>/api-token`).
    pub token_file: Option<std::path::PathBuf>,
}

impl ClientSettings {
    /// The default API URL.
    pub const DEFAULT_URL: &str = "http://127.0.0.1:8090";

    /// Settings from, in order of precedence: `PILOTLIGHT_URL`, `PILOTLIGHT_TOKEN`
    /// and `PILOTLIGHT_TOKEN_FILE`; the JSON file `$PILOTLIGHT_CLIENT_CONFIG` or
    /// `~/.config/pilotlight/client.json` (keys `url`, `token`, `token_file`);
    /// then the defaults: `http://127.0.0.1:8090` and `./pilotlight-data/api-token`,
    /// which is where a server started in the same directory keeps it.
    pub fn discover() -> Result<Self, ClientError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let path = env("PILOTLIGHT_CLIENT_CONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".config/pilotlight/client.json")));
        let mut settings = match path {
            Some(p) if p.exists() => {
                let text =
                    std::fs::read_to_string(&p).map_err(|e| ClientError::Config(format!("{}: {e}", p.display())))?;
                serde_json::from_str(&text).map_err(|e| ClientError::Config(format!("{}: {e}", p.display())))?
            }
            _ => Self::default(),
        };
        if let Some(u) = env("PILOTLIGHT_URL") {
            settings.url = Some(u);
        }
        if let Some(t) = env("PILOTLIGHT_TOKEN") {
            settings.token = Some(t);
        }
        if let Some(f) = env("PILOTLIGHT_TOKEN_FILE") {
            settings.token_file = Some(f.into());
        }
        Ok(settings)
    }

    /// A client from these settings.
    pub fn client(&self) -> Result<Client, ClientError> {
        let url = self.url.clone().unwrap_or_else(|| Self::DEFAULT_URL.to_owned());
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => read_token(f)?,
            (None, None) => {
                let local = std::path::Path::new("pilotlight-data").join(crate::TOKEN_FILE);
                if local.exists() {
                    read_token(&local)?
                } else {
                    return Err(ClientError::Config(
                        "no API token: set PILOTLIGHT_TOKEN, or PILOTLIGHT_TOKEN_FILE=<data-dir>/api-token".into(),
                    ));
                }
            }
        };
        Client::new(&url, &token)
    }
}

fn read_token(path: &std::path::Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .map_err(|e| ClientError::Config(format!("cannot read the API token from {}: {e}", path.display())))
}
