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
use pilotlight_core::controller::PlatformError;
use pilotlight_core::model::InstanceState;
use pilotlight_core::ports::LogOptions;
use pilotlight_core::ports::{IntakeError, InvocationIntake, QueueError};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::body::{parse_spec, read_capped};
use crate::error::{ApiError, ErrorBody};
use crate::server::Shared;
use crate::views::{
    FunctionList, FunctionView, Health, HistoryView, InfoView, InstanceView, InvocationList, InvocationReceipt,
    InvocationView, LogLineView, NodeList, NodeView, PublishReceipt, Receipt, RedriveCount, StatusEvent,
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
    let pull = shared.platform.pull_progress(&record.spec);
    FunctionView { pull, ..FunctionView::new(record, instances, stale) }
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
    params(("name" = String, Path, description = "The function's name: a DNS label", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)),
    responses((status = 200, body = FunctionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Result<Json<FunctionView>> {
    let name = function_name(&name)?;
    let record =
        shared.platform.get(&name).await?.ok_or_else(|| ApiError::not_found(format!("function `{name}` not found")))?;
    Ok(Json(view(&shared, record)))
}

/// The last hour of a function's traffic, one point per 30 s: requests/s,
/// p50 and p99 latency, error rate, instances running and paused, cold
/// starts by tier. Kept in the server's memory (a restart starts it afresh).
#[utoipa::path(
    get, path = "/v1/functions/{name}/history", tag = "functions",
    params(("name" = String, Path, description = "The function's name: a DNS label", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)),
    responses((status = 200, body = HistoryView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn history(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Result<Json<HistoryView>> {
    let name = function_name(&name)?;
    let history = shared.config.history.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unsupported",
            "this server keeps no history (no metrics recorder of its own)",
        )
    })?;
    if shared.platform.get(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("function `{name}` not found")));
    }
    let points = history.points(name.as_str());
    Ok(Json(HistoryView {
        function: name.to_string(),
        bucket_s: pilotlight_core::support::history::BUCKET_SECS,
        points,
    }))
}

/// Delete a function: its instances stop and its route goes.
#[utoipa::path(
    delete, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "The function's name: a DNS label", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)),
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

fn store_unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", format!("the store cannot be read now: {e}"))
}

fn invocation_id(raw: &str) -> Result<pilotlight_core::model::InvocationId> {
    pilotlight_core::model::InvocationId::parse(raw)
        .map_err(|v| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "id", v.to_string()))
}

/// Answers 202 for an invocation that is queued: `Location` and `X-Call-Id` name it.
fn queued_answer(id: &pilotlight_core::model::InvocationId) -> Response {
    let receipt = InvocationReceipt {
        id: id.to_string(),
        function: id.function().to_string(),
        status_url: format!("/v1/invocations/{id}"),
    };
    let mut resp = (StatusCode::ACCEPTED, Json(receipt.clone())).into_response();
    // An id is a function name, a dot and hex digits: always a valid header value.
    if let (Ok(loc), Ok(call)) =
        (http::HeaderValue::try_from(receipt.status_url.as_str()), http::HeaderValue::try_from(receipt.id.as_str()))
    {
        resp.headers_mut().insert(header::LOCATION, loc);
        resp.headers_mut().insert("x-call-id", call);
    }
    resp
}

/// What `POST /v1/functions/{name}/invocations` accepts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvokeQuery {
    /// The path and query the function receives (default `/`); the request is a POST with this call's body.
    #[param(pattern = "^/[!-~]*$", max_length = 8192)]
    pub path: Option<String>,
    /// Where the outcome is POSTed when it is final (as `X-Callback-Url` at the edge): an `http` or `https` URL
    /// whose host this platform's callback allow-list allows.
    #[param(
        pattern = "^https?://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+)(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?][A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$",
        max_length = 2048
    )]
    pub callback_url: Option<String>,
}

/// Invoke a function asynchronously: the body is kept and delivered to the
/// function as a POST (with this call's `Content-Type`), retried with
/// backoff; read the outcome at the returned `Location`. The same as a request
/// with `Prefer: respond-async` at the function's own URL.
#[utoipa::path(
    post, path = "/v1/functions/{name}/invocations", tag = "invocations",
    params(("name" = String, Path, description = "The function's name: a DNS label", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63), InvokeQuery),
    request_body(content = Option<Vec<u8>>, description = "The body the function receives (may be empty)", content_type = "application/octet-stream"),
    responses(
        (status = 202, description = "Kept; it runs in the background", body = InvocationReceipt),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn invoke(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    query: std::result::Result<Query<InvokeQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| query_error(&e))?;
    let name = function_name(&name)?;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let bytes = read_capped(body, declared, shared.config.max_body_bytes).await?;
    // Whether the function exists is the intake's to say (it reads the record once).
    let mut kept = Vec::new();
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        kept.push(("content-type".to_owned(), ct.to_owned()));
    }
    let path = query.path.unwrap_or_else(|| "/".to_owned());
    let request = pilotlight_core::model::InvocationRequest::new("POST", &path, kept, bytes.to_vec())
        .map_err(|v| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "path", v.message))?;
    let callback = query
        .callback_url
        .as_deref()
        .map(pilotlight_core::model::CallbackUrl::new)
        .transpose()
        .map_err(|v| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", v.field, v.message))?;
    let fallback;
    let intake: &dyn InvocationIntake = match &shared.config.intake {
        Some(i) => i.as_ref(),
        None => {
            fallback = shared.platform.invocation_intake(pilotlight_core::model::CallbackHosts::any());
            &fallback
        }
    };
    let id = match intake.accept(&name, request, callback).await {
        Ok(id) => id,
        Err(IntakeError::NotFound(_)) => return Err(ApiError::not_found(format!("function `{name}` not found"))),
        Err(IntakeError::Invalid(v)) => {
            return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", v.field, v.message));
        }
        Err(e) => return Err(store_unavailable(e)),
    };
    tracing::info!(function = %name, %id, "invocation accepted through the API");
    Ok(queued_answer(&id))
}

/// What the invocation lists accept.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvocationQuery {
    /// Only invocations in this state.
    #[param(pattern = "^(queued|running|succeeded|failed|dead)$")]
    pub state: Option<String>,
    /// Only those after this id (the `next_after` of the previous page).
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.[0-9a-f]{28}$")]
    pub after: Option<String>,
    /// At most this many (1 to 500; default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

async fn list_invocations(
    shared: &Shared,
    name: &str,
    state: Option<pilotlight_core::model::InvocationState>,
    query: InvocationQuery,
) -> Result<Json<InvocationList>> {
    let name = function_name(name)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "limit", "1 to 500"));
    }
    let after = query.after.as_deref().map(invocation_id).transpose()?;
    let found =
        shared.platform.invocations().list(&name, state, after.as_ref(), limit).await.map_err(store_unavailable)?;
    let next_after = (found.len() == limit).then(|| found.last().map(|i| i.id.to_string())).flatten();
    Ok(Json(InvocationList { invocations: found.into_iter().map(InvocationView::from).collect(), next_after }))
}

fn state_filter(raw: Option<&str>) -> Result<Option<pilotlight_core::model::InvocationState>> {
    raw.map(|s| {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "state",
                "one of queued, running, succeeded, failed, dead",
            )
        })
    })
    .transpose()
}

/// A function's recent invocations, oldest first, with paging.
#[utoipa::path(
    get, path = "/v1/functions/{name}/invocations", tag = "invocations",
    params(("name" = String, Path, description = "The function's name: a DNS label", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63), InvocationQuery),
    responses((status = 200, body = InvocationList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn invocations(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    query: std::result::Result<Query<InvocationQuery>, QueryRejection>,
) -> Result<Json<InvocationList>> {
    let Query(query) = query.map_err(|e| query_error(&e))?;
    let state = state_filter(query.state.as_deref())?;
    list_invocations(&shared, &name, state, query).await
}

/// A function's dead letters: invocations whose every attempt failed.
#[utoipa::path(
    get, path = "/v1/functions/{name}/dead-letters", tag = "invocations",
    params(("name" = String, Path, description = "The function's name: a DNS label", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63), DeadLetterQuery),
    responses((status = 200, body = InvocationList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn dead_letters(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    query: std::result::Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<InvocationList>> {
    let Query(DeadLetterQuery { after, limit }) = query.map_err(|e| query_error(&e))?;
    let query = InvocationQuery { state: None, after, limit };
    list_invocations(&shared, &name, Some(pilotlight_core::model::InvocationState::Dead), query).await
}

/// Paging through dead letters (all of them `dead`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only those after this id (the `next_after` of the previous page).
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.[0-9a-f]{28}$")]
    pub after: Option<String>,
    /// At most this many (1 to 500; default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// What `POST /v1/topics/{topic}/messages` accepts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PublishQuery {
    /// The message key: messages with one key reach each triggered function in publish order (default: a new
    /// random key, so no order with other messages).
    #[param(pattern = "^[ -~]{1,256}$", min_length = 1, max_length = 256)]
    pub key: Option<String>,
}

/// Publish a message to a topic of the platform's queue; every function
/// with a trigger on that topic receives it as a POST (with this call's
/// `Content-Type`), in order per key, retried, and dead-lettered to
/// `<topic>.dlq` when it keeps failing.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/messages", tag = "topics",
    params(("topic" = String, Path, description = "The topic: 1 to 200 of a-z 0-9 . _ -, not a reserved one", pattern = "^[a-z0-9._-]{1,200}$"), PublishQuery),
    request_body(content = Option<Vec<u8>>, description = "The message (may be empty)", content_type = "application/octet-stream"),
    responses(
        (status = 202, description = "Published (durably, on Kafka or RabbitMQ)", body = PublishReceipt),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn publish(
    State(shared): State<Arc<Shared>>,
    Path(topic): Path<String>,
    query: std::result::Result<Query<PublishQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| query_error(&e))?;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let bytes = read_capped(body, declared, shared.config.max_body_bytes).await?;
    let key = match query.key {
        Some(k) => k,
        None => {
            let mut random = [0u8; 8];
            getrandom::fill(&mut random).map_err(store_unavailable)?;
            random.iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let message_id = match shared.platform.publish_message(&topic, &key, bytes.to_vec(), content_type).await {
        Ok(id) => id,
        // A bad topic or key is a bad URL (400), not a bad document (422).
        Err(PlatformError::Invalid(v)) => {
            return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", v.field, v.message));
        }
        Err(PlatformError::Queue(QueueError::InvalidInput { field, message })) => {
            return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", field, message));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::debug!(%topic, %message_id, "message published through the API");
    let receipt = PublishReceipt { topic, key, message_id };
    Ok((StatusCode::ACCEPTED, Json(receipt)).into_response())
}

/// Queue a dead letter again, with its attempt count reset.
#[utoipa::path(
    post, path = "/v1/dead-letters/{id}/retry", tag = "invocations",
    params(("id" = String, Path, description = "The invocation's id: `<function>.<28 lowercase hex digits>`", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.[0-9a-f]{28}$")),
    responses((status = 202, body = InvocationReceipt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "It is not a dead letter", body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn retry_dead_letter(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<Response> {
    use pilotlight_core::controller::Redrive;
    let id = invocation_id(&id)?;
    match shared.platform.invocations().redrive(&id).await.map_err(store_unavailable)? {
        Redrive::Requeued(i) => {
            tracing::info!(id = %i.id, "dead letter queued again");
            Ok(queued_answer(&i.id))
        }
        Redrive::NotDead(state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_dead",
            format!("invocation `{id}` is {}, not a dead letter", serde_json::to_value(state).unwrap_or_default()),
        )),
        Redrive::Missing => Err(ApiError::not_found(format!("invocation `{id}` not found (or past its retention)"))),
        _ => Err(ApiError::new(StatusCode::CONFLICT, "not_dead", format!("invocation `{id}` was not queued again"))),
    }
}

/// Queue every dead letter of a function again.
#[utoipa::path(
    post, path = "/v1/functions/{name}/dead-letters/retry", tag = "invocations",
    params(("name" = String, Path, description = "The function's name: a DNS label", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)),
    responses((status = 202, body = RedriveCount), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn retry_dead_letters(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Result<Response> {
    use pilotlight_core::controller::Redrive;
    let name = function_name(&name)?;
    let invocations = shared.platform.invocations();
    let mut requeued = 0;
    let mut after: Option<pilotlight_core::model::InvocationId> = None;
    loop {
        let page = invocations
            .list(&name, Some(pilotlight_core::model::InvocationState::Dead), after.as_ref(), 500)
            .await
            .map_err(store_unavailable)?;
        let full = page.len() == 500;
        after = page.last().map(|i| i.id.clone());
        for inv in page {
            if let Redrive::Requeued(_) = invocations.redrive(&inv.id).await.map_err(store_unavailable)? {
                requeued += 1;
            }
        }
        if !full {
            break;
        }
    }
    tracing::info!(function = %name, requeued, "dead letters queued again");
    Ok((StatusCode::ACCEPTED, Json(RedriveCount { requeued })).into_response())
}

/// What `GET /v1/functions/{name}/logs` accepts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Keep the response open and send new lines as they are written.
    #[serde(default)]
    pub follow: bool,
    /// Only the last N lines of each instance (0 to 10000; default 100).
    #[param(minimum = 0, maximum = 10000)]
    pub tail: Option<usize>,
}

/// Logs of the function's instances, one JSON object per line (`application/x-ndjson`).
#[utoipa::path(
    get, path = "/v1/functions/{name}/logs", tag = "functions",
    params(("name" = String, Path, description = "The function's name: a DNS label", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63), LogQuery),
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

/// The live nodes, each with what runs on it (one node alone lists itself).
#[utoipa::path(
    get, path = "/v1/nodes", tag = "server",
    responses((status = 200, body = NodeList), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn nodes(State(shared): State<Arc<Shared>>) -> Result<Json<NodeList>> {
    let Some(m) = shared.platform.membership().cloned() else {
        return Ok(Json(NodeList { clustered: false, this_node: String::new(), nodes: Vec::new() }));
    };
    let records: Vec<_> = shared.platform.list().await?.into_iter().filter(|r| !r.deleted).collect();
    let region = shared.platform.region();
    let fenced = m.fenced_for().is_some();
    // Each function's owner once, not once per node.
    let owners: Vec<Option<pilotlight_core::model::NodeId>> = records
        .iter()
        .map(|r| if m.is_clustered() { m.owner_of(&r.spec, region).ok().map(|o| o.id) } else { Some(m.id().clone()) })
        .collect();
    let nodes = m
        .nodes()
        .iter()
        .map(|n| {
            let functions = records
                .iter()
                .zip(&owners)
                .filter(|(_, o)| o.as_ref() == Some(&n.id))
                .map(|(r, _)| r.spec.name().to_string())
                .collect();
            let instances = records
                .iter()
                .filter(|r| r.status.node.as_ref().is_none_or(|id| *id == n.id))
                .map(|r| r.status.instances.iter().filter(|i| i.state == InstanceState::Running).count())
                .sum();
            NodeView {
                id: n.id.to_string(),
                region: n.region.to_string(),
                gateway: n.gateway.to_string(),
                capacity_mb: n.capacity_mb,
                labels: n.labels.clone().into(),
                version: n.version.clone(),
                started_ms: n.started_ms,
                health: if fenced && n.id == *m.id() { "fenced" } else { "ready" }.to_owned(),
                functions,
                instances,
            }
        })
        .collect();
    Ok(Json(NodeList { clustered: m.is_clustered(), this_node: m.id().to_string(), nodes }))
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
