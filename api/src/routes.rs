//! The handlers of `/v1`, `/metrics` and `/healthz`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, StatusCode, header};
use pilotlight_core::FunctionName;
use pilotlight_core::ports::LogOptions;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::body::{parse_spec, read_capped};
use crate::error::{ApiError, ErrorBody};
use crate::server::Shared;
use crate::views::{
    FunctionList, FunctionView, Health, InfoView, InstanceView, InvocationView, LogLineView, Receipt, StatusEvent,
};

type Result<T> = std::result::Result<T, ApiError>;

fn function_name(raw: &str) -> Result<FunctionName> {
    FunctionName::parse_field("name", raw.to_owned())
        .map_err(|v| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "name", v.to_string()))
}

/// A function's view, from the Store alone: no runtime is called, so it
/// answers at once even while the engine is unreachable.
fn view(shared: &Shared, record: pilotlight_core::model::FunctionRecord) -> FunctionView {
    let stale = shared.platform.is_stale(&record);
    let mut instances: Vec<InstanceView> = record.status.instances.iter().cloned().map(InstanceView::from).collect();
    instances.sort_by(|a, b| b.generation.cmp(&a.generation).then_with(|| a.id.cmp(&b.id)));
    FunctionView::new(record, instances, stale)
}

/// Create or update a function.
///
/// Only `name`, `image` (or `exec` under the process runtime) and `port` are
/// required. Deploying the spec that is already wanted changes nothing.
#[utoipa::path(
    post, path = "/v1/functions", tag = "functions",
    request_body(content = pilotlight_core::FunctionSpecInput, description = "The function spec"),
    responses(
        (status = 202, description = "Accepted; the deploy goes on in the background", body = Receipt),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 409, description = "Changed concurrently; try again", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "A field breaks a rule; `field` names it", body = ErrorBody),
        (status = 503, description = "The queue or store is unavailable; nothing was changed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn deploy(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Result<Response> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let bytes = read_capped(body, declared, shared.config.max_body_bytes).await?;
    let spec = parse_spec(&bytes)?;
    let receipt = shared.platform.deploy(spec).await?;
    tracing::info!(function = %receipt.name, generation = receipt.generation, "deploy accepted");
    Ok((StatusCode::ACCEPTED, Json(Receipt::from(receipt))).into_response())
}

/// Every function, by name.
#[utoipa::path(
    get, path = "/v1/functions", tag = "functions",
    responses((status = 200, body = FunctionList), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(State(shared): State<Arc<Shared>>) -> Result<Json<FunctionList>> {
    let functions = shared.platform.list().await?.into_iter().map(|r| view(&shared, r)).collect();
    Ok(Json(FunctionList { functions }))
}

/// One function: its spec, phase, URL, instances and last error.
#[utoipa::path(
    get, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "The function's name")),
    responses((status = 200, body = FunctionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Result<Json<FunctionView>> {
    let name = function_name(&name)?;
    let record =
        shared.platform.get(&name).await?.ok_or_else(|| ApiError::not_found(format!("function `{name}` not found")))?;
    Ok(Json(view(&shared, record)))
}

/// Delete a function: its instances stop and its route goes.
#[utoipa::path(
    delete, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "The function's name")),
    responses((status = 202, body = Receipt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn delete(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Result<Response> {
    let name = function_name(&name)?;
    let receipt = shared.platform.delete(&name).await?;
    tracing::info!(function = %receipt.name, generation = receipt.generation, "delete accepted");
    Ok((StatusCode::ACCEPTED, Json(Receipt::from(receipt))).into_response())
}

/// One asynchronous invocation, by the id its `202 Accepted` gave
/// (`X-Call-Id`, and the `Location` header's last part).
#[utoipa::path(
    get, path = "/v1/invocations/{id}", tag = "invocations",
    params(("id" = String, Path, description = "The invocation's id: `<function>.<28 lowercase hex digits>`", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.[0-9a-f]{28}$")),
    responses((status = 200, body = InvocationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn invocation(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<Json<InvocationView>> {
    let id = pilotlight_core::model::InvocationId::parse(&id)
        .map_err(|v| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "id", v.to_string()))?;
    let found = shared.platform.invocations().get(&id).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("cannot read invocation `{id}`: {e}"),
        )
    })?;
    let invocation =
        found.ok_or_else(|| ApiError::not_found(format!("invocation `{id}` not found (or past its retention)")))?;
    Ok(Json(InvocationView::from(invocation)))
}

/// What `GET /v1/functions/{name}/logs` accepts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Keep the response open and send new lines as they are written.
    #[serde(default)]
    pub follow: bool,
    /// Only the last N lines of each instance (0 to 10000; default 100).
    pub tail: Option<usize>,
}

/// Logs of the function's instances, one JSON object per line (`application/x-ndjson`).
#[utoipa::path(
    get, path = "/v1/functions/{name}/logs", tag = "functions",
    params(("name" = String, Path, description = "The function's name"), LogQuery),
    responses(
        (status = 200, description = "One LogLineView per line", body = LogLineView, content_type = "application/x-ndjson"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn logs(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    query: std::result::Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| query_error(&e))?;
    let name = function_name(&name)?;
    let tail = query.tail.unwrap_or(100);
    if tail > 10_000 {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "tail", "must be 0 to 10000"));
    }
    let lines = shared.platform.logs(&name, LogOptions { tail: Some(tail), follow: query.follow }).await?;
    let cancel = shared.cancel.clone();
    let body = lines.take_until(async move { cancel.cancelled().await }).map(|line| {
        let view = match line {
            Ok(l) => LogLineView {
                instance: l.instance.to_string(),
                source: l.line.source,
                line: l.line.line,
                at_ms: l.line.at_ms,
            },
            Err(e) => LogLineView {
                instance: String::new(),
                source: pilotlight_core::ports::LogSource::Stderr,
                line: format!("[pilotlight] log stream failed: {e}"),
                at_ms: pilotlight_core::support::now_ms(),
            },
        };
        let mut json = serde_json::to_vec(&view).unwrap_or_default();
        json.push(b'\n');
        Ok::<_, std::io::Error>(bytes::Bytes::from(json))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson"), (header::CACHE_CONTROL, "no-store")], Body::from_stream(body))
        .into_response())
}

fn query_error(e: &QueryRejection) -> ApiError {
    let message = e.body_text();
    // axum words it "Failed to deserialize query string: tail: invalid digit..." or "...unknown field `x`...".
    let detail = message.split_once("query string: ").map_or(message.as_str(), |(_, d)| d);
    let field = match detail.split_once("unknown field `") {
        Some((_, rest)) => rest.split('`').next().map(str::to_owned),
        None => detail
            .split_once(": ")
            .map(|(f, _)| f.to_owned())
            .filter(|f| f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')),
    };
    match field {
        Some(f) => ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", f, message),
        None => ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message),
    }
}

/// Status changes as server-sent events: first the current status of every
/// function, then each change, as `event: status` with a StatusEvent.
#[utoipa::path(
    get, path = "/v1/events", tag = "functions",
    responses((status = 200, description = "`event: status` with a StatusEvent as data", body = StatusEvent, content_type = "text/event-stream"), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn events(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let cancel = shared.cancel.clone();
    let stream = shared
        .platform
        .status_changes(true)
        .take_until(async move { cancel.cancelled().await })
        .map(|u| SseEvent::default().event("status").json_data(StatusEvent::from(u)));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// What this node is: version, domain, region, runtime, edge, queue.
#[utoipa::path(
    get, path = "/v1/info", tag = "server",
    responses((status = 200, body = InfoView), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn info(State(shared): State<Arc<Shared>>) -> Json<InfoView> {
    let c = &shared.config;
    Json(InfoView {
        version: env!("CARGO_PKG_VERSION").into(),
        domain: shared.platform.domain().to_string(),
        region: shared.platform.region().to_string(),
        runtime: c.runtime.clone(),
        edge: c.edge.clone(),
        queue: c.queue.clone(),
    })
}

/// Metrics in the Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "server",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = match &shared.config.metrics {
        Some(render) => render(),
        None => "# no metrics recorder is installed in this process\n".to_owned(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Liveness; needs no token.
#[utoipa::path(get, path = "/healthz", tag = "server", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}
