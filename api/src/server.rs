//! The API server: assembles the routes, the token check and the UI, and runs them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use pilotlight_core::Platform;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::token::ApiToken;
use crate::{image_routes, routes, secret_routes, ui};

/// Renders the metrics of the process (e.g. a Prometheus recorder's handle).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Settings of an [`ApiServer`].
#[derive(Clone)]
pub struct ApiConfig {
    /// Where it listens (port 0 picks a free one).
    pub addr: SocketAddr,
    /// The bearer token every endpoint but `/healthz` (and the UI's static files) requires.
    pub token: ApiToken,
    /// Request bodies larger than this are refused with 413 (default 64 KiB).
    pub max_body_bytes: usize,
    /// What `/metrics` answers; `None` says no recorder is installed.
    pub metrics: Option<MetricsRender>,
    /// Shown by `/v1/info` and the UI: the runtime's name (`docker`, `process`).
    pub runtime: String,
    /// Shown by `/v1/info`: the edge's name (`gateway`, `nginx`).
    pub edge: String,
    /// Shown by `/v1/info`: the queue's name (`memory`, `kafka`, `amqp`).
    pub queue: String,
    /// How long shutdown lets requests finish; open event and log streams end at once.
    pub shutdown_grace: Duration,
    /// Where `POST /v1/functions/{name}/invocations` hands invocations: the
    /// server's invoker (which checks the callback allow-list and is woken at
    /// once). `None` records them straight in the platform's Store, callbacks
    /// allowed to any host, for an invoker that scans it.
    pub intake: Option<Arc<dyn pilotlight_core::ports::InvocationIntake>>,
    /// Where `/v1/secrets` keeps secrets; `None` answers 503 there.
    pub secrets: Option<pilotlight_core::controller::SecretVault>,
    /// What builds and loads images sent to `/v1/images` (the Docker runtime); `None` answers 503 there.
    pub images: Option<Arc<dyn pilotlight_core::ports::Images>>,
    /// The largest build context or image archive `/v1/images` takes (default 512 MiB).
    pub max_image_bytes: usize,
    /// The last hour of each function's traffic (the recorder the server
    /// installs), for `/v1/functions/{name}/history` and the UI's charts;
    /// `None` answers 503 there.
    pub history: Option<pilotlight_core::support::History>,
}

impl ApiConfig {
    /// Loopback port 8090, a 64 KiB body cap, no metrics.
    pub fn new(token: ApiToken) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8090)),
            token,
            max_body_bytes: 64 * 1024,
            metrics: None,
            runtime: "unknown".into(),
            edge: "unknown".into(),
            queue: "unknown".into(),
            shutdown_grace: Duration::from_secs(10),
            intake: None,
            secrets: None,
            images: None,
            max_image_bytes: 512 * 1024 * 1024,
            history: None,
        }
    }
}

pub(crate) struct Shared {
    pub platform: Platform,
    pub config: ApiConfig,
    /// Cancelled at shutdown: ends the long-lived streams.
    pub cancel: CancellationToken,
}

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiServerError {
    /// The address is taken or not ours.
    #[error("cannot listen on {addr} for the API: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The running API server.
pub struct ApiServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    grace: Duration,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The whole HTTP app, without listening: for embedding into another server, or for tests.
pub fn app(platform: Platform, config: ApiConfig, cancel: CancellationToken) -> Router {
    let shared = Arc::new(Shared { platform, config, cancel });
    let v1 = Router::new()
        .route("/v1/functions", get(routes::list).post(routes::deploy))
        .route("/v1/functions/{name}", get(routes::get).delete(routes::delete))
        .route("/v1/functions/{name}/logs", get(routes::logs))
        .route("/v1/functions/{name}/history", get(routes::history))
        .route("/v1/functions/{name}/invocations", get(routes::invocations).post(routes::invoke))
        .route("/v1/functions/{name}/dead-letters", get(routes::dead_letters))
        .route("/v1/functions/{name}/dead-letters/retry", post(routes::retry_dead_letters))
        .route("/v1/invocations/{id}", get(routes::invocation))
        .route("/v1/dead-letters/{id}/retry", post(routes::retry_dead_letter))
        .route("/v1/topics/{topic}/messages", post(routes::publish))
        .route("/v1/secrets", get(secret_routes::list))
        .route("/v1/secrets/{name}", axum::routing::put(secret_routes::set).delete(secret_routes::remove))
        .route("/v1/registries", get(secret_routes::registries))
        .route("/v1/registries/{registry}", axum::routing::put(secret_routes::login).delete(secret_routes::logout))
        .route("/v1/images/build", post(image_routes::build))
        .route("/v1/images/load", post(image_routes::load))
        .route("/v1/events", get(routes::events))
        .route("/v1/info", get(routes::info))
        .route("/v1/nodes", get(routes::nodes))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(routes::metrics))
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&shared), require_token))
        .method_not_allowed_fallback(method_not_allowed);
    Router::new().route("/healthz", get(routes::healthz)).merge(ui::routes()).merge(v1).with_state(shared)
}

impl ApiServer {
    /// Listens on `config.addr` and serves the API and the UI for `platform`.
    pub async fn start(platform: Platform, config: ApiConfig) -> Result<Self, ApiServerError> {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ApiServerError::Bind { addr: config.addr, source })?;
        let addr = listener.local_addr().map_err(|source| ApiServerError::Bind { addr: config.addr, source })?;
        let cancel = CancellationToken::new();
        let grace = config.shutdown_grace;
        let app = app(platform, config, cancel.clone());
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the API server stopped");
            }
        });
        tracing::info!(%addr, "API listening");
        Ok(Self { addr, cancel, grace, task: tokio::sync::Mutex::new(Some(task)) })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends open streams, lets requests in flight finish up to the grace period.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        if let Some(mut task) = self.task.lock().await.take()
            && tokio::time::timeout(self.grace, &mut task).await.is_err()
        {
            tracing::warn!(grace = ?self.grace, "API requests still running at the end of the grace period; aborted");
            task.abort();
        }
    }
}

async fn require_token(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => ApiError::unauthorized(
            "this endpoint needs `Authorization: Bearer <token>`; the token is in <data-dir>/api-token",
        )
        .into_response(),
        Some(t) if !shared.config.token.matches(t.trim()) => {
            ApiError::unauthorized("the bearer token is not this server's").into_response()
        }
        Some(_) => next.run(request).await,
    }
}

async fn openapi() -> impl IntoResponse {
    axum::Json(crate::openapi::document())
}

async fn not_found(uri: http::Uri) -> ApiError {
    ApiError::not_found(format!("no endpoint at {}", uri.path()))
}

async fn method_not_allowed(method: http::Method, uri: http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
