//! `/v1/secrets` and `/v1/registries`: secrets and registry logins. Values
//! and passwords go in and never come out.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use pilotlight_core::controller::{MAX_SECRET_BYTES, SecretVault};
use pilotlight_core::model::{RegistryHost, SecretName};
use pilotlight_core::ports::SecretError;

use crate::body::read_capped;
use crate::error::{ApiError, ErrorBody};
use crate::server::Shared;
use crate::views::{RegistryList, RegistryLogin, RegistryView, SecretList, SecretView};

type Result<T> = std::result::Result<T, ApiError>;

fn vault(shared: &Shared) -> Result<&SecretVault> {
    shared.config.secrets.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unsupported", "this server was started without a secret key")
    })
}

fn secret_name(raw: &str) -> Result<SecretName> {
    SecretName::parse_field("name", raw.to_owned())
        .map_err(|v| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "name", v.message))
}

impl From<SecretError> for ApiError {
    fn from(e: SecretError) -> Self {
        let message = e.to_string();
        match e {
            SecretError::Invalid(v) => ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", v.field, v.message),
            SecretError::NotFound(_) | SecretError::NoLogin(_) => ApiError::not_found(message),
            SecretError::InUse { .. } => ApiError::new(StatusCode::CONFLICT, "in_use", message),
            _ => {
                tracing::warn!(error = %message, "secret request failed");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

/// List the secrets: names, sizes, update times and users, never values.
#[utoipa::path(
    get, path = "/v1/secrets", tag = "secrets", operation_id = "list_secrets",
    responses((status = 200, body = SecretList), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(State(shared): State<Arc<Shared>>) -> Result<Json<SecretList>> {
    let secrets = vault(&shared)?.list().await?.into_iter().map(SecretView::from).collect();
    Ok(Json(SecretList { secrets }))
}

/// Create or replace a secret; the body is its value (1 byte to 64 KiB).
///
/// The value is sealed in the Store; the answer shows its size only.
/// Functions that list the secret roll to a new generation (a zero-downtime
/// update), so their new instances read the new value.
#[utoipa::path(
    put, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "The secret's name", pattern = "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")),
    request_body(content = Vec<u8>, description = "The value", content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Set", body = SecretView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn set(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SecretView>> {
    let vault = vault(&shared)?;
    let name = secret_name(&name)?;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let value = zeroize::Zeroizing::new(read_capped(body, declared, MAX_SECRET_BYTES).await?.to_vec());
    let info = vault.set(&name, &value).await?;
    // The roll is durable intent already (the secret's new revision); this
    // only makes it start now instead of at the next pass.
    if !info.used_by.is_empty()
        && let Err(e) = shared.platform.roll_secrets().await
    {
        tracing::warn!(secret = %name, error = %e, "rolling the functions that use a secret failed; the next pass does it");
    }
    Ok(Json(SecretView::from(info)))
}

/// Remove a secret; refused (409) while a function lists it.
#[utoipa::path(
    delete, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "The secret's name", pattern = "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Functions still list it", body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn remove(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Result<Response> {
    let name = secret_name(&name)?;
    vault(&shared)?.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn registry_host(raw: &str) -> Result<RegistryHost> {
    RegistryHost::parse_field("registry", raw)
        .map_err(|v| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "registry", v.message))
}

/// List the registry logins: registries and user names, never passwords.
#[utoipa::path(
    get, path = "/v1/registries", tag = "secrets",
    responses((status = 200, body = RegistryList), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn registries(State(shared): State<Arc<Shared>>) -> Result<Json<RegistryList>> {
    let registries = vault(&shared)?.logins().await?.into_iter().map(RegistryView::from).collect();
    Ok(Json(RegistryList { registries }))
}

/// Keep a login for a registry; pulls of its images present it.
#[utoipa::path(
    put, path = "/v1/registries/{registry}", tag = "secrets",
    params(("registry" = String, Path, description = "`host[:port]`, as image references name it", pattern = "^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]{1,5})?$", max_length = 255)),
    request_body(content = RegistryLogin),
    responses(
        (status = 200, body = RegistryView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn login(
    State(shared): State<Arc<Shared>>,
    Path(registry): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RegistryView>> {
    let vault = vault(&shared)?;
    let registry = registry_host(&registry)?;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    // 4096 characters of up to 4 bytes each, twice, and the JSON around them.
    let bytes = zeroize::Zeroizing::new(read_capped(body, declared, 64 * 1024).await?.to_vec());
    // serde's message could quote the input, and with it the password: say only what is expected.
    let login: RegistryLogin = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object with exactly `username` and `password` (strings)",
        )
    })?;
    let password = zeroize::Zeroizing::new(login.password);
    let info = vault.login(&registry, &login.username, &password).await?;
    Ok(Json(RegistryView::from(info)))
}

/// Forget the login for a registry.
#[utoipa::path(
    delete, path = "/v1/registries/{registry}", tag = "secrets",
    params(("registry" = String, Path, description = "`host[:port]`", pattern = "^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]{1,5})?$", max_length = 255)),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn logout(State(shared): State<Arc<Shared>>, Path(registry): Path<String>) -> Result<Response> {
    let registry = registry_host(&registry)?;
    vault(&shared)?.logout(&registry).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
