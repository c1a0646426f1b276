//! `/v1/images`: images sent instead of pulled. A build context (a tar) is
//! built by the engine, its output streamed back; a `docker save` archive is
//! loaded. Both need the Docker runtime in this server's process.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, StatusCode, header};
use pilotlight_core::model::ImageRef;
use pilotlight_core::ports::{Images, RuntimeError};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::body::read_capped;
use crate::error::{ApiError, ErrorBody};
use crate::server::Shared;
use crate::views::{BuildLine, LoadedImages};

type Result<T> = std::result::Result<T, ApiError>;

fn images(shared: &Shared) -> Result<Arc<dyn Images>> {
    shared.config.images.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unsupported",
            "this server has no Docker runtime in its process, so it cannot build or load images",
        )
    })
}

async fn archive(shared: &Shared, headers: &HeaderMap, body: Body, field: &'static str) -> Result<Vec<u8>> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let bytes = read_capped(body, declared, shared.config.max_image_bytes).await?;
    if bytes.is_empty() {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "body", "is empty: send a tar archive"));
    }
    // Refused here, before any answer starts, rather than by the engine halfway.
    if let Err(e) = tar_entries(&bytes) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            field,
            format!("is not a tar archive: {e}"),
        ));
    }
    // The collected body is one unique buffer: this takes it over, no copy of up to 512 MiB.
    Ok(Vec::from(bytes))
}

/// Reads every entry header of a tar (not the contents' meaning); how many there are.
fn tar_entries(bytes: &[u8]) -> std::io::Result<usize> {
    let mut archive = tar::Archive::new(bytes);
    let mut n = 0;
    for entry in archive.entries()? {
        entry?;
        n += 1;
    }
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "it holds no file"));
    }
    Ok(n)
}

fn runtime_error(e: RuntimeError) -> ApiError {
    match e {
        RuntimeError::InvalidInput { field, message } => {
            ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", field, message)
        }
        e => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
    }
}

/// What `POST /v1/images/build` takes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BuildQuery {
    /// The reference to tag the image with, e.g. `localhost/app:1`.
    #[param(min_length = 1, max_length = 512)]
    pub tag: String,
}

/// Build an image from a build context (a tar with a `Dockerfile` at its root).
///
/// The answer streams the build's output, one `BuildLine` per line, and ends
/// with a line that has `image` (built) or `error` (with the last lines).
#[utoipa::path(
    post, path = "/v1/images/build", tag = "images",
    params(BuildQuery),
    request_body(content = Vec<u8>, description = "The build context, a tar", content_type = "application/x-tar"),
    responses(
        (status = 200, description = "One BuildLine per line", body = BuildLine, content_type = "application/x-ndjson"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn build(
    State(shared): State<Arc<Shared>>,
    query: std::result::Result<Query<BuildQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let tag = ImageRef::parse_field("tag", &query.tag)
        .map_err(|v| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "tag", v.message))?
        .to_string();
    let images = images(&shared)?;
    let context = archive(&shared, &headers, body, "context").await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let built = tag.clone();
    tokio::spawn(async move {
        let _ = done_tx.send(images.build(&built, context, tx).await);
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (l, rx)) })
        .map(|l| BuildLine { log: Some(l), ..BuildLine::default() });
    let end = futures::stream::once(async move {
        match done_rx.await {
            Ok(Ok(())) => BuildLine { image: Some(tag), ..BuildLine::default() },
            Ok(Err(RuntimeError::NotReady { message, logs })) => {
                BuildLine { error: Some(message), last_lines: logs, ..BuildLine::default() }
            }
            Ok(Err(e)) => BuildLine { error: Some(e.to_string()), ..BuildLine::default() },
            Err(_) => BuildLine { error: Some("the build was cut off".into()), ..BuildLine::default() },
        }
    });
    let body = lines.chain(end).map(|line| {
        let mut text = serde_json::to_vec(&line).unwrap_or_default();
        text.push(b'\n');
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(text))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson"), (header::CACHE_CONTROL, "no-store")], Body::from_stream(body))
        .into_response())
}

/// Load a `docker save` archive into the engine.
#[utoipa::path(
    post, path = "/v1/images/load", tag = "images",
    request_body(content = Vec<u8>, description = "A `docker save` tar", content_type = "application/x-tar"),
    responses(
        (status = 200, body = LoadedImages),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn load(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Result<Json<LoadedImages>> {
    let images = images(&shared)?;
    let archive = archive(&shared, &headers, body, "archive").await?;
    let loaded = images.load(archive).await.map_err(runtime_error)?;
    Ok(Json(LoadedImages { images: loaded }))
}
